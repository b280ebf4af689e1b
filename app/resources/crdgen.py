"""Generate the CustomResourceDefinitions from the resource models.

The pydantic models in :mod:`app.resources` are the source of truth; this module turns their
JSON Schema into the *structural* OpenAPI v3 schema ``apiextensions.k8s.io/v1`` requires (every
``$ref`` inlined, ``Optional`` as the plain type, enums with a ``type``, no ``title``), adds the
names, printer columns and status subresource, and writes or checks ``k8s/crds``::

    python -m app.resources.crdgen                    # print all CRDs as YAML
    python -m app.resources.crdgen --write k8s/crds   # regenerate the manifests
    python -m app.resources.crdgen --check k8s/crds   # exit 1 with a diff if they differ

A schema feature with no structural equivalent raises :class:`SchemaError` instead of being
dropped silently.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from app.resources import KINDS, Resource
from app.resources._common import GROUP, VERSION

__all__ = ["GROUP", "VERSION", "SchemaError", "all_crds", "crd_for", "main", "render", "schema_for"]

JSON = dict[str, Any]

HEADER = (
    "# generated from app/resources — do not edit; "
    "regenerate with: python -m app.resources.crdgen --write k8s/crds\n"
)

# Keys copied from pydantic's JSON Schema, in the order they are written.
_SCALAR_KEYS = (
    "description",
    "format",
    "enum",
    "default",
    "pattern",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
)
_DROPPED_KEYS = {"title", "$defs"}
_KUBE_KEYS = (
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
)
_STRUCTURE_KEYS = {"type", "properties", "required", "items", "additionalProperties"}
_KNOWN_KEYS = {*_SCALAR_KEYS, *_KUBE_KEYS, *_DROPPED_KEYS, *_STRUCTURE_KEYS}
_ENUM_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number"}


class SchemaError(ValueError):
    """A model uses a JSON Schema feature a structural CRD schema cannot express."""


def _resolve(node: JSON, defs: JSON) -> JSON:
    """``node`` with a ``$ref`` (or a one-element ``allOf`` of one) replaced by its target."""
    if "allOf" in node and len(node["allOf"]) == 1:
        node = {**node["allOf"][0], **{k: v for k, v in node.items() if k != "allOf"}}
    if "$ref" in node:
        ref = node["$ref"]
        prefix = "#/$defs/"
        if not ref.startswith(prefix) or ref[len(prefix) :] not in defs:
            raise SchemaError(f"cannot resolve $ref {ref!r}")
        target = _resolve(defs[ref[len(prefix) :]], defs)
        # Keys beside the $ref (a field's description, its default) win over the target's.
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _without_null(node: JSON, defs: JSON, path: str) -> JSON:
    """``Optional[X]`` (``anyOf: [X, {type: null}]``) as plain ``X``; a ``null`` default goes."""
    if "anyOf" not in node:
        return node
    options = [o for o in node["anyOf"] if o.get("type") != "null"]
    if len(options) != 1:
        raise SchemaError(f"{path}: unions are not structural ({node['anyOf']!r})")
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if rest.get("default", ...) is None:
        del rest["default"]
    return {**_resolve(options[0], defs), **rest}


def _structural(node: JSON, defs: JSON, path: str) -> JSON:
    node = _without_null(_resolve(node, defs), defs, path)
    if "const" in node:
        node = {**{k: v for k, v in node.items() if k != "const"}, "enum": [node["const"]]}
    unknown = set(node) - _KNOWN_KEYS
    if unknown:
        raise SchemaError(f"{path}: unsupported JSON Schema keys {sorted(unknown)}")

    kind = node.get("type")
    if kind is None and "enum" in node:
        types = {_ENUM_TYPES.get(type(v)) for v in node["enum"]}
        if len(types) != 1 or None in types:
            raise SchemaError(f"{path}: enum of mixed or unknown types {node['enum']!r}")
        kind = types.pop()
    if kind is None and "properties" in node:
        kind = "object"
    if not isinstance(kind, str):
        raise SchemaError(f"{path}: every node needs one type, got {kind!r}")

    out: JSON = {"type": kind}
    for key in _SCALAR_KEYS:
        if key in node:
            out[key] = copy.deepcopy(node[key])
    if "description" in out:
        # Docstrings use reStructuredText literals; ``kubectl explain`` reads better with `x`.
        out["description"] = out["description"].replace("``", "`")
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        # JSON Schema 2020-12 writes exclusive bounds as numbers, OpenAPI v3.0 as flags.
        if key in out and not isinstance(out[key], bool):
            out[key.replace("exclusiveM", "m")] = out[key]
            out[key] = True

    if kind == "object":
        properties = node.get("properties") or {}
        if properties:
            out["properties"] = {
                name: _structural(child, defs, f"{path}.{name}")
                for name, child in properties.items()
            }
        if node.get("required"):
            out["required"] = list(node["required"])
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            if properties:
                raise SchemaError(f"{path}: properties and additionalProperties together")
            out["additionalProperties"] = _structural(extra, defs, f"{path}[*]")
        elif not properties and extra is not False:
            raise SchemaError(f"{path}: object without properties is not structural")
    elif kind == "array":
        if "items" not in node:
            raise SchemaError(f"{path}: array without items")
        out["items"] = _structural(node["items"], defs, f"{path}[*]")
    for key in _KUBE_KEYS:
        if key in node:
            out[key] = copy.deepcopy(node[key])
    return out


def schema_for(model: type[Resource]) -> JSON:
    """The structural ``openAPIV3Schema`` of one resource kind."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    root = _structural(raw, defs, model.kind_name())
    properties = root["properties"]
    properties["apiVersion"] = {
        "type": "string",
        "description": "Versioned schema of this object, `devbox.dev/v1alpha1`.",
    }
    properties["kind"] = {"type": "string", "description": f"`{model.kind_name()}`."}
    # The API server owns metadata's schema; a CRD may only say it is an object.
    properties["metadata"] = {"type": "object"}
    root["description"] = (
        f"{root.get('description', '').strip()} The name must be "
        f"{model.KIND_INFO.name_rule}; the Devbox API enforces it (a CRD schema cannot)."
    ).strip()
    root["required"] = [k for k in root.get("required", []) if k not in ("apiVersion", "kind")]
    order = ("apiVersion", "kind", "metadata", "spec", "status")
    root["properties"] = {k: properties[k] for k in order if k in properties}
    return {k: root[k] for k in ("type", "description", "properties", "required") if k in root}


