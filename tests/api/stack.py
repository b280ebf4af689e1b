"""The whole product in one event loop for API tests: a simulated cluster of the test's own
(so a test can drop its watches or compact its history), the API server on it (with
PostgreSQL), the official runtimes, and — when asked — the real controller with the fake
node-shim and registry, so devboxes really turn Running and commits really happen.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from app.kubeclient import DEVBOXES, NAMESPACES, RUNTIMES, AlreadyExists
from app.settings import REPO_ROOT
from tests.controller.harness import Harness, harness
from tests.fixtures.api import ApiServer, running_api
from tests.fixtures.kube import KubeTarget
from tests.fixtures.simcluster import Sim
from tests.fixtures.waiting import until_async

SYSTEM = "devbox-system"

DEVBOX = """
fragment D on Devbox {
  id name namespace owner state phase image networkMode
  conditions { type status reason message }
  runtime { id name namespace }
  resources { cpu memory storage }
  env { name value }
  ports { name port protocol public url }
  autoStop { idleTimeoutSeconds stopAt }
}
"""


@dataclass
class Stack:
    sim: Sim
    server: ApiServer
    harness: Harness | None

    async def user(self, name: str, namespace: str | None = None) -> str:
        """A user with its own namespace; its API token."""
        _, token = await self.server.make_user(name, namespace)
        return token

    async def gql(self, token: str, query: str, **variables: Any) -> dict[str, Any]:
        """Run a request that must not fail at the top level; its ``data``."""
        body = await self.server.gql(query, variables, token=token)
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    async def runtime_id(self, token: str, name: str = "python-3-12") -> str:
        data = await self.gql(
            token, "{ runtimes(first: 100) { edges { node { id name namespace } } } }"
        )
        for edge in data["runtimes"]["edges"]:
            if edge["node"]["name"] == name:
                return str(edge["node"]["id"])
        raise AssertionError(f"no runtime {name}: {data}")

    async def create(self, token: str, name: str = "box", **extra: Any) -> dict[str, Any]:
        """devboxCreate from the Python runtime; the payload."""
        runtime = extra.pop("runtime", None) or await self.runtime_id(token)
        data = await self.gql(
            token,
            DEVBOX + "mutation($input: DevboxCreateInput!) { devboxCreate(input: $input) {"
            " devbox { ...D } userErrors { field message code } } }",
            input={"name": name, "runtime": runtime, **extra},
        )
        payload: dict[str, Any] = data["devboxCreate"]
        return payload

    async def wait_phase(
        self, namespace: str, name: str, phase: str, within: float = 15.0
    ) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            obj = await self.sim.kube.get(DEVBOXES, namespace, name)
            return obj if (obj.get("status") or {}).get("phase") == phase else None

        return await until_async(check, within, f"devbox {namespace}/{name} phase {phase}")


def official_runtimes() -> list[dict[str, Any]]:
    found = []
    for path in sorted((REPO_ROOT / "k8s" / "runtimes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Runtime":
                found.append(doc)
    return found


async def install_runtimes(sim: Sim) -> None:
    with contextlib.suppress(AlreadyExists):
        await sim.kube.create(NAMESPACES, None, {"metadata": {"name": SYSTEM}})
    for runtime in official_runtimes():
        with contextlib.suppress(AlreadyExists):
            await sim.kube.create(RUNTIMES, SYSTEM, runtime)


@contextlib.asynccontextmanager
async def running_stack(
    sim: Sim,
    database_url: str,
    tmp_path: Path,
    *,
    controller: bool = False,
    settings: dict[str, Any] | None = None,
) -> AsyncIterator[Stack]:
    await install_runtimes(sim)
    target = KubeTarget(url=sim.cluster.url, kubeconfig=tmp_path / "none", simulated=True)
    async with contextlib.AsyncExitStack() as stack:
        h: Harness | None = None
        if controller:
            h = await stack.enter_async_context(harness(sim, tmp_path))
            await h.start_controller()
        server = await stack.enter_async_context(running_api(database_url, target, settings or {}))
        yield Stack(sim, server, h)
