"""Stored ComfyUI jobs: reading history entries, status changes, JSON shapes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from palais.db.models import CreativeAsset, CreativeJob
from palais.db.types import utcnow

ACTIVE = ("queued", "running")
FINISHED = ("success", "error", "interrupted")
STATUSES = ("queued", "running", "success", "error", "interrupted", "deleted", "lost")
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class Outcome:
    """Outcome of a job, read from its history entry.

    ``started_at`` and ``finished_at`` are ComfyUI's message timestamps, from
    ComfyUI's clock. Stored job and asset times use Palais' clock instead.
    """

    status: str
    error: str | None
    outputs: list[dict[str, Any]]
    started_at: datetime | None
    finished_at: datetime | None


def read_history_entry(entry: dict[str, Any]) -> Outcome:
    """Read status, error and outputs from a ComfyUI history entry.

    Run-time errors and interruptions both have ``status_str`` "error"; only
    the last status message distinguishes them.
    """
    status = entry.get("status") if isinstance(entry.get("status"), dict) else {}
    messages = [
        message
        for message in status.get("messages") or []
        if isinstance(message, list) and len(message) == 2
    ]
    last_kind, last_data = messages[-1] if messages else ("", {})
    last_data = last_data if isinstance(last_data, dict) else {}

    if status.get("status_str") == "success" and last_kind != "execution_error":
        kind, error = "success", None
    elif last_kind == "execution_interrupted":
        kind, error = "interrupted", _interrupted_error(last_data)
    else:
        kind, error = "error", _execution_error(last_data)

    return Outcome(
        status=kind,
        error=error,
        outputs=output_refs(entry.get("outputs")),
        started_at=_message_time(messages, "execution_start"),
        finished_at=_message_time(messages, last_kind) if messages else None,
    )


def _execution_error(data: dict[str, Any]) -> str:
    message = str(data.get("exception_message") or "execution failed").strip()
    node = data.get("node_id")
    node_type = data.get("node_type")
    if node is not None:
        message = f"node {node} ({node_type}): {message}"
    return message[:MAX_ERROR_CHARS]


def _interrupted_error(data: dict[str, Any]) -> str:
    node = data.get("node_id")
    if node is None:
        return "interrupted"
    return f"interrupted at node {node} ({data.get('node_type')})"


def _message_time(messages: list[list[Any]], kind: str) -> datetime | None:
    for name, data in messages:
        if name == kind and isinstance(data, dict):
            stamp = data.get("timestamp")
            if isinstance(stamp, (int, float)):
                return datetime.fromtimestamp(stamp / 1000, tz=utcnow().tzinfo)
    return None


def output_refs(outputs: Any) -> list[dict[str, Any]]:
    """List the saved images of a job's outputs (temporary previews excluded)."""
    refs: list[dict[str, Any]] = []
    if not isinstance(outputs, dict):
        return refs
    for node_id, ui in outputs.items():
        images = ui.get("images") if isinstance(ui, dict) else None
        for image in images if isinstance(images, list) else []:
            if not isinstance(image, dict) or not isinstance(
                image.get("filename"), str
            ):
                continue
            if image.get("type", "output") != "output":
                continue
            refs.append(
                {
                    "node_id": str(node_id),
                    "filename": image["filename"],
                    "subfolder": str(image.get("subfolder") or ""),
                    "type": "output",
                }
            )
    return refs


async def get_job(session: AsyncSession, prompt_id: str) -> CreativeJob | None:
    return await session.scalar(
        select(CreativeJob).where(CreativeJob.prompt_id == prompt_id)
    )


async def set_status(
    session: AsyncSession,
    job_id: int,
    status: str,
    *,
    only_from: tuple[str, ...] = ACTIVE,
    **values: Any,
) -> bool:
    """Change a job's status only if it is still in ``only_from``.

    The conditional UPDATE makes the first writer win when the socket and the
    poller see the same completion, so a job is finished exactly once.
    """
    result = await session.execute(
        update(CreativeJob)
        .where(CreativeJob.id == job_id, CreativeJob.status.in_(only_from))
        .values(status=status, updated_at=utcnow(), **values)
    )
    return result.rowcount == 1


def job_json(job: CreativeJob, assets: list[CreativeAsset]) -> dict[str, Any]:
    return {
        "prompt_id": job.prompt_id,
        "status": job.status,
        "progress": round(job.progress, 4),
        "text": job.text,
        "seed": job.seed,
        "template": job.template,
        "task_id": job.task_id,
        "origin": job.origin,
        "submitted_at": _iso(job.submitted_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
        "error": job.error,
        "outputs": [asset_json(asset, job) for asset in assets],
    }


def asset_json(asset: CreativeAsset, job: CreativeJob) -> dict[str, Any]:
    return {
        "id": asset.id,
        "prompt_id": job.prompt_id,
        "filename": asset.filename,
        "url": f"/creative/assets/{asset.id}/image",
        "thumbnail_url": f"/creative/assets/{asset.id}/thumbnail",
        "mime": asset.mime,
        "size": asset.size,
        "text": job.text,
        "seed": job.seed,
        "task_id": job.task_id,
        "created_at": _iso(asset.created_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


async def assets_by_job(
    session: AsyncSession, job_ids: list[int]
) -> dict[int, list[CreativeAsset]]:
    found: dict[int, list[CreativeAsset]] = {job_id: [] for job_id in job_ids}
    if not job_ids:
        return found
    rows = await session.scalars(
        select(CreativeAsset)
        .where(CreativeAsset.job_id.in_(job_ids))
        .order_by(CreativeAsset.id)
    )
    for asset in rows:
        found[asset.job_id].append(asset)
    return found
