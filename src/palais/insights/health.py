"""Insights about nodes and services: offline nodes and unhealthy services.

Evaluated from the current-state tables (never the history), so a pass costs
two small queries whatever the size of the history.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from palais.db.models import Node, ServiceState
from palais.health.cards import failure_reason
from palais.health.nodes import plain_time
from palais.insights.service import open_insight, open_keys, resolve_insights

OFFLINE_PREFIX = "node-offline:"
UNHEALTHY_PREFIX = "service-unhealthy:"


async def evaluate_nodes(
    session: AsyncSession, *, now: datetime, offline_after: float
) -> None:
    """Open or resolve node-offline and service-unhealthy insights, then commit."""
    await _evaluate_offline(session, now, offline_after)
    await _evaluate_services(session, now)
    await session.commit()


async def _evaluate_offline(
    session: AsyncSession, now: datetime, offline_after: float
) -> None:
    # A node that never reported has not gone offline, so it gets no warning.
    cutoff = now - timedelta(seconds=offline_after)
    rows = await session.execute(
        select(Node.name, Node.last_seen_at).where(Node.last_seen_at.is_not(None))
    )
    offline = {}
    for name, last_seen_at in rows:
        if last_seen_at < cutoff:
            offline[OFFLINE_PREFIX + name] = (name, last_seen_at)
    # Opening only the new keys keeps a pass at a few queries, however many
    # conditions stay open from one pass to the next.
    already_open = await open_keys(session, OFFLINE_PREFIX)
    for key, (name, last_seen_at) in offline.items():
        if key in already_open:
            continue
        await open_insight(
            session,
            key=key,
            severity="warning",
            source="health",
            title=f"Node {name} is offline",
            body=(
                f"No report from {name} since {plain_time(last_seen_at)} "
                f"(offline after {offline_after:g} s)."
            ),
            now=now,
        )
    cleared = already_open - set(offline)
    await resolve_insights(session, cleared, now)


async def _evaluate_services(session: AsyncSession, now: datetime) -> None:
    # Only services of each node's newest report: a service that is no longer
    # reported resolves its insight instead of keeping it open forever.
    rows = await session.execute(
        select(Node.name, ServiceState.service_name, ServiceState.details)
        .join(Node, Node.id == ServiceState.node_id)
        .where(
            ServiceState.checked_at >= Node.last_seen_at,
            ServiceState.status == "unhealthy",
        )
    )
    unhealthy = {}
    for node, service, details in rows:
        unhealthy[f"{UNHEALTHY_PREFIX}{node}:{service}"] = (node, service, details)
    already_open = await open_keys(session, UNHEALTHY_PREFIX)
    for key, (node, service, details) in unhealthy.items():
        if key in already_open:
            continue
        error = failure_reason("unhealthy", details)
        body = f"The last check of {service} on {node} failed"
        body += f": {error}." if error else "."
        await open_insight(
            session,
            key=key,
            severity="warning",
            source="health",
            title=f"Service {service} on {node} is unhealthy",
            body=body,
            now=now,
        )
    cleared = already_open - set(unhealthy)
    await resolve_insights(session, cleared, now)
