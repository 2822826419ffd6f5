"""Creative JSON routes: validation, ComfyUI's rejections and outages."""

from __future__ import annotations

import socket
import time

import pytest
from fastapi.testclient import TestClient

from palais.app import create_app
from tests.conftest import AUTH, count_rows
from tests.fakes.comfyui import FakeComfyUI

GENERATE = "/api/v1/creative/comfyui/generate"


def assert_error_body(body: dict) -> None:
    assert set(body) == {"error", "field", "value", "accepted"}


def test_routes_need_token(studio_client: TestClient) -> None:
    for method, path in [
        ("GET", "/api/v1/creative/comfyui"),
        ("POST", GENERATE),
        ("GET", "/api/v1/creative/jobs"),
        ("GET", "/api/v1/creative/gallery"),
        ("GET", "/api/v1/creative/renders"),
        ("GET", "/creative/assets/1/image"),
    ]:
        response = studio_client.request(
            method, path, headers={"Authorization": "Bearer wrong"}
        )
        assert response.status_code == 401, path
        assert_error_body(response.json())


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"template": "solid"}, "text"),
        ({"text": "", "template": "solid"}, "text"),
        ({"text": 12, "template": "solid"}, "text"),
        ({"text": "a\x00b", "template": "solid"}, "text"),
        ({"text": "x" * 4001, "template": "solid"}, "text"),
        ({"text": "fox", "template": "nope"}, "template"),
        ({"text": "fox", "template": "../solid"}, "template"),
        ({"text": "fox", "template": "solid", "seed": "12abc"}, "seed"),
        ({"text": "fox", "template": "solid", "seed": True}, "seed"),
        ({"text": "fox", "template": "solid", "seed": -1}, "seed"),
        ({"text": "fox", "template": "solid", "seed": 1.5}, "seed"),
        ({"text": "fox", "template": "solid", "width": 99999}, "width"),
        ({"text": "fox", "template": "solid", "height": "45%"}, "height"),
        ({"text": "fox", "template": "solid", "task_id": "x"}, "task_id"),
        ({"workflow": []}, "workflow"),
        ({"workflow": {"1": {"inputs": {}}}}, "workflow"),
        ({"workflow": {"1": {"class_type": "X", "inputs": 3}}}, "workflow"),
        ({"workflow": {"1": {"class_type": "X"}}, "template": "solid"}, "template"),
    ],
)
def test_generate_rejects_bad_fields(
    studio_client: TestClient, body: dict, field: str
) -> None:
    response = studio_client.post(GENERATE, json=body)
    assert response.status_code == 422, response.text
    assert_error_body(response.json())
    assert response.json()["field"] == field
    assert count_rows(studio_client, "creative_jobs") == 0


def test_generate_malformed_json(studio_client: TestClient) -> None:
    response = studio_client.post(
        GENERATE, content=b"{oops", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert_error_body(response.json())


def test_generate_unknown_task_404(studio_client: TestClient) -> None:
    response = studio_client.post(
        GENERATE, json={"text": "fox", "template": "solid", "task_id": 999}
    )
    assert response.status_code == 404
    assert response.json()["field"] == "task_id"


def test_unknown_template_lists_choices(studio_client: TestClient) -> None:
    response = studio_client.post(GENERATE, json={"text": "fox", "template": "nope"})
    assert "slow" in response.json()["accepted"]
    assert "solid" in response.json()["accepted"]


def test_comfyui_rejection_becomes_422(studio_client: TestClient) -> None:
    # The seed goes into EmptyImage.color, whose maximum is 0xFFFFFF.
    response = studio_client.post(
        GENERATE, json={"text": "fox", "template": "solid", "seed": 2**30}
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == "workflow.1.inputs.color"
    assert body["value"] == 2**30
    assert "node 1 (EmptyImage) input color" in body["error"]
    assert "bigger than max of 16777215" in body["error"]
    assert "16777215" in body["accepted"]
    assert count_rows(studio_client, "creative_jobs") == 0


def test_upstream_rejection_with_empty_details(studio_client: TestClient) -> None:
    workflow = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 0, "height": 8, "batch_size": 1, "color": 0},
        },
        "2": {
            "class_type": "SaveImage",
            "inputs": {"images": ["1", 0], "filename_prefix": "x"},
        },
    }
    response = studio_client.post(GENERATE, json={"workflow": workflow})
    assert response.status_code == 422
    assert response.json()["field"] == "workflow.1.inputs.width"
    assert "smaller than min of 1" in response.json()["error"]


