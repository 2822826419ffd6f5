"""View models of the /health page: the VPN map, node cards and backups.

Everything here reads current-state tables only (nodes, service_states,
peer_links, backup_status, insights, vpn_snapshots), never the history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from palais.config import Settings
from palais.health import cards, panels
from palais.health.backup import list_backups
from palais.health.node_cache import CachedNode, NodeCache, NodeRow, read_node_list
from palais.health.nodes import node_status
from palais.health.vpn import read_vpn
from palais.insights.service import list_insights

MAP_WIDTH = 900
UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


@dataclass
class MapNode:
    name: str
    state: str  # ok, down, degraded, stale or unknown
    detail: str
    user: str | None = None
    ips: list[str] = field(default_factory=list)
    x: float = 0.0
    y: float = 0.0


@dataclass
class MapLink:
    source: MapNode
    target: MapNode
    state: str  # ok, down or unknown
    label: str


@dataclass
class VpnMap:
    width: int
    height: int
    radius: float
    font_size: int
    nodes: list[MapNode] = field(default_factory=list)
    links: list[MapLink] = field(default_factory=list)


def human_size(size: int | None) -> str:
    if size is None:
        return "unknown"
    value = float(size)
    for unit in UNITS:
        if value < 1024 or unit == UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _palais_state(node: dict[str, Any]) -> tuple[str, str]:
    if node["last_seen_at"] is None:
        return "unknown", "no report yet"
    if node["status"] == "offline":
        return "down", "offline"
    if node["degraded"]:
        return "degraded", "online, a service is unhealthy"
    return "ok", "online"


def _vpn_state(vpn_node: dict[str, Any], stale: bool) -> tuple[str, str]:
    if vpn_node.get("expired"):
        return "down", "VPN key expired"
    if not vpn_node.get("online"):
        return ("stale" if stale else "down"), "offline in Headscale"
    return ("stale" if stale else "ok"), "online in Headscale"


def _merge_state(
    palais: tuple[str, str], vpn: tuple[str, str] | None
) -> tuple[str, str]:
    """Combine the agent's view with Headscale's: the worse one wins."""
    if vpn is None:
        return palais
    if palais[0] == "unknown":
        return vpn
    order = ["ok", "stale", "degraded", "down"]
    return max(palais, vpn, key=lambda state: order.index(state[0]))


def build_map(nodes: list[dict[str, Any]], vpn: dict[str, Any]) -> VpnMap:
    """Place Palais and Headscale nodes on a circle and draw the measured links."""
    by_vpn_match = {
        vpn_node["palais_node"]: vpn_node
        for vpn_node in vpn["nodes"]
        if vpn_node.get("palais_node")
    }
    placed: dict[str, MapNode] = {}
    for node in nodes:
        vpn_node = by_vpn_match.get(node["name"])
        vpn_state = _vpn_state(vpn_node, vpn["stale"]) if vpn_node else None
        state, detail = _merge_state(_palais_state(node), vpn_state)
        placed[node["name"]] = MapNode(node["name"], state, detail)
        if vpn_node:
            placed[node["name"]].user = vpn_node.get("user")
            placed[node["name"]].ips = vpn_node.get("ips") or []
    for vpn_node in vpn["nodes"]:
        if not vpn_node.get("palais_node") and vpn_node["name"] not in placed:
            state, detail = _vpn_state(vpn_node, vpn["stale"])
            placed[vpn_node["name"]] = MapNode(
                vpn_node["name"],
                state,
                detail,
                user=vpn_node.get("user"),
                ips=vpn_node.get("ips") or [],
            )

    graph = _layout(list(placed.values()))
    for link in vpn["links"]:
        source, target = placed.get(link["from"]), placed.get(link["to"])
        if source is None or target is None:
            continue
        graph.links.append(MapLink(source, target, link["state"], _latency(link)))
    return graph


def _latency(link: dict[str, Any]) -> str:
    if link["state"] == "unknown":
        return "?"
    if link["state"] == "down":
        return "down"
    return f"{link['latency_ms']:.0f} ms" if link["latency_ms"] >= 1 else "<1 ms"


def _layout(nodes: list[MapNode]) -> VpnMap:
    # One ring that grows with the node count, so that 30 labels still fit.
    count = len(nodes)
    ring = max(120.0, count * 16.0)
    # An ellipse 1.6 times wider than high suits a wide page.
    width = int(max(MAP_WIDTH, 2 * ring * 1.6 + 220))
    height = int(2 * ring + 100)
    center_x, center_y = width / 2, height / 2
    graph = VpnMap(
        width=width,
        height=height,
        radius=12 if count <= 10 else 8,
        font_size=13 if count <= 10 else 10,
        nodes=nodes,
    )
    for index, node in enumerate(nodes):
        angle = 2 * math.pi * index / max(count, 1) - math.pi / 2
        node.x = round(center_x + ring * 1.6 * math.cos(angle), 1)
        node.y = round(center_y + ring * math.sin(angle), 1)
    return graph


@dataclass
class Dashboard:
    """The settings and the node cache, shared by the page's readers."""

    settings: Settings
    nodes: NodeCache


