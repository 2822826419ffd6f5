"""Markup of the VPN map and the backup table, built in Python.

Like the node cards (``cards.py``), these grow with the fleet: at 100 nodes
the map draws 300 shapes and the table has 100 rows. Rendered by Jinja, whose
every expression goes through the escaper, they took longer than reading
their data. Names come from agents, Headscale and backup hooks, so each one
is escaped here, inside the SVG too. States and labels are computed words.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from markupsafe import Markup, escape

from palais.health.cards import short_text
from palais.web.templating import time_ago

if TYPE_CHECKING:
    from palais.health.overview import MapLink, MapNode, VpnMap

BACKUP_DOTS = {"ok": "dot-green", "failed": "dot-red"}


def map_svg(graph: VpnMap) -> Markup:
    """Return the map as one inline ``<svg>``: links first, nodes on top."""
    parts = [
        f'<svg class="vpn-map" viewBox="0 0 {graph.width} {graph.height}"'
        f' role="img" aria-label="VPN map with {len(graph.nodes)} nodes and'
        f' {len(graph.links)} links">'
    ]
    parts.extend(_link(link) for link in graph.links)
    parts.extend(_node(node, graph) for node in graph.nodes)
    parts.append("</svg>")
    return Markup("\n".join(parts))


def _link(link: MapLink) -> str:
    source, target = link.source, link.target
    source_name, target_name = escape(source.name), escape(target.name)
    label = escape(link.label)
    middle_x = round((source.x + target.x) / 2, 1)
    middle_y = round((source.y + target.y) / 2 - 4, 1)
    return (
        f'<g class="link-group" data-from="{source_name}" data-to="{target_name}">'
        f'<line class="link {escape(link.state)}" x1="{source.x}" y1="{source.y}"'
        f' x2="{target.x}" y2="{target.y}">'
        f"<title>{source_name} → {target_name}: {label}</title></line>"
        f'<text class="latency" text-anchor="middle" x="{middle_x}"'
        f' y="{middle_y}">{label}</text></g>'
    )


def _node(node: MapNode, graph: VpnMap) -> str:
    name, state = escape(node.name), escape(node.state)
    title = f"{name}: {escape(node.detail)}"
    if node.user:
        title += f"; user {escape(node.user)}"
    if node.ips:
        title += f"; {escape(', '.join(node.ips))}"
    label_y = round(node.y + graph.radius + graph.font_size + 2, 1)
    return (
        f'<g class="node {state}" data-node="{name}" data-state="{state}">'
        f'<circle cx="{node.x}" cy="{node.y}" r="{graph.radius}">'
        f"<title>{title}</title></circle>"
        f'<text x="{node.x}" y="{label_y}" text-anchor="middle"'
        f' font-size="{graph.font_size}">{name}</text></g>'
    )


def backup_rows(backups: list[dict[str, Any]], now: datetime) -> Markup:
    """Return the table rows of the backup panel, with an error row where
    the last run reported one."""
    return Markup("\n".join(_backup_row(backup, now) for backup in backups))


def _backup_row(backup: dict[str, Any], now: datetime) -> str:
    node, source = escape(backup["node"]), escape(backup["source"])
    status = escape(backup["status"])
    dot = BACKUP_DOTS.get(backup["status"], "dot-amber")
    stale = " (stale)" if backup["stale"] else ""
    next_run = "not scheduled"
    if backup["next_backup_at"]:
        next_run = time_ago(backup["next_backup_at"], now)
    row = (
        f'<tr data-backup="{node}/{source}"><td>{node}</td><td>{source}</td>'
        f'<td><span class="dot {dot}"></span>{status}{stale}</td>'
        f"<td>{time_ago(backup['last_backup_at'], now)}</td>"
        f"<td>{time_ago(backup['last_success_at'], now)}</td>"
        f"<td>{next_run}</td><td>{backup['size_human']}</td></tr>"
    )
    if backup["error"]:
        # The whole error stays in the API; a page polled every 15 s shows
        # one line of it.
        error = escape(short_text(backup["error"]))
        row += f'<tr><td colspan="7" class="muted">Error: {error}</td></tr>'
    return row
