"""Background follower of ComfyUI jobs: WebSocket events plus polling.

The socket gives live progress and the ``executing`` message with
``node: null`` that ends a job. Because a socket can drop or miss messages,
a poller also reconciles every active job with ``/queue`` and
``/history/{prompt_id}``. A job that has neither a queue item nor a history
entry is ``deleted`` (removed from the pending queue) or ``lost`` (ComfyUI
restarted and forgot it), so no job stays "running" forever.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import websockets
from sqlalchemy import select

from palais.creative import studio as service
from palais.creative.comfyui import (
    ComfyUIClient,
    ComfyUIError,
    Queue,
    QueueItem,
    palais_extra,
    parse_queue_item,
    websocket_url,
)
from palais.creative.jobs import (
    ACTIVE,
    FINISHED,
    get_job,
    read_history_entry,
    set_status,
)
from palais.creative.studio import Studio
from palais.db.models import CreativeJob
from palais.db.types import utcnow

log = logging.getLogger(__name__)

RECENT_HISTORY_ITEMS = 50
PROGRESS_WRITE_SECONDS = 0.25
MAX_BACKOFF_SECONDS = 30.0
SOCKET_OPEN_TIMEOUT = 10.0
STOP_GRACE_SECONDS = 10.0


class JobWatcher:
    def __init__(
        self,
        studio: Studio,
        *,
        poll_seconds: float = 5.0,
        poll_seconds_offline: float = 2.0,
        backoff_seconds: float = 1.0,
    ) -> None:
        self.studio = studio
        self.poll_seconds = poll_seconds
        self.poll_seconds_offline = poll_seconds_offline
        self.backoff_seconds = backoff_seconds
        self.connected = False
        # Incremented on each new socket: a job last seen in the queue before
        # a reconnect may have been forgotten by a restarted ComfyUI.
        self.epoch = 0
        self.last_seen_epoch: dict[str, int] = {}
        self._progress_written: dict[str, float] = {}
        self._errors_logged: dict[str, str] = {}
        self._stopping = asyncio.Event()
        self._socket: Any = None

    async def run(self) -> None:
        if not self.studio.configured:
            log.info("creative watcher not started: PALAIS_COMFYUI_URL is not set")
            return
        self.studio.wake = asyncio.Event()
        log.info("creative watcher started (client id %s)", self.studio.client_id)
        loops = [
            asyncio.create_task(self._socket_loop(), name="creative-socket"),
            asyncio.create_task(self._poll_loop(), name="creative-poll"),
        ]
        try:
            await asyncio.shield(asyncio.gather(*loops))
        except asyncio.CancelledError:
            # Shutdown: let the loops finish their current step first.
            await self.stop()
            _done, pending = await asyncio.wait(loops, timeout=STOP_GRACE_SECONDS)
            for task in pending:
                task.cancel()
            raise
        finally:
            log.info("creative watcher stopped")

    async def stop(self) -> None:
        """Ask both loops to end at their next safe point, between two steps.

        Cancelling a loop in the middle of a database call can leave an
        aiosqlite connection waiting forever, so a clean stop is preferred.
        """
        self._stopping.set()
        self.studio.poke()
        if self._socket is not None:
            await self._socket.close()

    async def _pause(self, seconds: float, event: asyncio.Event) -> None:
        """Sleep until the timeout, the event or a stop request."""
        stopped = asyncio.ensure_future(self._stopping.wait())
        woken = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait(
                [stopped, woken], timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopped.cancel()
            woken.cancel()

    # -- polling --------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        wake = self.studio.wake
        assert wake is not None
        while not self._stopping.is_set():
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("creative reconcile failed; retrying")
            interval = (
                self.poll_seconds if self.connected else self.poll_seconds_offline
            )
            await self._pause(interval, wake)
            wake.clear()

    async def reconcile(self) -> None:
        """Bring every active job in line with ComfyUI's queue and history."""
        # Jobs are read before the queue: a stored job has already been posted,
        # so it is either in this queue snapshot or already in the history.
        async with self.studio.sessions() as session:
            active = list(
                await session.scalars(
                    select(CreativeJob).where(CreativeJob.status.in_(ACTIVE))
                )
            )
        async with ComfyUIClient(self.studio.settings.comfyui_url or "") as client:
            try:
                queue = await client.queue()
                await self._adopt(client, queue)
                for job in active:
                    await self._check_job(client, queue, job)
                await self._retry_outputs()
            except ComfyUIError as exc:
                self.studio.note_contact(False, str(exc))
                self._log_once("poll", f"creative poll failed: {exc}")
                return
        self.studio.note_contact(True, None)
        if self._errors_logged.pop("poll", None) is not None:
            log.info("creative poll recovered")

    async def _check_job(
        self, client: ComfyUIClient, queue: Queue, job: CreativeJob
    ) -> None:
        running = {item.prompt_id for item in queue.running}
        pending = {item.prompt_id for item in queue.pending}
        if job.prompt_id in running or job.prompt_id in pending:
            self.last_seen_epoch[job.prompt_id] = self.epoch
            if job.prompt_id in running and job.status == "queued":
                await self._mark_running(job.prompt_id)
            return

        entry = await client.history(job.prompt_id)
        seen_epoch = self.last_seen_epoch.pop(job.prompt_id, None)
        self._progress_written.pop(job.prompt_id, None)
        if entry is not None:
            await service.finish(self.studio, job.prompt_id, entry)
            return
        await self._vanished(client, job, seen_epoch)

    async def _vanished(
        self, client: ComfyUIClient, job: CreativeJob, seen_epoch: int | None
    ) -> None:
        # A job that started running can only end in the history, so its
        # absence there means ComfyUI restarted.
        started = job.started_at is not None
        if started or await self._restart_detected(client, seen_epoch):
            status = "lost"
            error = "ComfyUI no longer knows this job (it restarted)"
        else:
            status, error = "deleted", "deleted from the ComfyUI queue"
        async with self.studio.sessions() as session:
            changed = await set_status(
                session, job.id, status, error=error, finished_at=utcnow()
            )
            await session.commit()
        if changed:
            log.warning("job %s is %s: %s", job.prompt_id, status, error)

    async def _restart_detected(
        self, client: ComfyUIClient, seen_epoch: int | None
    ) -> bool:
        """Tell a restart from a deletion for a job that never ran.

        A restart empties the history, so the newest finished job must be
        missing from it. Without such a job, a socket reconnect since the job
        was last seen in the queue is taken as a restart.

        NOTE: a history cleared by hand (POST /history {"clear": true}) looks
        the same as a restart, so pending jobs deleted then are marked lost.
        """
        async with self.studio.sessions() as session:
            probe = await session.scalar(
                select(CreativeJob)
                .where(CreativeJob.status.in_(FINISHED))
                .order_by(CreativeJob.finished_at.desc())
                .limit(1)
            )
        if probe is not None:
            return await client.history(probe.prompt_id) is None
        return seen_epoch is not None and seen_epoch != self.epoch

    async def _adopt(self, client: ComfyUIClient, queue: Queue) -> None:
        """Store jobs submitted elsewhere that carry extra_data.palais.task_id."""
        items = [*queue.running, *queue.pending]
        candidates = {item.prompt_id: item for item in items if self._foreign(item)}
        history = await client.recent_history(RECENT_HISTORY_ITEMS)
        finished: dict[str, dict[str, Any]] = {}
        for prompt_id, entry in history.items():
            item = _history_item(entry)
            if item is not None and self._foreign(item):
                candidates.setdefault(prompt_id, item)
                finished[prompt_id] = entry
        if not candidates:
            return

        async with self.studio.sessions() as session:
            known = set(
                await session.scalars(
                    select(CreativeJob.prompt_id).where(
                        CreativeJob.prompt_id.in_(list(candidates))
                    )
                )
            )
            for prompt_id, item in candidates.items():
                if prompt_id not in known:
                    session.add(
                        _adopted_job(item, running=prompt_id in queue_ids(queue))
                    )
                    log.info("adopted job %s for task %s", prompt_id, _task_id(item))
            await session.commit()

        for prompt_id, entry in finished.items():
            if prompt_id not in known:
                await service.finish(self.studio, prompt_id, entry)

    def _foreign(self, item: QueueItem) -> bool:
        """Tell whether a job was submitted elsewhere and names a task.

        Jobs with this process's client id are stored by the submitter itself,
        which may not have committed its row yet.
        """
        own = item.extra_data.get("client_id") == self.studio.client_id
        return not own and _task_id(item) is not None

    async def _retry_outputs(self) -> None:
        async with self.studio.sessions() as session:
            pending = list(
                await session.scalars(
                    select(CreativeJob.prompt_id)
                    .where(
                        CreativeJob.status.in_(FINISHED),
                        CreativeJob.outputs_stored.is_(False),
                    )
                    .limit(20)
                )
            )
        for prompt_id in pending:
            await service.store_outputs(self.studio, prompt_id)

    # -- socket ---------------------------------------------------------------------

    async def _socket_loop(self) -> None:
        url = websocket_url(
            self.studio.settings.comfyui_url or "", self.studio.client_id
        )
        delay = self.backoff_seconds
        while not self._stopping.is_set():
            try:
                async with websockets.connect(
                    url, open_timeout=SOCKET_OPEN_TIMEOUT, max_size=None
                ) as socket:
                    self._socket = socket
                    self.connected = True
                    self.epoch += 1
                    delay = self.backoff_seconds
                    self._errors_logged.pop("socket", None)
                    log.info("connected to the ComfyUI socket")
                    self.studio.poke()
                    await self._read(socket)
                if not self._stopping.is_set():
                    log.warning("ComfyUI socket closed; reconnecting")
            except asyncio.CancelledError:
                raise
            except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                self._log_once(
                    "socket",
                    f"ComfyUI socket unavailable ({type(exc).__name__}); "
                    f"retrying every {MAX_BACKOFF_SECONDS:.0f} s at most",
                )
            finally:
                self._socket = None
                if self.connected:
                    self.connected = False
                    self.studio.poke()
            await self._pause(delay, self._stopping)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    async def _read(self, socket: Any) -> None:
        async for raw in socket:
            if isinstance(raw, bytes):
                continue  # previews and progress text; Palais shows neither
            try:
                message = json.loads(raw)
            except ValueError:
                log.warning("ignored a ComfyUI message that is not JSON")
                continue
            try:
                await self.handle(message)
            except Exception:
                data = message.get("data")
                prompt_id = data.get("prompt_id") if isinstance(data, dict) else None
                log.exception(
                    "failed to handle ComfyUI message %s of job %s",
                    message.get("type"),
                    prompt_id,
                )

    async def handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        data = message.get("data")
        if not isinstance(data, dict):
            return
        prompt_id = data.get("prompt_id")
        if not isinstance(prompt_id, str):
            return
        if kind == "execution_start":
            await self._mark_running(prompt_id)
        elif kind == "progress_state":
            await self._write_progress(prompt_id, data.get("nodes"))
        elif kind == "executing" and data.get("node") is None:
            await self._finished(prompt_id)

    async def _mark_running(self, prompt_id: str) -> None:
        async with self.studio.sessions() as session:
            job = await get_job(session, prompt_id)
            if job is None:
                return
            values: dict[str, Any] = {}
            if job.started_at is None:
                values["started_at"] = utcnow()
            await set_status(
                session, job.id, "running", only_from=("queued", "running"), **values
            )
            await session.commit()

    async def _write_progress(self, prompt_id: str, nodes: Any) -> None:
        now = time.monotonic()
        if now - self._progress_written.get(prompt_id, 0.0) < PROGRESS_WRITE_SECONDS:
            return
        async with self.studio.sessions() as session:
            job = await get_job(session, prompt_id)
            if job is None or job.status not in ACTIVE:
                return
            progress = graph_progress(job.workflow, nodes)
            values: dict[str, Any] = {"progress": max(progress, job.progress)}
            if job.started_at is None:
                values["started_at"] = utcnow()
            await set_status(session, job.id, "running", **values)
            await session.commit()
        self._progress_written[prompt_id] = now

    async def _finished(self, prompt_id: str) -> None:
        self._progress_written.pop(prompt_id, None)
        async with self.studio.sessions() as session:
            job = await get_job(session, prompt_id)
        if job is None:
            return
        async with ComfyUIClient(self.studio.settings.comfyui_url or "") as client:
            try:
                entry = await client.history(prompt_id)
            except ComfyUIError as exc:
                log.warning("history of job %s unavailable: %s", prompt_id, exc)
                self.studio.poke()
                return
        if entry is None:
            # The entry is written before the final message; poll again soon.
            self.studio.poke()
            return
        log.info(
            "job %s ended on the socket (%s)",
            prompt_id,
            read_history_entry(entry).status,
        )
        await service.finish(self.studio, prompt_id, entry)

    def _log_once(self, key: str, message: str) -> None:
        """Log an error when it starts or changes, not on every retry."""
        if self._errors_logged.get(key) != message:
            log.warning(message)
            self._errors_logged[key] = message


