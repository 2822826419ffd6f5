"""The job watcher: socket events, polling fallback, deletions and restarts."""

from __future__ import annotations

import logging
import time
from datetime import datetime

import httpx
import pytest
from fastapi.testclient import TestClient

from palais.creative.watcher import JobWatcher, graph_progress
from tests.conftest import count_rows
from tests.creative.conftest import (
    RunningWatcher,
    job_status,
    wait_for_status,
    wait_until,
)
from tests.fakes.comfyui import FakeComfyUI

GENERATE = "/api/v1/creative/comfyui/generate"


def generate(client: TestClient, **body) -> str:  # noqa: ANN003
    body.setdefault("template", "solid")
    body.setdefault("seed", 7)
    response = client.post(GENERATE, json=body)
    assert response.status_code == 202, response.text
    return response.json()["job"]["prompt_id"]


def test_progress_moves_then_success(
    studio_client: TestClient, fake_comfyui: FakeComfyUI, watcher: JobWatcher
) -> None:
    fake_comfyui.step_seconds = 0.15
    prompt_id = generate(studio_client, text="palais/slow", template="slow")

    seen: set[float] = set()

    def partial_progress() -> bool:
        job = job_status(studio_client, prompt_id)
        seen.add(job["progress"])
        return job["status"] == "running" and 0 < job["progress"] < 1

    wait_until(partial_progress, what="partial progress")
    done = wait_for_status(studio_client, prompt_id, "success")
    assert done["progress"] == 1.0
    assert done["started_at"] is not None
    assert done["finished_at"] is not None
    assert len(done["outputs"]) == 2
    assert len({value for value in seen if 0 < value < 1}) >= 1


def test_runtime_error_recorded(studio_client: TestClient, watcher: JobWatcher) -> None:
    prompt_id = generate(studio_client, text="../../outside")
    job = wait_for_status(studio_client, prompt_id, "error")
    assert "node 2 (SaveImage)" in job["error"]
    assert "outside the output folder" in job["error"]
    assert job["outputs"] == []


def test_cached_rerun_gets_own_asset(
    studio_client: TestClient, fake_comfyui: FakeComfyUI, watcher: JobWatcher
) -> None:
    first = generate(studio_client, text="palais/same", seed=9)
    wait_for_status(studio_client, first, "success")
    second = generate(studio_client, text="palais/same", seed=9)
    job = wait_for_status(studio_client, second, "success")

    history = httpx.get(f"{fake_comfyui.url}/history/{second}").json()[second]
    assert history["status"]["messages"][1][1]["nodes"] == ["1", "2"]
    assert job["outputs"][0]["filename"] == "same_00001_.png"
    assert count_rows(studio_client, "creative_assets") == 2


def test_interrupt_running_job(
    studio_client: TestClient, fake_comfyui: FakeComfyUI, watcher: JobWatcher
) -> None:
    fake_comfyui.step_seconds = 0.5
    prompt_id = generate(studio_client, text="palais/long", template="slow")
    wait_for_status(studio_client, prompt_id, "running")

    response = studio_client.delete(f"/api/v1/creative/jobs/{prompt_id}")
    assert response.status_code == 202
    job = wait_for_status(studio_client, prompt_id, "interrupted")
    assert "interrupted at node 2 (TestSleep)" in job["error"]

    again = studio_client.delete(f"/api/v1/creative/jobs/{prompt_id}")
    assert again.status_code == 409


def test_cancel_pending_marks_deleted(
    studio_client: TestClient, fake_comfyui: FakeComfyUI, watcher: JobWatcher
) -> None:
    fake_comfyui.pause()
    running = generate(studio_client, text="palais/a")
    pending = generate(studio_client, text="palais/b")
    wait_for_status(studio_client, running, "running")

    response = studio_client.delete(f"/api/v1/creative/jobs/{pending}")
    assert response.status_code == 202
    assert response.json()["job"]["status"] == "deleted"
    queue = httpx.get(f"{fake_comfyui.url}/queue").json()
    assert queue["queue_pending"] == []

    fake_comfyui.resume()
    wait_for_status(studio_client, running, "success")
    assert job_status(studio_client, pending)["status"] == "deleted"


def test_deleted_elsewhere_marked_deleted(
    studio_client: TestClient, fake_comfyui: FakeComfyUI, watcher: JobWatcher
) -> None:
    fake_comfyui.pause()
    running = generate(studio_client, text="palais/a")
    pending = generate(studio_client, text="palais/b")
    wait_for_status(studio_client, running, "running")
    httpx.post(f"{fake_comfyui.url}/queue", json={"delete": [pending]})

    job = wait_for_status(studio_client, pending, "deleted")
    assert job["error"] == "deleted from the ComfyUI queue"
    fake_comfyui.resume()
    wait_for_status(studio_client, running, "success")


