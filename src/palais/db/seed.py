"""Insert the configured nodes once; re-running updates a changed IP only."""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from palais.config import SeedNode
from palais.db.models import Node
from palais.db.types import utcnow
from palais.db.upsert import insert_for

log = logging.getLogger(__name__)


async def seed_nodes(session: AsyncSession, nodes: list[SeedNode]) -> None:
    existing = {
        node.name: node
        for node in await session.scalars(
            select(Node).where(Node.name.in_([seed.name for seed in nodes]))
        )
    }
    for seed in nodes:
        node = existing.get(seed.name)
        if node is None:
            # Two processes starting on one database can seed at the same time.
            await session.execute(
                insert_for(session, Node.__table__)
                .values(
                    name=seed.name,
                    tailscale_ip=seed.tailscale_ip,
                    status="unknown",
                    created_at=utcnow(),
                )
                .on_conflict_do_nothing(index_elements=["name"])
            )
            log.info("seeded node %s", seed.name)
        elif seed.tailscale_ip and node.tailscale_ip != seed.tailscale_ip:
            log.info(
                "node %s: tailscale IP changed from %s to %s",
                seed.name,
                node.tailscale_ip,
                seed.tailscale_ip,
            )
            node.tailscale_ip = seed.tailscale_ip
    await session.commit()
