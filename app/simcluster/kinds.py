"""Resource types the simulated API server serves, and what each kind does on write.

A :class:`ResourceType` says where a resource lives in the REST API (group, version, plural,
scope), how it appears in discovery, and which :class:`Strategy` prepares, validates and
cleans up its objects — the equivalent of a kube-apiserver registry strategy.  Built-in kinds
are declared here; custom resources get a :class:`CustomStrategy` built from their CRD.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import ipaddress
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.simcluster import names, openapi
from app.simcluster.errors import Cause

JSON = dict[str, Any]
NameRule = Callable[[str], list[str]]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass
class ResourceType:
    """One REST resource (``pods``, ``widgets.probe.example.com``…) at one group/version."""

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    strategy: Strategy
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    tracks_generation: bool = False
    custom: bool = False
    unconditional_update: bool = True
    returns_deleted_object: bool = False
    list_kind: str = ""
    verbs: tuple[str, ...] = ALL_VERBS
    printer_columns: list[JSON] = field(default_factory=list)
    storage_version: str = ""
    """For custom resources: the version objects are stored at (reads relabel it)."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_key(self) -> tuple[str, str]:
        """Objects of every version of a group/resource share one storage bucket."""
        return (self.group, self.plural)

    @property
    def effective_list_kind(self) -> str:
        return self.list_kind or f"{self.kind}List"


class Strategy:
    """Kind-specific behaviour on create, update and delete (defaults: none)."""

    name_rule: NameRule = staticmethod(names.dns1123_subdomain_errors)

    def prepare_create(self, obj: JSON, allocator: Allocator) -> None:
        """Set defaults and server-owned fields on a new object (mutates ``obj``)."""

    def validate(self, obj: JSON) -> list[Cause]:
        """Causes that make the object invalid (create and update)."""
        return []

    def prepare_update(self, new: JSON, old: JSON, allocator: Allocator) -> None:
        """Carry server-owned fields from ``old`` into ``new`` (mutates ``new``)."""

    def validate_update(self, new: JSON, old: JSON) -> list[Cause]:
        """Causes that make the change invalid (immutable fields…)."""
        return []

    def allocate(self, new: JSON, old: JSON | None, allocator: Allocator) -> list[Cause]:
        """Reserve cluster-wide values (IPs, node ports) once the object is known valid."""
        return []

    def release(self, obj: JSON, allocator: Allocator) -> None:
        """Give back what :meth:`allocate` reserved, when the object is gone."""


# --------------------------------------------------------------------------- allocation


NODE_PORT_RANGE = range(30000, 32768)
SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")


class Allocator:
    """Cluster IPs and node ports in use; rebuilt from the stored Services on load."""

    def __init__(self) -> None:
        self.cluster_ips: set[str] = set()
        self.node_ports: set[int] = set()
        self._next_ip = 1
        self._random = random.Random()

    def take_cluster_ip(self, wanted: str | None = None) -> str:
        if wanted:
            self.cluster_ips.add(wanted)
            return wanted
        hosts = SERVICE_CIDR.num_addresses - 2
        for _ in range(hosts):
            candidate = str(SERVICE_CIDR.network_address + self._next_ip)
            self._next_ip = self._next_ip % hosts + 1
            if candidate not in self.cluster_ips:
                self.cluster_ips.add(candidate)
                return candidate
        raise RuntimeError("service IP range exhausted")

    def take_node_port(self) -> int:
        free = len(NODE_PORT_RANGE) - len(self.node_ports)
        if free <= 0:
            raise RuntimeError("node port range exhausted")
        while True:
            port = self._random.randrange(NODE_PORT_RANGE.start, NODE_PORT_RANGE.stop)
            if port not in self.node_ports:
                self.node_ports.add(port)
                return port


# --------------------------------------------------------------------------- helpers


def _spec(obj: JSON) -> JSON:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = {}
        obj["spec"] = spec
    return spec


def _required(path: str) -> Cause:
    return Cause("FieldValueRequired", "Required value", path)


def _invalid(path: str, value: Any, why: str) -> Cause:
    return Cause("FieldValueInvalid", f"Invalid value: {_show(value)}: {why}", path)


