"""Debian's kubectl 1.20 against the API server: what a user types must work as on a real one."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client

from tests.fixtures.kube import KubeTarget
from tests.simcluster.conformance.support import (
    MERGE,
    Widgets,
    is_gone,
    random_group,
    uninstall_widgets,
    widget_crd_manifest,
)

pytestmark = pytest.mark.kubectl


@dataclass
class Result:
    rc: int
    out: str
    err: str


@dataclass
class Kubectl:
    path: Path
    kubeconfig: Path
    home: Path

    def command(self, *args: str) -> list[str]:
        return [
            str(self.path),
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.home / 'cache'}",
            *args,
        ]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBE")}
        env["HOME"] = str(self.home)
        return env

    async def run(self, *args: str, stdin: str | None = None, seconds: float = 60) -> Result:
        proc = await asyncio.create_subprocess_exec(
            *self.command(*args),
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env(),
        )
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(stdin.encode() if stdin is not None else None), seconds
            )
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert proc.returncode is not None
        return Result(proc.returncode, out.decode(), err.decode())

    async def ok(self, *args: str, stdin: str | None = None) -> str:
        result = await self.run(*args, stdin=stdin)
        assert result.rc == 0, (args, result)
        return result.out


@pytest.fixture
def kc(kubectl: Path, kube: KubeTarget, tmp_path: Path) -> Kubectl:
    home = tmp_path / "home"
    home.mkdir()
    return Kubectl(kubectl, kube.kubeconfig, home)


def rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines() if line.strip()]


def write_yaml(path: Path, *docs: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(docs))
    return path


async def test_version_shows_client_and_server(kc: Kubectl) -> None:
    out = await kc.ok("version")
    server = next(line for line in out.splitlines() if line.startswith("Server Version:"))
    assert 'Major:"1"' in server
    assert re.search(r'Minor:"20\+?"', server), server
    assert 'GitVersion:"v1.20.' in server

    info = json.loads(await kc.ok("version", "-o", "json"))
    assert info["serverVersion"]["major"] == "1"
    assert info["serverVersion"]["gitVersion"].startswith("v1.20.")


async def test_api_resources_lists_the_kinds(kc: Kubectl) -> None:
    table = rows(await kc.ok("api-resources"))
    by_name = {row[0]: row for row in table[1:]}
    assert table[0][0] == "NAME"
    for name, short, kind in [
        ("pods", "po", "Pod"),
        ("services", "svc", "Service"),
        ("configmaps", "cm", "ConfigMap"),
        ("namespaces", "ns", "Namespace"),
        ("nodes", "no", "Node"),
        ("ingresses", "ing", "Ingress"),
        ("customresourcedefinitions", "crd,crds", "CustomResourceDefinition"),
    ]:
        assert name in by_name, sorted(by_name)
        assert short in by_name[name], by_name[name]
        assert by_name[name][-1] == kind
    assert by_name["secrets"][-1] == "Secret"
    assert by_name["leases"][-1] == "Lease"
    assert by_name["pods"][-2] == "true"
    assert by_name["namespaces"][-2] == "false"

    names = (await kc.ok("api-resources", "--api-group=coordination.k8s.io", "-o", "name")).split()
    assert names == ["leases.coordination.k8s.io"]


async def test_get_namespaces(kc: Kubectl, namespace: str) -> None:
    table = rows(await kc.ok("get", "ns"))
    assert table[0] == ["NAME", "STATUS", "AGE"]
    mine = [row for row in table if row[0] == namespace]
    assert len(mine) == 1
    assert mine[0][1] == "Active"

    single = rows(await kc.ok("get", "namespace", namespace))
    assert single[0] == ["NAME", "STATUS", "AGE"]
    assert single[1][:2] == [namespace, "Active"]

    missing = await kc.run("get", "ns", "conformance-missing-ns")
    assert missing.rc != 0
    assert 'namespaces "conformance-missing-ns" not found' in missing.err


async def test_apply_configmap(
    kc: Kubectl, core: client.CoreV1Api, namespace: str, tmp_path: Path
) -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm", "namespace": namespace},
        "data": {"a": "1"},
    }
    path = write_yaml(tmp_path / "cm.yaml", manifest)
    assert (await kc.ok("apply", "-f", str(path))).strip() == "configmap/cm created"
    created = await core.read_namespaced_config_map("cm", namespace)
    assert created.data == {"a": "1"}
    applied = created.metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"]
    assert json.loads(applied)["data"] == {"a": "1"}

    manifest["data"] = {"b": "2"}
    write_yaml(path, manifest)
    assert (await kc.ok("apply", "-f", str(path))).strip() == "configmap/cm configured"
    assert (await core.read_namespaced_config_map("cm", namespace)).data == {"b": "2"}

    assert (await kc.ok("apply", "-f", str(path))).strip() == "configmap/cm unchanged"


async def test_apply_crd_and_custom_resource(
    kc: Kubectl, api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    group = random_group()
    widgets = Widgets(api, group)
    try:
        crd_path = write_yaml(tmp_path / "crd.yaml", widget_crd_manifest(group))
        out = await kc.ok("apply", "-f", str(crd_path))
        assert (
            out.strip() == f"customresourcedefinition.apiextensions.k8s.io/widgets.{group} created"
        )
        waited = await kc.ok(
            "wait", "--for=condition=established", "--timeout=30s", f"crd/widgets.{group}"
        )
        assert "condition met" in waited

        widget = widgets.body("w1", size=3, mode="a")
        widget["metadata"]["namespace"] = namespace
        cr_path = write_yaml(tmp_path / "cr.yaml", widget)
        assert (await kc.ok("apply", "-f", str(cr_path))).strip() == f"widget.{group}/w1 created"

        table = rows(await kc.ok("get", f"widgets.{group}", "-n", namespace))
        assert table[0] == ["NAME", "SIZE", "MODE", "AGE"]
        assert table[1][:3] == ["w1", "3", "a"]
        # A date printer column is shown as an age ("3s"), not the raw timestamp.
        assert re.fullmatch(r"\d+[smhdy]", table[1][3]), table[1]

        widget["spec"]["size"] = 5
        write_yaml(cr_path, widget)
        assert (await kc.ok("apply", "-f", str(cr_path))).strip() == (
            f"widget.{group}/w1 configured"
        )
        got = await widgets.get(namespace, "w1")
        assert got["spec"] == {"size": 5, "mode": "a"}
        assert got["metadata"]["generation"] == 2

        table = rows(await kc.ok("get", "widgets", "-n", namespace))
        assert table[1][:3] == ["w1", "5", "a"]
    finally:
        await uninstall_widgets(widgets)


async def test_get_output_json_and_yaml(
    kc: Kubectl, core: client.CoreV1Api, namespace: str
) -> None:
    created = await core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "cm", "labels": {"x": "y"}}, "data": {"k": "v"}}
    )
    as_json = json.loads(await kc.ok("get", "configmap", "cm", "-n", namespace, "-o", "json"))
    assert as_json["kind"] == "ConfigMap"
    assert as_json["apiVersion"] == "v1"
    assert as_json["data"] == {"k": "v"}
    assert as_json["metadata"]["uid"] == created.metadata.uid
    assert as_json["metadata"]["resourceVersion"] == created.metadata.resource_version

    as_yaml = yaml.safe_load(await kc.ok("get", "cm", "cm", "-n", namespace, "-o", "yaml"))
    assert as_yaml["data"] == {"k": "v"}
    assert as_yaml["metadata"]["labels"] == {"x": "y"}

    listing = json.loads(await kc.ok("get", "cm", "-n", namespace, "-l", "x=y", "-o", "json"))
    assert listing["kind"] == "List"
    assert [item["metadata"]["name"] for item in listing["items"]] == ["cm"]


async def test_patch_merge_and_json(kc: Kubectl, core: client.CoreV1Api, namespace: str) -> None:
    await core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "cm"}, "data": {"k": "v"}}
    )
    out = await kc.ok(
        "patch", "configmap", "cm", "-n", namespace, "--type", "merge", "-p", '{"data":{"k":"v2"}}'
    )
    assert out.strip() == "configmap/cm patched"
    assert (await core.read_namespaced_config_map("cm", namespace)).data == {"k": "v2"}

    out = await kc.ok(
        "patch",
        "cm",
        "cm",
        "-n",
        namespace,
        "--type",
        "json",
        "-p",
        '[{"op":"add","path":"/data/j","value":"1"}]',
    )
    assert out.strip() == "configmap/cm patched"
    assert (await core.read_namespaced_config_map("cm", namespace)).data == {"k": "v2", "j": "1"}


async def test_label(kc: Kubectl, core: client.CoreV1Api, namespace: str) -> None:
    await core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}})
    assert (await kc.ok("label", "cm", "cm", "-n", namespace, "env=prod")).strip() == (
        "configmap/cm labeled"
    )
    got = await core.read_namespaced_config_map("cm", namespace)
    assert got.metadata.labels == {"env": "prod"}
    names = await kc.ok("get", "cm", "-n", namespace, "-l", "env=prod", "-o", "name")
    assert names.split() == ["configmap/cm"]

    refused = await kc.run("label", "cm", "cm", "-n", namespace, "env=dev")
    assert refused.rc != 0
    assert "already has a value (prod)" in refused.err
    await kc.ok("label", "cm", "cm", "-n", namespace, "env=dev", "--overwrite")
    assert (await core.read_namespaced_config_map("cm", namespace)).metadata.labels == {
        "env": "dev"
    }


async def test_delete(kc: Kubectl, core: client.CoreV1Api, namespace: str) -> None:
    await core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}})
    out = await kc.ok("delete", "configmap", "cm", "-n", namespace)
    assert out.strip() == 'configmap "cm" deleted'
    assert await is_gone(lambda: core.read_namespaced_config_map("cm", namespace))

    missing = await kc.run("delete", "configmap", "cm", "-n", namespace)
    assert missing.rc != 0
    assert 'configmaps "cm" not found' in missing.err


@pytest.fixture
async def watcher(kc: Kubectl, namespace: str) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        *kc.command("get", "configmap", "cm", "-n", namespace, "-w", "--request-timeout=15s"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=kc.env(),
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_get_watch_sees_a_change(
    watcher: asyncio.subprocess.Process, core: client.CoreV1Api, namespace: str
) -> None:
    await core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "cm"}, "data": {"a": "1"}}
    )
    assert watcher.stdout is not None

    async def next_row() -> list[str]:
        assert watcher.stdout is not None
        line = await asyncio.wait_for(watcher.stdout.readline(), 20)
        assert line, "kubectl get -w ended early"
        return line.decode().split()

    header = await next_row()
    if header[0] == "NAME":
        first = await next_row()
    else:
        first, header = header, []
    assert first[:2] == ["cm", "1"]

    await core.patch_namespaced_config_map(
        "cm", namespace, {"data": {"b": "2"}}, _content_type=MERGE
    )
    changed = await next_row()
    assert changed[:2] == ["cm", "2"]


async def test_create_invalid_custom_resource_shows_the_error(
    kc: Kubectl, widgets: Widgets, namespace: str, tmp_path: Path
) -> None:
    bad = widgets.body("bad", size=99, mode="a")
    bad["metadata"]["namespace"] = namespace
    path = write_yaml(tmp_path / "bad.yaml", bad)
    result = await kc.run("create", "-f", str(path))
    assert result.rc != 0
    assert (
        'The Widget "bad" is invalid: spec.size: Invalid value: 99: spec.size in body should '
        "be less than or equal to 10"
    ) in result.err, result
