"""HTML routes of the health dashboard: the page and its live fragments.

Each panel of /health is also served alone under /health/fragments/, and the
page polls those with htmx, so parts refresh without a full reload.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from palais.db.models import Node
from palais.db.types import utcnow
from palais.errors import ApiError
from palais.health.history import cells_html, node_timelines, service_timelines
from palais.health.overview import read_overview
from palais.validation import RowId
from palais.web.session import require_login
from palais.web.templating import render

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_login)])

FRAGMENTS = {
    "map": "health/_map.html",
    "insights": "health/_insights.html",
    "backups": "health/_backups.html",
    "nodes": "health/_cards.html",
}


async def _overview(request: Request) -> dict[str, Any]:
    state = request.app.state
    async with state.sessions() as session:
        return await read_overview(session, state.settings, utcnow())


@router.get("/health", response_class=HTMLResponse)
async def health_page(request: Request) -> HTMLResponse:
    return render(request, "health/page.html", await _overview(request))


@router.get("/health/fragments/history", response_class=HTMLResponse)
async def history_fragment(request: Request) -> HTMLResponse:
    async with request.app.state.sessions() as session:
        window, timelines = await node_timelines(session, utcnow())
    return render(
        request,
        "health/_history.html",
        {"window": window, "timelines": timelines, "cells_html": cells_html},
    )


@router.get("/health/fragments/history/{node_id}", response_class=HTMLResponse)
async def service_history_fragment(request: Request, node_id: RowId) -> HTMLResponse:
    async with request.app.state.sessions() as session:
        name = await session.scalar(select(Node.name).where(Node.id == node_id))
        if name is None:
            raise ApiError(
                404, f"unknown node id {node_id}", field="node_id", value=node_id
            )
        window, timelines = await service_timelines(session, node_id, utcnow())
    return render(
        request,
        "health/_services.html",
        {
            "node_name": name,
            "window": window,
            "timelines": timelines,
            "cells_html": cells_html,
        },
    )


@router.get("/health/fragments/{part}", response_class=HTMLResponse)
async def panel_fragment(request: Request, part: str) -> HTMLResponse:
    template = FRAGMENTS.get(part)
    if template is None:
        raise ApiError(
            404,
            f"unknown fragment {part!r}",
            field="part",
            value=part,
            accepted=", ".join(FRAGMENTS),
        )
    return render(request, template, await _overview(request))