def _forbidden(path: str, why: str) -> Cause:
    return Cause("FieldValueForbidden", f"Forbidden: {why}", path)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _unique_name(name: Any, path: str, seen: set[str], rule: NameRule) -> list[Cause]:
    """Causes for a list item's name: required, valid by ``rule``, not used twice."""
    if not name:
        return [_required(path)]
    if not isinstance(name, str):
        return []
    causes = [_invalid(path, name, message) for message in rule(name)]
    if name in seen:
        causes.append(Cause("FieldValueDuplicate", f'Duplicate value: "{name}"', path))
    seen.add(name)
    return causes


def _immutable(path: str, value: Any) -> Cause:
    return _invalid(path, value, "field is immutable")


# --------------------------------------------------------------------------- built-in kinds

_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def config_key_errors(key: str) -> list[str]:
    """Rules for Secret and ConfigMap data keys (IsConfigMapKey)."""
    errors = []
    if len(key) > 253:
        errors.append("must be no more than 253 characters")
    if not _CONFIG_KEY.match(key):
        errors.append(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
            "(e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
            "'[-._a-zA-Z0-9]+')"
        )
    if key in (".", "..") or key.startswith(".."):
        errors.append(
            "must not be '.' or '..'" if key in (".", "..") else "must not start with '..'"
        )
    return errors


class NamespaceStrategy(Strategy):
    """Namespaces: DNS-1123 labels, ``kubernetes`` finalizer, phase Active."""

    name_rule = staticmethod(names.dns1123_label_errors)

    def prepare_create(self, obj: JSON, allocator: Allocator) -> None:
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}

    def prepare_update(self, new: JSON, old: JSON, allocator: Allocator) -> None:
        new["spec"] = old.get("spec", {})
        new["status"] = old.get("status", {})


class PodStrategy(Strategy):
    """Pods: defaults as the API server sets them, most of the spec immutable."""

    def prepare_create(self, obj: JSON, allocator: Allocator) -> None:
        self._default(obj)
        obj["status"] = {"phase": "Pending", "qosClass": _qos_class(_spec(obj))}

    @staticmethod
    def _default(obj: JSON) -> None:
        """Defaults the API server applies whenever a Pod is decoded (create and update)."""
        spec = _spec(obj)
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("securityContext", {})
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault(
            "tolerations",
            [
                {
                    "key": f"node.kubernetes.io/{taint}",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                }
                for taint in ("not-ready", "unreachable")
            ],
        )
        for key in ("containers", "initContainers"):
            for container in spec.get(key) or []:
                if not isinstance(container, dict):
                    continue
                image = str(container.get("image", ""))
                tag = image.rsplit("/", 1)[-1]
                latest = "@" not in image and (":" not in tag or tag.endswith(":latest"))
                container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
                container.setdefault("terminationMessagePath", "/dev/termination-log")
                container.setdefault("terminationMessagePolicy", "File")
                container.setdefault("resources", {})
                for port in container.get("ports") or []:
                    if isinstance(port, dict):
                        port.setdefault("protocol", "TCP")

    def validate(self, obj: JSON) -> list[Cause]:
        causes: list[Cause] = []
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [_required("spec")]
        containers = spec.get("containers")
        if not isinstance(containers, list) or not containers:
            return [_required("spec.containers")]
        seen: set[str] = set()
        for i, container in enumerate(containers):
            path = f"spec.containers[{i}]"
            if not isinstance(container, dict):
                causes.append(_invalid(path, container, "must be an object"))
                continue
            causes.extend(
                _unique_name(
                    container.get("name"), f"{path}.name", seen, names.dns1123_label_errors
                )
            )
            if not container.get("image"):
                causes.append(_required(f"{path}.image"))
        policy = spec.get("restartPolicy")
        if policy not in ("Always", "OnFailure", "Never"):
            causes.append(
                Cause(
                    "FieldValueNotSupported",
                    f'Unsupported value: {_show(policy)}: supported values: "Always", '
                    '"OnFailure", "Never"',
                    "spec.restartPolicy",
                )
            )
        return causes

    def prepare_update(self, new: JSON, old: JSON, allocator: Allocator) -> None:
        self._default(new)
        new["status"] = old.get("status", {})

    def validate_update(self, new: JSON, old: JSON) -> list[Cause]:
        new_spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
        new_containers = new_spec.get("containers") or []
        old_containers = old_spec.get("containers") or []
        if len(new_containers) != len(old_containers):
            return [_forbidden("spec.containers", "pod updates may not add or remove containers")]

        # Only images (and a few scheduling fields) may change on a pod.
        def without_mutable(spec: JSON) -> JSON:
            copy = {
                k: v
                for k, v in spec.items()
                if k not in ("activeDeadlineSeconds", "tolerations", "nodeName")
            }
            copy["containers"] = [
                {k: v for k, v in c.items() if k != "image"}
                for c in spec.get("containers") or []
                if isinstance(c, dict)
            ]
            copy["initContainers"] = [
                {k: v for k, v in c.items() if k != "image"}
                for c in spec.get("initContainers") or []
                if isinstance(c, dict)
            ]
            return copy

        if old_spec.get("nodeName") and new_spec.get("nodeName") != old_spec.get("nodeName"):
            return [
                _forbidden(
                    "spec.nodeName",
                    "pod updates may not change fields other than "
                    "`spec.containers[*].image`, `spec.initContainers[*].image`, "
                    "`spec.activeDeadlineSeconds` or `spec.tolerations` (only "
                    "additions to existing tolerations)",
                )
            ]
        if without_mutable(new_spec) != without_mutable(old_spec):
            return [
                _forbidden(
                    "spec",
                    "pod updates may not change fields other than "
                    "`spec.containers[*].image`, `spec.initContainers[*].image`, "
                    "`spec.activeDeadlineSeconds` or `spec.tolerations` (only "
                    "additions to existing tolerations)",
                )
            ]
        return []


