"""The web page: static HTML, CSS, JavaScript modules and GraphQL documents, no build step.

:func:`routes` gives the API server's routes for it: ``/`` (the page, with a strict
Content-Security-Policy: only this origin's scripts, styles and connections, no inline code)
and ``/static/…`` (the assets in this package's directory).  The page talks to the public
GraphQL API only (``/graphql`` over HTTP and graphql-transport-ws); its documents live in
``graphql/*.graphql`` and are validated against the schema by ``tests/web``.

No exceptions of its own: missing assets are 404s from Starlette's ``StaticFiles``.
"""

from __future__ import annotations

import os
from os import PathLike
from pathlib import Path, PurePosixPath

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

WEB_DIR = Path(__file__).resolve().parent
"""Where the page's files are (inside the installed package)."""

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)

PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def page(_: Request) -> Response:
    """The single page (its views are chosen by the URL fragment, e.g. ``#/devboxes``)."""
    return FileResponse(WEB_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)


ASSET_SUFFIXES = frozenset({".html", ".css", ".js", ".svg", ".graphql"})
"""What ``/static`` serves (not this module's Python source, nor its caches)."""


class _Assets(StaticFiles):
    """The page's assets: revalidated (no stale JavaScript after an upgrade), never sniffed,
    and under the page's Content-Security-Policy (``/static/index.html`` is the page too)."""

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        if PurePosixPath(path).suffix not in ASSET_SUFFIXES:
            return "", None
        return super().lookup_path(path)

    def file_response(
        self,
        full_path: PathLike[str] | str,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(PAGE_HEADERS)
        return response


def routes() -> list[BaseRoute]:
    """``/`` and ``/static`` for the API server's route list."""
    return [
        Route("/", page, methods=["GET", "HEAD"]),
        Mount("/static", app=_Assets(directory=WEB_DIR), name="static"),
    ]
