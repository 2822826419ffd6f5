"""Tasks and their deliverables: files with a secret download token."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from palais.db.models import CreativeAsset, CreativeJob, Deliverable, Task
from palais.db.types import utcnow
from palais.db.upsert import insert_for

# 32 random bytes (256 bits), above the 128 bits an unguessable link needs.
TOKEN_BYTES = 32


def new_download_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


async def create_task(session: AsyncSession, title: str) -> Task:
    now = utcnow()
    task = Task(title=title, status="open", created_at=now, updated_at=now)
    session.add(task)
    await session.flush()
    return task


async def list_tasks(session: AsyncSession, limit: int = 200) -> list[Task]:
    rows = await session.scalars(
        select(Task).order_by(Task.created_at.desc(), Task.id.desc()).limit(limit)
    )
    return list(rows)


async def deliverables_of(session: AsyncSession, task_id: int) -> list[Deliverable]:
    rows = await session.scalars(
        select(Deliverable)
        .where(Deliverable.task_id == task_id)
        .order_by(Deliverable.id)
    )
    return list(rows)


def provenance(job: CreativeJob) -> dict[str, Any]:
    return {
        "prompt_id": job.prompt_id,
        "text": job.text,
        "seed": job.seed,
        "template": job.template,
        "workflow": job.workflow,
    }


async def attach_asset(
    session: AsyncSession, task_id: int, asset: CreativeAsset, job: CreativeJob
) -> tuple[Deliverable, bool]:
    """Attach an asset to a task once; return the deliverable and whether it is new.

    The unique index on (task_id, asset_id) makes a second attach, from a
    repeated completion or a concurrent click, a no-op.
    """
    table = Deliverable.__table__
    statement = (
        insert_for(session, table)
        .values(
            task_id=task_id,
            file=asset.file,
            filename=asset.filename,
            mime=asset.mime,
            size=asset.size,
            sha256=asset.sha256,
            download_token=new_download_token(),
            source="comfyui",
            asset_id=asset.id,
            provenance=provenance(job),
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["task_id", "asset_id"])
    )
    created = (await session.execute(statement)).rowcount == 1
    deliverable = await session.scalar(
        select(Deliverable).where(
            Deliverable.task_id == task_id, Deliverable.asset_id == asset.id
        )
    )
    assert deliverable is not None  # inserted above or by an earlier attach
    return deliverable, created


async def deliverable_by_token(session: AsyncSession, token: str) -> Deliverable | None:
    return await session.scalar(
        select(Deliverable).where(Deliverable.download_token == token)
    )


def deliverable_json(deliverable: Deliverable) -> dict[str, Any]:
    return {
        "id": deliverable.id,
        "task_id": deliverable.task_id,
        "filename": deliverable.filename,
        "mime": deliverable.mime,
        "size": deliverable.size,
        "sha256": deliverable.sha256,
        "download_token": deliverable.download_token,
        "download_url": f"/dl/{deliverable.download_token}",
        "source": deliverable.source,
        "asset_id": deliverable.asset_id,
        "provenance": deliverable.provenance,
        "created_at": _iso(deliverable.created_at),
    }


def task_json(task: Task, deliverables: list[Deliverable]) -> dict[str, Any]:
    return {
        "id": task.id,
        "title": task.title,
        "status": task.status,
        "created_at": _iso(task.created_at),
        "updated_at": _iso(task.updated_at),
        "deliverables": [deliverable_json(item) for item in deliverables],
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
