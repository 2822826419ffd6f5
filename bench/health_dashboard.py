"""Latency of the health dashboard on PostgreSQL: 100 nodes x 20 services.

Run:  .venv/bin/python bench/health_dashboard.py [--requests N]

Not a test, and CI never runs it. It needs the same things as
bench/webhook_load.py: a local PostgreSQL that accepts the ``postgres`` user
without a password, and taskset.

It creates its own database (dropped at the end), lets ``palais serve`` migrate
it and seed 100 nodes, then fills 20 service states per node, peer links and
backups. Each case starts a fresh ``palais serve`` pinned to ``--server-cpu``,
with its background work running. A client pinned to ``--client-cpu`` then
times GET /health, GET /health/fragments/history and GET /api/v1/health/nodes,
one request at a time on one keep-alive connection, the three paths in turn.
A time runs from sending the request to reading the last byte of the body. It
is the server time plus the loopback transfer, so an upper bound of the
server time.

The first case has an empty history, the second one day of checks every 30 s
for every service (about 5.8 million rows of health_checks, loaded with
generate_series).

While the client times, bench/fixed_rate_client.py posts reports as the
fleet would: each of the 100 nodes once every 30 s with its 20 services, so
the server ingests and its node cache goes out of date at the real rate. The
two paths marked "all nodes out of date" are timed in a second round, each
request right after every node's state_version was raised: what the first
request after a start pays.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import httpx
from webhook_load import postgres_database, server

NODES = 100
SERVICES = 20
DAY_OF_CHECKS = 2880  # one day, every 30 s
TOKEN = "bench-token-0123456789"
PASSWORD = "bench-password-0123456789"
REPORT_INTERVAL_SECONDS = 30.0
# Timed right after every node's state_version was raised, so that the server
# must rebuild each node's cached services: the price of the first request
# after a start, or after the whole fleet reported at once.
COLD_PATHS = {
    "/health, all nodes out of date": "/health",
    "nodes API, all nodes out of date": "/api/v1/health/nodes",
}
WARM_PATHS = ("/health", "/health/fragments/history", "/api/v1/health/nodes")
PATHS = (*WARM_PATHS, *COLD_PATHS)
WARMUP_REQUESTS = 5
BENCH_DIR = Path(__file__).resolve().parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432",
        help="PostgreSQL server URL, without a database name",
    )
    parser.add_argument("--requests", type=int, default=200, help="timed requests")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--server-cpu", default="0", help="taskset CPU list")
    parser.add_argument("--client-cpu", default="1", help="taskset CPU list")
    return parser.parse_args()


async def execute(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


CURRENT_STATE = f"""
UPDATE nodes SET status = 'online', last_seen_at = now(),
  cpu_percent = 10 + id % 80, ram_percent = 20 + id % 70,
  disk_percent = 30 + id % 60, temperature = 40 + id % 30;
INSERT INTO service_states
  (node_id, service_name, status, response_time_ms, checked_at, details)
SELECT n.id, 'service-' || s,
       CASE WHEN (n.id + s) % 37 = 0 THEN 'unhealthy' ELSE 'healthy' END,
       (n.id * s) % 50, now(), NULL
FROM nodes n, generate_series(1, {SERVICES}) s;
INSERT INTO peer_links (node_id, peer_name, latency_ms, measured_at)
SELECT n.id, p.name, 5 + (n.id + p.id) % 40, now()
FROM nodes n JOIN nodes p
  ON p.id IN (n.id % {NODES} + 1, (n.id + 1) % {NODES} + 1)
WHERE p.id <> n.id;
INSERT INTO backup_status
  (node_id, source, last_backup_at, last_success_at, size_bytes, status,
   created_at, updated_at)
SELECT id, 'restic', now() - interval '3 hours',
       now() - interval '3 hours', id::bigint * 1000000000, 'ok',
       now() - interval '30 days', now()
FROM nodes;
"""

ONE_DAY = f"""
INSERT INTO health_checks
  (node_id, service_name, status, response_time_ms, checked_at, details)
SELECT n.id, 'service-' || s,
       CASE WHEN (n.id + s + i) % 97 = 0 THEN 'unhealthy' ELSE 'healthy' END,
       (n.id + s + i) % 50,
       now() - i * interval '30 seconds',
       NULL
