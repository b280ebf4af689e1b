"""The objects a devbox owns, built as plain dicts from the devbox and its runtime.

Pure functions, no API calls: the reconciler compares what they return with what the cache
holds and writes only the difference.

Children (all labelled ``devbox.dev/devbox=<name>``, owned by the devbox as controller):

- Secret ``<name>-ssh``: the user's ed25519 key pair (``authorized_keys`` holds the public key)
  and the devbox's SSH host key; generated once, never rotated silently by the controller.
  The pod mounts only :data:`MOUNTED_KEYS`, never the user's private key.
- Pod ``<name>``: one container ``devbox``, ``restartPolicy: Never`` so the kubelet keeps an
  exited container (and its writable layer) for the final commit until the pod is deleted.
- Service ``<name>-ssh``: NodePort (or ClusterIP in Tunnel mode) to the SSH port.
- Service ``<name>``: ClusterIP for the spec's app ports (only when there are ports).
- Ingress ``<name>-<port>`` per public port, on ``<random>.<domain>``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.quantity import QuantityError, parse_quantity
from app.resources import API_VERSION, Devbox, NetworkMode, Runtime

JSON = dict[str, Any]

MANAGED_BY = "app.kubernetes.io/managed-by"
CONTROLLER_NAME = "devbox-controller"
DEVBOX_LABEL = "devbox.dev/devbox"
IMAGE_ANNOTATION = "devbox.dev/image"
SELECTOR = f"{MANAGED_BY}={CONTROLLER_NAME}"
"""Label selector of every object the controller creates."""
CONTAINER = "devbox"
SSH_MOUNT = "/etc/devbox/ssh"
"""Where the pod sees the Secret: ``authorized_keys`` and the host key live here."""
MOUNTED_KEYS = ("authorized_keys", "ssh_host_ed25519_key", "ssh_host_ed25519_key.pub")
"""The Secret's keys the container sees.  The user's private key (``id_ed25519``) is never
mounted: it stays in the Secret for the API to hand to the owner."""
SSH_SERVICE_PORT = 22


def _short(name: str, suffix: str, limit: int = 63) -> str:
    full = f"{name}-{suffix}" if suffix else name
    if len(full) <= limit:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{name[: limit - len(suffix) - 10]}-{digest}-{suffix}"


def pod_name(devbox: Devbox) -> str:
    return devbox.name


def secret_name(devbox: Devbox) -> str:
    return _short(devbox.name, "ssh")


def ssh_service_name(devbox: Devbox) -> str:
    return _short(devbox.name, "ssh")


def ports_service_name(devbox: Devbox) -> str:
    return devbox.name


def ingress_name(devbox: Devbox, port_name: str) -> str:
    return _short(devbox.name, f"port-{port_name}")


def labels(devbox: Devbox) -> dict[str, str]:
    return {MANAGED_BY: CONTROLLER_NAME, DEVBOX_LABEL: devbox.name}


def owner_reference(devbox: Devbox) -> JSON:
    return {
        "apiVersion": API_VERSION,
        "kind": "Devbox",
        "name": devbox.name,
        "uid": devbox.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _meta(devbox: Devbox, name: str, annotations: dict[str, str] | None = None) -> JSON:
    meta: JSON = {
        "name": name,
        "namespace": devbox.namespace,
        "labels": labels(devbox),
        "ownerReferences": [owner_reference(devbox)],
    }
    if annotations:
        meta["annotations"] = annotations
    return meta


def owner_uid(obj: JSON) -> str | None:
    """The uid of the Devbox that controls ``obj``, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "Devbox":
            return str(ref.get("uid"))
    return None


# ---------------------------------------------------------------------- SSH keys


def _openssh_keypair() -> tuple[str, str]:
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return private, public


