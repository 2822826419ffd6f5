"""Headless Chromium for the browser tests, from the system, never downloaded.

Chromium is Debian's package ``chromium`` or the path in PALAIS_TEST_CHROMIUM.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def chromium_path() -> str | None:
    configured = os.environ.get("PALAIS_TEST_CHROMIUM", "").strip()
    if configured:
        return configured if Path(configured).exists() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


CHROMIUM = chromium_path()
requires_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium not found: install the Debian package chromium or set "
    "PALAIS_TEST_CHROMIUM to its path",
)


@contextmanager
def chromium_page(height: int) -> Iterator:
    """Yield a Playwright page 1400 pixels wide in a new headless Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser.new_page(viewport={"width": 1400, "height": height})
        finally:
            browser.close()
