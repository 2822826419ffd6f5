"""Fixtures of the dashboard tests: an app client with a known admin password."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from palais.app import create_app
from palais.config import Settings

ADMIN_PASSWORD = "correct horse battery staple"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match is not None, "no CSRF field in the page"
    return match.group(1)


def log_in(client: TestClient, password: str = ADMIN_PASSWORD, next_url: str = "/"):
    """Log in through the form, as a browser would; return the POST response."""
    form = client.get("/login")
    token = csrf_from(form.text)
    return client.post(
        "/login",
        data={"password": password, "csrf_token": token, "next": next_url},
        follow_redirects=False,
    )


@pytest.fixture
def web_client(settings_factory: Callable[..., Settings]) -> Iterator[TestClient]:
    settings = settings_factory(admin_password=ADMIN_PASSWORD)
    with TestClient(create_app(settings, run_workers=False)) as test_client:
        yield test_client
