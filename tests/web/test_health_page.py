"""The /health page and its fragments, rendered from a real database."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from palais.app import create_app
from palais.config import Settings
from palais.health.headscale import HeadscaleClient
from palais.health.history import last_hour
from palais.health.rollup import rollup_once
from palais.health.vpn import poll_once
from tests.conftest import AUTH, TOKEN, run_in_app
from tests.fakes.headscale import FakeHeadscale
from tests.web.conftest import ADMIN_PASSWORD, log_in

EVIL = '<script>alert("x")</script>'
API_KEY = "hskey-api-pagetest-secret"


def post_report(
    client: TestClient,
    node: str,
    services: list[dict],
    *,
    at: datetime | None = None,
    peers: list[dict] | None = None,
) -> None:
    body = {
        "node": node,
        "services": services,
        "cpu_percent": 42.0,
        "ram_percent": 77.0,
        "disk_percent": 95.0,
        "temperature": 51.3,
        "peers": peers or [],
    }
    if at is not None:
        body["timestamp"] = at.isoformat()
    response = client.post("/api/v1/health/webhook", json=body, headers=AUTH)
    assert response.status_code == 201, response.text


@pytest.fixture
def logged_in(web_client: TestClient) -> TestClient:
    assert log_in(web_client).status_code == 303
    return web_client


def test_page_shows_cards_and_services(logged_in: TestClient) -> None:
    post_report(
        logged_in,
        "rpi5",
        [
            {"name": "postgresql", "status": "healthy", "response_time_ms": 12},
            {"name": "nginx", "status": "unhealthy"},
        ],
        peers=[{"node": "sese-ai", "latency_ms": 23.4}],
    )
    page = logged_in.get("/health")
    assert page.status_code == 200
    html = page.text
    assert 'data-node="rpi5" data-status="degraded"' in html
    assert 'data-service="postgresql" data-status="healthy"' in html
    assert "12 ms" in html
    assert 'aria-label="CPU 42%"' in html
    assert 'aria-label="Temp 51.3°C"' in html
    assert 'data-node="seko-vpn" data-status="offline"' in html
    assert "23 ms" in html
    assert 'class="node degraded" data-node="rpi5"' in html
    assert 'href="/creative"' in html
    assert TOKEN not in html


def test_names_are_escaped_everywhere(
    settings_factory: Callable[..., Settings],
) -> None:
    fake = FakeHeadscale("current", api_key=API_KEY).start()
    nodes = fake.nodes()
    nodes[0]["givenName"] = EVIL
    nodes[0]["user"]["name"] = EVIL
    fake.set_nodes(nodes)
    settings = settings_factory(
        admin_password=ADMIN_PASSWORD, headscale_url=fake.url, headscale_api_key=API_KEY
    )
    try:
        with TestClient(create_app(settings, run_workers=False)) as client:
            _poll(client, fake)
            log_in(client)
            post_report(
                client,
                "rpi5",
                [{"name": EVIL, "status": "unhealthy", "details": {"error": EVIL}}],
            )
            client.post(
                "/api/v1/health/backup/webhook",
                json={
                    "node": "rpi5",
                    "status": "failed",
                    "source": EVIL,
                    "details": {"error": EVIL},
                },
                headers=AUTH,
            )
            for path in (
                "/health",
                "/health/fragments/map",
                "/health/fragments/nodes",
                "/health/fragments/backups",
                "/health/fragments/history",
            ):
                html = client.get(path).text
                assert "<script>alert" not in html, path
            assert (
                "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"
                in client.get("/health/fragments/map").text
            )
            assert API_KEY not in client.get("/health").text
    finally:
        fake.stop()


def _poll(client: TestClient, fake: FakeHeadscale) -> str | None:
    async def run() -> str | None:
        headscale = HeadscaleClient(fake.url, API_KEY, timeout=1)
        try:
            return await poll_once(headscale, client.app.state.sessions)
        finally:
            await headscale.close()

    return client.portal.call(run)


@pytest.fixture
def headscale_client(
    settings_factory: Callable[..., Settings],
) -> Iterator[tuple[TestClient, FakeHeadscale]]:
    fake = FakeHeadscale("0.22", api_key=API_KEY).start()
    settings = settings_factory(
        admin_password=ADMIN_PASSWORD, headscale_url=fake.url, headscale_api_key=API_KEY
    )
    with TestClient(create_app(settings, run_workers=False)) as client:
        log_in(client)
        yield client, fake
    fake.stop()


def test_map_shows_headscale_unreachable(
    headscale_client: tuple[TestClient, FakeHeadscale],
) -> None:
    client, fake = headscale_client
    assert _poll(client, fake) is None
    fake.fail_status = 500
    _poll(client, fake)
    html = client.get("/health/fragments/map").text
    assert "Headscale unreachable since" in html
    assert "HTTP 500" in html
    # The last known topology is still drawn, as stale.
    assert 'data-node="seko-vpn"' in html
    assert 'data-state="stale"' in html


def test_map_reads_thirty_nodes(settings_factory: Callable[..., Settings]) -> None:
    names = ",".join(f"node-{index:02d}" for index in range(30))
    settings = settings_factory(admin_password=ADMIN_PASSWORD, nodes=names)
    with TestClient(create_app(settings, run_workers=False)) as client:
        log_in(client)
        for index in range(30):
            peer = f"node-{(index + 1) % 30:02d}"
            post_report(
                client, f"node-{index:02d}", [], peers=[{"node": peer, "latency_ms": 5}]
            )
        html = client.get("/health/fragments/map").text
    circles = re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)"', html)
    assert len(circles) >= 30
    view_box = re.search(r'viewBox="0 0 (\d+) (\d+)"', html)
    width, height = int(view_box.group(1)), int(view_box.group(2))
    points = {(float(x), float(y)) for x, y in circles}
    assert all(0 < x < width and 0 < y < height for x, y in points)
    # No two nodes closer than 30 units, so labels stay apart.
    ordered = sorted(points)
    for (x1, y1), (x2, y2) in zip(ordered, ordered[1:], strict=False):
        assert ((x1 - x2) ** 2 + (y1 - y2) ** 2) ** 0.5 > 30
    assert html.count('class="link ok"') == 30


def test_backup_panel_alerts_when_stale(logged_in: TestClient) -> None:
    old = (datetime.now(UTC) - timedelta(hours=30)).isoformat()
    logged_in.post(
        "/api/v1/health/backup/webhook",
        json={
            "node": "rpi5",
            "status": "ok",
            "last_backup_at": old,
            "size_bytes": 412316860416,
        },
        headers=AUTH,
    )
    html = logged_in.get("/health/fragments/backups").text
    assert "alert-amber" in html
    assert "Backup default of rpi5 is stale" in html
    assert "384.0 GiB" in html
    logged_in.post(
        "/api/v1/health/backup/webhook",
        json={"node": "rpi5", "status": "failed"},
        headers=AUTH,
    )
    assert "alert-red" in logged_in.get("/health/fragments/backups").text
    logged_in.post(
        "/api/v1/health/backup/webhook",
        json={"node": "rpi5", "status": "ok"},
        headers=AUTH,
    )
    assert "backup-alert" not in logged_in.get("/health/fragments/backups").text


def test_backup_error_is_one_short_line(logged_in: TestClient) -> None:
    errors = {"rpi5": "disk full\n" + "x" * 5000, "sese-ai": {"code": 28}}
    for node, error in errors.items():
        response = logged_in.post(
            "/api/v1/health/backup/webhook",
            json={"node": node, "status": "failed", "details": {"error": error}},
            headers=AUTH,
        )
        assert response.status_code in (200, 201), response.text

    html = logged_in.get("/health/fragments/backups").text
    assert "Error: disk full " + "x" * 109 + "…</td>" in html
    assert "Error: {&#34;code&#34;:28}</td>" in html
    api = logged_in.get("/api/v1/health/backup", headers=AUTH).json()["backups"]
    assert any(len(str(backup["error"])) > 5000 for backup in api)


def test_history_worst_status_wins(logged_in: TestClient) -> None:
    now = datetime.now(UTC)
    minute = last_hour(now).minutes[-3]
    post_report(
        logged_in,
        "rpi5",
        [{"name": "a", "status": "healthy"}],
        at=minute + timedelta(seconds=5),
    )
    post_report(
        logged_in,
        "rpi5",
        [{"name": "a", "status": "unhealthy"}],
        at=minute + timedelta(seconds=20),
    )
    post_report(
        logged_in,
        "rpi5",
        [{"name": "b", "status": "unknown"}],
        at=minute + timedelta(seconds=70),
    )
    post_report(
        logged_in,
        "rpi5",
        [{"name": "a", "status": "healthy"}],
        at=now - timedelta(hours=2),
    )
    roll_up(logged_in)
    html = logged_in.get("/health/fragments/history").text
    row = re.search(r'<tr data-node="rpi5">(.*?)</tr>', html, re.S).group(1)
    cells = re.findall(r'class="cell (\w+)"', row)
    assert len(cells) == 60
    assert cells[-3] == "unhealthy"
    assert cells[-2] == "unknown"
    assert cells.count("none") == 58

    node_id = re.search(r'/health/fragments/history/(\d+)"', row).group(1)
    services = logged_in.get(f"/health/fragments/history/{node_id}").text
    service_a = re.search(r'data-service="a">(.*?)</tr>', services, re.S).group(1)
    a_cells = re.findall(r'class="cell (\w+)"', service_a)
    assert a_cells[-3] == "unhealthy"
    assert a_cells[-2] == "none"


def roll_up(client: TestClient) -> int:
    async def run(session) -> int:  # noqa: ANN001
        return await rollup_once(session, datetime.now(UTC))

    return run_in_app(client, run)


def test_rollup_is_idempotent_and_catches_late_reports(logged_in: TestClient) -> None:
    now = datetime.now(UTC)
    minutes = last_hour(now).minutes
    post_report(logged_in, "rpi5", [{"name": "a", "status": "healthy"}], at=minutes[-1])
    assert roll_up(logged_in) == 1
    assert roll_up(logged_in) == 1  # the previous range is read again
    assert roll_up(logged_in) == 0
    # A spooled report delivered late lands in its own, older minute.
    post_report(
        logged_in,
        "rpi5",
        [{"name": "a", "status": "unhealthy"}],
        at=minutes[-30] + timedelta(seconds=1),
    )
    roll_up(logged_in)
    html = logged_in.get("/health/fragments/history").text
    row = re.search(r'<tr data-node="rpi5">(.*?)</tr>', html, re.S).group(1)
    cells = re.findall(r'class="cell (\w+)"', row)
    assert cells[-30] == "unhealthy"
    assert cells[-1] == "healthy"
    assert cells.count("none") == 58


def test_unknown_fragments_are_404(logged_in: TestClient) -> None:
    assert logged_in.get("/health/fragments/nope").status_code == 404
    assert logged_in.get("/health/fragments/history/99999").status_code == 404
    assert logged_in.get("/health/fragments/history/x").status_code == 422


def test_fragments_need_login(web_client: TestClient) -> None:
    response = web_client.get("/health/fragments/nodes", headers={"HX-Request": "true"})
    assert response.status_code == 401


def test_failed_check_reason_on_card(web_client: TestClient) -> None:
    report = {
        "node": "rpi5",
        "cpu_percent": 1,
        "ram_percent": 1,
        "disk_percent": 1,
        "services": [
            {
                "name": "postgresql",
                "status": "unhealthy",
                "details": {"error": "connection refused <b>"},
            }
        ],
    }
    web_client.post("/api/v1/health/webhook", json=report, headers=AUTH)
    log_in(web_client)

    cards = web_client.get("/health/fragments/nodes")

    assert "connection refused &lt;b&gt;" in cards.text
    assert "<b>" not in cards.text


def test_huge_node_id_is_422(web_client: TestClient) -> None:
    log_in(web_client)

    response = web_client.get("/health/fragments/history/99999999999999999999")

    assert response.status_code == 422