def _qos_class(spec: JSON) -> str:
    requests_all = True
    any_resources = False
    for container in spec.get("containers") or []:
        if not isinstance(container, dict):
            continue
        resources = container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        if limits or requests:
            any_resources = True
        for res in ("cpu", "memory"):
            if res not in limits or requests.get(res, limits.get(res)) != limits.get(res):
                requests_all = False
    if not any_resources:
        return "BestEffort"
    return "Guaranteed" if requests_all else "Burstable"


class PodStatusStrategy(Strategy):
    """The pod status subresource (used by the simulated kubelet)."""


class ServiceStrategy(Strategy):
    """Services: DNS-1035 names, cluster IP and node port allocation."""

    name_rule = staticmethod(names.dns1035_label_errors)

    def prepare_create(self, obj: JSON, allocator: Allocator) -> None:
        spec = _spec(obj)
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
        if spec["type"] in ("NodePort", "LoadBalancer"):
            spec.setdefault("externalTrafficPolicy", "Cluster")
        obj["status"] = {"loadBalancer": {}}

    def validate(self, obj: JSON) -> list[Cause]:
        causes: list[Cause] = []
        spec = obj.get("spec") or {}
        kind = spec.get("type")
        supported = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
        if kind not in supported:
            causes.append(
                Cause(
                    "FieldValueNotSupported",
                    f"Unsupported value: {_show(kind)}: supported values: "
                    + ", ".join(f'"{s}"' for s in supported),
                    "spec.type",
                )
            )
        ports = spec.get("ports") or []
        if kind != "ExternalName" and not ports and spec.get("clusterIP") != "None":
            causes.append(_required("spec.ports"))
        seen: set[tuple[Any, Any]] = set()
        for i, port in enumerate(ports):
            path = f"spec.ports[{i}]"
            if not isinstance(port, dict):
                causes.append(_invalid(path, port, "must be an object"))
                continue
            number = port.get("port")
            if not isinstance(number, int) or not 1 <= number <= 65535:
                causes.append(
                    _invalid(f"{path}.port", number, "must be between 1 and 65535, inclusive")
                )
            if len(ports) > 1 and not port.get("name"):
                causes.append(_required(f"{path}.name"))
            key = (number, port.get("protocol"))
            if key in seen:
                causes.append(
                    Cause(
                        "FieldValueDuplicate",
                        f"Duplicate value: {{{_show(number)}, {port.get('protocol')}}}",
                        f"{path}",
                    )
                )
            seen.add(key)
            node_port = port.get("nodePort")
            if node_port is not None:
                if kind not in ("NodePort", "LoadBalancer"):
                    causes.append(
                        _forbidden(f"{path}.nodePort", "may not be used when `type` is 'ClusterIP'")
                    )
                elif not isinstance(node_port, int) or node_port not in NODE_PORT_RANGE:
                    causes.append(
                        _invalid(
                            f"{path}.nodePort",
                            node_port,
                            "provided port is not in the valid range. The range of valid ports is "
                            "30000-32767",
                        )
                    )
        return causes

    def prepare_update(self, new: JSON, old: JSON, allocator: Allocator) -> None:
        new["status"] = old.get("status", {})
        new_spec, old_spec = _spec(new), old.get("spec") or {}
        new_spec.setdefault("type", "ClusterIP")
        new_spec.setdefault("sessionAffinity", old_spec.get("sessionAffinity", "None"))
        # Like v1.20's patchAllocatedValues: unspecified allocated values are kept.
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if not new_spec.get(key) and old_spec.get(key):
                new_spec[key] = old_spec[key]
        old_ports = {
            (p.get("port"), p.get("protocol", "TCP")): p
            for p in old_spec.get("ports") or []
            if isinstance(p, dict)
        }
        for port in new_spec.get("ports") or []:
            if not isinstance(port, dict):
                continue
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
            previous = old_ports.get((port.get("port"), port["protocol"]))
            if (
                previous
                and "nodePort" not in port
                and previous.get("nodePort")
                and new_spec["type"] in ("NodePort", "LoadBalancer")
            ):
                port["nodePort"] = previous["nodePort"]

    def validate_update(self, new: JSON, old: JSON) -> list[Cause]:
        old_ip = (old.get("spec") or {}).get("clusterIP")
        new_ip = (new.get("spec") or {}).get("clusterIP")
        new_type = (new.get("spec") or {}).get("type")
        if old_ip and new_ip != old_ip and new_type != "ExternalName":
            return [_immutable("spec.clusterIP", new_ip)]
        return []

    def allocate(self, new: JSON, old: JSON | None, allocator: Allocator) -> list[Cause]:
        spec = _spec(new)
        old_ports = set(_node_ports(old)) if old else set()
        wanted_ports = _node_ports(new)
        causes = [
            _invalid(f"spec.ports[{i}].nodePort", port, "provided port is already allocated")
            for i, port in _indexed_node_ports(new)
            if port in allocator.node_ports and port not in old_ports
        ]
        duplicates = {p for p in wanted_ports if wanted_ports.count(p) > 1}
        causes.extend(
            Cause("FieldValueDuplicate", f"Duplicate value: {port}", f"spec.ports[{i}].nodePort")
            for i, port in _indexed_node_ports(new)
            if port in duplicates
        )
        if causes:
            return causes
        if old is None and spec.get("type") != "ExternalName":
            wanted_ip = spec.get("clusterIP")
            if wanted_ip == "None":
                spec["clusterIPs"] = ["None"]
            else:
                if wanted_ip and wanted_ip in allocator.cluster_ips:
                    return [
                        _invalid("spec.clusterIP", wanted_ip, "provided IP is already allocated")
                    ]
                ip = allocator.take_cluster_ip(wanted_ip or None)
                spec["clusterIP"] = ip
                spec["clusterIPs"] = [ip]
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
        for port in wanted_ports:
            allocator.node_ports.add(port)
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            for port in spec.get("ports") or []:
                if isinstance(port, dict) and not port.get("nodePort"):
                    port["nodePort"] = allocator.take_node_port()
        if old is not None:
            for port in old_ports - set(_node_ports(new)):
                allocator.node_ports.discard(port)
        return []

    def release(self, obj: JSON, allocator: Allocator) -> None:
        spec = obj.get("spec") or {}
        allocator.cluster_ips.discard(spec.get("clusterIP", ""))
        for port in _node_ports(obj):
            allocator.node_ports.discard(port)