FROM nodes n, generate_series(1, {SERVICES}) s,
     generate_series(0, {DAY_OF_CHECKS - 1}) i;
ANALYZE health_checks;
CHECKPOINT;
"""


async def load_one_day(url: str) -> None:
    started = time.perf_counter()
    await execute(url, ONE_DAY)
    connection = await asyncpg.connect(url)
    try:
        count = await connection.fetchval("SELECT count(*) FROM health_checks")
    finally:
        await connection.close()
    print(f"loaded {count} health checks in {time.perf_counter() - started:.1f} s")


async def wait_for_rollup(url: str) -> None:
    """Wait until the server's background rollup has settled.

    A pass re-reads the id range of the pass before, so after a bulk load the
    first two passes each read the whole last two hours. Timing starts once
    both bounds of the rolled-up range have reached the newest check.
    """
    connection = await asyncpg.connect(url)
    try:
        for _ in range(240):
            settled = await connection.fetchval(
                "SELECT coalesce(max(c.id), 0) = coalesce(min(s.previous_check_id),"
                " coalesce(max(c.id), 0))"
                " FROM health_checks c, history_rollup_state s"
            )
            settled = settled or not await connection.fetchval(
                "SELECT EXISTS (SELECT 1 FROM health_checks)"
            )
            if settled:
                return
            await asyncio.sleep(0.5)
    finally:
        await connection.close()
    raise SystemExit("the server's rollup did not settle in 120 s")


def log_in(client: httpx.Client) -> None:
    form = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    response = client.post("/login", data={"password": PASSWORD, "csrf_token": token})
    if response.status_code != 303:
        raise SystemExit(f"login failed: {response.status_code} {response.text}")


class Database:
    """One asyncpg connection, used between timed requests."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.connection = self.loop.run_until_complete(asyncpg.connect(url))

    def execute(self, statement: str) -> None:
        self.loop.run_until_complete(self.connection.execute(statement))

    def fetchval(self, statement: str) -> int:
        return self.loop.run_until_complete(self.connection.fetchval(statement))

    def close(self) -> None:
        self.loop.run_until_complete(self.connection.close())
        self.loop.close()


def time_all(
    client: httpx.Client, database: Database, requests: int
) -> dict[str, dict[str, float]]:
    """Time the usual paths, then the ones with every node out of date.

    Two rounds, because a path that finds the nodes out of date rebuilds only
    its own view, and would leave the other path to build its own next.
    """
    results = time_paths(client, database, requests, WARM_PATHS)
    return results | time_paths(client, database, requests, tuple(COLD_PATHS))


