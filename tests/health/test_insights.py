"""Insights: offline nodes, unhealthy services, dedupe, resolve and the API."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from palais.insights.loop import evaluate_once
from palais.insights.service import open_insight
from tests.conftest import AUTH, count_rows, run_in_app


def post_report(
    client: TestClient, node: str, services: list[dict], age_seconds: float = 0
) -> None:
    timestamp = datetime.now(UTC) - timedelta(seconds=age_seconds)
    body = {
        "node": node,
        "services": services,
        "cpu_percent": 10,
        "ram_percent": 20,
        "disk_percent": 30,
        "timestamp": timestamp.isoformat(),
    }
    response = client.post("/api/v1/health/webhook", json=body, headers=AUTH)
    assert response.status_code == 201, response.text


def evaluate(client: TestClient) -> None:
    state = client.app.state
    client.portal.call(evaluate_once, state.settings, state.sessions)


def insights(client: TestClient, query: str = "") -> list[dict]:
    response = client.get("/api/v1/insights" + query, headers=AUTH)
    assert response.status_code == 200
    return response.json()["insights"]


def test_offline_node_opens_and_resolves(client: TestClient) -> None:
    post_report(client, "rpi5", [], age_seconds=600)
    evaluate(client)
    evaluate(client)
    opened = insights(client, "?open=true")
    assert [insight["title"] for insight in opened] == ["Node rpi5 is offline"]
    assert opened[0]["severity"] == "warning"
    # The body is read by people: a plain UTC minute, not an ISO timestamp.
    assert re.fullmatch(
        r"No report from rpi5 since \d{4}-\d\d-\d\d \d\d:\d\d UTC "
        r"\(offline after \d+ s\)\.",
        opened[0]["body"],
    )

    post_report(client, "rpi5", [])
    evaluate(client)
    assert insights(client, "?open=true") == []
    assert insights(client)[0]["resolved_at"] is not None


def test_never_seen_node_is_not_offline(client: TestClient) -> None:
    evaluate(client)
    assert insights(client) == []


def test_unhealthy_service_opens_and_resolves(client: TestClient) -> None:
    failing = [
        {
            "name": "postgresql",
            "status": "unhealthy",
            "details": {"error": "connection refused"},
        }
    ]
    post_report(client, "rpi5", failing)
    evaluate(client)
    post_report(client, "rpi5", failing)
    evaluate(client)
    opened = insights(client, "?open=true")
    assert len(opened) == 1
    assert opened[0]["title"] == "Service postgresql on rpi5 is unhealthy"
    assert "connection refused" in opened[0]["body"]

    post_report(client, "rpi5", [{"name": "postgresql", "status": "healthy"}])
    evaluate(client)
    assert insights(client, "?open=true") == []


def test_insight_reason_matches_card(client: TestClient) -> None:
    failing = [
        {"name": "long", "status": "unhealthy", "details": {"error": "x" * 5000}},
        {"name": "web", "status": "unhealthy", "details": {"status_code": 503}},
        {"name": "odd", "status": "unhealthy", "details": {"error": {"code": 7}}},
        {"name": "flag", "status": "unhealthy", "details": {"status_code": True}},
        {"name": "trace", "status": "unhealthy", "details": {"error": "a\n\tb"}},
    ]
    post_report(client, "rpi5", failing)
    evaluate(client)

    bodies = {item["title"].split()[1]: item["body"] for item in insights(client)}
    assert bodies["long"] == f"The last check of long on rpi5 failed: {'x' * 119}…."
    assert bodies["web"] == "The last check of web on rpi5 failed: HTTP 503."
    assert bodies["odd"] == 'The last check of odd on rpi5 failed: {"code":7}.'
    assert bodies["flag"] == "The last check of flag on rpi5 failed: HTTP true."
    assert bodies["trace"] == "The last check of trace on rpi5 failed: a b."


def test_reopened_condition_gets_new_insight(client: TestClient) -> None:
    failing = [{"name": "nginx", "status": "unhealthy"}]
    post_report(client, "sese-ai", failing)
    evaluate(client)
    post_report(client, "sese-ai", [{"name": "nginx", "status": "healthy"}])
    evaluate(client)
    post_report(client, "sese-ai", failing)
    evaluate(client)
    listed = insights(client)
    assert len(listed) == 2
    # Open first, then newest first.
    assert listed[0]["resolved_at"] is None
    assert listed[1]["resolved_at"] is not None


def test_open_insight_is_deduplicated_in_sql(client: TestClient) -> None:
    now = datetime.now(UTC)

    async def open_twice(session) -> list[bool]:  # noqa: ANN001
        results = []
        for _ in range(2):
            results.append(
                await open_insight(
                    session,
                    key="k",
                    severity="info",
                    source="test",
                    title="t",
                    body="b",
                    now=now,
                )
            )
            await session.commit()
        return results

    assert run_in_app(client, open_twice) == [True, False]
    assert count_rows(client, "insights") == 1


def test_insights_api_shape_and_errors(client: TestClient) -> None:
    post_report(client, "rpi5", [], age_seconds=600)
    evaluate(client)
    insight = insights(client)[0]
    assert set(insight) == {
        "id",
        "severity",
        "source",
        "title",
        "body",
        "created_at",
        "resolved_at",
    }
    response = client.get("/api/v1/insights?open=maybe", headers=AUTH)
    assert response.status_code == 422
    assert response.json()["field"] == "open"
    assert client.get("/api/v1/insights").status_code == 401
