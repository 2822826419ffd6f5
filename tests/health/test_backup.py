"""Backup webhook (plain and Zerobyte bodies), GET /health/backup and staleness."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from palais.app import create_app
from palais.config import Settings
from palais.insights.loop import evaluate_once
from tests.conftest import AUTH, DATA, count_rows

WEBHOOK = "/api/v1/health/backup/webhook"


def zerobyte(name: str) -> dict:
    return json.loads(
        (DATA / "zerobyte" / f"zerobyte-backup-webhook-{name}.json").read_text()
    )


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat().replace("+00:00", "Z")


def backups(client: TestClient) -> dict[tuple[str, str], dict]:
    response = client.get("/api/v1/health/backup", headers=AUTH)
    assert response.status_code == 200
    return {(row["node"], row["source"]): row for row in response.json()["backups"]}


def open_insights(client: TestClient) -> list[dict]:
    response = client.get("/api/v1/insights?open=true", headers=AUTH)
    assert response.status_code == 200
    return response.json()["insights"]


def evaluate(client: TestClient) -> None:
    state = client.app.state
    client.portal.call(evaluate_once, state.settings, state.sessions)


def test_plain_backup_is_stored(client: TestClient) -> None:
    body = {
        "node": "rpi5",
        "status": "ok",
        "last_backup_at": ago(hours=1),
        "next_backup_at": "2099-01-01T03:00:00Z",
        "size_bytes": "412316860416",
    }
    response = client.post(WEBHOOK, json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    row = backups(client)[("rpi5", "default")]
    assert row["status"] == "ok"
    assert row["size_bytes"] == 412316860416
    assert row["next_backup_at"] == "2099-01-01T03:00:00Z"
    assert row["last_success_at"] == row["last_backup_at"]
    assert row["stale"] is False
    assert set(row) >= {
        "node",
        "source",
        "last_backup_at",
        "last_success_at",
        "next_backup_at",
        "size_bytes",
        "status",
        "updated_at",
        "stale",
    }
    assert open_insights(client) == []


def test_node_from_query(client: TestClient) -> None:
    response = client.post(WEBHOOK + "?node=rpi5", json={"status": "ok"}, headers=AUTH)
    assert response.status_code == 200
    assert ("rpi5", "default") in backups(client)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"node": "rpi5", "status": "done"}, "status"),
        ({"node": "rpi5"}, "status"),
        ({"node": "rpi5", "status": "ok", "size_bytes": -1}, "size_bytes"),
        ({"node": "rpi5", "status": "ok", "size_bytes": "12 GB"}, "size_bytes"),
        ({"node": "rpi5", "status": "ok", "size_bytes": True}, "size_bytes"),
        (
            {"node": "rpi5", "status": "ok", "last_backup_at": "2099-01-01T00:00:00Z"},
            "last_backup_at",
        ),
        (
            {"node": "rpi5", "status": "ok", "last_backup_at": "yesterday"},
            "last_backup_at",
        ),
        ({"node": "rpi 5", "status": "ok"}, "node"),
        ({"node": "rpi5", "status": "ok", "source": ""}, "source"),
        ({"phase": "post", "scheduleId": "k3Jd9xQa", "status": "fine"}, "status"),
        ({"phase": "middle", "scheduleId": "k3Jd9xQa"}, "phase"),
    ],
)
def test_invalid_body_is_rejected_whole(
    client: TestClient, body: dict, field: str
) -> None:
    response = client.post(WEBHOOK, json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["field"] == field
    assert set(error) == {"error", "field", "value", "accepted"}
    assert count_rows(client, "backup_status") == 0


def test_node_defaults_to_self_node(client: TestClient) -> None:
    response = client.post(WEBHOOK, json={"status": "ok"}, headers=AUTH)
    assert response.status_code == 200
    assert response.json()["backup"]["node"] == "sese-ai"


def test_conflicting_nodes_are_rejected(client: TestClient) -> None:
    response = client.post(
        WEBHOOK + "?node=sese-ai", json={"node": "rpi5", "status": "ok"}, headers=AUTH
    )
    assert response.status_code == 422
    assert response.json()["field"] == "node"


def test_unknown_node_is_404(client: TestClient) -> None:
    response = client.post(WEBHOOK, json={"node": "nas", "status": "ok"}, headers=AUTH)
    assert response.status_code == 404
    assert response.json()["value"] == "nas"


def test_malformed_json_is_400(client: TestClient) -> None:
    response = client.post(WEBHOOK, content=b"{", headers=AUTH)
    assert response.status_code == 400


def test_webhook_needs_token(client: TestClient) -> None:
    assert client.post(WEBHOOK, json={"status": "ok"}).status_code == 401


def test_zerobyte_lifecycle(client: TestClient) -> None:
    url = WEBHOOK + "?node=sese-ai"
    assert client.post(url, json=zerobyte("pre"), headers=AUTH).status_code == 200
    row = backups(client)[("sese-ai", "k3Jd9xQa")]
    assert row["status"] == "running"
    assert row["last_backup_at"] is None

    assert (
        client.post(url, json=zerobyte("post-success"), headers=AUTH).status_code == 200
    )
    row = backups(client)[("sese-ai", "k3Jd9xQa")]
    assert row["status"] == "ok"
    assert row["last_success_at"] is not None
    assert row["stale"] is False


def test_zerobyte_statuses_map(client: TestClient) -> None:
    expected = {
        "success": "ok",
        "warning": "partial",
        "error": "failed",
        "cancelled": "failed",
    }
    for index, (hook_status, status) in enumerate(expected.items()):
        body = zerobyte("post-error")
        body["status"] = hook_status
        body["scheduleId"] = f"sched{index}"
        response = client.post(WEBHOOK + "?node=rpi5", json=body, headers=AUTH)
        assert response.status_code == 200
        assert backups(client)[("rpi5", f"sched{index}")]["status"] == status


def test_zerobyte_error_text_is_kept(client: TestClient) -> None:
    body = zerobyte("post-error")
    client.post(WEBHOOK + "?node=rpi5", json=body, headers=AUTH)
    row = backups(client)[("rpi5", "Pq7Lm2Zr")]
    assert row["status"] == "failed"
    assert row["error"].startswith("unable to create lock in backend")


def test_zerobyte_without_node_uses_self_node(client: TestClient) -> None:
    client.post(WEBHOOK, json=zerobyte("post-success"), headers=AUTH)
    assert ("sese-ai", "k3Jd9xQa") in backups(client)


def test_zerobyte_pre_hook_always_2xx(client: TestClient) -> None:
    response = client.post(WEBHOOK + "?node=nas", json=zerobyte("pre"), headers=AUTH)
    assert response.status_code == 202
    assert response.json()["stored"] is False
    assert "unknown node" in response.json()["error"]
    assert count_rows(client, "backup_status") == 0


def test_older_report_keeps_newer_status(client: TestClient) -> None:
    newer = {"node": "rpi5", "status": "failed", "last_backup_at": ago(minutes=5)}
    older = {"node": "rpi5", "status": "ok", "last_backup_at": ago(hours=2)}
    client.post(WEBHOOK, json=newer, headers=AUTH)
    client.post(WEBHOOK, json=older, headers=AUTH)
    row = backups(client)["rpi5", "default"]
    assert row["status"] == "failed"
    assert row["last_success_at"] is not None


def test_stale_backup_opens_one_warning(client: TestClient) -> None:
    stale = {"node": "rpi5", "status": "ok", "last_backup_at": ago(hours=30)}
    client.post(WEBHOOK, json=stale, headers=AUTH)
    client.post(WEBHOOK, json=stale, headers=AUTH)
    evaluate(client)
    evaluate(client)
    assert backups(client)[("rpi5", "default")]["stale"] is True
    insights = open_insights(client)
    assert len(insights) == 1
    assert insights[0]["severity"] == "warning"
    assert insights[0]["source"] == "backup"
    assert "rpi5" in insights[0]["title"]

    fresh = {"node": "rpi5", "status": "ok", "last_backup_at": ago(minutes=1)}
    client.post(WEBHOOK, json=fresh, headers=AUTH)
    assert open_insights(client) == []
    all_insights = client.get("/api/v1/insights", headers=AUTH).json()["insights"]
    assert len(all_insights) == 1
    assert all_insights[0]["resolved_at"] is not None


def test_failed_backup_after_success_turns_stale_by_time(client: TestClient) -> None:
    client.post(
        WEBHOOK,
        json={"node": "rpi5", "status": "ok", "last_backup_at": ago(hours=23)},
        headers=AUTH,
    )
    client.post(WEBHOOK, json={"node": "rpi5", "status": "failed"}, headers=AUTH)
    assert backups(client)[("rpi5", "default")]["stale"] is False
    assert open_insights(client) == []


def test_staleness_survives_restart(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(backup_stale_hours=2)
    with TestClient(create_app(settings, run_workers=False)) as first:
        body = {"node": "rpi5", "status": "ok", "last_backup_at": ago(hours=1)}
        first.post(WEBHOOK, json=body, headers=AUTH)
        assert open_insights(first) == []

    # With a shorter window, a fresh process reads the stored time as stale.
    settings = settings_factory(backup_stale_hours=0.5)
    with TestClient(create_app(settings, run_workers=False)) as second:
        assert backups(second)[("rpi5", "default")]["stale"] is True
        evaluate(second)
        assert len(open_insights(second)) == 1
    with TestClient(create_app(settings, run_workers=False)) as third:
        evaluate(third)
        assert len(open_insights(third)) == 1


def test_evaluator_runs_in_server(server_factory) -> None:  # noqa: ANN001
    import time

    import httpx

    # 0.0003 h is about 1 s: fresh when written, stale by the next start.
    first = server_factory(PALAIS_BACKUP_STALE_HOURS="0.0003")
    first.start()
    body = {"node": "rpi5", "status": "ok", "last_backup_at": ago(seconds=0)}
    response = httpx.post(first.url + WEBHOOK, json=body, headers=AUTH, timeout=10)
    assert response.status_code == 200
    assert response.json()["backup"]["stale"] is False
    first.stop()
    time.sleep(1.2)

    # The evaluator's first pass runs at start, from the stored time.
    second = server_factory(PALAIS_BACKUP_STALE_HOURS="0.0003")
    second.start()
    deadline = time.monotonic() + 15
    insights = []
    while time.monotonic() < deadline and not insights:
        insights = httpx.get(
            second.url + "/api/v1/insights?open=true", headers=AUTH, timeout=10
        ).json()["insights"]
        time.sleep(0.2)
    assert [insight["source"] for insight in insights] == ["backup"]
    assert "insight evaluator started: every 30 s" in second.log()


def test_new_source_gets_one_window(client: TestClient) -> None:
    from sqlalchemy import text

    from tests.conftest import run_in_app

    pre = client.post(WEBHOOK + "?node=rpi5", json=zerobyte("pre"), headers=AUTH)
    evaluate(client)
    fresh = next(iter(backups(client).values()))
    insights_while_fresh = open_insights(client)

    async def backdate(session) -> None:  # noqa: ANN001
        old = datetime.now(UTC) - timedelta(hours=25)
        await session.execute(
            text("UPDATE backup_status SET created_at = :old"),
            {
                "old": old.replace(tzinfo=None)
                if session.bind.dialect.name == "sqlite"
                else old
            },
        )
        await session.commit()

    run_in_app(client, backdate)
    evaluate(client)
    overdue = next(iter(backups(client).values()))

    assert pre.status_code == 200
    assert fresh["stale"] is False
    assert insights_while_fresh == []
    assert overdue["stale"] is True
    assert len(open_insights(client)) == 1


@pytest.mark.parametrize(
    "raw",
    [
        b'{"phase": "pre", "scheduleId": "x6", "sourcePath": "/srv/a\\u0000b"}',
        b'{"phase": "pre", "scheduleId": "x6", "n": 1e999}',
        b'{"phase": ["pre"], "scheduleId": "x7"}',
        b'{"phase": "pre", "scheduleId": ',
    ],
    ids=["nul", "infinite number", "phase list", "malformed"],
)
def test_pre_hook_always_2xx(client: TestClient, raw: bytes) -> None:
    response = client.post(
        WEBHOOK + "?node=rpi5",
        content=raw,
        headers={**AUTH, "Content-Type": "application/json"},
    )

    assert response.status_code == 202
    assert response.json()["stored"] is False
    assert count_rows(client, "backup_status") == 0


def test_repeated_node_query_rejected(client: TestClient) -> None:
    response = client.post(
        WEBHOOK + "?node=rpi5&node=sese-ai", json={"status": "ok"}, headers=AUTH
    )

    assert response.status_code == 422
    assert response.json()["field"] == "node"
    assert count_rows(client, "backup_status") == 0
