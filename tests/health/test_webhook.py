"""POST /api/v1/health/webhook: storage, deduplication, ordering and bad input."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import AUTH, count_rows

WEBHOOK = "/api/v1/health/webhook"


def report(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "node": "rpi5",
        "services": [
            {
                "name": "postgresql",
                "status": "healthy",
                "response_time_ms": 12,
                "details": {"port": 5432},
            },
            {"name": "comfyui", "status": "unhealthy", "response_time_ms": None},
        ],
        "cpu_percent": 45.2,
        "ram_percent": 72.1,
        "disk_percent": 58.0,
        "temperature": 51.3,
    }
    body.update(overrides)
    return body


def nodes_by_name(client: TestClient) -> dict[str, dict[str, Any]]:
    response = client.get("/api/v1/health/nodes", headers=AUTH)
    assert response.status_code == 200
    return {node["name"]: node for node in response.json()["nodes"]}


def test_report_stored(client: TestClient) -> None:
    response = client.post(WEBHOOK, json=report(event_id="e-1"), headers=AUTH)

    assert response.status_code == 201
    assert response.json() == {"duplicate": False, "node": "rpi5", "checks": 2}
    assert count_rows(client, "health_checks") == 2
    node = nodes_by_name(client)["rpi5"]
    assert node["status"] == "online"
    assert node["degraded"] is True
    assert node["cpu_percent"] == 45.2
    assert node["temperature"] == 51.3
    assert node["tailscale_ip"] == "100.64.0.2"
    services = {service["name"]: service for service in node["services"]}
    assert services["postgresql"]["response_time_ms"] == 12
    assert services["postgresql"]["details"] == {"port": 5432}
    assert services["comfyui"]["status"] == "unhealthy"


def test_n8n_string_numbers_accepted(client: TestClient) -> None:
    body = report(cpu_percent="45.2", ram_percent="72", disk_percent="58.0")
    body["services"][0]["response_time_ms"] = "12.5"

    response = client.post(WEBHOOK, json=body, headers=AUTH)

    assert response.status_code == 201
    node = nodes_by_name(client)["rpi5"]
    assert node["cpu_percent"] == 45.2
    assert node["disk_percent"] == 58.0


def test_repeated_event_id_stored_once(client: TestClient) -> None:
    first = client.post(WEBHOOK, json=report(event_id="retry-1"), headers=AUTH)
    second = client.post(WEBHOOK, json=report(event_id="retry-1"), headers=AUTH)

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json() == {"duplicate": True, "node": "rpi5", "checks": 0}
    assert count_rows(client, "health_checks") == 2


def test_older_report_keeps_newer_metrics(client: TestClient) -> None:
    now = datetime.now(UTC)
    newer = report(cpu_percent=10, timestamp=now.isoformat())
    older = report(
        cpu_percent=90,
        timestamp=(now - timedelta(minutes=5)).isoformat(),
        services=[{"name": "postgresql", "status": "unhealthy"}],
    )

    assert client.post(WEBHOOK, json=newer, headers=AUTH).status_code == 201
    assert client.post(WEBHOOK, json=older, headers=AUTH).status_code == 201

    node = nodes_by_name(client)["rpi5"]
    assert node["cpu_percent"] == 10
    assert node["last_seen_at"].startswith(now.strftime("%Y-%m-%dT%H:%M:%S"))
    statuses = {service["name"]: service["status"] for service in node["services"]}
    assert statuses["postgresql"] == "healthy"
    # The late report's check is still part of the history.
    assert count_rows(client, "health_checks") == 3


def test_service_missing_from_newest_report_drops_out(client: TestClient) -> None:
    now = datetime.now(UTC)
    first = report(timestamp=(now - timedelta(seconds=30)).isoformat())
    second = report(
        timestamp=now.isoformat(),
        services=[{"name": "postgresql", "status": "healthy"}],
    )

    client.post(WEBHOOK, json=first, headers=AUTH)
    client.post(WEBHOOK, json=second, headers=AUTH)

    node = nodes_by_name(client)["rpi5"]
    assert [service["name"] for service in node["services"]] == ["postgresql"]
    assert node["degraded"] is False


def test_timestamp_without_offset_is_utc(client: TestClient) -> None:
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    naive = moment.replace(tzinfo=None).isoformat()

    client.post(WEBHOOK, json=report(timestamp=naive), headers=AUTH)

    node = nodes_by_name(client)["rpi5"]
    assert node["last_seen_at"] == moment.isoformat().replace("+00:00", "Z")


def test_nine_fraction_digits_and_offset(client: TestClient) -> None:
    moment = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    local = moment.astimezone(__import__("datetime").timezone(timedelta(hours=2)))
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + ".123456789+02:00"

    response = client.post(WEBHOOK, json=report(timestamp=text), headers=AUTH)

    assert response.status_code == 201
    seen = nodes_by_name(client)["rpi5"]["last_seen_at"]
    assert seen == moment.strftime("%Y-%m-%dT%H:%M:%S") + ".123456Z"


def test_node_offline_after_window(settings_factory) -> None:  # noqa: ANN001
    from palais.app import create_app

    settings = settings_factory(offline_after_seconds=60)
    with TestClient(create_app(settings, run_workers=False)) as client:
        old = datetime.now(UTC) - timedelta(seconds=120)
        client.post(WEBHOOK, json=report(timestamp=old.isoformat()), headers=AUTH)
        node = nodes_by_name(client)["rpi5"]

    assert node["status"] == "offline"
    assert node["degraded"] is False


def test_unknown_node_registered_when_enabled(settings_factory) -> None:  # noqa: ANN001
    from palais.app import create_app

    settings = settings_factory(auto_register_nodes=True)
    with TestClient(create_app(settings, run_workers=False)) as client:
        response = client.post(WEBHOOK, json=report(node="new-box"), headers=AUTH)
        names = set(nodes_by_name(client))

    assert response.status_code == 201
    assert "new-box" in names


def test_token_from_header_alternative(client: TestClient) -> None:
    headers = {"X-Palais-Token": AUTH["Authorization"].split()[1]}

    response = client.post(WEBHOOK, json=report(), headers=headers)

    assert response.status_code == 201


# Each case: a description, the body (a dict, or raw bytes), the expected status,
# and the field that the error must name (None for body-level errors).
# A day ahead, because the table is built at import and the suite takes minutes.
FUTURE = (datetime.now(UTC) + timedelta(days=1)).isoformat()
NESTED: dict[str, Any] = {}
for _level in range(40):
    NESTED = {"a": NESTED}
MANY_SERVICES = [{"name": f"s{index}", "status": "healthy"} for index in range(501)]
BAD_INPUT: list[tuple[str, Any, int, str | None]] = [
    ("malformed json", b'{"node": "rpi5",', 400, None),
    ("gzip body", gzip.compress(json.dumps(report()).encode()), 400, None),
    ("not an object", b"[1, 2]", 422, "body"),
    ("missing node", {k: v for k, v in report().items() if k != "node"}, 422, "node"),
    (
        "missing services",
        {k: v for k, v in report().items() if k != "services"},
        422,
        "services",
    ),
    (
        "missing cpu",
        {k: v for k, v in report().items() if k != "cpu_percent"},
        422,
        "cpu_percent",
    ),
    ("number as bool", report(cpu_percent=True), 422, "cpu_percent"),
    ("string with unit", report(cpu_percent="45.2%"), 422, "cpu_percent"),
    ("string nan", report(ram_percent="nan"), 422, "ram_percent"),
    (
        "nan literal",
        b'{"node": "rpi5", "services": [], "cpu_percent": NaN, '
        b'"ram_percent": 1, "disk_percent": 1}',
        422,
        "cpu_percent",
    ),
    (
        "infinity literal",
        b'{"node": "rpi5", "services": [], "cpu_percent": 1, '
        b'"ram_percent": Infinity, "disk_percent": 1}',
        422,
        "ram_percent",
    ),
    (
        "huge exponent",
        b'{"node": "rpi5", "services": [], "cpu_percent": 1e999, '
        b'"ram_percent": 1, "disk_percent": 1}',
        422,
        "cpu_percent",
    ),
    ("cpu over 100", report(cpu_percent=100.5), 422, "cpu_percent"),
    ("negative ram", report(ram_percent=-1), 422, "ram_percent"),
    ("disk over 110", report(disk_percent=111), 422, "disk_percent"),
    ("temperature too hot", report(temperature=151), 422, "temperature"),
    ("temperature too cold", report(temperature=-41), 422, "temperature"),
    ("services not a list", report(services={"a": 1}), 422, "services"),
    ("service not an object", report(services=["pg"]), 422, "services[0]"),
    (
        "unknown status",
        report(services=[{"name": "pg", "status": "up"}]),
        422,
        "services[0].status",
    ),
    ("missing status", report(services=[{"name": "pg"}]), 422, "services[0].status"),
    (
        "empty service name",
        report(services=[{"name": " ", "status": "healthy"}]),
        422,
        "services[0].name",
    ),
    (
        "long service name",
        report(services=[{"name": "x" * 101, "status": "healthy"}]),
        422,
        "services[0].name",
    ),
    (
        "duplicate service",
        report(
            services=[
                {"name": "pg", "status": "healthy"},
                {"name": "pg", "status": "unhealthy"},
            ]
        ),
        422,
        "services[1].name",
    ),
    ("too many services", report(services=MANY_SERVICES), 422, "services"),
    (
        "negative response time",
        report(services=[{"name": "pg", "status": "healthy", "response_time_ms": -3}]),
        422,
        "services[0].response_time_ms",
    ),
    (
        "details not an object",
        report(services=[{"name": "pg", "status": "healthy", "details": "ok"}]),
        422,
        "services[0].details",
    ),
    ("future timestamp", report(timestamp=FUTURE), 422, "timestamp"),
    ("timestamp not rfc3339", report(timestamp="yesterday"), 422, "timestamp"),
    ("empty event id", report(event_id=""), 422, "event_id"),
    ("invalid node name", report(node="rpi5; drop"), 422, "node"),
    ("unknown node", report(node="ghost"), 404, "node"),
    ("string with spaces", report(disk_percent=" 58"), 422, "disk_percent"),
    ("non-ascii digits", report(cpu_percent="\u0664\u0665"), 422, "cpu_percent"),
    (
        "huge integer",
        b'{"node": "rpi5", "services": [], "cpu_percent": '
        + b"9" * 5000
        + b', "ram_percent": 1, "disk_percent": 1}',
        422,
        "cpu_percent",
    ),
    (
        "year out of range",
        report(timestamp="0001-01-01T00:30:00+01:00"),
        422,
        "timestamp",
    ),
    (
        "nan inside details",
        b'{"node": "rpi5", "cpu_percent": 1, "ram_percent": 1, "disk_percent": 1,'
        b' "services": [{"name": "pg", "status": "healthy", "details": {"x": NaN}}]}',
        422,
        "services[0].details.x",
    ),
    (
        "nul inside details",
        report(
            services=[{"name": "pg", "status": "healthy", "details": {"x": "a\0b"}}]
        ),
        422,
        "services[0].details.x",
    ),
    (
        "lone surrogate",
        b'{"node": "rpi5", "cpu_percent": 1, "ram_percent": 1, "disk_percent": 1,'
        b' "services": [{"name": "pg", "status": "healthy",'
        b' "details": {"s": "\\ud800"}}]}',
        422,
        "services[0].details.s",
    ),
    (
        "surrogate in status",
        b'{"node": "rpi5", "cpu_percent": 1, "ram_percent": 1, "disk_percent": 1,'
        b' "services": [{"name": "pg", "status": "\\ud800"}]}',
        422,
        "services[0].status",
    ),
    (
        "deep nesting",
        b'{"node": "rpi5", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        422,
        "body",
    ),
    (
        "nested details",
        report(services=[{"name": "pg", "status": "healthy", "details": NESTED}]),
        422,
        "services[0].details" + ".a" * 30,
    ),
    (
        "peer is itself",
        report(peers=[{"node": "rpi5", "latency_ms": 1}]),
        422,
        "peers[0].node",
    ),
    (
        "duplicate peer",
        report(
            peers=[
                {"node": "sese-ai", "latency_ms": 1},
                {"node": "sese-ai", "latency_ms": 900},
            ]
        ),
        422,
        "peers[1].node",
    ),
    (
        "bad peer latency",
        report(peers=[{"node": "sese-ai", "latency_ms": "fast"}]),
        422,
        "peers[0].latency_ms",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [case[1:] for case in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
def test_bad_input_rejected(
    client: TestClient, body: Any, status: int, field: str | None
) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()

    response = client.post(
        WEBHOOK, content=raw, headers={**AUTH, "Content-Type": "application/json"}
    )

    assert response.status_code == status
    error = response.json()
    assert set(error) == {"error", "field", "value", "accepted"}
    assert error["field"] == field
    if field is not None:
        assert field in error["error"]
    assert error["accepted"]
    assert count_rows(client, "health_checks") == 0
    assert count_rows(client, "service_states") == 0
    assert count_rows(client, "webhook_events") == 0
    assert nodes_by_name(client)["rpi5"]["last_seen_at"] is None


def test_gzip_body_named_in_error(client: TestClient) -> None:
    headers = {**AUTH, "Content-Type": "application/json", "Content-Encoding": "gzip"}
    raw = gzip.compress(json.dumps(report()).encode())

    response = client.post(WEBHOOK, content=raw, headers=headers)

    assert response.status_code == 400
    assert "gzip-compressed" in response.json()["error"]
    assert "without Content-Encoding" in response.json()["error"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}],
    ids=["missing", "wrong token", "wrong scheme"],
)
def test_auth_required(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post(WEBHOOK, json=report(), headers=headers)

    assert response.status_code == 401
    assert response.json()["field"] == "Authorization"
    assert "test-token" not in response.text
    assert count_rows(client, "health_checks") == 0


def test_oversized_body_rejected(settings_factory) -> None:  # noqa: ANN001
    from palais.app import create_app

    settings = settings_factory(max_body_bytes=2048)
    body = report(
        services=[{"name": "pg", "status": "healthy", "details": {"blob": "x" * 4096}}]
    )
    with TestClient(create_app(settings, run_workers=False)) as client:
        declared = client.post(WEBHOOK, json=body, headers=AUTH)

        def chunks():  # no Content-Length: the limit applies while streaming
            raw = json.dumps(body).encode()
            for start in range(0, len(raw), 512):
                yield raw[start : start + 512]

        streamed = client.post(WEBHOOK, content=chunks(), headers=AUTH)
        stored = count_rows(client, "health_checks")

    assert declared.status_code == 413
    assert "2048" in declared.json()["accepted"]
    assert streamed.status_code == 413
    assert stored == 0


def test_peers_stored_forward_only(client: TestClient) -> None:
    now = datetime.now(UTC)
    client.post(
        WEBHOOK,
        json=report(
            timestamp=now.isoformat(), peers=[{"node": "sese-ai", "latency_ms": 12.5}]
        ),
        headers=AUTH,
    )
    client.post(
        WEBHOOK,
        json=report(
            timestamp=(now - timedelta(minutes=1)).isoformat(),
            peers=[{"node": "sese-ai", "latency_ms": 99}],
        ),
        headers=AUTH,
    )

    async def latency(session):  # noqa: ANN001, ANN202
        from sqlalchemy import text

        return await session.scalar(text("SELECT latency_ms FROM peer_links"))

    from tests.conftest import run_in_app

    assert run_in_app(client, latency) == 12.5


def test_future_limit_is_five_minutes(client: TestClient) -> None:
    now = datetime.now(UTC)
    too_far = report(timestamp=(now + timedelta(minutes=6)).isoformat())
    within = report(timestamp=(now + timedelta(minutes=4)).isoformat())

    rejected = client.post(WEBHOOK, json=too_far, headers=AUTH)
    accepted = client.post(WEBHOOK, json=within, headers=AUTH)

    assert rejected.status_code == 422
    assert rejected.json()["field"] == "timestamp"
    assert accepted.status_code == 201


def test_fast_clock_does_not_hide_later_reports(client: TestClient) -> None:
    ahead = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()
    fast = report(timestamp=ahead, cpu_percent=1)
    later = report(cpu_percent=99)
    later.pop("timestamp", None)

    assert client.post(WEBHOOK, json=fast, headers=AUTH).status_code == 201
    assert client.post(WEBHOOK, json=later, headers=AUTH).status_code == 201

    node = nodes_by_name(client)["rpi5"]
    assert node["cpu_percent"] == 99
    last_seen = datetime.fromisoformat(node["last_seen_at"])
    assert last_seen <= datetime.now(UTC)
