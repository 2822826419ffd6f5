"""Parsing of --check and --peer, and what a probe reports."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from palais.agent.probes import Check, parse_check, parse_peer, probe


def test_parse_check_kinds() -> None:
    assert parse_check("db=tcp://127.0.0.1:5432") == Check("db", "tcp://127.0.0.1:5432")
    assert parse_check("web = https://example.test/health").target == (
        "https://example.test/health"
    )


@pytest.mark.parametrize(
    "text",
    ["db", "=tcp://h:1", "db=tcp://127.0.0.1", "db=ftp://h:21", "db=http://"],
)
def test_parse_check_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid check"):
        parse_check(text)


def test_parse_peer() -> None:
    assert parse_peer("sese-ai=100.64.0.1:8000") == ("sese-ai", "100.64.0.1", 8000)
    assert parse_peer("v6=[fd7a::1]:22") == ("v6", "fd7a::1", 22)
    with pytest.raises(ValueError, match="NAME=host:port"):
        parse_peer("sese-ai=100.64.0.1")


def test_public_target_hides_credentials() -> None:
    check = Check("web", "https://user:secret@example.test:8443/health?key=abc")

    assert check.public_target == "https://example.test:8443/health"


async def test_http_probe_reports_status_without_credentials() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    check = Check("web", "http://user:secret@service.test/health?token=abc")
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        result = await probe(check, client)

    assert result["status"] == "unhealthy"
    assert result["details"] == {
        "target": "http://service.test/health",
        "status_code": 503,
    }
    assert "secret" not in str(result)


@pytest.fixture
def dripping_server() -> Iterator[int]:
    """A server that sends its response one byte every 0.2 s, forever."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            with connection:
                for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n" * 100:
                    if stop.wait(0.2):
                        break
                    try:
                        connection.sendall(bytes([byte]))
                    except OSError:
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    listener.close()


async def test_http_probe_deadline_covers_slow_server(dripping_server: int) -> None:
    check = Check("drip", f"http://127.0.0.1:{dripping_server}/")
    started = time.monotonic()

    async with httpx.AsyncClient() as client:
        result = await probe(check, client, timeout=1.0)

    assert time.monotonic() - started < 3
    assert result["status"] == "unhealthy"
    assert result["details"]["error"] == "timed out after 1 s"


def test_parse_check_port_out_of_range() -> None:
    with pytest.raises(ValueError, match="port must be 1 to 65535"):
        parse_check("db=tcp://127.0.0.1:99999")


def test_parse_peer_rejects_bad_name() -> None:
    with pytest.raises(ValueError, match="invalid peer name 'bad name!'"):
        parse_peer("bad name!=127.0.0.1:1")
