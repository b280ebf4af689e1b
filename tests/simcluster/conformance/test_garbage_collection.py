"""Owner-reference garbage collection: background deletion, orphaning, several owners."""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes_asyncio import client

from tests.simcluster.conformance.support import MERGE, Widgets, eventually, is_gone, wait_gone

GC_WAIT = 60
"""Seconds the garbage collector may take (a real one reacts within seconds)."""

CRD_GC_WAIT = 120
"""A real garbage collector picks up a brand-new resource type only at its next discovery
resync (every 30 s), so dependents of a custom resource may take longer."""


def owner_ref(kind: str, name: str, uid: str, api_version: str = "v1") -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid}


async def make_cm(
    core: client.CoreV1Api, namespace: str, name: str, owners: list[dict[str, Any]] | None = None
) -> client.V1ConfigMap:
    meta: dict[str, Any] = {"name": name}
    if owners:
        meta["ownerReferences"] = owners
    return await core.create_namespaced_config_map(namespace, {"metadata": meta})


async def test_dependent_is_deleted_after_its_owner(core: client.CoreV1Api, namespace: str) -> None:
    owner = await make_cm(core, namespace, "owner")
    dependent = await make_cm(
        core, namespace, "dependent", [owner_ref("ConfigMap", "owner", owner.metadata.uid)]
    )
    assert dependent.metadata.owner_references[0].uid == owner.metadata.uid
    bystander = await make_cm(core, namespace, "bystander")

    await core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")
    await wait_gone(
        lambda: core.read_namespaced_config_map("dependent", namespace),
        within=GC_WAIT,
        what="the dependent configmap",
    )
    assert (await core.read_namespaced_config_map("bystander", namespace)).metadata.uid == (
        bystander.metadata.uid
    )


async def test_dependent_chain_is_collected(core: client.CoreV1Api, namespace: str) -> None:
    root = await make_cm(core, namespace, "root")
    middle = await make_cm(
        core, namespace, "middle", [owner_ref("ConfigMap", "root", root.metadata.uid)]
    )
    await make_cm(core, namespace, "leaf", [owner_ref("ConfigMap", "middle", middle.metadata.uid)])
    await core.delete_namespaced_config_map("root", namespace)
    await wait_gone(
        lambda: core.read_namespaced_config_map("leaf", namespace), within=GC_WAIT, what="leaf"
    )
    assert await is_gone(lambda: core.read_namespaced_config_map("middle", namespace))


async def test_dependent_of_a_custom_resource_is_deleted(
    core: client.CoreV1Api, widgets: Widgets, namespace: str
) -> None:
    owner = await widgets.make(namespace, "owner")
    await make_cm(
        core,
        namespace,
        "dependent",
        [owner_ref("Widget", "owner", owner["metadata"]["uid"], widgets.api_version)],
    )
    await widgets.delete(namespace, "owner")
    await wait_gone(
        lambda: core.read_namespaced_config_map("dependent", namespace),
        within=CRD_GC_WAIT,
        what="the configmap owned by a widget",
    )


async def test_orphan_propagation_keeps_dependent_without_owner_reference(
    core: client.CoreV1Api, namespace: str
) -> None:
    owner = await make_cm(core, namespace, "owner")
    await make_cm(
        core, namespace, "dependent", [owner_ref("ConfigMap", "owner", owner.metadata.uid)]
    )

    await core.delete_namespaced_config_map("owner", namespace, propagation_policy="Orphan")
    await wait_gone(
        lambda: core.read_namespaced_config_map("owner", namespace), within=GC_WAIT, what="owner"
    )

    async def orphaned() -> bool:
        dependent = await core.read_namespaced_config_map("dependent", namespace)
        return not dependent.metadata.owner_references

    await eventually(orphaned, within=GC_WAIT, what="the ownerReference to be removed")
    await asyncio.sleep(2)
    dependent = await core.read_namespaced_config_map("dependent", namespace)
    assert dependent.metadata.deletion_timestamp is None
    assert not dependent.metadata.owner_references


async def test_object_with_two_owners_lives_until_both_are_gone(
    core: client.CoreV1Api, namespace: str
) -> None:
    a = await make_cm(core, namespace, "owner-a")
    b = await make_cm(core, namespace, "owner-b")
    await make_cm(
        core,
        namespace,
        "shared",
        [
            owner_ref("ConfigMap", "owner-a", a.metadata.uid),
            owner_ref("ConfigMap", "owner-b", b.metadata.uid),
        ],
    )

    await core.delete_namespaced_config_map("owner-a", namespace)
    await wait_gone(
        lambda: core.read_namespaced_config_map("owner-a", namespace), within=GC_WAIT, what="a"
    )
    await asyncio.sleep(3)
    shared = await core.read_namespaced_config_map("shared", namespace)
    assert shared.metadata.deletion_timestamp is None

    await core.delete_namespaced_config_map("owner-b", namespace)
    await wait_gone(
        lambda: core.read_namespaced_config_map("shared", namespace),
        within=GC_WAIT,
        what="the configmap once both owners are gone",
    )


async def test_foreground_deletion_waits_for_dependents(
    core: client.CoreV1Api, namespace: str
) -> None:
    owner = await make_cm(core, namespace, "owner")
    await core.create_namespaced_config_map(
        namespace,
        {
            "metadata": {
                "name": "dependent",
                "finalizers": ["conformance.example.com/hold"],
                "ownerReferences": [
                    {
                        **owner_ref("ConfigMap", "owner", owner.metadata.uid),
                        "blockOwnerDeletion": True,
                    }
                ],
            }
        },
    )
    await core.delete_namespaced_config_map("owner", namespace, propagation_policy="Foreground")
    marked = await core.read_namespaced_config_map("owner", namespace)
    assert marked.metadata.deletion_timestamp is not None
    assert "foregroundDeletion" in (marked.metadata.finalizers or [])

    async def dependent_deleting() -> bool:
        dependent = await core.read_namespaced_config_map("dependent", namespace)
        return dependent.metadata.deletion_timestamp is not None

    await eventually(dependent_deleting, within=GC_WAIT, what="the dependent to be deleted")
    # the owner waits for its blocking dependent
    assert (await core.read_namespaced_config_map("owner", namespace)).metadata.deletion_timestamp

    await core.patch_namespaced_config_map(
        "dependent", namespace, {"metadata": {"finalizers": None}}, _content_type=MERGE
    )
    await wait_gone(
        lambda: core.read_namespaced_config_map("dependent", namespace),
        within=GC_WAIT,
        what="dependent",
    )
    await wait_gone(
        lambda: core.read_namespaced_config_map("owner", namespace), within=GC_WAIT, what="owner"
    )
