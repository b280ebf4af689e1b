"""The node-shim client authenticates, streams a commit, and translates gRPC errors."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from devbox_node_shim.api import nodeshim_pb2 as pb

from app.nodeshim_client import NodeShimClient, NodeShimError, NodeShimUnavailable
from tests.fixtures.fake_nodeshim import TOKEN, FakeNodeShim
from tests.fixtures.waiting import until


@pytest.fixture
async def shim() -> FakeNodeShim:
    server = FakeNodeShim()
    await server.start()
    yield server  # type: ignore[misc]
    await server.stop()


def request(request_id: str = "r1") -> pb.CommitRequest:
    return pb.CommitRequest(
        request_id=request_id,
        container_id="c1",
        target_image="registry.test/ns/box:c1",
        mode=pb.COMMIT_MODE_STOP,
    )


async def test_commit_returns_the_result(shim: FakeNodeShim) -> None:
    client = NodeShimClient(port=shim.port, token=TOKEN)
    steps: list[str] = []
    try:
        outcome = await client.commit(
            "127.0.0.1", request(), on_progress=lambda p: steps.append(p.step)
        )
    finally:
        await client.close()
    assert outcome.image == "registry.test/ns/box:c1"
    assert outcome.digest.startswith("sha256:")
    assert outcome.layers == 3
    assert steps == ["diff"]


async def test_a_wrong_token_is_refused_as_unauthenticated(shim: FakeNodeShim) -> None:
    client = NodeShimClient(port=shim.port, token="wrong")
    try:
        with pytest.raises(NodeShimError) as caught:
            await client.commit("127.0.0.1", request())
    finally:
        await client.close()
    assert caught.value.code == "UNAUTHENTICATED"
    assert not caught.value.temporary
    assert shim.calls.started == []


async def test_a_failed_commit_carries_the_node_shims_message(shim: FakeNodeShim) -> None:
    shim.mode = "fail"
    client = NodeShimClient(port=shim.port, token=TOKEN)
    try:
        with pytest.raises(NodeShimError, match="registry answered 500"):
            await client.commit("127.0.0.1", request())
    finally:
        await client.close()


async def test_a_commit_that_failed_on_a_registry_that_is_down_is_not_temporary(
    shim: FakeNodeShim,
) -> None:
    """UNAVAILABLE with the failed step (the registry, not the node-shim, is down) is a failed
    commit to record; only an UNAVAILABLE without it means the node-shim was lost."""
    shim.mode = "fail"
    shim.failure = "push: the registry is unavailable"
    shim.failure_code = grpc.StatusCode.UNAVAILABLE
    client = NodeShimClient(port=shim.port, token=TOKEN)
    try:
        with pytest.raises(NodeShimError) as caught:
            await client.commit("127.0.0.1", request())
    finally:
        await client.close()
    assert not isinstance(caught.value, NodeShimUnavailable)
    assert caught.value.code == "UNAVAILABLE"
    assert not caught.value.temporary
    assert "registry is unavailable" in caught.value.message


async def test_an_unreachable_node_shim_is_temporary() -> None:
    client = NodeShimClient(port=9, token=TOKEN)
    try:
        with pytest.raises(NodeShimUnavailable) as caught:
            await client.commit("127.0.0.1", request(), deadline=5)
    finally:
        await client.close()
    assert caught.value.temporary


async def test_a_second_request_id_for_a_busy_container_is_refused(shim: FakeNodeShim) -> None:
    """The API contract the controller relies on: one commit per container at a time; the
    same request id attaches to the running commit instead of starting another."""
    shim.mode = "hang"
    client = NodeShimClient(port=shim.port, token=TOKEN)
    try:
        first = asyncio.create_task(client.commit("127.0.0.1", request("r1"), deadline=10))
        await until(lambda: shim.calls.started, 5, "first commit started")
        with pytest.raises(NodeShimError) as caught:
            await client.commit("127.0.0.1", request("r2"), deadline=5)
        assert caught.value.code == "FAILED_PRECONDITION"
        assert not caught.value.temporary
        again = asyncio.create_task(client.commit("127.0.0.1", request("r1"), deadline=10))
        await until(lambda: len(shim.calls.commits) >= 3, 5, "re-attached")
        shim.release()
        outcomes = await asyncio.wait_for(asyncio.gather(first, again), 10)
    finally:
        await client.close()
    assert outcomes[0].digest == outcomes[1].digest
    assert shim.calls.started == ["r1"]
    assert shim.calls.refused == ["r2"]
    assert shim.calls.concurrent_per_container == 1