def crd_for(model: type[Resource]) -> JSON:
    """The ``apiextensions.k8s.io/v1`` CustomResourceDefinition of one resource kind."""
    info = model.KIND_INFO
    kind = model.kind_name()
    columns = []
    for column in info.columns:
        entry: JSON = {"name": column.name, "type": column.type, "jsonPath": column.json_path}
        if column.priority:
            entry["priority"] = column.priority
        if column.description:
            entry["description"] = column.description
        columns.append(entry)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{info.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "devbox"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "plural": info.plural,
                "singular": kind.lower(),
                "kind": kind,
                "listKind": f"{kind}List",
                "shortNames": list(info.short_names),
                "categories": list(info.categories),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema_for(model)},
                }
            ],
        },
    }


def all_crds() -> list[JSON]:
    """Every Devbox CRD, in a fixed order (fresh copies; callers may modify them)."""
    return [crd_for(model) for model in KINDS]


def render(crd: JSON) -> str:
    """One CRD as the YAML file committed in ``k8s/crds`` (header included)."""
    body = yaml.safe_dump(crd, sort_keys=False, allow_unicode=True, width=100)
    return HEADER + body


def file_name(crd: JSON) -> str:
    """``<group>_<plural>.yaml``, as controller-gen names CRD files."""
    spec = crd["spec"]
    return f"{spec['group']}_{spec['names']['plural']}.yaml"


def expected_files() -> dict[str, str]:
    """File name → content of every generated manifest."""
    return {file_name(crd): render(crd) for crd in all_crds()}


def write(directory: Path) -> list[Path]:
    """Write every CRD manifest into ``directory``; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in expected_files().items():
        path = directory / name
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


def check(directory: Path) -> str:
    """A unified diff between ``directory`` and the generator output (empty: up to date).

    Generated files that are missing or stale, and generated-looking files the generator no
    longer produces, all count as differences.
    """
    expected = expected_files()
    diffs: list[str] = []
    present = sorted(p.name for p in directory.glob("*.yaml")) if directory.is_dir() else []
    for name in sorted(set(expected) | set(present)):
        path = directory / name
        actual = path.read_text(encoding="utf-8") if path.exists() else ""
        if name not in expected and not actual.startswith(HEADER[:40]):
            continue  # a hand-written file beside the generated ones
        want = expected.get(name, "")
        if actual != want:
            diffs.extend(
                difflib.unified_diff(
                    actual.splitlines(keepends=True),
                    want.splitlines(keepends=True),
                    fromfile=str(path),
                    tofile=f"{path} (generated)",
                )
            )
    return "".join(diffs)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m app.resources.crdgen",
        description="Generate the Devbox CRDs from the models in app/resources.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", metavar="DIR", type=Path, help="write one YAML file per CRD")
    mode.add_argument(
        "--check", metavar="DIR", type=Path, help="exit 1 with a diff if DIR is out of date"
    )
    args = parser.parse_args(argv)
    if args.write is not None:
        for path in write(args.write):
            print(f"wrote {path}")
        return 0
    if args.check is not None:
        diff = check(args.check)
        if diff:
            sys.stdout.write(diff)
            print(
                f"\n{args.check} is out of date; run: "
                f"python -m app.resources.crdgen --write {args.check}",
                file=sys.stderr,
            )
            return 1
        return 0
    sys.stdout.write("---\n".join(render(crd) for crd in all_crds()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
