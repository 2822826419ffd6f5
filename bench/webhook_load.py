"""Load benchmark of POST /api/v1/health/webhook on PostgreSQL.

Not a test, and CI never runs it. It needs a local PostgreSQL server that
accepts the ``postgres`` user without a password, wrk on the PATH and taskset.

For each target, Palais and then a bare ASGI app that only parses the JSON
(bench/bare_asgi.py, the ceiling of uvicorn on this machine), it runs:

1. a warm-up of ``--warmup`` seconds at the first fixed rate;
2. wrk for ``--duration`` seconds with ``--connections`` requests in flight,
   which finds the maximum throughput;
3. bench/fixed_rate_client.py at each ``--rate`` for ``--duration`` seconds,
   which measures latency at the rate a fleet would send.

Every report comes from one of ``--nodes`` node names, seeded through
PALAIS_NODES, carries 10 services, a unique event_id and the current time.
After each Palais step the rows in health_checks are compared with 10 times
the 201 responses. The server runs pinned to ``--server-cpu`` and the load
generators to ``--client-cpu``. PostgreSQL is left to the scheduler.

The database palais_bench_<random> is created at the start and dropped at the
end. Usage: ``.venv/bin/python bench/webhook_load.py --duration 60``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

BENCH_DIR = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
WEBHOOK_PATH = "/api/v1/health/webhook"
TOKEN = "bench"
CHECKS_PER_REPORT = 10
STARTUP_TIMEOUT_SECONDS = 60.0
WRK_LINE = re.compile(r"^WRK_RESULT (.*)$", re.MULTILINE)


@dataclass
class StepResult:
    """The figures of one load step, as printed in the results table."""

    target: str
    load: str
    reports_per_second: float
    p50_ms: float
    p99_ms: float
    acknowledged: int
    failed: int
    rows_stored: int | None = None
    # The 1-minute load average at the end of the step, to spot a step that
    # shared the cores with other processes.
    load_average: float = 0.0

    @property
    def rows_expected(self) -> int:
        return self.acknowledged * CHECKS_PER_REPORT


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    parser.add_argument("--duration", type=float, default=60, help="seconds a step")
    parser.add_argument("--warmup", type=float, default=10, help="seconds of warm-up")
    parser.add_argument("--nodes", type=int, default=1000, help="distinct node names")
    parser.add_argument(
        "--rate",
        type=float,
        action="append",
        help="fixed rate in reports per second; repeat for several (default: 300)",
    )
    parser.add_argument(
        "--connections", type=int, default=32, help="wrk requests in flight"
    )
    parser.add_argument("--server-cpu", default="0", help="taskset CPU list")
    parser.add_argument(
        "--server-workers", type=int, default=1, help="palais serve --workers"
    )
    parser.add_argument("--client-cpu", default="1", help="taskset CPU list")
    parser.add_argument("--port", type=int, default=18080, help="server TCP port")
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432",
        help="PostgreSQL server URL, without a database name",
    )
    parser.add_argument("--skip-bare", action="store_true", help="measure Palais only")
    args = parser.parse_args()
    args.rate = args.rate or [300.0]
    return args


@contextmanager
def postgres_database(server_url: str):
    """Create an empty database with a random name and drop it on exit."""
    name = f"palais_bench_{secrets.token_hex(4)}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield f"{server_url}/{name}"
    finally:
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" (FORCE)'))


async def _admin(server_url: str, statement: str) -> None:
    connection = await asyncpg.connect(f"{server_url}/postgres")
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _count_rows(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetchval("SELECT count(*) FROM health_checks")
    finally:
        await connection.close()


def count_stored_rows(database_url: str) -> int:
    """Count health_checks rows once the count stops growing.

    wrk stops timing at the deadline, but the server still finishes the
    requests in flight, so their rows arrive a moment later.
    """
    previous = -1
    current = asyncio.run(_count_rows(database_url))
    while current != previous:
        time.sleep(1.0)
        previous, current = current, asyncio.run(_count_rows(database_url))
    return current


@contextmanager
def server(command: list[str], env: dict[str, str], cpu: str, port: int, log: Path):
    """Start a server pinned to ``cpu``, wait for its port, stop it on exit."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["taskset", "-c", cpu, *command],
            env={**os.environ, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_serving(process, port, log)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_serving(process: subprocess.Popen, port: int, log: Path) -> None:
    # Any HTTP response, even a 404 from the bare app, means uvicorn is up and
    # Palais has finished its migrations.
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}; see {log}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"server start timed out: no response on port {port}; see {log}")


def palais_command(args: argparse.Namespace, database_url: str, data_dir: Path):
    nodes = ",".join(f"bench-node-{index:04d}" for index in range(args.nodes))
    env = {
        "PALAIS_DATA_DIR": str(data_dir),
        "PALAIS_DATABASE_URL": database_url,
        "PALAIS_API_TOKEN": TOKEN,
        "PALAIS_SELF_AGENT": "false",
        "PALAIS_NODES": nodes,
    }
    command = [str(VENV_BIN / "palais"), "serve", "--port", str(args.port)]
    command += ["--workers", str(args.server_workers)]
    return command, env


def bare_command(args: argparse.Namespace):
    script = str(BENCH_DIR / "bare_asgi.py")
    return [sys.executable, script, "--port", str(args.port)], {}


def run_wrk(args: argparse.Namespace, target: str) -> StepResult:
    command = [
        "taskset", "-c", args.client_cpu,
        "wrk", "-t2", f"-c{args.connections}", f"-d{int(args.duration)}s",
        "--timeout", "30s", "-s", str(BENCH_DIR / "webhook.lua"),
        f"http://127.0.0.1:{args.port}{WEBHOOK_PATH}",
        "--", TOKEN, str(args.nodes), secrets.token_hex(4), "2",
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True)
    match = WRK_LINE.search(output.stdout)
    if match is None:
        raise SystemExit(f"wrk printed no WRK_RESULT line:\n{output.stdout}")
    fields = dict(pair.split("=", 1) for pair in match.group(1).split())
    statuses = dict(item.split(":") for item in fields["statuses"].split(",") if item)
    acknowledged = int(statuses.get("201", 0))
    requests = int(fields["requests"])
    errors = int(fields["socket_errors"]) + int(fields["timeouts"])
    return StepResult(
        target=target,
        load=f"wrk, {args.connections} in flight",
        reports_per_second=requests / (int(fields["duration_us"]) / 1e6),
        p50_ms=int(fields["p50_us"]) / 1000,
        p99_ms=int(fields["p99_us"]) / 1000,
        acknowledged=acknowledged,
        failed=requests - acknowledged + errors,
    )


def run_fixed_rate(
    args: argparse.Namespace, target: str, rate: float, duration: float
) -> StepResult:
    command = [
        "taskset", "-c", args.client_cpu,
        sys.executable, str(BENCH_DIR / "fixed_rate_client.py"),
        "--port", str(args.port), "--token", TOKEN, "--rate", str(rate),
        "--duration", str(duration), "--nodes", str(args.nodes),
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True)
    summary = json.loads(output.stdout.strip().splitlines()[-1])
    acknowledged = summary["statuses"].get("201", 0)
    return StepResult(
        target=target,
        load=f"fixed rate {rate:g}/s",
        reports_per_second=acknowledged / summary["elapsed_s"],
        p50_ms=summary["p50_ms"],
        p99_ms=summary["p99_ms"],
        acknowledged=acknowledged,
        failed=summary["sent"] - acknowledged,
    )


def measure(args: argparse.Namespace, target: str, database_url: str | None):
    """Run the warm-up, wrk and the fixed-rate steps against a running server."""
    run_fixed_rate(args, target, args.rate[0], args.warmup)
    results = []
    steps = [lambda: run_wrk(args, target)]
    steps += [
        lambda rate=rate: run_fixed_rate(args, target, rate, args.duration)
        for rate in args.rate
    ]
    for step in steps:
        before = count_stored_rows(database_url) if database_url else 0
        result = step()
        result.load_average = os.getloadavg()[0]
        if database_url:
            result.rows_stored = count_stored_rows(database_url) - before
        print(format_row(result), flush=True)
        results.append(result)
    return results


def measure_palais(args: argparse.Namespace, work_dir: Path) -> list[StepResult]:
    with postgres_database(args.postgres) as database_url:
        command, env = palais_command(args, database_url, work_dir / "data")
        log = work_dir / "palais.log"
        with server(command, env, args.server_cpu, args.port, log):
            return measure(args, "Palais", database_url)


def measure_bare(args: argparse.Namespace, work_dir: Path) -> list[StepResult]:
    command, env = bare_command(args)
    log = work_dir / "bare.log"
    with server(command, env, args.server_cpu, args.port, log):
        return measure(args, "bare ASGI", None)


TABLE_HEADER = (
    "| target | load | reports/s | p50 ms | p99 ms | 201 responses | failed "
    "| rows stored / 10 x 201 | lost | load avg |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def format_row(result: StepResult) -> str:
    rows = lost = "n/a"
    if result.rows_stored is not None:
        rows = f"{result.rows_stored} / {result.rows_expected}"
        # More rows than acknowledged is expected after wrk: the server still
        # stores the requests in flight when wrk stops reading responses.
        missing = max(0, result.rows_expected - result.rows_stored)
        lost = str(-(-missing // CHECKS_PER_REPORT))
    return (
        f"| {result.target} | {result.load} | {result.reports_per_second:.0f} "
        f"| {result.p50_ms:.1f} | {result.p99_ms:.1f} | {result.acknowledged} "
        f"| {result.failed} | {rows} | {lost} | {result.load_average:.1f} |"
    )


def main() -> None:
    args = parse_args()
    # Kept after the run: the server logs there explain a failed start.
    work_dir = Path(tempfile.mkdtemp(prefix="palais-bench-"))
    print(f"server logs and data directory: {work_dir}\n", flush=True)
    print(TABLE_HEADER, flush=True)
    results = measure_palais(args, work_dir)
    if not args.skip_bare:
        results += measure_bare(args, work_dir)
    print("\n" + TABLE_HEADER)
    for result in results:
        print(format_row(result))


if __name__ == "__main__":
    main()
