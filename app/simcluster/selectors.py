"""Label and field selectors as a v1.20 kube-apiserver parses and evaluates them.

``LabelSelector`` follows ``k8s.io/apimachinery/pkg/labels`` (lexer, parser, error messages,
canonical ``String()``), ``label_selector_from_spec`` follows ``metav1.LabelSelectorAsSelector``,
and ``FieldSelector`` follows ``pkg/fields`` (escaping, ``=``/``==``/``!=`` terms).
``field_values`` lists the selectable fields of each kind we serve.  Pure logic, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from app.simcluster import names
from app.simcluster.errors import BadRequest

# ------------------------------------------------------------------------------ label lexer

_EOS, _CLOSE, _COMMA, _NOT, _DEQ, _EQ, _GT, _ID, _IN, _LT, _NEQ, _NOTIN, _OPEN = range(13)

_STRING_TO_TOKEN = {
    ")": _CLOSE,
    ",": _COMMA,
    "!": _NOT,
    "==": _DEQ,
    "=": _EQ,
    ">": _GT,
    "in": _IN,
    "<": _LT,
    "!=": _NEQ,
    "notin": _NOTIN,
    "(": _OPEN,
}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")

# selection.Operator values
IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "in", "notin", "=", "==", "!="
GREATER_THAN, LESS_THAN, EXISTS, DOES_NOT_EXIST = "gt", "lt", "exists", "!"
_BINARY_OPERATORS = [IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN]


def _lex(text: str) -> list[tuple[int, str]]:
    """Tokenise like ``labels.Lexer`` (a NUL character ends the input, as in Go)."""
    items: list[tuple[int, str]] = []
    pos, n = 0, len(text)

    def read() -> str:
        nonlocal pos
        if pos < n:
            pos += 1
            return text[pos - 1]
        return "\0"

    while True:
        ch = read()
        while ch in _WHITESPACE:
            ch = read()
        if ch == "\0":
            items.append((_EOS, ""))
            return items
        if ch in _SPECIAL:
            buffer = ch
            token = _STRING_TO_TOKEN[ch]
            literal = ch
            while True:
                nxt = read()
                if nxt == "\0":
                    break
                if nxt in _SPECIAL:
                    buffer += nxt
                    if buffer in _STRING_TO_TOKEN:
                        token, literal = _STRING_TO_TOKEN[buffer], buffer
                        continue
                pos -= 1
                break
            items.append((token, literal))
            continue
        buffer = ch
        while True:
            nxt = read()
            if nxt == "\0":
                break
            if nxt in _SPECIAL or nxt in _WHITESPACE:
                pos -= 1
                break
            buffer += nxt
        items.append((_STRING_TO_TOKEN.get(buffer, _ID), buffer))


# ------------------------------------------------------------------------------ requirements

_INT64 = re.compile(r"[+-]?[0-9]+")


def _parse_int64(text: str) -> int | None:
    """``strconv.ParseInt(text, 10, 64)``; ``None`` when Go would fail."""
    if not _INT64.fullmatch(text):
        return None
    value = int(text)
    if not -(2**63) <= value < 2**63:
        return None
    return value


def _validate_label_key(key: str) -> None:
    errs = names.qualified_name_errors(key)
    if errs:
        raise ValueError(f"invalid label key {names.go_quote(key)}: {'; '.join(errs)}")


def _validate_label_value(key: str, value: str) -> None:
    errs = names.label_value_errors(value)
    if errs:
        raise ValueError(
            f"invalid label value: {names.go_quote(value)}: at key: {names.go_quote(key)}: "
            + "; ".join(errs)
        )


@dataclass(frozen=True)
class Requirement:
    """One ``key op values`` term of a label selector."""

    key: str
    operator: str
    values: tuple[str, ...]

    @classmethod
    def new(cls, key: str, operator: str, values: Iterable[str]) -> Requirement:
        """``labels.NewRequirement``: raises ``ValueError`` with the apimachinery message."""
        vals = list(values)
        _validate_label_key(key)
        if operator in (IN, NOT_IN):
            if not vals:
                raise ValueError("for 'in', 'notin' operators, values set can't be empty")
        elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
            if len(vals) != 1:
                raise ValueError("exact-match compatibility requires one single value")
        elif operator in (EXISTS, DOES_NOT_EXIST):
            if vals:
                raise ValueError("values set must be empty for exists and does not exist")
        elif operator in (GREATER_THAN, LESS_THAN):
            if len(vals) != 1:
                raise ValueError("for 'Gt', 'Lt' operators, exactly one value is required")
            if any(_parse_int64(v) is None for v in vals):
                raise ValueError("for 'Gt', 'Lt' operators, the value must be an integer")
        else:
            raise ValueError(f"operator '{operator}' is not recognized")
        for value in vals:
            _validate_label_value(key, value)
        return cls(key, operator, tuple(vals))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """``Requirement.Matches``."""
        has = self.key in labels
        op = self.operator
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return has and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return not has or labels[self.key] not in self.values
        if op == EXISTS:
            return has
        if op == DOES_NOT_EXIST:
            return not has
        if not has or len(self.values) != 1:
            return False
        mine, theirs = _parse_int64(labels[self.key]), _parse_int64(self.values[0])
        if mine is None or theirs is None:
            return False
        return mine > theirs if op == GREATER_THAN else mine < theirs

    def __str__(self) -> str:
        out = "!" if self.operator == DOES_NOT_EXIST else ""
        out += self.key
        symbol = {
            EQUALS: "=",
            DOUBLE_EQUALS: "==",
            NOT_EQUALS: "!=",
            IN: " in ",
            NOT_IN: " notin ",
            GREATER_THAN: ">",
            LESS_THAN: "<",
        }.get(self.operator)
        if symbol is None:
            return out
        out += symbol
        values = self.values[0] if len(self.values) == 1 else ",".join(sorted(self.values))
        if self.operator in (IN, NOT_IN):
            return f"{out}({values})"
        return out + values


class _Parser:
    """``labels.Parser``: recursive descent over the scanned tokens."""

    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.position = 0

    def lookahead(self, values: bool) -> tuple[int, str]:
        tok, lit = self.items[self.position]
        if values and tok in (_IN, _NOTIN):
            tok = _ID
        return tok, lit

    def consume(self, values: bool) -> tuple[int, str]:
        tok, lit = self.lookahead(values)
        self.position += 1
        return tok, lit

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            tok, lit = self.lookahead(True)
            if tok in (_ID, _NOT):
                try:
                    requirements.append(self.parse_requirement())
                except ValueError as exc:
                    raise ValueError(f"unable to parse requirement: {exc}") from None
                t, lit2 = self.consume(True)
                if t == _EOS:
                    return requirements
                if t == _COMMA:
                    t2, l2 = self.lookahead(True)
                    if t2 not in (_ID, _NOT):
                        raise ValueError(f"found '{l2}', expected: identifier after ','")
                else:
                    raise ValueError(f"found '{lit2}', expected: ',' or 'end of string'")
            elif tok == _EOS:
                return requirements
            else:
                raise ValueError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def parse_requirement(self) -> Requirement:
        key, operator = self.parse_key_and_infer_operator()
        if operator in (EXISTS, DOES_NOT_EXIST):
            return Requirement.new(key, operator, [])
        operator = self.parse_operator()
        values = self.parse_values() if operator in (IN, NOT_IN) else self.parse_exact_value()
        return Requirement.new(key, operator, sorted(values))

    def parse_key_and_infer_operator(self) -> tuple[str, str]:
        operator = ""
        tok, literal = self.consume(True)
        if tok == _NOT:
            operator = DOES_NOT_EXIST
            tok, literal = self.consume(True)
        if tok != _ID:
            raise ValueError(f"found '{literal}', expected: identifier")
        _validate_label_key(literal)
        t, _ = self.lookahead(True)
        if t in (_EOS, _COMMA) and operator != DOES_NOT_EXIST:
            operator = EXISTS
        return literal, operator

    def parse_operator(self) -> str:
        tok, lit = self.consume(False)
        ops = {
            _IN: IN,
            _EQ: EQUALS,
            _DEQ: DOUBLE_EQUALS,
            _GT: GREATER_THAN,
            _LT: LESS_THAN,
            _NOTIN: NOT_IN,
            _NEQ: NOT_EQUALS,
        }
        if tok not in ops:
            raise ValueError(f"found '{lit}', expected: {', '.join(_BINARY_OPERATORS)}")
        return ops[tok]

    def parse_values(self) -> set[str]:
        tok, lit = self.consume(True)
        if tok != _OPEN:
            raise ValueError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead(True)
        if tok in (_ID, _COMMA):
            values = self.parse_identifiers_list()
            tok, _ = self.consume(True)
            if tok != _CLOSE:
                raise ValueError(f"found '{lit}', expected: ')'")
            return values
        if tok == _CLOSE:
            self.consume(True)
            return {""}
        raise ValueError(f"found '{lit}', expected: ',', ')' or identifier")

    def parse_identifiers_list(self) -> set[str]:
        values: set[str] = set()
        while True:
            tok, lit = self.consume(True)
            if tok == _ID:
                values.add(lit)
                tok2, lit2 = self.lookahead(True)
                if tok2 == _COMMA:
                    continue
                if tok2 == _CLOSE:
                    return values
                raise ValueError(f"found '{lit2}', expected: ',' or ')'")
            if tok == _COMMA:
                if not values:
                    values.add("")
                tok2, _ = self.lookahead(True)
                if tok2 == _CLOSE:
                    values.add("")
                    return values
                if tok2 == _COMMA:
                    self.consume(True)
                    values.add("")
            else:
                raise ValueError(f"found '{lit}', expected: ',', or identifier")

    def parse_exact_value(self) -> set[str]:
        tok, _ = self.lookahead(True)
        if tok in (_EOS, _COMMA):
            return {""}
        tok, lit = self.consume(True)
        if tok == _ID:
            return {lit}
        raise ValueError(f"found '{lit}', expected: identifier")


class LabelSelector:
    """A parsed label selector; the empty selector matches everything."""

    def __init__(self, requirements: Iterable[Requirement] = (), *, nothing: bool = False) -> None:
        self.requirements: tuple[Requirement, ...] = tuple(
            sorted(requirements, key=lambda r: r.key)
        )
        self.nothing = nothing

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """``labels.Parse``; a syntax error raises ``BadRequest`` with the parser's message."""
        try:
            return cls(_Parser(text).parse())
        except ValueError as exc:
            raise BadRequest(str(exc)) from None

    @classmethod
    def everything(cls) -> LabelSelector:
        return cls()

    @classmethod
    def nothing_selector(cls) -> LabelSelector:
        """``labels.Nothing()``: what a nil ``metav1.LabelSelector`` selects."""
        return cls(nothing=True)

    def empty(self) -> bool:
        return not self.nothing and not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return f"LabelSelector({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabelSelector):
            return NotImplemented
        return (self.requirements, self.nothing) == (other.requirements, other.nothing)

    def __hash__(self) -> int:
        return hash((self.requirements, self.nothing))


