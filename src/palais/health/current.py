"""Current node state read as plain rows, for pages and the nodes API.

Builds the same views as :func:`palais.health.nodes.list_nodes`, from two
``text()`` statements instead of ORM queries: at 100 nodes with 20 services
each, ORM loading cost more than the queries themselves.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Row, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from palais.db.types import UTCDateTime
from palais.health.nodes import iso, natural_key, node_status

SELECT_NODES = text(
    "SELECT id, name, tailscale_ip, last_seen_at, cpu_percent, ram_percent,"
    " disk_percent, temperature, state_version FROM nodes"
).columns(last_seen_at=UTCDateTime())

# Only the services of each node's newest report, as in list_nodes.
SERVICES_OF_LAST_REPORT = (
    " FROM service_states s JOIN nodes n ON n.id = s.node_id"
    " WHERE s.checked_at >= n.last_seen_at"
)
SELECT_SERVICES = text(
    "SELECT s.node_id, s.service_name, s.status, s.response_time_ms,"
    " s.checked_at, s.details" + SERVICES_OF_LAST_REPORT
).columns(checked_at=UTCDateTime(), details=JSON())


@dataclass
class NodeRow:
    """One node's columns and its current service rows, in natural order."""

    node: Row[Any]
    services: list[Row[Any]]
    status: str
    degraded: bool


async def read_node_list(connection: AsyncConnection) -> list[Row[Any]]:
    """Return every node's columns, in natural order of their names."""
    nodes = (await connection.execute(SELECT_NODES)).all()
    nodes.sort(key=lambda node: natural_key(node.name))
    return nodes


def group_services(states: Iterable[Row[Any]]) -> dict[int, list[Row[Any]]]:
    """Group service rows by node id, each list in natural order of names."""
    services: dict[int, list[Row[Any]]] = defaultdict(list)
    for state in states:
        services[state.node_id].append(state)
    for node_services in services.values():
        node_services.sort(key=lambda state: natural_key(state.service_name))
    return services


async def read_node_rows(
    session: AsyncSession, *, now: datetime, offline_after: float
) -> list[NodeRow]:
    """Read every node with the services of its newest report."""
    connection = await session.connection()
    nodes = await read_node_list(connection)
    services = group_services((await connection.execute(SELECT_SERVICES)).all())

    rows = []
    for node in nodes:
        status = node_status(node.last_seen_at, now, offline_after)
        unhealthy = any(state.status == "unhealthy" for state in services[node.id])
        degraded = status == "online" and unhealthy
        rows.append(NodeRow(node, services[node.id], status, degraded))
    return rows


async def read_nodes(
    session: AsyncSession, *, now: datetime, offline_after: float
) -> list[dict[str, Any]]:
    """Return the nodes as the API shows them, times in ISO 8601."""
    rows = await read_node_rows(session, now=now, offline_after=offline_after)
    return [_api_view(row) for row in rows]


def _api_view(row: NodeRow) -> dict[str, Any]:
    node = row.node
    return {
        "name": node.name,
        "tailscale_ip": node.tailscale_ip,
        "status": row.status,
        "degraded": row.degraded,
        "cpu_percent": node.cpu_percent,
        "ram_percent": node.ram_percent,
        "disk_percent": node.disk_percent,
        "temperature": node.temperature,
        "last_seen_at": iso(node.last_seen_at),
        "services": [
            {
                "name": state.service_name,
                "status": state.status,
                "response_time_ms": state.response_time_ms,
                "checked_at": iso(state.checked_at),
                "details": state.details,
            }
            for state in row.services
        ],
    }
