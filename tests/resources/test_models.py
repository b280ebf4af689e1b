"""The resource models parse real objects, keep their constraints and dump what the API takes."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from app.resources import (
    Condition,
    ConditionStatus,
    Devbox,
    DevboxPhase,
    DevboxRelease,
    DevboxState,
    NetworkMode,
    Runtime,
    RuntimeClass,
    RuntimeSpec,
    Visibility,
    dns1123_label_errors,
)

DIGEST = "sha256:" + "ab" * 32

FULL_DEVBOX: dict[str, Any] = {
    "apiVersion": "devbox.dev/v1alpha1",
    "kind": "Devbox",
    "metadata": {
        "name": "alice-py",
        "namespace": "user-alice",
        "labels": {"devbox.dev/owner": "alice"},
        "annotations": {"devbox.dev/note": "x"},
        "uid": "6a0c1f2e-1111-2222-3333-444455556666",
        "resourceVersion": "4711",
        "generation": 3,
        "creationTimestamp": "2024-05-01T12:00:00Z",
        "finalizers": ["devbox.dev/commit"],
        "managedFields": [{"manager": "devbox-api", "operation": "Update"}],
    },
    "spec": {
        "runtimeRef": {"name": "python-3-12", "namespace": "devbox-system"},
        "owner": "alice",
        "state": "Stopped",
        "resources": {"cpu": "500m", "memory": "4Gi", "storage": "20Gi"},
        "ports": [
            {"name": "http", "port": 8000, "protocol": "TCP", "public": True},
            {"name": "dns", "port": 5353, "protocol": "UDP", "public": False},
        ],
        "networkMode": "Tunnel",
        "env": [{"name": "DEBUG", "value": "1"}],
        "autoStop": {"idleTimeoutSeconds": 3600, "stopAt": "2024-05-02T18:30:00Z"},
        "snapshotIntervalSeconds": 900,
        "restoreCommit": "c-0002",
    },
    "status": {
        "phase": "Stopped",
        "conditions": [
            {
                "type": "Committed",
                "status": "True",
                "reason": "CommitSucceeded",
                "message": "committed c-0002",
                "lastTransitionTime": "2024-05-01T13:00:00Z",
                "observedGeneration": 3,
            }
        ],
        "observedGeneration": 3,
        "image": "registry.devbox.svc:5000/user-alice/alice-py:c-0002",
        "nodeName": "node-1",
        "podName": "alice-py",
        "podIP": "10.244.0.12",
        "ssh": {
            "host": "node-1.example.com",
            "port": 30022,
            "user": "root",
            "hostKeyFingerprint": "SHA256:abc",
        },
        "ports": [{"name": "http", "port": 8000, "url": "https://http-alice-py.example.com"}],
        "commits": [
            {
                "id": "c-0001",
                "mode": "Snapshot",
                "image": "registry.devbox.svc:5000/user-alice/alice-py:c-0001",
                "status": "Failed",
                "reason": "push failed: registry unavailable",
                "startedAt": "2024-05-01T12:30:00Z",
                "finishedAt": "2024-05-01T12:31:00.250000Z",
            },
            {
                "id": "c-0002",
                "mode": "Stop",
                "image": "registry.devbox.svc:5000/user-alice/alice-py:c-0002",
                "status": "Succeeded",
                "digest": DIGEST,
                "sizeBytes": 123456789,
                "layers": 3,
                "startedAt": "2024-05-01T12:59:00Z",
                "finishedAt": "2024-05-01T13:00:00Z",
            },
        ],
        "lastActivityTime": "2024-05-01T12:58:00Z",
    },
}


def _minimal_devbox() -> dict[str, Any]:
    return {
        "apiVersion": "devbox.dev/v1alpha1",
        "kind": "Devbox",
        "metadata": {"name": "b", "namespace": "user-bob"},
        "spec": {
            "runtimeRef": {"name": "debian-12", "namespace": "devbox-system"},
            "owner": "bob",
        },
    }


def test_full_devbox_round_trips_unchanged() -> None:
    devbox = Devbox.model_validate(FULL_DEVBOX)
    assert devbox.to_k8s() == FULL_DEVBOX
    assert devbox.model_dump(by_alias=True, exclude_none=True) == FULL_DEVBOX


def test_dump_is_plain_json_data() -> None:
    dumped = Devbox.model_validate(FULL_DEVBOX).to_k8s()
    # safe_dump refuses enum members and datetimes; plain data passes.
    assert yaml.safe_load(yaml.safe_dump(dumped)) == dumped


def test_parsed_devbox_exposes_typed_fields() -> None:
    devbox = Devbox.model_validate(FULL_DEVBOX)
    assert devbox.name == "alice-py"
    assert devbox.namespace == "user-alice"
    assert devbox.spec.state == DevboxState.STOPPED
    assert devbox.spec.network_mode == NetworkMode.TUNNEL
    assert devbox.status.phase == DevboxPhase.STOPPED
    assert devbox.status.pod_ip == "10.244.0.12"
    assert devbox.status.commits[1].finished_at == datetime(2024, 5, 1, 13, 0, tzinfo=UTC)
    assert devbox.metadata.creation_timestamp == datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_minimal_devbox_gets_defaults() -> None:
    devbox = Devbox.model_validate(_minimal_devbox())
    spec = devbox.to_k8s()["spec"]
    assert spec["state"] == "Running"
    assert spec["networkMode"] == "NodePort"
    assert spec["resources"] == {"cpu": "1", "memory": "2Gi", "storage": "10Gi"}
    assert spec["snapshotIntervalSeconds"] == 0
    assert devbox.status.phase is None


def test_models_build_by_python_name_and_dump_camel_case() -> None:
    spec = RuntimeSpec(
        class_=RuntimeClass.LANGUAGE,
        title="Python",
        version="3.12",
        image="docker.io/library/python:3.12-bookworm",
        working_dir="/work",
        ssh_port=2222,
    )
    dumped = spec.model_dump(by_alias=True, exclude_none=True)
    assert dumped["class"] == "Language"
    assert dumped["workingDir"] == "/work"
    assert dumped["sshPort"] == 2222
    assert dumped["visibility"] == Visibility.PRIVATE


def test_runtime_class_is_read_from_class_key() -> None:
    runtime = Runtime.model_validate(
        {
            "metadata": {"name": "go-1-23", "namespace": "devbox-system"},
            "spec": {
                "class": "Language",
                "title": "Go",
                "version": "1.23",
                "image": "docker.io/library/golang:1.23-bookworm",
                "visibility": "Public",
                "source": {"namespace": "user-a", "devbox": "box", "release": "box-v1"},
            },
        }
    )
    assert runtime.kind == "Runtime"
    assert runtime.spec.class_ == RuntimeClass.LANGUAGE
    assert runtime.spec.source is not None
    assert runtime.spec.source.release == "box-v1"


def test_times_dump_as_rfc3339_utc() -> None:
    condition = Condition(
        type="Ready",
        status=ConditionStatus.TRUE,
        reason="PodRunning",
        last_transition_time=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert condition.model_dump(by_alias=True)["lastTransitionTime"] == "2024-01-02T03:04:05Z"


def test_metadata_keeps_fields_it_does_not_model() -> None:
    devbox = Devbox.model_validate(FULL_DEVBOX)
    assert devbox.to_k8s()["metadata"]["managedFields"] == [
        {"manager": "devbox-api", "operation": "Update"}
    ]


def test_unknown_spec_fields_are_dropped_like_the_api_server_prunes_them() -> None:
    obj = _minimal_devbox()
    obj["spec"]["colour"] = "blue"
    assert "colour" not in Devbox.model_validate(obj).to_k8s()["spec"]


def _with(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    *parents, last = path.split(".")
    node: Any = obj
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return obj


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("spec.state", "Paused"),
        ("spec.networkMode", "HostPort"),
        ("spec.ports.0.port", 0),
        ("spec.ports.0.port", 65536),
        ("spec.ports.0.name", "this-name-is-too-long"),
        ("spec.ports.0.name", "HTTP"),
        ("spec.ports.1.name", "http"),
        ("spec.env.0.name", "1DEBUG"),
        ("spec.resources.cpu", "lots"),
        ("spec.resources.memory", "-1Gi"),
        ("spec.autoStop.idleTimeoutSeconds", -1),
        ("spec.runtimeRef.name", "Python"),
        ("spec.owner", ""),
        ("spec.restoreCommit", "-bad"),
        ("status.phase", "Sleeping"),
        ("status.commits.0.status", "Done"),
        ("status.commits.1.digest", "sha256:nothex"),
        ("status.commits.1.id", "c-0001"),
        ("status.conditions.0.status", "Yes"),
        ("status.image", "Not An Image"),
    ],
)
def test_devbox_rejects_bad_values(path: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        Devbox.model_validate(_with(FULL_DEVBOX, path, value))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("class", "Database"),
        ("title", ""),
        ("image", "docker.io/library/Debian:12"),
        ("image", "debian:bad tag"),
        ("workingDir", "relative/dir"),
        ("sshPort", 0),
        ("visibility", "Everyone"),
    ],
)
def test_runtime_rejects_bad_values(field: str, value: Any) -> None:
    spec = {"class": "OS", "title": "Debian", "version": "12", "image": "debian:12", field: value}
    with pytest.raises(ValidationError):
        Runtime.model_validate({"spec": spec})


@pytest.mark.parametrize(
    "image",
    [
        "debian",
        "debian:12",
        "docker.io/library/debian:12",
        "localhost:5000/a/b_c/d-e:v1.2",
        "registry.example.com/team/img@sha256:" + "0" * 64,
        "ghcr.io/o/i:tag@sha256:" + "f" * 64,
    ],
)
def test_image_references_accepted(image: str) -> None:
    spec = RuntimeSpec.model_validate({"class": "OS", "title": "t", "version": "1", "image": image})
    assert spec.image == image


@pytest.mark.parametrize("version", ["v1", "1.2", "v1.2.3", "1.2.3-rc.1", "v2.0.0+build.7"])
def test_release_versions_accepted(version: str) -> None:
    release = DevboxRelease.model_validate({"spec": {"devbox": "box", "version": version}})
    assert release.spec.version == version


@pytest.mark.parametrize("version", ["", "latest", "1.2.3.4", "v1..2", "1.2-"])
def test_release_versions_rejected(version: str) -> None:
    with pytest.raises(ValidationError):
        DevboxRelease.model_validate({"spec": {"devbox": "box", "version": version}})


def test_release_notes_are_limited() -> None:
    with pytest.raises(ValidationError):
        DevboxRelease.model_validate({"spec": {"devbox": "b", "version": "1", "notes": "x" * 4097}})


def test_wrong_kind_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Devbox.model_validate({**_minimal_devbox(), "kind": "Runtime"})


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("a", True),
        ("alice-py", True),
        ("0x", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("Alice", False),
        ("-a", False),
        ("a-", False),
        ("a.b", False),
        ("", False),
    ],
)
def test_dns1123_label_errors(name: str, valid: bool) -> None:
    assert (dns1123_label_errors(name) == []) is valid
