"""Quick generate against the fake ComfyUI, followed by the watcher."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.creative.conftest import wait_for_status
from tests.fakes.comfyui import FakeComfyUI


def test_generate_success_stores_output(
    studio_client: TestClient, fake_comfyui: FakeComfyUI, watcher
) -> None:
    response = studio_client.post(
        "/api/v1/creative/comfyui/generate",
        json={"text": "palais/fox", "template": "solid", "seed": 255},
    )
    assert response.status_code == 202, response.text
    job = response.json()["job"]
    assert job["status"] == "queued"

    done = wait_for_status(studio_client, job["prompt_id"], "success")
    assert done["progress"] == 1.0
    assert len(done["outputs"]) == 1
    assert done["outputs"][0]["filename"] == "fox_00001_.png"
