"""The controller against the simulated cluster and a fake node-shim (a real gRPC server)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from app.kubeclient import DEVBOXES, INGRESSES, PODS, SECRETS, SERVICES, NotFound
from tests.controller.harness import NS, RUNTIME_IMAGE, Harness, harness
from tests.fixtures.simcluster import Sim
from tests.fixtures.waiting import until, until_async


@pytest.fixture
async def h(sim: Sim, tmp_path: Path) -> AsyncIterator[Harness]:
    async with harness(sim, tmp_path) as started:
        await started.create_runtime()
        await started.start_controller()
        yield started


def condition(obj: dict[str, object], kind: str) -> dict[str, str]:
    for cond in (obj.get("status") or {}).get("conditions") or []:  # type: ignore[attr-defined]
        if cond["type"] == kind:
            return dict(cond)
    raise AssertionError(f"no {kind} condition in {obj.get('status')}")


def commits(obj: dict[str, object]) -> list[dict[str, object]]:
    return list((obj.get("status") or {}).get("commits") or [])  # type: ignore[attr-defined]


async def test_create_runs_the_devbox_with_every_child_correct(h: Harness) -> None:
    ports = [{"name": "web", "port": 8080, "public": True}, {"name": "db", "port": 5432}]
    await h.create_devbox(ports=ports, env=[{"name": "LANG", "value": "en_US.UTF-8"}])
    devbox = await h.wait_phase("Running")
    uid = devbox["metadata"]["uid"]
    status = devbox["status"]
    assert "devbox.dev/controller" in devbox["metadata"]["finalizers"]
    assert status["observedGeneration"] == devbox["metadata"]["generation"]
    assert condition(devbox, "Ready")["status"] == "True"
    assert status["image"] == RUNTIME_IMAGE

    def owned(obj: dict[str, object]) -> bool:
        refs = obj["metadata"]["ownerReferences"]  # type: ignore[index]
        return bool(refs[0]["uid"] == uid and refs[0]["controller"])  # type: ignore[index]

    secret = await h.sim.kube.get(SECRETS, NS, "box-ssh")
    assert owned(secret)
    public = base64.b64decode(secret["data"]["authorized_keys"]).decode()
    assert public.startswith("ssh-ed25519 ")
    assert base64.b64decode(secret["data"]["id_ed25519"]).startswith(
        b"-----BEGIN OPENSSH PRIVATE KEY-----"
    )

    pod = await h.sim.kube.get(PODS, NS, "box")
    assert owned(pod)
    spec = pod["spec"]
    container = spec["containers"][0]
    assert spec["restartPolicy"] == "Never"
    assert container["image"] == RUNTIME_IMAGE
    assert container["command"] == ["/usr/sbin/sshd", "-D"]
    assert container["workingDir"] == "/home/dev"
    assert container["readinessProbe"]["tcpSocket"]["port"] == 2222
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}
    # Storage is reserved, never a limit: a kubelet evicting over a limit deletes the container
    # with every change since the last commit.
    assert container["resources"]["requests"] == {
        "cpu": "1",
        "memory": "2Gi",
        "ephemeral-storage": "10Gi",
    }
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["LANG"] == "en_US.UTF-8"  # the devbox overrides the runtime
    assert env["DEVBOX_USER"] == "dev"
    assert spec["volumes"][0]["secret"]["secretName"] == "box-ssh"
    assert pod["metadata"]["labels"]["devbox.dev/devbox"] == "box"

    ssh = await h.sim.kube.get(SERVICES, NS, "box-ssh")
    assert owned(ssh)
    assert ssh["spec"]["type"] == "NodePort"
    assert ssh["spec"]["ports"][0]["targetPort"] == 2222
    node_port = ssh["spec"]["ports"][0]["nodePort"]
    apps = await h.sim.kube.get(SERVICES, NS, "box")
    assert apps["spec"]["type"] == "ClusterIP"
    assert [p["port"] for p in apps["spec"]["ports"]] == [8080, 5432]
    ingress = await h.sim.kube.get(INGRESSES, NS, "box-port-web")
    host = ingress["spec"]["rules"][0]["host"]
    assert host.endswith(".devbox.test")
    with pytest.raises(NotFound):
        await h.sim.kube.get(INGRESSES, NS, "box-port-db")  # not public

    assert status["podName"] == "box"
    assert status["nodeName"] == pod["spec"]["nodeName"]
    assert status["ssh"]["host"] == "127.0.0.1"
    assert status["ssh"]["port"] == node_port
    assert status["ssh"]["user"] == "dev"
    assert status["ssh"]["hostKeyFingerprint"].startswith("SHA256:")
    urls = {p["name"]: p.get("url") for p in status["ports"]}
    assert urls == {"web": f"https://{host}", "db": None}


async def test_a_steady_devbox_causes_no_writes(h: Harness) -> None:
    await h.create_devbox(ports=[{"name": "web", "port": 8080, "public": True}])
    await h.wait_phase("Running")
    await asyncio.sleep(0.5)  # let the last events settle
    before = h.sim.resource_version
    writes = h.controller.kube.writes  # type: ignore[union-attr]
    # Something unrelated changes: the controller looks again and must find nothing to do.
    await h.sim.kube.patch(DEVBOXES, NS, "box", {"metadata": {"labels": {"touched": "yes"}}})
    await asyncio.sleep(1.5)
    assert h.controller.kube.writes == writes  # type: ignore[union-attr]
    assert h.sim.resource_version == before + 1  # only our label patch


async def test_stop_commits_then_deletes_the_pod_and_start_runs_the_commit(h: Harness) -> None:
    await h.create_devbox()
    await h.wait_phase("Running")
    pod = await h.pod()
    assert pod is not None
    container_id = pod["status"]["containerStatuses"][0]["containerID"].split("://")[1]
    await h.set_state("Stopped")
    devbox = await h.wait_phase("Stopped")
    assert await h.pod() is None
    [record] = commits(devbox)
    assert record["status"] == "Succeeded"
    assert record["mode"] == "Stop"
    assert str(record["image"]).startswith(f"{h.registry.host}/{NS}/box:")
    assert str(record["digest"]).startswith("sha256:")
    assert record["sizeBytes"] == 1234
    assert record["layers"] == 3
    assert devbox["status"]["image"] == record["image"]
    assert condition(devbox, "Committed")["reason"] == "CommitSucceeded"
    [call] = h.shim.calls.commits
    assert call.container_id == container_id
    assert call.target_image == record["image"]
    assert call.mode == 1  # COMMIT_MODE_STOP
    assert call.request_id == record["requestId"]

    await h.set_state("Running")
    await h.wait_phase("Running")
    pod = await h.pod()
    assert pod is not None
    assert pod["spec"]["containers"][0]["image"] == record["image"]


@pytest.mark.parametrize(
    "code",
    # UNAVAILABLE is what the real node-shim answers when the registry is down: with the
    # failed step in its trailing metadata it is a failed commit, not a lost node-shim.
    [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE],
    ids=["internal", "registry-down"],
)
async def test_commit_failure_keeps_the_pod_and_retries(h: Harness, code: grpc.StatusCode) -> None:
    h.shim.mode = "fail"
    h.shim.failure_code = code
    await h.create_devbox()
    await h.wait_phase("Running")
    await h.set_state("Stopped")

    async def failed_twice() -> dict[str, object] | None:
        obj = await h.devbox()
        failed = [c for c in commits(obj) if c["status"] == "Failed"]
        return obj if len(failed) >= 2 else None

    devbox = await until_async(failed_twice, 10, "two failed commits")
    assert devbox["status"]["phase"] == "Stopping"
    assert await h.pod() is not None  # the user's container is kept
    failed = commits(devbox)[0]
    assert "registry answered 500" in str(failed["reason"])
    committed = condition(devbox, "Committed")
    assert committed["status"] == "False"
    assert committed["reason"] == "CommitFailed"
    assert "the pod is kept" in committed["message"]

    h.shim.mode = "succeed"
    devbox = await h.wait_phase("Stopped", within=15)
    assert commits(devbox)[-1]["status"] == "Succeeded"
    assert await h.pod() is None


async def test_starting_again_cancels_a_failing_stop(h: Harness) -> None:
    h.shim.mode = "fail"
    await h.create_devbox()
    await h.wait_phase("Running")
    first_pod = await h.pod()
    await h.set_state("Stopped")
    await until_async(lambda: _has_failed_commit(h), 10, "a failed commit")
    await h.set_state("Running")
    await h.wait_phase("Running")
    pod = await h.pod()
    assert pod is not None
    assert first_pod is not None
    assert pod["metadata"]["uid"] == first_pod["metadata"]["uid"]  # same container, nothing lost


async def _has_failed_commit(h: Harness) -> bool:
    return any(c["status"] == "Failed" for c in commits(await h.devbox()))


async def test_delete_removes_children_then_the_devbox(h: Harness) -> None:
    await h.create_devbox(ports=[{"name": "web", "port": 8080, "public": True}])
    await h.wait_phase("Running")
    await h.sim.kube.delete(DEVBOXES, NS, "box")

    await h.wait_gone("devbox deleted")
    assert await h.pod() is None
    for kind, name in ((SERVICES, "box-ssh"), (SERVICES, "box"), (SECRETS, "box-ssh")):
        with pytest.raises(NotFound):
            await h.sim.kube.get(kind, NS, name)


async def test_delete_waits_for_a_commit_in_flight_then_finishes(h: Harness) -> None:
    h.shim.mode = "hang"
    await h.create_devbox()
    await h.wait_phase("Running")
    await h.set_state("Stopped")
    await until(lambda: h.shim.calls.started, 10, "commit started")
    await h.sim.kube.delete(DEVBOXES, NS, "box")
    devbox = await h.wait_phase("Deleting")
    assert commits(devbox)[-1]["status"] == "Committing"
    h.shim.release()

    await h.wait_gone("devbox deleted after the commit")
    assert len(h.shim.calls.started) == 1


async def test_a_pod_whose_image_cannot_be_pulled_fails_with_a_reason(h: Harness) -> None:
    await h.create_runtime(image="registry.example.invalid/nope:1", name="broken")
    await h.create_devbox(runtime="broken")

    async def pull_failed() -> dict[str, object] | None:
        obj = await h.devbox()
        failed = (obj.get("status") or {}).get("phase") == "Failed"
        return obj if failed and condition(obj, "Ready")["reason"] != "RuntimeNotFound" else None

    devbox = await until_async(pull_failed, 10, "Failed because of the image")
    ready = condition(devbox, "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] in ("ErrImagePull", "ImagePullBackOff")
    assert "cannot pull image registry.example.invalid/nope:1" in ready["message"]


async def test_a_missing_runtime_is_reported(h: Harness) -> None:
    await h.create_devbox(runtime="nope")
    devbox = await h.wait_phase("Failed")
    assert condition(devbox, "Ready")["reason"] == "RuntimeNotFound"
    await h.create_runtime(name="nope")
    await h.wait_phase("Running")


async def test_a_scheduled_stop_commits_and_stops_at_its_time(h: Harness) -> None:
    from datetime import UTC, datetime, timedelta

    stop_at = (datetime.now(UTC) + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    await h.create_devbox(autoStop={"stopAt": stop_at})
    await h.wait_phase("Running")
    devbox = await h.wait_phase("Stopped", within=10)
    assert devbox["spec"]["state"] == "Stopped"
    assert "stopAt" not in devbox["spec"].get("autoStop", {})
    assert condition(devbox, "AutoStopped")["reason"] == "ScheduledStop"
    assert commits(devbox)[-1]["status"] == "Succeeded"
    await h.set_state("Running")
    devbox = await h.wait_phase("Running")
    assert "AutoStopped" not in {c["type"] for c in devbox["status"]["conditions"]}


async def test_an_idle_devbox_is_stopped_after_its_timeout(h: Harness) -> None:
    await h.create_devbox(autoStop={"idleTimeoutSeconds": 1})
    await h.wait_phase("Running")
    devbox = await h.wait_phase("Stopped", within=10)
    assert condition(devbox, "AutoStopped")["reason"] == "IdleTimeout"


async def test_transitions_are_recorded_as_events_and_metrics(h: Harness) -> None:
    from prometheus_client import REGISTRY

    from app.kubeclient import EVENTS

    def sample(name: str, labels: dict[str, str] | None = None) -> float:
        return REGISTRY.get_sample_value(name, labels or {}) or 0.0

    commits_before = sample("devbox_commit_duration_seconds_count")
    starts_before = sample("devbox_start_duration_seconds_count")
    await h.create_devbox()
    await h.wait_phase("Running")
    await h.set_state("Stopped")
    await h.wait_phase("Stopped")

    async def reasons() -> list[str] | None:
        items, _ = await h.sim.kube.list_objects(EVENTS, NS)
        found = [e["reason"] for e in items if e["involvedObject"]["name"] == "box"]
        return found if "Stopped" in found else None

    found = await until_async(reasons, 5, "a Stopped event")
    for reason in ("Starting", "Running", "Stopping", "Committed", "Stopped"):
        assert reason in found
    assert sample("devbox_commit_duration_seconds_count") == commits_before + 1
    assert sample("devbox_start_duration_seconds_count") == starts_before + 1
    assert sample("devbox_devboxes", {"phase": "Stopped"}) == 1
    assert sample("devbox_controller_reconciles_total", {"result": "ok"}) > 0


async def test_deleting_without_saving_abandons_the_commit_in_flight(h: Harness) -> None:
    h.shim.mode = "hang"
    await h.create_devbox()
    await h.wait_phase("Running")
    await h.set_state("Stopped")
    await until(lambda: h.shim.calls.started, 10, "commit started")
    await h.sim.kube.patch(
        DEVBOXES, NS, "box", {"metadata": {"annotations": {"devbox.dev/abandon-changes": "true"}}}
    )
    await h.sim.kube.delete(DEVBOXES, NS, "box")

    await h.wait_gone("devbox deleted without waiting for the commit")
    assert await h.pod() is None


async def test_tunnel_mode_uses_a_cluster_ip_ssh_service_and_no_node_port(h: Harness) -> None:
    await h.create_devbox(networkMode="Tunnel")
    devbox = await h.wait_phase("Running")
    ssh = await h.sim.kube.get(SERVICES, NS, "box-ssh")
    assert ssh["spec"]["type"] == "ClusterIP"
    assert "host" not in devbox["status"]["ssh"]
    assert devbox["status"]["ssh"]["user"] == "dev"


async def test_the_ssh_key_and_public_url_survive_stop_and_start(h: Harness) -> None:
    await h.create_devbox(ports=[{"name": "web", "port": 8080, "public": True}])
    first = await h.wait_phase("Running")
    key = (await h.sim.kube.get(SECRETS, NS, "box-ssh"))["data"]["id_ed25519"]
    await h.set_state("Stopped")
    await h.wait_phase("Stopped")
    await h.set_state("Running")
    again = await h.wait_phase("Running")
    assert (await h.sim.kube.get(SECRETS, NS, "box-ssh"))["data"]["id_ed25519"] == key
    assert again["status"]["ports"] == first["status"]["ports"]


async def test_restore_starts_from_an_earlier_commit(h: Harness) -> None:
    await h.create_devbox()
    await h.wait_phase("Running")
    images = []
    for _ in range(2):
        await h.set_state("Stopped")
        devbox = await h.wait_phase("Stopped")
        images.append(commits(devbox)[-1]["image"])
        await h.set_state("Running")
        await h.wait_phase("Running")
    await h.set_state("Stopped")
    devbox = await h.wait_phase("Stopped")
    first = commits(devbox)[0]
    await h.sim.kube.patch(
        DEVBOXES, NS, "box", {"spec": {"state": "Running", "restoreCommit": first["id"]}}
    )
    devbox = await h.wait_phase("Running")
    pod = await h.pod()
    assert pod is not None
    assert pod["spec"]["containers"][0]["image"] == images[0]
    assert devbox["status"]["image"] == images[0]
    records = commits(devbox)
    assert [r["mode"] for r in records] == ["Stop", "Stop", "Stop", "Restore"]  # later kept
    assert records[-1]["restoredFrom"] == first["id"]
    assert records[-1]["image"] == images[0]


async def test_after_a_restore_the_next_commit_wins(h: Harness) -> None:
    """A restore is applied once: restore → run → stop (new commit) → start runs the new
    commit, also after a controller restart."""
    await h.create_devbox()
    await h.wait_phase("Running")
    await h.set_state("Stopped")
    first = commits(await h.wait_phase("Stopped"))[0]
    await h.set_state("Running")
    await h.wait_phase("Running")
    await h.set_state("Stopped")
    await h.wait_phase("Stopped")
    await h.sim.kube.patch(
        DEVBOXES, NS, "box", {"spec": {"state": "Running", "restoreCommit": first["id"]}}
    )
    devbox = await h.wait_phase("Running")
    assert devbox["status"]["image"] == first["image"]
    await h.set_state("Stopped")
    devbox = await h.wait_phase("Stopped")
    newest = commits(devbox)[-1]
    assert newest["mode"] == "Stop"
    assert newest["status"] == "Succeeded"
    await h.stop_controller()  # a restart must neither re-apply the restore nor forget it
    await h.start_controller()
    await h.set_state("Running")
    devbox = await h.wait_phase("Running")
    pod = await h.pod()
    assert pod is not None
    assert pod["spec"]["containers"][0]["image"] == newest["image"]
    assert devbox["status"]["image"] == newest["image"]
    assert [r["mode"] for r in commits(devbox)].count("Restore") == 1


async def test_a_restore_asked_for_while_running_is_not_applied(h: Harness) -> None:
    await h.create_devbox()
    await h.wait_phase("Running")
    await h.set_state("Stopped")
    first = commits(await h.wait_phase("Stopped"))[0]
    await h.set_state("Running")
    await h.wait_phase("Running")
    pod = await h.pod()
    await h.sim.kube.patch(DEVBOXES, NS, "box", {"spec": {"restoreCommit": first["id"]}})

    async def refused() -> dict[str, object] | None:
        obj = await h.devbox()
        conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
        restored = conds.get("Restored") or {}
        return obj if restored.get("reason") == "RestoreNotApplied" else None

    devbox = await until_async(refused, 10, "a condition says the restore was not applied")
    assert "Stopped" in condition(devbox, "Restored")["message"]
    assert [r["mode"] for r in commits(devbox)] == ["Stop"]
    assert devbox["status"]["phase"] == "Running"
    again = await h.pod()
    assert again is not None
    assert pod is not None
    assert again["metadata"]["uid"] == pod["metadata"]["uid"]  # the running pod is untouched


async def test_restart_commits_then_runs_a_new_pod_from_the_commit(h: Harness) -> None:
    from datetime import UTC, datetime

    await h.create_devbox()
    await h.wait_phase("Running")
    old = await h.pod()
    assert old is not None
    asked = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    await h.sim.kube.patch(
        DEVBOXES,
        NS,
        "box",
        {"metadata": {"annotations": {"devbox.dev/restart-requested-at": asked}}},
    )

    async def new_pod() -> dict[str, object] | None:
        pod = await h.pod()
        fresh = pod is not None and pod["metadata"]["uid"] != old["metadata"]["uid"]
        return pod if fresh else None

    pod = await until_async(new_pod, 10, "a new pod")
    devbox = await h.wait_phase("Running")
    [record] = commits(devbox)
    assert record["status"] == "Succeeded"
    assert pod["spec"]["containers"][0]["image"] == record["image"]  # type: ignore[index]
    await asyncio.sleep(0.5)
    assert len(commits(await h.devbox())) == 1  # done once, not again


async def test_a_child_name_taken_by_a_foreign_object_is_reported_not_adopted(
    h: Harness,
) -> None:
    await h.sim.kube.create(
        PODS,
        NS,
        {"metadata": {"name": "box"}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}},
    )
    await h.create_devbox()

    async def conflict() -> dict[str, object] | None:
        obj = await h.devbox()
        if (obj.get("status") or {}).get("phase") != "Failed":
            return None
        return obj if condition(obj, "Ready")["reason"] == "NameConflict" else None

    devbox = await until_async(conflict, 10, "NameConflict")
    assert "Pod default/box exists and is not owned" in condition(devbox, "Ready")["message"]
    pod = await h.pod()
    assert pod is not None
    assert "ownerReferences" not in pod["metadata"]


async def test_a_devbox_whose_runtime_was_deleted_can_still_be_stopped_and_saved(
    h: Harness,
) -> None:
    from app.kubeclient import RUNTIMES

    await h.create_devbox()
    await h.wait_phase("Running")
    await h.sim.kube.delete(RUNTIMES, NS, "python")
    await h.set_state("Stopped")
    devbox = await h.wait_phase("Stopped")
    assert commits(devbox)[-1]["status"] == "Succeeded"
    # Starting needs the runtime's command, user and SSH port: refused with the reason.
    await h.set_state("Running")
    devbox = await h.wait_phase("Failed")
    assert condition(devbox, "Ready")["reason"] == "RuntimeNotFound"
    assert devbox["status"]["image"] == commits(devbox)[-1]["image"]


async def test_a_stopping_devbox_whose_saved_pod_is_terminating_causes_no_writes(
    h: Harness,
) -> None:
    await h.create_devbox()
    await h.wait_phase("Running")
    # A finalizer of someone else's keeps the committed pod terminating.
    await h.sim.kube.patch(PODS, NS, "box", {"metadata": {"finalizers": ["test.dev/hold"]}})
    await h.set_state("Stopped")

    async def terminating() -> dict[str, object] | None:
        pod = await h.pod()
        return pod if pod is not None and pod["metadata"].get("deletionTimestamp") else None

    await until_async(terminating, 10, "the saved pod terminating")
    await h.wait_phase("Stopping")
    await asyncio.sleep(0.5)  # let the last events settle
    writes = h.controller.kube.writes  # type: ignore[union-attr]
    # Events on the terminating pod make the controller look again; it must find nothing to do.
    for n in range(3):
        await h.sim.kube.patch(PODS, NS, "box", {"metadata": {"labels": {"touched": str(n)}}})
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)
    assert h.controller.kube.writes == writes  # type: ignore[union-attr]
    assert (await h.devbox())["status"]["phase"] == "Stopping"
    await h.sim.kube.patch(PODS, NS, "box", {"metadata": {"finalizers": None}})
    await h.wait_phase("Stopped")


async def test_env_or_resources_changed_while_running_ask_for_a_restart(h: Harness) -> None:
    await h.create_devbox()
    await h.wait_phase("Running")
    assert condition(await h.devbox(), "SpecApplied")["status"] == "True"
    await h.sim.kube.patch(
        DEVBOXES, NS, "box", {"spec": {"env": [{"name": "EDITOR", "value": "vim"}]}}
    )

    async def flagged() -> dict[str, str] | None:
        cond = condition(await h.devbox(), "SpecApplied")
        return cond if cond["status"] == "False" else None

    cond = await until_async(flagged, 10, "SpecApplied False")
    assert cond["reason"] == "RestartRequired"
    assert "env" in cond["message"]
    assert "restart" in cond["message"]
    assert (await h.devbox())["status"]["phase"] == "Running"  # the pod was not killed

    await h.sim.kube.patch(
        DEVBOXES,
        NS,
        "box",
        {"metadata": {"annotations": {"devbox.dev/restart-requested-at": now_rfc3339()}}},
    )

    async def applied() -> bool:
        obj = await h.devbox()
        return (
            obj["status"].get("phase") == "Running"
            and condition(obj, "SpecApplied")["status"] == "True"
        )

    await until_async(applied, 20, "restarted with the new env")
    pod = await h.pod()
    assert pod is not None
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["EDITOR"] == "vim"


def now_rfc3339() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
