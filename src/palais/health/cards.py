"""Markup of the node cards' gauges and service lists, built in Python.

At 100 nodes with 20 services each these lists are most of the /health page:
2,000 rows and 400 gauges. Rendered by Jinja, whose every expression goes
through the escaper, they took longer than all the page's queries. Names and
error texts come from agents, so they are escaped here. Everything else is a
number, a fixed word or one of the statuses below.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from markupsafe import Markup, escape

from palais.web.templating import time_ago

if TYPE_CHECKING:
    from palais.health.node_cache import NodeRow, ServiceRow

GAUGE_CIRCUMFERENCE = 150.8  # 2 * pi * 24, the gauge circle's radius
SERVICE_STATUSES = frozenset({"healthy", "unhealthy", "unknown"})
MAX_ERROR_CHARS = 120


def articles(node_cards: list[dict[str, Any]], now: datetime) -> Markup:
    """Return the ``<article>`` of each node card, in the order given."""
    return Markup("\n".join(_article(card, now) for card in node_cards))


def _article(card: dict[str, Any], now: datetime) -> str:
    name, status = escape(card["name"]), card["card_status"]
    address = escape(card["tailscale_ip"] or "")
    return (
        f'<article class="card node-card status-{status}" data-node="{name}"'
        f' data-status="{status}"><h3><span class="dot {status}"></span>{name}'
        f' <span class="muted">{address}</span></h3>'
        f'<div class="gauges">{card["gauges_html"]}</div>'
        f'<ul class="services">{card["services_html"]}</ul>'
        f'<p class="muted">Last seen {time_ago(card["last_seen_at"], now)}</p>'
        "</article>"
    )


def gauge(label: str, value: float | None, maximum: float, unit: str) -> Markup:
    """Return one ring gauge as inline SVG; ``?`` when the value is unknown."""
    text = aria = "?"
    dash = 0.0
    level = "none"
    if value is not None:
        fraction = min(max(value / maximum, 0.0), 1.0)
        level = "low"
        if fraction >= 0.9:
            level = "high"
        elif fraction >= 0.75:
            level = "mid"
        dash = round(GAUGE_CIRCUMFERENCE * fraction, 1)
        text, aria = f"{value:.0f}{unit}", f"{value:g}{unit}"
    return Markup(
        '<svg class="gauge" width="64" height="64" viewBox="0 0 64 64" role="img"'
        f' aria-label="{label} {aria}"><circle class="track" cx="32" cy="32"'
        f' r="24"/><circle class="value {level}" cx="32" cy="32" r="24"'
        f' stroke-dasharray="{dash:g} {GAUGE_CIRCUMFERENCE}"/>'
        f'<text x="32" y="30">{text}</text>'
        f'<text class="label" x="32" y="44">{label}</text></svg>'
    )


def gauges(node: NodeRow) -> Markup:
    """Return the gauges of a node; temperature only where known."""
    parts = [
        gauge("CPU", node.cpu_percent, 100, "%"),
        gauge("RAM", node.ram_percent, 100, "%"),
        gauge("Disk", node.disk_percent, 100, "%"),
    ]
    if node.temperature is not None:
        parts.append(gauge("Temp", node.temperature, 100, "°C"))
    return Markup("".join(parts))


def services(states: list[ServiceRow]) -> Markup:
    """Return the ``<li>`` rows of a card: status dot, name, time or error.

    ``states`` are rows of ``service_states``.
    """
    if not states:
        return Markup('<li class="muted">No services reported.</li>')
    return Markup("".join(_service(state) for state in states))


def _service(state: ServiceRow) -> str:
    name = escape(state.service_name)
    status = state.status
    if status not in SERVICE_STATUSES:
        status = "unknown"
    error = failure_reason(status, state.details)
    title = ""
    if error:
        note = escape(error)
        title = f' title="{note}"'
    else:
        time_ms = state.response_time_ms
        note = "" if time_ms is None else f"{time_ms:.0f} ms"
    return (
        f'<li data-service="{name}" data-status="{status}"{title}><span>'
        f'<span class="dot {status}"></span>{name}</span>'
        f'<span class="muted">{note}</span></li>'
    )


def failure_reason(status: str, details: Any) -> str | None:
    """Return the reason a check failed, from its details, in 120 characters.

    ``details.error`` comes first, then ``details.status_code`` as "HTTP 503".
    A value that is not a string is shown as compact JSON.
    """
    if status == "healthy" or not isinstance(details, dict):
        return None
    error = details.get("error")
    if error is None and "status_code" in details:
        error = f"HTTP {_as_text(details['status_code'])}"
    if error is None:
        return None
    return short_text(error)


def short_text(value: Any) -> str:
    """Return ``value`` on one line of at most 120 characters, as JSON when it
    is not a string."""
    # Newlines and tabs from a stack trace would break the layout.
    text = " ".join(_as_text(value).split())
    if len(text) <= MAX_ERROR_CHARS:
        return text
    return text[: MAX_ERROR_CHARS - 1] + "…"


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
