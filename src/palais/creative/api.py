"""JSON routes of the creative studio, and the asset files behind the gallery."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy import select

from palais.creative import renders
from palais.creative import studio as service
from palais.creative.comfyui import ComfyUIError, Queue, QueueItem
from palais.creative.gallery import CREATIVE_DIR, ensure_thumbnail, gallery_page, inside
from palais.creative.jobs import (
    STATUSES,
    asset_json,
    assets_by_job,
    get_job,
    job_json,
    read_history_entry,
)
from palais.creative.studio import PROBE_TIMEOUT, NewJob, Studio
from palais.creative.workflows import (
    DEFAULT_TEMPLATE,
    Template,
    check_workflow,
    resolve_template,
    template_names,
)
from palais.db.models import CreativeAsset, CreativeJob, Task
from palais.db.types import MAX_ID
from palais.errors import ApiError, invalid
from palais.validation import (
    TIMESTAMP_ACCEPTED,
    RowId,
    integer,
    load_json_object,
    text,
    timestamp,
)
from palais.web.auth import require_token
from palais.web.session import logged_in_user

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/creative", dependencies=[Depends(require_token)])
files_router = APIRouter(include_in_schema=False)

MAX_TEXT_CHARS = 4000
MAX_JOBS_LISTED = 500
# Gallery pages beyond this are rejected, so the row offset stays far below
# the 64-bit limit of the database drivers.
MAX_PAGE = 10**6
DATE_ACCEPTED = "a date such as 2026-01-31 or " + TIMESTAMP_ACCEPTED


def get_studio(request: Request) -> Studio:
    return request.app.state.studio


@router.get("/comfyui")
async def comfyui_status(request: Request) -> dict[str, Any]:
    """Report ComfyUI's state: always 200, with the error in words when down."""
    return await comfyui_snapshot(get_studio(request))


async def comfyui_snapshot(studio: Studio, history_items: int = 10) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "configured": studio.configured,
        "reachable": False,
        "error": None,
        "system": None,
        "queue": {"running": [], "pending": []},
        "history": [],
    }
    if not studio.configured:
        answer["error"] = "ComfyUI is not configured; set PALAIS_COMFYUI_URL"
        return answer
    # A status read must not hang on a stuck server: each call gets the short
    # probe timeout, and the first failure ends the snapshot, so a server that
    # accepts connections but never responds costs about 2 s, not 10 s.
    async with studio.client(timeout=PROBE_TIMEOUT) as client:
        try:
            answer["system"] = await client.system_stats()
            queue = await client.queue()
            history = await client.recent_history(history_items)
        except ComfyUIError as exc:
            answer["error"] = str(exc)
            return answer
    answer["reachable"] = True
    answer["queue"] = _queue_json(queue)
    answer["history"] = [
        _history_json(prompt_id, entry)
        for prompt_id, entry in reversed(list(history.items()))
        if isinstance(entry, dict)
    ]
    return answer


def _queue_json(queue: Queue) -> dict[str, list[dict[str, Any]]]:
    return {
        "running": [_queue_item_json(item) for item in queue.running],
        "pending": [_queue_item_json(item) for item in queue.pending],
    }


def _queue_item_json(item: QueueItem) -> dict[str, Any]:
    return {
        "prompt_id": item.prompt_id,
        "number": item.number,
        "task_id": item.task_id,
        "nodes": len(item.workflow),
    }


