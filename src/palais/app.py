"""create_app(): settings, database, routes and background work."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import text

from palais import __version__
from palais.config import Settings
from palais.creative.setup import add_creative_workers, install_creative
from palais.db.engine import create_engine, session_factory, upgrade
from palais.db.seed import seed_nodes
from palais.errors import install_error_handlers
from palais.health import api as health_api
from palais.health.ingest import NodeIds
from palais.health.node_cache import NodeCache, node_refresh_loop
from palais.health.retention import retention_loop
from palais.health.self_agent import self_agent_loop
from palais.web.body_limit import BodyLimitMiddleware
from palais.web.compression import CompressionMiddleware
from palais.web.dashboard import (
    add_dashboard_workers,
    install_dashboard,
    prepare_dashboard,
)
from palais.workers import Workers

log = logging.getLogger(__name__)

HEALTHZ_TIMEOUT_SECONDS = 3.0


async def prepare_database(settings: Settings, engine) -> None:  # noqa: ANN001
    """Migrate to the latest schema and seed the configured nodes."""
    await upgrade(engine)
    async with session_factory(engine)() as session:
        await seed_nodes(session, settings.seed_nodes)


def _register_workers(app: FastAPI, settings: Settings) -> Workers:
    workers = Workers(app.state.engine, settings.data_dir / "workers.lock")
    sessions = app.state.sessions
    workers.add(
        "retention", lambda: retention_loop(sessions, settings.history_retention_days)
    )
    if settings.self_agent:
        workers.add("self-agent", lambda: self_agent_loop(settings, sessions))
    cache = app.state.node_cache
    workers.add(
        "node-cache", lambda: node_refresh_loop(cache, sessions), every_process=True
    )
    add_dashboard_workers(workers, app, settings)
    add_creative_workers(workers, app, settings)
    return workers


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    engine = create_engine(settings.sqlalchemy_url)
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.node_ids = NodeIds()
    await prepare_database(settings, engine)
    await prepare_dashboard(app)

    workers = _register_workers(app, settings)
    if app.state.run_workers:
        workers.start()
    if app.state.freeze_gc:
        freeze_startup_objects()
    log.info("Palais %s started (database: %s)", __version__, engine.dialect.name)
    try:
        yield
    finally:
        await workers.stop()
        await engine.dispose()
        log.info("Palais stopped")


def freeze_startup_objects() -> None:
    """Keep what startup built out of every later garbage collection.

    Modules, the ORM mappings, compiled templates and caches live as long as
    the process. Without this, each full collection walks all of them again,
    and on the dashboard's larger pages that costs tens of milliseconds.
    """
    gc.collect()
    gc.freeze()
    log.info("objects kept out of garbage collection: %d", gc.get_freeze_count())


def serve_app() -> FastAPI:
    """Build the app of ``palais serve``: settings from the environment, GC tuned."""
    return create_app(freeze_gc=True)


def create_app(
    settings: Settings | None = None,
    *,
    run_workers: bool = True,
    freeze_gc: bool = False,
) -> FastAPI:
    settings = settings or Settings()
    settings.ensure_data_dir()
    app = FastAPI(title="Palais", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.run_workers = run_workers
    app.state.freeze_gc = freeze_gc
    app.state.api_token = settings.secret("api_token")
    app.state.session_secret = settings.secret("session_secret")
    app.state.node_cache = NodeCache()

    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(CompressionMiddleware)
    app.include_router(health_api.router)
    install_dashboard(app)
    install_creative(app)
    _add_service_routes(app)
    return app


def _add_service_routes(app: FastAPI) -> None:
    # HEAD too: some probes and uptime checkers send it.
    @app.api_route("/healthz", methods=["GET", "HEAD"], include_in_schema=False)
    async def healthz(request: Request) -> JSONResponse:
        """Report liveness: 200, or 503 naming the part that fails."""
        try:
            async with asyncio.timeout(HEALTHZ_TIMEOUT_SECONDS):
                async with request.app.state.sessions() as session:
                    await session.execute(text("SELECT 1"))
        except Exception as exc:  # any driver error means the database is down
            log.warning("healthz: database check failed: %s", type(exc).__name__)
            return JSONResponse(
                {
                    "status": "failing",
                    "failing": "database",
                    "error": f"database unreachable ({type(exc).__name__})",
                },
                status_code=503,
            )
        return JSONResponse({"status": "ok", "version": __version__})

    @app.get("/", include_in_schema=False)
    async def index() -> RedirectResponse:
        return RedirectResponse("/health", status_code=303)
