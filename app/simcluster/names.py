"""Name, label and annotation rules of the Kubernetes API, with apimachinery's exact messages.

The functions mirror ``k8s.io/apimachinery/pkg/util/validation`` (``IsDNS1123Subdomain``,
``IsDNS1123Label``, ``IsDNS1035Label``, ``IsQualifiedName``, ``IsValidLabelValue``) and
``ValidateObjectMetaAccessor`` of ``pkg/api/validation``: each returns the list of messages (or
``Cause`` objects) a v1.20 API server puts into an ``Invalid`` status.  Pure logic, no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from app.simcluster.errors import Cause

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_LABEL_ERR = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
DNS1123_LABEL_MAX_LENGTH = 63

DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + "(\\." + DNS1123_LABEL_FMT + ")*"
DNS1123_SUBDOMAIN_ERR = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character"
)
DNS1123_SUBDOMAIN_MAX_LENGTH = 253

DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
DNS1035_LABEL_ERR = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character"
)
DNS1035_LABEL_MAX_LENGTH = 63

QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
QUALIFIED_NAME_ERR = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character"
)
QUALIFIED_NAME_MAX_LENGTH = 63

LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"
LABEL_VALUE_ERR = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character"
)
LABEL_VALUE_MAX_LENGTH = 63

TOTAL_ANNOTATION_SIZE_LIMIT_B = 256 * (1 << 10)

_DNS1123_LABEL_RE = re.compile(DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_RE = re.compile(DNS1123_SUBDOMAIN_FMT)
_DNS1035_LABEL_RE = re.compile(DNS1035_LABEL_FMT)
_QUALIFIED_NAME_RE = re.compile(QUALIFIED_NAME_FMT)
_LABEL_VALUE_RE = re.compile(LABEL_VALUE_FMT)


def _full(pattern: re.Pattern[str], value: str) -> bool:
    # Go's "^...$" regexps: "$" without the multi-line flag matches only at the very end.
    return pattern.fullmatch(value) is not None


def _blen(value: str) -> int:
    # Go's len() of a string counts UTF-8 bytes.
    return len(value.encode())


def max_len_error(length: int) -> str:
    """``validation.MaxLenError``."""
    return f"must be no more than {length} characters"


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """``validation.RegexError``, including its double space before each ``or``."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    msg += " (e.g. "
    for i, example in enumerate(examples):
        if i > 0:
            msg += " or "
        msg += f"'{example}', "
    return msg + f"regex used for validation is '{fmt}')"


def empty_error() -> str:
    """``validation.EmptyError``."""
    return "must be non-empty"


def dns1123_label_errors(value: str) -> list[str]:
    """``IsDNS1123Label``: namespace names, service names of some kinds, label-like names."""
    errs = []
    if _blen(value) > DNS1123_LABEL_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_LABEL_MAX_LENGTH))
    if not _full(_DNS1123_LABEL_RE, value):
        errs.append(regex_error(DNS1123_LABEL_ERR, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def dns1123_subdomain_errors(value: str) -> list[str]:
    """``IsDNS1123Subdomain``: the name rule of most kinds (and of custom resources)."""
    errs = []
    if _blen(value) > DNS1123_SUBDOMAIN_MAX_LENGTH:
        errs.append(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH))
    if not _full(_DNS1123_SUBDOMAIN_RE, value):
        errs.append(regex_error(DNS1123_SUBDOMAIN_ERR, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def dns1035_label_errors(value: str) -> list[str]:
    """``IsDNS1035Label``: service names."""
    errs = []
    if _blen(value) > DNS1035_LABEL_MAX_LENGTH:
        errs.append(max_len_error(DNS1035_LABEL_MAX_LENGTH))
    if not _full(_DNS1035_LABEL_RE, value):
        errs.append(regex_error(DNS1035_LABEL_ERR, DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def qualified_name_errors(value: str) -> list[str]:
    """``IsQualifiedName``: label keys, annotation keys, finalizers (``[prefix/]name``)."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part " + empty_error())
        else:
            errs.extend("prefix part " + msg for msg in dns1123_subdomain_errors(prefix))
    else:
        return [
            "a qualified name "
            + regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part " + empty_error())
    elif _blen(name) > QUALIFIED_NAME_MAX_LENGTH:
        errs.append("name part " + max_len_error(QUALIFIED_NAME_MAX_LENGTH))
    if not _full(_QUALIFIED_NAME_RE, name):
        errs.append(
            "name part "
            + regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errs


def label_value_errors(value: str) -> list[str]:
    """``IsValidLabelValue``."""
    errs = []
    if _blen(value) > LABEL_VALUE_MAX_LENGTH:
        errs.append(max_len_error(LABEL_VALUE_MAX_LENGTH))
    if not _full(_LABEL_VALUE_RE, value):
        errs.append(regex_error(LABEL_VALUE_ERR, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


# --------------------------------------------------------------------------- Go formatting

_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}


def go_quote(value: str) -> str:
    """Go's ``strconv.Quote`` (what ``%q`` prints for a string)."""
    out = ['"']
    for ch in value:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def go_float(value: float) -> str:
    """Go's ``%v`` of a float64 (``strconv.FormatFloat(f, 'g', -1, 64)``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign_bit, digit_tuple, exponent = Decimal(repr(float(value))).as_tuple()
    sign = "-" if sign_bit else ""
    digits = "".join(str(d) for d in digit_tuple)
    assert isinstance(exponent, int)
    point = len(digits) + exponent  # position of the decimal point within ``digits``
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    if not digits:
        return sign + "0"
    exp = point - 1
    if exp < -4 or exp >= 6:  # shortest formatting decides with precision 6
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mant}e{'+' if exp >= 0 else '-'}{abs(exp):02d}"
    if point <= 0:
        return sign + "0." + "0" * (-point) + digits
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return sign + digits[:point] + "." + digits[point:]


def go_value(value: Any) -> str:
    """``%v`` of a JSON-decoded scalar as Go prints it (int64, float64, bool)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    return str(value)


def go_sharp_v(value: Any) -> str:
    """Go's ``%#v`` of a JSON-decoded value held in an ``interface{}``."""
    if value is None:
        return "interface {}(nil)"
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, bool | int | float):
        return go_value(value)
    if isinstance(value, list):
        return "[]interface {}{" + ", ".join(go_sharp_v(v) for v in value) + "}"
    if isinstance(value, Mapping):
        items = ", ".join(f"{go_quote(str(k))}:{go_sharp_v(value[k])}" for k in sorted(value))
        return "map[string]interface {}{" + items + "}"
    return str(value)


def invalid_value_message(value: Any, detail: str) -> str:
    """``field.Invalid(...).ErrorBody()``: ``Invalid value: <value>: <detail>``."""
    return _error_body("Invalid value", value, detail)


def _error_body(kind: str, value: Any, detail: str) -> str:
    if value is None:
        shown = '"null"'
    elif isinstance(value, str):
        shown = go_quote(value)
    elif isinstance(value, bool | int | float):
        shown = go_value(value)
    else:
        shown = go_sharp_v(value)
    text = f"{kind}: {shown}"
    if detail:
        text += f": {detail}"
    return text


def invalid(field: str, value: Any, detail: str) -> Cause:
    """``field.Invalid``."""
    return Cause("FieldValueInvalid", invalid_value_message(value, detail), field)


def required(field: str, detail: str = "") -> Cause:
    """``field.Required``."""
    return Cause("FieldValueRequired", "Required value" + (f": {detail}" if detail else ""), field)


def forbidden(field: str, detail: str = "") -> Cause:
    """``field.Forbidden``."""
    return Cause("FieldValueForbidden", "Forbidden" + (f": {detail}" if detail else ""), field)


def too_long(field: str, max_length: int) -> Cause:
    """``field.TooLong`` (v1.20 wording)."""
    return Cause("FieldValueTooLong", f"Too long: must have at most {max_length} bytes", field)


def not_supported(field: str, value: Any, valid: list[str]) -> Cause:
    """``field.NotSupported``."""
    detail = ""
    if valid:
        detail = "supported values: " + ", ".join(go_quote(v) for v in valid)
    return Cause("FieldValueNotSupported", _error_body("Unsupported value", value, detail), field)


def duplicate(field: str, value: Any) -> Cause:
    """``field.Duplicate``."""
    return Cause("FieldValueDuplicate", _error_body("Duplicate value", value, ""), field)


# --------------------------------------------------------------------------- ObjectMeta


def _mask_trailing_dash(name: str) -> str:
    """``maskTrailingDash``: a generateName prefix may end in '-' (apimachinery's own slicing)."""
    if len(name) > 1 and name.endswith("-"):
        return name[:-2] + "a"
    return name


def validate_object_meta(
    meta: Mapping[str, Any],
    *,
    namespaced: bool,
    name_rule: Callable[[str], list[str]],
) -> list[Cause]:
    """``ValidateObjectMetaAccessor``: causes for name, generateName, namespace, labels, ...

    A cluster-scoped object's ``metadata.namespace`` is not an error here: the real server clears
    it before validation.  ``ownerReferences`` are checked by the store.
    """
    causes: list[Cause] = []
    generate_name = meta.get("generateName") or ""
    name = meta.get("name") or ""
    if generate_name:
        for msg in name_rule(_mask_trailing_dash(str(generate_name))):
            causes.append(invalid("metadata.generateName", generate_name, msg))
    if not name:
        if not generate_name:
            causes.append(required("metadata.name", "name or generateName is required"))
    else:
        for msg in name_rule(str(name)):
            causes.append(invalid("metadata.name", name, msg))
    if namespaced:
        namespace = meta.get("namespace") or ""
        if not namespace:
            causes.append(required("metadata.namespace"))
        else:
            for msg in dns1123_label_errors(str(namespace)):
                causes.append(invalid("metadata.namespace", namespace, msg))
    generation = meta.get("generation")
    if isinstance(generation, int) and not isinstance(generation, bool) and generation < 0:
        causes.append(
            invalid("metadata.generation", generation, "must be greater than or equal to 0")
        )
    causes.extend(validate_labels(meta.get("labels") or {}, "metadata.labels"))
    causes.extend(validate_annotations(meta.get("annotations") or {}, "metadata.annotations"))
    for finalizer in meta.get("finalizers") or []:
        for msg in qualified_name_errors(str(finalizer)):
            causes.append(invalid("metadata.finalizers", finalizer, msg))
    return causes


def validate_labels(labels: Mapping[str, Any], path: str = "metadata.labels") -> list[Cause]:
    """``ValidateLabels``: key and value rules, both reported at the map's path."""
    causes: list[Cause] = []
    for key, value in labels.items():
        causes.extend(invalid(path, key, msg) for msg in qualified_name_errors(key))
        text = "" if value is None else str(value)
        causes.extend(invalid(path, text, msg) for msg in label_value_errors(text))
    return causes


def validate_annotations(
    annotations: Mapping[str, Any], path: str = "metadata.annotations"
) -> list[Cause]:
    """``ValidateAnnotations``: qualified-name keys and a 256 KiB total size (bytes)."""
    causes: list[Cause] = []
    total = 0
    for key, value in annotations.items():
        causes.extend(invalid(path, key, msg) for msg in qualified_name_errors(key.lower()))
        total += len(key.encode()) + len(("" if value is None else str(value)).encode())
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_B:
        causes.append(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT_B))
    return causes
