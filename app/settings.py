"""Process settings, read from the environment and an optional TOML file.

Every setting has a default that works on a fresh machine with no configuration
(the embedded default: SQLite and the simulated cluster).  Environment variables use
the ``DEVBOX_`` prefix (``DEVBOX_PORT=9000``); ``DATABASE_URL`` and ``KUBECONFIG`` are also
read without the prefix, as users expect.  A TOML file named by ``DEVBOX_CONFIG`` supplies
values that the environment does not; the environment wins.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
LIMIT_QUANTITY = r"^[0-9]+(\.[0-9]+)?([KMGTPE]i|[mkMGTPE])?$"
"""Form of the devbox size limits (a Kubernetes quantity such as ``500m`` or ``64Gi``)."""


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "devbox"


DEV_NODE_SHIM_TOKEN = "devbox-dev-token"
"""The node-shim token of the embedded default (the controller warns when it meets a real
cluster with it)."""


class ClusterMode(StrEnum):
    """Which Kubernetes the process talks to."""

    SIM = "sim"
    """The simulated API server in ``app.simcluster``, started in-process."""
    KUBE = "kube"
    """A real cluster, from ``KUBECONFIG`` or the in-cluster service account."""


class LogFormat(StrEnum):
    """How log lines are written."""

    TEXT = "text"
    JSON = "json"


class Environment(StrEnum):
    """How much the API tells clients about its own failures."""

    PRODUCTION = "production"
    """Unexpected errors are masked (a generic message and the request id)."""
    DEVELOPMENT = "development"
    """Unexpected errors show their message (never a stack trace)."""


class Settings(BaseSettings):
    """All settings of the API server, the controller and the embedded cluster."""

    model_config = SettingsConfigDict(
        env_prefix="DEVBOX_",
        extra="ignore",
        populate_by_name=True,
    )

    host: str = Field("127.0.0.1", description="Address the API server listens on.")
    port: int = Field(8080, ge=0, le=65535, description="Port the API server listens on.")
    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Where the embedded default keeps its SQLite file, cluster state, kubeconfig.",
    )
    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("DEVBOX_DATABASE_URL", "DATABASE_URL"),
        description="SQLAlchemy async URL; default: SQLite in data_dir.",
    )
    cluster: ClusterMode = Field(ClusterMode.SIM, description="sim (embedded) or kube (real).")
    kubeconfig: Path | None = Field(
        None,
        validation_alias=AliasChoices("DEVBOX_KUBECONFIG", "KUBECONFIG"),
        description="Kubeconfig for --cluster=kube; in-cluster config is used when unset.",
    )
    sim_port: int = Field(
        0, ge=0, le=65535, description="Port of the simulated API server (0: a free one)."
    )
    sim_nodes: int = Field(1, ge=1, le=100, description="Number of simulated nodes.")
    sim_state_file: Path | None = Field(
        None, description="Where the simulated cluster persists its state; default: data_dir."
    )
    system_namespace: str = Field(
        "devbox-system", description="Namespace of the official runtimes and the controller."
    )
    manifests_dir: Path = Field(
        REPO_ROOT / "k8s",
        description="Folder with the crds/ and runtimes/ manifests for the embedded cluster.",
    )
    domain: str = Field(
        "devbox.localhost",
        description="Domain of the public port URLs: each public port gets <random>.<domain>.",
    )
    url_scheme: str = Field("https", description="Scheme of the public port URLs.")
    ingress_class: str | None = Field(
        None, description="ingressClassName of the port Ingresses (unset: the cluster default)."
    )
    registry: str = Field(
        "registry.devbox.localhost:5000",
        description="Registry (host[:port][/path]) commits are pushed to: "
        "<registry>/<namespace>/<devbox>:<commit id>.",
    )
    registry_insecure: bool = Field(
        False, description="Talk to the registry over plain HTTP instead of HTTPS."
    )
    registry_username: str | None = Field(
        None, description="User for the registry's basic auth (releases re-tag images)."
    )
    registry_password: SecretStr | None = Field(None, description="Password for the registry.")
    node_shim_port: int = Field(
        7443, ge=1, le=65535, description="Port of the node-shim gRPC API on every node."
    )
    node_shim_token: SecretStr = Field(
        SecretStr(DEV_NODE_SHIM_TOKEN),
        description="Bearer token the controller sends to the node-shim (set it in production).",
    )
    controller_workers: int = Field(
        8, ge=1, le=256, description="Devboxes the controller reconciles in parallel."
    )
    commit_timeout_seconds: float = Field(
        3600.0, gt=0, description="Longest a commit may take before it counts as failed."
    )
    delete_commit_wait_seconds: float = Field(
        300.0,
        ge=0,
        description="How long deleting a devbox waits for a commit in flight before abandoning it.",
    )
    run_controller: bool = Field(
        True,
        description="Run the controller inside `devboxctl serve` (turn off when it runs as its "
        "own process, `devboxctl controller`, as in the k8s/devbox Deployments).",
    )
    controller_metrics_port: int = Field(
        9090,
        ge=0,
        le=65535,
        description="Port of /metrics of `devboxctl controller` (0: none). `devboxctl serve` "
        "serves the controller's metrics on the API server's /metrics instead.",
    )
    leader_election: bool = Field(
        False,
        description="Run the controller only while holding the coordination.k8s.io Lease "
        "devbox-controller in system_namespace (turn on when running several replicas).",
    )
    commit_retry_max_seconds: float = Field(
        300.0, gt=0, description="Longest backoff between retries of a failed stop commit."
    )
    min_cpu: str = Field(
        "100m", description="Smallest CPU limit a devbox may ask for.", pattern=LIMIT_QUANTITY
    )
    max_cpu: str = Field(
        "16", description="Largest CPU limit a devbox may ask for.", pattern=LIMIT_QUANTITY
    )
    min_memory: str = Field(
        "256Mi", description="Smallest memory limit a devbox may ask for.", pattern=LIMIT_QUANTITY
    )
    max_memory: str = Field(
        "64Gi", description="Largest memory limit a devbox may ask for.", pattern=LIMIT_QUANTITY
    )
    min_storage: str = Field(
        "1Gi", description="Smallest storage limit a devbox may ask for.", pattern=LIMIT_QUANTITY
    )
    max_storage: str = Field(
        "500Gi", description="Largest storage limit a devbox may ask for.", pattern=LIMIT_QUANTITY
    )
    environment: Environment = Field(
        Environment.PRODUCTION,
        description="production (default; unexpected errors masked) or development "
        "(their messages shown). Every error carries extensions.requestId either way.",
    )
    max_request_bytes: int = Field(
        256 * 1024, ge=1024, description="Largest GraphQL request body (and WebSocket message)."
    )
    max_query_depth: int = Field(15, ge=1, description="Deepest GraphQL selection accepted.")
    max_aliases: int = Field(30, ge=0, description="Most aliases in one GraphQL document.")
    max_query_tokens: int = Field(
        2000, ge=10, description="Most lexical tokens in one GraphQL document."
    )
    rate_limit_per_second: float = Field(
        20.0, gt=0, description="Sustained GraphQL requests per second allowed per API token."
    )
    rate_limit_burst: int = Field(
        100, ge=1, description="Requests a token may send at once before the rate applies."
    )
    auth_cache_seconds: float = Field(
        5.0,
        ge=0,
        description="How long a verified token is remembered per process (revocations through "
        "this process apply at once; through another replica within this time).",
    )
    tunnel_max_per_token: int = Field(
        10,
        ge=1,
        description="SSH tunnels (/tunnel WebSockets) one API token may hold open at once.",
    )
    tunnel_idle_timeout_seconds: float = Field(
        1800.0, gt=0, description="A tunnel with no bytes either way for this long is closed."
    )
    tunnel_activity_interval_seconds: float = Field(
        60.0,
        gt=0,
        description="While a tunnel is open, the devbox's status.lastActivityTime is written "
        "this often (at most), so idle auto-stop does not stop it.",
    )
    tunnel_connect_timeout_seconds: float = Field(
        10.0, gt=0, description="Longest wait for the devbox's SSH port to accept a tunnel."
    )
    admin_user: str = Field(
        "admin", description="Name of the admin user created on first start (no admin yet)."
    )
    admin_namespace: str = Field(
        "devbox-admin", description="Namespace of the admin user created on first start."
    )
    log_level: str = Field("INFO", description="Python logging level name.")
    log_format: LogFormat = Field(LogFormat.TEXT, description="text (readable) or json.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = os.environ.get("DEVBOX_CONFIG")
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @model_validator(mode="after")
    def _limits_are_ranges(self) -> Settings:
        """Each resource's minimum is at most its maximum (else every create would be refused
        with a range that cannot be met)."""
        from app.quantity import parse_quantity

        for resource in ("cpu", "memory", "storage"):
            low, high = getattr(self, f"min_{resource}"), getattr(self, f"max_{resource}")
            if parse_quantity(low) > parse_quantity(high):
                raise ValueError(f"min_{resource} ({low}) is larger than max_{resource} ({high})")
        return self

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'devbox.db'}"

    @property
    def node_shim_token_is_default(self) -> bool:
        """Whether the node-shim token is still the development default."""
        return self.node_shim_token.get_secret_value() == DEV_NODE_SHIM_TOKEN

    @property
    def effective_sim_state_file(self) -> Path:
        """Where the simulated cluster keeps its state."""
        return self.sim_state_file or self.data_dir / "cluster.json"

    def describe(self) -> dict[str, Any]:
        """Settings as plain values, for printing at start-up (no secrets are held here)."""
        return self.model_dump(mode="json")
