"""A faster executor for selections of plain fields: planned once, applied to every object.

graphql-core completes every field of every object on its own (resolve info, resolver call,
awaitable check, null check, coercion): ~10 µs a field, so ``devboxes(first: 100)`` with 18
fields a devbox costs ~20 ms.  Most of those fields are *basic* strawberry fields (no
resolver, no field extension, no permission: the value is an attribute of the object).

:class:`PlannedExecutionContext` looks at an object's selection once per request and
position; when every selected field — recursively, through nested objects and lists — is
basic, it builds a plan (attribute getters and the types' own output coercion) and completes
each object with it in one pass.  Anything else keeps graphql-core's path: a field with a
resolver or arguments, a field-level directive, ``@defer``, interfaces and unions, resolver
middleware.  Errors are never produced by the plan: on anything unusual (a null for a
non-null field, a value that does not coerce, a wrong object type) it gives up on that
object and graphql-core completes it again, so errors, paths and null propagation are
exactly graphql-core's.  Objects that many requests share and nobody changes may keep their
completions, per selection, in a ``shared_completions`` dict (the read cache's
:class:`~app.schema.devboxes.DevboxNode`, one per version of a devbox).

Subscriptions: an event object with a ``shared_results`` dict (built once per change and
handed to every subscriber, like :class:`~app.schema.subscriptions.DevboxChangeEvent`) is
executed once per distinct operation (document text, operation name, variables) and reused
by every subscriber that sends it.  A selection completed by plans alone reads nothing but
the event and is shared by all; one that runs a resolver (the viewer's access decides, e.g.
``ssh { privateKey }``) is shared only among subscriptions of the same viewer (user,
namespace, role).  A result with errors is never reused: each subscriber executes again.
"""

from __future__ import annotations

import asyncio
import json
import operator
from collections.abc import Awaitable, Callable, Hashable
from enum import Enum
from typing import Any

from graphql import (
    ExecutionResult,
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    OperationType,
    Undefined,
    is_leaf_type,
)
from graphql.execution.collect_fields import FieldDetailsList
from graphql.pyutils import AwaitableOrValue, Path
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter

Complete = Callable[[Any], Any]
"""Completes one resolved value; raises :class:`_GiveUp` (or anything) to leave it to
graphql-core."""


class SharedData(dict[str, Any]):
    """The ``data`` of a result shared by many subscribers; ``json`` is its serialized form,
    kept by the first to serialize it (the transport's :meth:`encode`)."""

    __slots__ = ("json",)

    def encode(self, dumps: Callable[[Any], str]) -> str:
        """``dumps(self)``, computed once."""
        try:
            return self.json
        except AttributeError:
            self.json: str = dumps(self)
            return self.json


def _shareable(result: ExecutionResult) -> ExecutionResult:
    data = result.data
    return ExecutionResult(
        data=SharedData(data) if isinstance(data, dict) else data,
        errors=result.errors,
        extensions=result.extensions,
    )


_PER_VIEWER = "per viewer"
"""Marks an operation of a shared event whose results are kept per viewer."""


class _GiveUp(Exception):
    """The plan cannot complete this value the way graphql-core would."""


def _leaf(coerce: Callable[[Any], Any]) -> Complete:
    def complete(value: Any) -> Any:
        if value is None or value is Undefined:
            return None
        if isinstance(value, Exception):
            raise _GiveUp
        coerced = coerce(value)
        if coerced is None or coerced is Undefined:
            raise _GiveUp
        return coerced

    return complete


def _non_null(inner: Complete) -> Complete:
    def complete(value: Any) -> Any:
        completed = inner(value)
        if completed is None:
            raise _GiveUp
        return completed

    return complete


def _list(inner: Complete) -> Complete:
    def complete(value: Any) -> Any:
        if value is None or value is Undefined:
            return None
        if not isinstance(value, list | tuple):
            raise _GiveUp
        return [inner(item) for item in value]

    return complete


Getter = Callable[[Any], Any]
_Plan = tuple[Complete, Hashable]
"""How to complete a value, and what it selects (to key kept completions)."""

MAX_KNOWN_PLANS = 1024
_KNOWN_PLANS: dict[Hashable, tuple[FieldDetailsList, _Plan | None]] = {}
"""Plans by field nodes and variables, for every request (see ``_known_key``); the field
list is kept so that the nodes' ids stay theirs."""


