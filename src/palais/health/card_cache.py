"""Node card markup kept between requests and rebuilt when a node reports.

The service lists of 100 nodes with 20 services each are most of the work of
/health. A node's gauges and services change only when it reports, and
ingest raises ``nodes.state_version`` in the transaction that writes them, so
a card built for one version stays right until the next. Reading the node
list tells which cards are out of date; only their services are read again.

Each server process keeps its own cache. A background loop in every process
refreshes it every few seconds, so that a page opened after a quiet hour
does not rebuild every card while the user waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import Markup
from sqlalchemy import JSON, Row, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection, async_sessionmaker

from palais.health import cards
from palais.health.current import (
    SERVICES_OF_LAST_REPORT,
    group_services,
    read_node_list,
)

log = logging.getLogger(__name__)

REFRESH_SECONDS = 3.0

# No check time, and details only for a failed check: a card shows nothing
# else of them, and decoding every row's JSON was a visible cost.
SELECT_CARD_SERVICES = (
    text(
        "SELECT s.node_id, s.service_name, s.status, s.response_time_ms,"
        " CASE WHEN s.status <> 'healthy' THEN s.details END AS details"
        + SERVICES_OF_LAST_REPORT
        + " AND s.node_id IN :node_ids"
    )
    .bindparams(bindparam("node_ids", expanding=True))
    .columns(details=JSON())
)


@dataclass(frozen=True)
class Card:
    """The parts of a node card that change only when the node reports."""

    version: tuple[int, datetime | None]
    gauges: Markup
    services: Markup
    unhealthy: bool


def _version(node: Row[Any]) -> tuple[int, datetime | None]:
    # The report time joins the counter so that a database restored from a
    # backup, whose counters may repeat, cannot match a card built before.
    return node.state_version, node.last_seen_at


class CardCache:
    """The current card of every node, by node id."""

    def __init__(self) -> None:
        self._cards: dict[int, Card] = {}

    async def read(
        self, connection: AsyncConnection, nodes: Sequence[Row[Any]]
    ) -> dict[int, Card]:
        """Return the card of each of ``nodes``, rebuilding the out-of-date ones.

        ``nodes`` are rows of :data:`palais.health.current.SELECT_NODES`.
        """
        current: dict[int, Card] = {}
        outdated = []
        for node in nodes:
            card = self._cards.get(node.id)
            if card is not None and card.version == _version(node):
                current[node.id] = card
            else:
                outdated.append(node)
        if outdated:
            current.update(await _build(connection, outdated))

        # Only the nodes just read are kept, so the cache never outgrows them.
        self._cards = current
        return current

    async def refresh(self, sessions: async_sessionmaker) -> dict[int, Card]:
        """Bring every node's card up to date and return the cards."""
        async with sessions() as session:
            connection = await session.connection()
            return await self.read(connection, await read_node_list(connection))


async def _build(
    connection: AsyncConnection, nodes: Sequence[Row[Any]]
) -> dict[int, Card]:
    result = await connection.execute(
        SELECT_CARD_SERVICES, {"node_ids": [node.id for node in nodes]}
    )
    services = group_services(result.all())
    built = {}
    for node in nodes:
        states = services.get(node.id, [])
        built[node.id] = Card(
            version=_version(node),
            gauges=cards.gauges(node),
            services=cards.services(states),
            unhealthy=any(state.status == "unhealthy" for state in states),
        )
    return built


async def card_refresh_loop(cache: CardCache, sessions: async_sessionmaker) -> None:
    log.info("card refresh started: every %g s", REFRESH_SECONDS)
    try:
        while True:
            try:
                await cache.refresh(sessions)
            except Exception:
                log.exception("card refresh failed; retrying in %g s", REFRESH_SECONDS)
            await asyncio.sleep(REFRESH_SECONDS)
    finally:
        log.info("card refresh stopped")
