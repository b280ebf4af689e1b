"""Building blocks shared by the Devbox resource models.

:class:`KubeModel` is the base of every model: camelCase JSON names, attribute docstrings as
descriptions (they become the CRD's ``kubectl explain`` text), enums stored as plain strings
and unknown fields dropped, like the API server prunes them.  Also here: the field types with
their patterns (names, images, quantities, timestamps), :class:`ObjectMeta` for objects read
from Kubernetes, :class:`Condition`, and :class:`ListMap` for lists keyed by a field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainSerializer,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

GROUP = "devbox.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Patterns are anchored and written for both engines that use them (pydantic's Rust regex
# and the API server's): explicit classes, no \d or \w, no look-around.
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
"""A DNS-1123 label (at most 63 characters): names of devboxes, runtimes, namespaces."""
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""A DNS-1123 subdomain (at most 253 characters)."""
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
QUANTITY = r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[mkMGTPE]|[eE][-+]?[0-9]+)?$"
"""A non-negative Kubernetes quantity: ``500m``, ``2``, ``4Gi``, ``1e3``."""
_HOST = r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*"
IMAGE_REFERENCE = (
    rf"^({_HOST}(:[0-9]+)?/)?[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)
"""An OCI image reference: ``[registry[:port]/]path[:tag][@sha256:digest]``."""
DIGEST = r"^sha256:[a-f0-9]{64}$"
COMMIT_ID = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
"""A commit id; it is also a valid image tag."""
CONDITION_TYPE = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"

_DNS1123_LABEL_RE = re.compile(DNS1123_LABEL)


def dns1123_label_errors(name: str) -> list[str]:
    """Why ``name`` is not a valid object name for a Devbox, Runtime or DevboxRelease.

    A CRD's schema cannot restrict ``metadata.name`` (the API server only checks it is a DNS
    subdomain), yet these names become pod, service and image-tag names, so the Devbox API
    enforces the stricter rule with this function.
    """
    errors = []
    if len(name) > 63:
        errors.append("must be no more than 63 characters")
    if not _DNS1123_LABEL_RE.fullmatch(name):
        errors.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
            "'-', and must start and end with an alphanumeric character"
        )
    return errors


def _format_time(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    spec = "%Y-%m-%dT%H:%M:%S.%fZ" if value.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return value.strftime(spec)


Time = Annotated[datetime, PlainSerializer(_format_time, return_type=str)]
"""A timestamp, dumped as RFC 3339 in UTC (``2024-05-01T12:00:00Z``) like ``metav1.Time``."""

DnsLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS1123_LABEL)]
ImageReference = Annotated[str, Field(min_length=1, max_length=512, pattern=IMAGE_REFERENCE)]
Digest = Annotated[str, Field(pattern=DIGEST)]
Quantity = Annotated[str, Field(max_length=64, pattern=QUANTITY)]
CommitId = Annotated[str, Field(min_length=1, max_length=63, pattern=COMMIT_ID)]
PortNumber = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[int, Field(ge=0)]
Generation = Annotated[int, Field(ge=0)]


class KubeModel(BaseModel):
    """Base of all resource models: camelCase aliases, docstrings as descriptions."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        use_enum_values=True,
        extra="ignore",
        validate_default=True,
    )


class ListMap:
    """Marks a list as keyed by ``keys``: items are unique by those fields.

    Use as ``Annotated[list[Item], ListMap("name")]``.  The model rejects duplicates and the
    CRD gets ``x-kubernetes-list-type: map``, so the API server rejects (and merges by) them too.
    """

    def __init__(self, *keys: str) -> None:
        self.keys = keys

    def __repr__(self) -> str:
        return f"ListMap{self.keys!r}"

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["x-kubernetes-list-type"] = "map"
        json_schema["x-kubernetes-list-map-keys"] = list(self.keys)
        return json_schema

    def _check(self, items: list[Any]) -> list[Any]:
        seen: set[tuple[Any, ...]] = set()
        for item in items:
            key = tuple(getattr(item, to_python_name(item, k)) for k in self.keys)
            if key in seen:
                shown = ", ".join(f"{k}={v!r}" for k, v in zip(self.keys, key, strict=True))
                raise PydanticCustomError("duplicate_key", "Duplicate value: {key}", {"key": shown})
            seen.add(key)
        return items


def to_python_name(model: BaseModel, alias: str) -> str:
    """The attribute name of the field whose JSON name is ``alias``."""
    for name, info in type(model).model_fields.items():
        if alias in (info.serialization_alias, info.alias, name):
            return name
    raise AttributeError(alias)


class ConditionStatus(StrEnum):
    """Whether a condition holds."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(KubeModel):
    """One aspect of the object's state, as in ``metav1.Condition``."""

    type: str = Field(max_length=316, pattern=CONDITION_TYPE)
    """Kind of condition in CamelCase, e.g. ``Ready`` or ``Committed``."""
    status: ConditionStatus
    """``True``, ``False`` or ``Unknown``."""
    reason: str = Field(min_length=1, max_length=1024, pattern=CONDITION_REASON)
    """Programmatic reason for the last transition, in CamelCase."""
    message: str = Field(default="", max_length=32768)
    """What a person should know about the transition."""
    last_transition_time: Time
    """When the status last changed."""
    observed_generation: Generation | None = None
    """The ``metadata.generation`` the condition was set for."""