async def read_cards(
    session: AsyncSession, dashboard: Dashboard, now: datetime
) -> dict[str, Any]:
    """Read the node cards: current metrics and services, with their markup."""
    node_cards = await _node_cards(session, dashboard, now)
    return {"nodes": node_cards, "cards_html": cards.articles(node_cards, now)}


async def read_map(
    session: AsyncSession, dashboard: Dashboard, now: datetime
) -> dict[str, Any]:
    """Read the VPN map: Palais nodes merged with the stored Headscale topology."""
    nodes = await _node_cards(session, dashboard, now)
    vpn = await read_vpn(session, dashboard.settings, now)
    return {"vpn": vpn, "map_svg": panels.map_svg(build_map(nodes, vpn)), "now": now}


async def read_backups(
    session: AsyncSession, dashboard: Dashboard, now: datetime
) -> dict[str, Any]:
    backups = await list_backups(
        session, now=now, stale_hours=dashboard.settings.backup_stale_hours
    )
    for backup in backups:
        backup["size_human"] = human_size(backup["size_bytes"])
        backup["alert"] = _backup_alert(backup)
    return {
        "backups": backups,
        "backup_rows": panels.backup_rows(backups, now),
        "now": now,
    }


async def read_open_insights(
    session: AsyncSession, _dashboard: Dashboard, now: datetime
) -> dict[str, Any]:
    insights = await list_insights(session, open_only=True, limit=50)
    return {"insights": insights, "now": now}


async def read_overview(
    session: AsyncSession, dashboard: Dashboard, now: datetime
) -> dict[str, Any]:
    """Read everything the full page shows except its history, loaded apart."""
    node_cards = await read_cards(session, dashboard, now)
    vpn = await read_vpn(session, dashboard.settings, now)
    return {
        **node_cards,
        "vpn": vpn,
        "map_svg": panels.map_svg(build_map(node_cards["nodes"], vpn)),
        **await read_backups(session, dashboard, now),
        **await read_open_insights(session, dashboard, now),
    }


async def _node_cards(
    session: AsyncSession, dashboard: Dashboard, now: datetime
) -> list[dict[str, Any]]:
    connection = await session.connection()
    nodes = await read_node_list(connection)
    cached = await dashboard.nodes.read(connection, nodes)
    offline_after = dashboard.settings.offline_after_seconds
    return [
        _card(node, cached[node.id], node_status(node.last_seen_at, now, offline_after))
        for node in nodes
    ]


def _card(node: NodeRow, cached: CachedNode, status: str) -> dict[str, Any]:
    """Return what a node card and the map need of a node."""
    degraded = cached.degraded(status)
    return {
        "name": node.name,
        "status": status,
        "degraded": degraded,
        "last_seen_at": node.last_seen_at,
        "tailscale_ip": node.tailscale_ip,
        "card_status": "degraded" if degraded else status,
        "gauges_html": cached.gauges_html,
        "services_html": cached.services_html,
    }


def _backup_alert(backup: dict[str, Any]) -> str | None:
    """Return ``red`` for a stale backup whose last run failed or never
    succeeded, ``amber`` for another stale one, else None."""
    if not backup["stale"]:
        return None
    if backup["status"] == "failed" or backup["last_success_at"] is None:
        return "red"
    return "amber"
