"""Admission of the simulated API server: what kube-apiserver v1.20's plugins do to a new pod.

Only the ``ServiceAccount`` plugin is simulated (the others enabled by default change nothing the
simulated cluster's clients see).  On pod creation it:

- looks up the pod's ServiceAccount (``spec.serviceAccountName``, defaulted to ``default``):
  missing → 403 Forbidden "error looking up service account …" (a brand-new namespace has none
  until the service-account controller made it);
- copies the account's ``imagePullSecrets`` to a pod that has none;
- unless ``automountServiceAccountToken`` is false (the pod's, else the account's), mounts the
  account's token Secret read-only at ``/var/run/secrets/kubernetes.io/serviceaccount`` in every
  container and init container; no token Secret yet → 500 ServerTimeout "No API token found …"
  with ``retryAfterSeconds: 1``.

Errors are :class:`~app.simcluster.errors.ApiError` (Status objects).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable

from app.simcluster.errors import ApiError
from app.simcluster.kinds import JSON

SERVICE_ACCOUNT_KEY = ("", "serviceaccounts")
SECRET_KEY = ("", "secrets")
TOKEN_SECRET_TYPE = "kubernetes.io/service-account-token"
SERVICE_ACCOUNT_NAME_ANNOTATION = "kubernetes.io/service-account.name"
SERVICE_ACCOUNT_UID_ANNOTATION = "kubernetes.io/service-account.uid"
TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

Find = Callable[[tuple[str, str], str, str], "JSON | None"]


def token_secret_of(find: Find, account: JSON) -> JSON | None:
    """The token Secret that the ServiceAccount lists and that belongs to it, if it exists."""
    namespace = account["metadata"].get("namespace", "")
    for ref in account.get("secrets") or []:
        name = ref.get("name") if isinstance(ref, dict) else None
        secret = find(SECRET_KEY, namespace, str(name)) if name else None
        if (
            secret is not None
            and secret.get("type") == TOKEN_SECRET_TYPE
            and not secret["metadata"].get("deletionTimestamp")
            and (secret["metadata"].get("annotations") or {}).get(SERVICE_ACCOUNT_UID_ANNOTATION)
            == account["metadata"]["uid"]
        ):
            return secret
    return None


def admit_pod(pod: JSON, namespace: str, find: Find) -> None:
    """Apply the ServiceAccount admission plugin to a pod being created (in place)."""
    spec = pod.setdefault("spec", {})
    annotations = pod.get("metadata", {}).get("annotations") or {}
    if "kubernetes.io/config.mirror" in annotations:
        return
    name = str(pod.get("metadata", {}).get("name") or "")
    account_name = spec.get("serviceAccountName") or "default"
    spec["serviceAccountName"] = account_name
    account = find(SERVICE_ACCOUNT_KEY, namespace, account_name)
    if account is None:
        raise ApiError(
            403,
            "Forbidden",
            f'pods "{name}" is forbidden: error looking up service account '
            f'{namespace}/{account_name}: serviceaccount "{account_name}" not found',
            {"name": name, "kind": "pods"},
        )
    if not spec.get("imagePullSecrets") and account.get("imagePullSecrets"):
        spec["imagePullSecrets"] = copy.deepcopy(account["imagePullSecrets"])
    automount = spec.get("automountServiceAccountToken")
    if automount is None:
        automount = account.get("automountServiceAccountToken")
    if automount is False:
        return
    token = token_secret_of(find, account)
    if token is None:
        raise ApiError(
            500,
            "ServerTimeout",
            f'No API token found for service account "{account_name}", retry after the token '
            "is automatically created and added to the service account",
            {"name": "create pod", "kind": "serviceaccounts", "retryAfterSeconds": 1},
        )
    _mount_token(spec, token["metadata"]["name"])


def _mount_token(spec: JSON, secret_name: str) -> None:
    containers = [
        c
        for key in ("initContainers", "containers")
        for c in spec.get(key) or []
        if isinstance(c, dict)
    ]
    needing = [
        c
        for c in containers
        if not any(
            isinstance(m, dict) and m.get("mountPath") == TOKEN_MOUNT_PATH
            for m in c.get("volumeMounts") or []
        )
    ]
    if not needing:
        return
    volumes = spec.get("volumes") or []
    volume_name = next(
        (
            v.get("name")
            for v in volumes
            if isinstance(v, dict) and (v.get("secret") or {}).get("secretName") == secret_name
        ),
        None,
    )
    if volume_name is None:
        taken = {v.get("name") for v in volumes if isinstance(v, dict)}
        volume_name = secret_name
        while volume_name in taken:
            suffix = "".join(random.choice(_SUFFIX_ALPHABET) for _ in range(5))
            volume_name = f"{secret_name[:57]}-{suffix}"
        volumes.append(
            {"name": volume_name, "secret": {"secretName": secret_name, "defaultMode": 420}}
        )
        spec["volumes"] = volumes
    for container in needing:
        container.setdefault("volumeMounts", []).append(
            {"name": volume_name, "readOnly": True, "mountPath": TOKEN_MOUNT_PATH}
        )
