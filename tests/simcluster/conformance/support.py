"""Helpers of the conformance suite: polling, raw HTTP, Status bodies, the Widget CRD."""

from __future__ import annotations

import asyncio
import json
import secrets
import string
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client import ApiException

T = TypeVar("T")

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"

PAUSE_IMAGE = "registry.k8s.io/pause:3.2"
"""A small image a real node can pull; the simulated nodes accept any resolvable name."""

GENERATE_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
"""The alphabet of apimachinery's ``utilrand.String`` (used for ``generateName``)."""

RFC1123_SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
    "regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)

UNSUPPORTED_PATCH_MESSAGE = (
    "the body of the request was in an unknown format - accepted media types include: "
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
)


def unique(prefix: str) -> str:
    """A DNS-1123 name unique enough for one test run."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def random_group() -> str:
    letters = "".join(secrets.choice(string.ascii_lowercase) for _ in range(10))
    return f"{letters}.conformance.example.com"


def status_of(exc: ApiException) -> dict[str, Any]:
    """The Status object of a failed call (its JSON body)."""
    assert exc.body, f"HTTP {exc.status} without a body"
    body = json.loads(exc.body)
    assert isinstance(body, dict)
    return body


def assert_status(
    exc: ApiException, code: int, reason: str, message: str | None = None
) -> dict[str, Any]:
    """Check that ``exc`` is the Status ``code``/``reason`` (and ``message``, when given)."""
    assert exc.status == code, (exc.status, exc.body)
    status = status_of(exc)
    assert status["kind"] == "Status", status
    assert status["apiVersion"] == "v1", status
    assert status["status"] == "Failure", status
    assert status["code"] == code, status
    assert status["reason"] == reason, status
    if message is not None:
        assert status["message"] == message, status
    return status


async def eventually(
    check: Callable[[], Awaitable[T]],
    *,
    within: float,
    what: str,
    interval: float = 0.2,
) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last: T | None = None
    while True:
        last = await check()
        if last:
            return last
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(interval)


async def is_gone(read: Callable[[], Awaitable[Any]]) -> bool:
    """True when ``read()`` answers 404."""
    try:
        await read()
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


async def wait_gone(read: Callable[[], Awaitable[Any]], *, within: float, what: str) -> None:
    await eventually(lambda: is_gone(read), within=within, what=f"{what} to be gone")


@dataclass
class RawResponse:
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_request(
    api: client.ApiClient,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    content_type: str | None = None,
    params: dict[str, str] | None = None,
    seconds: float = 30,
) -> RawResponse:
    """One HTTP request with the ApiClient's connection and credentials, body sent verbatim."""
    headers: dict[str, str] = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    await api.update_params_for_auth(headers, [], ["BearerToken"])
    extra: dict[str, Any] = {}
    if api.rest_client.server_hostname:
        extra["server_hostname"] = api.rest_client.server_hostname
    async with api.rest_client.pool_manager.request(
        method,
        api.configuration.host + path,
        headers=headers,
        params=params,
        data=body,
        timeout=aiohttp.ClientTimeout(total=seconds),
        **extra,
    ) as resp:
        return RawResponse(resp.status, resp.headers.get("Content-Type", ""), await resp.read())


