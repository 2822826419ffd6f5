"""VPN topology: the Headscale client, the stored snapshot and GET /health/vpn."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient

from palais.app import create_app
from palais.config import Settings
from palais.health.headscale import HeadscaleClient, HeadscaleError
from palais.health.vpn import poll_once
from tests.conftest import AUTH, TOKEN
from tests.fakes.headscale import FakeHeadscale

API_KEY = "hskey-api-Abcdefghijkl-s3cr3tvalue"
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["current", "0.22"])
def headscale(request: pytest.FixtureRequest) -> Iterator[FakeHeadscale]:
    fake = FakeHeadscale(request.param, api_key=API_KEY).start()
    yield fake
    fake.stop()


async def list_nodes(fake: FakeHeadscale, key: str = API_KEY, timeout: float = 5.0):
    client = HeadscaleClient(fake.url, key, timeout=timeout)
    try:
        return await client.list_nodes(NOW)
    finally:
        await client.close()


async def failure_of(fake: FakeHeadscale, **kwargs) -> str:  # noqa: ANN003
    with pytest.raises(HeadscaleError) as caught:
        await list_nodes(fake, **kwargs)
    message = str(caught.value)
    assert API_KEY not in message
    return message


async def test_client_reads_both_generations(headscale: FakeHeadscale) -> None:
    path, nodes = await list_nodes(headscale)
    assert path == headscale.list_path
    assert [node.name for node in nodes] == ["sese-ai", "rpi5", "seko-vpn"]
    assert [node.id for node in nodes] == ["1", "2", "3"]
    assert [node.online for node in nodes] == [True, True, False]
    assert nodes[0].ips == ["100.64.0.1", "fd7a:115c:a1e0::1"]
    assert nodes[0].user == "homelab"
    assert headscale.requests[-1][1] == f"Bearer {API_KEY}"


async def test_client_falls_back_to_machine_path() -> None:
    fake = FakeHeadscale("0.22", api_key=API_KEY).start()
    try:
        await list_nodes(fake)
    finally:
        fake.stop()
    assert [path for path, _ in fake.requests] == ["/api/v1/node", "/api/v1/machine"]


async def test_zero_and_null_expiry_mean_never(headscale: FakeHeadscale) -> None:
    _, nodes = await list_nodes(headscale)
    sese = nodes[0]
    assert sese.expiry is None
    assert sese.expired is False


async def test_past_expiry_marks_node_expired(headscale: FakeHeadscale) -> None:
    nodes = copy.deepcopy(headscale.nodes())
    nodes[1]["expiry"] = "2026-01-01T00:00:00.123456789Z"
    nodes[2]["expiry"] = "2030-01-01T00:00:00Z"
    headscale.set_nodes(nodes)
    _, parsed = await list_nodes(headscale)
    assert parsed[1].expired is True
    assert parsed[1].expiry == "2026-01-01T00:00:00.123456Z"
    assert parsed[2].expired is False


async def test_status_ignores_last_seen(headscale: FakeHeadscale) -> None:
    nodes = copy.deepcopy(headscale.nodes())
    nodes[0]["lastSeen"] = None
    nodes[1]["lastSeen"] = "2020-01-01T00:00:00.987654321Z"
    headscale.set_nodes(nodes)
    _, parsed = await list_nodes(headscale)
    assert parsed[0].online is True
    assert parsed[0].last_seen_at is None
    assert parsed[1].online is True


async def test_given_name_wins_and_missing_keys_pass(
    headscale: FakeHeadscale,
) -> None:
    headscale.set_nodes(
        [
            {"id": "7", "name": "host-raw", "givenName": "nice-name", "online": True},
            {"id": "8", "name": "only-name"},
        ]
    )
    _, parsed = await list_nodes(headscale)
    assert [node.name for node in parsed] == ["nice-name", "only-name"]
    assert parsed[1].online is False
    assert parsed[1].ips == []
    assert parsed[1].user is None


async def test_wrong_key_is_reported_as_rejected(headscale: FakeHeadscale) -> None:
    message = await failure_of(headscale, key="hskey-api-wrong")
    assert message.startswith("Headscale rejected the API key (HTTP ")


async def test_expired_key_is_reported_as_rejected(headscale: FakeHeadscale) -> None:
    headscale.key_expired = True
    message = await failure_of(headscale)
    assert "rejected the API key (HTTP 401" in message


async def test_server_error_is_reported(headscale: FakeHeadscale) -> None:
    headscale.fail_status = 500
    message = await failure_of(headscale)
    assert message == (
        "Headscale returned HTTP 500 on /api/v1/node: database is locked"
    )


async def test_slow_answer_times_out(headscale: FakeHeadscale) -> None:
    headscale.delay_seconds = 1.5
    message = await failure_of(headscale, timeout=0.3)
    assert message.startswith("Headscale timed out on /api/v1/node after 0.3 s")


async def test_unreachable_server_is_reported() -> None:
    fake = FakeHeadscale("current", api_key=API_KEY).start()
    url = fake.url
    fake.stop()
    client = HeadscaleClient(url, API_KEY, timeout=2)
    with pytest.raises(HeadscaleError, match="cannot reach Headscale at http://"):
        await client.list_nodes(NOW)
    await client.close()


async def test_unknown_routes_on_both_paths(headscale: FakeHeadscale) -> None:
    headscale.generation = "none"
    message = await failure_of(headscale)
    assert message == "Headscale returned HTTP 404 on /api/v1/machine: Not Found"


async def test_unreadable_node_is_skipped(
    headscale: FakeHeadscale, caplog: pytest.LogCaptureFixture
) -> None:
    good = headscale.nodes()[0]
    headscale.set_nodes(
        [
            {"id": "7", "name": "x", "lastSeen": "yesterday"},
            {"id": "8", "name": "y", "ipAddresses": "100.64.0.9"},
            "not a node",
            good,
        ]
    )
    _, nodes = await list_nodes(headscale)
    assert [node.name for node in nodes] == [good["givenName"]]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        f"skipped a Headscale node: {headscale.list_key}[0] (id 7).lastSeen: "
        "invalid timestamp 'yesterday'",
        f"skipped a Headscale node: {headscale.list_key}[1] (id 8).ipAddresses "
        "is not a list of strings",
        f"skipped a Headscale node: {headscale.list_key}[2] is not an object",
    ]


async def test_no_readable_node_is_an_error(headscale: FakeHeadscale) -> None:
    headscale.set_nodes([{"id": "1", "name": "x", "expiry": "soon"}])
    message = await failure_of(headscale)
    assert message == (
        "none of the 1 Headscale nodes could be read; the first: "
        f"{headscale.list_key}[0] (id 1).expiry: invalid timestamp 'soon'"
    )
    assert "5 minutes" not in message


@pytest.fixture
def vpn_client(
    settings_factory: Callable[..., Settings], headscale: FakeHeadscale
) -> Iterator[TestClient]:
    settings = settings_factory(headscale_url=headscale.url, headscale_api_key=API_KEY)
    with TestClient(create_app(settings, run_workers=False)) as test_client:
        yield test_client


def poll(client: TestClient, fake: FakeHeadscale) -> str | None:
    async def run() -> str | None:
        headscale = HeadscaleClient(fake.url, API_KEY, timeout=1)
        try:
            return await poll_once(headscale, client.app.state.sessions)
        finally:
            await headscale.close()

    return client.portal.call(run)


def test_vpn_api_not_configured(client: TestClient) -> None:
    response = client.get("/api/v1/health/vpn", headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert body["configured"] is False
    assert body["nodes"] == []
    assert "PALAIS_HEADSCALE_URL" in body["error"]


def test_vpn_api_needs_token(client: TestClient) -> None:
    assert client.get("/api/v1/health/vpn").status_code == 401


def test_vpn_api_before_first_poll(vpn_client: TestClient) -> None:
    body = vpn_client.get("/api/v1/health/vpn", headers=AUTH).json()
    assert body["configured"] is True
    assert body["stale"] is True
    assert body["error"] == "Headscale has not been polled yet"


def test_vpn_api_after_poll(vpn_client: TestClient, headscale: FakeHeadscale) -> None:
    assert poll(vpn_client, headscale) is None
    body = vpn_client.get("/api/v1/health/vpn", headers=AUTH).json()
    assert body["stale"] is False
    assert body["error"] is None
    assert body["fetched_at"] is not None
    names = {node["name"]: node for node in body["nodes"]}
    assert set(names) == {"sese-ai", "rpi5", "seko-vpn"}
    assert names["seko-vpn"]["online"] is False
    assert names["rpi5"]["palais_node"] == "rpi5"
    assert set(names["rpi5"]) >= {
        "name",
        "ips",
        "online",
        "expired",
        "last_seen_at",
        "user",
        "palais_node",
    }
    assert API_KEY not in str(body)


def test_vpn_nodes_match_by_tailscale_ip(
    vpn_client: TestClient, headscale: FakeHeadscale
) -> None:
    nodes = copy.deepcopy(headscale.nodes())
    nodes[1]["givenName"] = "raspberry"
    headscale.set_nodes(nodes)
    poll(vpn_client, headscale)
    body = vpn_client.get("/api/v1/health/vpn", headers=AUTH).json()
    by_name = {node["name"]: node["palais_node"] for node in body["nodes"]}
    # rpi5 is seeded with 100.64.0.2 in the test settings.
    assert by_name["raspberry"] == "rpi5"


@pytest.mark.parametrize("failure", ["status-500", "key-401", "slow"])
def test_failed_poll_keeps_last_topology(
    vpn_client: TestClient, headscale: FakeHeadscale, failure: str
) -> None:
    poll(vpn_client, headscale)
    if failure == "status-500":
        headscale.fail_status = 500
    elif failure == "key-401":
        headscale.key_expired = True
    else:
        headscale.delay_seconds = 2
    error = poll(vpn_client, headscale)
    assert error is not None
    body = vpn_client.get("/api/v1/health/vpn", headers=AUTH).json()
    assert body["stale"] is True
    assert body["error"] == error
    assert body["error_since"] is not None
    assert len(body["nodes"]) == 3
    assert API_KEY not in str(body)

    headscale.fail_status = None
    headscale.key_expired = False
    headscale.delay_seconds = 0
    assert poll(vpn_client, headscale) is None
    recovered = vpn_client.get("/api/v1/health/vpn", headers=AUTH).json()
    assert recovered["stale"] is False
    assert recovered["error_since"] is None


def report(node: str, peers: list[dict], timestamp: datetime | None = None) -> dict:
    body = {
        "node": node,
        "services": [],
        "cpu_percent": 1,
        "ram_percent": 1,
        "disk_percent": 1,
        "peers": peers,
    }
    if timestamp is not None:
        body["timestamp"] = timestamp.isoformat()
    return body


def test_links_from_agent_peers(client: TestClient) -> None:
    old = datetime.now(UTC) - timedelta(minutes=11)
    posts = [
        report("rpi5", [{"node": "sese-ai", "latency_ms": 12.5}]),
        report("sese-ai", [{"node": "seko-vpn", "latency_ms": None}]),
        report("seko-vpn", [{"node": "rpi5", "latency_ms": 40}], timestamp=old),
    ]
    for body in posts:
        response = client.post("/api/v1/health/webhook", json=body, headers=AUTH)
        assert response.status_code == 201, response.text
    links = client.get("/api/v1/health/vpn", headers=AUTH).json()["links"]
    by_pair = {(link["from"], link["to"]): link for link in links}
    assert by_pair[("rpi5", "sese-ai")]["latency_ms"] == 12.5
    assert by_pair[("rpi5", "sese-ai")]["state"] == "ok"
    assert by_pair[("sese-ai", "seko-vpn")]["state"] == "down"
    assert by_pair[("seko-vpn", "rpi5")]["state"] == "unknown"
    assert by_pair[("seko-vpn", "rpi5")]["latency_ms"] is None
    assert by_pair[("seko-vpn", "rpi5")]["measured_at"] is not None


def test_poller_in_server_keeps_key_out_of_logs(
    server_factory,
    headscale: FakeHeadscale,  # noqa: ANN001
) -> None:
    server = server_factory(
        PALAIS_HEADSCALE_URL=headscale.url,
        PALAIS_HEADSCALE_API_KEY=API_KEY,
        PALAIS_HEADSCALE_POLL_SECONDS="0.2",
    )
    server.start()
    body = _wait_for_vpn(server.url, lambda body: body["fetched_at"] is not None)
    assert len(body["nodes"]) == 3

    headscale.key_expired = True
    failed = _wait_for_vpn(server.url, lambda body: body["error"] is not None)
    assert failed["stale"] is True
    assert len(failed["nodes"]) == 3
    server.stop()
    log = server.log()
    assert "Headscale poll failed: Headscale rejected the API key" in log
    assert API_KEY not in log
    assert TOKEN not in log


def _wait_for_vpn(url: str, condition: Callable[[dict], bool]) -> dict:
    import time

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        body = httpx.get(url + "/api/v1/health/vpn", headers=AUTH, timeout=5).json()
        if condition(body):
            return body
        time.sleep(0.1)
    raise AssertionError(f"condition not met; last answer: {body}")
