"""Backup status: the webhook bodies, the stored rows and their staleness.

Two bodies are accepted on the same route. The plain one is
``{"node", "source", "status", "last_backup_at", "next_backup_at",
"size_bytes"}``, sent by ``palais backup report``, n8n or a script. The other
is the body of Zerobyte's backup hooks (``jobId``, ``scheduleId``,
``phase``, ``event``, ``status``, ``error``), where the schedule id is the
source and the time of receipt is the backup time.

A row counts as stale when its last successful backup is older than
PALAIS_BACKUP_STALE_HOURS, or, when no success was ever recorded, once Palais
has known the row for longer than that. Each stale
row has one open ``warning`` insight, which the next fresh success resolves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from palais import validation as v
from palais.db.models import BackupStatus, Node
from palais.db.upsert import insert_for
from palais.errors import ApiError
from palais.health.nodes import iso, plain_time
from palais.health.report import node_name
from palais.insights.service import open_insight, open_keys, resolve_insights

log = logging.getLogger(__name__)

STATUSES = ("ok", "failed", "running", "partial")
# A partial run (restic exit 3, Zerobyte "warning") still wrote a snapshot, so
# it counts as a success for staleness. Its status still shows "partial".
SUCCESS_STATUSES = ("ok", "partial")
ZEROBYTE_PHASES = ("pre", "post")
# Zerobyte post-hook status -> Palais status. A cancelled run left no snapshot.
ZEROBYTE_STATUSES = {
    "success": "ok",
    "warning": "partial",
    "error": "failed",
    "cancelled": "failed",
}
DEFAULT_SOURCE = "default"
MAX_SOURCE = 200
MAX_ERROR_CHARS = 2000
# Integers above 2**53 lose precision as JSON numbers in most senders.
MAX_SIZE_BYTES = 2**53
STALE_PREFIX = "backup-stale:"


@dataclass(frozen=True)
class BackupUpdate:
    node: str
    source: str
    status: str
    backup_at: datetime | None
    success_at: datetime | None
    next_backup_at: datetime | None
    size_bytes: int | None
    details: dict[str, Any] | None


def is_zerobyte_hook(body: dict[str, Any]) -> bool:
    return "phase" in body or "event" in body


def is_zerobyte_pre_hook(body: dict[str, Any]) -> bool:
    return body.get("phase") == "pre" or body.get("event") == "backup.pre"


def parse_backup(
    body: dict[str, Any], query_node: str | None, default_node: str, now: datetime
) -> BackupUpdate:
    """Check a webhook body of either shape; raise ApiError on the first bad field.

    The node comes from the body, else ``?node=``, else ``default_node``
    (the server's own node, PALAIS_SELF_NODE).
    """
    if query_node is not None:
        query_node = node_name(query_node, "node")
    if is_zerobyte_hook(body):
        return _parse_zerobyte(body, query_node or default_node, now)
    return _parse_plain(body, query_node, default_node, now)


def _parse_plain(
    body: dict[str, Any], query_node: str | None, default_node: str, now: datetime
) -> BackupUpdate:
    node = query_node or default_node
    if body.get("node") is not None:
        node = node_name(body["node"], "node")
        if query_node is not None and query_node != node:
            raise v.invalid(
                "node", body["node"], f"the same node as ?node= ({query_node})"
            )

    status = v.choice(v.required(body, "status"), "status", STATUSES)
    backup_at = v.optional_timestamp(
        body.get("last_backup_at"), "last_backup_at", now=now
    )
    if backup_at is None and status != "running":
        backup_at = now
    success_at = v.optional_timestamp(
        body.get("last_success_at"), "last_success_at", now=now
    )
    if status in SUCCESS_STATUSES:
        success_at = max(filter(None, [success_at, backup_at]))
    return BackupUpdate(
        node=node,
        source=_source(body.get("source"), "source"),
        status=status,
        backup_at=backup_at,
        success_at=success_at,
        next_backup_at=v.optional_timestamp(
            body.get("next_backup_at"), "next_backup_at", now=now, allow_future=True
        ),
        size_bytes=_size(body.get("size_bytes")),
        details=v.object_or_none(body.get("details"), "details"),
    )


def _parse_zerobyte(body: dict[str, Any], node: str, now: datetime) -> BackupUpdate:
    phase = v.choice(v.required(body, "phase"), "phase", ZEROBYTE_PHASES)
    source = _source(v.required(body, "scheduleId"), "scheduleId")
    details: dict[str, Any] = {"origin": "zerobyte"}
    for key, name in (("jobId", "job_id"), ("sourcePath", "source_path")):
        if isinstance(body.get(key), str):
            details[name] = body[key][:MAX_SOURCE]
    if phase == "pre":
        return BackupUpdate(node, source, "running", None, None, None, None, details)

    hook_status = v.choice(
        v.required(body, "status"), "status", tuple(ZEROBYTE_STATUSES)
    )
    if isinstance(body.get("error"), str):
        details["error"] = body["error"][:MAX_ERROR_CHARS]
    status = ZEROBYTE_STATUSES[hook_status]
    success_at = now if status in SUCCESS_STATUSES else None
    return BackupUpdate(node, source, status, now, success_at, None, None, details)


def _source(value: Any, field: str) -> str:
    if value is None:
        return DEFAULT_SOURCE
    return v.text(value, field, max_length=MAX_SOURCE)


def _size(value: Any) -> int | None:
    if value is None:
        return None
    return v.integer(value, "size_bytes", minimum=0, maximum=MAX_SIZE_BYTES)


async def store_backup(
    session: AsyncSession, update: BackupUpdate, *, now: datetime, stale_hours: float
) -> dict[str, Any]:
    """Write one update and its staleness insight in one transaction."""
    async with session.begin():
        node_id = await _node_id(session, update.node)
        row = await _locked_row(session, node_id, update.source, now)
        _apply(row, update, now)
        await session.flush()
        view = backup_view(update.node, row, now=now, stale_hours=stale_hours)
        await _sync_insight(session, view, now, stale_hours)
    return view


async def _node_id(session: AsyncSession, name: str) -> int:
    node_id = await session.scalar(select(Node.id).where(Node.name == name))
    if node_id is None:
        raise ApiError(
            404,
            f"node: unknown node {name!r}; add it to PALAIS_NODES",
            field="node",
            value=name,
            accepted="a node listed in PALAIS_NODES",
        )
    return node_id


async def _locked_row(
    session: AsyncSession, node_id: int, source: str, now: datetime
) -> BackupStatus:
    # Insert-or-ignore, then lock the row, so two concurrent updates of the
    # same backup are applied one after the other.
    await session.execute(
        insert_for(session, BackupStatus.__table__)
        .values(
            node_id=node_id,
            source=source,
            status="unknown",
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["node_id", "source"])
    )
    return await session.scalar(
        select(BackupStatus)
        .where(BackupStatus.node_id == node_id, BackupStatus.source == source)
        .with_for_update()
    )


def _apply(row: BackupStatus, update: BackupUpdate, now: datetime) -> None:
    """Merge an update; an older report never replaces a newer status."""
    if update.status == "running":
        row.status = "running"
    elif row.last_backup_at is None or update.backup_at >= row.last_backup_at:
        row.status = update.status
        row.last_backup_at = update.backup_at
    if update.success_at is not None and (
        row.last_success_at is None or update.success_at > row.last_success_at
    ):
        row.last_success_at = update.success_at
    if update.next_backup_at is not None:
        row.next_backup_at = update.next_backup_at
    if update.size_bytes is not None:
        row.size_bytes = update.size_bytes
    if update.details is not None:
        row.details = update.details
    row.updated_at = now


def is_stale(row: BackupStatus, now: datetime, hours: float) -> bool:
    # A new source that has not succeeded yet is given one window to do so.
    reference = row.last_success_at or row.created_at
    return now - reference > timedelta(hours=hours)


def backup_view(
    node: str, row: BackupStatus, *, now: datetime, stale_hours: float
) -> dict[str, Any]:
    return {
        "node": node,
        "source": row.source,
        "last_backup_at": iso(row.last_backup_at),
        "last_success_at": iso(row.last_success_at),
        "next_backup_at": iso(row.next_backup_at),
        "size_bytes": row.size_bytes,
        "status": row.status,
        "updated_at": iso(row.updated_at),
        "stale": is_stale(row, now, stale_hours),
        "error": (row.details or {}).get("error"),
    }


async def list_backups(
    session: AsyncSession, *, now: datetime, stale_hours: float
) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(Node.name, BackupStatus)
        .join(Node, Node.id == BackupStatus.node_id)
        .order_by(Node.name, BackupStatus.source)
    )
    return [
        backup_view(name, row, now=now, stale_hours=stale_hours) for name, row in rows
    ]


def _stale_key(view: dict[str, Any]) -> str:
    return f"{STALE_PREFIX}{view['node']}:{view['source']}"


async def _sync_insight(
    session: AsyncSession, view: dict[str, Any], now: datetime, stale_hours: float
) -> None:
    key = _stale_key(view)
    if not view["stale"]:
        await resolve_insights(session, [key], now)
        return
    node, source = view["node"], view["source"]
    if view["last_success_at"] is None:
        body = f"No successful backup of {source} on {node} has been recorded."
    else:
        body = (
            f"The last successful backup of {source} on {node} was at "
            f"{plain_time(view['last_success_at'])}, more than {stale_hours:g} h ago."
        )
    await open_insight(
        session,
        key=key,
        severity="warning",
        source="backup",
        title=f"Backup {source} of {node} is stale",
        body=body,
        now=now,
    )


async def evaluate_backups(
    session: AsyncSession, *, now: datetime, stale_hours: float
) -> None:
    """Open or resolve the staleness insight of every backup row, then commit.

    Staleness is computed from the stored time of the last success, so a
    restart neither hides nor resets it.
    """
    views = await list_backups(session, now=now, stale_hours=stale_hours)
    for view in views:
        await _sync_insight(session, view, now, stale_hours)
    # Rows deleted with their node leave no open insight behind.
    current_keys = {_stale_key(view) for view in views}
    orphaned_keys = await open_keys(session, STALE_PREFIX) - current_keys
    await resolve_insights(session, orphaned_keys, now)
    await session.commit()
