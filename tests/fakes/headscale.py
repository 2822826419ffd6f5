"""A fake Headscale REST server on 127.0.0.1, in a thread.

It serves the node list of either API generation with bodies shaped like
Headscale's (copied into tests/data/headscale) and checks the Bearer key the
way Headscale does. Tests can switch it to failure modes: wrong or expired
key, HTTP 500, slow responses and custom node lists.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent.parent / "data" / "headscale"
NOT_FOUND = {"code": 5, "message": "Not Found", "details": []}


def example_body(generation: str) -> dict[str, Any]:
    name = (
        "headscale-current-nodes.json"
        if generation == "current"
        else "headscale-0.22-machines.json"
    )
    return json.loads((DATA / name).read_text())


class FakeHeadscale:
    """State of the fake; tests change the attributes between requests."""

    def __init__(
        self, generation: str = "current", api_key: str = "hskey-api-test"
    ) -> None:
        self.generation = generation
        self.api_key = api_key
        self.key_expired = False
        self.fail_status: int | None = None
        self.delay_seconds = 0.0
        self.body = example_body(generation)
        self.requests: list[tuple[str, str | None]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def list_path(self) -> str | None:
        """Return the routed list path; any other generation routes none."""
        paths = {"current": "/api/v1/node", "0.22": "/api/v1/machine"}
        return paths.get(self.generation)

    @property
    def list_key(self) -> str:
        return "nodes" if self.generation == "current" else "machines"

    def nodes(self) -> list[dict[str, Any]]:
        return self.body[self.list_key]

    def set_nodes(self, nodes: list[dict[str, Any]]) -> None:
        self.body = {self.list_key: copy.deepcopy(nodes)}

    def start(self) -> FakeHeadscale:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                authorization = self.headers.get("Authorization")
                fake.requests.append((self.path, authorization))
                if fake.delay_seconds:
                    time.sleep(fake.delay_seconds)
                status, content_type, body = fake.respond(self.path, authorization)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on a slow response

        return Handler

    def respond(
        self, path: str, authorization: str | None
    ) -> tuple[int, str, bytes | dict[str, Any]]:
        """Return status, content type and body the way Headscale would."""
        text = "text/plain; charset=utf-8"
        if not path.startswith("/api/"):
            return 404, text, b"404 page not found\n"
        # Headscale checks exactly "Bearer " with a capital B and one space.
        if authorization is None or not authorization.startswith("Bearer "):
            return 401, text, b"Unauthorized"
        if authorization[len("Bearer ") :] != self.api_key:
            # Headscale 0.26 and older return 500 for an unknown key.
            status = 401 if self.generation == "current" else 500
            return status, text, b"Unauthorized"
        if self.key_expired:
            return 401, text, b"Unauthorized"
        if self.fail_status is not None:
            body = {"code": 2, "message": "database is locked", "details": []}
            return self.fail_status, "application/json", body
        if path.split("?")[0] == self.list_path:
            return 200, "application/json", self.body
        return 404, "application/json", NOT_FOUND
