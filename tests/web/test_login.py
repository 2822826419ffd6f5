"""Dashboard login: password hash, session cookie, CSRF and redirects."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import text

from palais.app import create_app
from palais.config import Settings
from palais.web.session import hash_password, verify_password
from tests.conftest import TOKEN, ServerProcess, run_in_app
from tests.web.conftest import ADMIN_PASSWORD, csrf_from, log_in


def test_password_hash_is_salted_and_verifies() -> None:
    first = hash_password("secret")
    second = hash_password("secret")
    assert first != second
    assert first.startswith("scrypt$")
    assert verify_password("secret", first)
    assert not verify_password("Secret", first)
    assert not verify_password("secret", "garbage")


def test_login_form_has_one_password_field(web_client: TestClient) -> None:
    page = web_client.get("/login")
    assert page.status_code == 200
    assert 'name="password"' in page.text
    assert 'type="password"' in page.text
    assert csrf_from(page.text)


def test_page_redirects_to_login_without_session(web_client: TestClient) -> None:
    response = web_client.get("/health?x=1", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fhealth%3Fx%3D1"


def test_htmx_request_without_session_gets_hx_redirect(web_client: TestClient) -> None:
    response = web_client.get(
        "/health", headers={"HX-Request": "true"}, follow_redirects=False
    )
    assert response.status_code == 401
    assert response.headers["hx-redirect"].startswith("/login")


def test_login_sets_cookie_and_redirects(web_client: TestClient) -> None:
    response = log_in(web_client, next_url="/health")
    assert response.status_code == 303
    assert response.headers["location"] == "/health"
    cookie = response.headers["set-cookie"]
    assert "palais_session=" in cookie
    assert "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower()
    page = web_client.get("/health")
    assert page.status_code == 200


def test_wrong_password_is_rejected(web_client: TestClient) -> None:
    response = log_in(web_client, password="wrong")
    assert response.status_code == 401
    assert "Wrong password" in response.text
    assert web_client.get("/health", follow_redirects=False).status_code == 303


def test_login_without_csrf_token_is_rejected(web_client: TestClient) -> None:
    web_client.get("/login")
    response = web_client.post(
        "/login", data={"password": ADMIN_PASSWORD}, follow_redirects=False
    )
    assert response.status_code == 403
    assert response.json()["error"].startswith("invalid or missing CSRF token")


def test_open_redirect_is_ignored(web_client: TestClient) -> None:
    response = log_in(web_client, next_url="//evil.example/")
    assert response.status_code == 303
    assert response.headers["location"] == "/health"


def test_forged_cookie_is_not_a_session(web_client: TestClient) -> None:
    web_client.cookies.set("palais_session", "eyJ1c2VyIjoiYWRtaW4ifQ.forged.sig")
    response = web_client.get("/health", follow_redirects=False)
    assert response.status_code == 303


def test_logout_needs_csrf_and_ends_session(web_client: TestClient) -> None:
    log_in(web_client)
    page = web_client.get("/health")
    rejected = web_client.post("/logout", data={}, follow_redirects=False)
    assert rejected.status_code == 403
    response = web_client.post(
        "/logout", data={"csrf_token": csrf_from(page.text)}, follow_redirects=False
    )
    assert response.status_code == 303
    assert web_client.get("/health", follow_redirects=False).status_code == 303


def test_api_token_never_in_html(web_client: TestClient) -> None:
    log_in(web_client)
    for path in ("/login", "/health"):
        assert TOKEN not in web_client.get(path).text


def test_password_stored_hashed_only(web_client: TestClient) -> None:
    async def stored(session) -> list[str]:  # noqa: ANN001
        rows = await session.execute(
            text("SELECT password_hash FROM admin_credentials")
        )
        return [row[0] for row in rows]

    hashes = run_in_app(web_client, stored)
    assert len(hashes) == 1
    assert ADMIN_PASSWORD not in hashes[0]
    assert verify_password(ADMIN_PASSWORD, hashes[0])


def test_generated_password_file_is_private(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory()
    with TestClient(create_app(settings, run_workers=False)) as client:
        path = settings.data_dir / "admin_password"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        password = path.read_text().strip()
        assert log_in(client, password=password).status_code == 303


def test_changed_password_replaces_hash(
    settings_factory: Callable[..., Settings],
) -> None:
    first = settings_factory(admin_password="first-one")
    with TestClient(create_app(first, run_workers=False)):
        pass
    settings = settings_factory(admin_password="second-one")
    with TestClient(create_app(settings, run_workers=False)) as client:
        assert log_in(client, password="first-one").status_code == 401
        assert log_in(client, password="second-one").status_code == 303


def test_repeated_failures_are_throttled(web_client: TestClient) -> None:
    for _ in range(10):
        assert log_in(web_client, password="wrong").status_code == 401
    blocked = log_in(web_client)
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    assert "Too many failed logins" in blocked.text
    assert web_client.get("/health", follow_redirects=False).status_code == 303


def test_failures_shared_by_apps_and_restarts(
    settings_factory: Callable[..., Settings],
) -> None:
    # Two apps on one database stand for two --workers processes, or for a
    # server before and after a restart.
    settings = settings_factory(admin_password=ADMIN_PASSWORD)
    with TestClient(create_app(settings, run_workers=False)) as first:
        for _ in range(6):
            assert log_in(first, password="wrong").status_code == 401
    with TestClient(create_app(settings, run_workers=False)) as second:
        for _ in range(4):
            assert log_in(second, password="wrong").status_code == 401
        assert log_in(second).status_code == 429


def test_parallel_guesses_stop_at_the_limit(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory(PALAIS_ADMIN_PASSWORD=ADMIN_PASSWORD)
    server.extra_args = ["--workers", "2"]
    server.start()

    async def guess_all() -> list[int]:
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.url, limits=limits) as client:
            token = csrf_from((await client.get("/login")).text)
            form = {"password": "wrong", "csrf_token": token}
            responses = await asyncio.gather(
                *(client.post("/login", data=form) for _ in range(30))
            )
        return [response.status_code for response in responses]

    statuses = asyncio.run(guess_all())
    assert statuses.count(401) <= 10
    assert statuses.count(401) + statuses.count(429) == 30


def test_success_clears_failures(web_client: TestClient) -> None:
    for _ in range(9):
        log_in(web_client, password="wrong")
    assert log_in(web_client).status_code == 303
    web_client.cookies.clear()
    for _ in range(9):
        assert log_in(web_client, password="wrong").status_code == 401
    assert log_in(web_client).status_code == 303


def test_logout_ends_copied_cookie(web_client: TestClient) -> None:
    log_in(web_client)
    page = web_client.get("/health")
    copied = dict(web_client.cookies)

    web_client.post(
        "/logout", data={"csrf_token": csrf_from(page.text)}, follow_redirects=False
    )
    web_client.cookies.clear()
    for name, value in copied.items():
        web_client.cookies.set(name, value)
    replayed = web_client.get("/health", follow_redirects=False)
    login_form = web_client.get("/login", follow_redirects=False)

    assert replayed.status_code == 303
    assert replayed.headers["location"].startswith("/login")
    assert login_form.status_code == 200


def test_expired_fragment_returns_to_its_page(web_client: TestClient) -> None:
    response = web_client.get(
        "/health/fragments/nodes",
        headers={
            "HX-Request": "true",
            "HX-Current-URL": "http://testserver/health",
        },
        follow_redirects=False,
    )

    assert response.status_code == 401
    assert response.headers["hx-redirect"] == "/login?next=%2Fhealth"