def test_socket_drop_mid_job(
    studio_client: TestClient, fake_comfyui: FakeComfyUI, watcher: JobWatcher
) -> None:
    fake_comfyui.step_seconds = 0.2
    prompt_id = generate(studio_client, text="palais/drop", template="slow")
    wait_for_status(studio_client, prompt_id, "running")
    epoch = watcher.epoch
    fake_comfyui.drop_sockets()

    wait_until(lambda: watcher.epoch > epoch, what="socket reconnect")
    job = wait_for_status(studio_client, prompt_id, "success")
    assert len(job["outputs"]) == 2


def test_missed_final_event_found_by_polling(
    studio_client: TestClient, fake_comfyui: FakeComfyUI, watcher: JobWatcher
) -> None:
    fake_comfyui.dropped_messages = {"executing", "execution_start", "progress_state"}
    prompt_id = generate(studio_client, text="palais/quiet")
    job = wait_for_status(studio_client, prompt_id, "success")
    assert len(job["outputs"]) == 1


def test_restart_loses_running_job(
    studio_client: TestClient, fake_comfyui: FakeComfyUI, watcher: JobWatcher
) -> None:
    fake_comfyui.pause()
    prompt_id = generate(studio_client, text="palais/a")
    wait_for_status(studio_client, prompt_id, "running")
    fake_comfyui.restart()

    job = wait_for_status(studio_client, prompt_id, "lost")
    assert "restarted" in job["error"]
    assert job["finished_at"] is not None


def test_restart_loses_pending_job(
    studio_client: TestClient, fake_comfyui: FakeComfyUI, watcher: JobWatcher
) -> None:
    finished = generate(studio_client, text="palais/done")
    wait_for_status(studio_client, finished, "success")
    fake_comfyui.pause()
    running = generate(studio_client, text="palais/a")
    pending = generate(studio_client, text="palais/b")
    wait_for_status(studio_client, running, "running")
    fake_comfyui.restart()

    assert wait_for_status(studio_client, pending, "lost")
    assert wait_for_status(studio_client, running, "lost")
    assert job_status(studio_client, finished)["status"] == "success"


def test_down_then_back(
    studio_client: TestClient, fake_comfyui: FakeComfyUI, watcher: JobWatcher
) -> None:
    fake_comfyui.stop()
    wait_until(lambda: not watcher.connected, what="socket down")
    response = studio_client.post(
        GENERATE, json={"text": "palais/x", "template": "solid", "seed": 1}
    )
    assert response.status_code == 503
    fake_comfyui.start()

    wait_until(lambda: watcher.connected, what="socket back")
    prompt_id = generate(studio_client, text="palais/back")
    wait_for_status(studio_client, prompt_id, "success")


def test_jobs_survive_app_restart(
    studio_client: TestClient, fake_comfyui: FakeComfyUI, creative_settings
) -> None:
    # Without a running watcher the job stays queued; a new app and watcher
    # (as after a Palais restart) finish it from ComfyUI's history.
    prompt_id = generate(studio_client, text="palais/later")
    assert job_status(studio_client, prompt_id)["status"] == "queued"

    from palais.app import create_app
    from tests.conftest import AUTH

    with TestClient(create_app(creative_settings, run_workers=False)) as second:
        second.headers.update(AUTH)
        running = RunningWatcher(second)
        try:
            job = wait_for_status(second, prompt_id, "success")
        finally:
            running.stop()
    assert len(job["outputs"]) == 1


def test_adopts_foreign_job_with_task(
    studio_client: TestClient, fake_comfyui: FakeComfyUI, watcher: JobWatcher
) -> None:
    task = studio_client.post("/api/v1/tasks", json={"title": "poster"}).json()
    workflow = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 5},
        },
        "2": {
            "class_type": "SaveImage",
            "inputs": {"images": ["1", 0], "filename_prefix": "elsewhere/img"},
        },
    }
    answer = httpx.post(
        f"{fake_comfyui.url}/prompt",
        json={
            "prompt": workflow,
            "client_id": "someone-else",
            "extra_data": {"palais": {"task_id": task["id"], "text": "by hand"}},
        },
    ).json()
    untracked = httpx.post(
        f"{fake_comfyui.url}/prompt",
        json={"prompt": workflow, "client_id": "someone-else"},
    ).json()

    job = wait_for_status(studio_client, answer["prompt_id"], "success")
    assert job["origin"] == "external"
    assert job["task_id"] == task["id"]
    assert job["text"] == "by hand"

    def attached() -> list:
        return studio_client.get(f"/api/v1/tasks/{task['id']}").json()["deliverables"]

    assert len(wait_until(attached, what="deliverable")) == 1
    missing = studio_client.get(f"/api/v1/creative/jobs/{untracked['prompt_id']}")
    assert missing.status_code == 404


