"""The three PATCH mechanisms of a v1.20 kube-apiserver, applied to plain JSON dicts.

* ``apply_json_patch``: RFC 6902 as evanphx/json-patch v4 applies it (``replace`` of a missing
  object key adds it; every apply failure is a bare 422 ``Invalid``).
* ``apply_merge_patch``: RFC 7386 as evanphx/json-patch ``MergePatch`` applies it.
* ``apply_strategic_merge_patch``: ``k8s.io/apimachinery/pkg/util/strategicpatch`` with the
  ``patchStrategy``/``patchMergeKey`` tags of the built-in kinds we serve, kept in a table here,
  and the ``$patch``, ``$retainKeys``, ``$deleteFromPrimitiveList/`` and ``$setElementOrder/``
  directives.  The result never contains a ``$`` directive (the real server drops them when it
  decodes the result into a typed object).

Inputs are never mutated.  Pure logic, no I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsonpatch
import jsonpointer

from app.simcluster import names
from app.simcluster.errors import ApiError, BadRequest

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_CONTENT_TYPES: tuple[str, ...] = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)

_REJECTED = "the server rejected our request due to an error in our request"


def _unprocessable() -> ApiError:
    """``NewGenericServerResponse(422, ...)``: the server's own message is not shown."""
    return ApiError(422, "Invalid", _REJECTED, {})


def _internal(message: str) -> ApiError:
    """A plain Go error escaping the patch handler: 500 with reason Unknown (empty)."""
    return ApiError(500, "", message)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return "null"


def _strict_equal(a: Any, b: Any) -> bool:
    """JSON equality that, like Go, tells ``1`` from ``1.0`` and ``true`` from ``1``."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_strict_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# ============================================================================== JSON patch

_MISSING = object()


def apply_json_patch(doc: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Apply an RFC 6902 patch (already JSON-decoded) and return the new document.

    A body that is not a list of operations is a 400; any operation that cannot be applied,
    including a failed ``test``, is the bare 422 the real server answers (the specific problem is
    chained as the exception's ``__cause__``).
    """
    if patch is None:
        return copy.deepcopy(doc)
    if not isinstance(patch, list):
        raise BadRequest(
            f"json: cannot unmarshal {_json_type(patch)} into Go value of type jsonpatch.Patch"
        )
    for op in patch:
        if op is not None and not isinstance(op, Mapping):
            raise BadRequest(
                f"json: cannot unmarshal {_json_type(op)} into Go value of type jsonpatch.Operation"
            )
    result: Any = copy.deepcopy(doc)
    for index, op in enumerate(patch):
        try:
            result = _apply_op(result, op)
        except ApiError:
            raise
        except Exception as exc:
            raise _unprocessable() from ValueError(f"operation {index}: {exc}")
    return result  # type: ignore[no-any-return]


def _apply_op(doc: Any, op: Mapping[str, Any] | None) -> Any:
    if op is None:
        raise ValueError("Unexpected kind: unknown")
    kind = op.get("op")
    path = op.get("path")
    if not isinstance(path, str):
        raise ValueError(f"{kind} operation failed to decode path")
    if kind == "test":
        if "value" not in op:
            raise ValueError("test operation needs a value")
        actual = jsonpointer.resolve_pointer(doc, path, _MISSING)
        expected = copy.deepcopy(op["value"])
        if actual is _MISSING:
            parent_ok = _parent_is_object(doc, path)
            if parent_ok and expected is None:
                return doc
            raise ValueError(f"testing value {path} failed")
        if not _strict_equal(actual, expected):
            raise ValueError(f"testing value {path} failed")
        return doc
    op = dict(op)
    if kind == "replace" and path and _parent_is_object(doc, path):
        parent, last = jsonpointer.JsonPointer(path).to_last(doc)
        if isinstance(parent, dict) and last not in parent:
            op["op"] = "add"  # evanphx/json-patch v4: replacing a missing key adds it
    if "value" in op:
        op["value"] = copy.deepcopy(op["value"])
    return jsonpatch.apply_patch(doc, [op], in_place=True)


def _parent_is_object(doc: Any, path: str) -> bool:
    try:
        parent, _ = jsonpointer.JsonPointer(path).to_last(doc)
    except Exception:
        return False
    return isinstance(parent, dict)


