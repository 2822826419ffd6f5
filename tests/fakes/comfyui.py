"""A fake ComfyUI 0.3.64 server on 127.0.0.1: HTTP routes and the /ws socket.

It runs a small subset of node classes for real (EmptyImage, ImageInvert,
GetImageSize, TestSleep, SaveImage, PreviewImage), so graphs need no model
weights. It reproduces the recorded message shapes and quirks: the queue
counter that also counts rejected posts, the unsorted pending heap, history
kept in memory only, per-client message routing and the /view rejections of
path traversal.
The node schemas come from the recorded ``/object_info`` responses.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import uvicorn
from PIL import Image, ImageOps
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

DATA = Path(__file__).resolve().parent.parent / "data" / "comfyui"
OUTPUT_NODES = {"SaveImage", "PreviewImage"}
TRACEBACK = [
    '  File "/opt/ComfyUI/execution.py", line 1010, in validate_prompt\n'
    "    <source line redacted>\n",
    '  File "/opt/ComfyUI/execution.py", line 788, in validate_inputs\n'
    "    <source line redacted>\n",
]


def recorded(name: str) -> dict[str, Any]:
    return json.loads((DATA / "http" / f"{name}.json").read_text())


def _node_schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for name in ("EmptyImage", "SaveImage", "GetImageSize", "ImageInvert", "TestSleep"):
        schemas.update(recorded(f"object_info_{name}")["response"]["json"])
    preview = copy.deepcopy(schemas["SaveImage"])
    del preview["input"]["required"]["filename_prefix"]
    schemas["PreviewImage"] = preview
    return schemas


SCHEMAS = _node_schemas()


class Interrupted(Exception):
    def __init__(self, node_id: str, class_type: str) -> None:
        self.node_id = node_id
        self.class_type = class_type


class NodeFailed(Exception):
    def __init__(self, node_id: str, class_type: str, message: str) -> None:
        self.node_id = node_id
        self.class_type = class_type
        self.message = message


@dataclass
class Job:
    number: float
    prompt_id: str
    graph: dict[str, Any]
    extra_data: dict[str, Any]
    outputs_to_execute: list[str]
    client_id: str | None

    def item(self) -> list[Any]:
        return [
            self.number,
            self.prompt_id,
            self.graph,
            self.extra_data,
            self.outputs_to_execute,
        ]


@dataclass
class State:
    counter: int = 0
    pending: list[Job] = field(default_factory=list)
    running: Job | None = None
    history: dict[str, Any] = field(default_factory=dict)
    # Whole-graph cache: graph JSON -> outputs of the run that produced them.
    cache: dict[str, dict[str, Any]] = field(default_factory=dict)
    file_counters: dict[tuple[str, str], int] = field(default_factory=dict)


class FakeComfyUI:
    """Start with :meth:`start`; control it from the test thread."""

    def __init__(self, output_dir: Path, port: int | None = None) -> None:
        self.output_dir = output_dir
        self.temp_dir = output_dir.parent / "temp"
        self.port = port or _free_port()
        self.state = State()
        self.sockets: dict[str, WebSocket] = {}
        self.requests: list[tuple[str, str, str]] = []
        # Seconds per progress step of TestSleep (its "seconds" input is ignored
        # when this is set, so tests stay fast but the progress stays visible).
        self.step_seconds: float | None = None
        self.progress_steps = 10
        # Message types the fake will not send, to simulate missed events.
        self.dropped_messages: set[str] = set()
        self.interrupt_flag = False
        # When true, history entries list every saved image twice.
        self.repeat_output_images = False
        # When set, /view returns this HTTP status for every request.
        self.view_status: int | None = None
        # Seconds added to the message timestamps, to simulate a server whose
        # clock differs from Palais' clock.
        self.clock_offset_seconds = 0.0
        self._paused = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._wake: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- lifecycle, called from the test thread --------------------------------

    def start(self) -> FakeComfyUI:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        config = uvicorn.Config(
            self._app(),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            ws="websockets-sansio",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake ComfyUI did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Shut the server down (connections refused until :meth:`start`)."""
        if self._server is None or self._thread is None:
            return
        self.call(self._close_sockets)
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._server = None
        self._loop = None

    def restart(self) -> None:
        """Restart like ComfyUI does: queue, history and counter are forgotten."""
        self.stop()
        self.state = State(file_counters=self.state.file_counters)
        self.interrupt_flag = False
        self.start()

    def pause(self) -> None:
        """Keep the next job running (at its start) until :meth:`resume`."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def drop_sockets(self) -> None:
        """Close every WebSocket, as a network cut would."""
        self.call(self._close_sockets)

    def call(self, coroutine_function: Any, *args: Any) -> Any:
        if self._loop is None:
            return None
        future = asyncio.run_coroutine_threadsafe(coroutine_function(*args), self._loop)
        return future.result(timeout=10)

    # -- application ------------------------------------------------------------

    def _app(self) -> Starlette:
        routes = [
            Route("/system_stats", self.system_stats),
            Route("/prompt", self.get_prompt, methods=["GET"]),
            Route("/prompt", self.post_prompt, methods=["POST"]),
            Route("/queue", self.get_queue, methods=["GET"]),
            Route("/queue", self.post_queue, methods=["POST"]),
            Route("/interrupt", self.post_interrupt, methods=["POST"]),
            Route("/history", self.get_history, methods=["GET"]),
            Route("/history/{prompt_id:path}", self.get_history_entry),
            Route("/view", self.view),
            WebSocketRoute("/ws", self.websocket),
        ]
        return Starlette(routes=routes, lifespan=self._lifespan)

    def _lifespan(self, _app: Starlette) -> Any:
        fake = self

        class Lifespan:
            async def __aenter__(self) -> None:
                fake._loop = asyncio.get_running_loop()
                fake._wake = asyncio.Event()
                fake._worker = asyncio.create_task(fake._run_queue())

            async def __aexit__(self, *_exc: object) -> None:
                fake._worker.cancel()

        return Lifespan()

    def _log(self, request: Request) -> None:
        self.requests.append((request.method, request.url.path, request.url.query))

    async def system_stats(self, request: Request) -> Response:
        self._log(request)
        return JSONResponse(recorded("system_stats")["response"]["json"])

    async def get_prompt(self, request: Request) -> Response:
        self._log(request)
        return JSONResponse({"exec_info": {"queue_remaining": self._remaining()}})

    async def get_queue(self, request: Request) -> Response:
        self._log(request)
        running = [self.state.running.item()] if self.state.running else []
        # ComfyUI returns a copy of its heap, which is not sorted: reverse it
        # so that clients which forget to sort by number are caught.
        pending = [job.item() for job in reversed(self.state.pending)]
        return JSONResponse({"queue_running": running, "queue_pending": pending})

    async def post_queue(self, request: Request) -> Response:
        self._log(request)
        body = await request.json()
        if body.get("clear"):
            self.state.pending.clear()
        delete = set(body.get("delete") or [])
        self.state.pending = [
            job for job in self.state.pending if job.prompt_id not in delete
        ]
        await self._broadcast_status()
        return Response(b"", status_code=200)

    async def post_interrupt(self, request: Request) -> Response:
        self._log(request)
        raw = await request.body()
        body = json.loads(raw) if raw else {}
        target = body.get("prompt_id") if isinstance(body, dict) else None
        running = self.state.running
        if target is None or (running is not None and running.prompt_id == target):
            self.interrupt_flag = True
        return Response(b"", status_code=200)

    async def get_history(self, request: Request) -> Response:
        self._log(request)
        items = list(self.state.history.items())
        max_items = request.query_params.get("max_items")
        offset = request.query_params.get("offset")
        if offset is not None:
            items = items[int(offset) :]
            if max_items is not None:
                items = items[: int(max_items)]
        elif max_items is not None:
            items = items[-int(max_items) :] if int(max_items) else []
        return JSONResponse(dict(items))

    async def get_history_entry(self, request: Request) -> Response:
        self._log(request)
        prompt_id = request.path_params["prompt_id"]
        entry = self.state.history.get(prompt_id)
        return JSONResponse({prompt_id: entry} if entry is not None else {})

    async def view(self, request: Request) -> Response:
        self._log(request)
        if self.view_status is not None:
            return Response(b"", status_code=self.view_status)
        params = request.query_params
        filename = params.get("filename")
        if not filename:
            return Response(b"", status_code=404)
        kind = params.get("type", "output")
        for suffix in ("output", "input", "temp"):
            if filename.endswith(f" [{suffix}]"):
                filename, kind = filename[: -len(suffix) - 3], suffix
        if filename.startswith("/") or ".." in filename:
            return Response(b"", status_code=400)
        base = {"output": self.output_dir, "temp": self.temp_dir}.get(kind)
        if base is None:
            return Response(b"", status_code=400)
        folder = (base / params.get("subfolder", "")).resolve()
        if os.path.commonpath([folder, base.resolve()]) != str(base.resolve()):
            return Response(b"", status_code=403)
        path = folder / os.path.basename(filename)
        if not path.is_file():
            return Response(b"", status_code=404)
        return Response(
            path.read_bytes(),
            media_type="image/png",
            headers={"Content-Disposition": _content_disposition(path.name)},
        )

    async def post_prompt(self, request: Request) -> Response:
        self._log(request)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return PlainTextResponse(
                "500 Internal Server Error\n\nServer got itself in trouble",
                status_code=500,
            )
        # The counter moves on every JSON post, rejected ones included.
        number = self.state.counter
        self.state.counter += 1
        if "number" in body:
            number = float(body["number"])

        graph = body.get("prompt")
        if graph is None:
            return _prompt_error(
                "no_prompt", "No prompt provided", "No prompt provided"
            )
        invalid = _validate_graph(graph)
        if invalid is not None:
            return invalid
        node_errors, outputs = _validate_nodes(graph)
        if not outputs:
            return _prompt_failed(graph, node_errors)

        client_id = body.get("client_id")
        extra = dict(body.get("extra_data") or {})
        if client_id:
            extra["client_id"] = client_id
        prompt_id = str(body.get("prompt_id") or uuid.uuid4())
        job = Job(number, prompt_id, graph, extra, outputs, client_id)
        self.state.pending.append(job)
        self.state.pending.sort(key=lambda queued: queued.number)
        await self._broadcast_status()
        if self._wake is not None:
            self._wake.set()
        return JSONResponse(
            {"prompt_id": prompt_id, "number": number, "node_errors": node_errors}
        )

    # -- WebSocket ------------------------------------------------------------------

    async def websocket(self, websocket: WebSocket) -> None:
        await websocket.accept()
        sid = websocket.query_params.get("clientId") or uuid.uuid4().hex
        previous = self.sockets.get(sid)
        self.sockets[sid] = websocket
        if previous is not None:
            await _close_quietly(previous)
        await websocket.send_json(
            {
                "type": "status",
                "data": {
                    "status": {"exec_info": {"queue_remaining": self._remaining()}},
                    "sid": sid,
                },
            }
        )
        try:
            while True:
                message = await websocket.receive_json()
                if message.get("type") == "feature_flags":
                    data = recorded("features")["response"]["json"]
                    await websocket.send_json({"type": "feature_flags", "data": data})
        except (WebSocketDisconnect, RuntimeError, ValueError):
            pass
        finally:
            if self.sockets.get(sid) is websocket:
                del self.sockets[sid]

    async def _close_sockets(self) -> None:
        sockets = list(self.sockets.values())
        self.sockets.clear()
        for websocket in sockets:
            await _close_quietly(websocket)

    def _remaining(self) -> int:
        return len(self.state.pending) + (1 if self.state.running else 0)

    async def _broadcast_status(self) -> None:
        data = {"status": {"exec_info": {"queue_remaining": self._remaining()}}}
        await self._send(None, "status", data, broadcast=True)

    async def _send(
        self, client_id: str | None, kind: str, data: Any, broadcast: bool = False
    ) -> None:
        """Route a message the way ComfyUI does for jobs with or without client_id."""
        if kind in self.dropped_messages:
            return
        if broadcast:
            targets = list(self.sockets.values())
        elif client_id is not None:
            targets = [self.sockets[client_id]] if client_id in self.sockets else []
        elif kind in ("progress", "progress_state", "execution_interrupted"):
            targets = list(self.sockets.values())
        else:
            targets = []
        for websocket in targets:
            try:
                await websocket.send_json({"type": kind, "data": data})
            except Exception:  # a closing socket; ComfyUI ignores these too
                pass

    # -- execution ------------------------------------------------------------------

    async def _run_queue(self) -> None:
        while True:
            if not self.state.pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            job = self.state.pending.pop(0)
            self.state.running = job
            self.interrupt_flag = False
            await self._broadcast_status()
            try:
                await self._execute(job)
            finally:
                self.state.running = None

    async def _execute(self, job: Job) -> None:
        run = Run(self, job)
        await run.execute()
        self.state.history[job.prompt_id] = run.history_entry()
        while len(self.state.history) > 10_000:
            del self.state.history[next(iter(self.state.history))]
        self.state.running = None
        await self._broadcast_status()
        await run.send("executing", {"node": None, "prompt_id": job.prompt_id})


class Run:
    """One execution of a job's graph, with the messages it sends."""

    def __init__(self, fake: FakeComfyUI, job: Job) -> None:
        self.fake = fake
        self.job = job
        self.messages: list[list[Any]] = []
        self.outputs: dict[str, Any] = {}
        self.values: dict[str, Any] = {}
        self.snapshot: dict[str, Any] = {}
        self.status_str = "success"

    async def send(self, kind: str, data: dict[str, Any]) -> None:
        await self.fake._send(self.job.client_id, kind, data)

    async def record(self, kind: str, data: dict[str, Any]) -> None:
        data = {**data, "prompt_id": self.job.prompt_id}
        if kind != "execution_error" or "timestamp" not in data:
            now = time.time() + self.fake.clock_offset_seconds
            data["timestamp"] = int(now * 1000)
        self.messages.append([kind, data])
        await self.send(kind, data)

    def history_entry(self) -> dict[str, Any]:
        meta = {
            node_id: {
                "node_id": node_id,
                "display_node": node_id,
                "parent_node": None,
                "real_node_id": node_id,
            }
            for node_id in self.outputs
        }
        outputs = self.outputs
        if self.fake.repeat_output_images:
            outputs = {
                node_id: {**ui, "images": ui.get("images", []) * 2}
                for node_id, ui in outputs.items()
            }
        return {
            "prompt": self.job.item(),
            "outputs": outputs,
            "status": {
                "status_str": self.status_str,
                "completed": self.status_str == "success",
                "messages": self.messages,
            },
            "meta": meta,
        }

    async def execute(self) -> None:
        await self.record("execution_start", {})
        graph_key = json.dumps(self.job.graph, sort_keys=True)
        cached = self.fake.state.cache.get(graph_key)
        order = _execution_order(self.job.graph, self.job.outputs_to_execute)
        if cached is not None:
            await self._replay_cached(order, cached)
            return
        await self.record("execution_cached", {"nodes": []})
        try:
            await self._wait_while_paused()
            for node_id in order:
                await self._run_node(node_id)
        except Interrupted as stop:
            self.status_str = "error"
            await self.record(
                "execution_interrupted",
                {
                    "node_id": stop.node_id,
                    "node_type": stop.class_type,
                    "executed": list(self.values),
                },
            )
            return
        except NodeFailed as failure:
            self.status_str = "error"
            await self.record("execution_error", self._error_data(failure))
            return
        self.fake.state.cache[graph_key] = self.outputs
        await self.record("execution_success", {})

    async def _replay_cached(self, order: list[str], cached: dict[str, Any]) -> None:
        await self.record("execution_cached", {"nodes": order})
        for node_id, output in cached.items():
            self.outputs[node_id] = output
            await self.send(
                "executed",
                {
                    "node": node_id,
                    "display_node": node_id,
                    "output": output,
                    "prompt_id": self.job.prompt_id,
                },
            )
        await self.record("execution_success", {})

    def _error_data(self, failure: NodeFailed) -> dict[str, Any]:
        return {
            "node_id": failure.node_id,
            "node_type": failure.class_type,
            "executed": list(self.values),
            "exception_message": failure.message,
            "exception_type": "Exception",
            "traceback": TRACEBACK,
            "current_inputs": {},
            "current_outputs": list(self.values) + [failure.node_id],
        }

    async def _wait_while_paused(self) -> None:
        while self.fake._paused:
            if self.fake.interrupt_flag:
                first = next(iter(self.job.graph))
                raise Interrupted(first, self.job.graph[first]["class_type"])
            await asyncio.sleep(0.01)

    async def _run_node(self, node_id: str) -> None:
        node = self.job.graph[node_id]
        class_type = node["class_type"]
        if self.fake.interrupt_flag:
            raise Interrupted(node_id, class_type)
        self._set_state(node_id, 0.0, 1.0, "running")
        await self._send_progress_state()
        await self.send(
            "executing",
            {"node": node_id, "display_node": node_id, "prompt_id": self.job.prompt_id},
        )
        inputs = {
            name: self.values[value[0]] if _is_link(value) else value
            for name, value in node["inputs"].items()
        }
        self.values[node_id] = await self._compute(node_id, class_type, inputs)
        self._set_state(node_id, 1.0, 1.0, "finished")
        await self._send_progress_state()

    def _set_state(self, node_id: str, value: float, top: float, state: str) -> None:
        self.snapshot[node_id] = {
            "value": value,
            "max": top,
            "state": state,
            "node_id": node_id,
            "prompt_id": self.job.prompt_id,
            "display_node_id": node_id,
            "parent_node_id": None,
            "real_node_id": node_id,
        }

    async def _send_progress_state(self) -> None:
        data = {"prompt_id": self.job.prompt_id, "nodes": copy.deepcopy(self.snapshot)}
        await self.send("progress_state", data)

    async def _compute(self, node_id: str, class_type: str, inputs: dict) -> Any:
        if class_type == "EmptyImage":
            color = int(inputs.get("color", 0))
            rgb = ((color >> 16) & 255, (color >> 8) & 255, color & 255)
            size = (int(inputs["width"]), int(inputs["height"]))
            return [Image.new("RGB", size, rgb) for _ in range(inputs["batch_size"])]
        if class_type == "ImageInvert":
            return [ImageOps.invert(image) for image in inputs["image"]]
        if class_type == "GetImageSize":
            width, height = inputs["image"][0].size
            return (width, height, len(inputs["image"]))
        if class_type == "TestSleep":
            await self._sleep_with_progress(node_id, float(inputs["seconds"]))
            return inputs["value"]
        return await self._save(node_id, class_type, inputs)

    async def _sleep_with_progress(self, node_id: str, seconds: float) -> None:
        steps = self.fake.progress_steps
        step = self.fake.step_seconds
        step = seconds / steps if step is None else step
        for index in range(steps + 1):
            if self.fake.interrupt_flag:
                raise Interrupted(node_id, "TestSleep")
            value = seconds * index / steps
            self._set_state(node_id, value, seconds, "running")
            await self._send_progress_state()
            await self.send(
                "progress",
                {
                    "value": value,
                    "max": seconds,
                    "prompt_id": self.job.prompt_id,
                    "node": node_id,
                },
            )
            if index < steps:
                await asyncio.sleep(step)

    async def _save(self, node_id: str, class_type: str, inputs: dict) -> Any:
        if class_type == "PreviewImage":
            base, prefix, kind = self.fake.temp_dir, "ComfyUI_temp_fake", "temp"
        else:
            base, prefix, kind = (
                self.fake.output_dir,
                inputs["filename_prefix"],
                "output",
            )
        folder = (base / os.path.dirname(prefix)).resolve()
        if os.path.commonpath([folder, base.resolve()]) != str(base.resolve()):
            raise NodeFailed(
                node_id,
                class_type,
                "**** ERROR: Saving image outside the output folder is not allowed.\n",
            )
        folder.mkdir(parents=True, exist_ok=True)
        subfolder = os.path.relpath(folder, base.resolve())
        subfolder = "" if subfolder == "." else subfolder
        name = os.path.basename(prefix)

        images = []
        for image in inputs["images"]:
            key = (subfolder, name)
            counter = self.fake.state.file_counters.get(key, 0) + 1
            self.fake.state.file_counters[key] = counter
            filename = f"{name}_{counter:05}_.png"
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            (folder / filename).write_bytes(buffer.getvalue())
            images.append({"filename": filename, "subfolder": subfolder, "type": kind})

        output = {"images": images}
        self.outputs[node_id] = output
        await self.send(
            "executed",
            {
                "node": node_id,
                "display_node": node_id,
                "output": output,
                "prompt_id": self.job.prompt_id,
            },
        )
        return None


