"""Server time and memory of the creative pages with many stored jobs and images.

It creates a fresh PostgreSQL database, migrates it and stores ``--jobs`` jobs
with ``--images`` assets (all pointing at one small PNG). It then logs in
through the form and times requests to the app in this process through
httpx's ASGI transport, so the figures are server time without any network.
Memory is the tracemalloc peak of one request, measured once with a tenth of
the images and once with all of them. A flat peak means that the pages load
one page of rows.

Usage: ``python bench/creative_studio.py --postgres postgresql://postgres@127.0.0.1:5432/test``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from PIL import Image
from sqlalchemy import delete, insert, select

from palais.app import create_app
from palais.config import Settings
from palais.db.models import CreativeAsset, CreativeJob

PASSWORD = "bench-password-0123"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
BATCH = 2000


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))
    return ordered[index]


async def create_database(admin_url: str, name: str) -> str:
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name


async def drop_database(admin_url: str, name: str) -> None:
    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def seed(app, data_dir: Path, jobs: int, images: int) -> None:  # noqa: ANN001
    """Insert jobs and assets in batches; images are spread evenly over jobs."""
    folder = data_dir / "deliverables" / "creative" / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (512, 512), (40, 90, 200)).save(folder / "image.png")
    start = datetime(2026, 1, 1, tzinfo=UTC)

    async with app.state.sessions() as session:
        await session.execute(delete(CreativeAsset))
        await session.execute(delete(CreativeJob))
        job_rows = [_job_row(index, start) for index in range(jobs)]
        for offset in range(0, jobs, BATCH):
            await session.execute(
                insert(CreativeJob.__table__), job_rows[offset : offset + BATCH]
            )
        ids = list(
            await session.scalars(select(CreativeJob.id).order_by(CreativeJob.id))
        )
        asset_rows = [_asset_row(index, ids, start) for index in range(images)]
        for offset in range(0, images, BATCH):
            await session.execute(
                insert(CreativeAsset.__table__), asset_rows[offset : offset + BATCH]
            )
        await session.commit()


def _job_row(index: int, start: datetime) -> dict:
    when = start + timedelta(minutes=index)
    status = ("success", "error", "interrupted", "deleted", "lost")[index % 5]
    return {
        "prompt_id": str(uuid.UUID(int=index)),
        "client_id": "bench",
        "origin": "palais",
        "status": status,
        "progress": 1.0,
        "text": f"benchmark image number {index}",
        "seed": index,
        "template": "txt2img",
        "workflow": {"1": {"class_type": "EmptyImage", "inputs": {"width": 512}}},
        "task_id": None,
        "number": float(index),
        "submitted_at": when,
        "started_at": when,
        "finished_at": when + timedelta(seconds=20),
        "updated_at": when,
        "error": None,
        "outputs": [],
        "outputs_stored": True,
    }


def _asset_row(index: int, job_ids: list[int], start: datetime) -> dict:
    # Two images per job when there are twice as many images as jobs.
    return {
        "job_id": job_ids[(index // 2) % len(job_ids)],
        "output_key": f"{index:064x}",
        "node_id": "9",
        "comfy_filename": f"bench_{index:05}_.png",
        "comfy_subfolder": "palais",
        "comfy_type": "output",
        "file": "deliverables/creative/bench/image.png",
        "filename": f"bench_{index:05}_.png",
        "mime": "image/png",
        "size": 1000,
        "sha256": "0" * 64,
        "thumbnail": None,
        "created_at": start + timedelta(seconds=30 * index),
    }


async def log_in(client: httpx.AsyncClient) -> None:
    form = await client.get("/login")
    token = CSRF_INPUT.search(form.text).group(1)
    response = await client.post(
        "/login", data={"password": PASSWORD, "csrf_token": token, "next": "/creative"}
    )
    assert response.status_code == 303, response.text


async def time_requests(
    client: httpx.AsyncClient, paths: list[str], rounds: int
) -> dict[str, dict[str, float]]:
    results = {}
    for path in paths:
        await client.get(path)  # warm the statement cache and the pool
        timings = []
        for _ in range(rounds):
            began = time.perf_counter()
            response = await client.get(path)
            timings.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200, (path, response.status_code)
        results[path] = {
            "p50_ms": round(statistics.median(timings), 1),
            "p95_ms": round(percentile(timings, 0.95), 1),
            "max_ms": round(max(timings), 1),
        }
    return results


async def peak_memory(client: httpx.AsyncClient, path: str) -> float:
    """Return the tracemalloc peak in KiB of one request."""
    await client.get(path)
    tracemalloc.start()
    tracemalloc.reset_peak()
    await client.get(path)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return round(peak / 1024, 1)


async def run(args: argparse.Namespace) -> dict:
    name = f"palais_bench_{uuid.uuid4().hex[:8]}"
    url = await create_database(args.postgres, name)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            return await measure(args, url, Path(tmp))
    finally:
        await drop_database(args.postgres, name)


async def measure(args: argparse.Namespace, url: str, data_dir: Path) -> dict:
    settings = Settings(
        data_dir=data_dir,
        database_url=url,
        api_token="bench-token-0123456789",
        admin_password=PASSWORD,
        self_agent=False,
    )
    app = create_app(settings, run_workers=False)
    pages = args.images // 24
    paths = [
        "/creative",
        "/creative/fragments/queue",
        "/creative/fragments/gallery?page=1",
        f"/creative/fragments/gallery?page={pages // 2}",
        f"/creative/fragments/gallery?page={pages}",
        "/creative/fragments/gallery?since=2026-01-03&until=2026-01-03",
    ]
    report: dict = {"jobs": args.jobs, "images": args.images, "rounds": args.rounds}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", follow_redirects=False
        ) as client:
            await log_in(client)

            await seed(app, data_dir, args.jobs // 10, args.images // 10)
            small = await peak_memory(client, "/creative")
            small_gallery = await peak_memory(
                client, "/creative/fragments/gallery?page=1"
            )

            began = time.perf_counter()
            await seed(app, data_dir, args.jobs, args.images)
            report["seed_seconds"] = round(time.perf_counter() - began, 1)
            report["timings"] = await time_requests(client, paths, args.rounds)
            report["peak_kib"] = {
                "/creative": {
                    "tenth": small,
                    "full": await peak_memory(client, "/creative"),
                },
                "/creative/fragments/gallery?page=1": {
                    "tenth": small_gallery,
                    "full": await peak_memory(
                        client, "/creative/fragments/gallery?page=1"
                    ),
                },
            }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--postgres",
        required=True,
        help="URL of a PostgreSQL server where a scratch database may be created",
    )
    parser.add_argument("--jobs", type=int, default=10_000, help="stored jobs")
    parser.add_argument("--images", type=int, default=20_000, help="stored images")
    parser.add_argument("--rounds", type=int, default=200, help="requests per path")
    args = parser.parse_args()
    report = asyncio.run(run(args))
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
