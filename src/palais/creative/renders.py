"""Remotion render statuses sent by the n8n "creative-pipeline" workflow."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from palais.db.models import CreativeRender
from palais.db.types import utcnow
from palais.validation import choice, integer, optional_number, required, text

RENDER_STATUSES = ("queued", "rendering", "done", "failed")
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
    """Create the render or update it; keys absent from the body keep their value."""
    render = await session.scalar(
        select(CreativeRender)
        .where(CreativeRender.render_id == update.render_id)
        .with_for_update()
    )
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
