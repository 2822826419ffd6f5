"""Current state of each node, read from the current-state tables only."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from palais.db.models import Node, ServiceState


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def plain_time(value: datetime | str) -> str:
    """Format a UTC time for a sentence a person reads: ``2026-12-04 19:02 UTC``."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    value = value.astimezone(UTC)
    # strftime's %Y drops the leading zeros of years before 1000 on glibc.
    return f"{value.year:04d}-{value:%m-%d %H:%M} UTC"


DIGITS = re.compile(r"(\d+)")


@lru_cache(maxsize=8192)
def natural_key(name: str) -> tuple[tuple[tuple[int, int | str], ...], str]:
    """Sort key that puts ``s2`` before ``s10`` and ignores case.

    ``DIGITS.split`` puts the runs of digits at the odd positions. The name
    itself breaks ties (``s01`` and ``s1``), so the order is always the same.
    Names repeat on every read of the dashboard, so the keys are cached.
    """
    parts = DIGITS.split(name)
    key = tuple(
        (1, int(part)) if index % 2 else (0, part.casefold())
        for index, part in enumerate(parts)
        if part
    )
    return key, name


def node_status(
    last_seen_at: datetime | None, now: datetime, offline_after: float
) -> str:
    if last_seen_at is None or now - last_seen_at > timedelta(seconds=offline_after):
        return "offline"
    return "online"


# The ORM reading of the node list. The API serves node_cache.read_nodes,
# which selects plain columns for speed, and a test checks the two agree.
async def list_nodes(
    session: AsyncSession, *, now: datetime, offline_after: float
) -> list[dict[str, Any]]:
    nodes = sorted(
        await session.scalars(select(Node)), key=lambda node: natural_key(node.name)
    )
    # Only the services of each node's newest report: a service that stopped
    # being reported drops out instead of showing its last state forever.
    states = await session.execute(
        select(ServiceState)
        .join(Node, Node.id == ServiceState.node_id)
        .where(and_(ServiceState.checked_at >= Node.last_seen_at))
    )
    services: dict[int, list[ServiceState]] = defaultdict(list)
    for state in states.scalars():
        services[state.node_id].append(state)
    for node_services in services.values():
        node_services.sort(key=lambda state: natural_key(state.service_name))
    return [
        node_view(node, services[node.id], now=now, offline_after=offline_after)
        for node in nodes
    ]


def node_view(
    node: Node, services: list[ServiceState], *, now: datetime, offline_after: float
) -> dict[str, Any]:
    status = node_status(node.last_seen_at, now, offline_after)
    unhealthy = any(service.status == "unhealthy" for service in services)
    return {
        "name": node.name,
        "tailscale_ip": node.tailscale_ip,
        "status": status,
        "degraded": status == "online" and unhealthy,
        "cpu_percent": node.cpu_percent,
        "ram_percent": node.ram_percent,
        "disk_percent": node.disk_percent,
        "temperature": node.temperature,
        "last_seen_at": iso(node.last_seen_at),
        "services": [
            {
                "name": service.service_name,
                "status": service.status,
                "response_time_ms": service.response_time_ms,
                "checked_at": iso(service.checked_at),
                "details": service.details,
            }
            for service in services
        ],
    }
