"""Wiring of the health dashboard into the app: routes, static files, start-up
work and background loops. ``palais.app`` calls these three functions."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from palais.config import Settings
from palais.health import pages as health_pages
from palais.health.overview import Dashboard
from palais.health.rollup import rollup_loop
from palais.health.vpn import headscale_configured, vpn_poll_loop
from palais.insights import api as insights_api
from palais.insights.loop import insights_loop
from palais.web import login
from palais.web.session import ensure_admin_credentials
from palais.web.templating import STATIC_DIR
from palais.workers import Workers

log = logging.getLogger(__name__)


def install_dashboard(app: FastAPI) -> None:
    """Add the login, the health pages and their JSON routes, and /static."""
    app.state.dashboard = Dashboard(app.state.settings, app.state.node_cache)
    app.include_router(login.router)
    app.include_router(health_pages.router)
    app.include_router(insights_api.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


async def prepare_dashboard(app: FastAPI) -> None:
    """Store the admin password hash (generating the password file if unset)."""
    settings: Settings = app.state.settings
    password = settings.secret("admin_password")
    async with app.state.sessions() as session:
        await ensure_admin_credentials(session, password)
    if settings.admin_password is None:
        log.info(
            "dashboard admin password file: %s",
            (settings.data_dir / "admin_password").resolve(),
        )


def add_dashboard_workers(workers: Workers, app: FastAPI, settings: Settings) -> None:
    """Register the background loops of the health dashboard."""
    sessions = app.state.sessions
    workers.add("insights", lambda: insights_loop(settings, sessions))
    workers.add("history-rollup", lambda: rollup_loop(sessions))
    if headscale_configured(settings):
        workers.add("headscale-poll", lambda: vpn_poll_loop(settings, sessions))
