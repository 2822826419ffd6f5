"""``palais backup report`` against a real restic repository and a real server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from palais.health.restic_report import ResticError, read_repository
from tests.conftest import AUTH, TOKEN, ServerProcess

pytestmark = pytest.mark.skipif(
    shutil.which("restic") is None,
    reason="restic is not installed (Debian package restic)",
)

PASSWORD = "repo-password-for-tests"


@pytest.fixture
def repository(tmp_path: Path) -> tuple[Path, Path]:
    """A restic repository with one snapshot of a small folder."""
    repo = tmp_path / "repo"
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    source = tmp_path / "source"
    source.mkdir()
    (source / "notes.txt").write_text("palais backup test\n" * 1000)
    restic(repo, password_file, "init")
    restic(repo, password_file, "backup", str(source))
    return repo, password_file


def restic(repo: Path, password_file: Path, *args: str) -> str:
    env = {**os.environ, "RESTIC_CACHE_DIR": str(repo.parent / "cache")}
    completed = subprocess.run(
        ["restic", "-r", str(repo), "--password-file", str(password_file), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    return completed.stdout


def run_report(
    server: ServerProcess, repo: Path, password_file: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("PALAIS_")
    }
    env["RESTIC_CACHE_DIR"] = str(repo.parent / "cache")
    command = [
        sys.executable,
        "-m",
        "palais.cli",
        "backup",
        "report",
        "--url",
        server.url,
        "--repo",
        str(repo),
        "--password-file",
        str(password_file),
        "--token",
        TOKEN,
        *extra,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)


def stored(server: ServerProcess, source: str = "restic") -> dict:
    body = httpx.get(server.url + "/api/v1/health/backup", headers=AUTH).json()
    rows = {(row["node"], row["source"]): row for row in body["backups"]}
    return rows[("sese-ai", source)]


def test_read_repository(repository: tuple[Path, Path]) -> None:
    repo, password_file = repository
    state = read_repository(str(repo), str(password_file))
    snapshots = json.loads(restic(repo, password_file, "snapshots", "--json"))
    assert state.snapshot_count == 1
    assert state.newest_snapshot_id == snapshots[0]["id"]
    assert state.size_bytes is not None and state.size_bytes > 0


def test_read_repository_wrong_password(
    repository: tuple[Path, Path], tmp_path: Path
) -> None:
    repo, _ = repository
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password\n")
    with pytest.raises(ResticError, match="restic snapshots failed") as caught:
        read_repository(str(repo), str(wrong))
    assert "wrong password" in str(caught.value)


def test_report_posts_ok_status(
    server_factory: Callable[..., ServerProcess], repository: tuple[Path, Path]
) -> None:
    repo, password_file = repository
    server = server_factory()
    server.start()
    completed = run_report(server, repo, password_file, "--exit-code", "0")
    assert completed.returncode == 0, completed.stderr
    row = stored(server)
    snapshots = json.loads(restic(repo, password_file, "snapshots", "--json"))
    assert row["status"] == "ok"
    assert row["last_backup_at"][:19] == snapshots[0]["time"][:19]
    assert row["size_bytes"] > 0
    assert row["stale"] is False
    assert PASSWORD not in completed.stderr + server.log()


def test_report_maps_exit_codes(
    server_factory: Callable[..., ServerProcess], repository: tuple[Path, Path]
) -> None:
    repo, password_file = repository
    server = server_factory()
    server.start()
    for code, status in (("3", "partial"), ("1", "failed"), ("130", "failed")):
        completed = run_report(
            server, repo, password_file, "--exit-code", code, "--source", f"s{code}"
        )
        assert completed.returncode == 0, completed.stderr
        row = stored(server, f"s{code}")
        assert row["status"] == status
        # The earlier snapshot is still the last success.
        assert row["last_success_at"] is not None


def test_report_wrong_password_posts_failed(
    server_factory: Callable[..., ServerProcess],
    repository: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    repo, _ = repository
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password\n")
    server = server_factory()
    server.start()
    completed = run_report(server, repo, wrong)
    assert completed.returncode == 0, completed.stderr
    row = stored(server)
    assert row["status"] == "failed"
    assert "wrong password" in row["error"]
    # A source first seen just now has its stale window ahead of it.
    assert row["stale"] is False


def test_report_server_down_exits_1(repository: tuple[Path, Path], tmp_path) -> None:  # noqa: ANN001
    repo, password_file = repository
    server = ServerProcess({}, 9, tmp_path / "unused.log")
    completed = run_report(server, repo, password_file)
    assert completed.returncode == 1
    assert "posting the backup status" in completed.stderr


def test_report_missing_password_file(repository: tuple[Path, Path], tmp_path) -> None:  # noqa: ANN001
    repo, _ = repository
    server = ServerProcess({}, 9, tmp_path / "unused.log")
    completed = run_report(server, repo, tmp_path / "nope")
    assert completed.returncode != 0
    assert "--password-file" in completed.stderr
