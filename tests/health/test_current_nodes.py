"""The column-based node reader returns exactly what list_nodes returns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from palais.health.node_cache import NodeCache, read_nodes
from palais.health.nodes import list_nodes
from tests.conftest import AUTH, run_in_app


def test_read_nodes_matches_list_nodes(client: TestClient) -> None:
    old = (datetime.now(UTC) - timedelta(minutes=10)).isoformat()
    reports = [
        {
            "node": "rpi5",
            "timestamp": old,
            "services": [{"name": "gone", "status": "healthy"}],
        },
        {
            "node": "rpi5",
            "services": [
                {
                    "name": "db",
                    "status": "unhealthy",
                    "response_time_ms": 3.5,
                    "details": {"error": "refused"},
                },
                {"name": "api", "status": "healthy"},
            ],
        },
        {"node": "seko-vpn", "timestamp": old, "services": []},
    ]
    for body in reports:
        body.update(cpu_percent=1, ram_percent=2, disk_percent=3)
        response = client.post("/api/v1/health/webhook", json=body, headers=AUTH)
        assert response.status_code == 201

    now = datetime.now(UTC)

    async def both(session) -> tuple[list, list]:  # noqa: ANN001
        expected = await list_nodes(session, now=now, offline_after=180)
        actual = await read_nodes(session, NodeCache(), now=now, offline_after=180)
        return expected, actual

    expected, actual = run_in_app(client, both)
    assert actual == expected
    api = client.get("/api/v1/health/nodes", headers=AUTH).json()["nodes"]
    by_name = {node["name"]: node for node in api}
    assert by_name["rpi5"]["degraded"] is True
    assert [service["name"] for service in by_name["rpi5"]["services"]] == ["api", "db"]
    assert by_name["seko-vpn"]["status"] == "offline"