# ============================================================================== merge patch


def _prune_nulls(value: Any) -> Any:
    """evanphx ``pruneNulls``: drop null members of objects (also inside arrays)."""
    if isinstance(value, dict):
        return {k: _prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune_nulls(v) for v in value]
    return value


def _merge_docs(doc: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if value is None:
            doc.pop(key, None)
            continue
        current = doc.get(key)
        if current is None or not isinstance(current, dict):
            doc[key] = _prune_nulls(copy.deepcopy(value))
        elif not isinstance(value, Mapping):
            doc[key] = copy.deepcopy(value)
        else:
            doc[key] = _merge_docs(current, value)
    return doc


def apply_merge_patch(doc: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Apply an RFC 7386 JSON merge patch; ``null`` members delete.

    Only an object makes sense as a patch for an API object: like evanphx ``MergePatch`` in the
    real server, ``null`` or a scalar is refused ("Invalid JSON Patch", an unconverted error the
    server answers with 500), and an array cannot be decoded into the object (400).
    """
    if isinstance(patch, list):
        raise BadRequest(
            "couldn't get version/kind; json parse error: json: cannot unmarshal array into Go "
            'value of type struct { APIVersion string "json:\\"apiVersion,omitempty\\""; '
            'Kind string "json:\\"kind,omitempty\\"" }'
        )
    if not isinstance(patch, Mapping):
        raise _internal("Invalid JSON Patch")
    return _merge_docs(copy.deepcopy(doc), patch)


# ============================================================================== strategic merge

MERGE = "merge"
RETAIN_KEYS = "retainKeys"

Path = tuple[str, ...]
# path of field names from the object root (list indexes skipped) -> (patchStrategy, mergeKey)
StrategyTable = dict[Path, tuple[str, str]]

_OBJECT_META: StrategyTable = {
    ("metadata", "finalizers"): (MERGE, ""),
    ("metadata", "ownerReferences"): (MERGE, "uid"),
}

_CONTAINER_LISTS: StrategyTable = {
    ("ports",): (MERGE, "containerPort"),
    ("env",): (MERGE, "name"),
    ("volumeMounts",): (MERGE, "mountPath"),
    ("volumeDevices",): (MERGE, "devicePath"),
}


def _pod_spec(prefix: Path) -> StrategyTable:
    table: StrategyTable = {
        (*prefix, "volumes"): (f"{MERGE},{RETAIN_KEYS}", "name"),
        (*prefix, "imagePullSecrets"): (MERGE, "name"),
        (*prefix, "hostAliases"): (MERGE, "ip"),
        (*prefix, "topologySpreadConstraints"): (MERGE, "topologyKey"),
    }
    for field in ("containers", "initContainers", "ephemeralContainers"):
        table[(*prefix, field)] = (MERGE, "name")
        for sub, strategy in _CONTAINER_LISTS.items():
            table[(*prefix, field, *sub)] = strategy
    return table


PATCH_STRATEGIES: dict[str, StrategyTable] = {
    "Pod": {
        **_pod_spec(("spec",)),
        ("status", "conditions"): (MERGE, "type"),
        ("status", "podIPs"): (MERGE, "ip"),
    },
    "Service": {
        ("spec", "ports"): (MERGE, "port"),
        ("status", "conditions"): (MERGE, "type"),
    },
    "Node": {
        ("spec", "podCIDRs"): (MERGE, ""),
        ("status", "conditions"): (MERGE, "type"),
        ("status", "addresses"): (MERGE, "type"),
    },
    "Namespace": {("status", "conditions"): (MERGE, "type")},
    "Secret": {},
    "ConfigMap": {},
    "Event": {},
    "Lease": {},
    "Ingress": {},
}

_DIRECTIVE = "$patch"
_RETAIN = "$retainKeys"
_DELETE_PREFIX = "$deleteFromPrimitiveList/"
_ORDER_PREFIX = "$setElementOrder/"

ERR_BAD_RETAIN_KEYS = "invalid patch format of retainKeys"
ERR_BAD_SET_ORDER = "invalid patch format of setElementOrder list"
ERR_NO_LIST_OF_LISTS = "lists of lists are not supported"


def _go_v(value: Any) -> str:
    """Go's ``%v`` of a JSON value (maps print as ``map[k:v]`` with sorted keys)."""
    if value is None:
        return "<nil>"
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{_go_v(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go_v(v) for v in value) + "]"
    return names.go_value(value)


def _type_key(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return _json_type(value)


def _kind_key(value: Any) -> str:
    """reflect.Kind-level grouping (map / slice / scalar type)."""
    return _type_key(value)


class _Merger:
    def __init__(self, table: StrategyTable | None) -> None:
        self.table = table

    def lookup(self, path: Path) -> tuple[str, str]:
        if self.table is None:
            return "", ""
        return self.table.get(path) or _OBJECT_META.get(path) or ("", "")

    # ---------------------------------------------------------------- fresh values

    def fresh(self, value: Any, path: Path) -> Any:
        """A patch value with no counterpart in the original, cleaned of directives/nulls."""
        if isinstance(value, Mapping):
            return self.merge_map({}, value, path)
        if isinstance(value, list):
            out = []
            for item in value:
                if isinstance(item, Mapping):
                    if _DIRECTIVE in item:
                        if item[_DIRECTIVE] == "delete":
                            continue
                        item = {k: v for k, v in item.items() if k != _DIRECTIVE}
                        if not item:
                            continue
                    out.append(self.merge_map({}, item, path))
                else:
                    out.append(copy.deepcopy(item))
            return out
        return copy.deepcopy(value)

    # ---------------------------------------------------------------- maps

    def merge_map(
        self, original: dict[str, Any], patch: Mapping[str, Any], path: Path
    ) -> dict[str, Any]:
        if _DIRECTIVE in patch:
            directive = patch[_DIRECTIVE]
            if directive == "replace":
                rest = {k: v for k, v in patch.items() if k != _DIRECTIVE}
                return self.merge_map({}, rest, path)
            if directive == "delete":
                return {}
            raise _internal(f"unknown patch type: {_go_v(directive)} in map: {_go_v(patch)}")
        patch = dict(patch)
        if _RETAIN in patch:
            original = self.apply_retain_keys(original, patch)
        self.merge_set_element_order(original, patch, path)
        for key, patch_value in patch.items():
            if key.startswith(_ORDER_PREFIX) or key in (_RETAIN, _DIRECTIVE):
                continue
            is_delete_list = key.startswith(_DELETE_PREFIX)
            if is_delete_list:
                key = key[len(_DELETE_PREFIX) :]
            if patch_value is None:
                original.pop(key, None)
                continue
            if key not in original:
                if not is_delete_list:
                    original[key] = self.fresh(patch_value, (*path, key))
                continue
            current = original[key]
            if _kind_key(current) != _kind_key(patch_value):
                if not is_delete_list:
                    original[key] = self.fresh(patch_value, (*path, key))
                continue
            if isinstance(current, dict):
                original[key] = self.merge_map(current, patch_value, (*path, key))
            elif isinstance(current, list):
                strategy, merge_key = self.lookup((*path, key))
                original[key] = self.merge_slice_handler(
                    current, patch_value, (*path, key), strategy, merge_key, is_delete_list
                )
            else:
                original[key] = copy.deepcopy(patch_value)
        return original

    def apply_retain_keys(self, original: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        retain = patch.pop(_RETAIN)
        if not isinstance(retain, list):
            raise BadRequest(ERR_BAD_RETAIN_KEYS)
        allowed = [k for k in retain if isinstance(k, str)]
        for key, value in patch.items():
            if value is None or key.startswith((_DELETE_PREFIX, _ORDER_PREFIX)):
                continue
            if key == _DIRECTIVE:
                continue
            if key not in allowed:
                raise BadRequest(ERR_BAD_RETAIN_KEYS)
        return {k: v for k, v in original.items() if k in allowed}

    def merge_set_element_order(
        self, original: dict[str, Any], patch: dict[str, Any], path: Path
    ) -> None:
        for directive in [k for k in patch if k.startswith(_ORDER_PREFIX)]:
            order = patch[directive]
            if not isinstance(order, list):
                raise BadRequest(ERR_BAD_SET_ORDER)
            field = directive[len(_ORDER_PREFIX) :]
            found_original, found_patch = field in original, field in patch
            original_list = original.get(field) if found_original else None
            patch_list = patch.get(field) if found_patch else None
            if found_original and not isinstance(original_list, list):
                raise BadRequest(ERR_BAD_SET_ORDER)
            if found_patch and not isinstance(patch_list, list):
                raise BadRequest(ERR_BAD_SET_ORDER)
            strategy, merge_key = self.lookup((*path, field))
            if found_original and found_patch:
                assert isinstance(original_list, list)
                assert isinstance(patch_list, list)
                merged = self.merge_slice_handler(
                    original_list, patch_list, (*path, field), strategy, merge_key, False
                )
            elif found_original:
                assert isinstance(original_list, list)
                merged = original_list
            elif found_patch:
                merged = self.fresh(patch_list, (*path, field))
            else:
                continue
            is_map = _element_kind(original_list or [], patch_list or []) == "object"
            if merge_key and is_map:
                patch_items, server_only = _partition_maps(merged, order, merge_key)
            else:
                patch_items, server_only = _partition_primitives(merged, order)
            original[field] = _normalize_element_order(
                patch_items,
                server_only,
                order,
                original_list or [],
                merge_key if is_map else "",
                is_map,
            )
            patch.pop(field, None)

    # ---------------------------------------------------------------- lists

    def merge_slice_handler(
        self,
        original: list[Any],
        patch: list[Any],
        path: Path,
        strategy: str,
        merge_key: str,
        is_delete_list: bool,
    ) -> list[Any]:
        if MERGE in strategy.split(","):
            return self.merge_slice(original, patch, path, merge_key, is_delete_list)
        return list(self.fresh(patch, path))

    def merge_slice(
        self,
        original: list[Any],
        patch: list[Any],
        path: Path,
        merge_key: str,
        is_delete_list: bool,
    ) -> list[Any]:
        if not original and not patch:
            return original
        kind = _element_kind(original, patch)
        if kind != "object":
            if is_delete_list:
                return [v for v in original if not any(_strict_equal(v, d) for d in patch)]
            merged: list[Any] = []
            for value in [*original, *patch]:
                if not any(_strict_equal(value, m) for m in merged):
                    merged.append(copy.deepcopy(value))
            patch_items, server_only = _partition_primitives(merged, patch)
            return _normalize_element_order(patch_items, server_only, patch, original, "", False)
        if not merge_key:
            raise _internal(f"cannot merge lists without merge key for {'.'.join(path)}")
        original, patch = self.merge_special_elements(original, patch, path, merge_key)
        server_order = list(original)
        merged = self.merge_without_special_elements(list(original), patch, path, merge_key)
        patch_items, server_only = _partition_maps(merged, patch, merge_key)
        return _normalize_element_order(
            patch_items, server_only, patch, server_order, merge_key, True
        )

    def merge_special_elements(
        self, original: list[Any], patch: list[Any], path: Path, merge_key: str
    ) -> tuple[list[Any], list[Any]]:
        without: list[Any] = []
        replace = False
        for item in patch:
            if _DIRECTIVE not in item:
                without.append(item)
                continue
            directive = item[_DIRECTIVE]
            if directive == "delete":
                if merge_key not in item:
                    raise _internal(
                        f"map: {_go_v(item)} does not contain declared merge key: {merge_key}"
                    )
                value = item[merge_key]
                original = [
                    o
                    for o in original
                    if not (
                        isinstance(o, Mapping)
                        and merge_key in o
                        and _strict_equal(o[merge_key], value)
                    )
                ]
            elif directive == "replace":
                replace = True
            elif directive == "merge":
                raise _internal("merging lists cannot yet be specified in the patch")
            else:
                raise _internal(f"unknown patch type: {_go_v(directive)} in map: {_go_v(item)}")
        if replace:
            return [self.fresh(item, path) for item in without], []
        return original, without

    def merge_without_special_elements(
        self, original: list[Any], patch: list[Any], path: Path, merge_key: str
    ) -> list[Any]:
        for item in patch:
            if merge_key not in item:
                raise _internal(
                    f"map: {_go_v(item)} does not contain declared merge key: {merge_key}"
                )
            index = _find_by_key(original, merge_key, item[merge_key])
            if index >= 0:
                original[index] = self.merge_map(original[index], item, path)
            else:
                original.append(self.fresh(item, path))
        return original


def _element_kind(*lists: list[Any]) -> str:
    """``sliceElementType``: every element must have the same JSON kind; no lists of lists."""
    kind = ""
    for items in lists:
        for value in items:
            current = _type_key(value)
            if not kind:
                kind = current
                if kind == "array":
                    raise _unprocessable() from ValueError(ERR_NO_LIST_OF_LISTS)
            elif kind != current:
                raise _internal(f"list element types are not identical: {_go_v(list(lists))}")
    return kind


def _find_by_key(items: list[Any], merge_key: str, value: Any) -> int:
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or merge_key not in item:
            continue
        if _strict_equal(item[merge_key], value):
            return i
    return -1


def _partition_maps(
    merged: list[Any], by: list[Any], merge_key: str
) -> tuple[list[Any], list[Any]]:
    patch_items, server_only = [], []
    for item in merged:
        if not isinstance(item, Mapping) or merge_key not in item:
            raise _internal(f"map: {_go_v(item)} does not contain declared merge key: {merge_key}")
        if _find_by_key(by, merge_key, item[merge_key]) >= 0:
            patch_items.append(item)
        else:
            server_only.append(item)
    return patch_items, server_only


def _partition_primitives(merged: list[Any], by: list[Any]) -> tuple[list[Any], list[Any]]:
    patch_items, server_only = [], []
    for item in merged:
        if any(_strict_equal(item, b) for b in by):
            patch_items.append(item)
        else:
            server_only.append(item)
    return patch_items, server_only


def _index(items: list[Any], value: Any, merge_key: str, is_map: bool) -> int:
    def key_of(item: Any) -> Any:
        if is_map:
            return item.get(merge_key, _MISSING) if isinstance(item, Mapping) else _MISSING
        return item

    wanted = key_of(value)
    for i, item in enumerate(items):
        got = key_of(item)
        if got is _MISSING and wanted is _MISSING:
            return i
        if got is not _MISSING and wanted is not _MISSING and _strict_equal(got, wanted):
            return i
    return -1


def _normalize_slice_order(
    to_sort: list[Any], order: list[Any], merge_key: str, is_map: bool
) -> list[Any]:
    to_delete: list[Any] = []
    if is_map:
        to_delete = [o for o in order if isinstance(o, Mapping) and o.get(_DIRECTIVE) == "delete"]

    def less(a: Any, b: Any) -> bool:
        ia = _index(order, a, merge_key, is_map)
        if ia >= 0:
            ib = _index(order, b, merge_key, is_map)
            if ib >= 0:
                return ia < ib
        return True

    items = list(to_sort)
    # Go's sort.SliceStable (insertion sort) with apimachinery's comparator
    for i in range(1, len(items)):
        j = i
        while j > 0 and less(items[j], items[j - 1]):
            items[j], items[j - 1] = items[j - 1], items[j]
            j -= 1
    if to_delete:
        items = [it for it in items if _index(to_delete, it, merge_key, is_map) < 0]
    return items


def _normalize_element_order(
    patch_items: list[Any],
    server_only: list[Any],
    patch_order: list[Any],
    server_order: list[Any],
    merge_key: str,
    is_map: bool,
) -> list[Any]:
    right = _normalize_slice_order(patch_items, patch_order, merge_key, is_map)
    left = _normalize_slice_order(server_only, server_order, merge_key, is_map)
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li = _index(server_order, left[i], merge_key, is_map)
            ri = _index(server_order, right[j], merge_key, is_map)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def apply_strategic_merge_patch(
    doc: dict[str, Any], patch: dict[str, Any], kind: str
) -> dict[str, Any]:
    """Apply a Kubernetes strategic merge patch to an object of a built-in ``kind``.

    Lists tagged ``patchStrategy: merge`` in ``PATCH_STRATEGIES`` (plus ObjectMeta's finalizers
    and ownerReferences) are merged by their merge key; other lists are replaced.  An unknown
    kind merges maps and replaces every list.
    """
    if patch is None:
        return copy.deepcopy(doc)
    if not isinstance(patch, Mapping):
        raise BadRequest(
            f"json: cannot unmarshal {_json_type(patch)} into Go value of type "
            "map[string]interface {}"
        )
    merger = _Merger(PATCH_STRATEGIES.get(kind))
    return merger.merge_map(copy.deepcopy(doc), copy.deepcopy(dict(patch)), ())