def fingerprint(public_key: str) -> str:
    """OpenSSH's ``SHA256:…`` fingerprint of an OpenSSH public key line."""
    blob = base64.b64decode(public_key.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def secret(devbox: Devbox) -> JSON:
    """A new Secret with freshly generated keys (create it once; never regenerate)."""
    private, public = _openssh_keypair()
    host_private, host_public = _openssh_keypair()
    comment = f" {devbox.spec.owner}@{devbox.name}"
    data = {
        "id_ed25519": private,
        "id_ed25519.pub": public + comment + "\n",
        "authorized_keys": public + comment + "\n",
        "ssh_host_ed25519_key": host_private,
        "ssh_host_ed25519_key.pub": host_public + "\n",
    }
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(devbox, secret_name(devbox)),
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def secret_value(obj: JSON, key: str) -> str | None:
    """A decoded value of a Secret."""
    raw = (obj.get("data") or {}).get(key)
    return base64.b64decode(raw).decode() if raw else None


# ---------------------------------------------------------------------- pod


def env(devbox: Devbox, runtime: Runtime) -> list[JSON]:
    """The runtime's variables, overridden by the devbox's, then the controller's own."""
    merged: dict[str, str] = {}
    for var in runtime.spec.env:
        merged[var.name] = var.value
    for var in devbox.spec.env:
        merged[var.name] = var.value
    merged["DEVBOX_NAME"] = devbox.name
    merged["DEVBOX_USER"] = runtime.spec.user
    merged["DEVBOX_SSH_DIR"] = SSH_MOUNT
    return [{"name": k, "value": v} for k, v in merged.items()]


def pod(devbox: Devbox, runtime: Runtime, image: str) -> JSON:
    """The devbox's pod, running ``image``.

    Storage is requested (the scheduler reserves it on the node) but not limited: a kubelet
    evicts a pod that writes past its ``ephemeral-storage`` limit and removes its container,
    writable layer and all, so every change since the last commit would be lost, which is the
    one loss Devbox exists to prevent.
    """
    limits = {"cpu": devbox.spec.resources.cpu, "memory": devbox.spec.resources.memory}
    requests = {**limits, "ephemeral-storage": devbox.spec.resources.storage}
    ssh_port = runtime.spec.ssh_port
    container: JSON = {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "workingDir": runtime.spec.working_dir,
        "env": env(devbox, runtime),
        "ports": [{"name": "ssh", "containerPort": ssh_port, "protocol": "TCP"}]
        + [
            {"name": p.name, "containerPort": p.port, "protocol": p.protocol}
            for p in devbox.spec.ports
        ],
        "resources": {"limits": limits, "requests": requests},
        "readinessProbe": {
            "tcpSocket": {"port": ssh_port},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "volumeMounts": [{"name": "ssh", "mountPath": SSH_MOUNT, "readOnly": True}],
    }
    if runtime.spec.command:
        container["command"] = list(runtime.spec.command)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(devbox, pod_name(devbox), {IMAGE_ANNOTATION: image}),
        "spec": {
            "restartPolicy": "Never",
            "enableServiceLinks": False,
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 30,
            "hostname": devbox.name[:63],
            "containers": [container],
            "volumes": [
                {
                    "name": "ssh",
                    "secret": {
                        "secretName": secret_name(devbox),
                        "defaultMode": 0o400,
                        "items": [{"key": key, "path": key} for key in MOUNTED_KEYS],
                    },
                }
            ],
        },
    }


POD_SETTINGS = {
    "env": "env",
    "resources": "resources",
    "command": "command",
    "workingDir": "working directory",
}
"""Container fields a running pod cannot change; ports are not here (Services apply them)."""


def pod_drift(existing: JSON, desired: JSON) -> list[str]:
    """What of ``desired``'s container settings the ``existing`` pod does not have (names a
    person reads: ``env``, ``resources``…); empty when the pod matches."""

    def container(pod: JSON) -> JSON:
        for item in (pod.get("spec") or {}).get("containers") or []:
            if item.get("name") == CONTAINER:
                return dict(item)
        return {}

    def resources(value: Any) -> Any:
        # The API server may store a quantity in another spelling ("0.5" as "500m").
        try:
            return {
                part: {name: parse_quantity(q) for name, q in (value.get(part) or {}).items()}
                for part in ("limits", "requests")
            }
        except (AttributeError, QuantityError):
            return value

    have, want = container(existing), container(desired)
    have["resources"] = resources(have.get("resources") or {})
    want["resources"] = resources(want.get("resources") or {})
    if isinstance(have["resources"], dict) and isinstance(want["resources"], dict):
        # Only what the controller sets: a LimitRange's defaults, or the ephemeral-storage
        # limit pods of older versions had, are no change the user asked for.
        have["resources"] = {
            part: {k: v for k, v in (have["resources"].get(part) or {}).items() if k in wanted}
            for part, wanted in want["resources"].items()
        }
    return [label for field, label in POD_SETTINGS.items() if have.get(field) != want.get(field)]


# ---------------------------------------------------------------------- services, ingress


def ssh_service(devbox: Devbox, runtime: Runtime) -> JSON:
    """SSH: a NodePort (NodePort mode) or ClusterIP (Tunnel mode) Service."""
    node_port = devbox.spec.network_mode == NetworkMode.NODE_PORT
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(devbox, ssh_service_name(devbox)),
        "spec": {
            "type": "NodePort" if node_port else "ClusterIP",
            "selector": labels(devbox),
            "ports": [
                {
                    "name": "ssh",
                    "port": SSH_SERVICE_PORT,
                    "targetPort": runtime.spec.ssh_port,
                    "protocol": "TCP",
                }
            ],
        },
    }