def _content_disposition(name: str) -> str:
    """Name the file for any script: HTTP headers are Latin-1, so the UTF-8
    name goes into ``filename*`` (RFC 5987) with an ASCII fallback."""
    fallback = name.encode("ascii", "replace").decode("ascii").replace('"', "_")
    return f"filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def _execution_order(graph: dict[str, Any], outputs: list[str]) -> list[str]:
    order: list[str] = []

    def visit(node_id: str) -> None:
        if node_id in order:
            return
        for value in graph[node_id]["inputs"].values():
            if _is_link(value):
                visit(value[0])
        order.append(node_id)

    for output in sorted(outputs, key=int_or_text):
        visit(output)
    return order


def int_or_text(value: str) -> tuple[int, Any]:
    return (0, int(value)) if value.isdigit() else (1, value)


def _prompt_error(kind: str, message: str, details: str) -> Response:
    body = {
        "error": {
            "type": kind,
            "message": message,
            "details": details,
            "extra_info": {},
        },
        "node_errors": {},
    }
    return JSONResponse(body, status_code=400)


def _validate_graph(graph: Any) -> Response | None:
    for node_id, node in graph.items():
        class_type = node.get("class_type") if isinstance(node, dict) else None
        if class_type is None:
            return _prompt_error(
                "invalid_prompt",
                "Cannot execute because a node is missing the class_type property.",
                f"Node ID '#{node_id}'",
            )
        if class_type not in SCHEMAS:
            return _prompt_error(
                "invalid_prompt",
                f"Cannot execute because node {class_type} does not exist.",
                f"Node ID '#{node_id}'",
            )
    if not any(node["class_type"] in OUTPUT_NODES for node in graph.values()):
        return _prompt_error("prompt_no_outputs", "Prompt has no outputs", "")
    return None


