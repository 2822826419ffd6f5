"""The fake ComfyUI responds in the shapes recorded from ComfyUI 0.3.64."""

from __future__ import annotations

import json

import httpx
import pytest
import websockets

from tests.conftest import DATA
from tests.fakes.comfyui import FakeComfyUI

COMFY = DATA / "comfyui"


def recorded(name: str) -> dict:
    return json.loads((COMFY / "http" / f"{name}.json").read_text())


def recorded_ws_types(name: str) -> list[str]:
    types = []
    for line in (COMFY / "ws" / f"{name}.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["dir"] == "recv" and event.get("frame") == "text":
            types.append(event["data"]["type"])
    return types


def sorted_errors(body: dict) -> dict:
    for node in body.get("node_errors", {}).values():
        node["errors"].sort(key=lambda error: error["details"])
    return body


@pytest.mark.parametrize(
    "fixture",
    [
        "prompt_post_error_out_of_range",
        "prompt_post_error_missing_input",
        "prompt_post_error_bad_value_type",
        "prompt_post_error_link_to_missing_node",
        "prompt_post_error_unknown_class_type",
        "prompt_post_error_missing_class_type",
        "prompt_post_error_no_outputs",
        "prompt_post_error_no_prompt",
    ],
)
def test_rejections_match_recording(fake_comfyui: FakeComfyUI, fixture: str) -> None:
    exchange = recorded(fixture)
    response = httpx.post(
        fake_comfyui.url + "/prompt", json=exchange["request"]["json"]
    )
    assert response.status_code == exchange["response"]["status"]
    assert sorted_errors(response.json()) == sorted_errors(exchange["response"]["json"])


def test_rejected_posts_advance_counter(fake_comfyui: FakeComfyUI) -> None:
    bad = recorded("prompt_post_error_no_outputs")["request"]["json"]
    good = recorded("prompt_post_ok")["request"]["json"]
    httpx.post(fake_comfyui.url + "/prompt", json=bad)
    httpx.post(fake_comfyui.url + "/prompt", json=bad)
    answer = httpx.post(fake_comfyui.url + "/prompt", json=good).json()
    assert answer["number"] == 2
    assert answer["node_errors"] == {}


async def test_job_messages_match_recording(fake_comfyui: FakeComfyUI) -> None:
    request = recorded("prompt_post_ok")["request"]["json"]
    url = f"ws://127.0.0.1:{fake_comfyui.port}/ws?clientId={request['client_id']}"
    types = []
    async with websockets.connect(url) as socket:
        types.append(json.loads(await socket.recv())["type"])
        async with httpx.AsyncClient(base_url=fake_comfyui.url) as client:
            prompt_id = (await client.post("/prompt", json=request)).json()["prompt_id"]
            while True:
                message = json.loads(await socket.recv())
                types.append(message["type"])
                if message["type"] == "executing" and message["data"]["node"] is None:
                    break
            entry = (await client.get(f"/history/{prompt_id}")).json()[prompt_id]

    assert types == recorded_ws_types("job_basic")
    expected = recorded("history_by_id_ok")["response"]["json"]
    expected_entry = next(iter(expected.values()))
    assert entry.keys() == expected_entry.keys()
    assert entry["outputs"] == expected_entry["outputs"]
    assert entry["prompt"][3] == expected_entry["prompt"][3]
    assert [m[0] for m in entry["status"]["messages"]] == [
        m[0] for m in expected_entry["status"]["messages"]
    ]


def test_system_stats_and_queue_shapes(fake_comfyui: FakeComfyUI) -> None:
    stats = httpx.get(fake_comfyui.url + "/system_stats").json()
    assert stats == recorded("system_stats")["response"]["json"]
    queue = httpx.get(fake_comfyui.url + "/queue").json()
    assert queue == recorded("queue_empty")["response"]["json"]
