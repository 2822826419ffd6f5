"""Alembic migrations run forwards and backwards on both backends."""

from __future__ import annotations

import asyncio

from sqlalchemy import inspect

from palais.config import sqlalchemy_url
from palais.db.engine import create_engine, downgrade, upgrade

CORE_TABLES = {
    "nodes",
    "health_checks",
    "service_states",
    "peer_links",
    "webhook_events",
    "backup_status",
    "tasks",
    "deliverables",
    "insights",
}


async def table_names(engine) -> set[str]:  # noqa: ANN001
    async with engine.connect() as connection:
        return set(
            await connection.run_sync(lambda sync: inspect(sync).get_table_names())
        )


def test_upgrade_then_downgrade(database_url: str) -> None:
    async def run() -> tuple[set[str], set[str], set[str]]:
        engine = create_engine(sqlalchemy_url(database_url))
        try:
            await upgrade(engine)
            after_upgrade = await table_names(engine)
            await downgrade(engine, "base")
            after_downgrade = await table_names(engine)
            await upgrade(engine)
            after_second_upgrade = await table_names(engine)
        finally:
            await engine.dispose()
        return after_upgrade, after_downgrade, after_second_upgrade

    upgraded, downgraded, upgraded_again = asyncio.run(run())

    assert CORE_TABLES <= upgraded
    assert downgraded <= {"alembic_version"}
    assert upgraded_again == upgraded


def test_upgrade_is_idempotent(database_url: str) -> None:
    async def run() -> set[str]:
        engine = create_engine(sqlalchemy_url(database_url))
        try:
            await upgrade(engine)
            await upgrade(engine)
            return await table_names(engine)
        finally:
            await engine.dispose()

    assert CORE_TABLES <= asyncio.run(run())
