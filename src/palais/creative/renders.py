"""Remotion render statuses sent by the n8n "creative-pipeline" workflow."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from palais.db.models import CreativeRender, Task
from palais.db.types import utcnow
from palais.errors import ApiError
from palais.validation import choice, integer, optional_number, required, text

log = logging.getLogger(__name__)

RENDER_STATUSES = ("queued", "rendering", "done", "failed")
RENDER_ACTIVE = ("queued", "rendering")
RENDER_FINISHED = ("done", "failed")
RENDER_ID_ACCEPTED = "1 to 200 characters"
MAX_RENDERS_LISTED = 100


@dataclass(frozen=True)
class RenderUpdate:
    render_id: str
    composition: str | None
    status: str
    progress: float | None
    output: str | None
    error: str | None
    task_id: int | None
    fields: frozenset[str]


def parse_render(body: dict[str, Any]) -> RenderUpdate:
    """Validate a render webhook whole; only the keys sent are updated."""
    render_id = text(required(body, "render_id"), "render_id", max_length=200)
    status = choice(required(body, "status"), "status", RENDER_STATUSES)
    progress = optional_number(body.get("progress"), "progress", minimum=0, maximum=1)
    task_id = body.get("task_id")
    if task_id is not None:
        task_id = integer(task_id, "task_id", minimum=1, maximum=2**31 - 1)
    return RenderUpdate(
        render_id=render_id,
        composition=_optional_text(body, "composition", 200),
        status=status,
        progress=progress,
        output=_optional_text(body, "output", 2000),
        error=_optional_text(body, "error", 4000),
        task_id=task_id,
        fields=frozenset(body),
    )


def _optional_text(body: dict[str, Any], key: str, max_length: int) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    return text(value, key, max_length=max_length)


async def upsert_render(
    session: AsyncSession, update: RenderUpdate
) -> tuple[CreativeRender, bool]:
    """Create the render or update it; keys absent from the body keep their value.

    Raise a 404 for an unknown ``task_id``. A queued or rendering update of a
    done or failed render is ignored, because n8n may deliver it late, and the
    stored render is returned unchanged.
    """
    if update.task_id is not None:
        await _check_task(session, update.task_id)
    render = await session.scalar(
        select(CreativeRender)
        .where(CreativeRender.render_id == update.render_id)
        .with_for_update()
    )
    if _is_stale(render, update):
        assert render is not None
        log.info(
            "ignored a late %s update of render %s, which is %s",
            update.status,
            update.render_id,
            render.status,
        )
        return render, False
    now = utcnow()
    created = render is None
    if render is None:
        render = CreativeRender(render_id=update.render_id, created_at=now)
        session.add(render)
    render.status = update.status
    render.updated_at = now
    for key in ("composition", "progress", "output", "error", "task_id"):
        if key in update.fields or created:
            setattr(render, key, getattr(update, key))
    if update.status == "done" and "progress" not in update.fields:
        render.progress = 1.0
    await session.flush()
    return render, created


def _is_stale(render: CreativeRender | None, update: RenderUpdate) -> bool:
    return (
        render is not None
        and render.status in RENDER_FINISHED
        and update.status in RENDER_ACTIVE
    )


async def _check_task(session: AsyncSession, task_id: int) -> None:
    if await session.get(Task, task_id) is None:
        raise ApiError(
            404,
            f"task not found: {task_id}",
            field="task_id",
            value=task_id,
            accepted="the id of an existing task (POST /api/v1/tasks)",
        )


async def recent_renders(session: AsyncSession) -> list[CreativeRender]:
    rows = await session.scalars(
        select(CreativeRender)
        .order_by(CreativeRender.updated_at.desc(), CreativeRender.id.desc())
        .limit(MAX_RENDERS_LISTED)
    )
    return list(rows)


def render_json(render: CreativeRender) -> dict[str, Any]:
    return {
        "render_id": render.render_id,
        "composition": render.composition,
        "status": render.status,
        "progress": render.progress,
        "output": render.output,
        "error": render.error,
        "task_id": render.task_id,
        "created_at": _iso(render.created_at),
        "updated_at": _iso(render.updated_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
