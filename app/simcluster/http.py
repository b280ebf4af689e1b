"""The Kubernetes REST API of the simulated cluster, as a Starlette application.

Paths follow the real server: ``/api/v1/...`` for the core group, ``/apis/{group}/{version}/...``
for the others, ``namespaces/{ns}/`` for namespaced resources, ``/{name}/status`` for the status
subresource, ``?watch=true`` (or the legacy ``/watch/`` prefix) for watches, and discovery at
``/api``, ``/apis``, ``/version``.  Every failure is answered as a ``Status`` object with its
HTTP code; an unknown path gets the real server's plain-text ``404 page not found``.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import yaml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from app.simcluster import patch as patching
from app.simcluster import shapes, tables
from app.simcluster.errors import (
    ApiError,
    BadRequest,
    Cause,
    Gone,
    Invalid,
    MethodNotAllowed,
    NotFound,
)
from app.simcluster.kinds import JSON, ResourceType
from app.simcluster.nodes import NodeSimulator
from app.simcluster.store import Store

log = logging.getLogger(__name__)

MAX_BODY = 3 * 1024 * 1024
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
VERSION_INFO = {
    "major": "1",
    "minor": "20",
    "gitVersion": "v1.20.2",
    "gitCommit": "faecb196815e248d3ecfb03c680a4507229c2a56",
    "gitTreeState": "clean",
    "buildDate": "2021-01-13T13:20:00Z",
    "goVersion": "go1.15.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass
class Options:
    """Behaviour of the HTTP layer that tests may tune."""

    bookmark_interval: float = 60.0
    """Seconds between BOOKMARK events on watches that allow them (real servers: ~1 min)."""


GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})


def _flag(value: str | None) -> bool:
    """A boolean query parameter, parsed as Go's strconv.ParseBool does."""
    return value in GO_TRUE


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(data, separators=(",", ":")), status_code=status, media_type="application/json"
    )


def _status(error: ApiError) -> Response:
    return _json(error.to_status(), error.code)


def _not_found_page() -> Response:
    return PlainTextResponse("404 page not found\n", status_code=404)


@dataclass
class Target:
    """What a resource path points at."""

    rt: ResourceType
    namespace: str | None
    name: str
    subresource: str
    watch: bool