def _indexed_node_ports(obj: JSON | None) -> list[tuple[int, int]]:
    if not obj:
        return []
    ports = (obj.get("spec") or {}).get("ports") or []
    return [
        (i, p["nodePort"])
        for i, p in enumerate(ports)
        if isinstance(p, dict) and isinstance(p.get("nodePort"), int)
    ]


def _node_ports(obj: JSON | None) -> list[int]:
    return [port for _, port in _indexed_node_ports(obj)]


class SecretStrategy(Strategy):
    """Secrets: base64 data, ``stringData`` folded into ``data``, type immutable."""

    def prepare_create(self, obj: JSON, allocator: Allocator) -> None:
        obj.setdefault("type", "Opaque")
        self._fold_string_data(obj)

    def prepare_update(self, new: JSON, old: JSON, allocator: Allocator) -> None:
        new.setdefault("type", old.get("type", "Opaque"))
        self._fold_string_data(new)

    @staticmethod
    def _fold_string_data(obj: JSON) -> None:
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict):
            data = obj.setdefault("data", {}) or {}
            obj["data"] = data
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()

    def validate(self, obj: JSON) -> list[Cause]:
        causes = []
        for key, value in (obj.get("data") or {}).items():
            try:
                base64.b64decode(str(value), validate=True)
            except (binascii.Error, ValueError):
                causes.append(_invalid(f"data[{key}]", "<value omitted>", "must be base64"))
            for message in config_key_errors(key):
                causes.append(_invalid(f"data[{key}]", key, message))
        return causes

    def validate_update(self, new: JSON, old: JSON) -> list[Cause]:
        causes = []
        if new.get("type") != old.get("type"):
            causes.append(_immutable("type", new.get("type")))
        if old.get("immutable") and new.get("data") != old.get("data"):
            causes.append(_forbidden("data", "field is immutable when `immutable` is set"))
        return causes


