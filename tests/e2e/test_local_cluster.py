"""The local cluster runs real pods: a pod from the locally built test image serves HTTP, and its
NodePort Service answers on 127.0.0.1 (kube-proxy in iptables mode, ``route_localnet``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, config

from tests.fixtures.realcluster import TEST_IMAGE, RealCluster
from tests.fixtures.waiting import until_async
from tests.simcluster.conformance.support import service_account_not_ready

pytestmark = pytest.mark.realcluster


@pytest.fixture
async def core(real_cluster: RealCluster) -> AsyncIterator[client.CoreV1Api]:
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(real_cluster.kubeconfig), client_configuration=configuration
    )
    async with client.ApiClient(configuration) as api:
        yield client.CoreV1Api(api)


@pytest.fixture
async def namespace(core: client.CoreV1Api) -> AsyncIterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        await core.delete_namespace(name)


async def create_pod(core: client.CoreV1Api, namespace: str, body: Any) -> None:
    """Create a pod once the namespace's ``default`` service account is ready."""
    for _ in range(60):
        try:
            await core.create_namespaced_pod(namespace, body)
            return
        except client.ApiException as exc:
            if not service_account_not_ready(exc):
                raise
            await asyncio.sleep(0.5)
    raise AssertionError(f"namespace {namespace} got no default service account")


async def test_pod_from_local_image_answers_on_its_node_port(
    core: client.CoreV1Api, namespace: str
) -> None:
    greeting = f"hello from {namespace}"
    await create_pod(
        core,
        namespace,
        {
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "httpd",
                        "image": TEST_IMAGE,
                        "imagePullPolicy": "IfNotPresent",
                        "command": [
                            "/bin/sh",
                            "-c",
                            f"echo '{greeting}' > /www/index.html && exec httpd -f -p 8080 -h /www",
                        ],
                        "ports": [{"containerPort": 8080}],
                        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                    }
                ],
            },
        },
    )
    service_body: Any = {
        "metadata": {"name": "web"},
        "spec": {
            "type": "NodePort",
            "selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": 8080}],
        },
    }
    service = await core.create_namespaced_service(namespace, service_body)
    node_port = service.spec.ports[0].node_port
    assert 30000 <= node_port <= 32767

    async def running() -> client.V1Pod | None:
        pod = await core.read_namespaced_pod("web", namespace)
        ready = [c for c in pod.status.conditions or [] if c.type == "Ready"]
        if pod.status.phase == "Running" and ready and ready[0].status == "True":
            return pod
        return None

    pod = await until_async(running, within=120, what="the web pod Running and Ready")
    assert pod is not None
    assert pod.status.pod_ip.startswith("10.88.")

    async def answer() -> str | None:
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(
                    f"http://127.0.0.1:{node_port}/", timeout=aiohttp.ClientTimeout(total=3)
                ) as resp,
            ):
                return await resp.text() if resp.status == 200 else None
        except (TimeoutError, aiohttp.ClientError):
            return None

    body = await until_async(answer, within=60, what=f"HTTP on 127.0.0.1:{node_port}")
    assert body is not None
    assert body.strip() == greeting
