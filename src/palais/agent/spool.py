"""On-disk queue of reports not yet delivered: one JSON file per report."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# About 3.5 days of reports at one every 30 s, a few KB each.
DEFAULT_MAX_FILES = 10_000


class Spool:
    def __init__(self, directory: Path, max_files: int = DEFAULT_MAX_FILES) -> None:
        self.directory = directory
        self.rejected_directory = directory / "rejected"
        self.max_files = max_files
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def add(self, report: dict[str, Any]) -> Path:
        """Write a report atomically, then drop the oldest ones over the bound."""
        # The name sorts by creation time, so delivery goes oldest first.
        name = f"{time.time_ns():020d}-{report['event_id']}.json"
        path = self.directory / name
        partial = path.with_suffix(".tmp")
        with partial.open("w", encoding="utf-8") as file:
            json.dump(report, file)
            file.flush()
            os.fsync(file.fileno())
        partial.replace(path)
        self._enforce_bound()
        return path

    def pending(self) -> list[Path]:
        return sorted(self.directory.glob("*.json"))

    def read(self, path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.error("unreadable spool file %s moved aside: %s", path.name, exc)
            self.reject(path)
            return None

    def remove(self, path: Path) -> None:
        path.unlink(missing_ok=True)

    def reject(self, path: Path) -> None:
        """Keep a report the server rejected for a person to inspect."""
        self.rejected_directory.mkdir(exist_ok=True, mode=0o700)
        path.replace(self.rejected_directory / path.name)
        rejected = sorted(self.rejected_directory.glob("*.json"))
        for old in rejected[: max(0, len(rejected) - self.max_files)]:
            old.unlink(missing_ok=True)

    def _enforce_bound(self) -> None:
        pending = self.pending()
        excess = len(pending) - self.max_files
        for path in pending[: max(0, excess)]:
            log.warning(
                "spool full (%d reports): dropped the oldest report %s",
                self.max_files,
                path.name,
            )
            path.unlink(missing_ok=True)