class ConfigMapStrategy(Strategy):
    """ConfigMaps: data keys are config keys; ``immutable`` freezes them."""

    def validate(self, obj: JSON) -> list[Cause]:
        causes = []
        for section in ("data", "binaryData"):
            for key in obj.get(section) or {}:
                for message in config_key_errors(key):
                    causes.append(_invalid(f"{section}[{key}]", key, message))
        return causes

    def validate_update(self, new: JSON, old: JSON) -> list[Cause]:
        if old.get("immutable") and (
            new.get("data") != old.get("data") or new.get("binaryData") != old.get("binaryData")
        ):
            return [_forbidden("data", "field is immutable when `immutable` is set")]
        return []


class NodeStrategy(Strategy):
    """Nodes: status kept on main-resource updates."""

    def prepare_update(self, new: JSON, old: JSON, allocator: Allocator) -> None:
        new["status"] = old.get("status", {})


class IngressStrategy(Strategy):
    """Ingresses (networking.k8s.io/v1): hosts must be DNS names."""

    PATH_TYPES = ("Exact", "Prefix", "ImplementationSpecific")

    def validate(self, obj: JSON) -> list[Cause]:
        causes = []
        for i, rule in enumerate((obj.get("spec") or {}).get("rules") or []):
            if not isinstance(rule, dict):
                continue
            host = rule.get("host")
            if host:
                for message in names.dns1123_subdomain_errors(host.removeprefix("*.")):
                    causes.append(_invalid(f"spec.rules[{i}].host", host, message))
            for j, path in enumerate((rule.get("http") or {}).get("paths") or []):
                where = f"spec.rules[{i}].http.paths[{j}]"
                path_type = path.get("pathType") if isinstance(path, dict) else None
                if not path_type:
                    causes.append(
                        Cause(
                            "FieldValueRequired",
                            "Required value: pathType must be specified",
                            f"{where}.pathType",
                        )
                    )
                elif path_type not in self.PATH_TYPES:
                    causes.append(
                        Cause(
                            "FieldValueNotSupported",
                            f"Unsupported value: {_show(path_type)}: supported values: "
                            + ", ".join(f'"{t}"' for t in self.PATH_TYPES),
                            f"{where}.pathType",
                        )
                    )
        return causes

    def prepare_create(self, obj: JSON, allocator: Allocator) -> None:
        obj["status"] = {"loadBalancer": {}}

    def prepare_update(self, new: JSON, old: JSON, allocator: Allocator) -> None:
        new["status"] = old.get("status", {})


def normalize_time(value: Any, *, micro: bool = False) -> str | None:
    """A metav1.Time (seconds) or MicroTime as the API server writes it back, or None."""
    try:
        moment = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


class EventStrategy(Strategy):
    """Core events: an involved object is required; timestamps are normalized."""

    TIMES = {"firstTimestamp": False, "lastTimestamp": False, "eventTime": True}

    def _normalize(self, obj: JSON) -> None:
        for key, micro in self.TIMES.items():
            if obj.get(key):
                obj[key] = normalize_time(obj[key], micro=micro) or obj[key]

    def prepare_create(self, obj: JSON, allocator: Allocator) -> None:
        self._normalize(obj)

    def prepare_update(self, new: JSON, old: JSON, allocator: Allocator) -> None:
        self._normalize(new)

    def validate(self, obj: JSON) -> list[Cause]:
        for key, micro in self.TIMES.items():
            if obj.get(key) and normalize_time(obj[key], micro=micro) != obj[key]:
                return [_invalid(key, obj[key], "must be an RFC 3339 time")]
        if not isinstance(obj.get("involvedObject"), dict):
            return [_required("involvedObject")]
        return []


