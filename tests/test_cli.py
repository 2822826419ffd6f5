"""The ``palais`` command's own errors and version."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from palais import __version__


def run_palais(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PALAIS_")}
    return subprocess.run(
        [sys.executable, "-m", "palais.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
    )


def test_version() -> None:
    result = run_palais("--version")

    assert result.returncode == 0
    assert result.stdout.strip() == f"palais {__version__}"


def test_invalid_node_list_named(tmp_path: Path) -> None:
    result = run_palais(
        "migrate", PALAIS_DATA_DIR=str(tmp_path), PALAIS_NODES="rpi5,bad name"
    )

    assert result.returncode != 0
    assert "PALAIS_NODES" in result.stderr
    assert "'bad name'" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_number_setting_named(tmp_path: Path) -> None:
    result = run_palais(
        "migrate", PALAIS_DATA_DIR=str(tmp_path), PALAIS_OFFLINE_AFTER_SECONDS="soon"
    )

    assert result.returncode != 0
    assert "PALAIS_OFFLINE_AFTER_SECONDS" in result.stderr
    assert "Traceback" not in result.stderr


def test_unsupported_database_named(tmp_path: Path) -> None:
    result = run_palais(
        "migrate", PALAIS_DATA_DIR=str(tmp_path), PALAIS_DATABASE_URL="mysql://x/y"
    )

    assert result.returncode != 0
    assert "PALAIS_DATABASE_URL" in result.stderr
    assert "sqlite, postgresql" in result.stderr


def test_migrate_creates_sqlite_database(tmp_path: Path) -> None:
    result = run_palais("migrate", PALAIS_DATA_DIR=str(tmp_path))

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "palais.db").exists()


def test_agent_without_token_explains(tmp_path: Path) -> None:
    result = run_palais(
        "agent", "--url", "http://127.0.0.1:9", "--node", "rpi5", "--once"
    )

    assert result.returncode != 0
    assert "--token-file" in result.stderr
    assert "PALAIS_API_TOKEN" in result.stderr
