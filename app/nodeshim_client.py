"""Client of the node-shim's gRPC API (``node-shim/proto/devbox/nodeshim/v1``).

One channel per node address, reused; every call carries ``authorization: Bearer <token>``.
gRPC failures are translated into the tree below, with the status code kept:

::

    NodeShimError            any failed call; ``code`` (grpc.StatusCode name), ``temporary``
     └── NodeShimUnavailable the node-shim cannot be reached (UNAVAILABLE, DEADLINE_EXCEEDED)

A ``Commit`` that ran and failed carries the trailing metadata ``devbox-commit-failed-step``:
whatever its code (a registry that is down gives UNAVAILABLE), it is a ``NodeShimError`` with
``temporary`` false, so the controller records the failure instead of re-attaching forever.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc
from devbox_node_shim.api import FAILED_STEP_METADATA
from devbox_node_shim.api import nodeshim_pb2 as pb

SERVICE = "/devbox.nodeshim.v1.NodeShim/"
TEMPORARY_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED}
)


class NodeShimError(Exception):
    """A node-shim call failed."""

    def __init__(self, message: str, *, code: str = "UNKNOWN", temporary: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.temporary = temporary


class NodeShimUnavailable(NodeShimError):
    """The node-shim could not be reached."""


@dataclass
class CommitOutcome:
    """What a successful commit produced."""

    image: str
    digest: str
    size_bytes: int
    layers: int
    steps: dict[str, float] = field(default_factory=dict)


def _failed_step(exc: grpc.aio.AioRpcError) -> str | None:
    """The step a commit that ran and failed stopped at (the node-shim's trailing metadata)."""
    for key, value in exc.trailing_metadata() or ():
        if key == FAILED_STEP_METADATA:
            return value.decode() if isinstance(value, bytes) else str(value)
    return None


def _translate(exc: grpc.aio.AioRpcError, what: str) -> NodeShimError:
    code = exc.code()
    message = f"{what}: {code.name}: {exc.details() or ''}".rstrip(": ")
    if _failed_step(exc) is not None:
        # The commit ran and failed (e.g. UNAVAILABLE: its registry is down): a failure to
        # record and retry with a new commit, never a lost node-shim to re-attach to.
        return NodeShimError(message, code=code.name, temporary=False)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return NodeShimUnavailable(message, code=code.name, temporary=True)
    return NodeShimError(message, code=code.name, temporary=code in TEMPORARY_CODES)


class NodeShimClient:
    """Calls the node-shim on a node, by address."""

    def __init__(self, *, port: int, token: str, call_timeout: float = 10.0) -> None:
        self.port = port
        self.token = token
        self.call_timeout = call_timeout
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _channel(self, host: str) -> grpc.aio.Channel:
        target = f"{host}:{self.port}"
        channel = self._channels.get(target)
        if channel is None:
            channel = grpc.aio.insecure_channel(target)
            self._channels[target] = channel
        return channel

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)

    async def commit(
        self,
        host: str,
        request: pb.CommitRequest,
        *,
        on_progress: Callable[[pb.CommitProgress], None] | None = None,
        deadline: float | None = None,
    ) -> CommitOutcome:
        """Run (or attach to, by ``request.request_id``) a commit; its result."""
        call = self._channel(host).unary_stream(
            SERVICE + "Commit",
            request_serializer=pb.CommitRequest.SerializeToString,
            response_deserializer=pb.CommitEvent.FromString,
        )
        events: AsyncIterator[pb.CommitEvent] = call(
            request, metadata=self._metadata(), timeout=deadline
        )
        result: pb.CommitResult | None = None
        try:
            async for event in events:
                if event.HasField("progress") and on_progress is not None:
                    on_progress(event.progress)
                elif event.HasField("result"):
                    result = event.result
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, f"commit on {host}") from exc
        if result is None:
            raise NodeShimError(
                f"commit on {host}: the stream ended without a result", temporary=True
            )
        return CommitOutcome(
            image=result.image,
            digest=result.manifest_digest,
            size_bytes=result.total_size,
            layers=result.layer_count,
            steps={s.step: s.seconds for s in result.step_durations},
        )

    async def health(self, host: str) -> pb.HealthResponse:
        """Whether the node-shim on ``host`` serves."""
        call = self._channel(host).unary_unary(
            SERVICE + "Health",
            request_serializer=pb.HealthRequest.SerializeToString,
            response_deserializer=pb.HealthResponse.FromString,
        )
        try:
            response: pb.HealthResponse = await call(
                pb.HealthRequest(), metadata=self._metadata(), timeout=self.call_timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, f"health of {host}") from exc
        return response

    async def activity(
        self,
        host: str,
        container_id: str,
        port: int,
        *,
        writable_bytes: bool = True,
        deadline: float | None = None,
    ) -> pb.ContainerActivityResponse:
        """Whether the container runs, its ESTABLISHED connections on ``port`` and (unless
        ``writable_bytes`` is false: measuring walks the layer) its writable layer's size."""
        call = self._channel(host).unary_unary(
            SERVICE + "ContainerActivity",
            request_serializer=pb.ContainerActivityRequest.SerializeToString,
            response_deserializer=pb.ContainerActivityResponse.FromString,
        )
        request = pb.ContainerActivityRequest(
            container_id=container_id, port=port, skip_writable_bytes=not writable_bytes
        )
        try:
            response: pb.ContainerActivityResponse = await call(
                request, metadata=self._metadata(), timeout=deadline or self.call_timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, f"activity of container {container_id} on {host}") from exc
        return response

    async def delete_image(self, host: str, image: str, *, registry: bool = True) -> bool:
        """Delete ``image`` (and its registry tag); whether it existed."""
        call = self._channel(host).unary_unary(
            SERVICE + "DeleteImage",
            request_serializer=pb.DeleteImageRequest.SerializeToString,
            response_deserializer=pb.DeleteImageResponse.FromString,
        )
        try:
            response: pb.DeleteImageResponse = await call(
                pb.DeleteImageRequest(image=image, registry=registry),
                metadata=self._metadata(),
                timeout=self.call_timeout,
            )
        except grpc.aio.AioRpcError as exc:
            raise _translate(exc, f"delete image {image} on {host}") from exc
        return bool(response.deleted)

    async def close(self) -> None:
        """Close every channel."""
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
