"""Wiring of the creative studio and tasks into the app; ``palais.app`` calls
these two functions."""

from __future__ import annotations

import hashlib

from fastapi import FastAPI

from palais.config import Settings
from palais.creative import api as creative_api
from palais.creative import pages as creative_pages
from palais.creative.studio import Studio
from palais.creative.watcher import JobWatcher
from palais.tasks import api as tasks_api
from palais.workers import Workers


def install_creative(app: FastAPI) -> None:
    """Add the creative and task routes, the asset files and /dl/{token}."""
    app.include_router(creative_api.router)
    app.include_router(creative_api.files_router)
    app.include_router(tasks_api.router)
    app.include_router(tasks_api.download_router)
    app.include_router(creative_pages.router)


def add_creative_workers(workers: Workers, app: FastAPI, settings: Settings) -> None:
    """Create the studio service and register the job watcher when configured."""
    app.state.studio = Studio(
        settings, app.state.sessions, client_id=shared_client_id(app)
    )
    if app.state.studio.configured:
        watcher = JobWatcher(app.state.studio)
        app.state.creative_watcher = watcher
        workers.add("creative-watcher", watcher.run)


def shared_client_id(app: FastAPI) -> str:
    """Derive the ComfyUI client id from the session secret.

    Processes that share a database also share that secret, so a job submitted
    by any of them sends its events to the socket of the one that runs the
    watcher. The hash does not reveal the secret.
    """
    secret = app.state.session_secret.encode()
    return hashlib.sha256(b"palais-comfyui-client:" + secret).hexdigest()[:32]
