"""Node cards and API views are kept until their node reports again."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from palais.health.node_cache import read_node_list
from tests.conftest import AUTH
from tests.web.conftest import log_in


@pytest.fixture
def logged_in(web_client: TestClient) -> TestClient:
    assert log_in(web_client).status_code == 303
    return web_client


def report(client: TestClient, node: str, at: datetime, **service: object) -> None:
    body = {
        "node": node,
        "timestamp": at.isoformat(),
        "cpu_percent": 10.0,
        "ram_percent": 20.0,
        "disk_percent": 30.0,
        "services": [{"name": "api", **service}],
    }
    response = client.post("/api/v1/health/webhook", json=body, headers=AUTH)
    assert response.status_code == 201, response.text


def card_of(client: TestClient, node: str) -> str:
    html = client.get("/health/fragments/nodes").text
    match = re.search(rf'<article [^>]*data-node="{node}".*?</article>', html, re.S)
    assert match, html
    return match.group(0)


def api_services(client: TestClient, node: str) -> list[dict]:
    nodes = client.get("/api/v1/health/nodes", headers=AUTH).json()["nodes"]
    return next(entry["services"] for entry in nodes if entry["name"] == node)


def read_cache(client: TestClient) -> dict:
    async def read() -> dict:
        async with client.app.state.sessions() as session:
            connection = await session.connection()
            nodes = await read_node_list(connection)
            return await client.app.state.node_cache.read(connection, nodes)

    return client.portal.call(read)


def test_card_follows_same_time_report(logged_in: TestClient) -> None:
    at = datetime.now(UTC).replace(microsecond=0)
    report(logged_in, "rpi5", at, status="healthy", response_time_ms=12)
    card = card_of(logged_in, "rpi5")
    assert 'data-status="online"' in card
    assert "12 ms" in card

    assert api_services(logged_in, "rpi5")[0]["status"] == "healthy"

    # A second delivery with the same timestamp still replaces the state.
    report(logged_in, "rpi5", at, status="unhealthy", details={"error": "refused"})
    card = card_of(logged_in, "rpi5")
    assert 'data-status="degraded"' in card
    assert 'title="refused"' in card
    [service] = api_services(logged_in, "rpi5")
    assert (service["status"], service["details"]) == (
        "unhealthy",
        {"error": "refused"},
    )

    # A late report changes neither the state nor the card.
    report(logged_in, "rpi5", at - timedelta(minutes=1), status="healthy")
    assert card_of(logged_in, "rpi5") == card


def test_only_the_reporting_node_is_rebuilt(logged_in: TestClient) -> None:
    at = datetime.now(UTC)
    report(logged_in, "rpi5", at, status="healthy")
    report(logged_in, "sese-ai", at, status="healthy")
    first = read_cache(logged_in)
    again = read_cache(logged_in)
    assert all(again[node_id] is card for node_id, card in first.items())

    report(logged_in, "sese-ai", at + timedelta(seconds=1), status="unhealthy")
    after = read_cache(logged_in)
    rebuilt = {node_id for node_id in first if after[node_id] is not first[node_id]}
    assert len(rebuilt) == 1
    assert after[rebuilt.pop()].unhealthy is True


def test_refresh_builds_cards_before_a_page_asks(logged_in: TestClient) -> None:
    report(logged_in, "rpi5", datetime.now(UTC), status="healthy")
    cache = logged_in.app.state.node_cache
    refreshed = logged_in.portal.call(cache.refresh, logged_in.app.state.sessions)

    assert refreshed
    assert all(read_cache(logged_in)[key] is card for key, card in refreshed.items())


def test_gauges_follow_hand_edited_metrics(logged_in: TestClient) -> None:
    report(logged_in, "rpi5", datetime.now(UTC), status="healthy")
    assert 'aria-label="CPU 10%"' in card_of(logged_in, "rpi5")

    logged_in.portal.call(_set_cpu, logged_in, 77.0)
    assert 'aria-label="CPU 77%"' in card_of(logged_in, "rpi5")


async def _set_cpu(client: TestClient, value: float) -> None:
    async with client.app.state.sessions() as session:
        await session.execute(
            text("UPDATE nodes SET cpu_percent = :value WHERE name = 'rpi5'"),
            {"value": value},
        )
        await session.commit()
