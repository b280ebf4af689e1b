"""Print the GraphQL schema: ``python -m app.schema [--write | --check]``.

Without options the SDL goes to stdout; ``--write`` rewrites ``schema.graphql`` at the
repository root; ``--check`` exits 1 (saying how to fix it) when that file differs from the
code.  A test runs the same comparison.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from strawberry.printer import print_schema

from app.schema import schema

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"


def schema_text() -> str:
    """The schema's SDL as it is written to ``schema.graphql``."""
    return print_schema(schema).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.schema", description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", action="store_true", help=f"rewrite {SCHEMA_FILE.name}")
    group.add_argument("--check", action="store_true", help=f"fail if {SCHEMA_FILE.name} differs")
    args = parser.parse_args(argv)
    text = schema_text()
    if args.write:
        SCHEMA_FILE.write_text(text)
        return 0
    if args.check:
        current = SCHEMA_FILE.read_text() if SCHEMA_FILE.exists() else ""
        if current != text:
            print(
                f"{SCHEMA_FILE} is out of date: run `python -m app.schema --write`",
                file=sys.stderr,
            )
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
