"""The API server's Starlette application: GraphQL (HTTP and WebSocket), health and metrics.

``POST /graphql`` (and ``GET`` for queries) needs ``Authorization: Bearer <token>``; before
the GraphQL engine sees a request, :class:`GraphQLEndpoint` refuses, each with a JSON body
shaped like a GraphQL response (``{"errors": [{"message", "extensions": {"code",
"requestId"}}]}``):

- 401 ``UNAUTHENTICATED`` (with ``WWW-Authenticate: Bearer``): no token, or an unknown,
  expired or revoked one;
- 503 ``UNAVAILABLE`` (with ``Retry-After``): the token cannot be checked (database down);
- 429 ``RATE_LIMITED`` (with ``Retry-After``): the token spent its request budget;
- 413 ``REQUEST_TOO_LARGE``: the body is larger than ``max_request_bytes`` (checked while
  reading, before parsing);
- 400 ``BAD_REQUEST``: the body is not JSON, or not a GraphQL request; also 400 (not 200)
  when the document does not parse or validate, limits included.

``GET /graphql`` from a browser (``Accept: text/html``) serves GraphiQL without a token (set
the ``Authorization`` header in its headers tab).  WebSockets speak ``graphql-transport-ws``
(and legacy ``graphql-ws``) and authenticate in ``connection_init`` (``{"authorization":
"Bearer …"}`` or ``{"token": "…"}``); a missing or bad token closes the socket with 4401.
Every response carries ``X-Request-Id``; the same id is in every error's
``extensions.requestId`` and in the server log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from cross_web import HTTPException
from graphql import GraphQLError, GraphQLFormattedError
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.schema import BaseSchema
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    SubscribeMessage,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ErrorMessage as TransportErrorMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage as LegacyConnectionInitMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ErrorMessage as LegacyErrorMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.types import (
    StartMessage as LegacyStartMessage,
)
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError

from app import __version__, gctuning
from app.db import idempotency
from app.ratelimit import RateLimiter
from app.schema import build_schema
from app.schema.auth import authenticator_of, bearer_token, connection_token
from app.schema.context import Context, Services
from app.schema.execution import SharedData
from app.tunnel import tunnel_route
from app.web import routes as web_routes

log = logging.getLogger(__name__)

UNAUTHORIZED_CLOSE_CODE = 4401
RATE_LIMITED_CLOSE_CODE = 4429
TRY_AGAIN_LATER_CLOSE_CODE = 1013
REVALIDATE_SECONDS = 30.0
"""How often an open WebSocket checks that its token is still valid (closed with 4401 once
revoked or expired, ending its subscriptions)."""


def error_response(
    status: int,
    message: str,
    code: str,
    request_id: str,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A GraphQL-shaped JSON error response."""
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": code, "requestId": request_id}}]},
        status_code=status,
        headers={"X-Request-Id": request_id, **(headers or {})},
    )


def _client_address(connection: HTTPConnection) -> str | None:
    return connection.client.host if connection.client else None


class _BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # like a client that sends nothing more
        raise AssertionError("unreachable")

    return receive


def _body_problem(request: Request, body: bytes) -> str | None:
    """Why a POST body is not a GraphQL request (None if it may be one)."""
    if request.method != "POST" or "json" not in request.headers.get("content-type", ""):
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return "Unable to parse the request body as JSON."
    if not isinstance(data, dict):
        return 'The request body must be a JSON object: {"query": "...", "variables": {...}}.'
    return None


def _watch_token(
    view: object, websocket: Any, context: Context, token: str | None
) -> asyncio.Task[None]:
    """A task closing ``websocket`` with 4401 once ``token`` is revoked or expired."""

    async def watch() -> None:
        assert isinstance(view, DevboxGraphQL)
        while True:
            await asyncio.sleep(REVALIDATE_SECONDS)
            try:
                valid = await authenticator_of(view.services).viewer(token) is not None
            except Exception:  # the database is down: keep the socket, check again later
                log.warning("request %s: cannot check the API token", context.request_id)
                continue
            if not valid:
                with contextlib.suppress(Exception):
                    await websocket.close(UNAUTHORIZED_CLOSE_CODE, "Unauthorized")
                return

    return asyncio.create_task(watch())


