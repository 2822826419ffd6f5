"""Shared fixtures: a real database per test (SQLite, and PostgreSQL when
PALAIS_TEST_POSTGRES_URL is set), an app client, and a real server process."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from palais.app import create_app
from palais.config import Settings, sqlalchemy_url
from palais.db.engine import create_engine

POSTGRES_URL = os.environ.get("PALAIS_TEST_POSTGRES_URL", "").strip()
TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DATA = Path(__file__).parent / "data"

BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(
            not POSTGRES_URL,
            reason="PALAIS_TEST_POSTGRES_URL is not set (e.g. "
            "postgresql://postgres@127.0.0.1:5432/test)",
        ),
    ),
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's PALAIS_* variables out of the tests."""
    for name in list(os.environ):
        if name.startswith("PALAIS_") and name != "PALAIS_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)


def _admin_dsn() -> str:
    return POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")


async def _create_database(name: str) -> None:
    connection = await asyncpg.connect(_admin_dsn())
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


async def _drop_database(name: str) -> None:
    connection = await asyncpg.connect(_admin_dsn())
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def postgres_database_url(name: str) -> str:
    base, _, _old = _admin_dsn().rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty database on each backend; PostgreSQL ones are dropped after."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'palais.db'}"
        return
    name = f"palais_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_create_database(name))
    try:
        yield postgres_database_url(name)
    finally:
        asyncio.run(_drop_database(name))


def make_settings(data_dir: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "api_token": TOKEN,
        "self_agent": False,
        "nodes": "sese-ai,rpi5=100.64.0.2,seko-vpn",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings_factory(tmp_path: Path, database_url: str) -> Callable[..., Settings]:
    def factory(**overrides: Any) -> Settings:
        return make_settings(tmp_path / "data", database_url, **overrides)

    return factory


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, run_workers=False)) as test_client:
        yield test_client


def run_in_app(client: TestClient, function: Callable[..., Any], *args: Any) -> Any:
    """Run ``await function(session, *args)`` on the app's own event loop."""

    async def call() -> Any:
        async with client.app.state.sessions() as session:
            return await function(session, *args)

    return client.portal.call(call)


def count_rows(client: TestClient, table: str) -> int:
    async def count(session) -> int:  # noqa: ANN001
        return await session.scalar(text(f"SELECT count(*) FROM {table}"))

    return run_in_app(client, count)


def query(database_url: str, sql: str) -> list[tuple]:
    """Run one SQL statement against a database that a server process uses."""

    async def run() -> list[tuple]:
        engine = create_engine(sqlalchemy_url(database_url))
        try:
            async with engine.connect() as connection:
                return [tuple(row) for row in await connection.execute(text(sql))]
        finally:
            await engine.dispose()

    return asyncio.run(run())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``palais serve`` in a subprocess, for end-to-end tests."""

    def __init__(self, env: dict[str, str], port: int, log_path: Path) -> None:
        self.env = env
        self.port = port
        self.log_path = log_path
        self.extra_args: list[str] = []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "palais.cli", "serve", "--port", str(self.port)]
            + self.extra_args,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"palais serve exited: {self.log_path.read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"palais serve did not start: {self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def server_factory(
    tmp_path: Path, database_url: str
) -> Iterator[Callable[..., ServerProcess]]:
    servers: list[ServerProcess] = []

    def factory(**env_overrides: str) -> ServerProcess:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("PALAIS_")
        }
        env.update(
            PALAIS_DATA_DIR=str(tmp_path / "server-data"),
            PALAIS_DATABASE_URL=database_url,
            PALAIS_API_TOKEN=TOKEN,
            PALAIS_SELF_AGENT="false",
        )
        env.update(env_overrides)
        server = ServerProcess(env, free_port(), tmp_path / f"server{len(servers)}.log")
        servers.append(server)
        return server

    yield factory
    for server in servers:
        server.stop()
