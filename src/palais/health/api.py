"""JSON routes of the health feature."""

from __future__ import annotations

import json
import logging

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from palais.db.types import utcnow
from palais.errors import ApiError
from palais.health.backup import (
    is_zerobyte_pre_hook,
    list_backups,
    parse_backup,
    store_backup,
)
from palais.health.ingest import ingest_report
from palais.health.node_cache import read_nodes as read_current_nodes
from palais.health.report import parse_report
from palais.health.vpn import read_vpn
from palais.validation import load_json_object
from palais.web.auth import require_token

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1/health", dependencies=[Depends(require_token)])


@router.post("/webhook", status_code=201)
async def receive_report(request: Request) -> JSONResponse:
    """Store one health report. A repeated ``event_id`` is acknowledged, not stored."""
    body = load_json_object(await request.body())
    report = parse_report(body, utcnow())
    state = request.app.state
    async with state.sessions() as session:
        result = await ingest_report(
            session,
            report,
            auto_register=state.settings.auto_register_nodes,
            node_ids=state.node_ids,
        )
    return JSONResponse(
        {"duplicate": result.duplicate, "node": result.node, "checks": result.checks},
        status_code=200 if result.duplicate else 201,
    )


@router.get("/nodes")
async def read_nodes(request: Request) -> JSONResponse:
    state = request.app.state
    async with state.sessions() as session:
        nodes = await read_current_nodes(
            session,
            state.node_cache,
            now=utcnow(),
            offline_after=state.settings.offline_after_seconds,
        )
    # The values are JSON types already; a JSONResponse skips FastAPI's
    # jsonable_encoder walk, which costs more than the query at 2,000 services.
    return JSONResponse({"nodes": nodes})


@router.get("/vpn")
async def read_vpn_topology(request: Request) -> dict:
    """Return the last stored Headscale topology and the agents' links (always 200)."""
    state = request.app.state
    async with state.sessions() as session:
        return await read_vpn(session, state.settings, utcnow())


@router.post("/backup/webhook")
async def receive_backup(request: Request, node: str | None = None) -> JSONResponse:
    """Store a backup status: the plain body or a Zerobyte backup-hook body.

    A Zerobyte pre-hook always gets a 2xx response, because Zerobyte aborts the
    backup when its pre-hook fails. A problem is logged and returned instead.
    """
    state = request.app.state
    settings = state.settings
    now = utcnow()
    raw = await request.body()
    try:
        nodes = request.query_params.getlist("node")
        if len(nodes) > 1:
            raise ApiError(
                422,
                f"node: given {len(nodes)} times in the query; accepted: once",
                field="node",
                value=nodes,
                accepted="one ?node= value",
            )
        body = load_json_object(raw)
        update = parse_backup(body, node, settings.self_node, now)
        async with state.sessions() as session:
            view = await store_backup(
                session, update, now=now, stale_hours=settings.backup_stale_hours
            )
    except ApiError as exc:
        if not looks_like_pre_hook(raw):
            raise
        log.warning("Zerobyte pre-hook not stored: %s", exc.error)
        return JSONResponse({"stored": False, "error": exc.error}, status_code=202)
    return JSONResponse({"stored": True, "backup": view})


def looks_like_pre_hook(raw: bytes) -> bool:
    """Tell a Zerobyte pre-hook apart even when its body failed to parse."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return b'"pre"' in raw or b'"backup.pre"' in raw
    if not isinstance(body, dict):
        return False
    phase = body.get("phase")
    return (
        is_zerobyte_pre_hook(body)
        or phase == ["pre"]
        or (isinstance(phase, str) and phase.strip().lower() == "pre")
    )


@router.get("/backup")
async def read_backups(request: Request) -> dict:
    state = request.app.state
    async with state.sessions() as session:
        backups = await list_backups(
            session, now=utcnow(), stale_hours=state.settings.backup_stale_hours
        )
    return {"backups": backups}
