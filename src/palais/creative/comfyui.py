"""Async client of the ComfyUI HTTP API (shapes of ComfyUI 0.3.x).

Every call has a timeout. Failures are raised as :class:`ComfyUIUnavailable`
(connection refused, timeout, 5xx), :class:`ComfyUIRejected` (a 400 from
``POST /prompt``, with ``node_errors`` flattened) or :class:`ComfyUIError`.
Error messages never contain the server URL, which may carry credentials.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# ComfyUI keeps up to 10,000 history entries; never ask for all of them.
MAX_HISTORY_ITEMS = 200
MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024


class ComfyUIError(Exception):
    """ComfyUI returned something Palais cannot use."""


class ComfyUIUnavailable(ComfyUIError):
    """ComfyUI could not be reached, timed out or failed with a 5xx."""


@dataclass(frozen=True)
class NodeError:
    node_id: str
    class_type: str | None
    input_name: str | None
    error_type: str
    message: str
    details: str
    received_value: Any = None
    input_config: Any = None


class ComfyUIRejected(ComfyUIError):
    """ComfyUI rejected a workflow with a 400 (validation errors)."""

    def __init__(self, error_type: str, message: str, errors: list[NodeError]):
        self.error_type = error_type
        self.message = message
        self.errors = errors
        super().__init__(message)


@dataclass(frozen=True)
class QueueItem:
    number: float
    prompt_id: str
    workflow: dict[str, Any]
    extra_data: dict[str, Any]
    outputs_to_execute: list[str]

    @property
    def task_id(self) -> Any:
        return palais_extra(self.extra_data).get("task_id")


@dataclass(frozen=True)
class Queue:
    running: list[QueueItem]
    pending: list[QueueItem] = field(default_factory=list)


@dataclass(frozen=True)
class Submitted:
    prompt_id: str
    number: float | None
    node_errors: dict[str, Any]


@dataclass(frozen=True)
class Download:
    content: bytes
    content_type: str | None


def palais_extra(extra_data: Any) -> dict[str, Any]:
    """Return the ``extra_data.palais`` object of a queue or history item."""
    if not isinstance(extra_data, dict):
        return {}
    palais = extra_data.get("palais")
    return palais if isinstance(palais, dict) else {}


def parse_queue_item(item: Any) -> QueueItem | None:
    """Read ``[number, prompt_id, graph, extra_data, outputs_to_execute]``."""
    if not isinstance(item, list) or len(item) < 3:
        return None
    number, prompt_id, graph = item[0], item[1], item[2]
    extra = item[3] if len(item) > 3 and isinstance(item[3], dict) else {}
    outputs = item[4] if len(item) > 4 and isinstance(item[4], list) else []
    if not isinstance(prompt_id, str) or not isinstance(graph, dict):
        return None
    number = float(number) if isinstance(number, (int, float)) else 0.0
    return QueueItem(number, prompt_id, graph, extra, [str(o) for o in outputs])


def websocket_url(base_url: str, client_id: str) -> str:
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    path = parts.path.rstrip("/") + "/ws"
    return urlunsplit((scheme, parts.netloc, path, f"clientId={client_id}", ""))


class ComfyUIClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> ComfyUIClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def system_stats(self) -> dict[str, Any]:
        return _json_object(await self._request("GET", "/system_stats"))

    async def queue_remaining(self) -> int:
        """Return the number of running and pending jobs (``GET /prompt``)."""
        body = _json_object(await self._request("GET", "/prompt"))
        info = body.get("exec_info")
        remaining = info.get("queue_remaining") if isinstance(info, dict) else None
        return remaining if isinstance(remaining, int) else 0

    async def queue(self) -> Queue:
        """Return the queue; ``pending`` is a heap copy, so sort it by number."""
        body = _json_object(await self._request("GET", "/queue"))
        running = [parse_queue_item(i) for i in body.get("queue_running") or []]
        pending = [parse_queue_item(i) for i in body.get("queue_pending") or []]
        return Queue(
            running=[item for item in running if item is not None],
            pending=sorted(
                (item for item in pending if item is not None),
                key=lambda item: item.number,
            ),
        )

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        """Return one job's history entry, or None while it has none."""
        response = await self._request("GET", f"/history/{_quote(prompt_id)}")
        entry = _json_object(response).get(prompt_id)
        return entry if isinstance(entry, dict) else None

    async def recent_history(self, max_items: int = 20) -> dict[str, Any]:
        """Return the newest entries, oldest first, as ComfyUI lists them."""
        max_items = max(1, min(max_items, MAX_HISTORY_ITEMS))
        response = await self._request(
            "GET", "/history", params={"max_items": max_items}
        )
        return _json_object(response)

    async def submit(
        self,
        workflow: dict[str, Any],
        *,
        client_id: str,
        prompt_id: str | None = None,
        palais: dict[str, Any] | None = None,
    ) -> Submitted:
        body: dict[str, Any] = {"prompt": workflow, "client_id": client_id}
        if prompt_id is not None:
            body["prompt_id"] = prompt_id
        if palais:
            body["extra_data"] = {"palais": palais}

        response = await self._request("POST", "/prompt", json=body, accept=(400,))
        if response.status_code == 400:
            raise rejection(_safe_json(response))

        answer = _json_object(response)
        if not isinstance(answer.get("prompt_id"), str):
            raise ComfyUIError("ComfyUI accepted the workflow without a prompt_id")
        number = answer.get("number")
        return Submitted(
            prompt_id=answer["prompt_id"],
            number=float(number) if isinstance(number, (int, float)) else None,
            node_errors=answer.get("node_errors") or {},
        )

    async def interrupt(self, prompt_id: str | None = None) -> None:
        """Interrupt the running job; with an id, only if that job is running."""
        body = {"prompt_id": prompt_id} if prompt_id else None
        await self._request("POST", "/interrupt", json=body)

    async def delete_from_queue(self, prompt_ids: list[str]) -> None:
        """Remove pending jobs; ComfyUI ignores unknown ids silently."""
        await self._request("POST", "/queue", json={"delete": prompt_ids})

    async def download(
        self, filename: str, subfolder: str = "", kind: str = "output"
    ) -> Download:
        """Fetch an output file from ``/view``, at most MAX_DOWNLOAD_BYTES."""
        params = {"filename": filename, "subfolder": subfolder, "type": kind}
        try:
            async with self._http.stream("GET", "/view", params=params) as response:
                _check_status(response, "GET /view")
                content = await _read_bounded(response)
        except httpx.HTTPError as exc:
            raise _unavailable("GET /view", exc) from None
        return Download(content, response.headers.get("content-type"))

    async def _request(
        self,
        method: str,
        path: str,
        *,
        accept: tuple[int, ...] = (),
        **kwargs: Any,
    ) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise _unavailable(f"{method} {path}", exc) from None
        if response.status_code not in accept:
            _check_status(response, f"{method} {path}")
        return response


