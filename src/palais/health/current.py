"""Current node state read as plain rows, for pages and the nodes API.

Builds the same views as :func:`palais.health.nodes.list_nodes`, but selects
columns instead of ORM objects: at 100 nodes with 20 services each, creating
2,000 ORM instances cost more than the queries themselves.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from palais.db.models import Node, ServiceState
from palais.health.nodes import iso, node_status


async def read_nodes(
    session: AsyncSession, *, now: datetime, offline_after: float
) -> list[dict[str, Any]]:
    nodes = await session.execute(
        select(
            Node.id,
            Node.name,
            Node.tailscale_ip,
            Node.last_seen_at,
            Node.cpu_percent,
            Node.ram_percent,
            Node.disk_percent,
            Node.temperature,
        ).order_by(Node.name)
    )
    # Only the services of each node's newest report, as in list_nodes.
    states = await session.execute(
        select(
            ServiceState.node_id,
            ServiceState.service_name,
            ServiceState.status,
            ServiceState.response_time_ms,
            ServiceState.checked_at,
            ServiceState.details,
        )
        .join(Node, Node.id == ServiceState.node_id)
        .where(ServiceState.checked_at >= Node.last_seen_at)
        .order_by(ServiceState.service_name)
    )
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
