"""Server-side printing: ``meta.k8s.io/v1`` Table responses, as ``kubectl get`` asks for.

Built-in kinds get the columns a real API server prints for them; custom resources get
``Name`` plus the CRD's ``additionalPrinterColumns`` (JSONPath), or ``Name`` and
``Created At`` when the CRD declares none.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Any

from app.simcluster.kinds import JSON, ResourceType

Column = tuple[str, str, str, int, Callable[[JSON], Any]]  # name, type, format, priority, cell


def _age(obj: JSON) -> str:
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    if not stamp:
        return "<unknown>"
    try:
        created = dt.datetime.fromisoformat(str(stamp))
    except ValueError:
        return "<invalid>"
    if created.tzinfo is None:
        created = created.replace(tzinfo=dt.UTC)
    return human_duration(dt.datetime.now(dt.UTC) - created)


def human_duration(delta: dt.timedelta) -> str:
    """kubectl's short durations: 12s, 5m3s, 3h, 2d…"""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"


def _name(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _pod_ready(obj: JSON) -> str:
    statuses = (obj.get("status") or {}).get("containerStatuses") or []
    total = len((obj.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _pod_status(obj: JSON) -> str:
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    status = obj.get("status") or {}
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            return str(waiting["reason"])
    return str(status.get("reason") or status.get("phase") or "Unknown")


def _pod_restarts(obj: JSON) -> int:
    return sum(
        int(s.get("restartCount", 0))
        for s in (obj.get("status") or {}).get("containerStatuses") or []
    )


def _service_ports(obj: JSON) -> str:
    parts = []
    for port in (obj.get("spec") or {}).get("ports") or []:
        text = f"{port.get('port')}"
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        parts.append(f"{text}/{port.get('protocol', 'TCP')}")
    return ",".join(parts) or "<none>"


def _node_status(obj: JSON) -> str:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return "Ready" if condition.get("status") == "True" else "NotReady"
    return "Unknown"


def _event_object(obj: JSON) -> str:
    involved = obj.get("involvedObject") or {}
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"


BUILTIN_COLUMNS: dict[str, list[Column]] = {
    "pods": [
        ("Name", "string", "name", 0, _name),
        ("Ready", "string", "", 0, _pod_ready),
        ("Status", "string", "", 0, _pod_status),
        ("Restarts", "integer", "", 0, _pod_restarts),
        ("Age", "string", "", 0, _age),
        ("IP", "string", "", 1, lambda o: (o.get("status") or {}).get("podIP") or "<none>"),
        ("Node", "string", "", 1, lambda o: (o.get("spec") or {}).get("nodeName") or "<none>"),
    ],
    "services": [
        ("Name", "string", "name", 0, _name),
        ("Type", "string", "", 0, lambda o: (o.get("spec") or {}).get("type", "")),
        ("Cluster-IP", "string", "", 0, lambda o: (o.get("spec") or {}).get("clusterIP", "")),
        ("External-IP", "string", "", 0, lambda o: "<none>"),
        ("Port(s)", "string", "", 0, _service_ports),
        ("Age", "string", "", 0, _age),
        (
            "Selector",
            "string",
            "",
            1,
            lambda o: (
                ",".join(
                    f"{k}={v}" for k, v in ((o.get("spec") or {}).get("selector") or {}).items()
                )
                or "<none>"
            ),
        ),
    ],
    "namespaces": [
        ("Name", "string", "name", 0, _name),
        ("Status", "string", "", 0, lambda o: (o.get("status") or {}).get("phase", "")),
        ("Age", "string", "", 0, _age),
    ],
    "nodes": [
        ("Name", "string", "name", 0, _name),
        ("Status", "string", "", 0, _node_status),
        ("Roles", "string", "", 0, lambda o: "<none>"),
        ("Age", "string", "", 0, _age),
        (
            "Version",
            "string",
            "",
            0,
            lambda o: ((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", ""),
        ),
    ],
    "secrets": [
        ("Name", "string", "name", 0, _name),
        ("Type", "string", "", 0, lambda o: o.get("type", "")),
        ("Data", "string", "", 0, lambda o: len(o.get("data") or {})),
        ("Age", "string", "", 0, _age),
    ],
    "configmaps": [
        ("Name", "string", "name", 0, _name),
        (
            "Data",
            "string",
            "",
            0,
            lambda o: len(o.get("data") or {}) + len(o.get("binaryData") or {}),
        ),
        ("Age", "string", "", 0, _age),
    ],
    "events": [
        (
            "Last Seen",
            "string",
            "",
            0,
            lambda o: _age(
                {
                    "metadata": {
                        "creationTimestamp": o.get("lastTimestamp")
                        or o.get("eventTime", "")[:19] + "Z"
                        if o.get("lastTimestamp") or o.get("eventTime")
                        else (o.get("metadata") or {}).get("creationTimestamp")
                    }
                }
            ),
        ),
        ("Type", "string", "", 0, lambda o: o.get("type", "")),
        ("Reason", "string", "", 0, lambda o: o.get("reason", "")),
        ("Object", "string", "", 0, _event_object),
        ("Message", "string", "", 0, lambda o: o.get("message", "")),
    ],
    "leases": [
        ("Name", "string", "name", 0, _name),
        ("Holder", "string", "", 0, lambda o: (o.get("spec") or {}).get("holderIdentity") or ""),
        ("Age", "string", "", 0, _age),
    ],
    "ingresses": [
        ("Name", "string", "name", 0, _name),
        (
            "Class",
            "string",
            "",
            0,
            lambda o: (o.get("spec") or {}).get("ingressClassName") or "<none>",
        ),
        (
            "Hosts",
            "string",
            "",
            0,
            lambda o: (
                ",".join(r.get("host", "*") for r in (o.get("spec") or {}).get("rules") or [])
                or "*"
            ),
        ),
        ("Address", "string", "", 0, lambda o: ""),
        ("Ports", "string", "", 0, lambda o: "80"),
        ("Age", "string", "", 0, _age),
    ],
}

DEFAULT_COLUMNS: list[Column] = [
    ("Name", "string", "name", 0, _name),
    ("Created At", "date", "", 0, lambda o: (o.get("metadata") or {}).get("creationTimestamp", "")),
]


_JSONPATH_PART = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\['([^']+)'\]")


def json_path(obj: Any, path: str) -> Any:
    """The value at a simple JSONPath (``.status.phase``, ``.spec.ports[0].port``)."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    text = text.removeprefix("$")
    value = obj
    for match in _JSONPATH_PART.finditer(text):
        key, index, quoted = match.groups()
        if index is not None:
            if not isinstance(value, list) or int(index) >= len(value):
                return None
            value = value[int(index)]
        else:
            if not isinstance(value, dict):
                return None
            value = value.get(key or quoted)
        if value is None:
            return None
    return value


def _custom_columns(rt: ResourceType) -> list[Column]:
    if not rt.printer_columns:
        return DEFAULT_COLUMNS
    columns: list[Column] = [("Name", "string", "name", 0, _name)]
    for column in rt.printer_columns:
        path = column.get("jsonPath", "")
        kind = column.get("type", "string")

        def cell(obj: JSON, path: str = path, kind: str = kind) -> Any:
            value = json_path(obj, path)
            if value is None:
                return None
            if kind == "date":
                # As the CRD table convertor does: a date column is shown as an age ("5m").
                return (
                    _age({"metadata": {"creationTimestamp": value}})
                    if isinstance(value, str)
                    else "<invalid>"
                )
            if kind == "string" and not isinstance(value, str):
                return json.dumps(value)
            return value

        columns.append(
            (column["name"], kind, column.get("format", ""), int(column.get("priority", 0)), cell)
        )
    return columns


def columns_for(rt: ResourceType) -> list[Column]:
    if rt.custom:
        return _custom_columns(rt)
    return BUILTIN_COLUMNS.get(rt.plural, DEFAULT_COLUMNS)


def _row_object(rt: ResourceType, obj: JSON, include: str) -> JSON | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def table(
    rt: ResourceType,
    objects: list[JSON],
    *,
    resource_version: str = "",
    continue_token: str = "",
    include_object: str = "Metadata",
) -> JSON:
    """A Table with one row per object."""
    columns = columns_for(rt)
    rows = []
    for obj in objects:
        row: JSON = {"cells": [cell(obj) for *_, cell in columns]}
        row_object = _row_object(rt, obj, include_object)
        if row_object is not None:
            row["object"] = row_object
        rows.append(row)
    metadata: JSON = {}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    if continue_token:
        metadata["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": [
            {"name": name, "type": kind, "format": fmt, "description": "", "priority": priority}
            for name, kind, fmt, priority, _ in columns
        ],
        "rows": rows,
    }
