"""Settings come from defaults, the environment, and a TOML file (environment wins)."""

from pathlib import Path

import pytest

from app.settings import ClusterMode, Settings


def test_defaults_are_the_embedded_setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("DATABASE_URL", "KUBECONFIG", "DEVBOX_CONFIG", "DEVBOX_PORT", "DEVBOX_CLUSTER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    settings = Settings()
    assert settings.port == 8080
    assert settings.host == "127.0.0.1"
    assert settings.cluster is ClusterMode.SIM
    assert settings.effective_database_url == (
        f"sqlite+aiosqlite:///{tmp_path / 'devbox' / 'devbox.db'}"
    )
    assert settings.effective_sim_state_file == tmp_path / "devbox" / "cluster.json"


def test_database_url_is_read_without_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u@db/devbox")
    assert Settings().effective_database_url == "postgresql+asyncpg://u@db/devbox"


def test_environment_wins_over_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "devbox.toml"
    config.write_text('port = 9100\nhost = "0.0.0.0"\ncluster = "kube"\n')
    monkeypatch.setenv("DEVBOX_CONFIG", str(config))
    monkeypatch.setenv("DEVBOX_PORT", "9200")
    settings = Settings()
    assert settings.port == 9200
    assert settings.host == "0.0.0.0"
    assert settings.cluster is ClusterMode.KUBE


def test_invalid_port_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVBOX_PORT", "70000")
    with pytest.raises(ValueError, match="port"):
        Settings()


def test_a_minimum_above_its_maximum_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEVBOX_MIN_MEMORY", "8Gi")
    monkeypatch.setenv("DEVBOX_MAX_MEMORY", "4096Mi")
    with pytest.raises(ValueError, match=r"min_memory \(8Gi\) is larger than max_memory"):
        Settings()
    monkeypatch.setenv("DEVBOX_MAX_MEMORY", "8192Mi")  # equal bounds are a fixed size: fine
    assert Settings().max_memory == "8192Mi"
