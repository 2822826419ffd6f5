"""The /creative page and its cookie + CSRF actions."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from palais.app import create_app
from palais.config import Settings
from palais.creative.watcher import JobWatcher
from tests.conftest import AUTH, TOKEN, count_rows
from tests.creative.conftest import TEMPLATES, RunningWatcher, wait_until
from tests.fakes.comfyui import FakeComfyUI
from tests.web.conftest import ADMIN_PASSWORD, csrf_from, log_in


@pytest.fixture
def page_client(
    settings_factory: Callable[..., Settings], fake_comfyui: FakeComfyUI
) -> Iterator[TestClient]:
    settings = settings_factory(
        admin_password=ADMIN_PASSWORD,
        comfyui_url=fake_comfyui.url,
        comfyui_templates_dir=TEMPLATES,
    )
    with TestClient(create_app(settings, run_workers=False)) as client:
        yield client


@pytest.fixture
def page_watcher(page_client: TestClient) -> Iterator[JobWatcher]:
    running = RunningWatcher(page_client)
    wait_until(lambda: running.watcher.connected, what="watcher connected")
    yield running.watcher
    running.stop()


def logged_in(client: TestClient) -> str:
    assert log_in(client, next_url="/creative").status_code == 303
    page = client.get("/creative")
    assert page.status_code == 200
    return csrf_from(page.text)


def test_page_needs_login(page_client: TestClient) -> None:
    response = page_client.get("/creative", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
    fragment = page_client.get(
        "/creative/fragments/queue", headers={"HX-Request": "true"}
    )
    assert fragment.status_code == 401


def test_page_never_shows_token(page_client: TestClient) -> None:
    logged_in(page_client)
    for path in [
        "/creative",
        "/creative/fragments/queue",
        "/creative/fragments/gallery",
    ]:
        assert TOKEN not in page_client.get(path).text


def test_generate_needs_csrf(page_client: TestClient) -> None:
    logged_in(page_client)
    response = page_client.post(
        "/creative/generate", data={"text": "palais/x", "template": "solid"}
    )
    assert response.status_code == 403
    assert count_rows(page_client, "creative_jobs") == 0


def test_generate_from_page_then_gallery(
    page_client: TestClient, page_watcher: JobWatcher
) -> None:
    token = logged_in(page_client)
    response = page_client.post(
        "/creative/generate",
        data={
            "text": "palais/page",
            "template": "solid",
            "seed": "77",
            "csrf_token": token,
        },
    )
    assert response.status_code == 200
    assert (
        'data-testid="running-job"' in response.text or "pending-job" in response.text
    )

    def in_gallery() -> bool:
        return 'data-testid="gallery-item"' in page_client.get("/creative").text

    wait_until(in_gallery, what="image in the gallery")
    page = page_client.get("/creative").text
    asset_id = re.search(r'data-asset-id="(\d+)"', page).group(1)
    detail = page_client.get(f"/creative/assets/{asset_id}")
    assert "palais/page" in detail.text
    assert ">77<" in detail.text
    thumb = page_client.get(f"/creative/assets/{asset_id}/thumbnail")
    assert thumb.status_code == 200


def test_generate_error_shown_in_place(page_client: TestClient) -> None:
    token = logged_in(page_client)
    response = page_client.post(
        "/creative/generate",
        data={
            "text": "x",
            "template": "solid",
            "seed": str(2**30),
            "csrf_token": token,
        },
    )
    assert response.status_code == 200
    assert 'data-testid="form-error"' in response.text
    assert "bigger than max" in response.text


def test_cancel_pending_from_page(
    page_client: TestClient, fake_comfyui: FakeComfyUI, page_watcher: JobWatcher
) -> None:
    token = logged_in(page_client)
    fake_comfyui.pause()
    for text in ("palais/one", "palais/two"):
        page_client.post(
            "/creative/generate",
            data={"text": text, "template": "solid", "seed": "1", "csrf_token": token},
        )
    jobs = page_client.get("/api/v1/creative/jobs", headers=AUTH).json()["jobs"]
    pending = next(job for job in jobs if job["text"] == "palais/two")
    wait_until(
        lambda: (
            'data-testid="pending-job"'
            in page_client.get("/creative/fragments/queue").text
        ),
        what="pending job shown",
    )
    response = page_client.post(
        f"/creative/jobs/{pending['prompt_id']}/cancel",
        headers={"X-CSRF-Token": token},
    )
    fake_comfyui.resume()
    assert response.status_code == 200
    job = page_client.get(
        f"/api/v1/creative/jobs/{pending['prompt_id']}", headers=AUTH
    ).json()["job"]
    assert job["status"] == "deleted"


def test_attach_from_page(page_client: TestClient, page_watcher: JobWatcher) -> None:
    token = logged_in(page_client)
    page_client.post(
        "/creative/generate",
        data={
            "text": "palais/att",
            "template": "solid",
            "seed": "5",
            "csrf_token": token,
        },
    )
    wait_until(
        lambda: "data-asset-id" in page_client.get("/creative/fragments/gallery").text,
        what="asset",
    )
    gallery = page_client.get("/creative/fragments/gallery").text
    asset_id = re.search(r'data-asset-id="(\d+)"', gallery).group(1)

    missing = page_client.post(
        f"/creative/assets/{asset_id}/attach", data={"csrf_token": token}
    )
    assert 'data-testid="attach-error"' in missing.text

    created = page_client.post(
        f"/creative/assets/{asset_id}/attach",
        data={"csrf_token": token, "new_task": "Cover art"},
    )
    assert "Attached to task #1" in created.text
    link = re.search(r'href="(/dl/[^"]+)"', created.text).group(1)
    page_client.cookies.clear()
    download = page_client.get(link)
    assert download.status_code == 200
    assert download.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_unreachable_page_still_shows_jobs(
    page_client: TestClient, fake_comfyui: FakeComfyUI, page_watcher: JobWatcher
) -> None:
    token = logged_in(page_client)
    page_client.post(
        "/creative/generate",
        data={
            "text": "palais/kept",
            "template": "solid",
            "seed": "3",
            "csrf_token": token,
        },
    )
    wait_until(
        lambda: "data-asset-id" in page_client.get("/creative/fragments/gallery").text,
        what="asset",
    )
    fake_comfyui.stop()
    wait_until(
        lambda: "unreachable" in page_client.get("/creative").text, what="banner"
    )
    page = page_client.get("/creative").text
    assert 'data-testid="comfyui-status"' in page
    assert "palais/kept" in page
    assert 'data-testid="gallery-item"' in page


def test_actions_need_csrf(page_client: TestClient) -> None:
    logged_in(page_client)
    cancel = page_client.post("/creative/jobs/some-id/cancel")
    attach = page_client.post("/creative/assets/1/attach", data={"new_task": "x"})
    assert cancel.status_code == 403
    assert attach.status_code == 403
    assert count_rows(page_client, "tasks") == 0


def test_job_text_is_escaped(page_client: TestClient, page_watcher: JobWatcher) -> None:
    token = logged_in(page_client)
    text = '<img src=x onerror="alert(1)">'
    page_client.post(
        "/creative/generate",
        data={"text": text, "template": "solid", "seed": "4", "csrf_token": token},
    )
    wait_until(
        lambda: "finished-job" in page_client.get("/creative/fragments/queue").text,
        what="finished job",
    )
    page = page_client.get("/creative").text
    assert text not in page
    assert "&lt;img src=x onerror=" in page


@pytest.mark.parametrize(
    "form",
    [
        {"task_id": "\u00b2"},
        {"task_id": "99999999999999999999"},
        {"task_id": "1" * 5000},
        {"task_id": "-1"},
    ],
)
def test_attach_bad_task_id(page_client: TestClient, form: dict) -> None:
    token = logged_in(page_client)
    response = page_client.post(
        "/creative/assets/1/attach", data={"csrf_token": token, **form}
    )
    assert response.status_code == 200, response.text
    assert 'data-testid="attach-error"' in response.text


def test_attach_huge_asset_id(page_client: TestClient) -> None:
    token = logged_in(page_client)
    response = page_client.post(
        "/creative/assets/99999999999999999999/attach",
        data={"csrf_token": token, "task_id": "1"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "asset_id"


def test_attach_unknown_asset_creates_no_task(page_client: TestClient) -> None:
    token = logged_in(page_client)
    response = page_client.post(
        "/creative/assets/999/attach",
        data={"csrf_token": token, "new_task": "Orphan"},
    )
    assert 'data-testid="attach-error"' in response.text
    assert "asset not found: 999" in response.text
    assert count_rows(page_client, "tasks") == 0


@pytest.mark.parametrize(
    "path",
    [
        "/creative?page=99999999999999999999",
        "/creative/fragments/gallery?page=99999999999999999999",
        "/creative/assets/99999999999999999999",
    ],
)
def test_page_huge_numbers(page_client: TestClient, path: str) -> None:
    logged_in(page_client)
    response = page_client.get(path)
    assert response.status_code in (200, 404, 422), response.text
