"""Remotion render statuses from the n8n creative pipeline."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.conftest import count_rows

WEBHOOK = "/api/v1/creative/renders/webhook"


def new_task_id(client: TestClient) -> int:
    response = client.post("/api/v1/tasks", json={"title": "launch video"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_render_created_then_updated(studio_client: TestClient) -> None:
    task_id = new_task_id(studio_client)
    first = studio_client.post(
        WEBHOOK,
        json={
            "render_id": "r-1",
            "composition": "Intro",
            "status": "rendering",
            "progress": "0.25",
            "task_id": task_id,
        },
    )
    assert first.status_code == 201, first.text
    assert first.json()["render"]["progress"] == 0.25

    second = studio_client.post(WEBHOOK, json={"render_id": "r-1", "status": "done"})
    assert second.status_code == 200
    render = second.json()["render"]
    assert render["status"] == "done"
    assert render["progress"] == 1.0
    assert render["composition"] == "Intro"
    assert render["task_id"] == task_id

    failed = studio_client.post(
        WEBHOOK, json={"render_id": "r-2", "status": "failed", "error": "OOM"}
    )
    assert failed.status_code == 201
    listed = studio_client.get("/api/v1/creative/renders").json()["renders"]
    assert [item["render_id"] for item in listed] == ["r-2", "r-1"]
    assert listed[0]["error"] == "OOM"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"status": "done"}, "render_id"),
        ({"render_id": "", "status": "done"}, "render_id"),
        ({"render_id": "r", "status": "finished"}, "status"),
        ({"render_id": "r"}, "status"),
        ({"render_id": "r", "status": "rendering", "progress": "45%"}, "progress"),
        ({"render_id": "r", "status": "rendering", "progress": 1.5}, "progress"),
        ({"render_id": "r", "status": "rendering", "progress": True}, "progress"),
        ({"render_id": "r", "status": "rendering", "progress": "nan"}, "progress"),
        ({"render_id": "r", "status": "done", "task_id": "abc"}, "task_id"),
        ({"render_id": "r", "status": "done", "output": 5}, "output"),
    ],
)
def test_render_webhook_validation(
    studio_client: TestClient, body: dict, field: str
) -> None:
    response = studio_client.post(WEBHOOK, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert count_rows(studio_client, "creative_renders") == 0


def test_render_nan_literal_rejected(studio_client: TestClient) -> None:
    response = studio_client.post(
        WEBHOOK,
        content=b'{"render_id": "r", "status": "rendering", "progress": NaN}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["field"] == "progress"


@pytest.mark.parametrize("finished", ["done", "failed"])
@pytest.mark.parametrize("late", ["queued", "rendering"])
def test_render_late_update_ignored(
    studio_client: TestClient, finished: str, late: str
) -> None:
    done = studio_client.post(WEBHOOK, json={"render_id": "r", "status": finished})
    assert done.status_code == 201, done.text
    stale = studio_client.post(
        WEBHOOK, json={"render_id": "r", "status": late, "progress": 0.1}
    )
    assert stale.status_code == 200, stale.text
    assert stale.json()["created"] is False
    assert stale.json()["render"] == done.json()["render"]
    [listed] = studio_client.get("/api/v1/creative/renders").json()["renders"]
    assert listed["status"] == finished


def test_render_unknown_task_404(studio_client: TestClient) -> None:
    response = studio_client.post(
        WEBHOOK, json={"render_id": "r", "status": "queued", "task_id": 999}
    )
    assert response.status_code == 404, response.text
    assert response.json()["field"] == "task_id"
    assert response.json()["value"] == 999
    assert count_rows(studio_client, "creative_renders") == 0


def test_render_progress_bounds_printed(studio_client: TestClient) -> None:
    response = studio_client.post(
        WEBHOOK, json={"render_id": "r", "status": "rendering", "progress": 2}
    )
    assert response.status_code == 422
    assert response.json()["accepted"] == "a number from 0 to 1"
