"""Gallery paging, date filters, asset files and cached thumbnails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from palais.creative.gallery import PAGE_SIZE
from palais.db.models import CreativeAsset, CreativeJob
from tests.conftest import run_in_app


def add_assets(client: TestClient, count: int, start: datetime) -> None:
    """Store jobs with one small PNG each, one hour apart."""
    data_dir = client.app.state.settings.data_dir
    folder = data_dir / "deliverables" / "creative" / "seeded"
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (300, 200), (10, 200, 30)).save(folder / "seed.png")
    size = (folder / "seed.png").stat().st_size

    async def insert(session) -> None:  # noqa: ANN001
        for index in range(count):
            when = start + timedelta(hours=index)
            job = CreativeJob(
                prompt_id=f"seeded-{index}",
                status="success",
                progress=1.0,
                text=f"image {index}",
                seed=index,
                workflow={},
                submitted_at=when,
                finished_at=when,
                updated_at=when,
                outputs_stored=True,
            )
            session.add(job)
            await session.flush()
            session.add(
                CreativeAsset(
                    job_id=job.id,
                    output_key=f"{index:064d}",
                    node_id="2",
                    comfy_filename=f"img_{index:05}_.png",
                    comfy_subfolder="",
                    comfy_type="output",
                    file="deliverables/creative/seeded/seed.png",
                    filename=f"img_{index:05}_.png",
                    mime="image/png",
                    size=size,
                    sha256="0" * 64,
                    created_at=when,
                )
            )
        await session.commit()

    run_in_app(client, insert)


START = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)


def test_gallery_pages_newest_first(studio_client: TestClient) -> None:
    add_assets(studio_client, PAGE_SIZE + 5, START)
    first = studio_client.get("/api/v1/creative/gallery").json()
    second = studio_client.get("/api/v1/creative/gallery?page=2").json()

    assert first["page"] == 1
    assert first["pages"] == 2
    assert len(first["assets"]) == PAGE_SIZE
    assert len(second["assets"]) == 5
    assert first["assets"][0]["text"] == f"image {PAGE_SIZE + 4}"
    assert second["assets"][-1]["text"] == "image 0"
    asset = first["assets"][0]
    assert set(asset) >= {
        "id",
        "prompt_id",
        "filename",
        "url",
        "thumbnail_url",
        "text",
        "seed",
        "created_at",
    }
    empty = studio_client.get("/api/v1/creative/gallery?page=9").json()
    assert empty["assets"] == []


def test_gallery_date_filters(studio_client: TestClient) -> None:
    add_assets(studio_client, 30, START)  # 2026-11-01 00:00 to 11-02 05:00
    day = studio_client.get(
        "/api/v1/creative/gallery?since=2026-11-02&until=2026-11-02"
    ).json()
    assert len(day["assets"]) == 6
    window = studio_client.get(
        "/api/v1/creative/gallery",
        params={"since": "2026-11-01T10:00:00Z", "until": "2026-11-01T12:00:00Z"},
    ).json()
    assert [a["text"] for a in window["assets"]] == ["image 11", "image 10"]


@pytest.mark.parametrize(
    "query",
    [
        "page=0",
        "page=abc",
        "page=1.5",
        "since=yesterday",
        "until=2026-13-01",
        "until=9999-12-31",
        "page=99999999999999999999",
    ],
)
def test_gallery_rejects_bad_query(studio_client: TestClient, query: str) -> None:
    response = studio_client.get(f"/api/v1/creative/gallery?{query}")
    assert response.status_code == 422, response.text
    assert set(response.json()) == {"error", "field", "value", "accepted"}


def test_thumbnail_made_once(studio_client: TestClient) -> None:
    add_assets(studio_client, 1, START)
    asset = studio_client.get("/api/v1/creative/gallery").json()["assets"][0]
    first = studio_client.get(asset["thumbnail_url"])
    assert first.status_code == 200
    assert first.headers["content-type"] == "image/webp"

    data_dir = studio_client.app.state.settings.data_dir
    thumbnail = data_dir / "thumbnails" / f"{asset['id']}.webp"
    made_at = thumbnail.stat().st_mtime_ns
    second = studio_client.get(asset["thumbnail_url"])
    assert second.content == first.content
    assert thumbnail.stat().st_mtime_ns == made_at
    with Image.open(thumbnail) as image:
        assert max(image.size) <= 256

    full = studio_client.get(asset["url"])
    assert full.status_code == 200
    assert full.headers["content-type"] == "image/png"


def test_asset_files_missing(studio_client: TestClient) -> None:
    assert studio_client.get("/creative/assets/999/image").status_code == 404
    assert studio_client.get("/creative/assets/999/thumbnail").status_code == 404
    anonymous = studio_client.get(
        "/creative/assets/1/image", headers={"Authorization": ""}
    )
    assert anonymous.status_code == 401


def test_non_raster_output_downloads(studio_client: TestClient) -> None:
    add_assets(studio_client, 2, datetime(2026, 1, 1, tzinfo=UTC))
    data_dir = studio_client.app.state.settings.data_dir
    page = data_dir / "deliverables" / "creative" / "seeded" / "evil.html"
    page.write_text("<script>alert(document.cookie)</script>")

    async def make_html(session) -> int:  # noqa: ANN001
        asset = await session.get(CreativeAsset, 2)
        asset.file = "deliverables/creative/seeded/evil.html"
        asset.filename = "evil.html"
        asset.mime = "text/html"
        await session.commit()
        return asset.id

    asset_id = run_in_app(studio_client, make_html)
    html = studio_client.get(f"/creative/assets/{asset_id}/image")
    png = studio_client.get("/creative/assets/1/image")

    assert html.status_code == 200
    assert html.headers["content-type"] == "application/octet-stream"
    assert html.headers["content-disposition"].startswith("attachment")
    assert html.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in html.headers["content-security-policy"]
    assert png.headers["content-type"] == "image/png"
    assert png.headers["content-disposition"].startswith("inline")


def test_huge_asset_id_is_422(studio_client: TestClient) -> None:
    response = studio_client.get("/creative/assets/99999999999999999999/image")

    assert response.status_code == 422
    assert response.json()["field"] == "asset_id"
