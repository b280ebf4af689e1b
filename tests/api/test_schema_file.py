"""``schema.graphql`` at the repository root matches the schema the code serves."""

from __future__ import annotations

import difflib

from app.schema.__main__ import SCHEMA_FILE, schema_text


def test_schema_file_matches_the_code() -> None:
    expected = schema_text()
    current = SCHEMA_FILE.read_text() if SCHEMA_FILE.exists() else ""
    diff = "".join(
        difflib.unified_diff(
            current.splitlines(keepends=True),
            expected.splitlines(keepends=True),
            "schema.graphql",
            "code",
            n=1,
        )
    )
    assert current == expected, (
        f"schema.graphql is out of date; run `python -m app.schema --write`:\n{diff[:4000]}"
    )
