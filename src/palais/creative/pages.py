"""HTML routes of the creative studio: the page, its live fragments and the
cookie + CSRF actions (generate, cancel, attach). The API token is never used
or rendered here."""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from palais.creative import renders
from palais.creative import studio as service
from palais.creative.api import MAX_PAGE, parse_day_or_time, parse_generate
from palais.creative.gallery import gallery_page
from palais.creative.jobs import ACTIVE, assets_by_job
from palais.creative.studio import Studio
from palais.creative.workflows import DEFAULT_TEMPLATE, template_names
from palais.db.models import CreativeAsset, CreativeJob, Deliverable
from palais.db.types import MAX_ID
from palais.errors import ApiError, describe
from palais.tasks import service as tasks
from palais.tasks.api import attach_asset_to_task
from palais.validation import RowId, text
from palais.web.session import require_csrf, require_login
from palais.web.templating import render

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_login)])

RECENT_FINISHED = 8
TASK_ID_DIGITS = re.compile(r"[0-9]+")
MAX_PENDING_SHOWN = 50


def _studio(request: Request) -> Studio:
    return request.app.state.studio


@router.get("/creative", response_class=HTMLResponse)
async def creative_page(
    request: Request, page: int = 1, since: str = "", until: str = ""
) -> HTMLResponse:
    studio = _studio(request)
    context: dict[str, Any] = {}
    context.update(await _status_context(studio))
    context.update(await _queue_context(studio))
    context.update(await _gallery_context(studio, page, since, until))
    context.update(await _renders_context(studio))
    context.update(await _form_context(studio))
    return render(request, "creative/page.html", context)


@router.get("/creative/fragments/queue", response_class=HTMLResponse)
async def queue_fragment(request: Request) -> HTMLResponse:
    studio = _studio(request)
    context = {**await _status_context(studio), **await _queue_context(studio)}
    return render(request, "creative/_queue.html", context)


@router.get("/creative/fragments/gallery", response_class=HTMLResponse)
async def gallery_fragment(
    request: Request, page: int = 1, since: str = "", until: str = ""
) -> HTMLResponse:
    context = await _gallery_context(_studio(request), page, since, until)
    return render(request, "creative/_gallery.html", context)


@router.get("/creative/fragments/renders", response_class=HTMLResponse)
async def renders_fragment(request: Request) -> HTMLResponse:
    context = await _renders_context(_studio(request))
    return render(request, "creative/_renders.html", context)


@router.get("/creative/assets/{asset_id}", response_class=HTMLResponse)
async def asset_page(request: Request, asset_id: RowId) -> HTMLResponse:
    studio = _studio(request)
    async with studio.sessions() as session:
        asset = await session.get(CreativeAsset, asset_id)
        if asset is None:
            raise ApiError(404, f"asset not found: {asset_id}")
        job = await session.get(CreativeJob, asset.job_id)
        attached = list(
            await session.scalars(
                select(Deliverable).where(Deliverable.asset_id == asset.id)
            )
        )
        task_list = await tasks.list_tasks(session)
    context = {"asset": asset, "job": job, "attached": attached, "tasks": task_list}
    return render(request, "creative/asset.html", context)


# -- actions: cookie session + CSRF ---------------------------------------------------


@router.post(
    "/creative/generate",
    response_class=HTMLResponse,
    dependencies=[Depends(require_csrf)],
)
async def generate_action(request: Request) -> HTMLResponse:
    """Submit the quick-generate form and return the refreshed queue."""
    form = await request.form()
    body = _generate_body(form)
    studio = _studio(request)
    try:
        async with studio.sessions() as session:
            new = await parse_generate(studio, body, session)
        await service.submit(studio, new)
    except ApiError as exc:
        context = {
            **await _status_context(studio),
            **await _queue_context(studio),
            "form_error": exc.error,
        }
        # htmx swaps only 2xx responses by default, so the error comes with a 200.
        return render(request, "creative/_queue.html", context)
    context = {**await _status_context(studio), **await _queue_context(studio)}
    return render(request, "creative/_queue.html", context)


def _generate_body(form: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "text": form.get("text", ""),
        "template": form.get("template") or DEFAULT_TEMPLATE,
    }
    for key in ("seed", "width", "height", "task_id"):
        value = form.get(key)
        if isinstance(value, str) and value.strip():
            body[key] = value.strip()
    return body


