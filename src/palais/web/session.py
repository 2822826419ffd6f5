"""Dashboard login: the admin password, the signed session cookie and CSRF.

Pages depend on :func:`require_login`; forms that change something also
depend on :func:`require_csrf` and render ``{{ csrf_field() }}`` (see
:mod:`palais.web.templating`). The JSON API keeps its bearer token and never
reads this cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request, Response
from fastapi.exceptions import HTTPException
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from palais.db.models import AdminCredential
from palais.db.types import utcnow

log = logging.getLogger(__name__)

SESSION_COOKIE = "palais_session"
SESSION_MAX_AGE_SECONDS = 7 * 24 * 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
ADMIN_USER = "admin"

# scrypt cost: 16 MiB of memory and about 50 ms per hash on a small server,
# which makes guessing slow without making a login slow.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_MAX_MEMORY = 64 * 1024 * 1024


def hash_password(password: str) -> str:
    """Hash a password with a random salt as ``scrypt$n$r$p$salt$hash``."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(
        [
            "scrypt",
            str(SCRYPT_N),
            str(SCRYPT_R),
            str(SCRYPT_P),
            _b64(salt),
            _b64(digest),
        ]
    )


def verify_password(password: str, stored: str) -> bool:
    """Check a password against a stored hash in constant time."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.urlsafe_b64decode(digest)
        actual = _scrypt(
            password, base64.urlsafe_b64decode(salt), int(n), int(r), int(p)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=SCRYPT_MAX_MEMORY, dklen=32
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


async def ensure_admin_credentials(session: AsyncSession, password: str) -> None:
    """Store the hash of the configured admin password unless it already matches.

    Called at start: setting a new PALAIS_ADMIN_PASSWORD replaces the old hash.
    """
    async with session.begin():
        row = await session.scalar(select(AdminCredential).order_by(AdminCredential.id))
        if row is not None and verify_password(password, row.password_hash):
            return
        if row is None:
            session.add(AdminCredential(password_hash=hash_password(password)))
            log.info("stored the admin password hash")
            return
        row.password_hash = hash_password(password)
        row.updated_at = utcnow()
        log.info("admin password changed; stored the new hash")


async def session_epoch(request: Request) -> str:
    """Return the time of the last password change or logout, as text.

    A session records the epoch it was created in and is valid only while the
    epoch stays the same, so a logout or a new password ends every session,
    in every process that shares the database.
    """
    async with request.app.state.sessions() as session:
        changed = await session.scalar(
            select(AdminCredential.updated_at).order_by(AdminCredential.id)
        )
    return changed.isoformat() if changed else ""


async def end_all_sessions(request: Request) -> None:
    async with request.app.state.sessions() as session, session.begin():
        await session.execute(update(AdminCredential).values(updated_at=utcnow()))


async def check_admin_password(session: AsyncSession, password: str) -> bool:
    stored = await session.scalar(
        select(AdminCredential.password_hash).order_by(AdminCredential.id)
    )
    return stored is not None and verify_password(password, stored)


def _serializer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        request.app.state.session_secret, salt="palais-session"
    )


def read_session(request: Request) -> dict[str, Any]:
    """Return the verified session payload, or an empty dict."""
    cached = request.scope.get("palais.session")
    if cached is not None:
        return cached
    raw = request.cookies.get(SESSION_COOKIE)
    payload: dict[str, Any] = {}
    if raw:
        try:
            loaded = _serializer(request).loads(raw, max_age=SESSION_MAX_AGE_SECONDS)
        except BadSignature:
            loaded = None
        if isinstance(loaded, dict):
            payload = loaded
    request.scope["palais.session"] = payload
    return payload


def write_session(
    request: Request, response: Response, payload: dict[str, Any]
) -> None:
    """Sign ``payload`` into the session cookie of ``response``."""
    request.scope["palais.session"] = payload
    response.set_cookie(
        SESSION_COOKIE,
        _serializer(request).dumps(payload),
        max_age=SESSION_MAX_AGE_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def clear_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")


def new_session(user: str | None, epoch: str = "") -> dict[str, Any]:
    payload: dict[str, Any] = {"csrf": secrets.token_urlsafe(24)}
    if user is not None:
        payload["user"] = user
        payload["epoch"] = epoch
    return payload


def current_user(request: Request) -> str | None:
    user = read_session(request).get("user")
    return user if isinstance(user, str) else None


def csrf_token(request: Request) -> str:
    """Return the session's CSRF token (empty when there is no session yet)."""
    token = read_session(request).get("csrf")
    return token if isinstance(token, str) else ""


async def logged_in_user(request: Request) -> str | None:
    """Return the session's user unless a logout or new password ended it."""
    user = current_user(request)
    if user is None:
        return None
    if read_session(request).get("epoch") != await session_epoch(request):
        log.info("session of %s ended by a logout or a password change", user)
        return None
    return user


async def require_login(request: Request) -> str:
    """Dependency of every page: the logged-in user, or a redirect to /login.

    htmx requests get 401 with ``HX-Redirect``, because the browser would
    otherwise follow the redirect and swap the login page into a fragment.
    """
    user = await logged_in_user(request)
    if user is not None:
        return user
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    # After login an htmx poll should land on its page, not on the fragment.
    current_page = urlsplit(request.headers.get("hx-current-url", "")).path
    if request.headers.get("hx-request") == "true" and current_page:
        target = current_page
    login_url = "/login?next=" + quote(target, safe="")
    if request.headers.get("hx-request") == "true":
        raise HTTPException(401, "login required", headers={"HX-Redirect": login_url})
    raise HTTPException(303, "login required", headers={"Location": login_url})


async def require_csrf(request: Request) -> None:
    """Dependency of every cookie-authenticated POST, PUT, PATCH or DELETE.

    The token comes from the form field ``csrf_token`` or the header
    ``X-CSRF-Token`` (htmx sends it from ``hx-headers`` in the base template).
    """
    expected = csrf_token(request)
    presented = request.headers.get(CSRF_HEADER)
    if presented is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            form = await request.form()
            value = form.get(CSRF_FIELD)
            presented = value if isinstance(value, str) else None
    if not expected or not presented or not hmac.compare_digest(expected, presented):
        raise HTTPException(
            403,
            "invalid or missing CSRF token; reload the page and try again",
        )


def safe_next(target: str | None) -> str:
    """Keep post-login redirects on this site: a local path or /health."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/health"
    if "\\" in target or any(ord(char) < 32 for char in target):
        return "/health"
    return target
