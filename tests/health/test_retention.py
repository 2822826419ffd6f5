"""Pruning of health history older than the retention window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from palais.health import retention
from tests.conftest import AUTH, count_rows

WEBHOOK = "/api/v1/health/webhook"


def post_report(client: TestClient, age: timedelta, services: int) -> None:
    body = {
        "node": "rpi5",
        "timestamp": (datetime.now(UTC) - age).isoformat(),
        "cpu_percent": 1,
        "ram_percent": 1,
        "disk_percent": 1,
        "services": [
            {"name": f"svc{index}", "status": "healthy"} for index in range(services)
        ],
    }
    assert client.post(WEBHOOK, json=body, headers=AUTH).status_code == 201


def test_prune_deletes_only_old_checks(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches, so that the loop over several batches is exercised.
    monkeypatch.setattr(retention, "BATCH_SIZE", 3)
    post_report(client, timedelta(days=40), services=7)
    post_report(client, timedelta(days=31), services=4)
    post_report(client, timedelta(days=29), services=5)
    post_report(client, timedelta(minutes=1), services=2)

    deleted = client.portal.call(retention.prune_history, client.app.state.sessions, 30)

    assert deleted == 11
    assert count_rows(client, "health_checks") == 7


def test_prune_keeps_current_state(client: TestClient) -> None:
    post_report(client, timedelta(days=40), services=2)

    client.portal.call(retention.prune_history, client.app.state.sessions, 30)

    assert count_rows(client, "health_checks") == 0
    # The latest state of each service is not history and stays.
    assert count_rows(client, "service_states") == 2
