"""JSON routes of tasks and deliverables, and the public download link."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy.exc import IntegrityError

from palais.creative.gallery import inside
from palais.db.models import CreativeAsset, CreativeJob, Task
from palais.db.types import MAX_ID
from palais.errors import ApiError
from palais.tasks import service
from palais.validation import RowId, integer, load_json_object, required, text
from palais.web.auth import require_token

router = APIRouter(prefix="/api/v1/tasks", dependencies=[Depends(require_token)])
download_router = APIRouter(include_in_schema=False)

MAX_TITLE_CHARS = 200
# Ids are 32-bit integer columns. A larger path id is rejected with a 422
# before it reaches the database driver, which would raise OverflowError.


@router.post("", status_code=201)
async def create_task(request: Request) -> JSONResponse:
    body = load_json_object(await request.body())
    title = text(required(body, "title"), "title", max_length=MAX_TITLE_CHARS)
    async with request.app.state.sessions() as session:
        task = await service.create_task(session, title)
        await session.commit()
    return JSONResponse(service.task_json(task, []), status_code=201)


@router.get("")
async def list_tasks(request: Request) -> dict[str, Any]:
    async with request.app.state.sessions() as session:
        tasks = await service.list_tasks(session)
    return {"tasks": [service.task_json(task, []) for task in tasks]}


@router.get("/{task_id}")
async def read_task(request: Request, task_id: RowId) -> dict[str, Any]:
    async with request.app.state.sessions() as session:
        task = await _task_or_404(session, task_id)
        deliverables = await service.deliverables_of(session, task.id)
    return service.task_json(task, deliverables)


@router.post("/{task_id}/deliverables")
async def attach(request: Request, task_id: RowId) -> JSONResponse:
    """Attach a gallery asset: 201 when new, 200 when it was already attached."""
    body = load_json_object(await request.body())
    asset_id = integer(
        required(body, "asset_id"), "asset_id", minimum=1, maximum=MAX_ID
    )
    deliverable, created = await attach_asset_to_task(request, task_id, asset_id)
    return JSONResponse(
        service.deliverable_json(deliverable), status_code=201 if created else 200
    )


async def attach_asset_to_task(
    request: Request,
    task_id: int | None,
    asset_id: int,
    *,
    new_title: str | None = None,
) -> Any:
    """Attach an asset to a task (404 for either one unknown); shared with pages.

    With ``new_title`` the task is created in the attach's transaction, so an
    attach that fails leaves no new task behind.
    """
    for attempt in range(2):
        async with request.app.state.sessions() as session:
            if new_title is None:
                await _task_or_404(session, task_id)
            asset = await _asset_or_404(session, asset_id)
            if new_title is not None:
                task_id = (await service.create_task(session, new_title)).id
            assert task_id is not None
            job = await session.get(CreativeJob, asset.job_id)
            assert job is not None  # assets are deleted with their job
            try:
                result = await service.attach_asset(session, task_id, asset, job)
                await session.commit()
                return result
            except IntegrityError:
                # A concurrent attach won on PostgreSQL's unique index; the
                # second pass reads its row.
                await session.rollback()
                if attempt:
                    raise
    raise AssertionError("unreachable")


async def _asset_or_404(session, asset_id: int) -> CreativeAsset:  # noqa: ANN001
    asset = await session.get(CreativeAsset, asset_id)
    if asset is None:
        raise ApiError(
            404,
            f"asset not found: {asset_id}",
            field="asset_id",
            value=asset_id,
            accepted="the id of an asset in GET /api/v1/creative/gallery",
        )
    return asset


async def _task_or_404(session, task_id: int) -> Task:  # noqa: ANN001
    task = await session.get(Task, task_id)
    if task is None:
        raise ApiError(
            404, f"task not found: {task_id}", field="task_id", value=task_id
        )
    return task


@download_router.get("/dl/{token}")
async def download(request: Request, token: str) -> FileResponse:
    """Serve a deliverable by its token; the token is the only credential."""
    async with request.app.state.sessions() as session:
        deliverable = (
            await service.deliverable_by_token(session, token)
            if len(token) <= 64
            else None
        )
    data_dir = request.app.state.settings.data_dir
    path = data_dir / deliverable.file if deliverable else None
    if (
        path is None
        or not inside(data_dir / "deliverables", path)
        or not path.is_file()
    ):
        raise ApiError(404, "download not found: unknown link")
    return FileResponse(
        path,
        media_type=deliverable.mime,
        filename=deliverable.filename,
        headers={
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )
