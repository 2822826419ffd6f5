"""The embedded agent: ``palais serve`` reports its own host.

It stores the report through the same validation and ingest path as the
webhook, without HTTP, and adds a ``database`` check of Palais's own
database. It probes nothing else, so the defaults send no traffic anywhere.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from palais.agent.metrics import MetricsCollector
from palais.config import Settings
from palais.db.types import utcnow
from palais.health.ingest import ingest_report
from palais.health.report import parse_report

log = logging.getLogger(__name__)

DATABASE_CHECK_TIMEOUT = 5.0


async def database_check(sessions: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(DATABASE_CHECK_TIMEOUT):
            async with sessions() as session:
                await session.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means the check failed
        log.warning("self-check of the database failed: %s", type(exc).__name__)
        return {
            "name": "database",
            "status": "unhealthy",
            "response_time_ms": None,
            "details": {"error": type(exc).__name__},
        }
    elapsed = round((time.perf_counter() - started) * 1000, 2)
    async with sessions() as session:
        dialect = session.bind.dialect.name
    return {
        "name": "database",
        "status": "healthy",
        "response_time_ms": elapsed,
        "details": {"backend": dialect},
    }


async def report_once(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    collector: MetricsCollector,
) -> None:
    metrics = await asyncio.to_thread(collector.collect)
    body = {
        "node": settings.self_node,
        "event_id": f"self-{uuid.uuid4()}",
        **metrics,
        "services": [await database_check(sessions)],
    }
    report = parse_report(body, utcnow())
    async with sessions() as session:
        await ingest_report(session, report, auto_register=True)


async def self_agent_loop(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    collector = MetricsCollector()
    interval = settings.self_agent_interval
    log.info(
        "self-agent started: reporting as %s every %g s", settings.self_node, interval
    )
    try:
        while True:
            try:
                await report_once(settings, sessions, collector)
            except Exception:
                log.exception("self-agent report for %s failed", settings.self_node)
            await asyncio.sleep(interval)
    finally:
        log.info("self-agent stopped")
