"""Login and logout of the dashboard (cookie session, one admin)."""

from __future__ import annotations

import logging
import time
from collections import defaultdict, deque

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from palais.web.session import (
    ADMIN_USER,
    check_admin_password,
    clear_session,
    end_all_sessions,
    logged_in_user,
    new_session,
    read_session,
    require_csrf,
    safe_next,
    session_epoch,
    write_session,
)
from palais.web.templating import render

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

# Failed logins allowed per client address within the window; more are
# rejected with 429 until the oldest failure leaves the window.
# NOTE: counted per process, so N processes behind a proxy allow N times more.
FAILURE_LIMIT = 10
FAILURE_WINDOW_SECONDS = 300.0


class LoginThrottle:
    """Recent failed logins per client address, kept in memory."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, client: str, now: float) -> deque[float]:
        failures = self._failures[client]
        while failures and now - failures[0] > self.window:
            failures.popleft()
        return failures

    def retry_after(self, client: str) -> int:
        """Return the seconds until the next attempt is allowed (0: now)."""
        now = time.monotonic()
        failures = self._recent(client, now)
        if len(failures) < self.limit:
            return 0
        return max(1, int(failures[0] + self.window - now) + 1)

    def failed(self, client: str) -> None:
        self._recent(client, time.monotonic()).append(time.monotonic())

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


def _throttle(request: Request) -> LoginThrottle:
    state = request.app.state
    if getattr(state, "login_throttle", None) is None:
        state.login_throttle = LoginThrottle(FAILURE_LIMIT, FAILURE_WINDOW_SECONDS)
    return state.login_throttle


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    if await logged_in_user(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _form(request, next, error=None, status_code=200)


def _form(
    request: Request, next_url: str | None, *, error: str | None, status_code: int
) -> HTMLResponse:
    # A session without a user carries the CSRF token of the login form.
    payload = read_session(request)
    if not payload.get("csrf"):
        payload = new_session(None)
        request.scope["palais.session"] = payload
    response = render(
        request,
        "login.html",
        {"next": safe_next(next_url), "error": error},
        status_code=status_code,
    )
    write_session(request, response, payload)
    return response


@router.post(
    "/login", response_class=HTMLResponse, dependencies=[Depends(require_csrf)]
)
async def login(request: Request) -> HTMLResponse:
    form = await request.form()
    password = form.get("password")
    next_url = form.get("next")
    next_url = next_url if isinstance(next_url, str) else None
    client = request.client.host if request.client else "unknown"
    throttle = _throttle(request)
    retry_after = throttle.retry_after(client)
    if retry_after:
        log.warning("dashboard login from %s rejected: too many failures", client)
        response = _form(
            request,
            next_url,
            error=f"Too many failed logins; try again in {retry_after} s.",
            status_code=429,
        )
        response.headers["Retry-After"] = str(retry_after)
        return response

    ok = False
    if isinstance(password, str) and password:
        async with request.app.state.sessions() as session:
            ok = await check_admin_password(session, password)
    if not ok:
        throttle.failed(client)
        log.warning("failed dashboard login from %s", client)
        return _form(request, next_url, error="Wrong password.", status_code=401)

    throttle.succeeded(client)
    log.info("dashboard login from %s", client)
    response = RedirectResponse(safe_next(next_url), status_code=303)
    # A new CSRF token at login, so a token seen before login is useless after.
    write_session(
        request, response, new_session(ADMIN_USER, await session_epoch(request))
    )
    return response


@router.post("/logout", dependencies=[Depends(require_csrf)])
async def logout(request: Request) -> RedirectResponse:
    # The cookie is signed, not stored: only a new epoch makes a copy of it,
    # kept elsewhere, stop working.
    await end_all_sessions(request)
    log.info("dashboard logout; every session ended")
    response = RedirectResponse("/login", status_code=303)
    clear_session(response)
    return response
