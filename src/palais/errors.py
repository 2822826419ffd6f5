"""The one error body of the API and the handlers that render it.

Every error is ``{"error", "field", "value", "accepted"}``: a sentence, the
path of the offending field (or null), the value received (or null) and what
would have been accepted (or null).
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

# Long values are cut in error bodies so that a 1 MB string is not echoed back.
MAX_ECHOED_CHARS = 200


class ApiError(Exception):
    def __init__(
        self,
        status_code: int,
        error: str,
        *,
        field: str | None = None,
        value: Any = None,
        accepted: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status_code = status_code
        self.error = error
        self.field = field
        self.value = value
        self.accepted = accepted
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {
            "error": self.error,
            "field": self.field,
            "value": echo(self.value),
            "accepted": self.accepted,
        }


def invalid(
    field: str, value: Any, accepted: str, problem: str = "invalid"
) -> ApiError:
    """Build a 422 for one field, with a sentence that names it."""
    return ApiError(
        422,
        f"{field}: {problem} value {describe(value)}; accepted: {accepted}",
        field=field,
        value=value,
        accepted=accepted,
    )


def describe(value: Any) -> str:
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return repr(text)
    if isinstance(value, dict):
        return "of type object"
    if isinstance(value, list):
        return "of type array"
    if value is None:
        return "null"
    return repr(value)


def echo(value: Any) -> Any:
    """Return a JSON-safe, bounded copy of a received value."""
    if isinstance(value, str):
        # Lone surrogates cannot be encoded as UTF-8 in the response.
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
        if len(value) > MAX_ECHOED_CHARS:
            return value[:MAX_ECHOED_CHARS] + "..."
        return value
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, (dict, list)):
        return None
    return value


def error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


RETRY_AFTER = {"Retry-After": "5"}
# Errors that mean the database cannot be reached or opened right now. asyncpg
# raises some of them unwrapped while the pool opens a connection.
DATABASE_DOWN_ERRORS: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.CannotConnectNowError,
)

STATUS_SENTENCES = {
    404: "not found",
    405: "method not allowed",
    401: "authentication required",
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(
        request: Request, exc: StarletteHTTPException
    ) -> JSONResponse:
        sentence = exc.detail if isinstance(exc.detail, str) else None
        sentence = sentence or STATUS_SENTENCES.get(exc.status_code, "request failed")
        if exc.status_code == 404 and sentence == "Not Found":
            sentence = f"not found: {request.url.path}"
        return error_response(ApiError(exc.status_code, sentence, headers=exc.headers))

    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        log.error(
            "%s %s failed: database unavailable (%s)",
            request.method,
            request.url.path,
            type(exc).__name__,
        )
        return error_response(
            ApiError(503, "database unavailable; retry later", headers=RETRY_AFTER)
        )

    for error_class in DATABASE_DOWN_ERRORS:
        app.add_exception_handler(error_class, _database_down)

    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, exc: OverflowError) -> JSONResponse:
        # A number or date too large for the database or datetime reached a
        # query. Routes bound their inputs; this keeps a missed one a 4xx.
        log.warning(
            "%s %s: value out of range (%s)", request.method, request.url.path, exc
        )
        return error_response(
            ApiError(422, "a number or date in the request is out of range")
        )

    @app.exception_handler(DBAPIError)
    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: log it whole, but show no internals.
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(ApiError(500, "internal error; see the server log"))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(
        _request: Request, exc: RequestValidationError
    ) -> JSONResponse:
        return error_response(from_validation_error(exc))


def from_validation_error(exc: RequestValidationError) -> ApiError:
    """Turn FastAPI's first validation error into the Palais error body."""
    first = exc.errors()[0]
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    if first.get("type") == "json_invalid":
        return ApiError(400, "malformed JSON body", accepted="a JSON document")
    field = ".".join(
        location[1:] if location[:1] in (["query"], ["path"]) else location
    )
    value = first.get("input")
    accepted = first.get("msg", "a valid value")
    return invalid(field or "body", value, accepted)
