"""Child objects are built deterministically from the devbox and its runtime."""

from __future__ import annotations

import base64
import copy
import shutil
import subprocess

from app.controller import _children as children
from app.resources import Devbox, Runtime
from tests.fixtures.deps import missing


def devbox(name: str = "box") -> Devbox:
    return Devbox.model_validate(
        {
            "metadata": {"name": name, "namespace": "ns", "uid": "u-1"},
            "spec": {"runtimeRef": {"name": "py", "namespace": "ns"}, "owner": "alice"},
        }
    )


def runtime() -> Runtime:
    return Runtime.model_validate(
        {
            "metadata": {"name": "py", "namespace": "ns"},
            "spec": {"class": "Language", "title": "Py", "version": "3", "image": "py:3"},
        }
    )


def test_child_names_stay_within_63_characters_and_distinct() -> None:
    long = devbox("x" * 63)
    names = {
        children.secret_name(long),
        children.ingress_name(long, "web"),
        children.ingress_name(long, "api"),
    }
    assert len(names) == 3
    assert all(len(n) <= 63 for n in names)


def test_the_secret_holds_an_ed25519_pair_whose_public_key_is_authorized(tmp_path: object) -> None:
    secret = children.secret(devbox())
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["authorized_keys"] == data["id_ed25519.pub"]
    assert data["authorized_keys"].startswith("ssh-ed25519 ")
    assert data["authorized_keys"].rstrip().endswith("alice@box")
    assert "OPENSSH PRIVATE KEY" in data["id_ed25519"]


def test_the_fingerprint_matches_ssh_keygen(tmp_path: object) -> None:
    from pathlib import Path

    if shutil.which("ssh-keygen") is None:
        missing("OpenSSH's ssh-keygen", "apt-get install openssh-client (make test does)")

    secret = children.secret(devbox())
    public = base64.b64decode(secret["data"]["ssh_host_ed25519_key.pub"]).decode()
    path = Path(str(tmp_path)) / "key.pub"
    path.write_text(public)
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert children.fingerprint(public) == out.split()[1]


def test_the_pod_never_restarts_and_mounts_the_keys() -> None:
    pod = children.pod(devbox(), runtime(), "registry/ns/box:c1")
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["metadata"]["ownerReferences"][0]["controller"] is True
    assert pod["spec"]["containers"][0]["image"] == "registry/ns/box:c1"
    assert pod["spec"]["containers"][0]["readinessProbe"]["tcpSocket"]["port"] == 22


def test_a_service_update_keeps_its_allocated_node_port() -> None:
    desired = children.ssh_service(devbox(), runtime())
    current = {
        "spec": {
            "type": "NodePort",
            "selector": desired["spec"]["selector"],
            "ports": [{"name": "ssh", "port": 22, "targetPort": 2222, "nodePort": 31000}],
        }
    }
    patch = children.service_differs(current, desired)
    assert patch is not None
    assert patch["spec"]["ports"][0]["nodePort"] == 31000
    current["spec"]["ports"][0]["targetPort"] = 22
    assert children.service_differs(current, desired) is None


def test_the_pod_never_mounts_the_users_private_key() -> None:
    pod = children.pod(devbox(), runtime(), "registry/ns/box:c1")
    secret_name = children.secret_name(devbox())
    volumes = pod["spec"]["volumes"]
    from_secret = [v for v in volumes if (v.get("secret") or {}).get("secretName") == secret_name]
    assert from_secret, "the SSH keys are mounted"
    for volume in from_secret:
        items = volume["secret"].get("items")
        assert items is not None, "a secret volume without items mounts every key"
        keys = {item["key"] for item in items}
        assert "id_ed25519" not in keys
        assert keys == {"authorized_keys", "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"}
    assert not any("projected" in v or "env" in v for v in volumes)
    container = pod["spec"]["containers"][0]
    assert not container.get("envFrom")
    assert all("secretKeyRef" not in (e.get("valueFrom") or {}) for e in container["env"])


def test_drift_ignores_resources_the_controller_does_not_set() -> None:
    """A pod of an older version (with an ephemeral-storage limit) or one a LimitRange gave
    defaults to is not "changed resources"; a different CPU limit is."""
    desired = children.pod(devbox(), runtime(), "img")
    existing = copy.deepcopy(desired)
    resources = existing["spec"]["containers"][0]["resources"]
    resources["limits"]["ephemeral-storage"] = "10Gi"
    resources["requests"]["nvidia.com/gpu"] = "0"
    assert children.pod_drift(existing, desired) == []
    resources["limits"]["cpu"] = "3"
    assert children.pod_drift(existing, desired) == ["resources"]
