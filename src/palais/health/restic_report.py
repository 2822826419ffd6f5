"""``palais backup report``: read a restic repository and post its status.

restic is run from PATH with the repository and password file given on the
command line (never the password itself). ``snapshots --json`` gives the
newest snapshot by ``time``; ``stats --json --mode raw-data`` gives the bytes
stored in the repository.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from palais import validation as v
from palais.errors import ApiError

log = logging.getLogger(__name__)

RESTIC_TIMEOUT_SECONDS = 600.0
POST_TIMEOUT_SECONDS = 30.0
# restic exit codes of `restic backup`: 0 success, 3 some source data unread.
EXIT_OK = 0
EXIT_PARTIAL = 3


class ResticError(Exception):
    """restic failed; the message is its own error text, without secrets."""


@dataclass(frozen=True)
class RepositoryState:
    newest_snapshot_at: datetime | None
    newest_snapshot_id: str | None
    snapshot_count: int
    size_bytes: int | None


def run_restic(repo: str, password_file: str, *args: str) -> Any:
    """Run ``restic -r REPO --password-file FILE ARGS --json`` and parse stdout."""
    command = ["restic", "-r", repo, "--password-file", password_file, *args, "--json"]
    # A password, password command or repository in the caller's environment
    # could conflict with the options given here, so they are removed.
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in ("RESTIC_PASSWORD", "RESTIC_PASSWORD_COMMAND", "RESTIC_REPOSITORY")
    }
    try:
        completed = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=RESTIC_TIMEOUT_SECONDS,
            env=env,
            check=False,
        )
    except FileNotFoundError:
        raise ResticError("restic is not installed or not on PATH") from None
    except subprocess.TimeoutExpired:
        raise ResticError(
            f"restic {args[0]} timed out after {RESTIC_TIMEOUT_SECONDS:g} s"
        ) from None
    if completed.returncode != 0:
        raise ResticError(
            f"restic {args[0]} failed (exit {completed.returncode}): "
            f"{_restic_message(completed.stderr)}"
        )
    try:
        return json.loads(completed.stdout)
    except ValueError:
        raise ResticError(f"restic {args[0]} printed output that is not JSON") from None


def _restic_message(stderr: str) -> str:
    """Return the message of restic's final ``exit_error`` line, else its stderr."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and document.get("message_type") == "exit_error":
            return str(document.get("message", ""))[:500]
    return " ".join(lines)[-500:] or "no error output"


def newest_snapshot(snapshots: list[Any], now: datetime) -> tuple[datetime, str]:
    """Return the time and id of the newest snapshot by ``time``.

    Times carry the offset of the host that made the snapshot and up to 9
    fractional digits; they are compared in UTC.
    """
    newest_at: datetime | None = None
    newest_id = ""
    for snapshot in snapshots:
        if not isinstance(snapshot, dict):
            continue
        try:
            snapshot_time = v.timestamp(
                snapshot.get("time"), "time", now=now, allow_future=True
            )
        except ApiError as exc:
            raise ResticError(f"restic snapshot with {exc.error}") from None
        if newest_at is None or snapshot_time > newest_at:
            newest_at, newest_id = snapshot_time, str(snapshot.get("id", ""))
    if newest_at is None:
        raise ResticError("the repository has no snapshot")
    return newest_at, newest_id


def read_repository(repo: str, password_file: str) -> RepositoryState:
    snapshots = run_restic(repo, password_file, "snapshots")
    if not isinstance(snapshots, list):
        raise ResticError("restic snapshots --json did not print a list")
    newest_at, newest_id = None, None
    if snapshots:
        newest_at, newest_id = newest_snapshot(snapshots, datetime.now(UTC))
    stats = run_restic(repo, password_file, "stats", "--mode", "raw-data")
    size = stats.get("total_size") if isinstance(stats, dict) else None
    return RepositoryState(
        newest_snapshot_at=newest_at,
        newest_snapshot_id=newest_id or None,
        snapshot_count=len(snapshots),
        size_bytes=size if isinstance(size, int) else None,
    )


def status_for(exit_code: int | None, state: RepositoryState | None) -> str:
    """Map the exit code of `restic backup` to a Palais status.

    Without an exit code the repository decides: a snapshot means ok.
    """
    if exit_code is None:
        return "ok" if state and state.newest_snapshot_at else "failed"
    if exit_code == EXIT_OK:
        return "ok"
    if exit_code == EXIT_PARTIAL:
        return "partial"
    return "failed"


def build_body(
    node: str | None,
    source: str,
    exit_code: int | None,
    state: RepositoryState | None,
    error: str | None,
    now: datetime,
) -> dict[str, Any]:
    status = status_for(exit_code, state)
    newest = state.newest_snapshot_at if state else None
    if status in ("ok", "partial") and newest is not None:
        backup_at = newest
    else:
        # A failed run made no snapshot: the attempt happened now.
        backup_at = now
    body: dict[str, Any] = {
        "source": source,
        "status": status,
        "last_backup_at": _iso(backup_at),
        "last_success_at": _iso(newest),
        "size_bytes": state.size_bytes if state else None,
        "details": {
            "origin": "restic",
            "exit_code": exit_code,
            "snapshots": state.snapshot_count if state else None,
            "snapshot_id": state.newest_snapshot_id if state else None,
        },
    }
    if error:
        body["details"]["error"] = error
    if node:
        body["node"] = node
    return body


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def post_status(url: str, token: str, body: dict[str, Any]) -> httpx.Response:
    endpoint = url.rstrip("/") + "/api/v1/health/backup/webhook"
    return httpx.post(
        endpoint,
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=POST_TIMEOUT_SECONDS,
    )


def report(
    *,
    url: str,
    token: str,
    repo: str,
    password_file: str,
    node: str | None,
    source: str,
    exit_code: int | None,
) -> int:
    """Read the repository, post the status and return the process exit code."""
    state, error = None, None
    try:
        state = read_repository(repo, password_file)
    except ResticError as exc:
        error = str(exc)
        log.error("reading the repository failed: %s", error)
    body = build_body(node, source, exit_code, state, error, datetime.now(UTC))
    if error is not None:
        body["status"] = "failed"

    try:
        response = post_status(url, token, body)
    except httpx.HTTPError as exc:
        log.error("posting the backup status to %s failed: %s", url, exc)
        return 1
    if response.status_code >= 300:
        log.error(
            "Palais rejected the backup status (HTTP %d): %s",
            response.status_code,
            response.text[:500],
        )
        return 1
    log.info(
        "posted backup status %s for %s (%s snapshots)",
        body["status"],
        source,
        state.snapshot_count if state else "unknown",
    )
    return 0
