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
from typing import Any

from sqlalchemy import ColumnElement, case, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from palais.db.models import HealthCheck, HealthMinute, HistoryRollupState
from palais.db.types import utcnow
from palais.db.upsert import insert_for
from palais.health.history import status_rank

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

        merged = await _merge_range(session, state.previous_check_id, newest, now)
        await session.execute(
            delete(HealthMinute).where(HealthMinute.minute < now - KEEP)
        )
        state.previous_check_id = state.last_check_id
        state.last_check_id = max(newest, state.last_check_id)
    return merged


async def _merge_range(
    session: AsyncSession, after_id: int, newest: int, now: datetime
) -> int:
    """Merge the worst status per node and minute of a range of check ids.

    One INSERT ... SELECT, so the rows never pass through Python: with 10,000
    checks a second, building them as dicts each pass took enough CPU in the
    worker to show in the webhook's p99.
    """
    minute = stored_minute(session)
    rows = (
        select(HealthCheck.node_id, minute, status_rank())
        .where(
            HealthCheck.id > after_id,
            HealthCheck.id <= newest,
            HealthCheck.checked_at >= now - KEEP,
        )
        .group_by(HealthCheck.node_id, minute)
    )
    table = HealthMinute.__table__
    statement = insert_for(session, table).from_select(
        ["node_id", "minute", "worst"], rows
    )
    statement = statement.on_conflict_do_update(
        index_elements=["minute", "node_id"],
        set_={
            "worst": case(
                (statement.excluded.worst > table.c.worst, statement.excluded.worst),
                else_=table.c.worst,
            )
        },
    )
    result = await session.execute(statement)
    return result.rowcount or 0


def stored_minute(session: AsyncSession) -> ColumnElement[Any]:
    """Return the check's minute in the form the ``minute`` column stores.

    On SQLite that is the naive UTC text SQLAlchemy writes for a datetime.
    """
    if session.bind.dialect.name == "postgresql":
        return func.date_trunc("minute", HealthCheck.checked_at)
    return func.substr(HealthCheck.checked_at, 1, 16).concat(":00.000000")


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
