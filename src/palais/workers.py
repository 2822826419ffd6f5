"""Background work, most of it run by one process at a time.

Several Palais processes may share one database. With PostgreSQL the one
that holds a session-level advisory lock runs the loops. With SQLite it is the
one that holds an flock on a file in the data directory. The others keep
trying to take the lock over. Loops added with ``every_process`` keep a
process's own memory up to date, so every process runs them.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from palais.db.engine import WORKER_LOCK_ID

log = logging.getLogger(__name__)

Loop = Callable[[], Awaitable[None]]
LEADER_RETRY_SECONDS = 15.0
# How often the leader checks that the connection holding its advisory lock is
# alive. PostgreSQL frees the lock when that session ends, and another process
# may take it over within LEADER_RETRY_SECONDS.
LOCK_CHECK_SECONDS = 5.0
LOCK_CHECK_TIMEOUT_SECONDS = 5.0


class Workers:
    def __init__(self, engine: AsyncEngine, lock_path: Path | None = None) -> None:
        self.engine = engine
        self.lock_path = lock_path
        self.loops: dict[str, Loop] = {}
        self.local_loops: dict[str, Loop] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def add(self, name: str, loop: Loop, *, every_process: bool = False) -> None:
        """Register a loop for the lock holder, or with ``every_process`` for
        each process (for state a process keeps in memory, such as a cache)."""
        if every_process:
            self.local_loops[name] = loop
        else:
            self.loops[name] = loop

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._supervise(), name="workers")]
        if self.local_loops:
            local = _run_loops(self.local_loops, "in this process")
            self._tasks.append(asyncio.create_task(local, name="local-workers"))

    async def stop(self) -> None:
        if not self._tasks:
            return
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        log.info("background workers stopped")

    async def _supervise(self) -> None:
        if self.engine.dialect.name != "postgresql":
            await self._supervise_with_file_lock()
            return
        while True:
            try:
                async with self.engine.connect() as connection:
                    if await self._try_lock(connection):
                        log.info("took the background lock; starting workers")
                        await self._lead(connection)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background supervisor failed; retrying")
            await asyncio.sleep(LEADER_RETRY_SECONDS)

    async def _supervise_with_file_lock(self) -> None:
        """Lead through a lock file beside the SQLite database (``--workers``)."""
        if self.lock_path is None:
            await self._run_loops()
            return
        with self.lock_path.open("a") as lock_file:
            while True:
                try:
                    fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    await asyncio.sleep(LEADER_RETRY_SECONDS)
                    continue
                log.info(
                    "took the background lock %s; starting workers", self.lock_path
                )
                await self._run_loops()
                return

    async def _try_lock(self, connection: AsyncConnection) -> bool:
        acquired = await connection.scalar(
            text("SELECT pg_try_advisory_lock(:id)"), {"id": WORKER_LOCK_ID}
        )
        await connection.commit()
        return bool(acquired)

    async def _lead(self, connection: AsyncConnection) -> None:
        """Run the loops for as long as the lock's connection is alive.

        When the connection drops (a PostgreSQL restart, a killed backend),
        the lock is gone and another process may lead, so the loops stop here
        within LOCK_CHECK_SECONDS. Until then two leaders can overlap.
        """
        loops = asyncio.create_task(self._run_loops(), name="worker-loops")
        try:
            while True:
                done, _ = await asyncio.wait({loops}, timeout=LOCK_CHECK_SECONDS)
                if done:
                    return
                if not await _connection_alive(connection):
                    log.warning(
                        "lost the connection that holds the background lock; "
                        "stopping workers until the lock is taken again"
                    )
                    return
        finally:
            loops.cancel()
            await asyncio.gather(loops, return_exceptions=True)

    async def _run_loops(self) -> None:
        await _run_loops(self.loops, "as the lock holder")


async def _run_loops(loops: dict[str, Loop], role: str) -> None:
    tasks = [
        asyncio.create_task(_guarded(name, loop), name=name)
        for name, loop in loops.items()
    ]
    log.info("background workers started %s: %s", role, ", ".join(loops) or "none")
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _connection_alive(connection: AsyncConnection) -> bool:
    try:
        async with asyncio.timeout(LOCK_CHECK_TIMEOUT_SECONDS):
            await connection.scalar(text("SELECT 1"))
            await connection.commit()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure means the lock is lost
        log.warning("background lock check failed: %s: %s", type(exc).__name__, exc)
        return False
    return True


async def _guarded(name: str, loop: Loop) -> None:
    """Restart a loop that crashed, so that one bug does not stop the others."""
    delay = 1.0
    while True:
        try:
            await loop()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker %s crashed; restarting in %.0f s", name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 300.0)
