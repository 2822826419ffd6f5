"""The agent against a real ``palais serve``, including server downtime."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import AUTH, TOKEN, ServerProcess, query


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A TCP port with a listener, standing in for a service to probe."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def agent_command(server: ServerProcess, token_file: Path, spool: Path, *extra: str):
    return [
        sys.executable,
        "-m",
        "palais.cli",
        "agent",
        "--url",
        server.url,
        "--node",
        "rpi5",
        "--token-file",
        str(token_file),
        "--spool",
        str(spool),
        *extra,
    ]


def run_agent_once(
    server: ServerProcess, token_file: Path, spool: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        agent_command(server, token_file, spool, "--once", *extra),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_agent_once_delivers_probes(
    server_factory: Callable[..., ServerProcess],
    token_file: Path,
    tmp_path: Path,
    listening_port: int,
) -> None:
    server = server_factory()
    server.start()
    closed_port = listening_port + 1 if listening_port < 65535 else 1

    result = run_agent_once(
        server,
        token_file,
        tmp_path / "spool",
        "--check",
        f"socket=tcp://127.0.0.1:{listening_port}",
        "--check",
        f"closed=tcp://127.0.0.1:{closed_port}",
        "--check",
        f"palais=http://127.0.0.1:{server.port}/healthz",
        "--check",
        f"missing=http://127.0.0.1:{server.port}/nope",
        "--peer",
        f"sese-ai=127.0.0.1:{server.port}",
    )

    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert list((tmp_path / "spool").glob("*.json")) == []
    nodes = httpx.get(server.url + "/api/v1/health/nodes", headers=AUTH).json()
    rpi5 = next(node for node in nodes["nodes"] if node["name"] == "rpi5")
    services = {service["name"]: service for service in rpi5["services"]}
    assert services["socket"]["status"] == "healthy"
    assert services["socket"]["response_time_ms"] >= 0
    assert services["closed"]["status"] == "unhealthy"
    assert services["palais"]["status"] == "healthy"
    assert services["palais"]["details"]["status_code"] == 200
    assert services["missing"]["status"] == "unhealthy"
    assert rpi5["status"] == "online"
    assert rpi5["degraded"] is True
    assert 0 <= rpi5["cpu_percent"] <= 100
    assert TOKEN not in server.log()


def test_agent_once_spools_while_server_down(
    server_factory: Callable[..., ServerProcess],
    token_file: Path,
    tmp_path: Path,
    database_url: str,
) -> None:
    server = server_factory()
    spool = tmp_path / "spool"

    down_first = run_agent_once(server, token_file, spool)
    down_second = run_agent_once(server, token_file, spool)
    assert down_first.returncode == 1
    assert down_second.returncode == 1
    assert len(list(spool.glob("*.json"))) == 2
    assert "delivery of report" in down_first.stderr

    server.start()
    back = run_agent_once(server, token_file, spool)

    assert back.returncode == 0, back.stderr
    assert list(spool.glob("*.json")) == []
    stored = query(database_url, "SELECT count(*) FROM webhook_events")
    assert stored == [(3,)]


def test_agent_loop_survives_restart(
    server_factory: Callable[..., ServerProcess],
    token_file: Path,
    tmp_path: Path,
    database_url: str,
) -> None:
    server = server_factory()
    server.start()
    spool = tmp_path / "spool"
    log_path = tmp_path / "agent.log"
    with log_path.open("w") as log:
        agent = subprocess.Popen(
            agent_command(server, token_file, spool, "--interval", "0.3"),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PALAIS_API_TOKEN": ""},
        )
    try:
        time.sleep(1.5)
        server.stop()
        time.sleep(2.0)
        assert list(spool.glob("*.json")), "reports made while down must be spooled"
        server.start()
        deadline = time.monotonic() + 30
        while list(spool.glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=30)

    agent_log = log_path.read_text()
    made = set(re.findall(r"collected report ([0-9a-f-]{36})", agent_log))
    left = {path.stem.split("-", 1)[1] for path in spool.glob("*.json")}
    stored = {
        row[0] for row in query(database_url, "SELECT event_id FROM webhook_events")
    }
    assert agent.returncode == 0
    assert len(made) >= 5
    assert made <= stored | left
    assert "retrying delivery" in agent_log
    assert "agent stopped" in agent_log
    assert TOKEN not in agent_log


def test_agent_rejects_bad_arguments(tmp_path: Path, token_file: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "palais.cli",
            "agent",
            "--url",
            "http://127.0.0.1:9",
            "--node",
            "rpi5",
            "--token-file",
            str(token_file),
            "--check",
            "db=ftp://127.0.0.1:21",
            "--once",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode != 0
    assert "ftp://127.0.0.1:21" in result.stderr
    assert "tcp://host:port" in result.stderr


def test_agent_once_fails_when_report_rejected(
    server_factory: Callable[..., ServerProcess], token_file: Path, tmp_path: Path
) -> None:
    # A body limit below any report's size makes the server reject it with 413.
    server = server_factory(PALAIS_MAX_BODY_BYTES="100")
    server.start()
    spool = tmp_path / "spool"

    result = run_agent_once(server, token_file, spool)

    assert result.returncode == 1
    assert "rejected by the server (HTTP 413" in result.stderr
    assert list(spool.glob("*.json")) == []
    assert len(list((spool / "rejected").glob("*.json"))) == 1


def test_report_of_old_node_name_moved_aside(
    server_factory: Callable[..., ServerProcess], token_file: Path, tmp_path: Path
) -> None:
    server = server_factory()
    server.start()
    spool = tmp_path / "spool"
    typo = agent_command(server, token_file, spool, "--once")
    typo[typo.index("rpi5")] = "rpi55"

    first = subprocess.run(typo, capture_output=True, text=True, timeout=60)
    fixed = run_agent_once(server, token_file, spool)
    again = run_agent_once(server, token_file, spool)

    # The unknown node is a configuration error: the report waits for a fix.
    assert first.returncode == 1
    assert "HTTP 404" in first.stderr
    # Under the corrected name it can never go out, so it moves aside.
    assert fixed.returncode == 1
    assert "for node 'rpi55' rejected: HTTP 404" in fixed.stderr
    assert len(list((spool / "rejected").glob("*.json"))) == 1
    assert again.returncode == 0
    assert list(spool.glob("*.json")) == []
    nodes = httpx.get(f"{server.url}/api/v1/health/nodes", headers=AUTH).json()
    by_name = {node["name"]: node for node in nodes["nodes"]}
    assert by_name["rpi5"]["last_seen_at"] is not None


def test_agent_stops_promptly_on_sigterm(
    server_factory: Callable[..., ServerProcess],
    token_file: Path,
    tmp_path: Path,
    listening_port: int,
) -> None:
    server = server_factory()
    server.start()
    # The listener accepts but never responds, so the HTTP check waits 5 s.
    agent = subprocess.Popen(
        agent_command(
            server,
            token_file,
            tmp_path / "spool",
            "--check",
            f"silent=http://127.0.0.1:{listening_port}/",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(2)
    agent.send_signal(signal.SIGTERM)

    started = time.monotonic()
    output, _ = agent.communicate(timeout=20)

    assert time.monotonic() - started < 10
    assert agent.returncode == 0
    assert "agent stopped" in output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--spool-max", "0"], "whole number of 1 or more"),
        (["--interval", "inf"], "finite number greater than 0"),
        (["--node", "bad node"], "invalid --node 'bad node'"),
        (
            ["--check", "a=tcp://127.0.0.1:1", "--check", "a=tcp://127.0.0.1:2"],
            "duplicate --check name 'a'",
        ),
    ],
    ids=["spool max", "interval", "node name", "duplicate check"],
)
def test_agent_flag_errors(
    token_file: Path, tmp_path: Path, arguments: list[str], message: str
) -> None:
    base = ["--url", "http://127.0.0.1:9", "--node", "rpi5"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "palais.cli",
            "agent",
            *base,
            "--token-file",
            str(token_file),
            "--spool",
            str(tmp_path / "s"),
            "--once",
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert message in result.stderr
    assert not list((tmp_path / "s").glob("*.json"))
