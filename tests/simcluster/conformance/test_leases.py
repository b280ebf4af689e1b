"""coordination.k8s.io/v1 Leases, as leader election uses them."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client import ApiException

from tests.simcluster.conformance.support import MERGE, assert_status, rv


def micro_now(offset: float = 0) -> dt.datetime:
    """Now (UTC) with a non-zero microsecond part, as MicroTime keeps microseconds."""
    value = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)
    return value.replace(microsecond=value.microsecond or 1)


async def test_lease_create_read_update(api: client.ApiClient, namespace: str) -> None:
    leases = client.CoordinationV1Api(api)
    acquired = micro_now()
    body = client.V1Lease(
        metadata=client.V1ObjectMeta(name="leader"),
        spec=client.V1LeaseSpec(
            holder_identity="controller-a",
            lease_duration_seconds=15,
            acquire_time=acquired,
            renew_time=acquired,
            lease_transitions=0,
        ),
    )
    created = await leases.create_namespaced_lease(namespace, body)
    assert created.spec.holder_identity == "controller-a"
    assert created.spec.lease_duration_seconds == 15
    assert created.spec.renew_time == acquired
    assert created.spec.acquire_time == acquired
    assert created.spec.lease_transitions == 0

    got = await leases.read_namespaced_lease("leader", namespace)
    assert got.spec.renew_time == acquired

    renewed_at = micro_now(1)
    got.spec.renew_time = renewed_at
    renewed = await leases.replace_namespaced_lease("leader", namespace, got)
    assert renewed.spec.renew_time == renewed_at
    assert renewed.spec.holder_identity == "controller-a"
    assert rv(renewed) > rv(created)

    # another candidate that read the lease before the renewal loses the race
    created.spec.holder_identity = "controller-b"
    with pytest.raises(ApiException) as info:
        await leases.replace_namespaced_lease("leader", namespace, created)
    assert_status(info.value, 409, "Conflict")

    taken_at = micro_now(2)
    renewed.spec.holder_identity = "controller-b"
    renewed.spec.acquire_time = taken_at
    renewed.spec.renew_time = taken_at
    renewed.spec.lease_transitions = 1
    taken = await leases.replace_namespaced_lease("leader", namespace, renewed)
    assert taken.spec.holder_identity == "controller-b"
    assert taken.spec.lease_transitions == 1
    assert taken.spec.acquire_time == taken_at

    listed = await leases.list_namespaced_lease(namespace)
    assert [lease.metadata.name for lease in listed.items] == ["leader"]


async def test_lease_renew_time_is_serialized_with_microseconds(
    api: client.ApiClient, namespace: str
) -> None:
    leases = client.CoordinationV1Api(api)
    await leases.create_namespaced_lease(
        namespace, {"metadata": {"name": "l"}, "spec": {"holderIdentity": "x"}}
    )
    patched = await leases.patch_namespaced_lease(
        "l",
        namespace,
        {"spec": {"renewTime": "2030-01-02T03:04:05.123456Z"}},
        _content_type=MERGE,
    )
    assert patched.spec.renew_time == dt.datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC)
    raw = await leases.read_namespaced_lease("l", namespace, _preload_content=False)
    body = json.loads(await raw.read())
    assert body["spec"]["renewTime"] == "2030-01-02T03:04:05.123456Z"
    assert body["spec"]["holderIdentity"] == "x"
