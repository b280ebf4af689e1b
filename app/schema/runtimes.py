"""Runtimes in the schema: the ``Runtime`` type and the ``runtimes`` / ``runtime`` queries.

A viewer sees the official runtimes (``Public`` ones in the system namespace), every other
``Public`` runtime (shared from a release), and its own namespace's private ones; any other
runtime reads as missing.  Reads come from the read cache.
"""

from __future__ import annotations

from enum import Enum

import strawberry

from app.resources import Runtime, RuntimeClass, Visibility
from app.schema.common import EnvVar, RuntimePort, field, map_connection, read_cache
from app.schema.context import Info, Viewer, require_viewer
from app.schema.relay import Connection, Node, decode_global_id, encode_global_id, paginate

RUNTIME_TYPE = "Runtime"


@strawberry.enum(name="RuntimeClass", description="What a runtime provides.")
class RuntimeClassEnum(Enum):
    OS = "OS"
    LANGUAGE = "Language"
    FRAMEWORK = "Framework"


@strawberry.enum(name="Visibility", description="Who may create devboxes from a runtime.")
class VisibilityEnum(Enum):
    PUBLIC = "Public"
    """Every namespace."""
    PRIVATE = "Private"
    """Only the runtime's own namespace."""


@strawberry.type(description="The release a shared runtime was created from.")
class RuntimeSharedFrom:
    namespace: str
    devbox: str
    release: str


def runtime_key(runtime: Runtime) -> str:
    return f"{runtime.namespace}/{runtime.name}"


def runtime_id(runtime: Runtime) -> strawberry.ID:
    return encode_global_id(RUNTIME_TYPE, runtime_key(runtime))


def visible(runtime: Runtime, viewer: Viewer) -> bool:
    """Whether ``viewer`` may see (and create devboxes from) ``runtime``."""
    return runtime.spec.visibility == Visibility.PUBLIC or runtime.namespace == viewer.namespace


def find_runtime(info: Info, viewer: Viewer, namespace: str, name: str) -> Runtime | None:
    """A runtime the viewer may see, or None (the same for a hidden one)."""
    runtime = read_cache(info).runtime(namespace, name)
    return runtime if runtime is not None and visible(runtime, viewer) else None


def runtime_from_id(info: Info, viewer: Viewer, value: str) -> Runtime | None:
    """The visible runtime a global id names, or None."""
    try:
        type_name, key = decode_global_id(value)
    except ValueError:
        return None
    namespace, _, name = key.partition("/")
    if type_name != RUNTIME_TYPE or not name:
        return None
    return find_runtime(info, viewer, namespace, name)


@strawberry.type(name="Runtime", description="An image users can create devboxes from.")
class RuntimeNode(Node):
    obj: strawberry.Private[Runtime]
    system_namespace: strawberry.Private[str]

    @classmethod
    def of(cls, runtime: Runtime, info: Info) -> RuntimeNode:
        return cls(
            id=runtime_id(runtime),
            obj=runtime,
            system_namespace=info.context.services.settings.system_namespace,
        )

    @strawberry.field
    def name(self) -> str:
        return self.obj.name

    @strawberry.field
    def namespace(self) -> str:
        return self.obj.namespace

    @field(name="class")
    def class_(self) -> RuntimeClassEnum:
        return RuntimeClassEnum(RuntimeClass(self.obj.spec.class_).value)

    @strawberry.field
    def title(self) -> str:
        return self.obj.spec.title

    @strawberry.field
    def version(self) -> str:
        return self.obj.spec.version

    @strawberry.field
    def image(self) -> str:
        return self.obj.spec.image

    @strawberry.field
    def description(self) -> str:
        return self.obj.spec.description

    @field(description="Ports new devboxes of this runtime get by default.")
    def ports(self) -> list[RuntimePort]:
        return [RuntimePort.of(p) for p in self.obj.spec.ports]

    @strawberry.field
    def env(self) -> list[EnvVar]:
        return [EnvVar(name=e.name, value=e.value) for e in self.obj.spec.env]

    @field(description="User an SSH session logs in as.")
    def user(self) -> str:
        return self.obj.spec.user

    @field(description="Directory an SSH session starts in.")
    def working_dir(self) -> str:
        return self.obj.spec.working_dir

    @strawberry.field
    def visibility(self) -> VisibilityEnum:
        return VisibilityEnum(Visibility(self.obj.spec.visibility).value)

    @field(description="Whether this is one of the platform's official runtimes.")
    def official(self) -> bool:
        return (
            self.obj.namespace == self.system_namespace
            and self.obj.spec.visibility == Visibility.PUBLIC
        )

    @field(description="The release this runtime was shared from, if any.")
    def shared_from(self) -> RuntimeSharedFrom | None:
        source = self.obj.spec.source
        if source is None:
            return None
        return RuntimeSharedFrom(
            namespace=source.namespace, devbox=source.devbox, release=source.release
        )


@strawberry.input(description="Which runtimes to list.")
class RuntimeFilter:
    class_: RuntimeClassEnum | None = strawberry.field(name="class", default=None)
    search: str | None = strawberry.field(
        default=None, description="Case-insensitive text in the name, title or description."
    )


def _matches(runtime: Runtime, filter: RuntimeFilter | None) -> bool:
    if filter is None:
        return True
    if filter.class_ is not None and runtime.spec.class_ != filter.class_.value:
        return False
    if filter.search:
        needle = filter.search.casefold()
        haystack = " ".join(
            (runtime.name, runtime.spec.title, runtime.spec.version, runtime.spec.description)
        ).casefold()
        if needle not in haystack:
            return False
    return True


def visible_runtimes(info: Info, viewer: Viewer) -> list[Runtime]:
    """Every runtime the viewer may see: official first, then by title and version."""
    system = info.context.services.settings.system_namespace
    found = [r for r in read_cache(info).runtimes() if visible(r, viewer)]
    found.sort(
        key=lambda r: (
            r.namespace != system,
            r.spec.title.casefold(),
            r.spec.version,
            r.namespace,
            r.name,
        )
    )
    return found


@strawberry.type
class RuntimeQuery:
    """Queries about runtimes."""

    @field(
        description="Runtimes the viewer can create devboxes from: the official ones, every "
        "public one, and the viewer's namespace's private ones."
    )
    def runtimes(
        self,
        info: Info,
        first: int,
        after: str | None = None,
        filter: RuntimeFilter | None = None,
    ) -> Connection[RuntimeNode]:
        viewer = require_viewer(info)
        found = [r for r in visible_runtimes(info, viewer) if _matches(r, filter)]
        page = paginate(found, first=first, after=after, position=runtime_key)
        return map_connection(page, lambda runtime: RuntimeNode.of(runtime, info))

    @field(description="One runtime by id (null if missing or not visible).")
    def runtime(self, info: Info, id: strawberry.ID) -> RuntimeNode | None:
        viewer = require_viewer(info)
        runtime = runtime_from_id(info, viewer, id)
        return RuntimeNode.of(runtime, info) if runtime is not None else None
