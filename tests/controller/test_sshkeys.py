"""SSH keys are never rotated silently: a recreated Secret is reported on the devbox."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.controller import _children as children
from app.kubeclient import EVENTS, JSON, SECRETS, NotFound
from tests.controller.harness import NS, Harness, harness
from tests.fixtures.simcluster import Sim
from tests.fixtures.waiting import until_async


@pytest.fixture
async def h(sim: Sim, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(sim, tmp_path) as started:
        await started.create_runtime()
        await started.start_controller()
        yield started


def _condition(obj: JSON, kind: str) -> JSON | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return dict(cond)
    return None


def _user_key(secret: JSON) -> str:
    return base64.b64decode(secret["data"]["authorized_keys"]).decode()


async def test_a_running_devbox_records_the_fingerprint_of_the_issued_key(h: Harness) -> None:
    await h.create_devbox()
    devbox = await h.wait_phase("Running")
    secret = await h.sim.kube.get(SECRETS, NS, "box-ssh")
    fingerprint = children.fingerprint(_user_key(secret))
    assert devbox["status"]["ssh"]["userKeyFingerprint"] == fingerprint
    assert _condition(devbox, "SSHKeysRegenerated") is None


async def test_a_missing_secret_is_recreated_and_the_regeneration_is_reported(
    h: Harness,
) -> None:
    await h.create_devbox()
    devbox = await h.wait_phase("Running")
    old = devbox["status"]["ssh"]["userKeyFingerprint"]
    old_secret = await h.sim.kube.get(SECRETS, NS, "box-ssh")

    await h.sim.kube.delete(SECRETS, NS, "box-ssh")

    async def recreated() -> JSON | None:
        try:
            secret = await h.sim.kube.get(SECRETS, NS, "box-ssh")
        except NotFound:
            return None
        same = secret["metadata"]["uid"] == old_secret["metadata"]["uid"]
        return None if same else secret

    secret = await until_async(recreated, 10, "the Secret recreated")
    new = children.fingerprint(_user_key(secret))
    assert new != old

    async def reported() -> JSON | None:
        obj = await h.devbox()
        cond = _condition(obj, "SSHKeysRegenerated")
        return (
            obj
            if cond is not None and obj["status"]["ssh"].get("userKeyFingerprint") == new
            else None
        )

    devbox = await until_async(reported, 10, "the SSHKeysRegenerated condition")
    cond = _condition(devbox, "SSHKeysRegenerated")
    assert cond is not None
    assert cond["status"] == "True"
    assert "no longer works" in cond["message"]
    assert "fetch the new one" in cond["message"]
    assert old in cond["message"]
    assert new in cond["message"]

    async def event() -> JSON | None:
        items, _ = await h.sim.kube.list_objects(EVENTS, NS)
        found = [
            e
            for e in items
            if e["involvedObject"]["name"] == "box" and e["reason"] == "SSHKeysRegenerated"
        ]
        return found[0] if found else None

    recorded = await until_async(event, 5, "an SSHKeysRegenerated event")
    assert recorded["type"] == "Warning"
    assert "no longer works" in recorded["message"]
