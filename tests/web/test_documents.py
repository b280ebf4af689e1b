"""Every GraphQL document the web page sends is valid against the API's schema.

The page (``app/web/js/api.js``) sends ``app/web/graphql/<Name>.graphql`` with the fragments
of ``fragments.graphql`` it spreads, directly or through other fragments, appended; these
tests assemble each document the same way and validate it against the schema the code
builds and against the printed ``schema.graphql`` — so an API change that breaks the page
fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import strawberry
from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    GraphQLSchema,
    OperationDefinitionNode,
    build_schema,
    parse,
    validate,
)

from app.schema import schema as product_schema
from app.settings import REPO_ROOT

DOCUMENTS = REPO_ROOT / "app" / "web" / "graphql"
FRAGMENTS = DOCUMENTS / "fragments.graphql"
SPREAD = re.compile(r"\.\.\.\s*([A-Za-z_]\w*)")


def served_schema() -> GraphQLSchema:
    """graphql-core's schema of the product's strawberry schema."""
    assert isinstance(product_schema, strawberry.Schema)
    return product_schema._schema


def page_documents() -> list[Path]:
    return sorted(p for p in DOCUMENTS.glob("*.graphql") if p != FRAGMENTS)


def fragments() -> dict[str, str]:
    found: dict[str, str] = {}
    for part in re.split(r"^(?=fragment\s)", FRAGMENTS.read_text(), flags=re.M):
        match = re.match(r"fragment\s+(\w+)", part)
        if match:
            found[match.group(1)] = part.strip()
    return found


def assembled(path: Path) -> str:
    """The document as the page sends it (js/api.js ``loadDocument``)."""
    text = path.read_text()
    known = fragments()
    needed: list[str] = []
    queue = [name for name in SPREAD.findall(text) if name != "on"]
    while queue:
        name = queue.pop()
        if name in needed or name not in known:
            continue
        needed.append(name)
        queue += SPREAD.findall(known[name])
    return "\n".join([text, *(known[name] for name in needed)])


def errors_against(graphql_schema: GraphQLSchema, document: DocumentNode) -> list[str]:
    return [error.message for error in validate(graphql_schema, document)]


def test_the_page_has_its_documents() -> None:
    names = {p.stem for p in page_documents()}
    assert {"Viewer", "Runtimes", "Devboxes", "DevboxCreate", "DevboxesChanged"} <= names


@pytest.mark.parametrize("path", page_documents(), ids=lambda p: p.stem)
def test_document_is_valid_against_the_schema(path: Path) -> None:
    document = parse(assembled(path))
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    assert len(operations) == 1, "one operation per file"
    assert operations[0].name is not None
    assert operations[0].name.value == path.stem
    assert errors_against(served_schema(), document) == []
    printed = REPO_ROOT / "schema.graphql"
    assert errors_against(build_schema(printed.read_text()), document) == []


def test_every_fragment_is_used_by_some_document() -> None:
    used: set[str] = set()
    for path in page_documents():
        document = parse(assembled(path))
        used |= {
            d.name.value for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
    assert set(fragments()) == used


def test_a_document_that_asks_for_a_missing_field_is_refused() -> None:
    """The check itself can fail: a field the API lacks is reported."""
    document = parse("query Broken { devboxes(first: 1) { edges { node { noSuchField } } } }")
    assert errors_against(served_schema(), document) != []