class _AuthenticatingTransportWS(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws: authenticate in ``connection_init`` or close with 4401.

    Each new operation checks the token again (from the short authentication cache), so a
    revoked token cannot start new subscriptions on a connection opened before, and spends
    one request of the token's rate budget (an ``error`` message ``RATE_LIMITED`` if none is
    left).  The token is checked again every :data:`REVALIDATE_SECONDS` as well: once it is
    revoked or expired the socket closes with 4401, ending its subscriptions.
    """

    _token: str | None = None
    _watch: asyncio.Task[None] | None = None

    async def _init(self, message: ConnectionInitMessage) -> None:
        payload = message.get("payload") or {}
        if (
            isinstance(payload, dict)
            and not self.connection_init_received
            and not self.connection_timed_out
        ):
            view = self.view
            assert isinstance(view, DevboxGraphQL)
            refusal = await view.authenticate_connection(self.context, payload)
            if refusal is not None:
                self.connection_init_received = True
                if self.connection_init_timeout_task:
                    self.connection_init_timeout_task.cancel()
                await self.websocket.close(code=refusal[0], reason=refusal[1])
                return
            self._token = connection_token(payload)
        await super().handle_connection_init(message)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await self._init(message)
        if self.connection_acknowledged and self._watch is None:
            self._watch = _watch_token(self.view, self.websocket, self.context, self._token)

    async def shutdown(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        await super().shutdown()

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if self.connection_acknowledged:
            view = self.view
            assert isinstance(view, DevboxGraphQL)
            verdict = await view.admit_operation(self.context, self._token)
            if isinstance(verdict, tuple):
                await self.websocket.close(*verdict)
                return
            if verdict is not None:
                await self.send_message(
                    TransportErrorMessage(id=message["id"], type="error", payload=[verdict])
                )
                return
        await super().handle_subscribe(message)


class _AuthenticatingLegacyWS(BaseGraphQLWSHandler[Context, None]):
    """Legacy graphql-ws: the same, answering ``connection_error`` before closing."""

    _token: str | None = None
    _watch: asyncio.Task[None] | None = None

    async def handle_connection_init(self, message: LegacyConnectionInitMessage) -> None:
        payload = message.get("payload") or {}
        if isinstance(payload, dict):
            view = self.view
            assert isinstance(view, DevboxGraphQL)
            refusal = await view.authenticate_connection(self.context, payload)
            if refusal is not None:
                await self.send_message(
                    {"type": "connection_error", "payload": {"message": refusal[1]}}
                )
                await self.websocket.close(code=refusal[0], reason=refusal[1])
                return
            self._token = connection_token(payload)
        await super().handle_connection_init(message)
        if self.connection_acknowledged and self._watch is None:
            self._watch = _watch_token(self.view, self.websocket, self.context, self._token)

    async def cleanup(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        await super().cleanup()

    async def handle_start(self, message: LegacyStartMessage) -> None:
        if self.connection_acknowledged:
            view = self.view
            assert isinstance(view, DevboxGraphQL)
            verdict = await view.admit_operation(self.context, self._token)
            if isinstance(verdict, tuple):
                await self.websocket.close(*verdict)
                return
            if verdict is not None:
                await self.send_message(
                    LegacyErrorMessage(type="error", id=message["id"], payload=verdict)
                )
                return
        await super().handle_start(message)


class DevboxGraphQL(GraphQL[Context, None]):
    """Strawberry's ASGI view with our context, WebSocket authentication and status codes."""

    graphql_transport_ws_handler_class = _AuthenticatingTransportWS
    graphql_ws_handler_class = _AuthenticatingLegacyWS

    def __init__(self, schema: BaseSchema, services: Services, limiter: RateLimiter) -> None:
        super().__init__(schema, graphql_ide="graphiql")
        self.services = services
        self.limiter = limiter

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        # Only WebSockets get here: HTTP requests are given their context by the endpoint.
        return Context(
            services=self.services,
            request_id=str(uuid.uuid4()),
            client_address=_client_address(request),
            user_agent=request.headers.get("user-agent"),
        )

    async def authenticate_connection(
        self, context: Context, payload: Mapping[str, object]
    ) -> tuple[int, str] | None:
        """Set ``context.viewer`` from a ``connection_init`` payload; a close code if refused."""
        try:
            viewer = await authenticator_of(self.services).viewer(connection_token(payload))
        except Exception:
            log.exception("request %s: could not check the API token", context.request_id)
            return TRY_AGAIN_LATER_CLOSE_CODE, "Database unavailable, retry later"
        if viewer is None:
            return UNAUTHORIZED_CLOSE_CODE, "Unauthorized"
        if self.limiter.take(viewer.token_id) is not None:
            return RATE_LIMITED_CLOSE_CODE, "Too many requests"
        context.viewer = viewer
        return None

    async def admit_operation(
        self, context: Context, token: str | None
    ) -> tuple[int, str] | GraphQLFormattedError | None:
        """Before each operation on an open WebSocket: None to run it; a ``(close code,
        reason)`` when the token is no longer valid (revoked, expired) or cannot be checked;
        a GraphQL error (``RATE_LIMITED``) to refuse this one operation."""
        try:
            viewer = await authenticator_of(self.services).viewer(token)
        except Exception:
            log.exception("request %s: could not check the API token", context.request_id)
            return TRY_AGAIN_LATER_CLOSE_CODE, "Retry later"
        if viewer is None:
            return UNAUTHORIZED_CLOSE_CODE, "Unauthorized"
        if self.limiter.take(viewer.token_id) is not None:
            return GraphQLError(
                "Too many requests for this API token; retry later.",
                extensions={"code": "RATE_LIMITED", "requestId": context.request_id},
            ).formatted
        return None

    def encode_json(self, data: object) -> str | bytes:
        """JSON as strawberry writes it; a ``next`` message whose data is shared by many
        subscribers (:class:`~app.schema.execution.SharedData`) reuses its serialized data."""
        if isinstance(data, dict) and data.get("type") == "next":
            payload = data.get("payload")
            shared = payload.get("data") if isinstance(payload, dict) else None
            if isinstance(shared, SharedData) and isinstance(payload, dict) and len(payload) == 1:
                head = self._dumps({"id": data.get("id"), "type": "next"})
                return f'{head[:-1]},"payload":{{"data":{shared.encode(self._dumps)}}}}}'
        return super().encode_json(data)

    def _dumps(self, data: object) -> str:
        encoded = super().encode_json(data)
        return encoded if isinstance(encoded, str) else encoded.decode()

    async def process_result(self, request: Request, result: ExecutionResult) -> Any:
        if isinstance(result, PreExecutionError):
            request.state.graphql_bad_request = True
        return await super().process_result(request, result)