class KubeApi:
    """Request handling over a :class:`Store`."""

    def __init__(self, store: Store, nodes: NodeSimulator | None, options: Options) -> None:
        self.store = store
        self.nodes = nodes
        self.options = options

    # ------------------------------------------------------------------ app

    def app(self) -> Starlette:
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return Starlette(routes=[Route("/{path:path}", self.handle, methods=methods)])

    async def handle(self, request: Request) -> Response:
        try:
            return await self._route(request)
        except ApiError as error:
            return _status(error)
        except Exception as exc:
            log.exception("simulated API server failed on %s %s", request.method, request.url.path)
            return _status(
                ApiError(
                    500,
                    "InternalError",
                    f'an error on the server ("{type(exc).__name__}") has prevented the request '
                    "from succeeding",
                )
            )

    async def _route(self, request: Request) -> Response:
        parts = [p for p in request.url.path.split("/") if p]
        if not parts:
            return _json({"paths": sorted(self._paths())})
        head = parts[0]
        if head in ("healthz", "readyz", "livez") and len(parts) == 1:
            return PlainTextResponse("ok")
        if parts == ["version"]:
            return _json(VERSION_INFO)
        if parts == ["openapi", "v2"]:
            return self._openapi(request)
        if head == "api":
            if len(parts) == 1:
                return _json(
                    {
                        "kind": "APIVersions",
                        "versions": ["v1"],
                        "serverAddressByClientCIDRs": [
                            {"clientCIDR": "0.0.0.0/0", "serverAddress": request.url.netloc}
                        ],
                    }
                )
            if parts[1] != "v1":
                return _not_found_page()
            if len(parts) == 2:
                return _json(self._resource_list("", "v1"))
            return await self._resource(request, "", "v1", parts[2:])
        if head == "apis":
            if len(parts) == 1:
                return _json(self._group_list())
            group = parts[1]
            versions = self._versions(group)
            if not versions:
                return _not_found_page()
            if len(parts) == 2:
                return _json(self._group(group, versions))
            if parts[2] not in versions:
                return _not_found_page()
            if len(parts) == 3:
                return _json(self._resource_list(group, parts[2]))
            return await self._resource(request, group, parts[2], parts[3:])
        return _not_found_page()

    # ------------------------------------------------------------------ discovery

    def _paths(self) -> set[str]:
        paths = {"/api", "/api/v1", "/apis", "/version", "/healthz", "/openapi/v2"}
        for rt in self.store.types.all():
            if rt.group:
                paths.add(f"/apis/{rt.group}")
                paths.add(f"/apis/{rt.group}/{rt.version}")
        return paths

    def _versions(self, group: str) -> list[str]:
        versions = sorted(
            {rt.version for rt in self.store.types.all() if rt.group == group},
            key=_version_priority,
        )
        return versions

    def _group(self, group: str, versions: list[str]) -> JSON:
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": entries,
            "preferredVersion": entries[0],
        }

    def _group_list(self) -> JSON:
        order = ["apiextensions.k8s.io", "networking.k8s.io", "coordination.k8s.io"]
        groups = sorted(
            {rt.group for rt in self.store.types.all() if rt.group},
            key=lambda g: (order.index(g) if g in order else len(order), g),
        )
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [self._group(g, self._versions(g)) for g in groups],
        }

    def _resource_list(self, group: str, version: str) -> JSON:
        resources = []
        for rt in sorted(self.store.types.all(), key=lambda r: r.plural):
            if rt.group != group or rt.version != version:
                continue
            entry: JSON = {
                "name": rt.plural,
                "singularName": rt.singular,
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": list(rt.verbs),
            }
            if rt.short_names:
                entry["shortNames"] = list(rt.short_names)
            if rt.categories:
                entry["categories"] = list(rt.categories)
            entry["storageVersionHash"] = (
                hashlib.sha256(f"{group}/{version}/{rt.kind}".encode()).digest()[:8].hex()
            )
            resources.append(entry)
            if rt.status_subresource:
                resources.append(
                    {
                        "name": f"{rt.plural}/status",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "kind": rt.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
            if rt.plural == "namespaces" and not group:
                resources.append(
                    {
                        "name": "namespaces/finalize",
                        "singularName": "",
                        "namespaced": False,
                        "kind": "Namespace",
                        "verbs": ["update"],
                    }
                )
            if rt.plural == "pods" and not group:
                resources.append(
                    {
                        "name": "pods/binding",
                        "singularName": "",
                        "namespaced": True,
                        "kind": "Binding",
                        "verbs": ["create"],
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }

    def _openapi(self, request: Request) -> Response:
        accept = request.headers.get("accept", "")
        if "protobuf" in accept:
            # A minimal OpenAPI v2 document (swagger "2.0", info) in protobuf: kubectl
            # validates only kinds the document describes, so it validates none here.
            info = _pb_string(1, "Kubernetes") + _pb_string(2, "v1.20.2")
            body = _pb_string(1, "2.0") + _pb_bytes(2, info)
            # kube-openapi answers protobuf as octet-stream: Go's mime parser rejects the "@"
            # in the protobuf media type, and kubectl parses the response's Content-Type.
            return Response(body, media_type="application/octet-stream")
        return _json(
            {
                "swagger": "2.0",
                "info": {"title": "Kubernetes", "version": "v1.20.2"},
                "paths": {},
                "definitions": {},
            }
        )

    # ------------------------------------------------------------------ resources

    def _target(self, group: str, version: str, rest: list[str]) -> Target | None:
        watch = False
        if rest and rest[0] == "watch":
            watch, rest = True, rest[1:]
        namespace: str | None = None
        if (
            len(rest) >= 3
            and rest[0] == "namespaces"
            and not (group == "" and len(rest) == 3 and rest[2] in ("status", "finalize"))
        ):
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            return None
        rt = self.store.types.lookup(group, version, rest[0])
        if rt is None:
            return None
        if namespace is not None and not rt.namespaced:
            return None
        name = rest[1] if len(rest) > 1 else ""
        subresource = rest[2] if len(rest) > 2 else ""
        if rt.namespaced and name and namespace is None:
            return None
        if subresource and not (
            (subresource == "status" and rt.status_subresource)
            or (subresource == "finalize" and rt.plural == "namespaces" and not group)
            or (subresource == "binding" and rt.plural == "pods" and not group)
        ):
            return None
        return Target(rt, namespace, name, subresource, watch)

    async def _resource(
        self, request: Request, group: str, version: str, rest: list[str]
    ) -> Response:
        target = self._target(group, version, rest)
        if target is None:
            return _not_found_page()
        params = request.query_params
        method = request.method
        rt = target.rt
        table = "as=Table" in request.headers.get("accept", "")
        namespace = target.namespace or ""
        dry_run = params.get("dryRun") == "All"
        if not target.name:
            if method == "GET":
                if target.watch or _flag(params.get("watch")):
                    return self._watch(request, rt, target.namespace, table)
                return self._list(request, rt, target.namespace, table)
            if method == "POST" and rt.namespaced and target.namespace is None:
                raise MethodNotAllowed()
            if method == "POST":
                body = await self._body(request, rt)
                created = self.store.create(rt, namespace, body, dry_run=dry_run)
                return _json(created, 201)
            if method == "DELETE":
                return await self._delete_collection(request, rt, target.namespace)
            raise MethodNotAllowed()
        if target.watch:
            raise MethodNotAllowed()
        if target.subresource == "finalize":
            if method != "PUT":
                raise MethodNotAllowed()
            body = await self._body(request, rt)
            shapes.check_finalize(body)
            finalizers = list((body.get("spec") or {}).get("finalizers") or [])
            return _json(self.store.finalize_namespace(target.name, finalizers))
        if target.subresource == "binding":
            if method != "POST":
                raise MethodNotAllowed()
            return await self._bind(request, rt, namespace, target.name)
        if method == "GET":
            obj = self.store.get(rt, namespace, target.name)
            if table:
                return _json(
                    tables.table(
                        rt,
                        [obj],
                        resource_version=str(self.store.rv),
                        include_object=params.get("includeObject", "Metadata"),
                    )
                )
            return _json(obj)
        if method == "PUT":
            body = await self._body(request, rt)
            updated = self.store.update(
                rt, namespace, target.name, body, subresource=target.subresource, dry_run=dry_run
            )
            return _json(updated)
        if method == "PATCH":
            return await self._patch(
                request, rt, namespace, target.name, target.subresource, dry_run
            )
        if method == "DELETE" and not target.subresource:
            return await self._delete(request, rt, namespace, target.name, dry_run)
        raise MethodNotAllowed()

    async def _raw_body(self, request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY:
            raise ApiError(
                413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY}"
            )
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY:
                raise ApiError(
                    413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY}"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def _body(self, request: Request, rt: ResourceType) -> Any:
        raw = await self._raw_body(request)
        if not raw.strip():
            raise BadRequest(
                f"the object provided is unrecognized (must be of type {rt.kind}): "
                "couldn't get version/kind; json parse error: unexpected end of "
                "JSON input"
            )
        content_type = request.headers.get("content-type", "application/json")
        try:
            if "yaml" in content_type:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            text = raw.decode(errors="replace")[:256]
            raise BadRequest(
                f"the object provided is unrecognized (must be of type {rt.kind}): couldn't get "
                f"version/kind; json parse error: {exc} ({text})"
            ) from exc

    # ------------------------------------------------------------------ list and watch

    def _list(
        self, request: Request, rt: ResourceType, namespace: str | None, table: bool
    ) -> Response:
        params = request.query_params
        limit_text = params.get("limit", "0") or "0"
        try:
            limit = int(limit_text)
        except ValueError as exc:
            raise BadRequest(f'invalid limit "{limit_text}"') from exc
        result = self.store.list_objects(
            rt,
            namespace,
            label_selector=params.get("labelSelector", ""),
            field_selector=params.get("fieldSelector", ""),
            limit=max(0, limit),
            continue_token=params.get("continue", ""),
            resource_version=params.get("resourceVersion", ""),
            resource_version_match=params.get("resourceVersionMatch", ""),
        )
        if table:
            return _json(
                tables.table(
                    rt,
                    result.items,
                    resource_version=str(result.resource_version),
                    continue_token=result.continue_token,
                    include_object=params.get("includeObject", "Metadata"),
                )
            )
        metadata: JSON = {"resourceVersion": str(result.resource_version)}
        if result.continue_token or limit:
            metadata["continue"] = result.continue_token
        if result.remaining is not None:
            metadata["remainingItemCount"] = result.remaining
        return _json(
            {
                "apiVersion": rt.api_version,
                "kind": rt.effective_list_kind,
                "metadata": metadata,
                "items": result.items,
            }
        )

    def _watch(
        self, request: Request, rt: ResourceType, namespace: str | None, table: bool
    ) -> Response:
        params = request.query_params
        timeout_text = params.get("timeoutSeconds")
        try:
            timeout = int(timeout_text) if timeout_text else random.uniform(1800, 3600)
        except ValueError as exc:
            raise BadRequest(f'invalid timeoutSeconds "{timeout_text}"') from exc
        bookmarks = _flag(params.get("allowWatchBookmarks"))
        include = params.get("includeObject", "Metadata")
        try:
            watcher = self.store.watch(
                rt,
                namespace,
                resource_version=params.get("resourceVersion", ""),
                label_selector=params.get("labelSelector", ""),
                field_selector=params.get("fieldSelector", ""),
            )
        except Gone as error:
            line = json.dumps({"type": "ERROR", "object": error.to_status()}) + "\n"
            return Response(line, media_type="application/json")

        def encode(kind: str, obj: JSON) -> bytes:
            if table and kind != "BOOKMARK":
                obj = tables.table(rt, [obj], include_object=include)
            return (
                json.dumps({"type": kind, "object": obj}, separators=(",", ":")) + "\n"
            ).encode()

        async def stream() -> AsyncIterator[bytes]:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            interval = self.options.bookmark_interval
            next_bookmark = loop.time() + interval
            try:
                while True:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        return
                    wait = min(remaining, next_bookmark - loop.time()) if bookmarks else remaining
                    try:
                        item = await asyncio.wait_for(watcher.queue.get(), max(wait, 0.001))
                    except TimeoutError:
                        if bookmarks and loop.time() >= next_bookmark:
                            next_bookmark = loop.time() + interval
                            yield encode(
                                "BOOKMARK",
                                {
                                    "kind": rt.kind,
                                    "apiVersion": rt.api_version,
                                    "metadata": {"resourceVersion": str(self.store.rv)},
                                },
                            )
                        continue
                    if item is None:
                        return
                    yield encode(*item)
            finally:
                self.store.unwatch(watcher)

        return StreamingResponse(stream(), media_type="application/json")

    # ------------------------------------------------------------------ writes

    async def _patch(
        self,
        request: Request,
        rt: ResourceType,
        namespace: str,
        name: str,
        subresource: str,
        dry_run: bool,
    ) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        accepted = [JSON_PATCH, MERGE_PATCH, APPLY_PATCH]
        if not rt.custom:
            accepted.insert(2, STRATEGIC_PATCH)
        if content_type not in accepted:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types "
                "include: " + ", ".join(accepted),
            )
        raw = await self._raw_body(request)
        try:
            patch_doc = (
                yaml.safe_load(raw) if content_type == APPLY_PATCH else json.loads(raw or b"null")
            )
        except (ValueError, yaml.YAMLError) as exc:
            raise BadRequest(f"error decoding patch: {exc}") from exc
        try:
            current = self.store.get(rt, namespace, name)
        except NotFound:
            if content_type != APPLY_PATCH or subresource:
                raise
            if not isinstance(patch_doc, dict):
                raise BadRequest("apply patch must be an object") from None
            created = self.store.create(rt, namespace, patch_doc, dry_run=dry_run)
            return _json(created, 201)
        document = copy.deepcopy(current)
        if content_type == JSON_PATCH:
            patched = patching.apply_json_patch(document, patch_doc)
        elif content_type == STRATEGIC_PATCH:
            if not isinstance(patch_doc, dict):
                raise BadRequest("strategic merge patch must be a JSON object")
            patched = patching.apply_strategic_merge_patch(document, patch_doc, rt.kind)
        else:
            if content_type == APPLY_PATCH and not isinstance(patch_doc, dict):
                raise BadRequest("apply patch must be an object")
            patched = patching.apply_merge_patch(document, patch_doc)
        if not isinstance(patched, dict):
            raise BadRequest(f"the patched object is not a {rt.kind}")
        updated = self.store.update(
            rt, namespace, name, patched, subresource=subresource, dry_run=dry_run, require_rv=False
        )
        return _json(updated)

    @staticmethod
    def _delete_options(request: Request, body: Any) -> JSON:
        if body is None:
            body = {}
        shapes.check_delete_options(body)
        options: JSON = dict(body)
        params = request.query_params
        if "gracePeriodSeconds" in params:
            try:
                options["gracePeriodSeconds"] = int(params["gracePeriodSeconds"])
            except ValueError as exc:
                raise BadRequest("invalid gracePeriodSeconds") from exc
        if "propagationPolicy" in params:
            options["propagationPolicy"] = params["propagationPolicy"]
        if "orphanDependents" in params:
            options["orphanDependents"] = _flag(params["orphanDependents"])
        if options.get("orphanDependents") is not None and options.get("propagationPolicy"):
            raise Invalid(
                "DeleteOptions",
                "",
                "",
                [
                    Cause(
                        "FieldValueInvalid",
                        f'Invalid value: "{options["propagationPolicy"]}": orphanDependents and '
                        "deletionPropagation cannot be both set",
                        "propagationPolicy",
                    )
                ],
                message='DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: '
                f'Invalid value: "{options["propagationPolicy"]}": orphanDependents and '
                "deletionPropagation cannot be both set",
            )
        if options.get("orphanDependents") is not None:
            options["propagationPolicy"] = (
                "Orphan" if options["orphanDependents"] else ("Background")
            )
        return options

    async def _delete(
        self, request: Request, rt: ResourceType, namespace: str, name: str, dry_run: bool
    ) -> Response:
        raw = await self._raw_body(request)
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise BadRequest(f"invalid DeleteOptions: {exc}") from exc
        options = self._delete_options(request, body)
        if (options.get("dryRun") or []) == ["All"]:
            dry_run = True
        obj, gone = self.store.delete(
            rt,
            namespace,
            name,
            grace_period=options.get("gracePeriodSeconds"),
            propagation=options.get("propagationPolicy"),
            preconditions=options.get("preconditions"),
            dry_run=dry_run,
        )
        status = 202 if (not gone and options.get("orphanDependents") is False) else 200
        if gone and not rt.returns_deleted_object:
            details: JSON = {"name": name, "kind": rt.plural, "uid": obj["metadata"].get("uid", "")}
            if rt.group:
                details["group"] = rt.group
            return _json(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "details": details,
                },
                status,
            )
        return _json(obj, status)

    async def _delete_collection(
        self, request: Request, rt: ResourceType, namespace: str | None
    ) -> Response:
        params = request.query_params
        raw = await self._raw_body(request)
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise BadRequest(f"invalid DeleteOptions: {exc}") from exc
        options = self._delete_options(request, body)
        result = self.store.list_objects(
            rt,
            namespace,
            label_selector=params.get("labelSelector", ""),
            field_selector=params.get("fieldSelector", ""),
        )
        deleted = []
        for obj in result.items:
            meta = obj["metadata"]
            try:
                gone_obj, _ = self.store.delete(
                    rt,
                    meta.get("namespace", ""),
                    meta["name"],
                    grace_period=options.get("gracePeriodSeconds"),
                    propagation=options.get("propagationPolicy"),
                    dry_run=params.get("dryRun") == "All",
                )
            except NotFound:
                continue
            deleted.append(gone_obj)
        return _json(
            {
                "apiVersion": rt.api_version,
                "kind": rt.effective_list_kind,
                "metadata": {"resourceVersion": str(self.store.rv)},
                "items": deleted,
            }
        )

    async def _bind(
        self, request: Request, rt: ResourceType, namespace: str, name: str
    ) -> Response:
        raw = await self._raw_body(request)
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise BadRequest(f"invalid Binding: {exc}") from exc
        shapes.check_binding(body)
        node = (body.get("target") or {}).get("name")
        if not node:
            raise BadRequest("Binding target name is required")
        pod = self.store.get(rt, namespace, name)
        if (pod.get("spec") or {}).get("nodeName"):
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} '
                f'is already assigned to node "{pod["spec"]["nodeName"]}"',
                {"name": name, "kind": "pods/binding"},
            )
        if self.nodes is None:
            raise MethodNotAllowed()
        self.nodes.bind(pod, node)
        return _json(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "code": 201,
            },
            201,
        )


def _version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes version priority: GA > beta > alpha, higher numbers first."""
    import re

    match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not match:
        return (3, 0, 0, version)
    major, stage, minor = match.groups()
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -int(major), -int(minor or 0), version)


def _pb_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _pb_bytes(field_number: int, payload: bytes) -> bytes:
    return _pb_varint(field_number << 3 | 2) + _pb_varint(len(payload)) + payload


def _pb_string(field_number: int, text: str) -> bytes:
    return _pb_bytes(field_number, text.encode())
