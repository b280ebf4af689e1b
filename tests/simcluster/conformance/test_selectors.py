"""Label selectors and field selectors on lists."""

from __future__ import annotations

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiException

from tests.simcluster.conformance.support import (
    Widgets,
    assert_status,
    create_pod,
    unique,
    unschedulable_pod_body,
)

LABELS = {
    "a": {"env": "prod", "tier": "web"},
    "b": {"env": "dev", "tier": "web"},
    "c": {"env": "prod"},
    "d": {},
}


@pytest.fixture
async def labelled(core: client.CoreV1Api, namespace: str) -> str:
    """ConfigMaps a..d carrying LABELS plus a per-test ``suite`` label; returns that label."""
    suite = unique("s")
    for name, labels in LABELS.items():
        await core.create_namespaced_config_map(
            namespace, {"metadata": {"name": name, "labels": {"suite": suite, **labels}}}
        )
    return suite


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("env=prod", ["a", "c"]),
        ("env==prod", ["a", "c"]),
        ("env!=prod", ["b", "d"]),
        ("env in (prod,dev)", ["a", "b", "c"]),
        ("env notin (prod)", ["b", "d"]),
        ("tier", ["a", "b"]),
        ("!tier", ["c", "d"]),
        ("env=prod,tier=web", ["a"]),
        ("env in (prod),!tier", ["c"]),
        ("env=staging", []),
    ],
)
async def test_label_selector(
    core: client.CoreV1Api, namespace: str, labelled: str, selector: str, expected: list[str]
) -> None:
    listed = await core.list_namespaced_config_map(
        namespace, label_selector=f"suite={labelled},{selector}"
    )
    assert sorted(c.metadata.name for c in listed.items) == expected


async def test_label_selector_on_custom_resources(widgets: Widgets, namespace: str) -> None:
    await widgets.make(namespace, "w1", labels={"color": "red"})
    await widgets.make(namespace, "w2", labels={"color": "blue"})
    await widgets.make(namespace, "w3")
    red = await widgets.list(namespace, label_selector="color=red")
    assert [w["metadata"]["name"] for w in red["items"]] == ["w1"]
    colored = await widgets.list(namespace, label_selector="color")
    assert [w["metadata"]["name"] for w in colored["items"]] == ["w1", "w2"]
    not_red = await widgets.list(namespace, label_selector="color notin (red)")
    assert [w["metadata"]["name"] for w in not_red["items"]] == ["w2", "w3"]


async def test_bad_label_selector_is_bad_request(widgets: Widgets, namespace: str) -> None:
    with pytest.raises(ApiException) as info:
        await widgets.list(namespace, label_selector="a in (b")
    assert_status(
        info.value, 400, "BadRequest", "unable to parse requirement: found '', expected: ',' or ')'"
    )


async def test_bad_label_selector_on_configmaps_is_bad_request(
    core: client.CoreV1Api, namespace: str
) -> None:
    with pytest.raises(ApiException) as info:
        await core.list_namespaced_config_map(namespace, label_selector="a in (b")
    status = assert_status(info.value, 400, "BadRequest")
    assert "unable to parse requirement" in status["message"]


async def test_field_selector_metadata_name(
    core: client.CoreV1Api, namespace: str, labelled: str
) -> None:
    one = await core.list_namespaced_config_map(namespace, field_selector="metadata.name=b")
    assert [c.metadata.name for c in one.items] == ["b"]
    others = await core.list_namespaced_config_map(
        namespace, field_selector="metadata.name!=b", label_selector=f"suite={labelled}"
    )
    assert [c.metadata.name for c in others.items] == ["a", "c", "d"]
    both = await core.list_namespaced_config_map(
        namespace, field_selector="metadata.name=b", label_selector="env=prod"
    )
    assert both.items == []


async def test_field_selector_metadata_namespace(
    core: client.CoreV1Api, namespace: str, labelled: str
) -> None:
    other = unique("t-other")
    await core.create_namespace({"metadata": {"name": other}})
    try:
        await core.create_namespaced_config_map(
            other, {"metadata": {"name": "a", "labels": {"suite": labelled}}}
        )
        everywhere = await core.list_config_map_for_all_namespaces(
            label_selector=f"suite={labelled}"
        )
        assert sorted((c.metadata.namespace, c.metadata.name) for c in everywhere.items) == sorted(
            [(namespace, n) for n in LABELS] + [(other, "a")]
        )
        only_other = await core.list_config_map_for_all_namespaces(
            label_selector=f"suite={labelled}", field_selector=f"metadata.namespace={other}"
        )
        assert [(c.metadata.namespace, c.metadata.name) for c in only_other.items] == [(other, "a")]
    finally:
        await core.delete_namespace(other)


async def test_field_selectors_on_pods(core: client.CoreV1Api, namespace: str) -> None:
    """Pods bound to nodes that do not exist: nothing runs them, they stay Pending."""
    await create_pod(
        core, namespace, unschedulable_pod_body("p1", extra_spec={"nodeName": "conformance-x"})
    )
    await create_pod(
        core, namespace, unschedulable_pod_body("p2", extra_spec={"nodeName": "conformance-y"})
    )
    await create_pod(core, namespace, unschedulable_pod_body("p3"))

    async def names(selector: str) -> list[str]:
        pods = await core.list_namespaced_pod(namespace, field_selector=selector)
        return sorted(p.metadata.name for p in pods.items)

    assert await names("spec.nodeName=conformance-x") == ["p1"]
    assert await names("spec.nodeName!=conformance-x") == ["p2", "p3"]
    assert await names("spec.nodeName=") == ["p3"]
    assert await names("status.phase=Pending") == ["p1", "p2", "p3"]
    assert await names("status.phase=Running") == []
    assert await names("metadata.name=p2") == ["p2"]
    assert await names(f"metadata.namespace={namespace},spec.nodeName=conformance-y") == ["p2"]


async def test_unsupported_field_selector_on_custom_resource(
    widgets: Widgets, namespace: str
) -> None:
    await widgets.make(namespace, "w", size=3)
    with pytest.raises(ApiException) as info:
        await widgets.list(namespace, field_selector="spec.size=3")
    assert_status(info.value, 400, "BadRequest", "field label not supported: spec.size")

    by_name = await widgets.list(namespace, field_selector="metadata.name=w")
    assert [w["metadata"]["name"] for w in by_name["items"]] == ["w"]
    by_namespace = await widgets.list(namespace, field_selector=f"metadata.namespace={namespace}")
    assert [w["metadata"]["name"] for w in by_namespace["items"]] == ["w"]
