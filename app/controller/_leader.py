"""Leader election with a ``coordination.k8s.io/v1`` Lease, as client-go's leaderelection.

Only the holder of the Lease runs the controller.  The holder renews the Lease every
``retry_period``; a candidate takes it over only when the record has not changed for
``lease_duration`` *as observed on its own clock* (no clock comparison between machines).
A leader that cannot renew within ``renew_deadline``, or finds another holder in the Lease,
cancels its work at once — before anyone else can have acquired it (renew_deadline <
lease_duration).  Each acquire/renew attempt is bounded (``asyncio.timeout``) by what is left of
the renew deadline, so a request that hangs in the API server cannot keep a leader acting, and
a renewal counts from the moment its request was sent (the other replicas cannot have observed
the renewed record earlier).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from app.kubeclient import JSON, LEASES, Conflict, Kube, KubeError, NotFound

log = logging.getLogger(__name__)


def _micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Runs a coroutine only while holding a Lease."""

    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("need retry_period < renew_deadline < lease_duration")
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.leading = False
        self.terms = 0
        """How many times this candidate became leader."""
        self._observed: tuple[Any, float] | None = None

    async def run(self, lead: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Forever: acquire the Lease, run ``lead()`` while holding it, cancel it on loss."""
        while True:
            renewed_at = await self._acquire()
            self.leading = True
            self.terms += 1
            log.info("leader election: %s leads %s/%s", self.identity, self.namespace, self.name)
            work = asyncio.create_task(lead(), name="leader work")
            renew = asyncio.create_task(self._keep_renewing(renewed_at), name="lease renewal")
            try:
                done, _ = await asyncio.wait({work, renew}, return_when=asyncio.FIRST_COMPLETED)
                if work in done:
                    work.result()  # raise its error; a normal end ends the election
                    return
            finally:
                self.leading = False
                for task in (work, renew):
                    task.cancel()
                for task in (work, renew):
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            log.warning("leader election: %s lost the lease; stopped acting", self.identity)

    async def _acquire(self) -> float:
        """Wait until this candidate holds the Lease; the loop time its winning request was
        sent (when its term's renew deadline starts)."""
        loop = asyncio.get_running_loop()
        while True:
            sent = loop.time()
            try:
                async with asyncio.timeout(self.renew_deadline):
                    if await self._try_acquire_or_renew():
                        return sent
            except KubeError as exc:
                log.info("leader election: %s", exc)
            except TimeoutError:
                log.info("leader election: no answer within %ss", self.renew_deadline)
            await asyncio.sleep(self.retry_period)

    async def _keep_renewing(self, last_renewal: float) -> None:
        """Renew every ``retry_period``; return (the leader stops acting) when another holds
        the Lease or ``renew_deadline`` passed since the last renewal was sent."""
        loop = asyncio.get_running_loop()
        while True:
            left = last_renewal + self.renew_deadline - loop.time()
            await asyncio.sleep(max(0.0, min(self.retry_period, left)))
            left = last_renewal + self.renew_deadline - loop.time()
            if left <= 0:
                log.warning("leader election: no renewal within %ss", self.renew_deadline)
                return
            sent = loop.time()
            try:
                async with asyncio.timeout(left):
                    if await self._try_acquire_or_renew():
                        last_renewal = sent
                        continue
                return  # someone else holds it
            except KubeError as exc:
                log.info("leader election: renewal failed: %s", exc)
            except TimeoutError:
                log.warning("leader election: renewal hung past the renew deadline")
                return

    async def _try_acquire_or_renew(self) -> bool:
        now = _micro_time()
        loop = asyncio.get_running_loop()
        try:
            lease = await self.kube.get(LEASES, self.namespace, self.name)
        except NotFound:
            body: JSON = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, now, 0),
            }
            try:
                await self.kube.create(LEASES, self.namespace, body)
            except Conflict:
                return False
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        record = (holder, spec.get("renewTime"), spec.get("leaseTransitions"))
        if self._observed is None or self._observed[0] != record:
            self._observed = (record, loop.time())
        expired = loop.time() - self._observed[1] > float(
            spec.get("leaseDurationSeconds") or self.lease_duration
        )
        if holder and holder != self.identity and not expired:
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        acquire = spec.get("acquireTime") or now
        if holder != self.identity:
            transitions += 1
            acquire = now
        lease["spec"] = self._spec(acquire, now, transitions)
        try:
            await self.kube.replace(LEASES, self.namespace, self.name, lease)
        except Conflict:
            return False
        self._observed = ((self.identity, now, transitions), loop.time())
        return True

    def _spec(self, acquire: str, renew: str, transitions: int) -> JSON:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": acquire,
            "renewTime": renew,
            "leaseTransitions": transitions,
        }