def test_whole_graph_rejection(studio_client: TestClient) -> None:
    workflow = {"1": {"class_type": "NoSuchNode", "inputs": {}}}
    response = studio_client.post(GENERATE, json={"workflow": workflow})
    assert response.status_code == 422
    assert response.json()["field"] == "workflow"
    assert "NoSuchNode does not exist" in response.json()["error"]


def test_generate_when_comfyui_down(
    studio_client: TestClient, fake_comfyui: FakeComfyUI
) -> None:
    fake_comfyui.stop()
    response = studio_client.post(
        GENERATE, json={"text": "fox", "template": "solid", "seed": 1}
    )
    assert response.status_code == 503
    assert_error_body(response.json())
    assert fake_comfyui.url not in response.text
    assert count_rows(studio_client, "creative_jobs") == 0

    status = studio_client.get("/api/v1/creative/comfyui").json()
    assert status["configured"] is True
    assert status["reachable"] is False
    assert "ConnectError" in status["error"]


def test_comfyui_status_when_reachable(
    studio_client: TestClient, fake_comfyui: FakeComfyUI
) -> None:
    fake_comfyui.pause()
    for _ in range(2):
        studio_client.post(GENERATE, json={"text": "a", "template": "solid", "seed": 1})
    status = studio_client.get("/api/v1/creative/comfyui").json()
    fake_comfyui.resume()

    assert status["reachable"] is True
    assert status["error"] is None
    assert status["system"]["system"]["comfyui_version"] == "0.3.64"
    assert len(status["queue"]["running"]) == 1
    assert len(status["queue"]["pending"]) == 1
    assert isinstance(status["history"], list)


def test_not_configured(settings_factory) -> None:  # noqa: ANN001
    settings = settings_factory()
    with TestClient(create_app(settings, run_workers=False)) as client:
        status = client.get("/api/v1/creative/comfyui", headers=AUTH)
        generate = client.post(
            GENERATE, json={"text": "a", "template": "txt2img"}, headers=AUTH
        )
    assert status.status_code == 200
    assert status.json()["configured"] is False
    assert "PALAIS_COMFYUI_URL" in status.json()["error"]
    assert generate.status_code == 503
    assert "PALAIS_COMFYUI_URL" in generate.json()["error"]


def test_jobs_list_and_filters(studio_client: TestClient) -> None:
    bad = studio_client.get("/api/v1/creative/jobs?status=done")
    assert bad.status_code == 422
    assert bad.json()["field"] == "status"

    missing = studio_client.get("/api/v1/creative/jobs/unknown-id")
    assert missing.status_code == 404
    assert_error_body(missing.json())

    created = studio_client.post(
        GENERATE, json={"text": "a", "template": "solid", "seed": 3}
    ).json()["job"]
    listed = studio_client.get("/api/v1/creative/jobs").json()["jobs"]
    assert [job["prompt_id"] for job in listed] == [created["prompt_id"]]
    assert listed[0]["seed"] == 3
    assert listed[0]["text"] == "a"
    none_lost = studio_client.get("/api/v1/creative/jobs?status=lost").json()
    assert none_lost["jobs"] == []


def test_cancel_unknown_and_finished(studio_client: TestClient) -> None:
    response = studio_client.delete("/api/v1/creative/jobs/unknown-id")
    assert response.status_code == 404


def test_templates_listed(studio_client: TestClient) -> None:
    names = studio_client.get("/api/v1/creative/templates").json()["templates"]
    assert names == ["slow", "solid"]


def test_status_of_hung_comfyui(settings_factory) -> None:  # noqa: ANN001
    # The socket accepts connections (the kernel's backlog) but never responds.
    with socket.create_server(("127.0.0.1", 0)) as hung:
        url = f"http://127.0.0.1:{hung.getsockname()[1]}"
        settings = settings_factory(comfyui_url=url)
        with TestClient(create_app(settings, run_workers=False)) as client:
            started = time.monotonic()
            response = client.get("/api/v1/creative/comfyui", headers=AUTH)
            elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["reachable"] is False
    assert "timed out" in response.json()["error"]
    assert elapsed < 5


@pytest.mark.parametrize(
    ("body", "bound"),
    [
        ({"text": "a", "template": "solid", "seed": -1}, "9007199254740991"),
        ({"text": "a", "task_id": 2**31}, "2147483647"),
    ],
)
def test_integer_bounds_printed_whole(
    studio_client: TestClient, body: dict, bound: str
) -> None:
    response = studio_client.post(GENERATE, json=body)
    assert response.status_code == 422, response.text
    assert bound in response.json()["accepted"]
    assert "e+" not in response.json()["accepted"]
    assert bound in response.json()["error"]
