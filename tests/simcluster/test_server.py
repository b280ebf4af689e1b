"""Behaviour of the simulation itself (not of the Kubernetes API it serves): persistence
across restarts, image pulls that fail like on a real node, and the generated kubeconfig."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import yaml

from app.simcluster.server import SimCluster


def _wait_for(predicate, within: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_state_survives_a_restart_and_old_watches_get_410(tmp_path: Path) -> None:
    state = tmp_path / "cluster.json"
    first = SimCluster(state_file=state)
    first.start_in_thread()
    try:
        http = httpx.Client(base_url=first.url)
        created = http.post(
            "/api/v1/namespaces/default/configmaps",
            json={"metadata": {"name": "kept"}, "data": {"a": "b"}},
        ).json()
        rv = created["metadata"]["resourceVersion"]
    finally:
        first.stop_thread()
    assert state.exists()

    second = SimCluster(state_file=state)
    second.start_in_thread()
    try:
        http = httpx.Client(base_url=second.url)
        kept = http.get("/api/v1/namespaces/default/configmaps/kept").json()
        assert kept["data"] == {"a": "b"}
        assert kept["metadata"]["uid"] == created["metadata"]["uid"]
        again = http.post(
            "/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "new"}}
        ).json()
        assert int(again["metadata"]["resourceVersion"]) > int(rv)
        before_restart = int(rv) - 1  # history is not persisted: older versions are gone
        stale = http.get(
            "/api/v1/namespaces/default/configmaps?watch=1"
            f"&resourceVersion={before_restart}&timeoutSeconds=1"
        )
        assert stale.status_code == 200
        assert '"code":410' in stale.text.replace(" ", "")
    finally:
        second.stop_thread()


def test_a_corrupt_state_file_is_set_aside_and_the_cluster_starts_empty(tmp_path: Path) -> None:
    state = tmp_path / "cluster.json"
    state.write_text("{not json")
    cluster = SimCluster(state_file=state)
    cluster.start_in_thread()
    try:
        reply = httpx.get(f"{cluster.url}/api/v1/namespaces/default")
        assert reply.status_code == 200
    finally:
        cluster.stop_thread()
    assert (tmp_path / "cluster.broken").read_text() == "{not json"


def test_unresolvable_image_fails_to_pull_like_a_real_node() -> None:
    cluster = SimCluster()
    cluster.start_in_thread()
    try:
        http = httpx.Client(base_url=cluster.url)
        http.post(
            "/api/v1/namespaces/default/pods",
            json={
                "metadata": {"name": "bad-image"},
                "spec": {"containers": [{"name": "c", "image": "registry.invalid/nope:1"}]},
            },
        ).raise_for_status()

        def waiting_reason() -> str | None:
            pod = http.get("/api/v1/namespaces/default/pods/bad-image").json()
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            waiting = (statuses[0].get("state") or {}).get("waiting") if statuses else None
            return (
                waiting.get("reason")
                if waiting and waiting["reason"] == "ImagePullBackOff"
                else None
            )

        assert _wait_for(waiting_reason) == "ImagePullBackOff"
        pod = http.get("/api/v1/namespaces/default/pods/bad-image").json()
        assert pod["status"]["phase"] == "Pending"
        ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "False"
    finally:
        cluster.stop_thread()


def test_written_kubeconfig_is_private_and_points_at_the_server(tmp_path: Path) -> None:
    cluster = SimCluster()
    cluster.start_in_thread()
    try:
        path = cluster.write_kubeconfig(tmp_path / "kubeconfig")
        assert path.stat().st_mode & 0o777 == 0o600
        config = yaml.safe_load(path.read_text())
        assert config["clusters"][0]["cluster"]["server"] == cluster.url
    finally:
        cluster.stop_thread()


async def test_cluster_runs_inside_the_callers_event_loop() -> None:
    cluster = SimCluster(port=0)
    await cluster.start()
    try:
        async with httpx.AsyncClient(base_url=cluster.url) as http:
            reply = await http.get("/api/v1/nodes")
            assert [n["metadata"]["name"] for n in reply.json()["items"]] == ["sim-node-1"]
    finally:
        await cluster.stop()
    with pytest.raises(httpx.ConnectError):
        await asyncio.wait_for(httpx.AsyncClient().get(f"{cluster.url}/api"), 5)


def test_keep_alive_connections_have_nagle_disabled() -> None:
    """Every accepted connection gets TCP_NODELAY (else each keep-alive reply waits ~40 ms)."""
    import socket

    cluster = SimCluster()
    cluster.start_in_thread()
    try:
        with socket.create_connection((cluster.host, cluster.port)) as client:
            client.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
            client.recv(65536)

            def accepted_nodelay() -> list[int]:
                assert cluster._server is not None
                return [
                    connection.transport.get_extra_info("socket").getsockopt(
                        socket.IPPROTO_TCP, socket.TCP_NODELAY
                    )
                    for connection in cluster._server.server_state.connections
                ]

            flags = cluster.call(accepted_nodelay)
        assert flags
        assert all(flags)
    finally:
        cluster.stop_thread()