class GraphQLEndpoint:
    """``/graphql``: checks auth, rate and size, then hands the request to strawberry."""

    def __init__(self, view: DevboxGraphQL) -> None:
        self.view = view
        self.services = view.services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self.view.run(WebSocket(scope, receive=receive, send=send))
            return
        response = await self._http(Request(scope, receive=receive))
        await response(scope, receive, send)

    async def _http(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        settings = self.services.settings
        if request.method not in ("GET", "POST"):
            return error_response(
                405, "Use GET or POST.", "METHOD_NOT_ALLOWED", request_id, {"Allow": "GET, POST"}
            )
        if (
            request.method == "GET"
            and "query" not in request.query_params
            and "text/html" in request.headers.get("accept", "")
        ):
            return await self.view.render_graphql_ide(request)
        token = bearer_token(request.headers.get("authorization"))
        try:
            viewer = await authenticator_of(self.services).viewer(token)
        except Exception:
            log.exception("request %s: could not check the API token", request_id)
            return error_response(
                503,
                "The server cannot check API tokens right now (database unavailable); retry later.",
                "UNAVAILABLE",
                request_id,
                {"Retry-After": "5"},
            )
        if viewer is None:
            challenge = 'Bearer realm="devbox"'
            if token is not None:
                challenge += ', error="invalid_token"'
            message = (
                "The API token is unknown, expired or revoked."
                if token is not None
                else "Authentication required: send Authorization: Bearer <token>."
            )
            return error_response(
                401, message, "UNAUTHENTICATED", request_id, {"WWW-Authenticate": challenge}
            )
        wait = self.view.limiter.take(viewer.token_id)
        if wait is not None:
            return error_response(
                429,
                "Too many requests for this API token; retry after the Retry-After seconds.",
                "RATE_LIMITED",
                request_id,
                {"Retry-After": RateLimiter.retry_after_header(wait)},
            )
        try:
            body = await _read_body(request, settings.max_request_bytes)
        except _BodyTooLarge:
            return error_response(
                413,
                f"The request body is larger than {settings.max_request_bytes} bytes.",
                "REQUEST_TOO_LARGE",
                request_id,
            )
        context = Context(
            services=self.services,
            request_id=request_id,
            viewer=viewer,
            client_address=_client_address(request),
            user_agent=request.headers.get("user-agent"),
        )
        problem = _body_problem(request, body)
        if problem is not None:
            return error_response(400, problem, "BAD_REQUEST", request_id)
        replayed = Request(request.scope, receive=_replay(body))
        try:
            response = await self.view.run(replayed, context=context)
        except HTTPException as exc:
            return error_response(exc.status_code, exc.reason, "BAD_REQUEST", request_id)
        except Exception:
            log.exception("request %s: unexpected error", request_id)
            return error_response(
                500,
                "Internal server error; quote the requestId when reporting it.",
                "INTERNAL_SERVER_ERROR",
                request_id,
            )
        if getattr(replayed.state, "graphql_bad_request", False):
            response.status_code = 400
        response.headers["X-Request-Id"] = request_id
        return response


async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok", "version": __version__})


async def metrics(_: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


PURGE_INTERVAL_SECONDS = 3600.0
"""How often expired idempotency keys are deleted."""


async def _purge_idempotency_keys(services: Services) -> None:
    """Delete idempotency keys older than their 24 h lifetime, every hour, for good."""
    while True:
        try:
            async with services.sessionmaker() as session:
                deleted = await idempotency.purge_expired(session)
                await session.commit()
            if deleted:
                log.info("deleted %d expired idempotency keys", deleted)
        except Exception:
            log.warning("could not delete expired idempotency keys", exc_info=True)
        await asyncio.sleep(PURGE_INTERVAL_SECONDS)


def create_app(services: Services, *, schema: BaseSchema | None = None) -> Starlette:
    """The ASGI application served by ``devboxctl serve`` (and by the tests).

    ``schema`` defaults to the product's schema with the limits and masking configured from
    ``services.settings``.  The read cache (``services.cache``), when it has ``start()`` and
    ``stop()`` coroutines, runs for the application's lifespan, and so does an hourly purge
    of expired idempotency keys.
    """
    settings = services.settings
    limiter = RateLimiter(rate=settings.rate_limit_per_second, burst=settings.rate_limit_burst)
    schema = schema or build_schema(settings)
    view = DevboxGraphQL(schema, services, limiter)
    endpoint = GraphQLEndpoint(view)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        cache = services.cache
        startable = callable(getattr(cache, "start", None)) and callable(
            getattr(cache, "stop", None)
        )
        if startable:
            await cache.start()
        gctuning.tune()  # after start-up: what exists now lives as long as the process
        purger = asyncio.create_task(_purge_idempotency_keys(services), name="idempotency-purge")
        try:
            yield
        finally:
            purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purger
            if startable:
                await cache.stop()

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/metrics", metrics),
            Route("/graphql", endpoint, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
            WebSocketRoute("/graphql", endpoint),
            tunnel_route(services),
            *web_routes(),  # the web page: "/" and "/static/…" (app/web)
        ],
        lifespan=lifespan,
    )
