"""The embedded agent of ``palais serve`` and the liveness probe."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import create_async_engine

from palais.db.engine import session_factory
from tests.conftest import AUTH, ServerProcess


def test_serve_reports_itself_quickly(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(
        PALAIS_SELF_AGENT="true", PALAIS_SELF_NODE="palais-host", PALAIS_NODES="rpi5"
    )
    started = time.monotonic()
    server.start()

    node = None
    while time.monotonic() - started < 10:
        nodes = httpx.get(server.url + "/api/v1/health/nodes", headers=AUTH).json()
        node = next(n for n in nodes["nodes"] if n["name"] == "palais-host")
        if node["last_seen_at"]:
            break
        time.sleep(0.2)
    elapsed = time.monotonic() - started

    assert node is not None and node["last_seen_at"], server.log()
    assert elapsed < 5 + 3  # first report within 5 s of start, plus start-up
    assert node["status"] == "online"
    assert [service["name"] for service in node["services"]] == ["database"]
    assert node["services"][0]["status"] == "healthy"
    assert node["services"][0]["response_time_ms"] >= 0
    assert 0 <= node["cpu_percent"] <= 100


def test_healthz_ok(client: TestClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert client.head("/healthz").status_code == 200


def test_healthz_names_failing_database(client: TestClient, tmp_path) -> None:  # noqa: ANN001
    # A database below a regular file cannot be opened.
    (tmp_path / "blocker").write_text("")
    broken = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/blocker/x.db")
    working = client.app.state.sessions
    client.app.state.sessions = session_factory(broken)
    try:
        response = client.get("/healthz")
    finally:
        client.app.state.sessions = working

    assert response.status_code == 503
    assert response.json()["failing"] == "database"


def test_api_needs_token_but_healthz_does_not(client: TestClient) -> None:
    assert client.get("/api/v1/health/nodes").status_code == 401
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/v1/health/nodes", headers=AUTH).status_code == 200


def test_api_returns_503_when_database_down(client: TestClient, tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "blocker").write_text("")
    broken = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/blocker/x.db")
    working = client.app.state.sessions
    client.app.state.sessions = session_factory(broken)
    try:
        response = client.get("/api/v1/health/nodes", headers=AUTH)
    finally:
        client.app.state.sessions = working

    assert response.status_code == 503
    assert response.json()["error"] == "database unavailable; retry later"
    assert response.headers["retry-after"] == "5"


def test_several_workers_one_leader(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(PALAIS_SELF_AGENT="true")
    server.extra_args = ["--workers", "2"]
    server.start()

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if server.log().count("Application startup complete") >= 2:
            break
        time.sleep(0.2)
    time.sleep(1)
    log = server.log()

    assert log.count("Application startup complete") == 2
    assert log.count("took the background lock") == 1
    assert log.count("self-agent started") == 1
    response = httpx.get(server.url + "/api/v1/health/nodes", headers=AUTH)
    assert response.status_code == 200
