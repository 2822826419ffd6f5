"""Open, resolve and list insights.

Each condition has a dedupe key. The partial unique index on ``dedupe_key``
where ``resolved_at IS NULL`` allows one open insight per key, even when two
processes evaluate the same condition at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from palais.db.models import Insight
from palais.db.upsert import insert_for
from palais.health.nodes import iso

log = logging.getLogger(__name__)

SEVERITIES = ("info", "warning", "critical")


async def open_insight(
    session: AsyncSession,
    *,
    key: str,
    severity: str,
    source: str,
    title: str,
    body: str,
    now: datetime,
) -> bool:
    """Open an insight for ``key`` unless one is open; True when it was opened.

    The caller commits.
    """
    statement = (
        insert_for(session, Insight.__table__)
        .values(
            dedupe_key=key,
            severity=severity,
            source=source,
            title=title[:200],
            body=body,
            created_at=now,
        )
        .on_conflict_do_nothing(
            index_elements=["dedupe_key"], index_where=text("resolved_at IS NULL")
        )
        .returning(Insight.id)
    )
    inserted = (await session.execute(statement)).first()
    if inserted is not None:
        log.info("insight %d opened: %s (%s)", inserted[0], title, key)
    return inserted is not None


async def resolve_insights(
    session: AsyncSession, keys: Iterable[str], now: datetime
) -> int:
    """Resolve the open insights of ``keys``; return how many. The caller commits."""
    keys = list(keys)
    if not keys:
        return 0
    result = await session.execute(
        update(Insight)
        .where(Insight.dedupe_key.in_(keys), Insight.resolved_at.is_(None))
        .values(resolved_at=now)
        .returning(Insight.id, Insight.dedupe_key)
    )
    resolved = list(result)
    for insight_id, key in resolved:
        log.info("insight %d resolved (%s)", insight_id, key)
    return len(resolved)


async def open_keys(session: AsyncSession, prefix: str) -> set[str]:
    rows = await session.scalars(
        select(Insight.dedupe_key).where(
            Insight.resolved_at.is_(None), Insight.dedupe_key.startswith(prefix)
        )
    )
    return set(rows)


async def list_insights(
    session: AsyncSession, *, open_only: bool, limit: int = 200
) -> list[dict[str, Any]]:
    """Return insights, open ones first, then newest first."""
    query = select(Insight)
    if open_only:
        query = query.where(Insight.resolved_at.is_(None))
    query = query.order_by(
        Insight.resolved_at.is_not(None), Insight.created_at.desc(), Insight.id.desc()
    ).limit(limit)
    return [insight_view(row) for row in await session.scalars(query)]


def insight_view(insight: Insight) -> dict[str, Any]:
    return {
        "id": insight.id,
        "severity": insight.severity,
        "source": insight.source,
        "title": insight.title,
        "body": insight.body,
        "created_at": iso(insight.created_at),
        "resolved_at": iso(insight.resolved_at),
    }
