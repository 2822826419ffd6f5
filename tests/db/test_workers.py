"""Background work runs in one process at a time, on both backends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from palais import workers as workers_module
from palais.config import sqlalchemy_url
from palais.db.engine import create_engine
from palais.workers import Workers


@pytest.fixture(autouse=True)
def fast_leader_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers_module, "LEADER_RETRY_SECONDS", 0.2)
    monkeypatch.setattr(workers_module, "LOCK_CHECK_SECONDS", 0.2)


class Marker:
    """A background loop that records whether it is running."""

    def __init__(self) -> None:
        self.running = False
        self.starts = 0

    async def loop(self) -> None:
        self.running = True
        self.starts += 1
        try:
            await asyncio.Event().wait()
        finally:
            self.running = False


async def wait_for(condition, seconds: float = 10.0) -> None:  # noqa: ANN001
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def two_leaders(
    database_url: str, lock_path: Path | None
) -> AsyncIterator[tuple[AsyncEngine, Marker, Marker, list[Workers]]]:
    """Start a leader, wait until its loop runs, then start a second one."""
    engine = create_engine(sqlalchemy_url(database_url))
    first, second = Marker(), Marker()
    leaders = [Workers(engine, lock_path) for _ in range(2)]
    leaders[0].add("marker", first.loop)
    leaders[1].add("marker", second.loop)
    try:
        leaders[0].start()
        await wait_for(lambda: first.running)
        leaders[1].start()
        yield engine, first, second, leaders
    finally:
        for leader in leaders:
            await leader.stop()
        await engine.dispose()


def test_one_leader_at_a_time(database_url: str, tmp_path: Path) -> None:
    async def run() -> tuple[bool, bool, bool]:
        async with two_leaders(database_url, tmp_path / "workers.lock") as context:
            _engine, first, second, leaders = context
            await asyncio.sleep(1.0)
            both_ran = second.running
            await leaders[0].stop()
            await wait_for(lambda: second.running)
            return first.running, both_ran, second.running

    first_running, both_ran, second_took_over = asyncio.run(run())
    assert not first_running
    assert not both_ran
    assert second_took_over


def test_leader_stops_when_lock_connection_dies(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite leads through a file lock, which has no connection")

    async def run() -> tuple[bool, int, bool]:
        async with two_leaders(database_url, None) as (engine, first, second, _):
            async with engine.connect() as connection:
                killed = await connection.scalar(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_locks"
                        " WHERE locktype = 'advisory' AND database ="
                        " (SELECT oid FROM pg_database"
                        "  WHERE datname = current_database())"
                    )
                )
            await wait_for(lambda: second.running)
            await asyncio.sleep(1.0)
            return first.running, killed, second.running

    first_running, killed, second_running = asyncio.run(run())
    assert killed == 1
    assert not first_running
    assert second_running


def test_every_process_loops_run_beside_the_leader(
    database_url: str, tmp_path: Path
) -> None:
    leads = [Marker(), Marker()]
    locals_ = [Marker(), Marker()]

    async def run() -> tuple[list[bool], list[bool]]:
        engine = create_engine(sqlalchemy_url(database_url))
        processes = [Workers(engine, tmp_path / "workers.lock") for _ in range(2)]
        for process, lead, local in zip(processes, leads, locals_, strict=True):
            process.add("lead", lead.loop)
            process.add("local", local.loop, every_process=True)
        try:
            for process in processes:
                process.start()
            await wait_for(lambda: all(local.running for local in locals_))
            await wait_for(lambda: any(lead.running for lead in leads))
            await asyncio.sleep(0.5)
            return [lead.running for lead in leads], [m.running for m in locals_]
        finally:
            for process in processes:
                await process.stop()
            await engine.dispose()

    leads_running, locals_running = asyncio.run(run())
    assert sorted(leads_running) == [False, True]
    assert locals_running == [True, True]
    # Stopping a process stops its own loops too.
    assert not any(marker.running for marker in leads + locals_)
