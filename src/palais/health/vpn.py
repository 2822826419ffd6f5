"""VPN topology: Headscale polled in the background, links from agents' peers.

The poll stores each successful response in ``vpn_snapshots``. A failed poll
keeps the last nodes and records the error, so readers show the last known
topology marked stale instead of failing.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from palais.config import Settings
from palais.db.models import Node, PeerLink, VpnSnapshot
from palais.db.types import utcnow
from palais.db.upsert import insert_for
from palais.health.headscale import HeadscaleClient, HeadscaleError
from palais.health.nodes import iso

log = logging.getLogger(__name__)


def public_url(url: str | None) -> str:
    """Return ``url`` without user or password, for logs."""
    parts = urlsplit(url or "")
    if parts.username is None and parts.password is None:
        return url or ""
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc).geturl()


SNAPSHOT_ID = 1
# A peer latency older than this is drawn as unknown: agents report every 30 s.
LINK_FRESH_SECONDS = 600
NOT_CONFIGURED = (
    "Headscale is not configured; set PALAIS_HEADSCALE_URL and PALAIS_HEADSCALE_API_KEY"
)


def headscale_configured(settings: Settings) -> bool:
    return bool(settings.headscale_url and settings.headscale_api_key)


async def store_success(
    session: AsyncSession, path: str, nodes: list[dict[str, Any]], now: datetime
) -> None:
    table = VpnSnapshot.__table__
    values = {
        "id": SNAPSHOT_ID,
        "nodes": nodes,
        "api_path": path,
        "fetched_at": now,
        "attempted_at": now,
        "error": None,
        "error_since": None,
    }
    statement = insert_for(session, table).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=["id"],
        set_={key: value for key, value in values.items() if key != "id"},
    )
    await session.execute(statement)
    await session.commit()


async def store_failure(session: AsyncSession, error: str, now: datetime) -> None:
    """Record the error but keep the last nodes; ``error_since`` keeps the first."""
    snapshot = await session.get(VpnSnapshot, SNAPSHOT_ID)
    if snapshot is None:
        snapshot = VpnSnapshot(id=SNAPSHOT_ID, nodes=[], attempted_at=now)
        session.add(snapshot)
    snapshot.attempted_at = now
    snapshot.error = error
    if snapshot.error_since is None:
        snapshot.error_since = now
    await session.commit()


async def poll_once(
    client: HeadscaleClient, sessions: async_sessionmaker[AsyncSession]
) -> str | None:
    """Poll Headscale once and store the outcome; return the error, if any."""
    now = utcnow()
    try:
        path, nodes = await client.list_nodes(now)
    except HeadscaleError as exc:
        async with sessions() as session:
            await store_failure(session, str(exc), now)
        return str(exc)
    async with sessions() as session:
        await store_success(session, path, [node.to_json() for node in nodes], now)
    return None


async def vpn_poll_loop(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    assert settings.headscale_url and settings.headscale_api_key
    interval = settings.headscale_poll_seconds
    client = HeadscaleClient(
        settings.headscale_url, settings.headscale_api_key.get_secret_value()
    )
    log.info(
        "Headscale poller started: %s every %g s",
        public_url(settings.headscale_url),
        interval,
    )
    failing = False
    try:
        while True:
            try:
                error = await poll_once(client, sessions)
            except Exception:
                log.exception("Headscale poll failed while storing its result")
                error = "storing the topology failed"
            if error is not None:
                log.warning("Headscale poll failed: %s", error)
            elif failing:
                log.info("Headscale poll succeeded again")
            failing = error is not None
            await asyncio.sleep(interval)
    finally:
        await client.close()
        log.info("Headscale poller stopped")


async def read_vpn(
    session: AsyncSession, settings: Settings, now: datetime
) -> dict[str, Any]:
    """Build the response of ``GET /api/v1/health/vpn`` from the database only."""
    configured = headscale_configured(settings)
    palais_nodes = list(await session.execute(select(Node.name, Node.tailscale_ip)))
    snapshot = await session.get(VpnSnapshot, SNAPSHOT_ID) if configured else None
    links = await read_links(session, now)
    if not configured:
        return _answer(False, [], links, None, True, NOT_CONFIGURED, None)
    if snapshot is None:
        error = "Headscale has not been polled yet"
        return _answer(True, [], links, None, True, error, None)

    nodes = [_with_palais_node(node, palais_nodes) for node in snapshot.nodes]
    stale = snapshot.error is not None or _too_old(snapshot.fetched_at, settings, now)
    return _answer(
        True,
        nodes,
        links,
        snapshot.fetched_at,
        stale,
        snapshot.error,
        snapshot.error_since,
    )


def _answer(
    configured: bool,
    nodes: list[dict[str, Any]],
    links: list[dict[str, Any]],
    fetched_at: datetime | None,
    stale: bool,
    error: str | None,
    error_since: datetime | None,
) -> dict[str, Any]:
    return {
        "configured": configured,
        "nodes": nodes,
        "links": links,
        "fetched_at": iso(fetched_at),
        "stale": stale,
        "error": error,
        "error_since": iso(error_since),
    }


def _too_old(fetched_at: datetime | None, settings: Settings, now: datetime) -> bool:
    # Two missed polls plus the request timeout before data counts as stale.
    window = timedelta(seconds=2 * settings.headscale_poll_seconds + 30)
    return fetched_at is None or now - fetched_at > window


def _with_palais_node(
    node: dict[str, Any], palais_nodes: list[tuple[str, str | None]]
) -> dict[str, Any]:
    """Match a VPN node to a Palais node by name (any case) or Tailscale IP."""
    name = str(node.get("name", "")).lower()
    ips = set(node.get("ips") or [])
    match = next(
        (
            palais_name
            for palais_name, tailscale_ip in palais_nodes
            if palais_name.lower() == name or (tailscale_ip and tailscale_ip in ips)
        ),
        None,
    )
    return {
        "name": node.get("name"),
        "ips": node.get("ips") or [],
        "online": node.get("online"),
        "expired": node.get("expired"),
        "last_seen_at": node.get("last_seen_at"),
        "user": node.get("user"),
        "palais_node": match,
        "id": node.get("id"),
        "expiry": node.get("expiry"),
        "tags": node.get("tags") or [],
    }


async def read_links(session: AsyncSession, now: datetime) -> list[dict[str, Any]]:
    """Return the latest latency each node measured to each peer.

    ``state`` is ``ok``, ``down`` (the last probe failed) or ``unknown`` (no
    measurement in the last 10 minutes, so the latency is null).
    """
    rows = await session.execute(
        select(Node.name, PeerLink.peer_name, PeerLink.latency_ms, PeerLink.measured_at)
        .join(Node, Node.id == PeerLink.node_id)
        .order_by(Node.name, PeerLink.peer_name)
    )
    fresh_after = now - timedelta(seconds=LINK_FRESH_SECONDS)
    links = []
    for source, peer, latency, measured_at in rows:
        fresh = measured_at >= fresh_after
        if not fresh:
            state, latency = "unknown", None
        else:
            state = "down" if latency is None else "ok"
        links.append(
            {
                "from": source,
                "to": peer,
                "latency_ms": latency,
                "measured_at": iso(measured_at),
                "state": state,
            }
        )
    return links
