"""Store a health report in one transaction.

This is the hot path of the webhook, so it runs a fixed set of plain SQL
statements on the session's connection. SQLAlchemy compiles each ``text()``
once. The dialect-specific ``insert().on_conflict_*()`` constructs have no
cache key in SQLAlchemy 2.0, so they were compiled again for every report.
The SQL is valid on both SQLite (3.35 and later, for RETURNING) and PostgreSQL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from palais.db.models import HealthCheck, ServiceState
from palais.db.types import UTCDateTime, utcnow
from palais.errors import ApiError
from palais.health.report import HealthReport

log = logging.getLogger(__name__)

TIME = UTCDateTime()
JSON_DETAILS = HealthCheck.__table__.c.details.type

SELECT_NODE = text("SELECT id FROM nodes WHERE name = :name")
REGISTER_NODE = text(
    "INSERT INTO nodes (name, status, created_at) VALUES (:name, 'unknown', :now) "
    "ON CONFLICT (name) DO NOTHING"
).bindparams(bindparam("now", type_=TIME))
CLAIM_EVENT = text(
    "INSERT INTO webhook_events (event_id, node_id, received_at) "
    "VALUES (:event_id, :node_id, :now) "
    "ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
).bindparams(bindparam("now", type_=TIME))
INSERT_CHECKS = text(
    "INSERT INTO health_checks "
    "(node_id, service_name, status, response_time_ms, checked_at, details) "
    "VALUES (:node_id, :name, :status, :response_time_ms, :at, :details)"
).bindparams(bindparam("at", type_=TIME), bindparam("details", type_=JSON_DETAILS))
# An older report (a spooled one delivered late) must not replace newer state.
UPSERT_STATES = text(
    "INSERT INTO service_states "
    "(node_id, service_name, status, response_time_ms, checked_at, details) "
    "VALUES (:node_id, :name, :status, :response_time_ms, :at, :details) "
    "ON CONFLICT (node_id, service_name) DO UPDATE SET "
    "status = excluded.status, response_time_ms = excluded.response_time_ms, "
    "checked_at = excluded.checked_at, details = excluded.details "
    "WHERE service_states.checked_at <= excluded.checked_at"
).bindparams(
    bindparam("at", type_=TIME),
    bindparam("details", type_=ServiceState.__table__.c.details.type),
)
UPSERT_PEERS = text(
    "INSERT INTO peer_links (node_id, peer_name, latency_ms, measured_at) "
    "VALUES (:node_id, :peer, :latency_ms, :at) "
    "ON CONFLICT (node_id, peer_name) DO UPDATE SET "
    "latency_ms = excluded.latency_ms, measured_at = excluded.measured_at "
    "WHERE peer_links.measured_at <= excluded.measured_at"
).bindparams(bindparam("at", type_=TIME))
# Metrics move only forward: a late report keeps its checks in the history
# but leaves the newer figures in place.
UPDATE_NODE = text(
    "UPDATE nodes SET status = 'online', last_seen_at = :at, "
    "cpu_percent = :cpu, ram_percent = :ram, disk_percent = :disk, "
    "temperature = :temperature, state_version = state_version + 1 "
    "WHERE id = :node_id AND (last_seen_at IS NULL OR last_seen_at <= :at)"
).bindparams(bindparam("at", type_=TIME))


@dataclass(frozen=True)
class IngestResult:
    duplicate: bool
    node: str
    checks: int


class NodeIds:
    """Node ids by name, cached because nodes are never deleted or renamed.

    An id enters the cache only once the transaction that read or created it
    has committed, so that no other report refers to an uncommitted node.
    """

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    async def get(
        self, connection: AsyncConnection, name: str, auto_register: bool
    ) -> int:
        node_id = self._ids.get(name)
        if node_id is None:
            node_id = await _find_or_register(connection, name, auto_register)
        return node_id

    def remember(self, name: str, node_id: int) -> None:
        self._ids[name] = node_id


async def ingest_report(
    session: AsyncSession,
    report: HealthReport,
    *,
    auto_register: bool,
    node_ids: NodeIds | None = None,
) -> IngestResult:
    """Write the report's checks, current state and node metrics, or nothing.

    The caller's session must not have an open transaction: everything below
    commits together, so a crash or a duplicate leaves no partial report.
    """
    node_ids = node_ids or NodeIds()
    async with session.begin():
        connection = await session.connection()
        node_id = await node_ids.get(connection, report.node, auto_register)
        if report.event_id is not None:
            if not await _claim_event(connection, report.event_id, node_id):
                return IngestResult(duplicate=True, node=report.node, checks=0)

        if report.services:
            rows = _service_rows(node_id, report)
            await connection.execute(INSERT_CHECKS, rows)
            await connection.execute(UPSERT_STATES, rows)
        if report.peers:
            await connection.execute(UPSERT_PEERS, _peer_rows(node_id, report))
        await connection.execute(UPDATE_NODE, _node_values(node_id, report))
    node_ids.remember(report.node, node_id)
    return IngestResult(duplicate=False, node=report.node, checks=len(report.services))


async def _find_or_register(
    connection: AsyncConnection, name: str, auto_register: bool
) -> int:
    node_id = await connection.scalar(SELECT_NODE, {"name": name})
    if node_id is not None:
        return node_id
    if not auto_register:
        raise ApiError(
            404,
            f"node: unknown node {name!r}; add it to PALAIS_NODES or set "
            "PALAIS_AUTO_REGISTER_NODES=true",
            field="node",
            value=name,
            accepted="a node listed in PALAIS_NODES",
        )

    # Two first reports of a new node can race: ON CONFLICT keeps one row.
    await connection.execute(REGISTER_NODE, {"name": name, "now": utcnow()})
    log.info("registered node %s on its first report", name)
    return await connection.scalar(SELECT_NODE, {"name": name})


async def _claim_event(
    connection: AsyncConnection, event_id: str, node_id: int
) -> bool:
    """Record the event id. Return False when a delivery already stored it."""
    result = await connection.execute(
        CLAIM_EVENT, {"event_id": event_id, "node_id": node_id, "now": utcnow()}
    )
    return result.first() is not None


def _service_rows(node_id: int, report: HealthReport) -> list[dict[str, Any]]:
    return [
        {
            "node_id": node_id,
            "name": check.name,
            "status": check.status,
            "response_time_ms": check.response_time_ms,
            "at": report.timestamp,
            "details": check.details,
        }
        for check in report.services
    ]


def _peer_rows(node_id: int, report: HealthReport) -> list[dict[str, Any]]:
    return [
        {
            "node_id": node_id,
            "peer": peer.node,
            "latency_ms": peer.latency_ms,
            "at": report.timestamp,
        }
        for peer in report.peers
    ]


def _node_values(node_id: int, report: HealthReport) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "at": report.timestamp,
        "cpu": report.cpu_percent,
        "ram": report.ram_percent,
        "disk": report.disk_percent,
        "temperature": report.temperature,
    }