def _quote(value: str) -> str:
    return quote(value, safe="")


def _unavailable(call: str, exc: Exception) -> ComfyUIUnavailable:
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    return ComfyUIUnavailable(f"ComfyUI {call} {kind} ({type(exc).__name__})")


def _check_status(response: httpx.Response, call: str) -> None:
    status = response.status_code
    if status >= 500:
        raise ComfyUIUnavailable(f"ComfyUI {call} failed with HTTP {status}")
    if status >= 400:
        raise ComfyUIError(f"ComfyUI {call} failed with HTTP {status}")


async def _read_bounded(response: httpx.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > MAX_DOWNLOAD_BYTES:
            raise ComfyUIError(
                f"ComfyUI file is larger than {MAX_DOWNLOAD_BYTES} bytes"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _safe_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _json_object(response: httpx.Response) -> dict[str, Any]:
    body = _safe_json(response)
    if not isinstance(body, dict):
        raise ComfyUIError(
            f"ComfyUI {response.request.method} {response.request.url.path} "
            "returned no JSON object"
        )
    return body


def rejection(body: Any) -> ComfyUIRejected:
    """Flatten a 400 body from ``POST /prompt`` into node errors.

    The top-level ``error.details`` lists only errors on output nodes and is
    empty when the bad node is upstream, so ``node_errors`` is the source.
    """
    body = body if isinstance(body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    error_type = str(error.get("type") or "invalid_prompt")
    message = str(error.get("message") or "ComfyUI rejected the workflow")
    details = str(error.get("details") or "")
    if details:
        message = f"{message}: {details}"

    return ComfyUIRejected(
        error_type, message, parse_node_errors(body.get("node_errors"))
    )


def parse_node_errors(node_errors: Any) -> list[NodeError]:
    """Flatten ``node_errors`` (node id -> errors) from ``POST /prompt``."""
    errors: list[NodeError] = []
    for node_id, node in (node_errors if isinstance(node_errors, dict) else {}).items():
        if isinstance(node, dict):
            errors.extend(_node_errors(str(node_id), node))
    return errors


def _node_errors(node_id: str, node: dict[str, Any]) -> list[NodeError]:
    class_type = node.get("class_type")
    found = []
    for item in node.get("errors") or []:
        if not isinstance(item, dict):
            continue
        extra = (
            item.get("extra_info") if isinstance(item.get("extra_info"), dict) else {}
        )
        input_name = extra.get("input_name")
        found.append(
            NodeError(
                node_id=node_id,
                class_type=class_type if isinstance(class_type, str) else None,
                input_name=input_name if isinstance(input_name, str) else None,
                error_type=str(item.get("type") or "invalid"),
                message=str(item.get("message") or "invalid"),
                details=str(item.get("details") or ""),
                received_value=extra.get("received_value"),
                input_config=extra.get("input_config"),
            )
        )
    return found
