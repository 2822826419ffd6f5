"""Store a health report in one transaction."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from palais.db.models import HealthCheck, Node, PeerLink, ServiceState, WebhookEvent
from palais.db.types import utcnow
from palais.db.upsert import insert_for
from palais.errors import ApiError
from palais.health.report import HealthReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    duplicate: bool
    node: str
    checks: int


async def ingest_report(
    session: AsyncSession, report: HealthReport, *, auto_register: bool
) -> IngestResult:
    """Write the report's checks, current state and node metrics, or nothing.

    The caller's session must not have an open transaction: everything below
    commits together, so a crash or a duplicate leaves no partial report.
    """
    async with session.begin():
        node_id = await _node_id(session, report.node, auto_register)
        if report.event_id is not None:
            if not await _claim_event(session, report.event_id, node_id):
                return IngestResult(duplicate=True, node=report.node, checks=0)

        if report.services:
            await _insert_checks(session, node_id, report)
            await _upsert_service_states(session, node_id, report)
        if report.peers:
            await _upsert_peer_links(session, node_id, report)
        await _update_node_metrics(session, node_id, report)
    return IngestResult(duplicate=False, node=report.node, checks=len(report.services))


async def _node_id(session: AsyncSession, name: str, auto_register: bool) -> int:
    node_id = await session.scalar(select(Node.id).where(Node.name == name))
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
    statement = (
        insert_for(session, Node.__table__)
        .values(name=name, status="unknown", created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["name"])
    )
    await session.execute(statement)
    log.info("registered node %s on its first report", name)
    return await session.scalar(select(Node.id).where(Node.name == name))


async def _claim_event(session: AsyncSession, event_id: str, node_id: int) -> bool:
    """Record the event id. Return False when a delivery already stored it."""
    statement = (
        insert_for(session, WebhookEvent.__table__)
        .values(event_id=event_id, node_id=node_id, received_at=utcnow())
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(WebhookEvent.event_id)
    )
    return (await session.execute(statement)).first() is not None


async def _insert_checks(
    session: AsyncSession, node_id: int, report: HealthReport
) -> None:
    rows = [
        {
            "node_id": node_id,
            "service_name": check.name,
            "status": check.status,
            "response_time_ms": check.response_time_ms,
            "checked_at": report.timestamp,
            "details": check.details,
        }
        for check in report.services
    ]
    await session.execute(HealthCheck.__table__.insert(), rows)


async def _upsert_service_states(
    session: AsyncSession, node_id: int, report: HealthReport
) -> None:
    table = ServiceState.__table__
    statement = insert_for(session, table)
    # An older report (a spooled one delivered late) must not replace newer state.
    statement = statement.on_conflict_do_update(
        index_elements=["node_id", "service_name"],
        set_={
            "status": statement.excluded.status,
            "response_time_ms": statement.excluded.response_time_ms,
            "checked_at": statement.excluded.checked_at,
            "details": statement.excluded.details,
        },
        where=table.c.checked_at <= statement.excluded.checked_at,
    )
    rows = [
        {
            "node_id": node_id,
            "service_name": check.name,
            "status": check.status,
            "response_time_ms": check.response_time_ms,
            "checked_at": report.timestamp,
            "details": check.details,
        }
        for check in report.services
    ]
    await session.execute(statement, rows)


async def _upsert_peer_links(
    session: AsyncSession, node_id: int, report: HealthReport
) -> None:
    table = PeerLink.__table__
    statement = insert_for(session, table)
    statement = statement.on_conflict_do_update(
        index_elements=["node_id", "peer_name"],
        set_={
            "latency_ms": statement.excluded.latency_ms,
            "measured_at": statement.excluded.measured_at,
        },
        where=table.c.measured_at <= statement.excluded.measured_at,
    )
    rows = [
        {
            "node_id": node_id,
            "peer_name": peer.node,
            "latency_ms": peer.latency_ms,
            "measured_at": report.timestamp,
        }
        for peer in report.peers
    ]
    await session.execute(statement, rows)


async def _update_node_metrics(
    session: AsyncSession, node_id: int, report: HealthReport
) -> None:
    # Metrics move only forward: a late report keeps its checks in the history
    # but leaves the newer figures in place.
    await session.execute(
        update(Node)
        .where(
            Node.id == node_id,
            or_(Node.last_seen_at.is_(None), Node.last_seen_at <= report.timestamp),
        )
        .values(
            status="online",
            last_seen_at=report.timestamp,
            cpu_percent=report.cpu_percent,
            ram_percent=report.ram_percent,
            disk_percent=report.disk_percent,
            temperature=report.temperature,
        )
    )
