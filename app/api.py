"""The API server's Starlette application: GraphQL, health and metrics endpoints."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from strawberry.asgi import GraphQL

from app import __version__
from app.schema import schema


async def healthz(_: Request) -> Response:
    return JSONResponse({"status": "ok", "version": __version__})


async def metrics(_: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def create_app() -> Starlette:
    """The ASGI application served by ``devboxctl serve``."""
    graphql = GraphQL(schema)
    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/metrics", metrics),
            Route("/graphql", graphql, methods=["GET", "POST"]),
        ]
    )
