"""merge_patch computes the RFC 7386 patch between two objects."""

from __future__ import annotations

from app.kubeclient import merge_patch


def apply(target: object, patch: object) -> object:
    """RFC 7386's reference algorithm."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply(result.get(key), value)
    return result


def test_equal_objects_give_an_empty_patch() -> None:
    assert merge_patch({"a": {"b": [1]}}, {"a": {"b": [1]}}) == {}


def test_removed_keys_become_null_and_nested_changes_stay_nested() -> None:
    old = {"phase": "Running", "ssh": {"host": "n1", "port": 30000}, "gone": 1}
    new = {"phase": "Stopped", "ssh": {"host": "n1"}}
    patch = merge_patch(old, new)
    assert patch == {"phase": "Stopped", "ssh": {"port": None}, "gone": None}
    assert apply(old, patch) == new


def test_lists_are_replaced_whole() -> None:
    old = {"commits": [{"id": "a"}]}
    new = {"commits": [{"id": "a"}, {"id": "b"}]}
    assert merge_patch(old, new) == new
