"""Prune health history older than the retention window, in small batches."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from palais.db.models import HealthCheck, WebhookEvent
from palais.db.types import utcnow

log = logging.getLogger(__name__)

# Small batches keep each DELETE short, so ingest does not wait long behind
# the pruner (an estimate: the batch time was not measured on a large table).
BATCH_SIZE = 2_000
PAUSE_BETWEEN_BATCHES = 0.05
PRUNE_EVERY_SECONDS = 600


async def prune_batch(session: AsyncSession, model, column, cutoff: datetime) -> int:  # noqa: ANN001
    key = list(model.__table__.primary_key.columns)[0]
    batch = select(key).where(column < cutoff).order_by(key).limit(BATCH_SIZE)
    result = await session.execute(delete(model).where(key.in_(batch)))
    await session.commit()
    return result.rowcount or 0


async def prune_history(
    sessions: async_sessionmaker[AsyncSession], retention_days: float
) -> int:
    """Delete checks and event ids older than the window; return the count."""
    cutoff = utcnow() - timedelta(days=retention_days)
    total = 0
    for model, column in (
        (HealthCheck, HealthCheck.checked_at),
        (WebhookEvent, WebhookEvent.received_at),
    ):
        while True:
            async with sessions() as session:
                deleted = await prune_batch(session, model, column, cutoff)
            total += deleted
            if deleted < BATCH_SIZE:
                break
            await asyncio.sleep(PAUSE_BETWEEN_BATCHES)
    return total


async def retention_loop(
    sessions: async_sessionmaker[AsyncSession], retention_days: float
) -> None:
    log.info("retention pruner started: keeping %g days of history", retention_days)
    while True:
        try:
            deleted = await prune_history(sessions, retention_days)
            if deleted:
                log.info("pruned %d rows older than %g days", deleted, retention_days)
        except Exception:
            log.exception("pruning health history failed; retrying later")
        await asyncio.sleep(PRUNE_EVERY_SECONDS)