class OwnerReference(KubeModel):
    """An object this one belongs to; deleting the owner deletes this object."""

    model_config = ConfigDict(extra="allow")

    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ObjectMeta(KubeModel):
    """The parts of ``metav1.ObjectMeta`` Devbox reads; any other field is kept as is."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: Time | None = None
    deletion_timestamp: Time | None = None
    deletion_grace_period_seconds: int | None = None
    finalizers: list[str] | None = None
    owner_references: list[OwnerReference] | None = None


@dataclass(frozen=True)
class PrinterColumn:
    """A column ``kubectl get`` shows for the kind."""

    name: str
    json_path: str
    type: str = "string"
    priority: int = 0
    description: str = ""


AGE = PrinterColumn("Age", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class KindInfo:
    """How a kind is named and printed in the Kubernetes API (its CRD's ``names``)."""

    plural: str
    short_names: tuple[str, ...]
    columns: tuple[PrinterColumn, ...]
    categories: tuple[str, ...] = ("devbox",)
    name_rule: str = "a DNS-1123 label (at most 63 characters)"


class Resource(KubeModel):
    """A Devbox custom resource: ``apiVersion``, ``kind``, ``metadata``, ``spec``, ``status``.

    Subclasses declare ``kind``, ``spec``, ``status`` and their :class:`KindInfo`.
    """

    KIND_INFO: ClassVar[KindInfo]

    api_version: str = API_VERSION
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @classmethod
    def kind_name(cls) -> str:
        """The ``kind`` of this resource (the class name)."""
        return cls.__name__

    @property
    def name(self) -> str:
        """``metadata.name`` (empty until set)."""
        return self.metadata.name or ""

    @property
    def namespace(self) -> str:
        """``metadata.namespace`` (empty until set)."""
        return self.metadata.namespace or ""

    def to_k8s(self) -> dict[str, Any]:
        """The object as the Kubernetes API takes it (camelCase, no nulls)."""
        return self.model_dump(by_alias=True, exclude_none=True)


class Protocol(StrEnum):
    """Transport protocol of a port."""

    TCP = "TCP"
    UDP = "UDP"


class Port(KubeModel):
    """A port the devbox serves, reachable in the cluster and, if public, by URL."""

    name: str = Field(min_length=1, max_length=15, pattern=DNS1123_LABEL)
    """Port name: a DNS-1123 label of at most 15 characters, like a Kubernetes port name."""
    port: PortNumber
    """Port number inside the devbox."""
    protocol: Protocol = Protocol.TCP
    """``TCP`` or ``UDP``."""
    public: bool = False
    """Whether the port gets a public URL (an Ingress under the configured domain)."""


class EnvVar(KubeModel):
    """An environment variable set in the devbox."""

    name: str = Field(min_length=1, max_length=256, pattern=ENV_NAME)
    """Variable name, a C identifier."""
    value: str = Field(default="", max_length=32768)
    """Variable value."""


MAX_PORTS = 20
MAX_ENV = 100

Ports = Annotated[list[Port], ListMap("name"), Field(max_length=MAX_PORTS)]
EnvVars = Annotated[list[EnvVar], ListMap("name"), Field(max_length=MAX_ENV)]
