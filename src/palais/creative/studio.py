"""The creative studio's service: submit, cancel, finish and store jobs.

Routes and the watcher call these functions, which never see HTTP requests.
ComfyUI is reached through a new :class:`ComfyUIClient` per operation, so that
no connection outlives a request or a watcher step.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from palais.config import Settings
from palais.creative import gallery
from palais.creative.comfyui import (
    DEFAULT_TIMEOUT,
    ComfyUIClient,
    ComfyUIError,
    ComfyUIRejected,
    ComfyUIUnavailable,
    NodeError,
    parse_node_errors,
)
from palais.creative.jobs import (
    ACTIVE,
    MAX_ERROR_CHARS,
    Outcome,
    get_job,
    read_history_entry,
    set_status,
)
from palais.db.models import CreativeAsset, CreativeJob, Task
from palais.db.types import utcnow
from palais.errors import ApiError
from palais.tasks.service import attach_asset

log = logging.getLogger(__name__)

MAX_SEED = 2**53 - 1  # the largest integer a JSON client can send exactly
CONTACT_MAX_AGE = 5.0
PROBE_TIMEOUT = httpx.Timeout(2.0)
# Outputs that fail to download or to be written are tried this many times in
# all, waiting 5, 10, 20 and 40 s between tries with the default base delay.
MAX_OUTPUT_ATTEMPTS = 5
OUTPUT_RETRY_SECONDS = 5.0


@dataclass
class Studio:
    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    # The ComfyUI WebSocket client id. Jobs submitted here carry it, so ComfyUI
    # sends their events to the watcher's socket. The app derives one id for
    # every process that shares the session secret (see creative.setup).
    client_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    wake: asyncio.Event | None = None
    # Base delay before an output download is tried again, doubled each time.
    output_retry_seconds: float = OUTPUT_RETRY_SECONDS
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    # NOTE: kept in memory, so a restart gives each job its full count again.
    _output_retries: dict[str, OutputRetry] = field(default_factory=dict)
    _contact: Contact | None = None

    @property
    def configured(self) -> bool:
        return self.settings.comfyui_url is not None

    def client(self, timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> ComfyUIClient:
        if self.settings.comfyui_url is None:
            raise ApiError(
                503,
                "ComfyUI is not configured; set PALAIS_COMFYUI_URL",
                field="PALAIS_COMFYUI_URL",
            )
        return ComfyUIClient(self.settings.comfyui_url, timeout=timeout)

    def poke(self) -> None:
        """Ask the watcher to look at the jobs now instead of at its next tick."""
        if self.wake is not None:
            self.wake.set()

    def lock(self, prompt_id: str) -> asyncio.Lock:
        return self._locks.setdefault(prompt_id, asyncio.Lock())

    def note_contact(self, reachable: bool, error: str | None) -> None:
        """Remember the outcome of the latest call to ComfyUI, for the page."""
        self._contact = Contact(reachable, error, time.monotonic())

    async def reachability(self) -> Contact:
        """Return whether ComfyUI responded recently, probing at most every 5 s.

        The page calls this instead of ComfyUI itself, so rendering it never
        waits on a slow or absent server for more than one short probe.
        """
        contact = self._contact
        if not self.configured:
            return Contact(False, "ComfyUI is not configured", time.monotonic())
        if contact is not None and time.monotonic() - contact.at < CONTACT_MAX_AGE:
            return contact
        client = ComfyUIClient(self.settings.comfyui_url or "", timeout=PROBE_TIMEOUT)
        async with client:
            try:
                await client.queue_remaining()
                self.note_contact(True, None)
            except ComfyUIError as exc:
                self.note_contact(False, str(exc))
        assert self._contact is not None
        return self._contact


@dataclass
class OutputRetry:
    """Failed attempts to store a job's outputs, and when to try again."""

    attempts: int = 0
    next_at: float = 0.0  # time.monotonic() seconds


class OutputNotStored(Exception):
    """An output could not be downloaded from ComfyUI or written to disk."""

    def __init__(self, filename: str, cause: Exception) -> None:
        failed = "downloaded" if isinstance(cause, ComfyUIError) else "stored"
        super().__init__(f"output {filename!r} could not be {failed}: {cause}")


@dataclass(frozen=True)
class Contact:
    reachable: bool
    error: str | None
    at: float


@dataclass(frozen=True)
class NewJob:
    workflow: dict[str, Any]
    text: str | None
    seed: int | None
    template: str | None
    task_id: int | None


