"""Structural OpenAPI v3 schemas of CustomResourceDefinitions, as apiextensions-apiserver uses them.

* ``prune``: drop fields the schema does not specify (``structural/pruning``).
* ``apply_defaults``: fill ``default`` values (``structural/defaulting``).
* ``validate``: go-openapi schema validation turned into field causes exactly as
  ``apiextensions-apiserver/pkg/apiserver/validation.ValidateCustomResource`` does, plus the
  ``x-kubernetes-list-type`` set/map uniqueness checks.
* ``structural_errors``: the structural-schema checks made when a CRD is created or updated.
* ``process_custom_object``: prune, default, validate (the server's order).

Pure logic, no I/O.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from app.simcluster import names
from app.simcluster.errors import Cause

Schema = Mapping[str, Any]

# go-openapi builds item paths as "<path>.<i>"; newer kube-openapi as "<path>[<i>]".  The
# project's brief asks for brackets (``spec.ports[1].port``).
ARRAY_INDEX_FORMAT = "{path}[{index}]"

_META_FIELDS = frozenset({"apiVersion", "kind", "metadata"})


# ============================================================================== pruning


def prune(schema: Schema, obj: Any) -> Any:
    """Return a copy of ``obj`` without the fields ``schema`` does not specify.

    The object root is treated as an embedded resource: its apiVersion, kind and metadata are
    never pruned.
    """
    result = copy.deepcopy(obj)
    root = dict(schema or {})
    root["x-kubernetes-embedded-resource"] = True
    _prune(result, root)
    return result


def _additional(schema: Schema) -> tuple[bool, Schema | None]:
    """(present, sub-schema) for ``additionalProperties`` (``true`` has no sub-schema)."""
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping):
        return True, extra
    if extra is True:
        return True, None
    return False, None


def _prune(x: Any, s: Schema | None) -> None:
    if s is not None and s.get("x-kubernetes-preserve-unknown-fields"):
        _skip_prune(x, s)
        return
    if isinstance(x, dict):
        if s is None:
            x.clear()
            return
        props = s.get("properties") or {}
        has_extra, extra = _additional(s)
        for key in list(x):
            if s.get("x-kubernetes-embedded-resource") and key in _META_FIELDS:
                continue
            if key in props:
                _prune(x[key], props[key])
            elif has_extra:
                _prune(x[key], extra)
            else:
                del x[key]
    elif isinstance(x, list):
        items = None if s is None else s.get("items")
        for v in x:
            _prune(v, items if isinstance(items, Mapping) else None)


def _skip_prune(x: Any, s: Schema | None) -> None:
    if s is None:
        return
    if isinstance(x, dict):
        props = s.get("properties") or {}
        has_extra, extra = _additional(s)
        for key in list(x):
            if s.get("x-kubernetes-embedded-resource") and key in _META_FIELDS:
                continue
            if key in props:
                _prune(x[key], props[key])
            elif has_extra:
                _prune(x[key], extra)
    elif isinstance(x, list):
        items = s.get("items")
        for v in x:
            _skip_prune(v, items if isinstance(items, Mapping) else None)


# ============================================================================== defaulting


def apply_defaults(schema: Schema, obj: Any) -> Any:
    """Return a copy of ``obj`` with ``default`` values set for missing (or non-nullable null)
    properties, recursively (array items and additionalProperties included)."""
    result = copy.deepcopy(obj)
    _default(result, schema)
    return result


def _default(x: Any, s: Schema | None) -> None:
    if s is None:
        return
    if isinstance(x, dict):
        props: Mapping[str, Any] = s.get("properties") or {}
        for key, prop in props.items():
            if not isinstance(prop, Mapping) or prop.get("default") is None:
                continue
            if key not in x or (x[key] is None and not prop.get("nullable")):
                x[key] = copy.deepcopy(prop["default"])
        _, extra = _additional(s)
        for key, value in x.items():
            if key in props:
                _default(value, props[key])
            elif extra is not None:
                _default(value, extra)
    elif isinstance(x, list):
        items = s.get("items")
        for v in x:
            _default(v, items if isinstance(items, Mapping) else None)


# ============================================================================== validation


class _Err:
    """A go-openapi ``errors.Validation`` (or a composite ``apiError`` when ``code`` is 0)."""

    __slots__ = ("code", "message", "name", "value", "values")

    def __init__(
        self, code: str, name: str, value: Any, message: str, values: list[Any] | None = None
    ) -> None:
        self.code, self.name, self.value, self.message = code, name, value, message
        self.values = values or []


_NO_VALUE = object()


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _types(s: Schema) -> list[str]:
    if s.get("x-kubernetes-int-or-string"):
        return ["integer", "string"]
    t = s.get("type")
    if isinstance(t, list):
        return [str(v) for v in t]
    return [t] if isinstance(t, str) and t else []


# -- formats supported by apiextensions (others are stripped before validation) ------------

_UUID = re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
_UUID3 = re.compile(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$")
_UUID4 = re.compile(
    r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$"
)
_UUID5 = re.compile(
    r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$"
)
_HOSTNAME = re.compile(
    r"^[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*$"
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_MAC = re.compile(r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$|^([0-9A-Fa-f]{4}\.){2}[0-9A-Fa-f]{4}$")
_HEXCOLOR = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_RGBCOLOR = re.compile(
    r"^rgb\(\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])"
    r"\s*,\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*\)$"
)
_SSN = re.compile(r"^\d{3}[- ]?\d{2}[- ]?\d{4}$")
_BSON = re.compile(r"^[0-9a-fA-F]{24}$")
_ISBN10 = re.compile(r"^(?:[0-9]{9}X|[0-9]{10})$")
_ISBN13 = re.compile(r"^(?:[0-9]{13})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?$")
_DURATION = re.compile(
    r"^(?:[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$|^0$|"
    r"^\d+\s*(?:ns|us|ms|s|m|h|d|w|nanoseconds?|microseconds?|milliseconds?|seconds?|minutes?"
    r"|hours?|days?|weeks?)$"
)


def _is_datetime(v: str) -> bool:
    if not _DATETIME.match(v):
        return False
    try:
        datetime.fromisoformat(v.replace("z", "Z").replace("Z", "+00:00").replace("t", "T"))
    except ValueError:
        return False
    return True


def _is_date(v: str) -> bool:
    if not _DATE.match(v):
        return False
    try:
        datetime.strptime(v, "%Y-%m-%d")
    except ValueError:
        return False
    return True


def _is_ip(v: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(v).version == version
    except ValueError:
        return False


def _is_cidr(v: str) -> bool:
    try:
        ipaddress.ip_network(v, strict=False)
    except ValueError:
        return False
    return "/" in v


def _is_byte(v: str) -> bool:
    try:
        base64.b64decode(v, validate=True)
    except (ValueError, TypeError):
        return False
    return True


def _is_uri(v: str) -> bool:
    # net/url.ParseRequestURI: absolute URI or absolute path, no fragment handling needed here
    return bool(re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*:|/)\S*$", v))


def _is_creditcard(v: str) -> bool:
    digits = re.sub(r"\D", "", v)
    return bool(
        re.fullmatch(
            r"4[0-9]{12}(?:[0-9]{3})?|5[1-5][0-9]{14}|6(?:011|5[0-9][0-9])[0-9]{12}|3[47][0-9]{13}|"
            r"3(?:0[0-5]|[68][0-9])[0-9]{11}|(?:2131|1800|35\d{3})\d{11}",
            digits,
        )
    )


_FORMATS: dict[str, Callable[[str], bool]] = {
    "bsonobjectid": lambda v: bool(_BSON.match(v)),
    "uri": _is_uri,
    "email": lambda v: bool(_EMAIL.match(v)),
    "hostname": lambda v: bool(_HOSTNAME.match(v)) and len(v) <= 255,
    "ipv4": lambda v: _is_ip(v, 4),
    "ipv6": lambda v: _is_ip(v, 6),
    "cidr": _is_cidr,
    "mac": lambda v: bool(_MAC.match(v)),
    "uuid": lambda v: bool(_UUID.match(v)),
    "uuid3": lambda v: bool(_UUID3.match(v)),
    "uuid4": lambda v: bool(_UUID4.match(v)),
    "uuid5": lambda v: bool(_UUID5.match(v)),
    "isbn": lambda v: bool(_ISBN10.match(v.replace("-", "")) or _ISBN13.match(v.replace("-", ""))),
    "isbn10": lambda v: bool(_ISBN10.match(v.replace("-", ""))),
    "isbn13": lambda v: bool(_ISBN13.match(v.replace("-", ""))),
    "creditcard": _is_creditcard,
    "ssn": lambda v: bool(_SSN.match(v)),
    "hexcolor": lambda v: bool(_HEXCOLOR.match(v)),
    "rgbcolor": lambda v: bool(_RGBCOLOR.match(v)),
    "byte": _is_byte,
    "password": lambda v: True,
    "date": _is_date,
    "duration": lambda v: bool(_DURATION.match(v)),
    "datetime": _is_datetime,
}


def _supported_format(s: Schema) -> str:
    """The schema's format if apiextensions keeps it (``StripUnsupportedFormatsPostProcess``)."""
    fmt = s.get("format")
    if not isinstance(fmt, str) or not fmt:
        return ""
    return fmt if fmt.replace("-", "") in _FORMATS else ""


