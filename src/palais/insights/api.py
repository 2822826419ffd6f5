"""JSON routes of insights."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from palais.insights.service import list_insights
from palais.web.auth import require_token

router = APIRouter(prefix="/api/v1/insights", dependencies=[Depends(require_token)])


@router.get("")
async def read_insights(request: Request, open: bool = False) -> dict:
    """Return insights, open first and newest first; ``?open=true`` for open only."""
    async with request.app.state.sessions() as session:
        return {"insights": await list_insights(session, open_only=open)}
