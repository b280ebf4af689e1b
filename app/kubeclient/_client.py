"""A small JSON client over kubernetes_asyncio's ApiClient for any resource kind.

Objects are plain dicts as the API server sends them (no OpenAPI model classes), so one code
path serves core kinds and custom resources alike.  Every error is translated into the tree in
:mod:`app.kubeclient._errors` here, at the boundary.  ``writes`` counts the write requests this
client sent (tests and the benchmark read it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from kubernetes_asyncio import client

from app.kubeclient._errors import Gone, KubeError, Unavailable, from_response
from app.kubeclient._kinds import Kind

JSON = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
"""The patch type every resource accepts (custom resources refuse strategic merge)."""
JSON_PATCH = "application/json-patch+json"
DEFAULT_TIMEOUT = 30.0
"""Seconds a non-watch request may take."""


class Kube:
    """Typed-by-kind access to the Kubernetes API."""

    def __init__(self, api: client.ApiClient, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.api = api
        self.timeout = timeout
        self.requests = 0
        self.writes = 0

    async def _call(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        deadline: float | aiohttp.ClientTimeout | None = None,
    ) -> aiohttp.ClientResponse:
        self.requests += 1
        if method != "GET":
            self.writes += 1
        params = [(k, _query_value(v)) for k, v in (query or {}).items() if v is not None]
        try:
            response: aiohttp.ClientResponse = await self.api.call_api(
                path,
                method,
                query_params=params,
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=deadline or self.timeout,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unavailable(f"{method} {path}: {exc or type(exc).__name__}") from exc
        except client.ApiException as exc:
            raise from_response(exc.status or 0, exc.body or exc.reason or "") from exc
        if not 200 <= response.status <= 299:
            try:
                data = await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise Unavailable(f"{method} {path}: {exc}") from exc
            finally:
                response.release()
            raise from_response(response.status, data)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> JSON:
        response = await self._call(method, path, **kwargs)
        try:
            data = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"{method} {path}: {exc}") from exc
        finally:
            response.release()
        result = json.loads(data) if data else {}
        if not isinstance(result, dict):
            raise KubeError(f"{method} {path}: unexpected answer {result!r}")
        return result

    async def get(self, kind: Kind, namespace: str | None, name: str) -> JSON:
        """One object; :class:`NotFound` if it does not exist."""
        return await self._json("GET", kind.path(namespace, name))

    async def list_objects(
        self,
        kind: Kind,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        limit: int = 500,
    ) -> tuple[list[JSON], str]:
        """All objects (following ``continue`` pages) and the list's resourceVersion."""
        items: list[JSON] = []
        token: str | None = None
        while True:
            page = await self._json(
                "GET",
                kind.path(namespace),
                query={"labelSelector": label_selector, "limit": limit, "continue": token},
            )
            for item in page.get("items") or []:
                item.setdefault("apiVersion", kind.api_version)
                item.setdefault("kind", kind.kind)
                items.append(item)
            meta = page.get("metadata") or {}
            token = meta.get("continue") or None
            if not token:
                return items, str(meta.get("resourceVersion") or "")

    async def create(self, kind: Kind, namespace: str | None, body: JSON) -> JSON:
        """Create; :class:`AlreadyExists` if the name is taken."""
        return await self._json("POST", kind.path(namespace), body=body)

    async def replace(self, kind: Kind, namespace: str | None, name: str, body: JSON) -> JSON:
        """PUT the whole object (its resourceVersion is the precondition)."""
        return await self._json("PUT", kind.path(namespace, name), body=body)

    async def patch(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        patch: JSON | list[JSON],
        *,
        subresource: str | None = None,
        content_type: str = MERGE_PATCH,
    ) -> JSON:
        """Patch (JSON merge patch by default; put ``metadata.resourceVersion`` in it to make
        it conditional)."""
        return await self._json(
            "PATCH", kind.path(namespace, name, subresource), body=patch, content_type=content_type
        )

    async def delete(
        self,
        kind: Kind,
        namespace: str | None,
        name: str,
        *,
        uid: str | None = None,
        propagation: str = "Background",
        grace_period_seconds: int | None = None,
    ) -> JSON:
        """Delete (only the object with ``uid`` when given); :class:`NotFound` if gone."""
        body: JSON = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        if uid:
            body["preconditions"] = {"uid": uid}
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        return await self._json("DELETE", kind.path(namespace, name), body=body)

    async def watch(
        self,
        kind: Kind,
        namespace: str | None,
        resource_version: str,
        *,
        label_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> AsyncIterator[JSON]:
        """Watch events (``{"type", "object"}``) from ``resource_version``, BOOKMARKs included.

        Ends when the server closes the stream; raises :class:`Gone` when the version has been
        compacted (an ``ERROR`` event with code 410, as a real server sends it).
        """
        response = await self._call(
            "GET",
            kind.path(namespace),
            query={
                "watch": "true",
                "resourceVersion": resource_version,
                "allowWatchBookmarks": "true",
                "labelSelector": label_selector,
                "timeoutSeconds": timeout_seconds,
            },
            deadline=aiohttp.ClientTimeout(
                total=None, sock_connect=self.timeout, sock_read=timeout_seconds + 30
            ),
        )
        try:
            while True:
                try:
                    line = await response.content.readline()
                except (aiohttp.ClientError, TimeoutError, asyncio.IncompleteReadError) as exc:
                    raise Unavailable(f"watch {kind.plural}: {exc}") from exc
                if not line:
                    return
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    code = int(status.get("code") or 0)
                    error = from_response(code, json.dumps(status))
                    raise error if code != 410 else Gone(error.message, status=410)
                yield event
        finally:
            response.close()


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
