"""Reading restic's recorded ``snapshots --json`` output, without restic."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from palais.health.restic_report import newest_snapshot
from tests.conftest import DATA


def test_newest_snapshot_of_recorded_output() -> None:
    snapshots = json.loads((DATA / "restic" / "restic-snapshots.json").read_text())
    now = datetime(2026, 12, 4, tzinfo=UTC)
    taken_at, snapshot_id = newest_snapshot(snapshots, now)
    assert snapshot_id.startswith("0357b8bb")
    assert taken_at == datetime(2026, 8, 21, 3, 0, 2, 81775, tzinfo=UTC)
    older_first = list(reversed(snapshots))
    assert newest_snapshot(older_first, now)[1] == snapshot_id
    # The 0.16 snapshot's +02:00 offset is read as UTC 01:00:01.
    oldest, _ = newest_snapshot(snapshots[:1], now)
    assert oldest == datetime(2024, 5, 2, 1, 0, 1, 581203, tzinfo=UTC)