def test_graph_progress_estimate() -> None:
    workflow = {"1": {}, "2": {}, "3": {}, "4": {}}
    nodes = {
        "1": {"value": 1.0, "max": 1.0, "state": "finished"},
        "2": {"value": 5, "max": 10, "state": "running"},
    }
    assert graph_progress(workflow, nodes) == 1.5 / 4
    assert graph_progress(workflow, None) == 0.0
    assert graph_progress(workflow, {"1": {"value": 1, "max": 0}}) == 0.0
    done = {key: {"state": "finished"} for key in workflow}
    assert graph_progress(workflow, done) == 0.99


def test_times_use_palais_clock(
    studio_client: TestClient, fake_comfyui: FakeComfyUI, watcher: JobWatcher
) -> None:
    fake_comfyui.clock_offset_seconds = -3600.0
    prompt_id = generate(studio_client, text="palais/clock")
    wait_for_status(studio_client, prompt_id, "success")
    job = wait_until(
        lambda: (found := job_status(studio_client, prompt_id))["outputs"] and found,
        what="stored outputs",
    )
    times = {
        key: datetime.fromisoformat(job[key])
        for key in ("submitted_at", "started_at", "finished_at")
    }
    assert times["submitted_at"] <= times["started_at"]
    assert times["started_at"] <= times["finished_at"]
    [output] = job["outputs"]
    assert datetime.fromisoformat(output["created_at"]) >= times["submitted_at"]


def test_partial_node_errors_kept(
    studio_client: TestClient, watcher: JobWatcher
) -> None:
    def empty_image(width: int) -> dict:
        inputs = {"width": width, "height": 8, "batch_size": 1, "color": 0}
        return {"class_type": "EmptyImage", "inputs": inputs}

    workflow = {
        "1": empty_image(8),
        "2": {
            "class_type": "SaveImage",
            "inputs": {"images": ["1", 0], "filename_prefix": "palais/valid"},
        },
        "3": empty_image(0),
        "4": {
            "class_type": "SaveImage",
            "inputs": {"images": ["3", 0], "filename_prefix": "palais/invalid"},
        },
    }
    response = studio_client.post(GENERATE, json={"workflow": workflow})
    assert response.status_code == 202, response.text
    submitted = response.json()["job"]
    assert "node 3 (EmptyImage) input width" in submitted["error"]
    assert "smaller than min of 1" in submitted["error"]

    prompt_id = submitted["prompt_id"]
    wait_for_status(studio_client, prompt_id, "success")
    job = wait_until(
        lambda: (found := job_status(studio_client, prompt_id))["outputs"] and found,
        what="stored outputs",
    )
    assert job["error"] == submitted["error"]
    assert [output["filename"] for output in job["outputs"]] == ["valid_00001_.png"]


def test_output_download_retries_bounded(
    studio_client: TestClient,
    fake_comfyui: FakeComfyUI,
    watcher: JobWatcher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="palais.creative.studio")
    studio_client.app.state.studio.output_retry_seconds = 0.05
    fake_comfyui.view_status = 500
    prompt_id = generate(studio_client, text="palais/lost")
    wait_for_status(studio_client, prompt_id, "success")
    job = wait_until(
        lambda: (found := job_status(studio_client, prompt_id))["error"] and found,
        what="download error recorded",
    )
    assert job["outputs"] == []
    assert "output 'lost_00001_.png' could not be downloaded" in job["error"]
    assert "HTTP 500" in job["error"]

    def view_requests() -> int:
        return sum(1 for request in fake_comfyui.requests if request[1] == "/view")

    assert view_requests() == 5
    time.sleep(1.5)  # three watcher ticks: no further download attempts
    assert view_requests() == 5
    messages = [r.getMessage() for r in caplog.records if prompt_id in r.getMessage()]
    assert sum("retrying in" in message for message in messages) == 4
    assert sum("giving up" in message for message in messages) == 1
