"""Service accounts: every namespace gets ``default`` with a token Secret, and pods mount it.

On a real v1.20 server the service-account and token controllers of kube-controller-manager
make the account and its Secret, and the ServiceAccount admission plugin mounts the token into
new pods (or refuses the pod while the account or its token is missing).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiException

from tests.simcluster.conformance.support import (
    assert_status,
    create_pod,
    eventually,
    unschedulable_pod_body,
)

TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


async def default_token(core: client.CoreV1Api, namespace: str) -> client.V1Secret:
    async def check() -> client.V1Secret | None:
        try:
            account = await core.read_namespaced_service_account("default", namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        for ref in account.secrets or []:
            try:
                secret = await core.read_namespaced_secret(ref.name, namespace)
            except ApiException as exc:
                if exc.status == 404:
                    continue
                raise
            if secret.type == "kubernetes.io/service-account-token":
                return secret
        return None

    return await eventually(check, within=30, what="the default service account's token")


async def test_new_namespace_gets_default_service_account_and_token(
    core: client.CoreV1Api, namespace: str
) -> None:
    secret = await default_token(core, namespace)
    account = await core.read_namespaced_service_account("default", namespace)
    assert secret.metadata.name.startswith("default-token-")
    assert len(secret.metadata.name) == len("default-token-") + 5
    assert secret.metadata.annotations["kubernetes.io/service-account.name"] == "default"
    assert secret.metadata.annotations["kubernetes.io/service-account.uid"] == (
        account.metadata.uid
    )
    assert set(secret.data) == {"ca.crt", "namespace", "token"}
    assert base64.b64decode(secret.data["namespace"]).decode() == namespace
    assert base64.b64decode(secret.data["token"])


async def test_pod_mounts_its_service_account_token(core: client.CoreV1Api, namespace: str) -> None:
    secret = await default_token(core, namespace)
    body: dict[str, Any] = unschedulable_pod_body("p")
    body["spec"].pop("automountServiceAccountToken")
    body["spec"]["initContainers"] = [{"name": "init", "image": "registry.k8s.io/pause:3.2"}]
    pod = await create_pod(core, namespace, body)
    assert pod.spec.service_account_name == "default"
    volumes = [v for v in pod.spec.volumes or [] if v.secret is not None]
    assert len(volumes) == 1
    assert volumes[0].name == secret.metadata.name
    assert volumes[0].secret.secret_name == secret.metadata.name
    assert volumes[0].secret.default_mode == 420
    for container in pod.spec.containers + pod.spec.init_containers:
        mounts = [m for m in container.volume_mounts or [] if m.mount_path == TOKEN_PATH]
        assert len(mounts) == 1, container.name
        assert mounts[0].name == volumes[0].name
        assert mounts[0].read_only is True


async def test_pod_without_automount_gets_no_token(core: client.CoreV1Api, namespace: str) -> None:
    await default_token(core, namespace)
    pod = await create_pod(core, namespace, unschedulable_pod_body("p"))
    assert not pod.spec.volumes
    assert not pod.spec.containers[0].volume_mounts


@pytest.mark.parametrize("automount", [True, None])
async def test_pod_of_a_missing_service_account_is_forbidden(
    core: client.CoreV1Api, namespace: str, automount: bool | None
) -> None:
    await default_token(core, namespace)
    body = unschedulable_pod_body("p", extra_spec={"serviceAccountName": "nobody"})
    body["spec"]["automountServiceAccountToken"] = automount
    with pytest.raises(ApiException) as info:
        await core.create_namespaced_pod(namespace, body)
    status = assert_status(
        info.value,
        403,
        "Forbidden",
        f'pods "p" is forbidden: error looking up service account {namespace}/nobody: '
        'serviceaccount "nobody" not found',
    )
    assert status["details"] == {"name": "p", "kind": "pods"}
