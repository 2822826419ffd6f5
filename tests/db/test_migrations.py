"""Alembic migrations run forwards and backwards on both backends."""

from __future__ import annotations

import asyncio

from sqlalchemy import inspect, text

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


# Rows that refer to a node, one per table. On SQLite, a migration that
# rebuilds the nodes table would delete them through ON DELETE CASCADE.
NODE_ROWS = {
    "health_checks": "INSERT INTO health_checks (node_id, service_name, status,"
    " checked_at) VALUES (1, 'api', 'healthy', '2026-12-04 10:00:00')",
    "service_states": "INSERT INTO service_states (node_id, service_name, status,"
    " checked_at) VALUES (1, 'api', 'healthy', '2026-12-04 10:00:00')",
    "peer_links": "INSERT INTO peer_links (node_id, peer_name, measured_at)"
    " VALUES (1, 'rpi5', '2026-12-04 10:00:00')",
    "webhook_events": "INSERT INTO webhook_events (event_id, node_id, received_at)"
    " VALUES ('rpi5-1', 1, '2026-12-04 10:00:00')",
    "backup_status": "INSERT INTO backup_status (node_id, source, status,"
    " created_at, updated_at) VALUES (1, 'restic', 'ok', '2026-12-04 10:00:00',"
    " '2026-12-04 10:00:00')",
}


def test_node_state_version_keeps_node_rows(database_url: str) -> None:
    async def count_node_rows(engine) -> dict[str, int]:  # noqa: ANN001
        async with engine.connect() as connection:
            return {
                table: await connection.scalar(text(f"SELECT count(*) FROM {table}"))
                for table in NODE_ROWS
            }

    async def run() -> tuple[dict, dict, dict]:
        engine = create_engine(sqlalchemy_url(database_url))
        try:
            await upgrade(engine, "0004")
            async with engine.begin() as connection:
                await connection.execute(
                    text(
                        "INSERT INTO nodes (id, name, status, created_at)"
                        " VALUES (1, 'rpi5', 'online', '2026-12-04 10:00:00')"
                    )
                )
                for statement in NODE_ROWS.values():
                    await connection.execute(text(statement))
            await upgrade(engine)
            upgraded = await count_node_rows(engine)
            async with engine.connect() as connection:
                version = await connection.scalar(
                    text("SELECT state_version FROM nodes WHERE id = 1")
                )
            await downgrade(engine, "0004")
            downgraded = await count_node_rows(engine)
        finally:
            await engine.dispose()
        return upgraded, {"state_version": version}, downgraded

    upgraded, node, downgraded = asyncio.run(run())
    assert upgraded == dict.fromkeys(NODE_ROWS, 1)
    assert node == {"state_version": 0}
    assert downgraded == dict.fromkeys(NODE_ROWS, 1)
