"""The agent's on-disk spool."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from palais.agent.spool import Spool


def test_pending_oldest_first(tmp_path: Path) -> None:
    spool = Spool(tmp_path)

    paths = [spool.add({"event_id": f"e{index}"}) for index in range(3)]

    assert spool.pending() == paths
    assert json.loads(paths[0].read_text()) == {"event_id": "e0"}


def test_bound_drops_oldest_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path, max_files=2)

    with caplog.at_level(logging.WARNING):
        for index in range(4):
            spool.add({"event_id": f"e{index}"})

    kept = [json.loads(path.read_text())["event_id"] for path in spool.pending()]
    assert kept == ["e2", "e3"]
    assert caplog.text.count("dropped the oldest report") == 2


def test_unreadable_file_moved_aside(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    broken = tmp_path / "00000000000000000001-x.json"
    broken.write_text("{not json")

    assert spool.read(broken) is None
    assert spool.pending() == []
    assert (tmp_path / "rejected" / broken.name).exists()