_SPEC_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def label_selector_from_spec(spec: Mapping[str, Any] | None) -> LabelSelector:
    """``metav1.LabelSelectorAsSelector``: ``None`` selects nothing, ``{}`` everything."""
    if spec is None:
        return LabelSelector.nothing_selector()
    match_labels = spec.get("matchLabels") or {}
    expressions = spec.get("matchExpressions") or []
    if not match_labels and not expressions:
        return LabelSelector.everything()
    requirements = []
    try:
        for key, value in match_labels.items():
            requirements.append(Requirement.new(key, EQUALS, [value]))
        for expr in expressions:
            operator = expr.get("operator") or ""
            if operator not in _SPEC_OPERATORS:
                raise ValueError(f"{names.go_quote(operator)} is not a valid pod selector operator")
            requirements.append(
                Requirement.new(
                    expr.get("key") or "", _SPEC_OPERATORS[operator], list(expr.get("values") or [])
                )
            )
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    return LabelSelector(requirements)


# ------------------------------------------------------------------------------ fields


def escape_field_value(value: str) -> str:
    """``fields.EscapeValue``: backslash-escape ``\\``, ``,`` and ``=``."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def unescape_field_value(value: str) -> str:
    """``fields.UnescapeValue``; ``ValueError`` with apimachinery's message on bad input."""
    if not any(c in value for c in "\\,="):
        return value
    out: list[str] = []
    in_slash = False
    for c in value:
        if in_slash:
            if c not in "\\,=":
                raise ValueError(f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            in_slash = False
            continue
        if c == "\\":
            in_slash = True
        elif c in ",=":
            # Go prints the rune with %v, i.e. as its code point number
            raise ValueError(f"invalid field selector: unescaped character in value: {ord(c)}")
        else:
            out.append(c)
    if in_slash:
        raise ValueError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    if not text:
        return []
    terms, start, in_slash = [], 0, False
    for i, c in enumerate(text):
        if in_slash:
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :]
    return None


