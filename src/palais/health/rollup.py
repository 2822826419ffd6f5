"""Background rollup of health checks into one row per node and minute.

Each pass reads the checks inserted since the previous passes (by id), takes
the worst status per node and minute, and merges it into ``health_minutes``
with a max, so reading a check twice changes nothing. Rows older than two
hours are pruned: the table only serves the one-hour timeline.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from sqlalchemy import case, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from palais.db.models import HealthCheck, HealthMinute, HistoryRollupState
from palais.db.types import utcnow
from palais.db.upsert import insert_for
from palais.health.history import minute_of, status_rank, to_minute

log = logging.getLogger(__name__)

STATE_ID = 1
ROLLUP_EVERY_SECONDS = 5.0
KEEP = timedelta(hours=2)


async def rollup_once(session: AsyncSession, now: datetime) -> int:
    """Merge new checks into health_minutes and commit; return the rows merged.

    NOTE: each pass re-reads the id range of the pass before, because on
    PostgreSQL a transaction can commit a lower id after a higher one was
    read. An ingest transaction that stays open longer than one interval
    (5 s) would be missed by the timeline, though not by the history.
    """
    async with session.begin():
        state = await session.get(HistoryRollupState, STATE_ID, with_for_update=True)
        if state is None:
            state = HistoryRollupState(
                id=STATE_ID, last_check_id=0, previous_check_id=0
            )
            session.add(state)
        newest = await session.scalar(select(func.max(HealthCheck.id)))
        if newest is None:
            return 0

        minute = minute_of(session).label("minute")
        rows = await session.execute(
            select(HealthCheck.node_id, minute, status_rank())
            .where(
                HealthCheck.id > state.previous_check_id,
                HealthCheck.id <= newest,
                HealthCheck.checked_at >= now - KEEP,
            )
            .group_by(HealthCheck.node_id, minute)
        )
        merged = [
            {"node_id": node_id, "minute": to_minute(value), "worst": rank}
            for node_id, value, rank in rows
        ]
        if merged:
            await _merge(session, merged)
        await session.execute(
            delete(HealthMinute).where(HealthMinute.minute < now - KEEP)
        )
        state.previous_check_id = state.last_check_id
        state.last_check_id = max(newest, state.last_check_id)
    return len(merged)


async def _merge(session: AsyncSession, rows: list[dict]) -> None:
    table = HealthMinute.__table__
    statement = insert_for(session, table)
    statement = statement.on_conflict_do_update(
        index_elements=["minute", "node_id"],
        set_={
            "worst": case(
                (statement.excluded.worst > table.c.worst, statement.excluded.worst),
                else_=table.c.worst,
            )
        },
    )
    await session.execute(statement, rows)


async def rollup_loop(
    sessions: async_sessionmaker[AsyncSession],
    interval: float = ROLLUP_EVERY_SECONDS,
) -> None:
    log.info("history rollup started: every %g s", interval)
    try:
        while True:
            try:
                async with sessions() as session:
                    await rollup_once(session, utcnow())
            except Exception:
                log.exception("history rollup failed; retrying in %g s", interval)
            await asyncio.sleep(interval)
    finally:
        log.info("history rollup stopped")
