"""Releases re-tag the devbox's current image in the registry, never overwriting a version."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from app.kubeclient import DEVBOXES, RELEASES
from tests.controller.harness import NS, Harness, harness
from tests.fixtures.simcluster import Sim
from tests.fixtures.waiting import until_async


@pytest.fixture
async def h(sim: Sim, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(sim, tmp_path) as started:
        await started.create_runtime()
        await started.start_controller()
        yield started


async def release(h: Harness, name: str, version: str) -> None:
    await h.sim.kube.create(
        RELEASES,
        NS,
        {
            "apiVersion": "devbox.dev/v1alpha1",
            "kind": "DevboxRelease",
            "metadata": {"name": name},
            "spec": {"devbox": "box", "version": version, "notes": "first"},
        },
    )


async def release_status(h: Harness, name: str, phase: str) -> dict[str, str]:
    async def check() -> dict[str, str] | None:
        obj = await h.sim.kube.get(RELEASES, NS, name)
        status = obj.get("status") or {}
        return dict(status) if status.get("phase") == phase else None

    return await until_async(check, 10, f"release {name} {phase}")


async def stopped_once(h: Harness) -> dict[str, object]:
    await h.create_devbox()
    await h.wait_phase("Running")
    await h.set_state("Stopped")
    devbox = await h.wait_phase("Stopped")
    return dict(devbox["status"]["commits"][-1])


async def test_a_release_retags_the_current_image_without_upload(h: Harness) -> None:
    commit = await stopped_once(h)
    await release(h, "v1", "v1.0.0+build.1")
    status = await release_status(h, "v1", "Succeeded")
    assert status["image"] == f"{h.registry.host}/{NS}/box:v1.0.0_build.1"
    assert status["digest"] == commit["digest"]
    assert h.registry.tags[(f"{NS}/box", "v1.0.0_build.1")] == commit["digest"]


async def test_a_release_waits_for_the_first_commit(h: Harness) -> None:
    await h.create_devbox()
    await h.wait_phase("Running")
    await release(h, "v1", "v1")
    status = await release_status(h, "v1", "Pending")
    assert "no commit yet" in status["reason"]
    await h.set_state("Stopped")
    await h.wait_phase("Stopped")
    await release_status(h, "v1", "Succeeded")


async def test_an_existing_version_is_never_overwritten(h: Harness) -> None:
    await stopped_once(h)
    h.registry.push(f"{h.registry.host}/{NS}/box:v2", config="someone else's")
    await release(h, "v2", "v2")
    status = await release_status(h, "v2", "Failed")
    assert "version exists" in status["reason"]


async def test_deleting_a_devbox_deletes_its_commit_images_but_not_released_ones(
    h: Harness,
) -> None:
    first = await stopped_once(h)
    await release(h, "v1", "v1")
    await release_status(h, "v1", "Succeeded")
    await h.set_state("Running")
    await h.wait_phase("Running")
    await h.set_state("Stopped")
    second = (await h.wait_phase("Stopped"))["status"]["commits"][-1]
    await h.sim.kube.delete(DEVBOXES, NS, "box")

    await h.wait_gone("devbox deleted")
    assert second["digest"] not in h.registry.manifests
    assert first["digest"] in h.registry.manifests  # released: kept


async def touch(h: Harness, name: str) -> None:
    """A change that queues the release again (a re-reconcile), then a controller restart."""
    await h.sim.kube.patch(RELEASES, NS, name, {"metadata": {"annotations": {"poke": "1"}}})
    await h.stop_controller()
    await h.start_controller()
    await h.sim.kube.patch(RELEASES, NS, name, {"metadata": {"annotations": {"poke": "2"}}})
    await asyncio.sleep(0.5)


async def test_a_release_after_a_restore_retags_the_restored_image(h: Harness) -> None:
    first = await stopped_once(h)
    await h.set_state("Running")
    await h.wait_phase("Running")
    await h.set_state("Stopped")
    second = (await h.wait_phase("Stopped"))["status"]["commits"][-1]
    assert second["digest"] != first["digest"]
    await h.sim.kube.patch(DEVBOXES, NS, "box", {"spec": {"restoreCommit": first["id"]}})

    async def restored() -> bool:
        records = (await h.devbox())["status"]["commits"]
        return records[-1]["mode"] == "Restore"

    await until_async(restored, 10, "restore applied")
    await release(h, "v1", "v1")
    status = await release_status(h, "v1", "Succeeded")
    assert status["digest"] == first["digest"]  # what the pod would run, not the newest commit
    assert h.registry.tags[(f"{NS}/box", "v1")] == first["digest"]


async def test_a_second_release_of_a_released_version_is_refused_and_stays_refused(
    h: Harness,
) -> None:
    commit = await stopped_once(h)
    await release(h, "v1", "v1")
    await release_status(h, "v1", "Succeeded")
    await release(h, "v1-again", "v1")
    status = await release_status(h, "v1-again", "Failed")
    assert "version exists" in status["reason"]
    assert "v1" in status["reason"]
    await touch(h, "v1-again")
    assert (await h.sim.kube.get(RELEASES, NS, "v1-again"))["status"] == status
    assert h.registry.tags[(f"{NS}/box", "v1")] == commit["digest"]


async def test_an_existing_version_stays_refused_on_re_reconcile(h: Harness) -> None:
    await stopped_once(h)
    theirs = h.registry.push(f"{h.registry.host}/{NS}/box:v2", config="someone else's")
    await release(h, "v2", "v2")
    status = await release_status(h, "v2", "Failed")
    await touch(h, "v2")
    assert (await h.sim.kube.get(RELEASES, NS, "v2"))["status"] == status
    assert h.registry.tags[(f"{NS}/box", "v2")] == theirs


async def test_a_succeeded_release_is_never_redone(h: Harness) -> None:
    first = await stopped_once(h)
    await release(h, "v1", "v1")
    status = await release_status(h, "v1", "Succeeded")
    await h.set_state("Running")
    await h.wait_phase("Running")
    await h.set_state("Stopped")
    await h.wait_phase("Stopped")
    await touch(h, "v1")
    assert (await h.sim.kube.get(RELEASES, NS, "v1"))["status"] == status
    assert h.registry.tags[(f"{NS}/box", "v1")] == first["digest"]