def ports_service(devbox: Devbox) -> JSON | None:
    """A ClusterIP Service for the app ports, or None without ports."""
    if not devbox.spec.ports:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(devbox, ports_service_name(devbox)),
        "spec": {
            "type": "ClusterIP",
            "selector": labels(devbox),
            "ports": [
                {"name": p.name, "port": p.port, "targetPort": p.port, "protocol": p.protocol}
                for p in devbox.spec.ports
            ],
        },
    }


def new_host(domain: str) -> str:
    """A fresh, unguessable host name under ``domain``."""
    return f"{secrets.token_hex(5)}.{domain}"


def ingress(devbox: Devbox, port_name: str, host: str, ingress_class: str | None) -> JSON:
    """The Ingress of one public port."""
    spec: JSON = {
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {
                                "service": {
                                    "name": ports_service_name(devbox),
                                    "port": {"name": port_name},
                                }
                            },
                        }
                    ]
                },
            }
        ]
    }
    if ingress_class:
        spec["ingressClassName"] = ingress_class
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _meta(devbox, ingress_name(devbox, port_name)),
        "spec": spec,
    }


def ingress_host(obj: JSON) -> str | None:
    """The host of an Ingress built by :func:`ingress`."""
    rules = (obj.get("spec") or {}).get("rules") or []
    return str(rules[0].get("host")) if rules and rules[0].get("host") else None


def service_differs(current: JSON, desired: JSON) -> JSON | None:
    """A merge patch bringing ``current`` to ``desired`` (keeping allocated node ports), or
    None when they agree on type, selector and ports."""
    spec = current.get("spec") or {}
    want = desired["spec"]
    node_ports = {p.get("name"): p.get("nodePort") for p in spec.get("ports") or []}
    ports = []
    for port in want["ports"]:
        port = dict(port)
        if want["type"] == "NodePort" and node_ports.get(port["name"]):
            port["nodePort"] = node_ports[port["name"]]
        ports.append(port)

    def shape(items: list[JSON]) -> list[tuple[Any, ...]]:
        return [
            (p.get("name"), p.get("port"), p.get("targetPort"), p.get("protocol", "TCP"))
            for p in items
        ]

    if (
        spec.get("type") == want["type"]
        and spec.get("selector") == want["selector"]
        and shape(spec.get("ports") or []) == shape(want["ports"])
    ):
        return None
    return {"spec": {"type": want["type"], "selector": want["selector"], "ports": ports}}
