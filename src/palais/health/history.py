"""The last hour of health checks as one-minute cells, aggregated in SQL.

A cell is the worst status of the checks in that minute (unhealthy, then
unknown, then healthy), or ``none`` when nothing was checked. The per-node
rows come from ``health_minutes``, which :mod:`palais.health.rollup` fills
from ``health_checks``. The per-service rows of one node are aggregated from
``health_checks`` directly, over its ``(node_id, checked_at)`` index. Neither
query cost grows with the length of the history.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from markupsafe import Markup
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from palais.db.models import HealthCheck, HealthMinute, Node
from palais.health.nodes import natural_key

MINUTES = 60
RANK = {"healthy": 1, "unknown": 2, "unhealthy": 3}
STATUS_OF_RANK = {rank: status for status, rank in RANK.items()}
CELL_STATUSES = (*RANK, "none")


@dataclass(frozen=True)
class Window:
    start: datetime
    minutes: list[datetime]

    @cached_property
    def _spans(self) -> list[dict[str, str]]:
        """Each minute's cell markup for each status, built once per window.

        Only fixed status names and formatted times go into the markup, so
        there is nothing to escape.
        """
        return [
            {
                status: f'<span class="cell {status}" title="{minute:%H:%M} '
                f'{status}"></span>'
                for status in CELL_STATUSES
            }
            for minute in self.minutes
        ]

    def cells(self, ranks: dict[datetime, int]) -> Markup:
        """Render one timeline row: the worst status of each minute."""
        return Markup(
            "".join(
                spans[STATUS_OF_RANK.get(ranks.get(minute, 0), "none")]
                for minute, spans in zip(self.minutes, self._spans, strict=True)
            )
        )


def last_hour(now: datetime) -> Window:
    """Return the 60 whole minutes that end with the current one."""
    current = now.astimezone(UTC).replace(second=0, microsecond=0)
    start = current - timedelta(minutes=MINUTES - 1)
    return Window(start, [start + timedelta(minutes=i) for i in range(MINUTES)])


def minute_of(session: AsyncSession) -> ColumnElement[Any]:
    column = HealthCheck.checked_at
    if session.bind.dialect.name == "postgresql":
        return func.date_trunc("minute", column)
    # SQLite stores naive UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'.
    return func.substr(column, 1, 16)


def to_minute(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def status_rank() -> ColumnElement[int]:
    return func.max(
        case(
            (HealthCheck.status == "unhealthy", RANK["unhealthy"]),
            (HealthCheck.status == "unknown", RANK["unknown"]),
            else_=RANK["healthy"],
        )
    )


async def node_timelines(
    session: AsyncSession, now: datetime
) -> tuple[Window, list[dict[str, Any]]]:
    """Return the window and, per node, its 60 cells (worst status wins).

    Reads the per-minute rollup (``health_minutes``), which the background
    rollup keeps up to date within a few seconds.
    """
    window = last_hour(now)
    rows = await session.execute(
        select(HealthMinute.node_id, HealthMinute.minute, HealthMinute.worst).where(
            HealthMinute.minute >= window.start
        )
    )
    ranks: dict[int, dict[datetime, int]] = defaultdict(dict)
    for node_id, minute, rank in rows:
        ranks[node_id][minute] = rank
    nodes = (await session.execute(select(Node.id, Node.name))).all()
    nodes.sort(key=lambda node: natural_key(node.name))
    return window, [
        {"id": node_id, "name": name, "cells": window.cells(ranks[node_id])}
        for node_id, name in nodes
    ]


async def service_timelines(
    session: AsyncSession, node_id: int, now: datetime
) -> tuple[Window, list[dict[str, Any]]]:
    """Return the window and, per service of one node, its 60 cells."""
    window = last_hour(now)
    minute = minute_of(session).label("minute")
    rows = await session.execute(
        select(HealthCheck.service_name, minute, status_rank())
        .where(HealthCheck.node_id == node_id, HealthCheck.checked_at >= window.start)
        .group_by(HealthCheck.service_name, minute)
    )
    ranks: dict[str, dict[datetime, int]] = defaultdict(dict)
    for service, value, rank in rows:
        ranks[service][to_minute(value)] = rank
    return window, [
        {"name": service, "cells": window.cells(ranks[service])}
        for service in sorted(ranks, key=natural_key)
    ]
