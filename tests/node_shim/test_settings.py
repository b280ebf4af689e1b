"""The node-shim's settings: a token is required, lists are comma-separated."""

from __future__ import annotations

from pathlib import Path

import pytest
from devbox_node_shim.settings import Settings, SettingsError
from pydantic import ValidationError


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TOKEN", "TOKEN_FILE", "INSECURE_REGISTRIES", "MAX_LAYERS", "PORT"):
        monkeypatch.delenv(f"DEVBOX_NODE_SHIM_{name}", raising=False)


def test_settings_without_a_token_are_refused_naming_both_variables() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings()

    assert "DEVBOX_NODE_SHIM_TOKEN" in str(refused.value)
    assert "DEVBOX_NODE_SHIM_TOKEN_FILE" in str(refused.value)


def test_token_file_wins_and_is_stripped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("from-the-secret\n")
    monkeypatch.setenv("DEVBOX_NODE_SHIM_TOKEN", "from-the-env")
    monkeypatch.setenv("DEVBOX_NODE_SHIM_TOKEN_FILE", str(token))

    assert Settings().bearer_token() == "from-the-secret"


def test_an_empty_token_file_is_an_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("\n")
    monkeypatch.setenv("DEVBOX_NODE_SHIM_TOKEN_FILE", str(token))

    with pytest.raises(SettingsError, match=str(token)):
        Settings().bearer_token()


def test_environment_values_are_read_with_their_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVBOX_NODE_SHIM_TOKEN", "t")
    monkeypatch.setenv("DEVBOX_NODE_SHIM_INSECURE_REGISTRIES", "reg.local:5000, 10.0.0.1:5000")
    monkeypatch.setenv("DEVBOX_NODE_SHIM_MAX_LAYERS", "12")
    monkeypatch.setenv("DEVBOX_NODE_SHIM_PORT", "9443")

    settings = Settings()

    assert settings.insecure_registries == ["reg.local:5000", "10.0.0.1:5000"]
    assert settings.max_layers == 12
    assert settings.port == 9443
    assert settings.containerd_namespace == "k8s.io"
    assert settings.containerd_socket == "/run/containerd/containerd.sock"


def test_a_layer_bound_an_overlay_mount_cannot_run_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEVBOX_NODE_SHIM_TOKEN", "t")
    monkeypatch.setenv("DEVBOX_NODE_SHIM_MAX_LAYERS", "600")

    with pytest.raises(ValidationError, match="max_layers"):
        Settings()
