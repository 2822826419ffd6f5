"""JSON routes of the health feature."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from palais.db.types import utcnow
from palais.health.ingest import ingest_report
from palais.health.nodes import list_nodes
from palais.health.report import parse_report
from palais.validation import load_json_object
from palais.web.auth import require_token

router = APIRouter(prefix="/api/v1/health", dependencies=[Depends(require_token)])


@router.post("/webhook", status_code=201)
async def receive_report(request: Request) -> JSONResponse:
    """Store one health report. A repeated ``event_id`` is acknowledged, not stored."""
    body = load_json_object(await request.body())
    report = parse_report(body, utcnow())
    state = request.app.state
    async with state.sessions() as session:
        result = await ingest_report(
            session, report, auto_register=state.settings.auto_register_nodes
        )
    return JSONResponse(
        {"duplicate": result.duplicate, "node": result.node, "checks": result.checks},
        status_code=200 if result.duplicate else 201,
    )


@router.get("/nodes")
async def read_nodes(request: Request) -> dict:
    state = request.app.state
    async with state.sessions() as session:
        nodes = await list_nodes(
            session,
            now=utcnow(),
            offline_after=state.settings.offline_after_seconds,
        )
    return {"nodes": nodes}