# -- value comparison ----------------------------------------------------------------------


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _enum_equal(data: Any, allowed: Any) -> bool:
    """go-openapi's enum check: convertible types compared after conversion."""
    if _is_number(data) and _is_number(allowed):
        return float(data) == float(allowed)
    if type(data) is not type(allowed):
        return False
    return bool(data == allowed)


def _deep_equal(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        return float(a) == float(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_deep_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_deep_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _go_num(value: Any) -> str:
    """``%v`` of a schema bound (a float64 in go-openapi's spec.Schema)."""
    return names.go_float(float(value))


def _translate_pattern(pattern: str) -> str:
    # RE2 and Python agree on the common subset; map the few RE2-only spellings.
    return pattern.replace(r"\z", r"\Z").replace("(?P<", "(?P<")


class _Validator:
    def __init__(self) -> None:
        self.errors: list[_Err] = []

    # Returns the errors of validating ``data`` against ``s`` at ``name``.
    def run(self, s: Schema, data: Any, name: str) -> list[_Err]:
        errs: list[_Err] = []
        if data is None:
            errs.extend(self.check_type(s, data, name))
            errs.extend(self.check_enum(s, data, name))
            return errs
        errs.extend(self.check_type(s, data, name))
        errs.extend(self.check_composition(s, data, name))
        if isinstance(data, str):
            errs.extend(self.check_string(s, data, name))
            fmt = _supported_format(s)
            if fmt and not _FORMATS[fmt.replace("-", "")](data):
                errs.append(
                    _Err(
                        "format",
                        name,
                        data,
                        f"{name} in body must be of type {fmt}: {names.go_quote(data)}",
                    )
                )
        if _is_number(data):
            errs.extend(self.check_number(s, data, name))
        if isinstance(data, list):
            errs.extend(self.check_array(s, data, name))
        errs.extend(self.check_enum(s, data, name))
        if isinstance(data, dict):
            errs.extend(self.check_object(s, data, name))
        return errs

    def check_type(self, s: Schema, data: Any, name: str) -> list[_Err]:
        types = _types(s)
        if not types:
            return []
        if data is None:
            if "null" in types or s.get("nullable"):
                return []
            return [self.type_error(name, types, "null")]
        kind = _json_kind(data)
        fmt = _supported_format(s)
        if fmt and not ({"number", "integer"} & set(types)) and isinstance(data, str | list):
            return []
        is_float_int = kind == "number" and float(data).is_integer() and "integer" in types
        is_int_float = kind == "integer" and "number" in types
        if kind in types or is_float_int or is_int_float:
            return []
        return [self.type_error(name, types, kind)]

    @staticmethod
    def type_error(name: str, types: list[str], kind: str) -> _Err:
        return _Err(
            "type",
            name,
            kind,
            f"{name} in body must be of type {','.join(types)}: {names.go_quote(kind)}",
        )

    def check_composition(self, s: Schema, data: Any, name: str) -> list[_Err]:
        errs: list[_Err] = []
        all_of = [x for x in s.get("allOf") or [] if isinstance(x, Mapping)]
        if all_of:
            failed = 0
            for sub in all_of:
                sub_errs = self.run(sub, data, name)
                if sub_errs:
                    failed += 1
                    errs.extend(sub_errs)
            if failed:
                errs.append(
                    _Err(
                        "",
                        name,
                        _NO_VALUE,
                        f"{names.go_quote(name)} must validate all the schemas (allOf)",
                    )
                )
        one_of = [x for x in s.get("oneOf") or [] if isinstance(x, Mapping)]
        if one_of:
            results = [self.run(sub, data, name) for sub in one_of]
            valid = sum(1 for r in results if not r)
            if valid != 1:
                extra = "Found none valid" if valid == 0 else f"Found {valid} valid alternatives"
                quoted = names.go_quote(name)
                errs.append(
                    _Err(
                        "",
                        name,
                        _NO_VALUE,
                        f"{quoted} must validate one and only one schema (oneOf). {extra}",
                    )
                )
                if valid == 0:
                    errs.extend(results[0])
        any_of = [x for x in s.get("anyOf") or [] if isinstance(x, Mapping)]
        if any_of:
            results = [self.run(sub, data, name) for sub in any_of]
            if all(results):
                errs.append(
                    _Err(
                        "",
                        name,
                        _NO_VALUE,
                        f"{names.go_quote(name)} must validate at least one schema (anyOf)",
                    )
                )
                errs.extend(results[0])
        not_schema = s.get("not")
        if isinstance(not_schema, Mapping) and not self.run(not_schema, data, name):
            errs.append(
                _Err(
                    "",
                    name,
                    _NO_VALUE,
                    f"{names.go_quote(name)} must not validate the schema (not)",
                )
            )
        return errs

    def check_string(self, s: Schema, data: str, name: str) -> list[_Err]:
        max_length, min_length, pattern = s.get("maxLength"), s.get("minLength"), s.get("pattern")
        if max_length is not None and len(data) > int(max_length):
            return [
                _Err(
                    "maxLength",
                    name,
                    data,
                    f"{name} in body should be at most {int(max_length)} chars long",
                )
            ]
        if min_length is not None and len(data) < int(min_length):
            return [
                _Err(
                    "minLength",
                    name,
                    data,
                    f"{name} in body should be at least {int(min_length)} chars long",
                )
            ]
        if isinstance(pattern, str) and pattern:
            try:
                matched = re.search(_translate_pattern(pattern), data) is not None
            except re.error:
                matched = True
            if not matched:
                return [_Err("pattern", name, data, f"{name} in body should match '{pattern}'")]
        return []

    def check_number(self, s: Schema, data: float, name: str) -> list[_Err]:
        errs = []
        multiple_of: Any = s.get("multipleOf")
        if _is_number(multiple_of) and multiple_of > 0:
            quotient = float(data) / float(multiple_of)
            if not math.isclose(quotient, round(quotient), rel_tol=0, abs_tol=1e-9):
                errs.append(
                    _Err(
                        "multipleOf",
                        name,
                        data,
                        f"{name} in body should be a multiple of {_go_num(multiple_of)}",
                    )
                )
        maximum: Any = s.get("maximum")
        if _is_number(maximum):
            exclusive = bool(s.get("exclusiveMaximum"))
            if data > maximum or (exclusive and data == maximum):
                word = "less than" if exclusive else "less than or equal to"
                errs.append(
                    _Err(
                        "maximum", name, data, f"{name} in body should be {word} {_go_num(maximum)}"
                    )
                )
        minimum: Any = s.get("minimum")
        if _is_number(minimum):
            exclusive = bool(s.get("exclusiveMinimum"))
            if data < minimum or (exclusive and data == minimum):
                word = "greater than" if exclusive else "greater than or equal to"
                errs.append(
                    _Err(
                        "minimum", name, data, f"{name} in body should be {word} {_go_num(minimum)}"
                    )
                )
        return errs

    def check_array(self, s: Schema, data: list[Any], name: str) -> list[_Err]:
        errs: list[_Err] = []
        items = s.get("items")
        if isinstance(items, Mapping):
            for i, value in enumerate(data):
                errs.extend(self.run(items, value, ARRAY_INDEX_FORMAT.format(path=name, index=i)))
        min_items, max_items = s.get("minItems"), s.get("maxItems")
        if min_items is not None and len(data) < int(min_items):
            errs.append(
                _Err(
                    "minItems",
                    name,
                    data,
                    f"{name} in body should have at least {int(min_items)} items",
                )
            )
        if max_items is not None and len(data) > int(max_items):
            errs.append(
                _Err(
                    "maxItems",
                    name,
                    data,
                    f"{name} in body should have at most {int(max_items)} items",
                )
            )
        if s.get("uniqueItems"):
            for i, value in enumerate(data):
                if any(_deep_equal(value, other) for other in data[:i]):
                    errs.append(
                        _Err(
                            "uniqueItems",
                            name,
                            _NO_VALUE,
                            f"{name} in body shouldn't contain duplicates",
                        )
                    )
                    break
        return errs

    def check_enum(self, s: Schema, data: Any, name: str) -> list[_Err]:
        enum = s.get("enum")
        if not isinstance(enum, list) or not enum:
            return []
        if data is not None and any(_enum_equal(data, allowed) for allowed in enum):
            return []
        return [_Err("enum", name, data, f"{name} in body should be one of {enum}", list(enum))]

    def check_object(self, s: Schema, data: dict[str, Any], name: str) -> list[_Err]:
        min_props, max_props = s.get("minProperties"), s.get("maxProperties")
        if min_props is not None and len(data) < int(min_props):
            return [
                _Err(
                    "minProperties",
                    name,
                    int(min_props),
                    f"{name} in body should have at least {int(min_props)} properties",
                )
            ]
        if max_props is not None and len(data) > int(max_props):
            return [
                _Err(
                    "maxProperties",
                    name,
                    int(max_props),
                    f"{name} in body should have at most {int(max_props)} properties",
                )
            ]
        errs: list[_Err] = []
        props: Mapping[str, Any] = s.get("properties") or {}
        extra = s.get("additionalProperties")
        if extra is False:
            for key in sorted(data):
                if key not in props and key not in ("$schema", "id"):
                    errs.append(
                        _Err(
                            "additionalProperties",
                            name,
                            key,
                            f"{name}.{key} in body is a forbidden property",
                        )
                    )
        elif isinstance(extra, Mapping):
            for key in sorted(data):
                if key not in props:
                    errs.extend(self.run(extra, data[key], f"{name}.{key}"))
        for key in sorted(props):
            if key in data and isinstance(props[key], Mapping):
                errs.extend(self.run(props[key], data[key], f"{name}.{key}" if name else key))
        for key in s.get("required") or []:
            if key not in data:
                errs.append(
                    _Err(
                        "required", f"{name}.{key}", _NO_VALUE, f"{name}.{key} in body is required"
                    )
                )
        return errs


def _join(prefix: str, name: str) -> str:
    if not prefix:
        return name
    if not name:
        return prefix
    return f"{prefix}{name}" if name.startswith("[") else f"{prefix}.{name}"


def _to_cause(err: _Err, path: str) -> Cause:
    """``ValidateCustomResource``'s conversion of a go-openapi error into a field error."""
    if not err.code:  # composite (allOf/anyOf/oneOf/not): reported at the root path
        return names.invalid(path, "", err.message)
    field = path
    if err.name and err.name != ".":
        field = _join(path, err.name.removeprefix("."))
    if err.code == "required":
        return names.required(field)
    if err.code == "enum":
        values = [v if isinstance(v, str) else _json_marshal(v) for v in err.values]
        return names.not_supported(field, err.value, values)
    value = "" if err.value is _NO_VALUE or err.value is None else err.value
    return names.invalid(field, value, err.message)


def _json_marshal(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def validate(schema: Schema, obj: Any, path: str = "") -> list[Cause]:
    """Validate ``obj`` against a CRD's ``openAPIV3Schema``; causes as the real server words them.

    ``path`` prefixes every field (the server validates custom resources at the root, "").
    """
    causes = [_to_cause(e, path) for e in _Validator().run(schema or {}, obj, "")]
    causes.extend(_list_type_errors(schema or {}, obj, path))
    return causes


# -- x-kubernetes-list-type ------------------------------------------------------------------


def _list_type_errors(s: Schema, obj: Any, path: str) -> list[Cause]:
    causes: list[Cause] = []
    if isinstance(obj, dict):
        props: Mapping[str, Any] = s.get("properties") or {}
        _, extra = _additional(s)
        for key in sorted(obj):
            sub = props.get(key) if key in props else extra
            if isinstance(sub, Mapping):
                causes.extend(_list_type_errors(sub, obj[key], _join(path, key)))
    elif isinstance(obj, list):
        list_type = s.get("x-kubernetes-list-type")
        if list_type == "set":
            for i, value in enumerate(obj):
                if any(_deep_equal(value, other) for other in obj[:i]):
                    causes.append(names.duplicate(f"{path}[{i}]", value))
        elif list_type == "map":
            keys = [k for k in s.get("x-kubernetes-list-map-keys") or [] if isinstance(k, str)]
            item_props: Mapping[str, Any] = (s.get("items") or {}).get("properties") or {}
            seen: list[dict[str, Any]] = []
            for i, value in enumerate(obj):
                if not isinstance(value, dict):
                    continue
                key_values = {}
                for k in keys:
                    if k in value:
                        key_values[k] = value[k]
                    elif isinstance(item_props.get(k), Mapping) and "default" in item_props[k]:
                        key_values[k] = item_props[k]["default"]
                if any(_deep_equal(key_values, other) for other in seen):
                    causes.append(names.duplicate(f"{path}[{i}]", key_values))
                else:
                    seen.append(key_values)
        items = s.get("items")
        if isinstance(items, Mapping):
            for i, value in enumerate(obj):
                causes.extend(_list_type_errors(items, value, f"{path}[{i}]"))
    return causes


# ============================================================================== structural checks

_ROOT, _ITEM, _FIELD = "root", "item", "field"


def structural_errors(schema: Schema, path: str = "spec.validation.openAPIV3Schema") -> list[Cause]:
    """The checks a v1 CRD's schema must pass (structural invariants and forbidden keywords)."""
    causes: list[Cause] = []
    _check_forbidden_keywords(schema, path, causes)
    _check_structural(schema, _ROOT, path, causes)
    return causes


def _check_forbidden_keywords(s: Any, path: str, causes: list[Cause]) -> None:
    if not isinstance(s, Mapping):
        return
    if "$ref" in s:
        causes.append(names.forbidden(f"{path}.$ref", "$ref is not supported"))
    if "id" in s:
        causes.append(names.forbidden(f"{path}.id", "id is not supported"))
    if s.get("uniqueItems"):
        causes.append(
            names.forbidden(
                f"{path}.uniqueItems",
                "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
            )
        )
    if "additionalItems" in s:
        causes.append(
            names.forbidden(f"{path}.additionalItems", "additionalItems cannot be set to false")
        )
    if "patternProperties" in s:
        causes.append(
            names.forbidden(f"{path}.patternProperties", "patternProperties is not supported")
        )
    if "definitions" in s:
        causes.append(names.forbidden(f"{path}.definitions", "definitions is not supported"))
    if "dependencies" in s:
        causes.append(names.forbidden(f"{path}.dependencies", "dependencies is not supported"))
    extra = s.get("additionalProperties")
    if extra is not None and s.get("properties") and (extra is False or isinstance(extra, Mapping)):
        causes.append(
            names.forbidden(
                f"{path}.additionalProperties",
                "additionalProperties and properties are mutual exclusive",
            )
        )
    if isinstance(s.get("items"), list):
        causes.append(
            names.forbidden(f"{path}.items", "items must be a schema object and not an array")
        )
    if s.get("x-kubernetes-preserve-unknown-fields") is False:
        causes.append(
            names.invalid(
                f"{path}.x-kubernetes-preserve-unknown-fields", False, "must be true or undefined"
            )
        )
    list_type = s.get("x-kubernetes-list-type")
    if list_type is not None and list_type not in ("atomic", "set", "map"):
        causes.append(
            names.not_supported(
                f"{path}.x-kubernetes-list-type", list_type, ["atomic", "set", "map"]
            )
        )
    if list_type == "map" and not s.get("x-kubernetes-list-map-keys"):
        causes.append(
            names.required(
                f"{path}.x-kubernetes-list-map-keys",
                "must not be empty if x-kubernetes-list-type is map",
            )
        )
    for key, sub in (s.get("properties") or {}).items():
        _check_forbidden_keywords(sub, f"{path}.properties[{key}]", causes)
    if isinstance(s.get("items"), Mapping):
        _check_forbidden_keywords(s["items"], f"{path}.items", causes)
    if isinstance(extra, Mapping):
        _check_forbidden_keywords(extra, f"{path}.additionalProperties", causes)
    for keyword in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(s.get(keyword) or []):
            _check_forbidden_keywords(sub, f"{path}.{keyword}[{i}]", causes)
    if isinstance(s.get("not"), Mapping):
        _check_forbidden_keywords(s["not"], f"{path}.not", causes)


def _check_structural(s: Any, level: str, path: str, causes: list[Cause]) -> None:
    if not isinstance(s, Mapping):
        return
    typ = s.get("type") or ""
    embedded = bool(s.get("x-kubernetes-embedded-resource"))
    int_or_string = bool(s.get("x-kubernetes-int-or-string"))
    if typ == "array" and not isinstance(s.get("items"), Mapping):
        causes.append(names.required(f"{path}.items", "must be specified"))
    if isinstance(s.get("items"), Mapping):
        _check_structural(s["items"], _ITEM, f"{path}.items", causes)
    for key, sub in (s.get("properties") or {}).items():
        _check_structural(sub, _FIELD, f"{path}.properties[{key}]", causes)
    if isinstance(s.get("additionalProperties"), Mapping):
        _check_structural(s["additionalProperties"], _FIELD, f"{path}.additionalProperties", causes)
    if "default" in s and level == _ROOT:
        causes.append(names.forbidden(f"{path}.default", "must not be set at the root"))
    if int_or_string and s.get("x-kubernetes-preserve-unknown-fields"):
        causes.append(
            names.invalid(
                f"{path}.x-kubernetes-preserve-unknown-fields",
                True,
                "must be false if x-kubernetes-int-or-string is true",
            )
        )
    if int_or_string and embedded:
        causes.append(
            names.invalid(
                f"{path}.x-kubernetes-embedded-resource",
                True,
                "must be false if x-kubernetes-int-or-string is true",
            )
        )
    for keyword in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(s.get(keyword) or []):
            _check_value_validation(sub, f"{path}.{keyword}[{i}]", causes)
    if isinstance(s.get("not"), Mapping):
        _check_value_validation(s["not"], f"{path}.not", causes)
    if embedded and typ != "object":
        must_be_object = "must be object if x-kubernetes-embedded-resource is true"
        if not typ:
            causes.append(names.required(f"{path}.type", must_be_object))
        else:
            causes.append(names.invalid(f"{path}.type", typ, must_be_object))
    elif not typ and not embedded and not int_or_string:
        detail = {
            _ROOT: "must not be empty at the root",
            _ITEM: "must not be empty for specified array items",
            _FIELD: "must not be empty for specified object fields",
        }[level]
        causes.append(names.required(f"{path}.type", detail))
    elif embedded and s.get("additionalProperties") is not None:
        causes.append(
            names.forbidden(
                f"{path}.additionalProperties",
                "must not be used if x-kubernetes-embedded-resource is set",
            )
        )
    if level == _ROOT and typ and typ != "object":
        causes.append(names.invalid(f"{path}.type", typ, "must be object at the root"))
    props: Mapping[str, Any] = s.get("properties") or {}
    check_meta = level == _ROOT or embedded
    if check_meta:
        for key, want in (("kind", "string"), ("apiVersion", "string"), ("metadata", "object")):
            sub = props.get(key)
            if isinstance(sub, Mapping) and sub.get("type") != want:
                causes.append(
                    names.invalid(
                        f"{path}.properties[{key}].type", sub.get("type") or "", f"must be {want}"
                    )
                )
    metadata = props.get("metadata")
    if level == _ROOT and isinstance(metadata, Mapping):
        meta_props = set((metadata.get("properties") or {}).keys())
        others = {k for k in metadata if k not in ("type", "properties", "default")}
        if (meta_props - {"name", "generateName"}) or others:
            causes.append(
                names.forbidden(
                    f"{path}.properties[metadata]",
                    "must not specify anything other than name and generateName, but metadata is "
                    "implicitly specified",
                )
            )
    if embedded and not s.get("x-kubernetes-preserve-unknown-fields") and not props:
        causes.append(
            names.required(
                f"{path}.properties",
                "must not be empty if x-kubernetes-embedded-resource is true without "
                "x-kubernetes-preserve-unknown-fields",
            )
        )


def _check_value_validation(s: Any, path: str, causes: list[Cause]) -> None:
    """Inside allOf/anyOf/oneOf/not only value validations are allowed."""
    if not isinstance(s, Mapping):
        return
    for key, detail in (
        ("type", "must be empty to be structural"),
        ("additionalProperties", "must be undefined to be structural"),
        ("default", "must be undefined to be structural"),
        ("title", "must be empty to be structural"),
        ("description", "must be empty to be structural"),
    ):
        if s.get(key) not in (None, ""):
            causes.append(names.forbidden(f"{path}.{key}", detail))
    if s.get("nullable"):
        causes.append(names.forbidden(f"{path}.nullable", "must be false to be structural"))
    if "x-kubernetes-preserve-unknown-fields" in s:
        causes.append(
            names.forbidden(
                f"{path}.x-kubernetes-preserve-unknown-fields", "must be undefined to be structural"
            )
        )
    for key in ("x-kubernetes-embedded-resource", "x-kubernetes-int-or-string"):
        if s.get(key):
            causes.append(names.forbidden(f"{path}.{key}", "must be false to be structural"))
    for key, sub in (s.get("properties") or {}).items():
        _check_value_validation(sub, f"{path}.properties[{key}]", causes)
    if isinstance(s.get("items"), Mapping):
        _check_value_validation(s["items"], f"{path}.items", causes)


# ============================================================================== pipeline


def process_custom_object(
    schema: Schema, obj: dict[str, Any]
) -> tuple[dict[str, Any], list[Cause]]:
    """Prune, default, then validate a custom resource (metadata is validated elsewhere)."""
    pruned = prune(schema, obj)
    defaulted = apply_defaults(schema, pruned)
    body = {k: v for k, v in defaulted.items() if k != "metadata"}
    return defaulted, validate(schema, body)
