"""The planned executor answers exactly as graphql-core does: the same data, the same errors
with the same paths and null propagation, whatever the objects hold and however the selection
is written (fragments, aliases, directives, variables, resolvers among plain fields)."""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any

import pytest
import strawberry
from strawberry.extensions import ParserCache
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from app.schema.execution import PlannedExecutionContext


@strawberry.enum
class Color(Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.type
class Part:
    name: str
    color: Color
    size: int | None


@strawberry.type
class Thing:
    name: str
    tags: list[str]
    part: Part
    parts: list[Part]
    spare: Part | None
    shared_completions: strawberry.Private[dict[Any, Any]] = dataclasses.field(default_factory=dict)

    @strawberry.field
    def shout(self) -> str:
        return self.name.upper()


def part(name: Any = "p", color: Any = Color.RED, size: Any = 1) -> Part:
    return Part(name=name, color=color, size=size)


def thing(name: Any = "t", **overrides: Any) -> Thing:
    values: dict[str, Any] = {
        "tags": ["a", "b"],
        "part": part(),
        "parts": [part("x"), part("y", Color.BLUE, None)],
        "spare": None,
    }
    values.update(overrides)
    return Thing(name=name, **values)


GOOD = [thing("one"), thing("two", spare=part("s")), thing("three", tags=[])]
BAD = [
    thing("null name", part=part(name=None)),  # null for a non-null field: the part goes
    thing(None),  # and here the whole thing, then the list item
    thing("bad enum", parts=[part(color="green")]),
    thing("bad int", part=part(size="many")),
    thing("not a list", tags="abc"),
    thing("wrong object", part="a string"),
]
ROWS = {"good": GOOD, "bad": BAD}


@strawberry.type
class Query:
    @strawberry.field
    def things(self, which: str) -> list[Thing | None]:
        return list(ROWS[which])

    @strawberry.field
    def first(self) -> Thing:
        return GOOD[0]


W = "query($w: String!) "
QUERIES = [
    W + "{ things(which: $w) { name tags part { name color size } parts { name color size } } }",
    W + "{ things(which: $w) { __typename n: name spare { name } ...F } } "
    "fragment F on Thing { part { ... on Part { color c: color } } }",
    W + "{ things(which: $w) { name shout parts { name } } }",
    "query($w: String!, $yes: Boolean!) "
    "{ things(which: $w) { name part @include(if: $yes) { name } tags @skip(if: $yes) } }",
    "{ first { name part { name } } again: first { name part { name color } } }",
]


def execute(query: str, which: str, planned: bool) -> dict[str, Any]:
    schema = strawberry.Schema(
        query=Query,
        execution_context_class=(
            PlannedExecutionContext if planned else StrawberryGraphQLCoreExecutionContext
        ),
    )
    variables = {"w": which, "yes": True} if "$w" in query else {}
    if "$yes" not in query:
        variables.pop("yes", None)
    result = schema.execute_sync(query, variable_values=variables)
    assert result.data is not None, result.errors  # a valid request, executed
    return {
        "data": result.data,
        "errors": sorted(  # the order of errors is not part of the answer
            (e.message, tuple(e.path or ())) for e in result.errors or []
        ),
    }


@pytest.mark.parametrize("which", ["good", "bad"])
@pytest.mark.parametrize("query", QUERIES)
def test_the_plan_answers_as_graphql_core_does(query: str, which: str) -> None:
    expected = execute(query, which, planned=False)
    if which == "bad" and "things" in query:
        assert expected["errors"]  # the bad rows do make graphql-core complain
    assert execute(query, which, planned=True) == expected
    assert execute(query, which, planned=True) == expected  # kept completions too


def test_kept_completions_are_per_selection() -> None:
    small = execute(W + "{ things(which: $w) { name } }", "good", planned=True)
    large = execute(W + "{ things(which: $w) { name tags } }", "good", planned=True)
    assert small["data"]["things"][0] == {"name": "one"}
    assert large["data"]["things"][0] == {"name": "one", "tags": ["a", "b"]}


def test_a_plan_reused_across_requests_follows_their_variables() -> None:
    schema = strawberry.Schema(
        query=Query, execution_context_class=PlannedExecutionContext, extensions=[ParserCache]
    )
    query = (
        "query($w: String!, $yes: Boolean!) "
        "{ things(which: $w) { name ... on Thing @include(if: $yes) { tags } } }"
    )
    for yes in (True, False, True, False):
        result = schema.execute_sync(query, variable_values={"w": "good", "yes": yes})
        first = (result.data or {})["things"][0]
        assert first == ({"name": "one", "tags": ["a", "b"]} if yes else {"name": "one"})


class NeverAllowed(strawberry.BasePermission):
    message = "not for you"

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        return False


@strawberry.type
class Vault:
    label: str
    secret: str | None = strawberry.field(permission_classes=[NeverAllowed])


@strawberry.type
class VaultQuery:
    @strawberry.field
    def vault(self) -> Vault:
        return Vault(label="v", secret="hunter2")


def test_a_plain_field_with_a_permission_class_is_still_checked() -> None:
    """A field without a resolver but with permission classes is not "plain": the plan must
    leave it to strawberry, or the value would be served without the check."""
    schema = strawberry.Schema(query=VaultQuery, execution_context_class=PlannedExecutionContext)
    result = schema.execute_sync("{ vault { label secret } }")
    assert result.data == {"vault": {"label": "v", "secret": None}}
    assert [e.message for e in result.errors or []] == ["not for you"]