def graph_progress(workflow: dict[str, Any], nodes: Any) -> float:
    """Estimate a job's progress from a ``progress_state`` snapshot.

    Each node of the graph counts equally; a running node counts for its own
    value/max. The result stays below 1 until the job has succeeded.
    """
    if not isinstance(nodes, dict) or not workflow:
        return 0.0
    done = 0.0
    for state in nodes.values():
        if not isinstance(state, dict):
            continue
        value, top = state.get("value"), state.get("max")
        if state.get("state") == "finished":
            done += 1.0
        elif isinstance(value, (int, float)) and isinstance(top, (int, float)) and top:
            done += min(max(value / top, 0.0), 1.0)
    return min(done / len(workflow), 0.99)


def queue_ids(queue: Queue) -> set[str]:
    return {item.prompt_id for item in queue.running}


def _task_id(item: QueueItem) -> int | None:
    task_id = item.task_id
    if isinstance(task_id, bool) or not isinstance(task_id, int):
        return None
    return task_id


def _history_item(entry: Any) -> QueueItem | None:
    if not isinstance(entry, dict):
        return None
    return parse_queue_item(entry.get("prompt"))


def _adopted_job(item: QueueItem, running: bool) -> CreativeJob:
    extra = palais_extra(item.extra_data)
    text = extra.get("text")
    seed = extra.get("seed")
    now = utcnow()
    return CreativeJob(
        prompt_id=item.prompt_id,
        client_id=str(item.extra_data.get("client_id") or "")[:64] or None,
        origin="external",
        status="running" if running else "queued",
        progress=0.0,
        text=text if isinstance(text, str) else None,
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        workflow=item.workflow,
        task_id=_task_id(item),
        number=item.number,
        submitted_at=now,
        started_at=now if running else None,
        updated_at=now,
        outputs_stored=False,
    )
