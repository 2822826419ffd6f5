"""The background loop that re-evaluates time-based insights."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from palais.config import Settings
from palais.db.types import utcnow
from palais.health.backup import evaluate_backups
from palais.insights.health import evaluate_nodes

log = logging.getLogger(__name__)

# Backups must be re-evaluated at least every 60 s; nodes go offline with no
# event at all, so they are checked by time too.
EVALUATE_EVERY_SECONDS = 30.0


async def evaluate_once(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    now = utcnow()
    async with sessions() as session:
        await evaluate_backups(
            session, now=now, stale_hours=settings.backup_stale_hours
        )
    async with sessions() as session:
        await evaluate_nodes(
            session, now=now, offline_after=settings.offline_after_seconds
        )


async def insights_loop(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    interval: float = EVALUATE_EVERY_SECONDS,
) -> None:
    log.info("insight evaluator started: every %g s", interval)
    try:
        while True:
            try:
                await evaluate_once(settings, sessions)
            except Exception:
                log.exception("evaluating insights failed; retrying in %g s", interval)
            await asyncio.sleep(interval)
    finally:
        log.info("insight evaluator stopped")
