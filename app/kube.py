"""The Kubernetes client: a kubernetes_asyncio ApiClient for the simulated or a real cluster.

Only client modules talk to Kubernetes; this one builds the connection.  For the embedded
default it points at the simulated API server's URL; for ``--cluster=kube`` it reads
``KUBECONFIG`` (or the given path), falling back to the in-cluster service account.
"""

from __future__ import annotations

from pathlib import Path

from kubernetes_asyncio import client, config
from kubernetes_asyncio.config.config_exception import ConfigException


class KubeConfigError(Exception):
    """No usable cluster configuration was found."""


async def connect(*, url: str | None = None, kubeconfig: Path | None = None) -> client.ApiClient:
    """An ApiClient for ``url`` (no auth, simulated cluster) or a kubeconfig / in-cluster."""
    configuration = client.Configuration()
    if url:
        configuration.host = url
        configuration.api_key = {"authorization": "devbox-sim"}
        configuration.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(configuration)
    try:
        if kubeconfig is not None:
            await config.load_kube_config(
                config_file=str(kubeconfig), client_configuration=configuration
            )
        else:
            try:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            except ConfigException:
                await config.load_kube_config(client_configuration=configuration)
    except (ConfigException, OSError) as exc:
        raise KubeConfigError(
            f"no Kubernetes configuration found ({exc}); set KUBECONFIG or run in a cluster"
        ) from exc
    return client.ApiClient(configuration)
