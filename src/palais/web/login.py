"""Login and logout of the dashboard (cookie session, one admin)."""

from __future__ import annotations

import logging

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
from palais.web.throttle import LoginThrottle

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)


def _throttle(request: Request) -> LoginThrottle:
    state = request.app.state
    if getattr(state, "login_throttle", None) is None:
        state.login_throttle = LoginThrottle(state.sessions)
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
    attempt, retry_after = await throttle.claim(client)
    if attempt is None:
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
        # The attempt's row stays and counts as a failure.
        log.warning("failed dashboard login from %s", client)
        return _form(request, next_url, error="Wrong password.", status_code=401)

    await throttle.succeeded(client)
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
