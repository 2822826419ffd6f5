"""Settings: node list parsing, database URLs and generated secrets."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from palais.config import ConfigError, Settings, parse_nodes, sqlalchemy_url


def test_parse_nodes_with_and_without_ip() -> None:
    nodes = parse_nodes(" sese-ai , rpi5=100.64.0.2,, seko-vpn ")

    assert [(node.name, node.tailscale_ip) for node in nodes] == [
        ("sese-ai", None),
        ("rpi5", "100.64.0.2"),
        ("seko-vpn", None),
    ]


def test_parse_nodes_rejects_bad_name() -> None:
    with pytest.raises(ConfigError, match="PALAIS_NODES.*'bad name'"):
        parse_nodes("rpi5,bad name")


def test_parse_nodes_rejects_duplicate_name() -> None:
    with pytest.raises(ConfigError, match="node 'rpi5' is listed twice"):
        parse_nodes("rpi5=100.64.0.2,sese-ai,rpi5=100.64.0.3")


@pytest.mark.parametrize("entry", ["alpha=100.64.0.1=x", "alpha=999.1.1.1"])
def test_parse_nodes_rejects_bad_address(entry: str) -> None:
    with pytest.raises(ConfigError, match="PALAIS_NODES: invalid IP address"):
        parse_nodes(entry)


def test_self_node_always_seeded(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, nodes="rpi5", self_node="vps")

    assert [node.name for node in settings.seed_nodes] == ["rpi5", "vps"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////var/lib/palais.db", "sqlite+aiosqlite:////var/lib/palais.db"),
        ("postgresql://u:p@db:5432/palais", "postgresql+asyncpg://u:p@db:5432/palais"),
        ("postgres://u@db/palais", "postgresql+asyncpg://u@db/palais"),
        ("postgresql+psycopg://u@db/p", "postgresql+asyncpg://u@db/p"),
    ],
)
def test_database_url_drivers(url: str, expected: str) -> None:
    assert sqlalchemy_url(url) == expected


@pytest.mark.parametrize("url", ["mysql://u@db/p", "palais.db"])
def test_database_url_rejected(url: str) -> None:
    with pytest.raises(ConfigError, match="PALAIS_DATABASE_URL"):
        sqlalchemy_url(url)


def test_default_database_in_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)

    assert settings.sqlalchemy_url == f"sqlite+aiosqlite:///{tmp_path}/palais.db"


def test_secret_generated_once_private(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path)

    first = settings.secret("api_token")
    second = Settings(data_dir=tmp_path).secret("api_token")

    path = tmp_path / "api_token"
    assert first == second
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert str(path) in caplog.text
    assert first not in caplog.text


def test_secret_from_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PALAIS_API_TOKEN", "from-env")

    assert Settings(data_dir=tmp_path).secret("api_token") == "from-env"
    assert not (tmp_path / "api_token").exists()


def test_blank_secret_generates_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PALAIS_API_TOKEN", "  ")

    token = Settings(data_dir=tmp_path).secret("api_token")

    assert token.strip() == token
    assert len(token) >= 32
    assert (tmp_path / "api_token").read_text().strip() == token


def test_short_secret_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PALAIS_API_TOKEN", "short")

    assert Settings(data_dir=tmp_path).secret("api_token") == "short"
    assert "PALAIS_API_TOKEN is shorter than 16 characters" in caplog.text
    assert "short" not in caplog.text.replace("shorter", "")


def test_data_dir_made_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)

    Settings(data_dir=data_dir).ensure_data_dir()

    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