async def submit(studio: Studio, new: NewJob) -> CreativeJob:
    """Post the workflow to ComfyUI, then store the job.

    The job row is written only after ComfyUI accepted the workflow, so a
    rejected or failed submission leaves nothing behind.
    """
    prompt_id = str(uuid.uuid4())
    palais = {"task_id": new.task_id, "text": new.text, "seed": new.seed}
    async with studio.client() as client:
        try:
            answer = await client.submit(
                new.workflow,
                client_id=studio.client_id,
                prompt_id=prompt_id,
                palais=palais,
            )
        except ComfyUIRejected as exc:
            raise rejected_error(exc) from None
        except ComfyUIUnavailable as exc:
            raise unavailable_error(exc) from None
        except ComfyUIError as exc:
            raise ApiError(502, f"ComfyUI error: {exc}") from None

    skipped = skipped_outputs_error(answer.node_errors)
    if skipped:
        log.warning("job %s submitted with %s", answer.prompt_id, skipped)
    now = utcnow()
    job = CreativeJob(
        prompt_id=answer.prompt_id,
        client_id=studio.client_id,
        origin="palais",
        status="queued",
        progress=0.0,
        error=skipped,
        text=new.text,
        seed=new.seed,
        template=new.template,
        workflow=new.workflow,
        task_id=new.task_id,
        number=answer.number,
        submitted_at=now,
        updated_at=now,
        outputs_stored=False,
    )
    try:
        async with studio.sessions() as session:
            session.add(job)
            await session.commit()
    except IntegrityError:
        # The watcher stored the job first (from the queue or the history).
        job = await _claim_adopted(studio, job)
    log.info("submitted job %s (task %s)", job.prompt_id, job.task_id)
    studio.poke()
    return job


async def _claim_adopted(studio: Studio, submitted: CreativeJob) -> CreativeJob:
    """Give a job the watcher stored first the details only the submitter has."""
    async with studio.sessions() as session:
        job = await get_job(session, submitted.prompt_id)
        assert job is not None  # the unique prompt_id that failed the insert
        for name in ("origin", "text", "seed", "template", "workflow", "task_id"):
            setattr(job, name, getattr(submitted, name))
        job.error = join_errors(submitted.error, job.error)
        await session.commit()
    return job


def skipped_outputs_error(node_errors: dict[str, Any]) -> str | None:
    """Describe the invalid branches ComfyUI skipped while running the valid ones.

    ComfyUI returns 200 when at least one output passes validation and lists
    the failed nodes in ``node_errors``, so the job runs without those outputs.
    """
    errors = parse_node_errors(node_errors)
    if not errors:
        return None
    sentences = "; ".join(_node_error_sentence(error) for error in errors)
    return join_errors(f"outputs skipped by ComfyUI's validation: {sentences}")


def join_errors(*errors: str | None) -> str | None:
    """Join error sentences with "; ", cut to the stored maximum."""
    joined = "; ".join(error for error in errors if error)
    return joined[:MAX_ERROR_CHARS] or None


def unavailable_error(exc: Exception) -> ApiError:
    return ApiError(503, f"ComfyUI is unreachable: {exc}", accepted=None)


def rejected_error(exc: ComfyUIRejected) -> ApiError:
    """Build the 422 for a workflow ComfyUI rejected, naming node and input."""
    if not exc.errors:
        return ApiError(
            422,
            f"workflow: ComfyUI rejected the workflow ({exc.error_type}): "
            f"{exc.message}",
            field="workflow",
            accepted="a workflow that passes ComfyUI's validation",
        )
    sentences = [_node_error_sentence(error) for error in exc.errors]
    first = exc.errors[0]
    field_path = f"workflow.{first.node_id}.inputs"
    if first.input_name:
        field_path += f".{first.input_name}"
    return ApiError(
        422,
        "workflow: ComfyUI rejected the workflow: " + "; ".join(sentences),
        field=field_path,
        value=first.received_value,
        accepted=_accepted(first),
    )


def _node_error_sentence(error: NodeError) -> str:
    where = f"node {error.node_id}"
    if error.class_type:
        where += f" ({error.class_type})"
    if error.input_name:
        where += f" input {error.input_name}"
    reason = error.message
    if error.details and error.details != error.input_name:
        reason += f" ({error.details})"
    return f"{where}: {reason}"


def _accepted(error: NodeError) -> str:
    config = error.input_config
    if not isinstance(config, list) or not config:
        return "a value that passes ComfyUI's validation"
    kind, options = config[0], config[1] if len(config) > 1 else {}
    if isinstance(kind, list):
        return "one of " + ", ".join(str(choice) for choice in kind[:20])
    options = options if isinstance(options, dict) else {}
    bounds = [
        f"{word} {options[key]}"
        for key, word in (("min", "from"), ("max", "to"))
        if key in options
    ]
    return " ".join([f"a value of type {kind}", *bounds])


