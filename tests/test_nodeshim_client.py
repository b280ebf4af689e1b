"""The node-shim client authenticates, streams a commit, and translates gRPC errors."""

from __future__ import annotations

import pytest
from devbox_node_shim.api import nodeshim_pb2 as pb

from app.nodeshim_client import NodeShimClient, NodeShimError, NodeShimUnavailable
from tests.fixtures.fake_nodeshim import TOKEN, FakeNodeShim


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


async def test_an_unreachable_node_shim_is_temporary() -> None:
    client = NodeShimClient(port=9, token=TOKEN)
    try:
        with pytest.raises(NodeShimUnavailable) as caught:
            await client.commit("127.0.0.1", request(), deadline=5)
    finally:
        await client.close()
    assert caught.value.temporary
