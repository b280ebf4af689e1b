"""Failures answered as Status objects: 404, 409, 422 (schema, names), 400, unknown types."""

from __future__ import annotations

import json

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiException

from tests.simcluster.conformance.support import (
    RFC1123_SUBDOMAIN_MESSAGE,
    Widgets,
    assert_status,
    raw_request,
    unique,
)


async def test_get_missing_custom_resource_is_not_found(widgets: Widgets, namespace: str) -> None:
    with pytest.raises(ApiException) as info:
        await widgets.get(namespace, "nope")
    status = assert_status(info.value, 404, "NotFound", f'widgets.{widgets.group} "nope" not found')
    assert status["details"] == {"name": "nope", "group": widgets.group, "kind": "widgets"}


async def test_get_missing_configmap_is_not_found(core: client.CoreV1Api, namespace: str) -> None:
    with pytest.raises(ApiException) as info:
        await core.read_namespaced_config_map("nope", namespace)
    status = assert_status(info.value, 404, "NotFound", 'configmaps "nope" not found')
    assert status["details"] == {"name": "nope", "kind": "configmaps"}


async def test_get_missing_namespace_is_not_found(core: client.CoreV1Api) -> None:
    name = unique("missing")
    with pytest.raises(ApiException) as info:
        await core.read_namespace(name)
    status = assert_status(info.value, 404, "NotFound", f'namespaces "{name}" not found')
    assert status["details"] == {"name": name, "kind": "namespaces"}


async def test_delete_missing_object_is_not_found(core: client.CoreV1Api, namespace: str) -> None:
    with pytest.raises(ApiException) as info:
        await core.delete_namespaced_secret("nope", namespace)
    assert_status(info.value, 404, "NotFound", 'secrets "nope" not found')


async def test_create_existing_custom_resource_already_exists(
    widgets: Widgets, namespace: str
) -> None:
    await widgets.make(namespace, "w1")
    with pytest.raises(ApiException) as info:
        await widgets.make(namespace, "w1")
    status = assert_status(
        info.value, 409, "AlreadyExists", f'widgets.{widgets.group} "w1" already exists'
    )
    assert status["details"] == {"name": "w1", "group": widgets.group, "kind": "widgets"}


async def test_create_existing_configmap_already_exists(
    core: client.CoreV1Api, namespace: str
) -> None:
    await core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}})
    with pytest.raises(ApiException) as info:
        await core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm"}})
    status = assert_status(info.value, 409, "AlreadyExists", 'configmaps "cm" already exists')
    assert status["details"] == {"name": "cm", "kind": "configmaps"}


async def test_create_existing_namespace_already_exists(
    core: client.CoreV1Api, namespace: str
) -> None:
    with pytest.raises(ApiException) as info:
        await core.create_namespace({"metadata": {"name": namespace}})
    status = assert_status(
        info.value, 409, "AlreadyExists", f'namespaces "{namespace}" already exists'
    )
    assert status["details"] == {"name": namespace, "kind": "namespaces"}


async def test_schema_violations_are_listed(widgets: Widgets, namespace: str) -> None:
    with pytest.raises(ApiException) as info:
        await widgets.make(namespace, "w2", size=99, mode="z")
    status = assert_status(info.value, 422, "Invalid")
    mode_error = 'spec.mode: Unsupported value: "z": supported values: "a", "b"'
    size_error = (
        "spec.size: Invalid value: 99: spec.size in body should be less than or equal to 10"
    )
    prefix = f'Widget.{widgets.group} "w2" is invalid: '
    assert status["message"] in (
        f"{prefix}[{mode_error}, {size_error}]",
        f"{prefix}[{size_error}, {mode_error}]",
    )
    details = status["details"]
    assert details["name"] == "w2"
    assert details["group"] == widgets.group
    assert details["kind"] == "Widget"
    causes = sorted(details["causes"], key=lambda c: c["field"])
    assert causes == [
        {
            "reason": "FieldValueNotSupported",
            "message": 'Unsupported value: "z": supported values: "a", "b"',
            "field": "spec.mode",
        },
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: 99: spec.size in body should be less than or equal to 10",
            "field": "spec.size",
        },
    ]


async def test_schema_minimum_violation(widgets: Widgets, namespace: str) -> None:
    with pytest.raises(ApiException) as info:
        await widgets.make(namespace, "w", size=0)
    status = assert_status(
        info.value,
        422,
        "Invalid",
        f'Widget.{widgets.group} "w" is invalid: spec.size: Invalid value: 0: spec.size in body '
        "should be greater than or equal to 1",
    )
    assert status["details"]["causes"] == [
        {
            "reason": "FieldValueInvalid",
            "message": "Invalid value: 0: spec.size in body should be greater than or equal to 1",
            "field": "spec.size",
        }
    ]


