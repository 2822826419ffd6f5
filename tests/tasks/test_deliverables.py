"""Tasks, auto-attached deliverables and downloads by token."""

from __future__ import annotations

import asyncio
import hashlib
import unicodedata
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from palais.creative import studio as service
from palais.creative.gallery import safe_filename, write_output_file
from palais.creative.watcher import JobWatcher
from tests.conftest import count_rows
from tests.creative.conftest import wait_for_status, wait_until
from tests.fakes.comfyui import FakeComfyUI

GENERATE = "/api/v1/creative/comfyui/generate"


def new_task(client: TestClient, title: str = "poster") -> dict:
    response = client.post("/api/v1/tasks", json={"title": title})
    assert response.status_code == 201, response.text
    return response.json()


def generate_for(client: TestClient, task_id: int, text: str, **extra) -> str:  # noqa: ANN003
    body = {"text": text, "template": "solid", "seed": 11, "task_id": task_id}
    body.update(extra)
    response = client.post(GENERATE, json=body)
    assert response.status_code == 202, response.text
    return response.json()["job"]["prompt_id"]


def test_create_and_read_task(studio_client: TestClient) -> None:
    task = new_task(studio_client, "  Launch video  ")
    assert task["title"] == "Launch video"
    assert task["status"] == "open"
    assert task["deliverables"] == []
    read = studio_client.get(f"/api/v1/tasks/{task['id']}").json()
    assert read["id"] == task["id"]
    assert read["created_at"].endswith("Z")


@pytest.mark.parametrize(
    "body", [{}, {"title": ""}, {"title": 5}, {"title": "x" * 201}, {"title": None}]
)
def test_task_title_validated(studio_client: TestClient, body: dict) -> None:
    response = studio_client.post("/api/v1/tasks", json=body)
    assert response.status_code == 422
    assert response.json()["field"] == "title"
    assert count_rows(studio_client, "tasks") == 0


def test_unknown_task_404(studio_client: TestClient) -> None:
    response = studio_client.get("/api/v1/tasks/999")
    assert response.status_code == 404
    assert set(response.json()) == {"error", "field", "value", "accepted"}


def test_auto_attach_and_download(
    studio_client: TestClient, fake_comfyui: FakeComfyUI, watcher: JobWatcher
) -> None:
    task = new_task(studio_client)
    prompt_id = generate_for(studio_client, task["id"], "palais/poster")
    wait_for_status(studio_client, prompt_id, "success")

    def deliverables() -> list:
        return studio_client.get(f"/api/v1/tasks/{task['id']}").json()["deliverables"]

    [item] = wait_until(deliverables, what="deliverable")
    original = (fake_comfyui.output_dir / "palais" / "poster_00001_.png").read_bytes()
    assert item["filename"] == "poster_00001_.png"
    assert item["mime"] == "image/png"
    assert item["size"] == len(original)
    assert item["sha256"] == hashlib.sha256(original).hexdigest()
    assert item["source"] == "comfyui"
    assert len(item["download_token"]) >= 22  # at least 128 bits in base64
    assert item["download_url"] == f"/dl/{item['download_token']}"
    assert item["provenance"]["prompt_id"] == prompt_id
    assert item["provenance"]["text"] == "palais/poster"
    assert item["provenance"]["seed"] == 11
    assert item["provenance"]["workflow"]["1"]["inputs"]["color"] == 11

    download = studio_client.get(item["download_url"], headers={"Authorization": ""})
    assert download.status_code == 200
    assert download.content == original
    assert 'filename="poster_00001_.png"' in download.headers["content-disposition"]


def test_unknown_token_404_without_path(studio_client: TestClient) -> None:
    for token in ["nope", "A" * 43, "../../etc/passwd", "x" * 500]:
        response = studio_client.get(f"/dl/{token}", headers={"Authorization": ""})
        assert response.status_code == 404, token
        assert "deliverables" not in response.text
        assert "/tmp" not in response.text


