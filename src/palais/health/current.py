"""Current node state read as plain rows, for pages and the nodes API.

Builds the same views as :func:`palais.health.nodes.list_nodes`, from two
``text()`` statements instead of ORM queries: at 100 nodes with 20 services
each, ORM loading cost more than the queries themselves.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, text
from sqlalchemy.ext.asyncio import AsyncSession

from palais.db.types import UTCDateTime
from palais.health.nodes import iso, natural_key, node_status

SELECT_NODES = text(
    "SELECT id, name, tailscale_ip, last_seen_at, cpu_percent, ram_percent,"
    " disk_percent, temperature FROM nodes"
).columns(last_seen_at=UTCDateTime())

# Only the services of each node's newest report, as in list_nodes.
SELECT_SERVICES = text(
    "SELECT s.node_id, s.service_name, s.status, s.response_time_ms,"
    " s.checked_at, s.details"
    " FROM service_states s JOIN nodes n ON n.id = s.node_id"
    " WHERE s.checked_at >= n.last_seen_at"
).columns(checked_at=UTCDateTime(), details=JSON())


async def read_nodes(
    session: AsyncSession, *, now: datetime, offline_after: float
) -> list[dict[str, Any]]:
    connection = await session.connection()
    nodes = (await connection.execute(SELECT_NODES)).all()
    states = await connection.execute(SELECT_SERVICES)

    services: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for node_id, name, status, response_time, checked_at, details in states:
        services[node_id].append(
            {
                "name": name,
                "status": status,
                "response_time_ms": response_time,
                "checked_at": iso(checked_at),
                "details": details,
            }
        )
    for node_services in services.values():
        node_services.sort(key=lambda service: natural_key(service["name"]))

    nodes.sort(key=lambda row: natural_key(row.name))
    return [_view(row, services[row.id], now, offline_after) for row in nodes]


def _view(
    row: Any, services: list[dict[str, Any]], now: datetime, offline_after: float
) -> dict[str, Any]:
    status = node_status(row.last_seen_at, now, offline_after)
    unhealthy = any(service["status"] == "unhealthy" for service in services)
    return {
        "name": row.name,
        "tailscale_ip": row.tailscale_ip,
        "status": status,
        "degraded": status == "online" and unhealthy,
        "cpu_percent": row.cpu_percent,
        "ram_percent": row.ram_percent,
        "disk_percent": row.disk_percent,
        "temperature": row.temperature,
        "last_seen_at": iso(row.last_seen_at),
        "services": services,
    }
