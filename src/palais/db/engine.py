"""Engine, sessions and schema upgrades for SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from palais.config import PACKAGE_DIR

log = logging.getLogger(__name__)

MIGRATIONS_DIR = PACKAGE_DIR / "migrations"
# Arbitrary constants that identify Palais's advisory locks on PostgreSQL.
MIGRATION_LOCK_ID = 0x50414C01
WORKER_LOCK_ID = 0x50414C02


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        return _create_sqlite_engine(url)
    # A fixed pool: opening a PostgreSQL session per burst costs more than the
    # reports it serves. No pre-ping either, since a dropped connection makes
    # one request fail with 503 and the sender retries.
    return create_async_engine(url, pool_size=20, max_overflow=0, pool_recycle=3600)


def _create_sqlite_engine(url: str) -> AsyncEngine:
    path = url.split(":///", 1)[1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _set_pragmas(dbapi_connection, _record):  # noqa: ANN001
        cursor = dbapi_connection.cursor()
        # WAL lets readers proceed during a write; busy_timeout makes a second
        # writer wait for the lock instead of failing at once.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection, revision: str) -> None:
    command.upgrade(alembic_config(connection), revision)


def _downgrade(connection: Connection, revision: str) -> None:
    command.downgrade(alembic_config(connection), revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the schema, one process at a time on PostgreSQL."""
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID}
            )
        await connection.run_sync(_upgrade, revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(_downgrade, revision)