def _history_json(prompt_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    outcome = read_history_entry(entry)
    return {
        "prompt_id": prompt_id,
        "status": outcome.status,
        "error": outcome.error,
        "outputs": outcome.outputs,
    }


@router.post("/comfyui/generate", status_code=202)
async def generate(request: Request) -> JSONResponse:
    """Submit a quick generation (template) or a whole workflow to ComfyUI."""
    body = load_json_object(await request.body())
    studio = get_studio(request)
    async with studio.sessions() as session:
        new = await parse_generate(studio, body, session)
    if not studio.configured:
        raise ApiError(503, "ComfyUI is not configured; set PALAIS_COMFYUI_URL")
    job = await service.submit(studio, new)
    return JSONResponse({"job": job_json(job, [])}, status_code=202)


async def parse_generate(studio: Studio, body: dict[str, Any], session) -> NewJob:  # noqa: ANN001
    """Validate a generate request whole, before anything is sent or stored."""
    task_id = await _task_id(body.get("task_id"), session)
    if "workflow" in body:
        extra = sorted(set(body) - {"workflow", "task_id", "text", "seed"})
        if extra:
            raise invalid(
                extra[0], body[extra[0]], "either workflow or template fields"
            )
        workflow = check_workflow(body["workflow"])
        text_value = _optional_text(body.get("text"))
        seed = _optional_seed(body.get("seed"))
        return NewJob(workflow, text_value, seed, None, task_id)

    template_name = body.get("template", DEFAULT_TEMPLATE)
    template = resolve_template(studio.settings.templates_dir, template_name)
    prompt_text = text(body.get("text"), "text", max_length=MAX_TEXT_CHARS)
    seed = _template_seed(template, body.get("seed"))
    width = _optional_size(body.get("width"), "width")
    height = _optional_size(body.get("height"), "height")
    workflow = template.build(prompt_text, seed, width, height)
    return NewJob(workflow, prompt_text, seed, template.name, task_id)


async def _task_id(value: Any, session) -> int | None:  # noqa: ANN001
    if value is None:
        return None
    task_id = integer(value, "task_id", minimum=1, maximum=MAX_ID)
    if await session.get(Task, task_id) is None:
        raise ApiError(
            404,
            f"task not found: {task_id}",
            field="task_id",
            value=value,
            accepted="the id of an existing task (POST /api/v1/tasks)",
        )
    return task_id


def _optional_text(value: Any) -> str | None:
    if value is None:
        return None
    return text(value, "text", max_length=MAX_TEXT_CHARS)


def _optional_seed(value: Any) -> int | None:
    if value is None:
        return None
    return integer(value, "seed", minimum=0, maximum=service.MAX_SEED)


def _template_seed(template: Template, value: Any) -> int | None:
    """Return the seed to put into the template, random when none was sent.

    A template without a seed input uses no seed, so the job records null
    and a sent seed is validated but dropped.
    """
    seed = _optional_seed(value)
    if template.seed_input is None:
        return None
    return service.random_seed() if seed is None else seed


def _optional_size(value: Any, field: str) -> int | None:
    if value is None:
        return None
    return integer(value, field, minimum=16, maximum=8192)


@router.get("/jobs")
async def list_jobs(
    request: Request,
    status: str | None = None,
    limit: int = Query(100, ge=1, le=MAX_JOBS_LISTED),
) -> dict[str, Any]:
    if status is not None and status not in STATUSES:
        raise invalid("status", status, "one of " + ", ".join(STATUSES), "unknown")
    studio = get_studio(request)
    async with studio.sessions() as session:
        query = select(CreativeJob).order_by(
            CreativeJob.submitted_at.desc(), CreativeJob.id.desc()
        )
        if status is not None:
            query = query.where(CreativeJob.status == status)
        jobs = list(await session.scalars(query.limit(limit)))
        assets = await assets_by_job(session, [job.id for job in jobs])
    return {"jobs": [job_json(job, assets[job.id]) for job in jobs]}


@router.get("/jobs/{prompt_id}")
async def read_job(request: Request, prompt_id: str) -> dict[str, Any]:
    async with get_studio(request).sessions() as session:
        job = await _job_or_404(session, prompt_id)
        assets = await assets_by_job(session, [job.id])
    return {"job": job_json(job, assets[job.id]), **job_json(job, assets[job.id])}


@router.delete("/jobs/{prompt_id}")
async def cancel_job(request: Request, prompt_id: str) -> JSONResponse:
    studio = get_studio(request)
    job = await service.cancel(studio, prompt_id)
    return JSONResponse({"job": job_json(job, [])}, status_code=202)


async def _job_or_404(session, prompt_id: str) -> CreativeJob:  # noqa: ANN001
    job = await get_job(session, prompt_id)
    if job is None:
        raise ApiError(404, f"job not found: {prompt_id}", field="prompt_id")
    return job


@router.get("/templates")
async def list_templates(request: Request) -> dict[str, Any]:
    directory = get_studio(request).settings.templates_dir
    return {"templates": template_names(directory)}


@router.get("/gallery")
async def gallery(
    request: Request,
    page: Any = None,
    since: str | None = None,
    until: str | None = None,
) -> dict[str, Any]:
    page_number = (
        1 if page is None else integer(page, "page", minimum=1, maximum=MAX_PAGE)
    )
    since_at = parse_day_or_time(since, "since", end=False)
    until_at = parse_day_or_time(until, "until", end=True)
    async with get_studio(request).sessions() as session:
        result = await gallery_page(session, page_number, since_at, until_at)
    return {
        "assets": [asset_json(asset, job) for asset, job in result.rows],
        "page": result.page,
        "pages": result.pages,
        "total": result.total,
    }


def parse_day_or_time(value: str | None, field: str, *, end: bool) -> datetime | None:
    """Read a date (a whole UTC day) or an RFC 3339 timestamp."""
    if value is None or value == "":
        return None
    if len(value) == 10:
        try:
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise invalid(field, value, DATE_ACCEPTED) from None
        if not end:
            return day
        try:
            return day + timedelta(days=1)
        except OverflowError:
            # The end of 9999-12-31 is past datetime.max.
            accepted = "a date up to 9999-12-30 or " + TIMESTAMP_ACCEPTED
            raise invalid(field, value, accepted, "out-of-range") from None
    return timestamp(value, field, now=datetime.now(UTC), allow_future=True)


@router.post("/renders/webhook")
async def render_webhook(request: Request) -> JSONResponse:
    body = load_json_object(await request.body())
    update = renders.parse_render(body)
    async with get_studio(request).sessions() as session:
        render, created = await renders.upsert_render(session, update)
        await session.commit()
    return JSONResponse(
        {"render": renders.render_json(render), "created": created},
        status_code=201 if created else 200,
    )


@router.get("/renders")
async def list_renders(request: Request) -> dict[str, Any]:
    async with get_studio(request).sessions() as session:
        rows = await renders.recent_renders(session)
    return {"renders": [renders.render_json(render) for render in rows]}


# -- asset files: for the logged-in dashboard or an API client -----------------------


async def require_viewer(request: Request) -> None:
    if await logged_in_user(request) is None:
        await require_token(request)


INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
SAFE_FILE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self'",
}


