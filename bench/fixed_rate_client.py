"""Open-loop load: send health reports at a fixed rate and time each response.

wrk keeps a fixed number of requests in flight, so its latency grows with the
server's queue. A fleet of agents instead sends at its own pace, so this client
starts request ``i`` at ``start + i / rate`` whether or not earlier responses
have arrived. Latency is measured from that intended start, so a stalled
server shows as latency instead of a lower send rate.

It speaks HTTP/1.1 over keep-alive asyncio streams, without an HTTP library,
so one core can drive a few thousand requests a second. It prints one JSON
line with the counts and percentiles. webhook_load.py starts it in its own
process, pinned to a core that the server does not use.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime

SERVICES = (
    "nginx",
    "postgres",
    "redis",
    "ssh",
    "headscale",
    "comfyui",
    "n8n",
    "backup",
    "dns",
    "ntp",
)
REQUEST_TIMEOUT_SECONDS = 30.0


def build_report(sequence: int, args: argparse.Namespace) -> bytes:
    """Build one report from node ``sequence % args.nodes``."""
    services = [
        {
            "name": name,
            # One service in seven is down, so both statuses reach the database.
            "status": "unhealthy" if (sequence + index) % 7 == 0 else "healthy",
            "response_time_ms": (sequence + index) % 250 + index / 10,
            "details": {"target": f"tcp://10.0.0.{index}:{8000 + index}"},
        }
        for index, name in enumerate(args.service_names.split(","))
    ]
    report = {
        "node": args.node_format.format(sequence % args.nodes),
        "cpu_percent": sequence % 100 + 0.5,
        "ram_percent": sequence * 7 % 100 + 0.25,
        "disk_percent": float(sequence * 3 % 100),
        "temperature": float(30 + sequence % 40),
        "timestamp": datetime.now(UTC).isoformat(timespec="microseconds"),
        "event_id": str(uuid.uuid4()),
        "services": services,
    }
    return json.dumps(report).encode()


class Connection:
    """One keep-alive HTTP/1.1 connection that sends a request and reads the reply."""

    def __init__(self, host: str, port: int, path: str, token: str) -> None:
        self.host, self.port = host, port
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> int:
        """Send ``body`` and return the status code, reconnecting if needed."""
        # uvicorn closes a keep-alive connection after 5 s idle. At a low rate
        # most pooled connections sit idle that long, so open a new one.
        if self.writer is None or self.writer.is_closing() or self.reader.at_eof():
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port
            )
        self.writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        header = await self.reader.readuntil(b"\r\n\r\n")
        status = int(header.split(b" ", 2)[1])
        await self.reader.readexactly(content_length(header))
        if b"connection: close" in header.lower():
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = None


def content_length(header: bytes) -> int:
    for line in header.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError("response has no Content-Length, so its end is unknown")


class Run:
    """Counters and latencies of one fixed-rate run."""

    def __init__(self) -> None:
        self.statuses: Counter[str] = Counter()
        self.latencies: list[float] = []


async def send_one(
    pool: asyncio.Queue[Connection], body: bytes, intended: float, run: Run
) -> None:
    connection = await pool.get()
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
            status = await connection.post(body)
        run.statuses[str(status)] += 1
    except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError) as exc:
        # A failed exchange leaves the stream in an unknown state, so reconnect.
        connection.close()
        run.statuses[type(exc).__name__] += 1
    finally:
        pool.put_nowait(connection)
    run.latencies.append(time.perf_counter() - intended)


async def run_fixed_rate(args: argparse.Namespace) -> dict:
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(args.connections):
        pool.put_nowait(Connection(args.host, args.port, args.path, args.token))
    run = Run()
    tasks = []
    total = int(args.rate * args.duration)
    start = time.perf_counter()
    for sequence in range(total):
        intended = start + sequence / args.rate
        delay = intended - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        body = build_report(sequence, args)
        tasks.append(asyncio.create_task(send_one(pool, body, intended, run)))
    # Every request gets its response before the counts are printed, so the
    # driver can compare them with the rows in the database exactly.
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    return summarize(run, total, elapsed)


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index]


def summarize(run: Run, sent: int, elapsed: float) -> dict:
    latencies = sorted(run.latencies)
    return {
        "sent": sent,
        "elapsed_s": elapsed,
        "statuses": dict(run.statuses),
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": (latencies[-1] if latencies else float("nan")) * 1000,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="server address")
    parser.add_argument("--port", type=int, required=True, help="server TCP port")
    parser.add_argument("--path", default="/api/v1/health/webhook")
    parser.add_argument("--token", default="bench", help="API token")
    parser.add_argument("--rate", type=float, default=300, help="reports per second")
    parser.add_argument("--duration", type=float, default=60, help="seconds")
    parser.add_argument("--nodes", type=int, default=1000, help="distinct node names")
    parser.add_argument(
        "--node-format",
        default="bench-node-{:04d}",
        help="node name, formatted with the node number",
    )
    parser.add_argument(
        "--service-names",
        default=",".join(SERVICES),
        help="comma-separated service names of every report",
    )
    parser.add_argument(
        "--connections", type=int, default=64, help="keep-alive connections"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    try:
        import uvloop
    except ImportError:
        uvloop = None
    runner = uvloop.run if uvloop is not None else asyncio.run
    print(json.dumps(runner(run_fixed_rate(args))))


if __name__ == "__main__":
    main()
