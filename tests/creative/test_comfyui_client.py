"""The ComfyUI client against the fake server and the recorded responses."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path

import httpx
import pytest

from palais.creative.comfyui import (
    ComfyUIClient,
    ComfyUIError,
    ComfyUIRejected,
    ComfyUIUnavailable,
    rejection,
    websocket_url,
)
from tests.conftest import DATA
from tests.fakes.comfyui import FakeComfyUI

HTTP = DATA / "comfyui" / "http"
SOLID = {
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 255},
    },
    "2": {
        "class_type": "SaveImage",
        "inputs": {"images": ["1", 0], "filename_prefix": "palais/unit"},
    },
}


def recorded(name: str) -> dict:
    return json.loads((HTTP / f"{name}.json").read_text())


async def test_queue_pending_sorted_by_number(fake_comfyui: FakeComfyUI) -> None:
    fake_comfyui.pause()
    async with ComfyUIClient(fake_comfyui.url) as client:
        for _ in range(4):
            await client.submit(SOLID, client_id="unit")
        queue = await client.queue()
    fake_comfyui.resume()

    numbers = [item.number for item in queue.pending]
    assert len(queue.running) == 1
    assert len(numbers) == 3
    assert numbers == sorted(numbers)


async def test_submit_passes_client_id_and_extra(fake_comfyui: FakeComfyUI) -> None:
    fake_comfyui.pause()
    async with ComfyUIClient(fake_comfyui.url) as client:
        answer = await client.submit(
            SOLID, client_id="unit", prompt_id="chosen-id", palais={"task_id": 7}
        )
        queue = await client.queue()
    fake_comfyui.resume()

    assert answer.prompt_id == "chosen-id"
    assert queue.running[0].prompt_id == "chosen-id"
    assert queue.running[0].task_id == 7
    assert queue.running[0].extra_data["client_id"] == "unit"


async def test_history_unknown_is_none(fake_comfyui: FakeComfyUI) -> None:
    async with ComfyUIClient(fake_comfyui.url) as client:
        assert await client.history("00000000-0000-0000-0000-000000000000") is None


async def test_recent_history_asks_max_items(fake_comfyui: FakeComfyUI) -> None:
    async with ComfyUIClient(fake_comfyui.url) as client:
        ids = [(await client.submit(SOLID, client_id="u")).prompt_id for _ in range(3)]
        for _ in range(200):
            if all([await client.history(prompt_id) for prompt_id in ids]):
                break
            await asyncio.sleep(0.02)
        recent = await client.recent_history(2)

    assert list(recent) == ids[1:]
    history_calls = [r for r in fake_comfyui.requests if r[1] == "/history"]
    assert history_calls == [("GET", "/history", "max_items=2")]


async def test_submit_rejected_names_node(fake_comfyui: FakeComfyUI) -> None:
    body = recorded("prompt_post_error_out_of_range")["request"]["json"]
    async with ComfyUIClient(fake_comfyui.url) as client:
        with pytest.raises(ComfyUIRejected) as caught:
            await client.submit(body["prompt"], client_id="unit")

    found = {(e.node_id, e.input_name, e.error_type) for e in caught.value.errors}
    assert found == {
        ("1", "batch_size", "value_bigger_than_max"),
        ("1", "width", "value_smaller_than_min"),
    }
    assert caught.value.error_type == "prompt_outputs_failed_validation"


@pytest.mark.parametrize(
    ("fixture", "node", "input_name"),
    [
        ("prompt_post_error_missing_input", "2", "images"),
        ("prompt_post_error_bad_value_type", "1", "width"),
        ("prompt_post_error_value_not_in_list", "2", "rotation"),
        ("prompt_post_error_link_type_mismatch", "3", "images"),
        ("prompt_post_error_link_to_missing_node", "2", None),
        ("prompt_post_error_unknown_class_type", None, None),
        ("prompt_post_error_no_outputs", None, None),
        ("prompt_post_error_no_prompt", None, None),
    ],
)
def test_rejection_reads_recorded_bodies(
    fixture: str, node: str | None, input_name: str | None
) -> None:
    body = recorded(fixture)["response"]["json"]
    error = rejection(body)

    assert error.error_type == body["error"]["type"]
    if node is None:
        assert error.errors == []
        assert body["error"]["message"] in error.message
    else:
        assert error.errors[0].node_id == node
        assert error.errors[0].input_name == input_name


def test_rejection_of_empty_or_odd_bodies() -> None:
    assert rejection(None).errors == []
    assert rejection({"error": "text", "node_errors": []}).errors == []
    odd = {"node_errors": {"5": {"errors": ["not an object", {"type": "x"}]}}}
    assert [e.node_id for e in rejection(odd).errors] == ["5"]


async def test_unreachable_server_raises_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with ComfyUIClient(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(ComfyUIUnavailable) as caught:
            await client.queue()
    assert "127.0.0.1" not in str(caught.value)


async def test_silent_server_times_out() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    thread = threading.Thread(
        target=lambda: accepted.append(listener.accept()[0]), daemon=True
    )
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        async with ComfyUIClient(url, timeout=httpx.Timeout(0.3)) as client:
            with pytest.raises(ComfyUIUnavailable, match="timed out"):
                await client.system_stats()
    finally:
        for connection in accepted:
            connection.close()
        listener.close()


async def test_server_error_is_unavailable(fake_comfyui: FakeComfyUI) -> None:
    async with httpx.AsyncClient(base_url=fake_comfyui.url) as raw:
        response = await raw.post("/prompt", content=b"not json")
    assert response.status_code == 500
    assert (
        response.text == recorded("prompt_post_error_invalid_json")["response"]["text"]
    )


@pytest.mark.parametrize(
    ("filename", "subfolder", "kind", "status"),
    [
        ("../../etc/passwd", "", "output", 400),
        ("/etc/passwd", "", "output", 400),
        ("passwd", "../../../../etc", "output", 403),
        ("passwd", "/etc", "output", 403),
        ("fixture_00001_.png", "palais", "secret", 400),
        ("does_not_exist_00001_.png", "palais", "output", 404),
    ],
)
async def test_view_refusals_raise(
    fake_comfyui: FakeComfyUI, filename: str, subfolder: str, kind: str, status: int
) -> None:
    async with ComfyUIClient(fake_comfyui.url) as client:
        with pytest.raises(ComfyUIError, match=f"HTTP {status}"):
            await client.download(filename, subfolder, kind)


async def test_download_returns_saved_file(
    fake_comfyui: FakeComfyUI, tmp_path: Path
) -> None:
    async with ComfyUIClient(fake_comfyui.url) as client:
        answer = await client.submit(SOLID, client_id="unit")
        entry = None
        for _ in range(200):
            entry = await client.history(answer.prompt_id)
            if entry:
                break
            await asyncio.sleep(0.02)
        image = entry["outputs"]["2"]["images"][0]
        download = await client.download(
            image["filename"], image["subfolder"], image["type"]
        )
    saved = fake_comfyui.output_dir / "palais" / image["filename"]
    assert download.content == saved.read_bytes()
    assert download.content_type == "image/png"


async def test_interrupt_and_delete_send_bodies(fake_comfyui: FakeComfyUI) -> None:
    fake_comfyui.pause()
    async with ComfyUIClient(fake_comfyui.url) as client:
        first = await client.submit(SOLID, client_id="unit")
        second = await client.submit(SOLID, client_id="unit")
        await client.delete_from_queue([second.prompt_id, "unknown-id"])
        pending = (await client.queue()).pending
        await client.interrupt(first.prompt_id)
        for _ in range(200):
            if await client.history(first.prompt_id):
                break
            await asyncio.sleep(0.02)
        entry = await client.history(first.prompt_id)
    fake_comfyui.resume()

    assert pending == []
    last_message = entry["status"]["messages"][-1][0]
    assert last_message == "execution_interrupted"


def test_websocket_url_keeps_path_and_scheme() -> None:
    assert websocket_url("http://h:8188", "abc") == "ws://h:8188/ws?clientId=abc"
    assert websocket_url("https://h/comfy/", "abc") == "wss://h/comfy/ws?clientId=abc"
