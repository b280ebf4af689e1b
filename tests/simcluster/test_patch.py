"""JSON patch, merge patch and strategic merge patch behave like a v1.20 API server."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.simcluster.errors import ApiError, BadRequest
from app.simcluster.patch import (
    PATCH_CONTENT_TYPES,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
)

POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "p",
        "namespace": "default",
        "finalizers": ["a/x", "b/y"],
        "labels": {"app": "web"},
    },
    "spec": {
        "containers": [
            {
                "name": "app",
                "image": "nginx:1",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
            },
            {"name": "sidecar", "image": "envoy:1"},
        ],
        "volumes": [{"name": "data", "emptyDir": {}}],
        "tolerations": [{"key": "a", "operator": "Exists"}],
    },
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=10,
)
json_objects = st.dictionaries(st.text(max_size=4), json_values, max_size=4)


def test_content_types_are_the_four_patch_media_types() -> None:
    assert PATCH_CONTENT_TYPES == (
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
        "application/apply-patch+yaml",
    )


# ----------------------------------------------------------------------------- JSON patch


def test_json_patch_applies_ops_in_order_without_mutating_input() -> None:
    doc = {"spec": {"size": 1, "tags": ["a"]}}
    before = copy.deepcopy(doc)
    result = apply_json_patch(
        doc,
        [
            {"op": "replace", "path": "/spec/size", "value": 5},
            {"op": "add", "path": "/spec/tags/-", "value": "b"},
            {"op": "test", "path": "/spec/size", "value": 5},
            {"op": "remove", "path": "/spec/tags/0"},
        ],
    )
    assert result == {"spec": {"size": 5, "tags": ["b"]}}
    assert doc == before


def test_failed_test_op_is_the_bare_422_invalid() -> None:
    with pytest.raises(ApiError) as info:
        apply_json_patch({"spec": {"size": 1}}, [{"op": "test", "path": "/spec/size", "value": 2}])
    assert info.value.to_status() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "the server rejected our request due to an error in our request",
        "reason": "Invalid",
        "details": {},
        "code": 422,
    }
    assert "testing value /spec/size failed" in str(info.value.__cause__)


def test_test_op_tells_integer_from_boolean() -> None:
    with pytest.raises(ApiError):
        apply_json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": True}])


def test_removing_a_missing_path_is_422_naming_the_problem_in_the_cause() -> None:
    with pytest.raises(ApiError) as info:
        apply_json_patch({"spec": {}}, [{"op": "remove", "path": "/spec/nope"}])
    assert info.value.code == 422
    assert info.value.details == {}
    assert "nope" in str(info.value.__cause__)


def test_replace_of_a_missing_key_adds_it_like_evanphx_v4() -> None:
    assert apply_json_patch({"spec": {}}, [{"op": "replace", "path": "/spec/x", "value": 1}]) == {
        "spec": {"x": 1}
    }


def test_json_patch_that_is_not_a_list_is_a_bad_request() -> None:
    with pytest.raises(BadRequest) as info:
        apply_json_patch({}, {"op": "add"})
    assert info.value.message == (
        "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
    )
    with pytest.raises(BadRequest):
        apply_json_patch({}, ["add"])


def test_unknown_op_is_422() -> None:
    with pytest.raises(ApiError) as info:
        apply_json_patch({}, [{"op": "frobnicate", "path": "/a"}])
    assert info.value.code == 422


# ----------------------------------------------------------------------------- merge patch


def test_merge_patch_merges_objects_and_null_deletes() -> None:
    doc = {"spec": {"size": 1, "mode": "a", "nested": {"x": 1}}, "status": {"phase": "Ready"}}
    before = copy.deepcopy(doc)
    result = apply_merge_patch(
        doc, {"spec": {"size": 5, "mode": None, "nested": {"y": 2}}, "status": None}
    )
    assert result == {"spec": {"size": 5, "nested": {"x": 1, "y": 2}}}
    assert doc == before


def test_merge_patch_replaces_lists_and_strips_nulls_from_new_objects() -> None:
    result = apply_merge_patch({"a": [1, 2], "b": 1}, {"a": [3], "b": {"c": None, "d": 1}})
    assert result == {"a": [3], "b": {"d": 1}}


def test_merge_patch_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ApiError) as info:
        apply_merge_patch({"a": 1}, "x")
    assert (info.value.code, info.value.message) == (500, "Invalid JSON Patch")
    with pytest.raises(BadRequest):
        apply_merge_patch({"a": 1}, [1])


@given(json_objects)
def test_merge_patch_of_an_object_with_itself_is_identity(doc: dict[str, Any]) -> None:
    cleaned = apply_merge_patch({}, doc)
    assert apply_merge_patch(cleaned, cleaned) == cleaned


@given(json_objects, json_objects)
def test_merge_patch_never_mutates_inputs(doc: dict[str, Any], patch: dict[str, Any]) -> None:
    doc_before, patch_before = copy.deepcopy(doc), copy.deepcopy(patch)
    apply_merge_patch(doc, patch)
    assert (doc, patch) == (doc_before, patch_before)


# ----------------------------------------------------------------------------- strategic merge


def test_containers_merge_by_name_and_new_ones_are_appended() -> None:
    result = apply_strategic_merge_patch(
        POD,
        {
            "spec": {
                "containers": [
                    {"name": "sidecar", "image": "envoy:2"},
                    {"name": "extra", "image": "busybox"},
                ]
            }
        },
        "Pod",
    )
    assert result["spec"]["containers"] == [
        POD["spec"]["containers"][0],
        {"name": "sidecar", "image": "envoy:2"},
        {"name": "extra", "image": "busybox"},
    ]


def test_env_merges_by_name_inside_a_container() -> None:
    result = apply_strategic_merge_patch(
        POD,
        {
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "env": [{"name": "B", "value": "22"}, {"name": "C", "value": "3"}],
                    },
                ]
            }
        },
        "Pod",
    )
    assert result["spec"]["containers"][0]["env"] == [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "22"},
        {"name": "C", "value": "3"},
    ]


def test_list_without_strategy_is_replaced() -> None:
    result = apply_strategic_merge_patch(POD, {"spec": {"tolerations": [{"key": "b"}]}}, "Pod")
    assert result["spec"]["tolerations"] == [{"key": "b"}]


def test_finalizers_union_puts_new_patch_items_first_like_apimachinery() -> None:
    result = apply_strategic_merge_patch(POD, {"metadata": {"finalizers": ["c/z", "a/x"]}}, "Pod")
    assert result["metadata"]["finalizers"] == ["c/z", "a/x", "b/y"]


def test_delete_from_primitive_list() -> None:
    result = apply_strategic_merge_patch(
        POD, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a/x"]}}, "Pod"
    )
    assert result["metadata"]["finalizers"] == ["b/y"]


def test_patch_delete_directive_removes_a_list_element() -> None:
    result = apply_strategic_merge_patch(
        POD, {"spec": {"containers": [{"name": "app", "$patch": "delete"}]}}, "Pod"
    )
    assert [c["name"] for c in result["spec"]["containers"]] == ["sidecar"]


def test_patch_replace_directive_on_a_list() -> None:
    result = apply_strategic_merge_patch(
        POD,
        {"spec": {"containers": [{"name": "only", "image": "x"}, {"$patch": "replace"}]}},
        "Pod",
    )
    assert result["spec"]["containers"] == [{"name": "only", "image": "x"}]


def test_patch_replace_and_delete_directives_on_maps() -> None:
    replaced = apply_strategic_merge_patch(
        POD, {"metadata": {"labels": {"$patch": "replace", "new": "1"}}}, "Pod"
    )
    assert replaced["metadata"]["labels"] == {"new": "1"}
    deleted = apply_strategic_merge_patch(
        POD, {"metadata": {"labels": {"$patch": "delete"}}}, "Pod"
    )
    assert deleted["metadata"]["labels"] == {}


def test_patch_merge_directive_on_a_map_is_an_error_like_apimachinery() -> None:
    with pytest.raises(ApiError) as info:
        apply_strategic_merge_patch(POD, {"metadata": {"labels": {"$patch": "merge"}}}, "Pod")
    assert info.value.message == "unknown patch type: merge in map: map[$patch:merge]"


def test_retain_keys_clears_unlisted_fields() -> None:
    result = apply_strategic_merge_patch(
        POD,
        {
            "spec": {
                "volumes": [
                    {
                        "name": "data",
                        "hostPath": {"path": "/x"},
                        "$retainKeys": ["name", "hostPath"],
                    },
                ]
            }
        },
        "Pod",
    )
    assert result["spec"]["volumes"] == [{"name": "data", "hostPath": {"path": "/x"}}]


def test_retain_keys_must_list_every_patched_field() -> None:
    with pytest.raises(BadRequest) as info:
        apply_strategic_merge_patch(
            POD,
            {
                "spec": {
                    "volumes": [
                        {"name": "data", "hostPath": {"path": "/x"}, "$retainKeys": ["name"]},
                    ]
                }
            },
            "Pod",
        )
    assert info.value.message == "invalid patch format of retainKeys"


def test_set_element_order_reorders_and_leaves_no_directive() -> None:
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
            "containers": [{"name": "app", "image": "nginx:2"}],
        }
    }
    result = apply_strategic_merge_patch(POD, patch, "Pod")
    assert [c["name"] for c in result["spec"]["containers"]] == ["sidecar", "app"]
    assert result["spec"]["containers"][1]["image"] == "nginx:2"
    assert "$setElementOrder/containers" not in result["spec"]


def test_service_ports_merge_by_port() -> None:
    svc = {"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}}
    result = apply_strategic_merge_patch(
        svc, {"spec": {"ports": [{"port": 443, "targetPort": 8443}]}}, "Service"
    )
    assert result["spec"]["ports"] == [
        {"port": 80, "name": "http"},
        {"port": 443, "name": "https", "targetPort": 8443},
    ]


def test_node_conditions_merge_by_type() -> None:
    node = {
        "status": {
            "conditions": [
                {"type": "Ready", "status": "False"},
                {"type": "DiskPressure", "status": "False"},
            ]
        }
    }
    result = apply_strategic_merge_patch(
        node, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}, "Node"
    )
    assert result["status"]["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "DiskPressure", "status": "False"},
    ]


def test_unknown_kind_replaces_lists() -> None:
    obj = {"metadata": {"finalizers": ["a"]}, "spec": {"items": [{"name": "x", "v": 1}]}}
    result = apply_strategic_merge_patch(
        obj, {"metadata": {"finalizers": ["b"]}, "spec": {"items": [{"name": "x"}]}}, "Widget"
    )
    assert result == {"metadata": {"finalizers": ["b"]}, "spec": {"items": [{"name": "x"}]}}


def test_null_deletes_and_directives_never_survive_in_new_values() -> None:
    result = apply_strategic_merge_patch(
        POD,
        {
            "metadata": {"labels": None},
            "spec": {"dnsConfig": {"options": None, "$patch": "replace"}},
        },
        "Pod",
    )
    assert "labels" not in result["metadata"]
    assert result["spec"]["dnsConfig"] == {}


def test_strategic_merge_never_mutates_inputs() -> None:
    doc, patch = copy.deepcopy(POD), {"spec": {"containers": [{"name": "app", "image": "x"}]}}
    patch_before = copy.deepcopy(patch)
    apply_strategic_merge_patch(doc, patch, "Pod")
    assert (doc, patch) == (POD, patch_before)


def test_strategic_patch_that_is_not_an_object_is_a_bad_request() -> None:
    with pytest.raises(BadRequest) as info:
        apply_strategic_merge_patch(POD, [1], "Pod")  # type: ignore[arg-type]
    assert info.value.message == (
        "json: cannot unmarshal array into Go value of type map[string]interface {}"
    )


def _no_directives(value: Any) -> bool:
    if isinstance(value, dict):
        return all(not k.startswith("$") and _no_directives(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_no_directives(v) for v in value)
    return True


@given(
    st.dictionaries(
        st.sampled_from(["app", "sidecar", "new"]), st.sampled_from(["img:1", "img:2"]), max_size=3
    ),
    st.permutations(["app", "sidecar", "new"]),
)
def test_set_element_order_results_follow_the_requested_order(
    images: dict[str, str], order: list[str]
) -> None:
    patch = {
        "spec": {
            "$setElementOrder/containers": [
                {"name": n} for n in order if n in images or n in ("app", "sidecar")
            ],
            "containers": [{"name": n, "image": i} for n, i in images.items()],
        }
    }
    result = apply_strategic_merge_patch(POD, patch, "Pod")
    names = [c["name"] for c in result["spec"]["containers"]]
    assert names == [n for n in order if n in names]
    assert _no_directives(result)


@given(json_objects)
def test_strategic_merge_of_unknown_kind_with_itself_is_identity(doc: dict[str, Any]) -> None:
    cleaned = apply_merge_patch({}, doc)
    assert apply_strategic_merge_patch(cleaned, cleaned, "Unknown") == cleaned
