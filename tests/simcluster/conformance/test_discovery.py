"""Discovery: /api, /apis, group versions, a new CRD in discovery, /version."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiException

from tests.simcluster.conformance.support import Widgets, eventually

CRUD_VERBS = {"create", "delete", "get", "list", "patch", "update", "watch"}


def by_name(resource_list: Any) -> dict[str, Any]:
    return {r.name: r for r in resource_list.resources}


async def test_core_api_versions_lists_v1(api: client.ApiClient) -> None:
    versions = await client.CoreApi(api).get_api_versions()
    assert versions.kind == "APIVersions"
    assert versions.versions == ["v1"]


async def test_api_group_list_has_preferred_versions(api: client.ApiClient) -> None:
    groups = await client.ApisApi(api).get_api_versions()
    assert groups.kind == "APIGroupList"
    found = {g.name: g for g in groups.groups}
    for name in ("networking.k8s.io", "coordination.k8s.io", "apiextensions.k8s.io"):
        assert name in found, sorted(found)
        group = found[name]
        assert "v1" in [v.version for v in group.versions]
        assert group.preferred_version.version == "v1"
        assert group.preferred_version.group_version == f"{name}/v1"
    assert "" not in found  # the core group is served under /api, not /apis


async def test_core_v1_lists_builtin_resources(api: client.ApiClient) -> None:
    resources = await client.CoreV1Api(api).get_api_resources()
    assert resources.group_version == "v1"
    found = by_name(resources)
    expected = {
        "pods": ("Pod", True, ["po"]),
        "services": ("Service", True, ["svc"]),
        "secrets": ("Secret", True, None),
        "configmaps": ("ConfigMap", True, ["cm"]),
        "events": ("Event", True, ["ev"]),
        "namespaces": ("Namespace", False, ["ns"]),
        "nodes": ("Node", False, ["no"]),
    }
    for name, (kind, namespaced, short_names) in expected.items():
        assert name in found, sorted(found)
        resource = found[name]
        assert resource.kind == kind
        assert resource.namespaced is namespaced, name
        assert set(resource.verbs) >= CRUD_VERBS, (name, resource.verbs)
        if short_names:
            assert resource.short_names == short_names, (name, resource.short_names)
    assert "pods/status" in found
    assert found["pods/status"].kind == "Pod"
    assert "namespaces/status" in found


async def test_networking_v1_lists_ingresses(api: client.ApiClient) -> None:
    resources = await client.NetworkingV1Api(api).get_api_resources()
    assert resources.group_version == "networking.k8s.io/v1"
    found = by_name(resources)
    assert found["ingresses"].kind == "Ingress"
    assert found["ingresses"].namespaced is True
    assert found["ingresses"].short_names == ["ing"]
    assert set(found["ingresses"].verbs) >= CRUD_VERBS
    assert "ingresses/status" in found


async def test_coordination_v1_lists_leases(api: client.ApiClient) -> None:
    resources = await client.CoordinationV1Api(api).get_api_resources()
    assert resources.group_version == "coordination.k8s.io/v1"
    found = by_name(resources)
    assert found["leases"].kind == "Lease"
    assert found["leases"].namespaced is True
    assert set(found["leases"].verbs) >= CRUD_VERBS


async def test_apiextensions_v1_lists_crds(api: client.ApiClient) -> None:
    resources = await client.ApiextensionsV1Api(api).get_api_resources()
    assert resources.group_version == "apiextensions.k8s.io/v1"
    found = by_name(resources)
    crds = found["customresourcedefinitions"]
    assert crds.kind == "CustomResourceDefinition"
    assert crds.namespaced is False
    assert crds.short_names == ["crd", "crds"]
    assert set(crds.verbs) >= CRUD_VERBS
    assert "customresourcedefinitions/status" in found


async def test_new_crd_appears_in_discovery(api: client.ApiClient, widgets: Widgets) -> None:
    async def group_listed() -> Any:
        groups = await client.ApisApi(api).get_api_versions()
        return next((g for g in groups.groups if g.name == widgets.group), None)

    group = await eventually(group_listed, within=10, what="the CRD group in /apis")
    assert group.preferred_version.group_version == widgets.api_version
    assert [v.version for v in group.versions] == ["v1"]

    async def resources_listed() -> Any:
        try:
            return await client.CustomObjectsApi(api).get_api_resources(widgets.group, "v1")
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    resources = await eventually(resources_listed, within=10, what="the CRD group version")
    assert resources.group_version == widgets.api_version
    found = by_name(resources)
    assert found["widgets"].kind == "Widget"
    assert found["widgets"].singular_name == "widget"
    assert found["widgets"].namespaced is True
    assert set(found["widgets"].verbs) >= CRUD_VERBS
    assert found["widgets/status"].kind == "Widget"
    assert set(found["widgets/status"].verbs) == {"get", "patch", "update"}


async def test_version_is_v1_20(api: client.ApiClient) -> None:
    info = await client.VersionApi(api).get_code()
    assert info.major == "1"
    assert info.minor.startswith("20")
    assert info.git_version.startswith("v1.20.")
    assert info.platform
    assert info.go_version.startswith("go")
