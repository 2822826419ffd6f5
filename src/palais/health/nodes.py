"""Current state of each node, read from the current-state tables only."""

from __future__ import annotations

from datetime import datetime, timedelta


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def node_status(
    last_seen_at: datetime | None, now: datetime, offline_after: float
) -> str:
    if last_seen_at is None or now - last_seen_at > timedelta(seconds=offline_after):
        return "offline"
    return "online"
