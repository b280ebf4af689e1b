"""Schema extensions: limits against abuse, error masking, and a request id on every error.

Order matters (strawberry leaves extensions in reverse order): :class:`TagRequestId` comes
first so it runs last and tags every error, masked or not; :class:`LogErrors` comes last so
it runs first and logs the original exception with its stack trace before ``MaskErrors``
replaces it.  In production (``DEVBOX_ENVIRONMENT=production``, the default) every error
that is not one we raise on purpose (:class:`~app.schema.errors.ApiError`, invalid
pagination, GraphQL syntax/validation errors) reads "Internal server error" with its
``requestId``; the same id is in the server log next to the stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)

from app.schema.errors import ApiError
from app.schema.relay import PaginationError
from app.settings import Environment, Settings

log = logging.getLogger("app.api.errors")

MASKED_MESSAGE = "Internal server error; quote the requestId when reporting it."


def is_public(error: GraphQLError) -> bool:
    """True for errors whose message is meant for the client."""
    original = error.original_error
    return original is None or isinstance(original, ApiError | PaginationError | GraphQLError)


def _request_id(extension: SchemaExtension) -> str | None:
    context = extension.execution_context.context
    value = getattr(context, "request_id", None)
    return value if isinstance(value, str) else None


def _errors(extension: SchemaExtension) -> list[GraphQLError]:
    result = extension.execution_context.result
    errors = getattr(result, "errors", None) if result is not None else None
    if errors is None:
        errors = extension.execution_context.pre_execution_errors
    return list(errors or [])


class TagRequestId(SchemaExtension):
    """Put ``extensions.requestId`` (and ``code`` where known) on every error.

    The errors are copied, never changed in place: validation errors come from a cache
    shared by all requests.
    """

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        errors = _errors(self)
        if result is None or not errors:
            return
        request_id = _request_id(self)
        tagged: list[GraphQLError] = []
        for error in errors:
            extensions = dict(error.extensions or {})
            if request_id:
                extensions["requestId"] = request_id
            if isinstance(error.original_error, PaginationError):
                extensions.setdefault("code", "BAD_REQUEST")
            elif error.original_error is None and not error.path:
                extensions.setdefault("code", "GRAPHQL_VALIDATION_FAILED")
            elif not is_public(error):
                extensions.setdefault("code", "INTERNAL_SERVER_ERROR")
            tagged.append(
                GraphQLError(
                    error.message,
                    nodes=error.nodes,
                    source=error.source,
                    positions=error.positions,
                    path=error.path,
                    original_error=error.original_error,
                    extensions=extensions,
                )
            )
        result.errors = tagged


class LogErrors(SchemaExtension):
    """Log unexpected errors with their stack trace and the request id."""

    def on_operation(self) -> Iterator[None]:
        yield
        for error in _errors(self):
            if not is_public(error):
                log.error(
                    "request %s: %s at %s",
                    _request_id(self),
                    error.message,
                    ".".join(str(p) for p in error.path or []),
                    exc_info=error.original_error,
                )


ExtensionFactory = Callable[[], SchemaExtension]


PARSE_CACHE_SIZE = 512
"""Distinct query texts whose parsed document (and validation result) are remembered."""


def schema_extensions(settings: Settings) -> list[ExtensionFactory]:
    """Factories of the served schema's extensions (one fresh set per operation).

    The limit rules are made once here, so that the validation cache (keyed by document and
    rules) answers repeated queries without validating them again.
    """
    limit_rules = [
        *QueryDepthLimiter(max_depth=settings.max_query_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=settings.max_aliases).validation_rules,
    ]
    max_tokens = settings.max_query_tokens
    factories: list[ExtensionFactory] = [
        TagRequestId,
        lambda: MaxTokensLimiter(max_token_count=max_tokens),
        lambda: AddValidationRules(limit_rules),
        lambda: ParserCache(maxsize=PARSE_CACHE_SIZE),
        lambda: ValidationCache(maxsize=PARSE_CACHE_SIZE),
    ]
    if settings.environment is Environment.PRODUCTION:
        factories.append(
            lambda: MaskErrors(
                should_mask_error=lambda e: not is_public(e), error_message=MASKED_MESSAGE
            )
        )
    factories.append(LogErrors)
    return factories