def _enum(enum_type: GraphQLEnumType) -> Complete:
    """Like strawberry's enum coercion (a member to the name of the first value equal to
    the member's value), by a table instead of a scan; anything else the type's own way."""
    wrapped = getattr(enum_type, "wrapped_cls", None)
    if not isinstance(wrapped, type) or not issubclass(wrapped, Enum):
        return _leaf(enum_type.coerce_output_value)
    names: dict[Any, str] = {}
    for member in wrapped:
        for name, value in enum_type.values.items():
            if member.value == value.value:
                names.setdefault(member, name)
                break
    coerce = _leaf(enum_type.coerce_output_value)

    def complete(value: Any) -> Any:
        if isinstance(value, wrapped):
            name = names.get(value)
            if name is not None:
                return name
        return coerce(value)

    return complete


SHARED_COMPLETIONS = "shared_completions"
"""A dict attribute of objects shared by many requests and never changed (e.g. the read
cache's :class:`~app.schema.devboxes.DevboxNode`): their completions are kept there, per
selection."""
MAX_KEPT_SELECTIONS = 16
"""Completions kept per object: a client varying its selections cannot grow them further."""


def _object(
    object_type: GraphQLObjectType,
    fields: list[tuple[str, Getter, Complete]],
    selection: Hashable,
    shared: bool,
) -> Complete:
    is_type_of = object_type.is_type_of
    plan = tuple(fields)

    def complete(value: Any) -> Any:
        if value is None or value is Undefined:
            return None
        if is_type_of is not None and not is_type_of(value, None):  # type: ignore[arg-type]
            raise _GiveUp
        if shared:
            kept = getattr(value, SHARED_COMPLETIONS, None)
            if isinstance(kept, dict):
                done = kept.get(selection)
                if done is None:
                    done = {key: c(get(value)) for key, get, c in plan}
                    if len(kept) < MAX_KEPT_SELECTIONS:
                        kept[selection] = done
                return done
        return {key: c(get(value)) for key, get, c in plan}

    return complete


class PlannedExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's executor, completing selections of basic fields by a plan (module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plans: dict[tuple[GraphQLObjectType, int], tuple[FieldDetailsList, _Plan | None]]
        self._plans = {}
        self._unplanned = False
        """Whether an object was completed by graphql-core (so resolvers may have run)."""
        self._variables_key: str | None = None

    # ------------------------------------------------------------------ shared events

    def build_per_event_executor(self, payload: Any) -> Any:
        executor = super().build_per_event_executor(payload)
        if isinstance(executor, PlannedExecutionContext):
            executor._unplanned = False
        return executor

    def execute_operation(self, serially: bool | None = None) -> Any:
        shared = getattr(self.root_value, "shared_results", None)
        base = self._share_key() if isinstance(shared, dict) and serially is False else None
        if base is None or not isinstance(shared, dict):
            return super().execute_operation(serially)
        viewer = getattr(self.context_value, "viewer", None)
        mine = (base, (viewer.user_id, viewer.namespace, viewer.role)) if viewer else None
        key: tuple[Any, ...] | None = base
        if shared.get(base) is _PER_VIEWER:
            key = mine
        found = shared.get(key) if key is not None else None
        if isinstance(found, ExecutionResult):
            return found
        if isinstance(found, asyncio.Future):
            return self._await_shared(found, serially)
        result: Any = super().execute_operation(serially)
        if key is base and isinstance(result, ExecutionResult) and not self._unplanned:
            if not result.errors:
                result = shared[base] = _shareable(result)  # read only the event: one for all
            return result
        shared[base] = _PER_VIEWER  # resolvers ran: from now on, one result per viewer
        if mine is None:
            return result
        if isinstance(result, ExecutionResult):
            if not result.errors:
                result = shared[mine] = _shareable(result)
            return result
        future = asyncio.ensure_future(self._shareable_later(result))
        shared[mine] = future
        return self._await_shared(future, serially, first=True)

    @staticmethod
    async def _shareable_later(result: Awaitable[Any]) -> Any:
        done = await result
        return _shareable(done) if isinstance(done, ExecutionResult) and not done.errors else done

    async def _await_shared(
        self, future: asyncio.Future[Any], serially: bool | None, first: bool = False
    ) -> Any:
        try:
            result = await asyncio.shield(future)
        except Exception:
            if first:
                raise
            result = None
        if first or (isinstance(result, ExecutionResult) and not result.errors):
            return result
        again = super().execute_operation(serially)  # errors are each subscriber's own
        return await again if isinstance(again, Awaitable) else again

    def _share_key(self) -> tuple[Any, ...] | None:
        operation = self.operation
        if operation.operation is not OperationType.SUBSCRIPTION or operation.loc is None:
            return None
        try:
            variables = json.dumps(self.variable_values.coerced, sort_keys=True)
        except (TypeError, ValueError):
            return None
        name = operation.name.value if operation.name else None
        return (operation.loc.source.body, name, variables)

    def complete_abstract_value(self, *args: Any, **kwargs: Any) -> Any:
        self._unplanned = True
        return super().complete_abstract_value(*args, **kwargs)

    # ------------------------------------------------------------------ plans

    def complete_object_value(
        self,
        return_type: GraphQLObjectType,
        field_details_list: FieldDetailsList,
        info: GraphQLResolveInfo[Any],
        path: Path,
        result: Any,
        position_context: Any,
    ) -> AwaitableOrValue[dict[str, Any]]:
        plan = self._plan_of(return_type, field_details_list)
        if plan is not None:
            try:
                completed = plan[0](result)
            except Exception:  # graphql-core completes it again, with its errors
                pass
            else:
                if completed is not None:
                    return completed  # type: ignore[no-any-return]
        self._unplanned = True
        return super().complete_object_value(
            return_type, field_details_list, info, path, result, position_context
        )

    def _plan_of(
        self, object_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> _Plan | None:
        # Like collect_subfields, keyed by the identity of the field list, kept alive with it.
        key = (object_type, id(field_details_list))
        cached = self._plans.get(key)
        if cached is not None:
            return cached[1]
        manager = self.middleware_manager
        if manager is not None and manager.middlewares:
            return None  # resolvers are wrapped: every field takes graphql-core's path
        known = self._known_key(object_type, field_details_list)
        held = _KNOWN_PLANS.get(known) if known is not None else None
        if held is not None:
            plan = held[1]
        else:
            plan = self._object_plan(object_type, field_details_list)
            if known is not None:
                _KNOWN_PLANS[known] = (field_details_list, plan)
                if len(_KNOWN_PLANS) > MAX_KNOWN_PLANS:
                    del _KNOWN_PLANS[next(iter(_KNOWN_PLANS))]
        self._plans[key] = (field_details_list, plan)
        return plan

    def _known_key(
        self, object_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> Hashable | None:
        """The plan of the same field nodes (of a cached parsed document) with the same
        variables is the same in every request: a key for it, kept with the nodes."""
        if self._variables_key is None:
            try:
                self._variables_key = json.dumps(self.variable_values.coerced, sort_keys=True)
            except (TypeError, ValueError):
                self._variables_key = ""
        if not self._variables_key:
            return None
        nodes = tuple((id(d.node), id(d.fragment_variable_values)) for d in field_details_list)
        return (self.schema, object_type, nodes, self._variables_key)

    def _object_plan(
        self, object_type: GraphQLObjectType, field_details_list: FieldDetailsList
    ) -> _Plan | None:
        grouped, new_defer_usages, _ = self.collect_subfields(object_type, field_details_list)
        if new_defer_usages:
            return None
        fields: list[tuple[str, Getter, Complete]] = []
        selection: list[tuple[str, str, Hashable]] = []
        for response_key, details in grouped.items():
            node = details[0].node
            if any(d.defer_usage is not None or d.node.directives for d in details):
                return None
            if node.arguments:
                return None
            name = node.name.value
            if name == "__typename":
                fields.append((response_key, _constant(object_type.name), _identity))
                selection.append((response_key, name, None))
                continue
            field_def = object_type.fields.get(name)
            if field_def is None:
                continue  # graphql-core leaves unknown fields out too
            if not getattr(field_def.resolve, "_is_default", False):
                return None
            definition = field_def.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
            if (
                definition is None
                or definition.default_resolver is not getattr
                # strawberry marks a field with extensions (permission classes…) as having the
                # default resolver too: only a basic field may skip them.
                or not definition.is_basic_field
            ):
                return None
            planned = self._type_plan(field_def.type, details)
            if planned is None:
                return None
            fields.append((response_key, operator.attrgetter(definition.python_name), planned[0]))
            selection.append((response_key, name, planned[1]))
        origin = getattr(
            object_type.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF), "origin", None
        )
        shared = SHARED_COMPLETIONS in getattr(origin, "__dataclass_fields__", {})
        signature = (object_type.name, tuple(selection))
        return _object(object_type, fields, signature, shared), signature

    def _type_plan(self, type_: GraphQLOutputType, details: FieldDetailsList) -> _Plan | None:
        if isinstance(type_, GraphQLNonNull):
            inner = self._type_plan(type_.of_type, details)
            return (_non_null(inner[0]), ("!", inner[1])) if inner is not None else None
        if isinstance(type_, GraphQLList):
            inner = self._type_plan(type_.of_type, details)
            return (_list(inner[0]), ("[]", inner[1])) if inner is not None else None
        if isinstance(type_, GraphQLEnumType):
            return _enum(type_), type_.name
        if is_leaf_type(type_):
            return _leaf(type_.coerce_output_value), type_.name
        if isinstance(type_, GraphQLObjectType):
            return self._plan_of(type_, details)
        return None  # interfaces and unions: graphql-core resolves the runtime type


def _identity(value: Any) -> Any:
    return value


def _constant(value: Any) -> Getter:
    return lambda _source: value
