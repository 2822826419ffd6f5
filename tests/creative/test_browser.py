"""The /creative page in real headless Chromium against the fake ComfyUI.

Chromium comes from the system (Debian package chromium, or the path in
PALAIS_TEST_CHROMIUM); the tests never download a browser.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.browser import ARTIFACTS, chromium_page, requires_chromium
from tests.conftest import AUTH, TOKEN, ServerProcess
from tests.creative.conftest import TEMPLATES
from tests.fakes.comfyui import FakeComfyUI
from tests.web.conftest import ADMIN_PASSWORD

pytestmark = requires_chromium


@pytest.fixture
def browser_page():  # noqa: ANN201
    with chromium_page(height=1600) as page:
        yield page


@pytest.fixture
def server(
    server_factory: Callable[..., ServerProcess], fake_comfyui: FakeComfyUI
) -> Iterator[ServerProcess]:
    server = server_factory(
        PALAIS_ADMIN_PASSWORD=ADMIN_PASSWORD,
        PALAIS_COMFYUI_URL=fake_comfyui.url,
        PALAIS_COMFYUI_TEMPLATES_DIR=str(TEMPLATES),
    )
    server.start()
    yield server
    server.stop()


def progress_values(page, seconds: float) -> list[int]:  # noqa: ANN001
    """Sample the running job's progress bar for a while."""
    values: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        bar = page.locator("[data-testid=running-job] [data-testid=progress]")
        if bar.count():
            try:
                values.append(
                    int(bar.first.get_attribute("aria-valuenow", timeout=500))
                )
            except Exception:  # the fragment was swapped between two calls
                pass
        if page.locator("[data-testid=finished-job]").count():
            break
        time.sleep(0.1)
    return values


def test_creative_page_in_chromium(
    server: ServerProcess,
    fake_comfyui: FakeComfyUI,
    browser_page,  # noqa: ANN001
) -> None:
    fake_comfyui.step_seconds = 0.6  # about 6 s of visible progress
    task = httpx.post(
        server.url + "/api/v1/tasks", json={"title": "Launch poster"}, headers=AUTH
    ).json()

    page = browser_page
    page.goto(server.url + "/creative")
    assert page.url.startswith(server.url + "/login")
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/creative")

    # Quick generate: the job appears at once, then its progress moves live.
    page.fill("[data-testid=generate-text]", "palais/aurore boréale")
    page.select_option("select[name=template]", "slow")
    page.click("[data-testid=generate-button]")
    page.wait_for_selector("[data-testid=running-job], [data-testid=pending-job]")
    page.wait_for_selector("[data-testid=running-job] .spinner", timeout=10_000)
    values = progress_values(page, 20)
    moving = sorted({value for value in values if 0 < value < 100})
    assert len(moving) >= 2, values

    # The finished image reaches the gallery.
    page.wait_for_selector("[data-testid=finished-job]", timeout=20_000)
    page.wait_for_selector("[data-testid=gallery-item]", timeout=20_000)
    assert page.locator("[data-testid=gallery-item]").count() == 2
    thumbnail = page.locator("[data-testid=gallery-item] img").first
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle()
    )

    # Open the full-size image, then attach it to the task.
    page.locator("[data-testid=gallery-item] a").first.click()
    page.wait_for_selector("[data-testid=full-image]")
    assert page.inner_text("[data-testid=asset-text]") == "palais/aurore boréale"
    page.select_option("[data-testid=attach-task]", str(task["id"]))
    page.click("[data-testid=attach-button]")
    page.wait_for_selector("[data-testid=download-link]")
    link = page.get_attribute("[data-testid=download-link]", "href")

    # The link works without any login or token.
    download = httpx.get(server.url + link, timeout=10)
    assert download.status_code == 200
    saved = sorted((fake_comfyui.output_dir / "palais").glob("aurore boréale_*.png"))
    assert download.content in [path.read_bytes() for path in saved]
    deliverables = httpx.get(
        f"{server.url}/api/v1/tasks/{task['id']}", headers=AUTH
    ).json()["deliverables"]
    assert link in [item["download_url"] for item in deliverables]

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "creative-asset.png"), full_page=True)
    page.goto(server.url + "/creative")
    page.wait_for_selector("[data-testid=gallery-item]")
    page.screenshot(path=str(ARTIFACTS / "creative.png"), full_page=True)
    assert TOKEN not in page.content()
