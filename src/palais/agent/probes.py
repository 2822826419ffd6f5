"""Service probes (TCP connect, HTTP GET) and peer latency, with timeouts."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from palais.config import NODE_NAME_ACCEPTED, NODE_NAME_PATTERN

PROBE_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Check:
    """A service to probe: ``tcp://host:port`` or an http(s) URL."""

    name: str
    target: str

    @property
    def scheme(self) -> str:
        return urlsplit(self.target).scheme

    @property
    def public_target(self) -> str:
        """Return the target without credentials or query, safe to report."""
        parts = urlsplit(self.target)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
        return parts._replace(netloc=netloc, query="", fragment="").geturl()


def parse_check(text: str) -> Check:
    name, sep, target = text.partition("=")
    name, target = name.strip(), target.strip()
    if not sep or not name or len(name) > 100:
        raise ValueError(
            f"invalid check {text!r}; expected NAME=tcp://host:port or NAME=URL"
        )
    parts = urlsplit(target)
    if parts.scheme not in ("tcp", "http", "https") or not parts.hostname:
        raise ValueError(
            f"invalid check target {target!r}; accepted: tcp://host:port, "
            "http://... or https://..."
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError(
            f"invalid check target {target!r}: the port must be 1 to 65535"
        ) from None
    if parts.scheme == "tcp" and port is None:
        raise ValueError(f"invalid check target {target!r}: tcp needs a port")
    return Check(name, target)


def parse_peer(text: str) -> tuple[str, str, int]:
    name, sep, address = text.partition("=")
    host, _, port = address.strip().rpartition(":")
    name = name.strip()
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid peer {text!r}; expected NAME=host:port")
    if not NODE_NAME_PATTERN.match(name):
        raise ValueError(f"invalid peer name {name!r}; accepted: {NODE_NAME_ACCEPTED}")
    return name, host.strip("[]"), int(port)


async def tcp_connect_ms(host: str, port: int, timeout: float) -> float:
    """Return the time to open a TCP connection, in milliseconds."""
    started = time.perf_counter()
    _reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port), timeout=timeout
    )
    elapsed = (time.perf_counter() - started) * 1000
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return round(elapsed, 2)


async def probe(
    check: Check, client: httpx.AsyncClient, timeout: float = PROBE_TIMEOUT_SECONDS
) -> dict[str, Any]:
    """Run one check and return it as a service entry of the report."""
    if check.scheme == "tcp":
        return await _probe_tcp(check, timeout)
    return await _probe_http(check, client, timeout)


async def _probe_tcp(check: Check, timeout: float) -> dict[str, Any]:
    parts = urlsplit(check.target)
    try:
        elapsed = await tcp_connect_ms(parts.hostname, parts.port, timeout)
    except TimeoutError:
        return _failed(check, f"timed out after {timeout:g} s")
    except OSError as exc:
        return _failed(check, exc.strerror or str(exc))
    return {
        "name": check.name,
        "status": "healthy",
        "response_time_ms": elapsed,
        "details": {"target": check.public_target},
    }


async def _probe_http(
    check: Check, client: httpx.AsyncClient, timeout: float
) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        # One deadline for the whole request: httpx's timeout bounds each read,
        # so a server that sends a byte now and then would hold it forever.
        async with asyncio.timeout(timeout):
            async with client.stream("GET", check.target, timeout=timeout) as response:
                status_code = response.status_code
    except TimeoutError:
        return _failed(check, f"timed out after {timeout:g} s")
    except httpx.TimeoutException:
        return _failed(check, f"timed out after {timeout:g} s")
    except httpx.HTTPError as exc:
        return _failed(check, str(exc) or type(exc).__name__)
    elapsed = round((time.perf_counter() - started) * 1000, 2)
    return {
        "name": check.name,
        "status": "healthy" if status_code < 400 else "unhealthy",
        "response_time_ms": elapsed,
        "details": {"target": check.public_target, "status_code": status_code},
    }


def _failed(check: Check, error: str) -> dict[str, Any]:
    return {
        "name": check.name,
        "status": "unhealthy",
        "response_time_ms": None,
        "details": {"target": check.public_target, "error": error},
    }


async def peer_latency(
    name: str, host: str, port: int, timeout: float = PROBE_TIMEOUT_SECONDS
) -> dict[str, Any]:
    """Measure the TCP connect time to a peer; None when it cannot be reached."""
    try:
        latency = await tcp_connect_ms(host, port, timeout)
    except (TimeoutError, OSError):
        latency = None
    return {"node": name, "latency_ms": latency}