class CRDStrategy(Strategy):
    """CustomResourceDefinitions: names, one storage version, structural schemas."""

    def prepare_create(self, obj: JSON, allocator: Allocator) -> None:
        obj["status"] = {
            "conditions": [],
            "acceptedNames": {"kind": "", "plural": ""},
            "storedVersions": [],
        }
        self._default(obj)

    @staticmethod
    def _default(obj: JSON) -> None:
        """Defaults applied whenever a CRD is decoded (create and update)."""
        spec = _spec(obj)
        spec.setdefault("conversion", {"strategy": "None"})
        names_ = spec.get("names") or {}
        if isinstance(names_, dict) and names_.get("kind"):
            names_.setdefault("singular", str(names_["kind"]).lower())
            names_.setdefault("listKind", f"{names_['kind']}List")

    def prepare_update(self, new: JSON, old: JSON, allocator: Allocator) -> None:
        self._default(new)
        new["status"] = old.get("status", {})

    def validate(self, obj: JSON) -> list[Cause]:
        causes: list[Cause] = []
        spec = obj.get("spec") or {}
        group = spec.get("group") or ""
        crd_names = spec.get("names") or {}
        plural = crd_names.get("plural") or ""
        if not group:
            causes.append(_required("spec.group"))
        elif "." not in group:
            causes.append(_invalid("spec.group", group, "should be a domain with at least one dot"))
        if not plural:
            causes.append(_required("spec.names.plural"))
        if not crd_names.get("kind"):
            causes.append(_required("spec.names.kind"))
        name = (obj.get("metadata") or {}).get("name", "")
        if group and plural and name != f"{plural}.{group}":
            causes.append(
                _invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group')
            )
        if spec.get("scope") not in ("Namespaced", "Cluster"):
            causes.append(
                Cause(
                    "FieldValueNotSupported",
                    f"Unsupported value: {_show(spec.get('scope'))}: supported "
                    'values: "Cluster", "Namespaced"',
                    "spec.scope",
                )
            )
        versions = spec.get("versions") or []
        if not versions:
            causes.append(_required("spec.versions"))
        storage = [v for v in versions if isinstance(v, dict) and v.get("storage")]
        if versions and len(storage) != 1:
            causes.append(
                _invalid(
                    "spec.versions",
                    versions,
                    "must have exactly one version marked as storage version",
                )
            )
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if (
            group
            and (
                group.endswith(".k8s.io")
                or group.endswith(".kubernetes.io")
                or group in ("k8s.io", "kubernetes.io")
            )
            and "api-approved.kubernetes.io" not in annotations
        ):
            causes.append(
                Cause(
                    "FieldValueRequired",
                    "Required value: protected groups must have approval annotation "
                    '"api-approved.kubernetes.io", see '
                    "https://github.com/kubernetes/enhancements/pull/1111",
                    "metadata.annotations[api-approved.kubernetes.io]",
                )
            )
        seen_versions: set[str] = set()
        for i, version in enumerate(versions):
            if not isinstance(version, dict):
                continue
            causes.extend(
                _unique_name(
                    version.get("name"),
                    f"spec.versions[{i}].name",
                    seen_versions,
                    names.dns1035_label_errors,
                )
            )
            for j, column in enumerate(version.get("additionalPrinterColumns") or []):
                where = f"spec.versions[{i}].additionalPrinterColumns[{j}]"
                for key in ("name", "type", "jsonPath"):
                    if not isinstance(column, dict) or not column.get(key):
                        causes.append(_required(f"{where}.{key}"))
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            path = f"spec.versions[{i}].schema.openAPIV3Schema"
            if schema is None:
                causes.append(
                    Cause("FieldValueRequired", "Required value: schemas are required", path)
                )
            elif isinstance(schema, dict):
                causes.extend(openapi.structural_errors(schema, path))
        return causes

    def validate_update(self, new: JSON, old: JSON) -> list[Cause]:
        old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
        causes = []
        for key in ("group",):
            if new_spec.get(key) != old_spec.get(key):
                causes.append(_immutable(f"spec.{key}", new_spec.get(key)))
        if (new_spec.get("names") or {}).get("plural") != (old_spec.get("names") or {}).get(
            "plural"
        ):
            causes.append(
                _immutable("spec.names.plural", (new_spec.get("names") or {}).get("plural"))
            )
        return causes


