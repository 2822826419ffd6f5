"""Throttle of dashboard logins: at most 10 failures per client in 5 minutes.

Attempts are rows of ``login_failures``, so that every server process and a
restart count the same failures. An attempt is written before the password
is checked and withdrawn if it succeeds: parallel guesses then see each
other, and a burst cannot slip past the limit between check and record.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from palais.db.models import LoginFailure
from palais.db.types import utcnow

FAILURE_LIMIT = 10
FAILURE_WINDOW = timedelta(minutes=5)


class LoginThrottle:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        limit: int = FAILURE_LIMIT,
        window: timedelta = FAILURE_WINDOW,
    ) -> None:
        self.sessions = sessions
        self.limit = limit
        self.window = window

    async def claim(self, client: str) -> tuple[int | None, int]:
        """Record an attempt from ``client``.

        Return ``(attempt id, 0)`` when it may go ahead, or ``(None, seconds)``
        when the client must wait that long first.
        """
        now = utcnow()
        cutoff = now - self.window
        async with self.sessions() as session, session.begin():
            # Expired rows of every client go here, so the table stays small.
            await session.execute(
                delete(LoginFailure).where(LoginFailure.failed_at < cutoff)
            )
            attempt = LoginFailure(client=client[:64], failed_at=now)
            session.add(attempt)
        async with self.sessions() as session:
            recent = list(
                await session.scalars(
                    select(LoginFailure.failed_at)
                    .where(
                        LoginFailure.client == client[:64],
                        LoginFailure.failed_at >= cutoff,
                        LoginFailure.id != attempt.id,
                    )
                    .order_by(LoginFailure.failed_at)
                )
            )
        if len(recent) < self.limit:
            return attempt.id, 0
        await self.withdraw(attempt.id)
        return None, self._wait(recent, now)

    def _wait(self, recent: list[datetime], now: datetime) -> int:
        """Seconds until fewer than ``limit`` earlier attempts are in the window."""
        leaving = recent[len(recent) - self.limit]
        return max(1, int((leaving + self.window - now).total_seconds()) + 1)

    async def withdraw(self, attempt_id: int) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(
                delete(LoginFailure).where(LoginFailure.id == attempt_id)
            )

    async def succeeded(self, client: str) -> None:
        """Forget the client's failures: the admin got the password right."""
        async with self.sessions() as session, session.begin():
            await session.execute(
                delete(LoginFailure).where(LoginFailure.client == client[:64])
            )
