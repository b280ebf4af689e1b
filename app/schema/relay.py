"""Relay-style pagination: ``Node`` global ids, connections with ``first`` required and capped.

Every list in the schema is a ``…Connection`` (``edges { cursor node }``, ``pageInfo``).  Cursors
are opaque (base64 of a position key); ``first`` is required and at most :data:`MAX_PAGE`.
Global ids are ``base64("<Type>:<key>")``; :func:`decode_global_id` refuses anything else.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import strawberry

MAX_PAGE = 100
"""Largest ``first`` accepted on any connection."""

T = TypeVar("T")


class PaginationError(ValueError):
    """``first`` or ``after`` is invalid (surfaced as a top-level GraphQL error)."""


@strawberry.interface(description="An object with a globally unique id.")
class Node:
    id: strawberry.ID


def encode_global_id(type_name: str, key: str) -> strawberry.ID:
    return strawberry.ID(base64.urlsafe_b64encode(f"{type_name}:{key}".encode()).decode())


def decode_global_id(value: str) -> tuple[str, str]:
    """``(type_name, key)`` of a global id; :class:`ValueError` if it is not one of ours."""
    try:
        text = base64.urlsafe_b64decode(value.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise ValueError("not a valid id") from exc
    type_name, sep, key = text.partition(":")
    if not sep or not type_name or not key:
        raise ValueError("not a valid id")
    return type_name, key


def encode_cursor(position: str) -> str:
    return base64.urlsafe_b64encode(f"c:{position}".encode()).decode()


def decode_cursor(cursor: str) -> str:
    try:
        text = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise PaginationError("after: not a valid cursor") from exc
    if not text.startswith("c:"):
        raise PaginationError("after: not a valid cursor")
    return text[2:]


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    edges: list[Edge[T]]
    page_info: PageInfo
    total_count: int = strawberry.field(description="Items matching the filter, all pages.")


def check_first(first: int) -> None:
    """Refuse ``first`` outside 0..:data:`MAX_PAGE` (:class:`PaginationError`)."""
    if first < 0 or first > MAX_PAGE:
        raise PaginationError(f"first must be between 0 and {MAX_PAGE}")


def paginate(
    items: Sequence[T], *, first: int, after: str | None, position: Callable[[T], str]
) -> Connection[T]:
    """One page of ``items`` (already filtered and ordered) after the cursor ``after``.

    ``position(item)`` is the item's stable, unique key within this ordering; the page starts
    just after the item whose position equals the cursor's.  A cursor also remembers where
    its item stood: if that item has vanished since (deleted), the page starts at that
    place, where the items that followed it now stand, instead of starting over.
    """
    check_first(first)
    start = 0
    if after is not None:
        key, separator, hint = decode_cursor(after).rpartition("\n")
        if not separator:
            key, hint = hint, ""
        positions = [position(item) for item in items]
        if key in positions:
            start = positions.index(key) + 1
        elif hint.isdigit():
            start = min(int(hint), len(items))
    page = items[start : start + first]
    edges = [
        Edge(cursor=encode_cursor(f"{position(item)}\n{start + offset}"), node=item)
        for offset, item in enumerate(page)
    ]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=start + first < len(items),
            has_previous_page=start > 0,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        total_count=len(items),
    )