async def test_schema_type_violation(widgets: Widgets, namespace: str) -> None:
    with pytest.raises(ApiException) as info:
        await widgets.make(namespace, "w", size="big")
    status = assert_status(
        info.value,
        422,
        "Invalid",
        f'Widget.{widgets.group} "w" is invalid: spec.size: Invalid value: "string": spec.size '
        'in body must be of type integer: "string"',
    )
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.size"]


async def test_schema_is_checked_on_update_and_patch(widgets: Widgets, namespace: str) -> None:
    created = await widgets.make(namespace, "w")
    with pytest.raises(ApiException) as info:
        await widgets.patch(namespace, "w", {"spec": {"mode": "c"}})
    status = assert_status(info.value, 422, "Invalid")
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.mode"]

    created["spec"]["size"] = 11
    with pytest.raises(ApiException) as info:
        await widgets.replace(namespace, "w", created)
    status = assert_status(info.value, 422, "Invalid")
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.size"]
    assert (await widgets.get(namespace, "w"))["spec"] == {"size": 3, "mode": "a"}


async def test_invalid_custom_resource_name(widgets: Widgets, namespace: str) -> None:
    with pytest.raises(ApiException) as info:
        await widgets.make(namespace, "Bad_Name")
    cause_message = f'Invalid value: "Bad_Name": {RFC1123_SUBDOMAIN_MESSAGE}'
    status = assert_status(
        info.value,
        422,
        "Invalid",
        f'Widget.{widgets.group} "Bad_Name" is invalid: metadata.name: {cause_message}',
    )
    assert status["details"]["name"] == "Bad_Name"
    assert status["details"]["kind"] == "Widget"
    assert status["details"]["causes"] == [
        {"reason": "FieldValueInvalid", "message": cause_message, "field": "metadata.name"}
    ]


async def test_invalid_configmap_name(core: client.CoreV1Api, namespace: str) -> None:
    with pytest.raises(ApiException) as info:
        await core.create_namespaced_config_map(namespace, {"metadata": {"name": "Bad_Name"}})
    cause_message = f'Invalid value: "Bad_Name": {RFC1123_SUBDOMAIN_MESSAGE}'
    status = assert_status(
        info.value,
        422,
        "Invalid",
        f'ConfigMap "Bad_Name" is invalid: metadata.name: {cause_message}',
    )
    assert status["details"] == {
        "name": "Bad_Name",
        "kind": "ConfigMap",
        "causes": [
            {"reason": "FieldValueInvalid", "message": cause_message, "field": "metadata.name"}
        ],
    }


async def test_malformed_json_body_is_bad_request(
    api: client.ApiClient, widgets: Widgets, namespace: str
) -> None:
    resp = await raw_request(
        api,
        "POST",
        f"{widgets.path}/namespaces/{namespace}/widgets",
        body=b"{not json",
        content_type="application/json",
    )
    assert resp.status == 400, resp.body
    status = resp.json()
    assert status["kind"] == "Status"
    assert status["reason"] == "BadRequest"
    assert status["code"] == 400
    assert status["message"].startswith(
        "the object provided is unrecognized (must be of type Widget): "
    ), status["message"]


async def test_malformed_json_body_for_configmap_is_bad_request(
    api: client.ApiClient, namespace: str
) -> None:
    resp = await raw_request(
        api,
        "POST",
        f"/api/v1/namespaces/{namespace}/configmaps",
        body=b"{not json",
        content_type="application/json",
    )
    assert resp.status == 400, resp.body
    status = resp.json()
    assert status["kind"] == "Status"
    assert status["reason"] == "BadRequest"
    assert status["code"] == 400


async def test_unknown_resource_type_is_plain_404(
    api: client.ApiClient, widgets: Widgets, namespace: str
) -> None:
    resp = await raw_request(api, "GET", f"{widgets.path}/namespaces/{namespace}/gadgets")
    assert resp.status == 404
    assert resp.content_type.startswith("text/plain"), resp.content_type
    assert resp.body == b"404 page not found\n"

    with pytest.raises(ApiException) as info:
        await client.CustomObjectsApi(api).list_namespaced_custom_object(
            widgets.group, "v1", namespace, "gadgets"
        )
    assert info.value.status == 404


async def test_unknown_api_group_is_404(api: client.ApiClient, namespace: str) -> None:
    with pytest.raises(ApiException) as info:
        await client.CustomObjectsApi(api).list_namespaced_custom_object(
            "nothing-here.conformance.example.com", "v1", namespace, "gadgets"
        )
    assert info.value.status == 404


async def test_status_body_is_json(core: client.CoreV1Api, namespace: str) -> None:
    """Errors of a known resource are JSON Status objects (not text)."""
    with pytest.raises(ApiException) as info:
        await core.read_namespaced_pod("nope", namespace)
    assert info.value.headers["Content-Type"].startswith("application/json")
    assert json.loads(info.value.body)["reason"] == "NotFound"