def time_paths(
    client: httpx.Client, database: Database, requests: int, labels: tuple[str, ...]
) -> dict[str, dict[str, float]]:
    """Request every path in turn, so that a slow moment affects them all."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    timings: dict[str, list[float]] = {label: [] for label in labels}
    sizes: dict[str, int] = {}
    for index in range(WARMUP_REQUESTS + requests):
        for label in labels:
            path = COLD_PATHS.get(label, label)
            if label in COLD_PATHS:
                database.execute("UPDATE nodes SET state_version = state_version + 1")
            started = time.perf_counter()
            response = client.get(path, headers=headers)
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise SystemExit(f"GET {path}: {response.status_code}")
            sizes[label] = len(response.content)
            if index >= WARMUP_REQUESTS:
                timings[label].append(elapsed)
    return {label: summary(timings[label], sizes[label]) for label in labels}


@contextmanager
def fleet(args: argparse.Namespace) -> Iterator[None]:
    """Post reports from every node at the fleet's rate until the block ends."""
    command = [
        "taskset", "-c", args.client_cpu,
        sys.executable, str(BENCH_DIR / "fixed_rate_client.py"),
        "--port", str(args.port), "--token", TOKEN,
        "--rate", str(NODES / REPORT_INTERVAL_SECONDS), "--duration", "86400",
        "--nodes", str(NODES), "--node-format", "node-{:03d}", "--connections", "4",
        "--service-names", ",".join(f"service-{s}" for s in range(1, SERVICES + 1)),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        process.terminate()
        process.wait()


def summary(timings: list[float], size: int) -> dict[str, float]:
    timings = sorted(timings)
    return {
        "p50": statistics.median(timings),
        "p95": timings[int(len(timings) * 0.95) - 1],
        "max": timings[-1],
        "kib": size / 1024,
    }


def run_case(
    args: argparse.Namespace, url: str, work_dir: Path, label: str, requests: int
) -> dict[str, dict[str, float]]:
    """Start a server, wait for its rollup, time every path, stop it."""
    command = [str(Path(sys.executable).parent / "palais"), "serve"]
    command += ["--port", str(args.port)]
    log = work_dir / f"palais-{label}.log"
    with server(command, server_env(url, work_dir), args.server_cpu, args.port, log):
        if not requests:
            return {}
        asyncio.run(wait_for_rollup(url))
        base = f"http://127.0.0.1:{args.port}"
        database = Database(url)
        try:
            with httpx.Client(base_url=base, timeout=30) as client:
                log_in(client)
                return timed_with_fleet(
                    args, database, lambda: time_all(client, database, requests)
                )
        finally:
            database.close()


def timed_with_fleet(
    args: argparse.Namespace,
    database: Database,
    timing: Callable[[], dict[str, dict[str, float]]],
) -> dict[str, dict[str, float]]:
    """Run ``timing`` while the fleet reports; print how many reports it sent."""
    count = "SELECT count(*) FROM webhook_events"
    before, started = database.fetchval(count), time.perf_counter()
    with fleet(args):
        results = timing()
    stored = database.fetchval(count) - before
    rate = stored / (time.perf_counter() - started)
    print(f"the fleet posted {stored} reports while timing ({rate:.2f}/s)")
    return results


def server_env(url: str, work_dir: Path) -> dict[str, str]:
    return {
        "PALAIS_DATA_DIR": str(work_dir / "data"),
        "PALAIS_DATABASE_URL": url,
        "PALAIS_API_TOKEN": TOKEN,
        "PALAIS_ADMIN_PASSWORD": PASSWORD,
        "PALAIS_SELF_AGENT": "false",
        "PALAIS_NODES": ",".join(f"node-{index:03d}" for index in range(NODES)),
    }


def cpu_times() -> list[int]:
    """Return the machine's CPU time counters from /proc/stat (Linux)."""
    with open("/proc/stat") as stat:
        return [int(value) for value in stat.readline().split()[1:]]


def steal_percent(before: list[int], after: list[int]) -> float:
    """Share of CPU time the hypervisor gave to other guests (the 8th counter)."""
    spent = [end - start for start, end in zip(before, after, strict=True)]
    return 100.0 * spent[7] / max(1, sum(spent))


def print_table(label: str, results: dict[str, dict[str, float]], steal: float) -> None:
    load = os.getloadavg()[0]
    print(f"\n{label} (load average {load:.1f}, CPU steal {steal:.1f} %)")
    print(f"{'path':34} {'KiB':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for path, figures in results.items():
        print(
            f"{path:34} {figures['kib']:6.0f} {figures['p50']:8.1f} "
            f"{figures['p95']:8.1f} {figures['max']:8.1f}"
        )


def main() -> None:
    args = parse_args()
    work_dir = Path(tempfile.mkdtemp(prefix="palais-bench-"))
    print(f"server logs and data directory: {work_dir}")
    # The server is pinned to --server-cpu; the client and the loads stay here.
    os.sched_setaffinity(0, {int(cpu) for cpu in args.client_cpu.split(",")})
    with postgres_database(args.postgres) as url:
        # The first start migrates the database and seeds the nodes.
        run_case(args, url, work_dir, "seed", requests=0)
        asyncio.run(execute(url, CURRENT_STATE))
        before = cpu_times()
        empty = run_case(args, url, work_dir, "empty", args.requests)
        print_table("empty history", empty, steal_percent(before, cpu_times()))
        asyncio.run(load_one_day(url))
        before = cpu_times()
        full = run_case(args, url, work_dir, "day", args.requests)
        steal = steal_percent(before, cpu_times())
        print_table("one day of checks every 30 s", full, steal)
    print("\nratio one day / empty (p95):")
    for path in PATHS:
        print(f"  {path:34} {full[path]['p95'] / empty[path]['p95']:.2f}")


if __name__ == "__main__":
    main()