async def watch_events(
    func: Callable[..., Any],
    *args: Any,
    seconds: int,
    count: int | None = None,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Watch through ``func`` (server-side ``timeoutSeconds=seconds``), collect events.

    Stops after ``count`` events, or when the server ends the stream.  Bounded client-side too.
    """
    events: list[dict[str, Any]] = []
    async with watch.Watch() as w:

        async def run() -> None:
            async for event in w.stream(
                func, *args, timeout_seconds=seconds, _request_timeout=seconds + 15, **kwargs
            ):
                events.append(event)
                if count is not None and len(events) >= count:
                    w.stop()
                    break

        await asyncio.wait_for(run(), seconds + 20)
    return events


def rv(obj: Any) -> int:
    """The resourceVersion of a typed object or dict, as an int (it must be a decimal string)."""
    if isinstance(obj, dict):
        value = obj["metadata"]["resourceVersion"]
    else:
        value = obj.metadata.resource_version
    assert isinstance(value, str), value
    assert value.isdigit(), value
    return int(value)


async def create_pod(core: client.CoreV1Api, namespace: str, body: dict[str, Any]) -> Any:
    """Create a pod, retrying while the namespace's ``default`` service account is not ready.

    A real API server refuses pods until the service-account controller created the account
    (403 "error looking up service account") and, for a pod that mounts its token, until the
    token controller created the token Secret (500 ServerTimeout "No API token found for
    service account", with ``retryAfterSeconds``).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        try:
            return await core.create_namespaced_pod(namespace, body)
        except ApiException as exc:
            if not service_account_not_ready(exc):
                raise
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(0.5)


def service_account_not_ready(exc: ApiException) -> bool:
    """The pod was refused only because its namespace's service account is not ready yet."""
    body = exc.body or ""
    if exc.status == 403:
        return "service account" in body
    if exc.status == 500:
        return '"ServerTimeout"' in body and "No API token found for service account" in body
    return False


def pod_body(
    name: str,
    *,
    image: str = PAUSE_IMAGE,
    labels: dict[str, str] | None = None,
    extra_spec: dict[str, Any] | None = None,
    containers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": containers or [{"name": "c", "image": image}],
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 5,
    }
    spec.update(extra_spec or {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
    }


def unschedulable_pod_body(name: str, **kwargs: Any) -> dict[str, Any]:
    """A pod no scheduler picks up (unknown schedulerName): it stays Pending, unbound."""
    extra = {"schedulerName": "conformance-no-such-scheduler"}
    extra.update(kwargs.pop("extra_spec", {}) or {})
    return pod_body(name, extra_spec=extra, **kwargs)


# --- the Widget custom resource ---------------------------------------------------------------


def widget_crd_manifest(group: str) -> dict[str, Any]:
    """Like the probe CRD of K8S-API-FACTS: spec.size 1..10, spec.mode a|b, status subresource."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "plural": "widgets",
                "singular": "widget",
                "kind": "Widget",
                "listKind": "WidgetList",
            },
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                        {"name": "Mode", "type": "string", "jsonPath": ".spec.mode"},
                        {
                            "name": "Age",
                            "type": "date",
                            "jsonPath": ".metadata.creationTimestamp",
                        },
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {
                                        "size": {"type": "integer", "minimum": 1, "maximum": 10},
                                        "mode": {"type": "string", "enum": ["a", "b"]},
                                    },
                                },
                                "status": {
                                    "type": "object",
                                    "properties": {
                                        "phase": {"type": "string"},
                                        "observedGeneration": {"type": "integer"},
                                    },
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


def crd_established(crd: Any) -> bool:
    conditions = (crd.status.conditions if crd.status else None) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


async def wait_established(ext: client.ApiextensionsV1Api, name: str, within: float = 10) -> Any:
    async def check() -> Any:
        crd = await ext.read_custom_resource_definition(name)
        return crd if crd_established(crd) else None

    return await eventually(check, within=within, what=f"CRD {name} to be Established")


@dataclass
class Widgets:
    """The Widget resource of one test's own API group, through CustomObjectsApi."""

    api: client.ApiClient
    group: str
    version: str = "v1"
    plural: str = "widgets"
    kind: str = "Widget"

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{self.group}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def path(self) -> str:
        return f"/apis/{self.group}/{self.version}"

    def body(
        self,
        name: str | None = None,
        *,
        size: int | Any = 3,
        mode: str = "a",
        **metadata: Any,
    ) -> dict[str, Any]:
        meta: dict[str, Any] = dict(metadata)
        if name is not None:
            meta["name"] = name
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": meta,
            "spec": {"size": size, "mode": mode},
        }

    async def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.custom.create_namespaced_custom_object(
            self.group, self.version, namespace, self.plural, body
        )

    async def make(self, namespace: str, name: str, **kwargs: Any) -> dict[str, Any]:
        return await self.create(namespace, self.body(name, **kwargs))

    async def get(self, namespace: str, name: str) -> dict[str, Any]:
        return await self.custom.get_namespaced_custom_object(
            self.group, self.version, namespace, self.plural, name
        )

    async def list(self, namespace: str, **kwargs: Any) -> dict[str, Any]:
        return await self.custom.list_namespaced_custom_object(
            self.group, self.version, namespace, self.plural, **kwargs
        )

    async def replace(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.custom.replace_namespaced_custom_object(
            self.group, self.version, namespace, self.plural, name, body
        )

    async def replace_status(
        self, namespace: str, name: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        return await self.custom.replace_namespaced_custom_object_status(
            self.group, self.version, namespace, self.plural, name, body
        )

    async def patch(
        self, namespace: str, name: str, body: Any, content_type: str = MERGE
    ) -> dict[str, Any]:
        return await self.custom.patch_namespaced_custom_object(
            self.group,
            self.version,
            namespace,
            self.plural,
            name,
            body,
            _content_type=content_type,
        )

    async def patch_status(
        self, namespace: str, name: str, body: Any, content_type: str = MERGE
    ) -> dict[str, Any]:
        return await self.custom.patch_namespaced_custom_object_status(
            self.group,
            self.version,
            namespace,
            self.plural,
            name,
            body,
            _content_type=content_type,
        )

    async def delete(self, namespace: str, name: str, **kwargs: Any) -> Any:
        return await self.custom.delete_namespaced_custom_object(
            self.group, self.version, namespace, self.plural, name, **kwargs
        )

    async def strip_all_finalizers(self) -> None:
        """Remove the finalizers of every Widget in every namespace (cleanup)."""
        try:
            listing = await self.custom.list_cluster_custom_object(
                self.group, self.version, self.plural
            )
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        for item in listing.get("items", []):
            if item["metadata"].get("finalizers"):
                try:
                    await self.patch(
                        item["metadata"]["namespace"],
                        item["metadata"]["name"],
                        {"metadata": {"finalizers": None}},
                    )
                except ApiException as exc:
                    if exc.status != 404:
                        raise


async def install_widgets(api: client.ApiClient, group: str | None = None) -> Widgets:
    """Create a Widget CRD in a fresh API group and wait until it is Established."""
    group = group or random_group()
    ext = client.ApiextensionsV1Api(api)
    await ext.create_custom_resource_definition(widget_crd_manifest(group))
    widgets = Widgets(api, group)
    await wait_established(ext, widgets.crd_name)
    return widgets


async def uninstall_widgets(widgets: Widgets) -> None:
    await widgets.strip_all_finalizers()
    ext = client.ApiextensionsV1Api(widgets.api)
    try:
        await ext.delete_custom_resource_definition(widgets.crd_name)
    except ApiException as exc:
        if exc.status != 404:
            raise
