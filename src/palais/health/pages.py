"""HTML routes of the health dashboard: the page and its live fragments.

Each panel of /health is also served alone under /health/fragments/, and the
page polls those with htmx, so parts refresh without a full reload.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from palais.db.models import Node
from palais.db.types import utcnow
from palais.errors import ApiError
from palais.health.history import node_timelines, service_timelines
from palais.health.overview import (
    Dashboard,
    read_backups,
    read_cards,
    read_map,
    read_open_insights,
    read_overview,
)
from palais.validation import RowId
from palais.web.session import require_login
from palais.web.templating import render

Reader = Callable[[AsyncSession, Dashboard, datetime], Awaitable[dict[str, Any]]]

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_login)])

# Each fragment reads only what its panel shows: the page polls them every
# 10 to 15 s, so a panel must not pay for the others' queries.
FRAGMENTS: dict[str, tuple[str, Reader]] = {
    "map": ("health/_map.html", read_map),
    "insights": ("health/_insights.html", read_open_insights),
    "backups": ("health/_backups.html", read_backups),
    "nodes": ("health/_cards.html", read_cards),
}


async def _read(request: Request, reader: Reader) -> dict[str, Any]:
    state = request.app.state
    async with state.sessions() as session:
        return await reader(session, state.dashboard, utcnow())


@router.get("/health", response_class=HTMLResponse)
async def health_page(request: Request) -> HTMLResponse:
    return render(request, "health/page.html", await _read(request, read_overview))


@router.get("/health/fragments/history", response_class=HTMLResponse)
async def history_fragment(request: Request) -> HTMLResponse:
    async with request.app.state.sessions() as session:
        window, timelines = await node_timelines(session, utcnow())
    return render(
        request,
        "health/_history.html",
        {"window": window, "timelines": timelines},
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
        },
    )


@router.get("/health/fragments/{part}", response_class=HTMLResponse)
async def panel_fragment(request: Request, part: str) -> HTMLResponse:
    fragment = FRAGMENTS.get(part)
    if fragment is None:
        raise ApiError(
            404,
            f"unknown fragment {part!r}",
            field="part",
            value=part,
            accepted=", ".join(FRAGMENTS),
        )
    template, reader = fragment
    return render(request, template, await _read(request, reader))
