"""Concurrent deliveries to a real server: nothing lost, duplicates stored once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from tests.conftest import AUTH, ServerProcess, query
from tests.health.test_webhook import report

SENDERS = 40


async def post_all(url: str, bodies: list[dict]) -> list[int]:
    async with httpx.AsyncClient(timeout=30) as client:
        responses = await asyncio.gather(
            *(client.post(url, json=body, headers=AUTH) for body in bodies)
        )
    return [response.status_code for response in responses]


def test_concurrent_reports_all_stored(
    server_factory: Callable[..., ServerProcess], database_url: str
) -> None:
    server = server_factory(PALAIS_AUTO_REGISTER_NODES="true")
    server.start()
    # Each event id is sent twice at once, as n8n does when it retries.
    bodies = [
        report(node=f"node-{index % 10}", event_id=f"event-{index}")
        for index in range(SENDERS)
    ] * 2

    statuses = asyncio.run(post_all(server.url + "/api/v1/health/webhook", bodies))

    assert statuses.count(201) == SENDERS, statuses
    assert statuses.count(200) == SENDERS, statuses
    nodes = httpx.get(server.url + "/api/v1/health/nodes", headers=AUTH).json()
    names = {node["name"] for node in nodes["nodes"]}
    assert {f"node-{index}" for index in range(10)} <= names
    checks = query(database_url, "SELECT count(*) FROM health_checks")
    assert checks == [(SENDERS * len(report()["services"]),)]
    assert "Traceback" not in server.log()