def test_completion_seen_twice_attaches_once(
    studio_client: TestClient, fake_comfyui: FakeComfyUI, watcher: JobWatcher
) -> None:
    task = new_task(studio_client)
    prompt_id = generate_for(studio_client, task["id"], "palais/twice")
    wait_for_status(studio_client, prompt_id, "success")
    entry = httpx.get(f"{fake_comfyui.url}/history/{prompt_id}").json()[prompt_id]
    studio = studio_client.app.state.studio

    async def finish_again() -> None:
        await asyncio.gather(
            *(service.finish(studio, prompt_id, entry) for _ in range(3))
        )
        await service.store_outputs(studio, prompt_id)

    studio_client.portal.call(finish_again)
    assert count_rows(studio_client, "creative_assets") == 1
    assert count_rows(studio_client, "deliverables") == 1


def test_unsafe_output_names_stay_inside(
    studio_client: TestClient, fake_comfyui: FakeComfyUI, watcher: JobWatcher
) -> None:
    task = new_task(studio_client)
    text = "sous dossier/../été ñ . . nom/ünï cödé. .x"
    prompt_id = generate_for(studio_client, task["id"], text)
    job = wait_for_status(studio_client, prompt_id, "success")
    [asset] = job["outputs"]
    assert "/" not in asset["filename"]
    assert not asset["filename"].startswith(".")

    data_dir = studio_client.app.state.settings.data_dir.resolve()
    creative = data_dir / "deliverables" / "creative"
    files = [path for path in creative.rglob("*") if path.is_file()]
    assert len(files) == 1
    assert files[0].resolve().is_relative_to(creative)
    assert files[0].name.endswith(asset["filename"])


def test_output_refused_by_view_is_skipped(
    studio_client: TestClient, watcher: JobWatcher
) -> None:
    # ComfyUI saves "..x_00001_.png" but its /view rejects any name with "..".
    task = new_task(studio_client)
    prompt_id = generate_for(studio_client, task["id"], "palais/..x")
    wait_for_status(studio_client, prompt_id, "success")

    def refused() -> dict | None:
        job = studio_client.get(f"/api/v1/creative/jobs/{prompt_id}").json()["job"]
        return job if job["error"] else None

    job = wait_until(refused, what="refusal recorded")
    assert "not downloaded" in job["error"]
    assert "HTTP 400" in job["error"]
    assert job["outputs"] == []
    assert count_rows(studio_client, "deliverables") == 0


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "..",
        ".",
        "/abs/name.png",
        "a\\..\\b.png",
        "nul\x00byte.png",
        "",
        "   ",
        "x" * 400 + ".png",
        "café crème.png",
        "ｆｕｌｌ.png",
        "a:b*c?.png",
    ],
)
def test_safe_filename_cases(name: str, tmp_path: Path) -> None:
    safe = safe_filename(name)
    assert safe
    assert "/" not in safe
    assert "\\" not in safe
    assert "\x00" not in safe
    assert safe not in (".", "..")
    assert not safe.startswith(".")
    assert len(safe) <= 120
    assert safe == unicodedata.normalize("NFC", safe)

    stored = write_output_file(tmp_path, 1, 0, name, b"data")
    path = (tmp_path / stored.relative).resolve()
    assert path.is_relative_to((tmp_path / "deliverables" / "creative").resolve())
    assert path.read_bytes() == b"data"


def test_safe_filename_keeps_unicode() -> None:
    assert safe_filename("café crème_00001_.png") == "café crème_00001_.png"


def test_manual_attach_201_then_200(
    studio_client: TestClient, watcher: JobWatcher
) -> None:
    prompt_id = studio_client.post(
        GENERATE, json={"text": "palais/free", "template": "solid", "seed": 2}
    ).json()["job"]["prompt_id"]
    job = wait_for_status(studio_client, prompt_id, "success")
    asset_id = job["outputs"][0]["id"]
    task = new_task(studio_client)
    path = f"/api/v1/tasks/{task['id']}/deliverables"

    first = studio_client.post(path, json={"asset_id": asset_id})
    second = studio_client.post(path, json={"asset_id": str(asset_id)})
    assert first.status_code == 201, first.text
    assert second.status_code == 200
    assert first.json()["download_token"] == second.json()["download_token"]
    assert first.json()["provenance"]["text"] == "palais/free"

    other = new_task(studio_client, "other")
    third = studio_client.post(
        f"/api/v1/tasks/{other['id']}/deliverables", json={"asset_id": asset_id}
    )
    assert third.status_code == 201
    assert third.json()["download_token"] != first.json()["download_token"]


