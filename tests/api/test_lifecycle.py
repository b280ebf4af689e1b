"""A devbox's whole life through the API, with the real controller: it runs, gives its owner
SSH access, stops with a commit, is released and shared as a runtime, restored, restarted,
and deleted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.kubeclient import DEVBOXES
from tests.api.stack import Stack, running_stack
from tests.fixtures.simcluster import Sim
from tests.fixtures.waiting import until_async


@pytest.fixture
async def stack(sim: Sim, api_database: str, tmp_path: Path) -> AsyncIterator[Stack]:
    async with running_stack(sim, api_database, tmp_path, controller=True) as running:
        yield running


SSH = """
query { devbox(name: "box") {
  phase
  ssh { host port user hostAlias configSnippet vscodeUri jetbrainsUri privateKey }
} }
"""

COMMITS = """
query { devbox(name: "box") {
  phase image
  commits(first: 10) { totalCount edges { node {
    id mode image digest sizeBytes layers status reason restoredFrom startedAt finishedAt
    durationSeconds
  } } }
  releases(first: 10) { edges { node { id name version notes phase image digest } } }
  events(first: 50) { edges { node { type reason message } } }
} }
"""


async def api_phase(stack: Stack, token: str, phase: str, within: float = 15.0) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        data = await stack.gql(token, COMMITS)
        devbox: dict[str, Any] = data["devbox"]
        return devbox if devbox["phase"] == phase else None

    return await until_async(check, within, f"phase {phase} through the API")


async def mutate(stack: Stack, token: str, mutation: str, args: str, fields: str) -> Any:
    errors = "userErrors { field code message }"
    data = await stack.gql(
        token, f"mutation {{ {mutation}(input: {{{args}}}) {{ {fields} {errors} }} }}"
    )
    payload = data[mutation]
    assert payload["userErrors"] == [], payload
    return payload


async def test_the_whole_life_of_a_devbox(stack: Stack) -> None:
    token = await stack.user("alice")
    ns = (await stack.gql(token, "{ viewer { namespace } }"))["viewer"]["namespace"]
    secret_env = [{"name": "API_TOKEN", "value": "s3cret-value"}]
    assert (await stack.create(token, "box", env=secret_env))["userErrors"] == []
    await api_phase(stack, token, "RUNNING")

    # SSH: the owner gets everything, including the private key.
    ssh = (await stack.gql(token, SSH))["devbox"]["ssh"]
    alias = f"devbox-{ns}-box"
    assert ssh["hostAlias"] == alias
    assert ssh["host"]
    assert ssh["port"] > 0
    assert ssh["user"] == "root"
    assert f"Host {alias}\n" in ssh["configSnippet"]
    assert f"Port {ssh['port']}" in ssh["configSnippet"]
    assert ssh["vscodeUri"] == f"vscode://vscode-remote/ssh-remote+{alias}/root"
    assert ssh["jetbrainsUri"].startswith("jetbrains-gateway://connect#type=ssh&")
    assert ssh["privateKey"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    # Another user of the same namespace sees the devbox but never its key.
    bob = await stack.user("bob", ns)
    theirs = (await stack.gql(bob, SSH))["devbox"]["ssh"]
    assert theirs["privateKey"] is None
    assert theirs["host"] == ssh["host"]
    # ... nor may they release it (a devbox started from the release would be theirs).
    refused_release = await stack.gql(
        bob,
        'mutation { devboxRelease(input: {name: "box", version: "v9.9.9"}) '
        "{ release { id } userErrors { field code } } }",
    )
    assert refused_release["devboxRelease"] == {
        "release": None,
        "userErrors": [{"field": ["input", "name"], "code": "FORBIDDEN"}],
    }
    # ... nor change, stop or delete it: only its owner (or an admin) does.
    for mutation, args in (
        ("devboxUpdate", 'name: "box", env: [{name: "X", value: "1"}]'),
        ("devboxStop", 'name: "box"'),
        ("devboxRestart", 'name: "box"'),
        ("devboxDelete", 'name: "box"'),
    ):
        answer = await stack.gql(
            bob, f"mutation {{ {mutation}(input: {{{args}}}) {{ userErrors {{ field code }} }} }}"
        )
        assert answer[mutation]["userErrors"] == [
            {"field": ["input", "name"], "code": "FORBIDDEN"}
        ], mutation
    untouched = (await stack.gql(token, '{ devbox(name: "box") { state env { name } } }'))["devbox"]
    assert untouched["state"] == "RUNNING"
    assert [e["name"] for e in untouched["env"]] == ["API_TOKEN"]

    # Stop: a commit is recorded and shown.
    await mutate(stack, token, "devboxStop", 'name: "box"', "devbox { state }")
    stopped = await api_phase(stack, token, "STOPPED")
    (edge,) = stopped["commits"]["edges"]
    commit = edge["node"]
    assert commit["mode"] == "STOP"
    assert commit["status"] == "SUCCEEDED"
    assert commit["digest"].startswith("sha256:")
    assert commit["durationSeconds"] >= 0
    assert stopped["image"] == commit["image"]
    assert any(e["node"]["reason"] for e in stopped["events"]["edges"])

    # Release it, then share the release as a public runtime.
    released = await mutate(
        stack,
        token,
        "devboxRelease",
        'name: "box", version: "v1.0.0", notes: "first"',
        "release { id version phase }",
    )
    assert released["release"]["version"] == "v1.0.0"

    async def succeeded() -> dict[str, Any] | None:
        data = await stack.gql(token, COMMITS)
        (rel,) = data["devbox"]["releases"]["edges"]
        return rel["node"] if rel["node"]["phase"] == "SUCCEEDED" else None

    release = await until_async(succeeded, 10, "release succeeded")
    assert release["digest"] == commit["digest"]
    again = await stack.gql(
        token,
        'mutation { devboxRelease(input: {name: "box", version: "v1.0.0"}) '
        "{ release { id } userErrors { field code } } }",
    )
    assert again["devboxRelease"]["userErrors"] == [
        {"field": ["input", "version"], "code": "ALREADY_EXISTS"}
    ]
    shared = await mutate(
        stack,
        token,
        "runtimeCreateFromRelease",
        f'release: "{release["id"]}", name: "my-python", visibility: PUBLIC, title: "My Python"',
        "runtime { id name namespace title version image visibility official "
        "sharedFrom { namespace devbox release } }",
    )
    assert shared["runtime"] == {
        "id": shared["runtime"]["id"],
        "name": "my-python",
        "namespace": ns,
        "title": "My Python",
        "version": "v1.0.0",
        "image": release["image"],
        "visibility": "PUBLIC",
        "official": False,
        "sharedFrom": {"namespace": ns, "devbox": "box", "release": release["name"]},
    }
    # Anyone can create a devbox from a public runtime, and sees none of the devbox's env.
    carol = await stack.user("carol")
    seen = await stack.gql(
        carol,
        f'{{ runtime(id: "{shared["runtime"]["id"]}") {{ env {{ name value }} }} }}',
    )
    assert "s3cret-value" not in str(seen)
    from_release = await stack.create(carol, "copy", runtime=shared["runtime"]["id"])
    assert from_release["userErrors"] == []

    # Restart is refused while stopped; start, then restart (commit, new pod).
    await mutate(stack, token, "devboxStart", 'name: "box"', "devbox { state }")
    await api_phase(stack, token, "RUNNING")
    await mutate(stack, token, "devboxRestart", 'name: "box"', "devbox { state }")

    async def restarted() -> dict[str, Any] | None:
        data = await stack.gql(token, COMMITS)
        devbox = data["devbox"]
        ok = devbox["phase"] == "RUNNING" and devbox["commits"]["totalCount"] == 2
        return devbox if ok else None

    after_restart = await until_async(restarted, 15, "restart committed")
    newest = after_restart["commits"]["edges"][0]["node"]
    assert newest["status"] == "SUCCEEDED"
    assert after_restart["image"] == newest["image"]

    # Restore the first commit: only once stopped.
    refused = await stack.gql(
        token,
        f'mutation {{ devboxRestore(input: {{name: "box", commitId: "{commit["id"]}"}}) '
        "{ userErrors { field code } } }",
    )
    assert refused["devboxRestore"]["userErrors"] == [
        {"field": ["input", "name"], "code": "INVALID_STATE"}
    ]
    await mutate(stack, token, "devboxStop", 'name: "box"', "devbox { state }")
    await api_phase(stack, token, "STOPPED")
    await mutate(
        stack,
        token,
        "devboxRestore",
        f'name: "box", commitId: "{commit["id"]}"',
        "devbox { state }",
    )
    restored = await api_phase(stack, token, "RUNNING")
    record = restored["commits"]["edges"][0]["node"]
    assert record["mode"] == "RESTORE"
    assert record["restoredFrom"] == commit["id"]
    assert restored["image"] == commit["image"]

    # Delete: reported at once, gone once the controller's finalizer ran.
    deleted = await mutate(stack, token, "devboxDelete", 'name: "box"', "deletedDevboxId")
    assert deleted["deletedDevboxId"]

    async def gone() -> bool:
        items, _ = await stack.sim.kube.list_objects(DEVBOXES, ns)
        return not any(i["metadata"]["name"] == "box" for i in items)

    await until_async(gone, 15, "devbox deleted")