def random_seed() -> int:
    return secrets.randbelow(2**32)


async def cancel(studio: Studio, prompt_id: str) -> CreativeJob:
    """Delete a pending job from the queue, or interrupt it while it runs."""
    async with studio.sessions() as session:
        job = await get_job(session, prompt_id)
    if job is None:
        raise ApiError(404, f"job not found: {prompt_id}", field="prompt_id")
    if job.status not in ACTIVE:
        raise ApiError(
            409,
            f"job {prompt_id} has already finished ({job.status})",
            field="prompt_id",
            value=prompt_id,
            accepted="a queued or running job",
        )

    async with studio.client() as client:
        try:
            queue = await client.queue()
            if any(item.prompt_id == prompt_id for item in queue.pending):
                await client.delete_from_queue([prompt_id])
                return await _mark_deleted(studio, job)
            # Running (or about to run): ComfyUI interrupts only that id, and
            # the watcher records "interrupted" when the history entry appears.
            await client.interrupt(prompt_id)
        except ComfyUIUnavailable as exc:
            raise unavailable_error(exc) from None
    log.info("interrupt requested for job %s", prompt_id)
    studio.poke()
    return job


async def _mark_deleted(studio: Studio, job: CreativeJob) -> CreativeJob:
    async with studio.sessions() as session:
        await set_status(session, job.id, "deleted", finished_at=utcnow())
        await session.commit()
        refreshed = await get_job(session, job.prompt_id)
    log.info("job %s deleted from the queue", job.prompt_id)
    assert refreshed is not None
    return refreshed


async def finish(studio: Studio, prompt_id: str, entry: dict[str, Any]) -> None:
    """Record a job's end from its history entry, with its outputs stored.

    Called by the socket handler and by the poller; the per-job lock and the
    conditional status change make a repeated completion a no-op. Outputs are
    copied before the status changes, so a finished job lists its images; a
    failed copy is retried later by :func:`store_outputs`.
    """
    outcome = read_history_entry(entry)
    async with studio.lock(prompt_id):
        async with studio.sessions() as session:
            job = await get_job(session, prompt_id)
        if job is None:
            return
        if job.status in ACTIVE:
            # Palais' clock, like submitted_at and started_at: ComfyUI's message
            # timestamps come from another machine's clock, which may differ.
            finished_at = utcnow()
            await _copy_outputs_logged(studio, job, outcome.outputs, finished_at)
            async with studio.sessions() as session:
                changed = await _record_outcome(session, job, outcome, finished_at)
                await session.commit()
            if changed:
                log.info("job %s finished: %s", prompt_id, outcome.status)
        await store_outputs(studio, prompt_id)
    # Drop the lock of a finished job so that the map does not grow forever.
    # A late duplicate completion makes a new lock and finds the job done.
    lock = studio._locks.get(prompt_id)
    if lock is not None and not lock.locked():
        del studio._locks[prompt_id]


async def _record_outcome(
    session: AsyncSession, job: CreativeJob, outcome: Outcome, finished_at: datetime
) -> bool:
    values: dict[str, Any] = {
        # Keeps the sentence about outputs skipped at submission.
        "error": join_errors(job.error, outcome.error),
        "outputs": outcome.outputs,
        "finished_at": finished_at,
    }
    if outcome.status == "success":
        values["progress"] = 1.0
    if job.started_at is None:
        values["started_at"] = finished_at
    return await set_status(session, job.id, outcome.status, **values)


async def _copy_outputs_logged(
    studio: Studio, job: CreativeJob, refs: list[dict[str, Any]], created_at: datetime
) -> list[str] | None:
    """Copy outputs; None when it must be retried later, else the refusals.

    After ``MAX_OUTPUT_ATTEMPTS`` failed attempts the failure becomes one of
    the refusals, so the job stops being retried and its error names it.
    """
    try:
        refused = await copy_outputs(studio, job, refs, created_at)
    except (OutputNotStored, ComfyUIError) as exc:
        return _note_output_failure(studio, job.prompt_id, exc)
    studio._output_retries.pop(job.prompt_id, None)
    return refused


def _note_output_failure(
    studio: Studio, prompt_id: str, exc: Exception
) -> list[str] | None:
    retry = studio._output_retries.setdefault(prompt_id, OutputRetry())
    retry.attempts += 1
    if retry.attempts >= MAX_OUTPUT_ATTEMPTS:
        del studio._output_retries[prompt_id]
        log.error(
            "outputs of job %s not stored after %d attempts, giving up: %s",
            prompt_id,
            retry.attempts,
            exc,
        )
        return [str(exc)]
    delay = studio.output_retry_seconds * 2 ** (retry.attempts - 1)
    retry.next_at = time.monotonic() + delay
    log.warning(
        "outputs of job %s not stored (attempt %d of %d), retrying in %.1f s: %s",
        prompt_id,
        retry.attempts,
        MAX_OUTPUT_ATTEMPTS,
        delay,
        exc,
    )
    return None


