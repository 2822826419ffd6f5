"""Server time of the health dashboard on PostgreSQL: 100 nodes x 20 services.

Run:  .venv/bin/python bench/health_dashboard.py [--admin-url URL] [--requests N]

It creates its own database (dropped at the end) and seeds 100 nodes with 20
services each, peer links and backups. It then times GET /health,
GET /health/fragments/history and GET /api/v1/health/nodes in-process, through
Starlette's TestClient. A middleware times each request from its start to the
last byte of the response, so no client or network time is counted. The first
run has an empty history, the second one day of checks every 30 s for every
service (about 5.8 million rows of health_checks, loaded with generate_series).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from fastapi.testclient import TestClient

from palais.app import create_app
from palais.config import Settings
from palais.db.types import utcnow
from palais.health.rollup import rollup_once

NODES = 100
SERVICES = 20
DAY_OF_CHECKS = 2880  # one day, every 30 s
TOKEN = "bench-token-0123456789"
PASSWORD = "bench-password-0123456789"
PATHS = ("/health", "/health/fragments/history", "/api/v1/health/nodes")


async def admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def seed_current_state(url: str) -> None:
    """Fill nodes, service states, peer links and backups as agents would."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            """
            UPDATE nodes SET status = 'online', last_seen_at = now(),
              cpu_percent = 10 + id % 80, ram_percent = 20 + id % 70,
              disk_percent = 30 + id % 60, temperature = 40 + id % 30;
            INSERT INTO service_states
              (node_id, service_name, status, response_time_ms, checked_at, details)
            SELECT n.id, 'service-' || s,
                   CASE WHEN (n.id + s) % 37 = 0 THEN 'unhealthy' ELSE 'healthy' END,
                   (n.id * s) % 50, now(), NULL
            FROM nodes n, generate_series(1, $1::int) s;
            INSERT INTO peer_links (node_id, peer_name, latency_ms, measured_at)
            SELECT n.id, p.name, 5 + (n.id + p.id) % 40, now()
            FROM nodes n JOIN nodes p
              ON p.id IN (n.id % $2::int + 1, (n.id + 1) % $2::int + 1)
            WHERE p.id <> n.id;
            INSERT INTO backup_status
              (node_id, source, last_backup_at, last_success_at, size_bytes, status,
               created_at, updated_at)
            SELECT id, 'restic', now() - interval '3 hours',
                   now() - interval '3 hours', id::bigint * 1000000000, 'ok',
                   now() - interval '30 days', now()
            FROM nodes;
            """.replace("$1::int", str(SERVICES)).replace("$2::int", str(NODES))
        )
    finally:
        await connection.close()


async def load_one_day(url: str) -> float:
    """Insert one day of checks every 30 s for every service; return seconds."""
    started = time.perf_counter()
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            f"""
            INSERT INTO health_checks
              (node_id, service_name, status, response_time_ms, checked_at, details)
            SELECT n.id, 'service-' || s,
                   CASE WHEN (n.id + s + i) % 97 = 0 THEN 'unhealthy'
                        ELSE 'healthy' END,
                   (n.id + s + i) % 50,
                   now() - i * interval '30 seconds',
                   NULL
            FROM nodes n, generate_series(1, {SERVICES}) s,
                 generate_series(0, {DAY_OF_CHECKS - 1}) i;
            ANALYZE health_checks;
            """
        )
        count = await connection.fetchval("SELECT count(*) FROM health_checks")
    finally:
        await connection.close()
    print(f"loaded {count} health checks in {time.perf_counter() - started:.1f} s")
    return time.perf_counter() - started


def roll_up(client: TestClient, app) -> None:  # noqa: ANN001
    """Run one pass of the background rollup, as the running server would."""

    async def run() -> int:
        async with app.state.sessions() as session:
            return await rollup_once(session, utcnow())

    started = time.perf_counter()
    rows = client.portal.call(run)
    elapsed = time.perf_counter() - started
    print(f"rollup pass: {rows} minute rows in {elapsed * 1000:.0f} ms")


def log_in(client: TestClient) -> None:
    form = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    response = client.post(
        "/login",
        data={"password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


class ServerTimer:
    """ASGI middleware that records the time from request to last body byte."""

    def __init__(self, app) -> None:  # noqa: ANN001
        self.app = app
        self.timings: list[float] = []

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message) -> None:  # noqa: ANN001
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.timings.append((time.perf_counter() - started) * 1000)

        await self.app(scope, receive, timed_send)


def measure(
    client: TestClient, timer: ServerTimer, path: str, requests: int
) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for _ in range(5):
        assert client.get(path, headers=headers).status_code == 200
    timer.timings.clear()
    for _ in range(requests):
        assert client.get(path, headers=headers).status_code == 200
    timings = sorted(timer.timings)
    return {
        "p50": statistics.median(timings),
        "p95": timings[int(len(timings) * 0.95) - 1],
        "max": timings[-1],
    }


def run_case(settings: Settings, requests: int) -> dict[str, dict[str, float]]:
    app = create_app(settings, run_workers=False)
    timer = ServerTimer(app)
    with TestClient(timer) as client:
        roll_up(client, app)
        roll_up(client, app)
        log_in(client)
        return {path: measure(client, timer, path, requests) for path in PATHS}


def print_table(label: str, results: dict[str, dict[str, float]]) -> None:
    print(f"\n{label}")
    print(f"{'path':34} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for path, figures in results.items():
        print(
            f"{path:34} {figures['p50']:8.1f} {figures['p95']:8.1f} "
            f"{figures['max']:8.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--admin-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL URL allowed to create and drop databases",
    )
    parser.add_argument("--requests", type=int, default=200, help="timed requests")
    args = parser.parse_args()

    name = f"palais_bench_{uuid.uuid4().hex[:8]}"
    base = args.admin_url.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    asyncio.run(admin(args.admin_url, f'CREATE DATABASE "{name}"'))
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            settings = Settings(
                data_dir=Path(data_dir),
                database_url=url,
                api_token=TOKEN,
                admin_password=PASSWORD,
                session_secret="bench-session-secret",
                self_agent=False,
                nodes=",".join(f"node-{index:03d}" for index in range(NODES)),
            )
            # The first start migrates and seeds the nodes.
            with TestClient(create_app(settings, run_workers=False)):
                pass
            asyncio.run(seed_current_state(url))
            empty = run_case(settings, args.requests)
            print_table("empty history", empty)
            asyncio.run(load_one_day(url))
            full = run_case(settings, args.requests)
            print_table("one day of checks every 30 s", full)
            print("\nratio one day / empty (p95):")
            for path in PATHS:
                ratio = full[path]["p95"] / empty[path]["p95"]
                print(f"  {path:34} {ratio:.2f}")
    finally:
        drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        asyncio.run(admin(args.admin_url, drop))


if __name__ == "__main__":
    main()
