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


SIM_TOKEN = "devbox-sim"
"""The bearer token sent to a cluster given by URL when no other token is given."""


async def connect(
    *, url: str | None = None, kubeconfig: Path | None = None, token: str = SIM_TOKEN
) -> client.ApiClient:
    """An ApiClient for ``url`` (sending ``Authorization: Bearer <token>``, e.g. the simulated
    cluster) or a kubeconfig / in-cluster."""
    configuration = client.Configuration()
    if url:
        configuration.host = url
        # kubernetes_asyncio sends only the ``BearerToken`` auth setting (see
        # ``Configuration.auth_settings``): a key under any other name is never sent.
        configuration.api_key = {"BearerToken": token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
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