def _output_retry_due(studio: Studio, prompt_id: str) -> bool:
    retry = studio._output_retries.get(prompt_id)
    return retry is None or time.monotonic() >= retry.next_at


async def copy_outputs(
    studio: Studio, job: CreativeJob, refs: list[dict[str, Any]], created_at: datetime
) -> list[str]:
    """Download each output that has no asset yet and record it as an asset.

    Return a sentence for each output that ComfyUI refused to serve.
    """
    async with studio.sessions() as session:
        stored = set(
            await session.scalars(
                select(CreativeAsset.output_key).where(CreativeAsset.job_id == job.id)
            )
        )
    # A history entry may list one output twice. Only its first listing is
    # written, so that no file is left without an asset row.
    missing = []
    for index, ref in enumerate(refs):
        key = gallery.output_key(ref)
        if key not in stored:
            stored.add(key)
            missing.append((index, ref))
    if not missing:
        return []
    refused = []
    async with studio.client() as client:
        for index, ref in missing:
            try:
                await _store_one(studio, client, job, index, ref, created_at)
            except (ComfyUIUnavailable, OSError, ValueError) as exc:
                raise OutputNotStored(ref["filename"], exc) from exc
            except ComfyUIError as exc:
                # A 4xx from /view does not change on retry (ComfyUI itself
                # refuses names with ".."), so the output is skipped.
                log.warning(
                    "output %r of job %s cannot be downloaded: %s",
                    ref["filename"],
                    job.prompt_id,
                    exc,
                )
                refused.append(f"output {ref['filename']!r} not downloaded: {exc}")
    return refused


async def store_outputs(studio: Studio, prompt_id: str) -> None:
    """Copy the outputs still missing and attach every asset to the job's task.

    Safe to call again after a failure: assets and deliverables are unique,
    and ``outputs_stored`` becomes true only when every output is stored.
    """
    async with studio.sessions() as session:
        job = await get_job(session, prompt_id)
    if job is None or job.outputs_stored or job.status in ACTIVE:
        return
    if not _output_retry_due(studio, prompt_id):
        return
    created_at = job.finished_at or job.submitted_at
    refused = await _copy_outputs_logged(studio, job, job.outputs or [], created_at)
    if refused is None:
        return

    async with studio.sessions() as session:
        await _attach_all(session, job)
        job_row = await session.get(CreativeJob, job.id)
        if job_row is not None:
            job_row.outputs_stored = True
            if refused:
                job_row.error = "; ".join(filter(None, [job_row.error, *refused]))
        await session.commit()


async def _store_one(
    studio: Studio,
    client: ComfyUIClient,
    job: CreativeJob,
    index: int,
    ref: dict[str, Any],
    created_at: datetime,
) -> None:
    download = await client.download(ref["filename"], ref["subfolder"], ref["type"])
    data_dir = studio.settings.data_dir
    stored = await asyncio.to_thread(
        gallery.write_output_file,
        data_dir,
        job.id,
        index,
        ref["filename"],
        download.content,
    )
    async with studio.sessions() as session:
        inserted = await gallery.insert_asset(session, job, ref, stored, created_at)
        await session.commit()
        asset = await session.scalar(
            select(CreativeAsset).where(
                CreativeAsset.job_id == job.id,
                CreativeAsset.output_key == gallery.output_key(ref),
            )
        )
    if inserted and asset is not None:
        await gallery.ensure_thumbnail(data_dir, asset)
        log.info("stored output %s of job %s", stored.filename, job.prompt_id)
    elif asset is not None and asset.file != stored.relative:
        # Another process stored this output first, under another index.
        (data_dir / stored.relative).unlink(missing_ok=True)


async def _attach_all(session: AsyncSession, job: CreativeJob) -> None:
    if job.task_id is None:
        return
    if await session.get(Task, job.task_id) is None:
        log.warning(
            "job %s names task %s, which does not exist; outputs not attached",
            job.prompt_id,
            job.task_id,
        )
        return
    assets = await session.scalars(
        select(CreativeAsset).where(CreativeAsset.job_id == job.id)
    )
    for asset in assets:
        try:
            _deliverable, created = await attach_asset(session, job.task_id, asset, job)
        except IntegrityError:
            # Another process attached it between our insert and its commit.
            await session.rollback()
            continue
        if created:
            log.info(
                "attached %s of job %s to task %s",
                asset.filename,
                job.prompt_id,
                job.task_id,
            )
