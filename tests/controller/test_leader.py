"""Two replicas with leader election: only one acts; a replica that loses the lease stops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from app.controller._leader import LeaderElector
from app.kube import connect
from app.kubeclient import LEASES, Kube
from tests.fixtures.simcluster import Sim
from tests.fixtures.waiting import until


def elector(kube: Kube, identity: str) -> LeaderElector:
    return LeaderElector(
        kube,
        namespace="default",
        name="devbox-controller",
        identity=identity,
        lease_duration=1.0,
        renew_deadline=0.6,
        retry_period=0.1,
    )


class Replica:
    def __init__(self, kube: Kube, identity: str) -> None:
        self.elector = elector(kube, identity)
        self.acting = False
        self.terms_started = 0
        self.task: asyncio.Task[None] | None = None

    async def lead(self) -> None:
        self.acting = True
        self.terms_started += 1
        try:
            await asyncio.Event().wait()
        finally:
            self.acting = False

    def start(self) -> None:
        self.task = asyncio.create_task(self.elector.run(self.lead))

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


@contextlib.asynccontextmanager
async def replicas(sim: Sim) -> AsyncIterator[tuple[Replica, Replica]]:
    a, b = Replica(sim.kube, "a"), Replica(sim.kube, "b")
    a.start()
    await until(lambda: a.acting, 5, "a leads")
    b.start()
    try:
        yield a, b
    finally:
        await a.stop()
        await b.stop()


async def test_only_one_replica_acts(sim: Sim) -> None:
    async with replicas(sim) as (a, b):
        for _ in range(15):
            await asyncio.sleep(0.1)
            assert a.acting
            assert not b.acting
        lease = await sim.kube.get(LEASES, "default", "devbox-controller")
        assert lease["spec"]["holderIdentity"] == "a"


async def test_the_other_replica_takes_over_when_the_leader_dies(sim: Sim) -> None:
    async with replicas(sim) as (a, b):
        await a.stop()
        await until(lambda: b.acting, 5, "b takes over")
        lease = await sim.kube.get(LEASES, "default", "devbox-controller")
        assert lease["spec"]["holderIdentity"] == "b"
        assert lease["spec"]["leaseTransitions"] == 1


async def test_a_leader_that_loses_the_lease_stops_acting_at_once(sim: Sim) -> None:
    async with replicas(sim) as (a, b):
        await b.stop()
        lease = await sim.kube.get(LEASES, "default", "devbox-controller")
        lease["spec"]["holderIdentity"] = "intruder"
        await sim.kube.replace(LEASES, "default", "devbox-controller", lease)
        await until(lambda: not a.acting, 1.0, "a stops within one renewal")
        assert not b.acting


class StallingProxy:
    """A real HTTP proxy in front of the simulated cluster that can stall Lease updates (PUT):
    the request is held, never forwarded, until the test ends (a hung API server)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.stall_lease_updates = False
        self.stalled = 0
        self._release = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if self.stall_lease_updates and request.method == "PUT" and "/leases/" in request.path:
            self.stalled += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), 60)
            return web.Response(status=503, text="stalled")
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=await request.read(),
            timeout=aiohttp.ClientTimeout(total=10),
        ) as upstream:
            body = await upstream.read()
            return web.Response(
                status=upstream.status,
                body=body,
                content_type=upstream.content_type,
            )


async def test_a_leader_whose_renewal_hangs_stops_before_the_other_takes_over(sim: Sim) -> None:
    proxy = StallingProxy(sim.cluster.url)
    await proxy.start()
    api = await connect(url=proxy.url)
    timeline: list[tuple[str, str]] = []

    class Recording(Replica):
        async def lead(self) -> None:
            timeline.append((self.elector.identity, "start"))
            try:
                await super().lead()
            finally:
                timeline.append((self.elector.identity, "stop"))

    a, b = Recording(Kube(api), "a"), Recording(sim.kube, "b")
    try:
        a.start()
        await until(lambda: a.acting, 5, "a leads")
        b.start()
        await asyncio.sleep(0.3)
        assert not b.acting
        proxy.stall_lease_updates = True  # a's next renewal hangs in the API server
        await until(lambda: b.acting, 5, "b takes over")
        assert proxy.stalled >= 1
        assert not a.acting
        assert timeline.index(("a", "stop")) < timeline.index(("b", "start"))
        lease = await sim.kube.get(LEASES, "default", "devbox-controller")
        assert lease["spec"]["holderIdentity"] == "b"
    finally:
        await a.stop()
        await b.stop()
        await api.close()
        await proxy.stop()
