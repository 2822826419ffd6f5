"""Bearer-token authentication of the JSON API."""

from __future__ import annotations

import hmac

from fastapi import Request

from palais.errors import ApiError

TOKEN_HEADER_ALTERNATIVE = "x-palais-token"


def presented_token(request: Request) -> str | None:
    """Read the token from ``Authorization: Bearer`` or ``X-Palais-Token``.

    The second header serves senders that can set a header but not the
    Bearer scheme, such as n8n's Header Auth credential.
    """
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.headers.get(TOKEN_HEADER_ALTERNATIVE) or None


async def require_token(request: Request) -> None:
    expected: str = request.app.state.api_token
    token = presented_token(request)
    if token is None:
        raise ApiError(
            401,
            "missing API token; send the header 'Authorization: Bearer <token>'",
            field="Authorization",
            accepted="Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise ApiError(
            401,
            "invalid API token",
            field="Authorization",
            accepted="Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