def test_manual_attach_errors(studio_client: TestClient) -> None:
    task = new_task(studio_client)
    path = f"/api/v1/tasks/{task['id']}/deliverables"
    assert studio_client.post(path, json={"asset_id": 12345}).status_code == 404
    assert studio_client.post(path, json={"asset_id": "x"}).status_code == 422
    assert studio_client.post(path, json={}).status_code == 422
    assert studio_client.post(path, content=b"[").status_code == 400
    missing_task = studio_client.post(
        "/api/v1/tasks/999/deliverables", json={"asset_id": 1}
    )
    assert missing_task.status_code == 404
    assert count_rows(studio_client, "deliverables") == 0


HUGE_ID = "99999999999999999999"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/api/v1/tasks/{HUGE_ID}"),
        ("POST", f"/api/v1/tasks/{HUGE_ID}/deliverables"),
        ("GET", "/api/v1/tasks/0"),
        ("GET", f"/creative/assets/{HUGE_ID}/thumbnail"),
    ],
)
def test_huge_path_id_rejected(
    studio_client: TestClient, method: str, path: str
) -> None:
    response = studio_client.request(method, path, json={"asset_id": 1})
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"error", "field", "value", "accepted"}
    assert body["field"] in ("task_id", "asset_id")


@pytest.mark.parametrize("sent", [{}, {"seed": 5}])
def test_template_without_seed_input(
    studio_client: TestClient, watcher: JobWatcher, sent: dict
) -> None:
    task = new_task(studio_client)
    body = {"text": "palais/noseed", "template": "slow", "task_id": task["id"]}
    response = studio_client.post(GENERATE, json={**body, **sent})
    assert response.status_code == 202, response.text
    job = response.json()["job"]
    assert job["seed"] is None
    wait_for_status(studio_client, job["prompt_id"], "success")

    def deliverables() -> list:
        return studio_client.get(f"/api/v1/tasks/{task['id']}").json()["deliverables"]

    items = wait_until(deliverables, what="deliverables")
    assert items
    for item in items:
        assert item["provenance"]["seed"] is None


def test_repeated_output_written_once(
    studio_client: TestClient, fake_comfyui: FakeComfyUI, watcher: JobWatcher
) -> None:
    fake_comfyui.repeat_output_images = True
    task = new_task(studio_client)
    prompt_id = generate_for(studio_client, task["id"], "palais/repeat")
    wait_for_status(studio_client, prompt_id, "success")

    def deliverables() -> list:
        return studio_client.get(f"/api/v1/tasks/{task['id']}").json()["deliverables"]

    [item] = wait_until(deliverables, what="deliverable")
    assert item["filename"] == "repeat_00001_.png"
    creative = studio_client.app.state.settings.data_dir / "deliverables" / "creative"
    files = [path.name for path in creative.rglob("*") if path.is_file()]
    assert files == ["000-repeat_00001_.png"]
    assert count_rows(studio_client, "creative_assets") == 1


def test_non_latin1_output_name(
    studio_client: TestClient, fake_comfyui: FakeComfyUI, watcher: JobWatcher
) -> None:
    task = new_task(studio_client)
    prompt_id = generate_for(studio_client, task["id"], "palais/雪 łódź")
    wait_for_status(studio_client, prompt_id, "success")

    def deliverables() -> list:
        return studio_client.get(f"/api/v1/tasks/{task['id']}").json()["deliverables"]

    [item] = wait_until(deliverables, what="deliverable")
    assert item["filename"] == "雪 łódź_00001_.png"
    original = fake_comfyui.output_dir / "palais" / "雪 łódź_00001_.png"
    assert item["sha256"] == hashlib.sha256(original.read_bytes()).hexdigest()
    view = httpx.get(
        f"{fake_comfyui.url}/view",
        params={"filename": "雪 łódź_00001_.png", "subfolder": "palais"},
    )
    assert view.status_code == 200
    assert "filename*=UTF-8''" in view.headers["content-disposition"]