@files_router.get(
    "/creative/assets/{asset_id}/image", dependencies=[Depends(require_viewer)]
)
async def asset_image(request: Request, asset_id: RowId) -> FileResponse:
    studio = get_studio(request)
    asset = await _asset_or_404(studio, asset_id)
    path = studio.settings.data_dir / asset.file
    if not inside(studio.settings.data_dir / CREATIVE_DIR, path) or not path.is_file():
        raise ApiError(404, f"asset file not found: {asset_id}")
    # ComfyUI decides the output's name, so an .html or .svg output would run
    # its scripts on Palais's own origin if shown inline. Only raster images
    # are shown; anything else downloads, and the sandbox CSP covers both.
    raster = asset.mime in INLINE_IMAGE_TYPES
    return FileResponse(
        path,
        media_type=asset.mime if raster else "application/octet-stream",
        filename=asset.filename,
        content_disposition_type="inline" if raster else "attachment",
        headers=SAFE_FILE_HEADERS,
    )


@files_router.get(
    "/creative/assets/{asset_id}/thumbnail", dependencies=[Depends(require_viewer)]
)
async def asset_thumbnail(request: Request, asset_id: RowId) -> FileResponse:
    studio = get_studio(request)
    asset = await _asset_or_404(studio, asset_id)
    path = await ensure_thumbnail(studio.settings.data_dir, asset)
    if path is None:
        raise ApiError(404, f"thumbnail not available: {asset_id}")
    return FileResponse(
        path,
        media_type="image/webp",
        headers={"Cache-Control": "private, max-age=86400"},
    )


async def _asset_or_404(studio: Studio, asset_id: int) -> CreativeAsset:
    async with studio.sessions() as session:
        asset = await session.get(CreativeAsset, asset_id)
    if asset is None:
        raise ApiError(404, f"asset not found: {asset_id}", field="asset_id")
    return asset