@router.post(
    "/creative/jobs/{prompt_id}/cancel",
    response_class=HTMLResponse,
    dependencies=[Depends(require_csrf)],
)
async def cancel_action(request: Request, prompt_id: str) -> HTMLResponse:
    studio = _studio(request)
    error = None
    try:
        await service.cancel(studio, prompt_id)
    except ApiError as exc:
        error = exc.error
    context = {
        **await _status_context(studio),
        **await _queue_context(studio),
        "form_error": error,
    }
    return render(request, "creative/_queue.html", context)


@router.post(
    "/creative/assets/{asset_id}/attach",
    response_class=HTMLResponse,
    dependencies=[Depends(require_csrf)],
)
async def attach_action(request: Request, asset_id: RowId) -> Response:
    form = await request.form()
    try:
        task_id, new_title = _chosen_task(form)
        deliverable, created = await attach_asset_to_task(
            request, task_id, asset_id, new_title=new_title
        )
    except ApiError as exc:
        return render(request, "creative/_attach_result.html", {"error": exc.error})
    log.info(
        "asset %s attached to task %s from the page", asset_id, deliverable.task_id
    )
    context = {"deliverable": deliverable, "created": created}
    return render(request, "creative/_attach_result.html", context)


def _chosen_task(form: Any) -> tuple[int | None, str | None]:
    """Return the selected task id, or the title of a task to create."""
    title = str(form.get("new_task") or "").strip()
    if title:
        return None, text(title, "new_task", max_length=200)
    raw = str(form.get("task_id") or "").strip()
    # ASCII digits only, because str.isdigit() accepts "²", which int() rejects.
    if not TASK_ID_DIGITS.fullmatch(raw):
        raise ApiError(422, "choose a task or type the title of a new one")
    # The length check comes first because int() raises ValueError on
    # strings of more than 4300 digits.
    if len(raw) > len(str(MAX_ID)) or int(raw) > MAX_ID:
        raise ApiError(
            404, f"task not found: {describe(raw)}", field="task_id", value=raw
        )
    return int(raw), None


# -- contexts -------------------------------------------------------------------------


async def _status_context(studio: Studio) -> dict[str, Any]:
    contact = await studio.reachability()
    return {
        "configured": studio.configured,
        "reachable": contact.reachable,
        "comfy_error": contact.error,
    }


async def _queue_context(studio: Studio) -> dict[str, Any]:
    async with studio.sessions() as session:
        active = list(
            await session.scalars(
                select(CreativeJob)
                .where(CreativeJob.status.in_(ACTIVE))
                .order_by(CreativeJob.number.asc(), CreativeJob.id.asc())
                .limit(MAX_PENDING_SHOWN)
            )
        )
        finished = list(
            await session.scalars(
                select(CreativeJob)
                .where(CreativeJob.status.not_in(ACTIVE))
                .order_by(CreativeJob.finished_at.desc(), CreativeJob.id.desc())
                .limit(RECENT_FINISHED)
            )
        )
        assets = await assets_by_job(session, [job.id for job in finished])
    running = [job for job in active if job.status == "running"]
    pending = [job for job in active if job.status == "queued"]
    return {
        "running": running,
        "pending": pending,
        "finished": finished,
        "finished_assets": assets,
    }


async def _gallery_context(
    studio: Studio, page: int, since: str, until: str
) -> dict[str, Any]:
    error = None
    try:
        since_at = parse_day_or_time(since, "since", end=False)
        until_at = parse_day_or_time(until, "until", end=True)
    except ApiError as exc:
        since_at = until_at = None
        error = exc.error
    async with studio.sessions() as session:
        # Clamped because a page number past the 64-bit offset limit makes
        # the database driver raise.
        page = min(max(page, 1), MAX_PAGE)
        result = await gallery_page(session, page, since_at, until_at)
    return {
        "gallery": result,
        "since": since,
        "until": until,
        "gallery_error": error,
    }


async def _renders_context(studio: Studio) -> dict[str, Any]:
    async with studio.sessions() as session:
        rows = await renders.recent_renders(session)
    return {"renders": rows}


async def _form_context(studio: Studio) -> dict[str, Any]:
    async with studio.sessions() as session:
        task_list = await tasks.list_tasks(session)
    names = template_names(studio.settings.templates_dir)
    return {
        "templates": names,
        "default_template": DEFAULT_TEMPLATE if DEFAULT_TEMPLATE in names else None,
        "tasks": task_list,
    }
