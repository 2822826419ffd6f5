"""Jinja2 templates of the dashboard, with the session helpers in context.

Autoescaping is on for every template, so names from agents, Headscale or
users are escaped wherever they are rendered, including inside the SVG map.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup, escape

from palais.web.session import CSRF_FIELD, csrf_token, current_user

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"

templates = Jinja2Templates(
    env=Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True)
)


def time_ago(value: str | datetime | None, now: datetime | None = None) -> Markup:
    """Format a UTC time as 'HH:MM UTC (5 min ago)'; a day or more shows the date.

    The clock is a ``<time>`` element, which a script in base.html rewrites in
    the viewer's time zone. Without JavaScript the page keeps UTC.
    """
    if value is None:
        return Markup("never")
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    now = now or datetime.now(UTC)
    seconds = (now - moment).total_seconds()
    # Formatted by hand: strftime took two thirds of this function's time,
    # and the page calls it hundreds of times.
    clock = f"{moment.hour:02d}:{moment.minute:02d} UTC"
    if abs(seconds) >= 86400:
        clock = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d} {clock}"
    relative = f"in {_span(-seconds)}" if seconds < 0 else f"{_span(seconds)} ago"
    # Every part is a formatted date or number, so nothing needs escaping, and
    # an f-string is several times faster than Markup.format on a page that
    # shows hundreds of times.
    return Markup(f'<time datetime="{moment.isoformat()}">{clock}</time> ({relative})')


def _span(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


templates.env.filters["ago"] = time_ago


def _csrf_field(request: Request) -> Markup:
    token = escape(csrf_token(request))
    return Markup(f'<input type="hidden" name="{CSRF_FIELD}" value="{token}">')


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render a page or fragment with ``user``, ``csrf_token`` and ``csrf_field()``."""
    values: dict[str, Any] = {
        "user": current_user(request),
        "csrf_token": csrf_token(request),
        "csrf_field": lambda: _csrf_field(request),
    }
    values.update(context or {})
    return templates.TemplateResponse(
        request, name, values, status_code=status_code, headers=headers
    )
