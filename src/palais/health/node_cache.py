"""Each node's current services, kept between requests until it reports.

At 100 nodes with 20 services each, turning the 2,000 service rows into the
cards of /health and the response of ``GET /api/v1/health/nodes`` was most
of the work of both. A node's metrics and services change only when it
reports, and ingest raises ``nodes.state_version`` in the transaction that
writes them, so what was built for one version stays right until the next.
The node list carries each node's version, so only the services of the
nodes that reported since are read again.

Each server process keeps its own cache. A background loop in every process
refreshes it every few seconds, so that a page opened after a quiet hour
does not rebuild every node while the user waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from functools import cached_property
from typing import Any, NamedTuple

from markupsafe import Markup
from sqlalchemy import JSON, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from palais.db.types import UTCDateTime
from palais.health import cards
from palais.health.nodes import iso, natural_key, node_status

log = logging.getLogger(__name__)

REFRESH_SECONDS = 3.0

# Plain text() statements: at 100 nodes with 20 services each, ORM loading
# cost more than the queries themselves.
SELECT_NODES = text(
    "SELECT id, name, tailscale_ip, last_seen_at, cpu_percent, ram_percent,"
    " disk_percent, temperature, state_version FROM nodes"
).columns(last_seen_at=UTCDateTime())
# Only the services of each node's newest report, as in list_nodes.
SELECT_SERVICES_OF = (
    text(
        "SELECT s.node_id, s.service_name, s.status, s.response_time_ms,"
        " s.checked_at, s.details"
        " FROM service_states s JOIN nodes n ON n.id = s.node_id"
        " WHERE s.checked_at >= n.last_seen_at AND s.node_id IN :node_ids"
    )
    .bindparams(bindparam("node_ids", expanding=True))
    .columns(checked_at=UTCDateTime(), details=JSON())
)


# Rows are copied into named tuples once. Reading a field of SQLAlchemy's Row
# by name took about 1 µs on the benchmark VM, ten times a named tuple, and
# the views read 10,000 fields for 100 nodes with 20 services.
class NodeRow(NamedTuple):
    """A row of :data:`SELECT_NODES`."""

    id: int
    name: str
    tailscale_ip: str | None
    last_seen_at: datetime | None
    cpu_percent: float | None
    ram_percent: float | None
    disk_percent: float | None
    temperature: float | None
    state_version: int


class ServiceRow(NamedTuple):
    """A row of :data:`SELECT_SERVICES_OF`."""

    node_id: int
    service_name: str
    status: str
    response_time_ms: float | None
    checked_at: datetime
    details: Any


class CachedNode:
    """A node's service rows, and the views built from them when first used.

    The page and the API each build only their own view, so that the first
    request after many reports does not pay for both.
    """

    def __init__(self, node: NodeRow, states: list[ServiceRow]) -> None:
        self.node = node
        self.version = _version(node)
        self.states = states
        self.unhealthy = any(state.status == "unhealthy" for state in states)

    def degraded(self, status: str) -> bool:
        """Return whether the node is online with an unhealthy service."""
        return status == "online" and self.unhealthy

    def build_views(self) -> None:
        """Build both views now, so that no request waits for them."""
        _ = self.services, self.gauges_html, self.services_html

    @cached_property
    def services(self) -> list[dict[str, Any]]:
        """The API's service objects. Requests share them, so callers must not
        modify them."""
        return [_api_service(state) for state in self.states]

    @cached_property
    def gauges_html(self) -> Markup:
        return cards.gauges(self.node)

    @cached_property
    def services_html(self) -> Markup:
        return cards.services(self.states)


def _version(node: NodeRow) -> tuple[Any, ...]:
    # The report time joins the counter so that a database restored from a
    # backup, whose counters may repeat, cannot match a node built before. The
    # metrics join it so that the gauges follow a value edited by hand, as
    # the API's figures do.
    return (
        node.state_version,
        node.last_seen_at,
        node.cpu_percent,
        node.ram_percent,
        node.disk_percent,
        node.temperature,
    )


async def read_node_list(connection: AsyncConnection) -> list[NodeRow]:
    """Return every node's columns, in natural order of their names."""
    nodes = [NodeRow._make(row) for row in await connection.execute(SELECT_NODES)]
    nodes.sort(key=lambda node: natural_key(node.name))
    return nodes