@dataclass(frozen=True)
class FieldTerm:
    """``field=value`` (``==``) or ``field!=value``."""

    field: str
    value: str
    negated: bool

    def matches(self, values: Mapping[str, str]) -> bool:
        return (values.get(self.field, "") == self.value) != self.negated

    def __str__(self) -> str:
        return f"{self.field}{'!=' if self.negated else '='}{escape_field_value(self.value)}"


class FieldSelector:
    """A parsed field selector (``fields.ParseSelector``); empty matches everything."""

    def __init__(self, terms: Iterable[FieldTerm] = ()) -> None:
        self.terms: tuple[FieldTerm, ...] = tuple(terms)

    @classmethod
    def parse(cls, text: str) -> FieldSelector:
        """Parse ``a=b,c!=d``; a malformed selector raises ``BadRequest``."""
        terms = []
        for part in sorted(_split_terms(text)):
            if part == "":
                continue
            split = _split_term(part)
            if split is None:
                raise BadRequest(f"invalid selector: '{text}'; can't understand '{part}'")
            lhs, op, rhs = split
            try:
                value = unescape_field_value(rhs)
            except ValueError as exc:
                raise BadRequest(str(exc)) from None
            terms.append(FieldTerm(lhs, value, op == "!="))
        return cls(terms)

    def fields(self) -> set[str]:
        return {t.field for t in self.terms}

    def empty(self) -> bool:
        return not self.terms

    def matches(self, values: Mapping[str, str]) -> bool:
        return all(t.matches(values) for t in self.terms)

    def __str__(self) -> str:
        return ",".join(str(t) for t in self.terms)

    def __repr__(self) -> str:
        return f"FieldSelector({str(self)!r})"


