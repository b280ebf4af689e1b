"""The web page's routes: every way to load the page carries its Content-Security-Policy."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from app.web import CONTENT_SECURITY_POLICY, routes


@pytest.mark.parametrize("path", ["/", "/static/index.html", "/static/favicon.svg"])
def test_the_page_and_its_assets_cannot_be_framed_or_run_foreign_scripts(path: str) -> None:
    client = TestClient(Starlette(routes=routes()))
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_python_source_and_traversal_are_not_served() -> None:
    client = TestClient(Starlette(routes=routes()))
    assert client.get("/static/__init__.py").status_code == 404
    assert client.get("/static/../settings.py").status_code == 404
    assert client.get("/static/%2e%2e/%2e%2e/pyproject.toml").status_code == 404
