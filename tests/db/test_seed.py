"""Seeding of PALAIS_NODES and the self node."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import text

from palais.app import create_app
from palais.config import Settings
from tests.conftest import run_in_app


def node_rows(client: TestClient) -> dict[str, str | None]:
    async def read(session) -> dict[str, str | None]:  # noqa: ANN001
        rows = await session.execute(text("SELECT name, tailscale_ip FROM nodes"))
        return dict(rows.all())

    return run_in_app(client, read)


def test_seed_inserts_nodes_and_self(settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(nodes="rpi5=100.64.0.2,seko-vpn", self_node="vps-1")

    with TestClient(create_app(settings, run_workers=False)) as client:
        rows = node_rows(client)

    assert rows == {"rpi5": "100.64.0.2", "seko-vpn": None, "vps-1": None}


def test_seed_rerun_updates_ip_only(settings_factory: Callable[..., Settings]) -> None:
    first = settings_factory(nodes="rpi5=100.64.0.2,seko-vpn")
    second = settings_factory(nodes="rpi5=100.64.0.9,seko-vpn=100.64.0.1")

    with TestClient(create_app(first, run_workers=False)) as client:
        before = node_rows(client)
    with TestClient(create_app(second, run_workers=False)) as client:
        after = node_rows(client)
    with TestClient(create_app(second, run_workers=False)) as client:
        again = node_rows(client)

    assert before["rpi5"] == "100.64.0.2"
    assert after["rpi5"] == "100.64.0.9"
    assert after["seko-vpn"] == "100.64.0.1"
    assert again == after
    assert len(again) == 3