class CustomStrategy(Strategy):
    """Custom resources: pruned, defaulted and validated against the CRD's schema."""

    def __init__(self, schema: JSON | None) -> None:
        self.schema = schema

    def _process(self, obj: JSON) -> None:
        """Prune unknown fields, then apply defaults (validation comes after, as upstream)."""
        if not self.schema:
            return
        metadata = obj.get("metadata")
        processed = openapi.apply_defaults(
            self.schema, openapi.prune(self.schema, copy.deepcopy(obj))
        )
        obj.clear()
        obj.update(processed)
        if metadata is not None:
            obj["metadata"] = metadata

    def prepare_create(self, obj: JSON, allocator: Allocator) -> None:
        self._process(obj)

    def prepare_update(self, new: JSON, old: JSON, allocator: Allocator) -> None:
        self._process(new)

    def validate(self, obj: JSON) -> list[Cause]:
        if not self.schema:
            return []
        return openapi.validate(self.schema, {k: v for k, v in obj.items() if k != "metadata"})


def builtin_types() -> list[ResourceType]:
    """The built-in kinds this simulation serves."""
    plain = Strategy()
    return [
        ResourceType(
            "",
            "v1",
            "Namespace",
            "namespaces",
            "namespace",
            False,
            NamespaceStrategy(),
            short_names=("ns",),
            status_subresource=True,
            returns_deleted_object=True,
        ),
        ResourceType(
            "",
            "v1",
            "Pod",
            "pods",
            "pod",
            True,
            PodStrategy(),
            short_names=("po",),
            categories=("all",),
            status_subresource=True,
            returns_deleted_object=True,
        ),
        ResourceType(
            "",
            "v1",
            "Service",
            "services",
            "service",
            True,
            ServiceStrategy(),
            short_names=("svc",),
            categories=("all",),
            status_subresource=True,
            returns_deleted_object=True,
        ),
        ResourceType("", "v1", "Secret", "secrets", "secret", True, SecretStrategy()),
        ResourceType(
            "",
            "v1",
            "ConfigMap",
            "configmaps",
            "configmap",
            True,
            ConfigMapStrategy(),
            short_names=("cm",),
        ),
        ResourceType(
            "", "v1", "Event", "events", "event", True, EventStrategy(), short_names=("ev",)
        ),
        ResourceType(
            "",
            "v1",
            "Node",
            "nodes",
            "node",
            False,
            NodeStrategy(),
            short_names=("no",),
            status_subresource=True,
            returns_deleted_object=True,
        ),
        ResourceType(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            "serviceaccount",
            True,
            plain,
            short_names=("sa",),
        ),
        ResourceType(
            "networking.k8s.io",
            "v1",
            "Ingress",
            "ingresses",
            "ingress",
            True,
            IngressStrategy(),
            short_names=("ing",),
            status_subresource=True,
            tracks_generation=True,
        ),
        ResourceType("coordination.k8s.io", "v1", "Lease", "leases", "lease", True, plain),
        ResourceType(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            "customresourcedefinition",
            False,
            CRDStrategy(),
            short_names=("crd", "crds"),
            status_subresource=True,
            tracks_generation=True,
            returns_deleted_object=True,
        ),
    ]


def custom_types(crd: JSON) -> list[ResourceType]:
    """The resource types (one per served version) a CRD defines."""
    spec = crd.get("spec") or {}
    crd_names = spec.get("names") or {}
    types = []
    storage = next((v["name"] for v in spec.get("versions") or [] if v.get("storage")), "")
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        subresources = version.get("subresources") or {}
        types.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                kind=crd_names["kind"],
                plural=crd_names["plural"],
                singular=crd_names.get("singular") or crd_names["kind"].lower(),
                namespaced=spec.get("scope") == "Namespaced",
                strategy=CustomStrategy(schema),
                short_names=tuple(crd_names.get("shortNames") or ()),
                categories=tuple(crd_names.get("categories") or ()),
                status_subresource="status" in subresources,
                tracks_generation=True,
                custom=True,
                unconditional_update=False,
                returns_deleted_object=True,
                list_kind=crd_names.get("listKind") or f"{crd_names['kind']}List",
                printer_columns=list(version.get("additionalPrinterColumns") or []),
                storage_version=storage,
            )
        )
    return types