class NodeCache:
    """The current services of every node, by node id."""

    def __init__(self) -> None:
        self._nodes: dict[int, CachedNode] = {}

    async def read(
        self, connection: AsyncConnection, nodes: Sequence[NodeRow]
    ) -> dict[int, CachedNode]:
        """Return each of ``nodes`` from the cache, rebuilding the outdated ones.

        ``nodes`` are rows of :data:`SELECT_NODES`.
        """
        current: dict[int, CachedNode] = {}
        outdated = []
        for node in nodes:
            cached = self._nodes.get(node.id)
            if cached is not None and cached.version == _version(node):
                current[node.id] = cached
            else:
                outdated.append(node)
        if outdated:
            current.update(await _build(connection, outdated))

        # Only the nodes just read are kept, so the cache never outgrows them.
        self._nodes = current
        return current

    async def refresh(self, sessions: async_sessionmaker) -> dict[int, CachedNode]:
        """Bring every node and both its views up to date; return them all."""
        async with sessions() as session:
            connection = await session.connection()
            nodes = await self.read(connection, await read_node_list(connection))
        for cached in nodes.values():
            cached.build_views()
        return nodes


async def _build(
    connection: AsyncConnection, nodes: Sequence[NodeRow]
) -> dict[int, CachedNode]:
    result = await connection.execute(
        SELECT_SERVICES_OF, {"node_ids": [node.id for node in nodes]}
    )
    services: dict[int, list[ServiceRow]] = defaultdict(list)
    for row in result.all():
        state = ServiceRow._make(row)
        services[state.node_id].append(state)

    built = {}
    for node in nodes:
        states = sorted(
            services.get(node.id, ()),
            key=lambda state: natural_key(state.service_name),
        )
        built[node.id] = CachedNode(node, states)
    return built


def _api_service(state: ServiceRow) -> dict[str, Any]:
    return {
        "name": state.service_name,
        "status": state.status,
        "response_time_ms": state.response_time_ms,
        "checked_at": iso(state.checked_at),
        "details": state.details,
    }


async def read_nodes(
    session: AsyncSession, cache: NodeCache, *, now: datetime, offline_after: float
) -> list[dict[str, Any]]:
    """Return the nodes as ``GET /api/v1/health/nodes`` shows them."""
    connection = await session.connection()
    nodes = await read_node_list(connection)
    cached = await cache.read(connection, nodes)
    return [
        _api_node(
            node, cached[node.id], node_status(node.last_seen_at, now, offline_after)
        )
        for node in nodes
    ]


def _api_node(node: NodeRow, cached: CachedNode, status: str) -> dict[str, Any]:
    return {
        "name": node.name,
        "tailscale_ip": node.tailscale_ip,
        "status": status,
        "degraded": cached.degraded(status),
        "cpu_percent": node.cpu_percent,
        "ram_percent": node.ram_percent,
        "disk_percent": node.disk_percent,
        "temperature": node.temperature,
        "last_seen_at": iso(node.last_seen_at),
        "services": cached.services,
    }


async def node_refresh_loop(cache: NodeCache, sessions: async_sessionmaker) -> None:
    log.info("node cache refresh started: every %g s", REFRESH_SECONDS)
    try:
        while True:
            try:
                await cache.refresh(sessions)
            except Exception:
                log.exception(
                    "node cache refresh failed; retrying in %g s", REFRESH_SECONDS
                )
            await asyncio.sleep(REFRESH_SECONDS)
    finally:
        log.info("node cache refresh stopped")
