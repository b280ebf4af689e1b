"""Two replicas with leader election: only one acts; a replica that loses the lease stops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from app.controller._leader import LeaderElector
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