def _validate_nodes(graph: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Validate every output's subgraph; return node errors and the valid outputs."""
    node_errors: dict[str, Any] = {}
    valid: list[str] = []
    for output_id, node in graph.items():
        if node["class_type"] not in OUTPUT_NODES:
            continue
        failed = False
        for node_id in _upstream(graph, output_id):
            errors = _input_errors(graph, node_id)
            if not errors:
                continue
            failed = True
            entry = node_errors.setdefault(
                node_id,
                {
                    "errors": errors,
                    "dependent_outputs": [],
                    "class_type": graph[node_id]["class_type"],
                },
            )
            entry["dependent_outputs"].append(output_id)
        if not failed:
            valid.append(output_id)
    return node_errors, valid


def _upstream(graph: dict[str, Any], node_id: str) -> list[str]:
    seen: list[str] = []

    def visit(current: str) -> None:
        if current in seen or current not in graph:
            return
        seen.append(current)
        for value in graph[current].get("inputs", {}).values():
            if _is_link(value):
                visit(value[0])

    visit(node_id)
    return seen


def _input_errors(graph: dict[str, Any], node_id: str) -> list[dict[str, Any]]:
    node = graph[node_id]
    required = SCHEMAS[node["class_type"]]["input"]["required"]
    inputs = node.get("inputs", {})
    errors = []
    for name, config in required.items():
        if name not in inputs:
            errors.append(
                {
                    "type": "required_input_missing",
                    "message": "Required input is missing",
                    "details": name,
                    "extra_info": {"input_name": name},
                }
            )
            continue
        error = _value_error(graph, name, config, inputs[name])
        if error is not None:
            errors.append(error)
    return errors


def _value_error(
    graph: dict[str, Any], name: str, config: list[Any], value: Any
) -> dict[str, Any] | None:
    kind = config[0]
    options = config[1] if len(config) > 1 else {}
    extra = {"input_name": name, "input_config": config, "received_value": value}
    if _is_link(value):
        if value[0] not in graph:
            return {
                "type": "exception_during_validation",
                "message": "Exception when validating node",
                "details": repr(value[0]),
                "extra_info": {"exception_type": "KeyError", "traceback": TRACEBACK},
            }
        return None
    if kind in ("INT", "FLOAT"):
        try:
            number = int(value) if kind == "INT" else float(value)
        except (TypeError, ValueError) as exc:
            return {
                "type": "invalid_input_type",
                "message": f"Failed to convert an input value to a {kind} value",
                "details": f"{name}, {value}, {exc}",
                "extra_info": {**extra, "exception_message": str(exc)},
            }
        if "min" in options and number < options["min"]:
            return {
                "type": "value_smaller_than_min",
                "message": f"Value {value} smaller than min of {options['min']}",
                "details": name,
                "extra_info": extra,
            }
        if "max" in options and number > options["max"]:
            return {
                "type": "value_bigger_than_max",
                "message": f"Value {value} bigger than max of {options['max']}",
                "details": name,
                "extra_info": extra,
            }
    return None


def _prompt_failed(graph: dict[str, Any], node_errors: dict[str, Any]) -> Response:
    # Like ComfyUI, the top-level details only name errors on output nodes.
    details = []
    for node_id, entry in node_errors.items():
        if graph[node_id]["class_type"] in OUTPUT_NODES:
            details.extend(
                f"{error['message']}: {error['details']}" for error in entry["errors"]
            )
    body = {
        "error": {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "\n".join(details),
            "extra_info": {},
        },
        "node_errors": node_errors,
    }
    return JSONResponse(body, status_code=400)


async def _close_quietly(websocket: WebSocket) -> None:
    try:
        await websocket.close(code=1001)
    except Exception:  # already closed by the peer
        pass


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
