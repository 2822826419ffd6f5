"""The /health page in real headless Chromium, fed by a real agent run.

Chromium comes from the system (Debian package chromium, or the path in
PALAIS_TEST_CHROMIUM); the tests never download a browser.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.browser import ARTIFACTS, chromium_page, requires_chromium
from tests.conftest import AUTH, TOKEN, ServerProcess
from tests.fakes.headscale import FakeHeadscale
from tests.web.conftest import ADMIN_PASSWORD

API_KEY = "hskey-api-browser-secret"


def run_agent(server: ServerProcess, node: str, spool: Path, *extra: str) -> None:
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("PALAIS_")
    }
    command = [
        sys.executable,
        "-m",
        "palais.cli",
        "agent",
        "--once",
        "--url",
        server.url,
        "--node",
        node,
        "--token",
        TOKEN,
        "--spool",
        str(spool),
        *extra,
    ]
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=env
    )
    assert completed.returncode == 0, completed.stderr


@pytest.fixture
def headscale() -> Iterator[FakeHeadscale]:
    fake = FakeHeadscale("current", api_key=API_KEY).start()
    yield fake
    fake.stop()


pytestmark = requires_chromium


@pytest.fixture
def browser_page():  # noqa: ANN201
    with chromium_page(height=1800) as page:
        yield page


def test_health_page_in_chromium(
    server_factory: Callable[..., ServerProcess],
    headscale: FakeHeadscale,
    browser_page,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    server = server_factory(
        PALAIS_ADMIN_PASSWORD=ADMIN_PASSWORD,
        PALAIS_NODES="sese-ai=100.64.0.1,rpi5=100.64.0.2,seko-vpn=100.64.0.3",
        PALAIS_HEADSCALE_URL=headscale.url,
        PALAIS_HEADSCALE_API_KEY=API_KEY,
        PALAIS_HEADSCALE_POLL_SECONDS="1",
    )
    server.start()
    port = server.url.rsplit(":", 1)[1]
    run_agent(
        server,
        "rpi5",
        tmp_path / "spool-rpi5",
        "--check",
        f"palais=http://127.0.0.1:{port}/healthz",
        "--check",
        "closed-port=tcp://127.0.0.1:9",
        "--peer",
        f"sese-ai=127.0.0.1:{port}",
    )
    stale = (datetime.now(UTC) - timedelta(hours=30)).isoformat()
    response = httpx.post(
        server.url + "/api/v1/health/backup/webhook",
        json={
            "node": "rpi5",
            "status": "ok",
            "last_backup_at": stale,
            "size_bytes": 5 * 1024**3,
        },
        headers=AUTH,
        timeout=10,
    )
    assert response.status_code == 200

    page = browser_page
    page.goto(server.url + "/health")
    assert page.url.startswith(server.url + "/login")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/health")

    # The map: three nodes and the measured link with its latency.
    page.wait_for_selector("#vpn-map g.node[data-node='seko-vpn']")
    assert page.locator("#vpn-map g.node").count() == 3
    link = page.locator("#vpn-map g.link-group[data-from='rpi5'][data-to='sese-ai']")
    assert link.count() == 1
    assert link.locator("text").text_content().endswith("ms")
    assert (
        page.locator("#vpn-map g.node[data-node='rpi5']").get_attribute("data-state")
        == "degraded"
    )

    # The cards: rpi5 with a healthy and an unhealthy service.
    card = page.locator("article.node-card[data-node='rpi5']")
    assert card.get_attribute("data-status") == "degraded"
    assert (
        card.locator("li[data-service='palais']").get_attribute("data-status")
        == "healthy"
    )
    assert (
        card.locator("li[data-service='closed-port']").get_attribute("data-status")
        == "unhealthy"
    )

    # The backup alert.
    alert = page.locator("#backups .backup-alert")
    assert alert.count() == 1
    assert "stale" in alert.inner_text()

    # History loaded as a fragment, then expand rpi5's services.
    page.wait_for_selector("#history tr[data-node='rpi5'] .cell")
    page.click("#history tr[data-node='rpi5'] button")
    page.wait_for_selector(".services-timeline tr[data-service='closed-port']")

    # A live update without a full reload: the marker set on window survives
    # while the sese-ai card turns from offline to online.
    page.evaluate("window.palaisMarker = 'still here'")
    offline = "article.node-card[data-node='sese-ai'][data-status='offline']"
    assert page.locator(offline).count() == 1
    run_agent(server, "sese-ai", tmp_path / "spool-sese")
    page.wait_for_selector(
        "article.node-card[data-node='sese-ai'][data-status='online']", timeout=20_000
    )
    assert page.evaluate("window.palaisMarker") == "still here"

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "health.png"), full_page=True)
    assert API_KEY not in page.content()
    assert TOKEN not in page.content()
