"""Relay pagination: ``first`` bounds, cursors, and a cursor whose item vanished."""

from __future__ import annotations

import pytest

from app.schema.relay import MAX_PAGE, PaginationError, encode_cursor, paginate


def names(items: list[str], first: int, after: str | None = None) -> tuple[list[str], str | None]:
    page = paginate(items, first=first, after=after, position=lambda item: item)
    return [edge.node for edge in page.edges], page.page_info.end_cursor


def test_pages_follow_each_other_without_gaps_or_repeats() -> None:
    items = [f"d{i:02}" for i in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = names(items, 3, cursor)
        seen += page
        if len(page) < 3:
            break
    assert seen == items


def test_page_continues_where_the_deleted_last_item_stood() -> None:
    items = ["a", "b", "c", "d", "e"]
    page, cursor = names(items, 2)
    assert page == ["a", "b"]
    remaining = ["a", "c", "d", "e"]  # "b" was deleted between the two requests
    assert names(remaining, 2, cursor)[0] == ["c", "d"]


def test_cursor_without_place_hint_still_works() -> None:
    assert names(["a", "b", "c"], 1, encode_cursor("a"))[0] == ["b"]


@pytest.mark.parametrize("first", [-1, MAX_PAGE + 1])
def test_first_outside_the_cap_is_refused(first: int) -> None:
    with pytest.raises(PaginationError):
        names(["a"], first)


def test_garbage_cursor_is_refused() -> None:
    with pytest.raises(PaginationError):
        names(["a"], 1, "not-a-cursor!")
