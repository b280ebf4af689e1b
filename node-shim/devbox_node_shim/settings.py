"""The node-shim's settings, from the environment (prefix ``DEVBOX_NODE_SHIM_``).

Only the bearer token is required: ``DEVBOX_NODE_SHIM_TOKEN``, or a file holding it named by
``DEVBOX_NODE_SHIM_TOKEN_FILE`` (a mounted Secret; the file wins, and is re-read at start-up
only).  Lists (``DEVBOX_NODE_SHIM_INSECURE_REGISTRIES``) are comma-separated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from devbox_node_shim.containerd import DEFAULT_NAMESPACE, DEFAULT_SOCKET


class SettingsError(Exception):
    """The settings are incomplete or invalid (a message for the operator)."""


class Settings(BaseSettings):
    """Everything the node-shim reads at start-up."""

    model_config = SettingsConfigDict(env_prefix="DEVBOX_NODE_SHIM_", extra="ignore")

    listen_address: str = Field("0.0.0.0", description="Address the gRPC server binds.")
    port: int = Field(7443, ge=0, le=65535, description="gRPC port (0: a free port).")
    token: SecretStr | None = Field(None, description="Bearer token callers must send.")
    token_file: Path | None = Field(None, description="File holding the bearer token.")
    containerd_socket: str = Field(DEFAULT_SOCKET, description="containerd's gRPC socket.")
    containerd_namespace: str = Field(DEFAULT_NAMESPACE, description="containerd namespace.")
    state_dir: Path = Field(
        Path("/var/lib/devbox-node-shim"),
        description="Commit records (idempotency) and work files; keep it across restarts.",
    )
    registry_auth_file: Path | None = Field(
        None, description="Docker config.json with registry credentials (a mounted Secret)."
    )
    insecure_registries: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Registries (host[:port]) reached over plain HTTP, comma-separated.",
    )
    max_layers: int = Field(
        24, ge=2, le=120, description="Default bound on a committed image's layer count."
    )
    stop_timeout_seconds: float = Field(
        10.0, gt=0, description="Default wait after SIGTERM before SIGKILL (mode STOP)."
    )
    compression: Literal["zstd", "gzip"] = Field(
        "zstd", description="Layer compression (gzip for runtimes without zstd)."
    )
    local_copy: Literal["after-push", "in-commit"] = Field(
        "after-push",
        description="When a commit's image goes into containerd: after the push, in the "
        "background (the commit ends once pushed), or within the commit.",
    )
    overlay_fast_path: bool = Field(
        True, description="Read overlayfs upper directories directly (else containerd's differ)."
    )

    @field_validator("insecure_registries", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _token_given(self) -> Settings:
        if self.token_file is None and (self.token is None or not self.token.get_secret_value()):
            raise ValueError(
                "no bearer token: set DEVBOX_NODE_SHIM_TOKEN or DEVBOX_NODE_SHIM_TOKEN_FILE"
            )
        return self

    def bearer_token(self) -> str:
        """The token callers must present (from the file when one is named)."""
        if self.token_file is not None:
            try:
                token = self.token_file.read_text().strip()
            except OSError as exc:
                raise SettingsError(
                    f"cannot read the token file {self.token_file}: {exc.strerror}"
                ) from exc
            if not token:
                raise SettingsError(f"the token file {self.token_file} is empty")
            return token
        assert self.token is not None
        return self.token.get_secret_value()
