"""Output files of jobs: safe local copies, thumbnails and the gallery query.

Files are stored under ``<data dir>/deliverables/creative/job-<id>/`` with a
name derived from ComfyUI's, which may contain unicode, spaces, dots and path
separators: :func:`safe_filename` keeps it inside that folder.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import math
import mimetypes
import os
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from palais.db.models import CreativeAsset, CreativeJob
from palais.db.upsert import insert_for

log = logging.getLogger(__name__)

CREATIVE_DIR = Path("deliverables") / "creative"
THUMBNAIL_DIR = Path("thumbnails")
THUMBNAIL_SIZE = (256, 256)
PAGE_SIZE = 24
MAX_NAME_CHARS = 120
# Letters, digits and marks of any script, plus a few punctuation marks.
UNSAFE_CHARS = re.compile(r"[^\w .()+-]", re.UNICODE)


def safe_filename(name: str, fallback: str = "image.png") -> str:
    """Turn an untrusted file name into one plain name with no directory part."""
    name = unicodedata.normalize("NFC", name)
    name = name.replace("/", "_").replace("\\", "_").replace("\x00", "")
    name = UNSAFE_CHARS.sub("_", name)
    # Leading dots would make hidden files or "..", trailing ones vanish on Windows.
    name = name.strip(" .")
    if not name:
        return fallback
    stem, dot, suffix = name.rpartition(".")
    if dot and len(suffix) <= 10:
        return stem[: MAX_NAME_CHARS - len(suffix) - 1] + "." + suffix
    return name[:MAX_NAME_CHARS]


def output_key(ref: dict[str, Any]) -> str:
    raw = "\x00".join(
        [ref["node_id"], ref.get("type", "output"), ref["subfolder"], ref["filename"]]
    )
    return hashlib.sha256(raw.encode()).hexdigest()


def inside(base: Path, path: Path) -> bool:
    base, path = base.resolve(), path.resolve()
    return os.path.commonpath([base, path]) == str(base)


@dataclass(frozen=True)
class StoredFile:
    relative: str
    filename: str
    mime: str
    size: int
    sha256: str


def write_output_file(
    data_dir: Path, job_id: int, index: int, comfy_name: str, content: bytes
) -> StoredFile:
    """Write a downloaded output under the creative folder (atomic rename)."""
    base = data_dir / CREATIVE_DIR
    filename = safe_filename(comfy_name)
    relative = CREATIVE_DIR / f"job-{job_id}" / f"{index:03d}-{filename}"
    path = data_dir / relative
    if not inside(base, path):
        raise ValueError(f"output name {comfy_name!r} would leave the folder")

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(content)
    os.replace(partial, path)
    mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return StoredFile(
        relative=relative.as_posix(),
        filename=filename,
        mime=mime,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
    )


async def insert_asset(
    session: AsyncSession,
    job: CreativeJob,
    ref: dict[str, Any],
    stored: StoredFile,
    created_at: datetime,
) -> bool:
    """Insert the asset unless that output is already stored; True if inserted."""
    table = CreativeAsset.__table__
    statement = (
        insert_for(session, table)
        .values(
            job_id=job.id,
            output_key=output_key(ref),
            node_id=ref["node_id"],
            comfy_filename=ref["filename"],
            comfy_subfolder=ref["subfolder"],
            comfy_type=ref.get("type", "output"),
            file=stored.relative,
            filename=stored.filename,
            mime=stored.mime,
            size=stored.size,
            sha256=stored.sha256,
            created_at=created_at,
        )
        .on_conflict_do_nothing(index_elements=["job_id", "output_key"])
    )
    result = await session.execute(statement)
    return result.rowcount == 1


def make_thumbnail(source: Path, target: Path) -> bool:
    """Write a WebP thumbnail; False when the source is not a readable image."""
    try:
        with Image.open(source) as image:
            image.thumbnail(THUMBNAIL_SIZE)
            if image.mode not in ("RGB", "RGBA"):
                image = image.convert("RGBA")
            buffer = io.BytesIO()
            image.save(buffer, format="WEBP", quality=80)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        log.warning("cannot make a thumbnail of %s: %s", source.name, exc)
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(buffer.getvalue())
    os.replace(partial, target)
    return True


def thumbnail_path(data_dir: Path, asset_id: int) -> Path:
    return data_dir / THUMBNAIL_DIR / f"{asset_id}.webp"


async def ensure_thumbnail(data_dir: Path, asset: CreativeAsset) -> Path | None:
    """Return the cached thumbnail, making it on first use (in a thread)."""
    target = thumbnail_path(data_dir, asset.id)
    if target.is_file():
        return target
    source = data_dir / asset.file
    if not inside(data_dir / CREATIVE_DIR, source) or not source.is_file():
        return None
    made = await asyncio.to_thread(make_thumbnail, source, target)
    return target if made else None


@dataclass(frozen=True)
class GalleryPage:
    rows: list[tuple[CreativeAsset, CreativeJob]]
    page: int
    pages: int
    total: int


async def gallery_page(
    session: AsyncSession,
    page: int,
    since: datetime | None = None,
    until: datetime | None = None,
    page_size: int = PAGE_SIZE,
) -> GalleryPage:
    """Return one page of assets, newest first; only that page is loaded."""
    conditions = []
    if since is not None:
        conditions.append(CreativeAsset.created_at >= since)
    if until is not None:
        conditions.append(CreativeAsset.created_at < until)

    total = await session.scalar(
        select(func.count()).select_from(CreativeAsset).where(*conditions)
    )
    pages = max(1, math.ceil((total or 0) / page_size))
    # The page's ids come from the (created_at, id) index alone. Only those
    # rows are joined to their jobs, so a deep page skips rows without joins.
    order = (CreativeAsset.created_at.desc(), CreativeAsset.id.desc())
    page_ids = (
        select(CreativeAsset.id)
        .where(*conditions)
        .order_by(*order)
        .limit(page_size)
        .offset((page - 1) * page_size)
        .subquery()
    )
    result = await session.execute(
        select(CreativeAsset, CreativeJob)
        .join(page_ids, page_ids.c.id == CreativeAsset.id)
        .join(CreativeJob, CreativeJob.id == CreativeAsset.job_id)
        .order_by(*order)
    )
    rows = [(asset, job) for asset, job in result.all()]
    return GalleryPage(rows=rows, page=page, pages=pages, total=total or 0)