# Kinds whose field-label conversion function answers 'field label "x" not supported for "K"'.
_META_ONLY_CONVERSION_KINDS = frozenset(
    {
        "Endpoints",
        "ResourceQuota",
        "PersistentVolumeClaim",
        "Service",
        "ServiceAccount",
        "ConfigMap",
    }
)
# Kinds with a conversion function answering "field label not supported: x".
_PLAIN_CONVERSION_KINDS = frozenset(
    {"Pod", "Node", "ReplicationController", "Event", "Namespace", "Secret"}
)
_BUILTIN_KINDS = (
    _META_ONLY_CONVERSION_KINDS
    | _PLAIN_CONVERSION_KINDS
    | {"Lease", "Ingress", "CustomResourceDefinition"}
)


def unsupported_field_message(label: str, kind: str | None = None) -> str:
    """The message of the kind's field-label conversion function for an unknown label.

    Custom resources and ``kind=None`` use ``field label not supported: <label>``; the few core
    kinds with ObjectMeta-only conversion, and kinds without any conversion (Lease, Ingress, ...),
    word it differently.
    """
    if kind in _META_ONLY_CONVERSION_KINDS:
        return f"field label {names.go_quote(label)} not supported for {names.go_quote(kind)}"
    if kind in _BUILTIN_KINDS and kind not in _PLAIN_CONVERSION_KINDS:
        return (
            f'{names.go_quote(label)} is not a known field selector: only "metadata.name", '
            '"metadata.namespace"'
        )
    return f"field label not supported: {label}"


def require_supported(
    selector: FieldSelector, supported: Iterable[str], kind: str | None = None
) -> None:
    """Raise ``BadRequest`` for the first (sorted) term on a field the kind cannot select."""
    allowed = set(supported)
    for term in selector.terms:
        if term.field not in allowed:
            raise BadRequest(unsupported_field_message(term.field, kind))


def _get(obj: Mapping[str, Any], *path: str) -> str:
    cur: Any = obj
    for key in path:
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(key)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def field_values(kind: str, obj: Mapping[str, Any], *, namespaced: bool = True) -> dict[str, str]:
    """The selectable fields of ``obj`` (missing values are ``""``).

    Every kind selects ``metadata.name``; namespaced kinds also ``metadata.namespace`` (Node and
    Namespace are cluster-scoped and do not; pass ``namespaced=False`` for cluster-scoped custom
    resources).  ``field_values(kind, {}).keys()`` is the supported set.
    """
    meta_namespaced = namespaced and kind not in ("Node", "Namespace")
    values = {"metadata.name": _get(obj, "metadata", "name")}
    if meta_namespaced:
        values["metadata.namespace"] = _get(obj, "metadata", "namespace")
    if kind == "Pod":
        pod_ips = (obj.get("status") or {}).get("podIPs") or []
        pod_ip = ""
        if pod_ips and isinstance(pod_ips[0], Mapping):
            pod_ip = _get(pod_ips[0], "ip")
        if not pod_ip and not pod_ips:
            pod_ip = _get(obj, "status", "podIP")
        values.update(
            {
                "spec.nodeName": _get(obj, "spec", "nodeName"),
                "spec.restartPolicy": _get(obj, "spec", "restartPolicy"),
                "spec.schedulerName": _get(obj, "spec", "schedulerName"),
                "spec.serviceAccountName": _get(obj, "spec", "serviceAccountName"),
                "status.phase": _get(obj, "status", "phase"),
                "status.podIP": pod_ip,
                "status.nominatedNodeName": _get(obj, "status", "nominatedNodeName"),
            }
        )
    elif kind == "Secret":
        values["type"] = _get(obj, "type")
    elif kind == "Event":
        for key in (
            "kind",
            "namespace",
            "name",
            "uid",
            "apiVersion",
            "resourceVersion",
            "fieldPath",
        ):
            values[f"involvedObject.{key}"] = _get(obj, "involvedObject", key)
        values["reason"] = _get(obj, "reason")
        values["source"] = _get(obj, "source", "component")
        values["type"] = _get(obj, "type")
    elif kind == "Namespace":
        values["status.phase"] = _get(obj, "status", "phase")
    elif kind == "Node":
        unschedulable = (obj.get("spec") or {}).get("unschedulable")
        values["spec.unschedulable"] = "true" if unschedulable else "false"
    return values
