"""Fixtures of the creative studio tests: a fake ComfyUI on 127.0.0.1, an app
pointed at it, and the job watcher running on the app's event loop."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from palais.app import create_app
from palais.config import Settings
from palais.creative.watcher import JobWatcher
from tests.conftest import AUTH, DATA
from tests.fakes.comfyui import FakeComfyUI

TEMPLATES = DATA / "comfyui" / "templates"


@pytest.fixture
def fake_comfyui(tmp_path: Path) -> Iterator[FakeComfyUI]:
    fake = FakeComfyUI(tmp_path / "comfyui" / "output").start()
    yield fake
    fake.stop()


@pytest.fixture
def creative_settings(
    settings_factory: Callable[..., Settings], fake_comfyui: FakeComfyUI
) -> Settings:
    return settings_factory(
        comfyui_url=fake_comfyui.url, comfyui_templates_dir=TEMPLATES
    )


@pytest.fixture
def studio_client(creative_settings: Settings) -> Iterator[TestClient]:
    """The app without its background loops; tests start the watcher themselves."""
    with TestClient(create_app(creative_settings, run_workers=False)) as client:
        client.headers.update(AUTH)
        yield client


class RunningWatcher:
    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.watcher = JobWatcher(
            client.app.state.studio,
            poll_seconds=0.5,
            poll_seconds_offline=0.2,
            backoff_seconds=0.05,
        )
        self.future = client.portal.start_task_soon(self.watcher.run)

    def stop(self) -> None:
        """Stop the loops cleanly; cancel only if they do not end in time."""
        self.client.portal.call(self.watcher.stop)
        try:
            self.future.result(timeout=15)
        except TimeoutError:
            self.future.cancel()


@pytest.fixture
def watcher(studio_client: TestClient) -> Iterator[JobWatcher]:
    running = RunningWatcher(studio_client)
    wait_until(lambda: running.watcher.connected, what="watcher socket connected")
    yield running.watcher
    running.stop()


def wait_until(
    condition: Callable[[], Any], *, timeout: float = 15.0, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def job_status(client: TestClient, prompt_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/creative/jobs/{prompt_id}")
    assert response.status_code == 200, response.text
    return response.json()["job"]


def wait_for_status(
    client: TestClient, prompt_id: str, status: str, timeout: float = 15.0
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        response = client.get(f"/api/v1/creative/jobs/{prompt_id}")
        if response.status_code == 404:
            return None  # not adopted yet
        job = response.json()["job"]
        return job if job["status"] == status else None

    return wait_until(reached, timeout=timeout, what=f"job {prompt_id} to be {status}")
