"""Strict parsing of webhook bodies, shared by every JSON route.

Error bodies must name the field, the value and what is accepted, and numbers
may be plain decimal strings but never booleans or strings with units, so
bodies are read by these small functions instead of a Pydantic model. Each one
raises :class:`~palais.errors.ApiError` naming the field, the value and what
is accepted.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Path

from palais.db.types import MAX_ID
from palais.errors import ApiError, invalid

# Plain decimal strings, as n8n sends numbers typed into its "fields" mode.
DECIMAL_STRING = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$")
# RFC 3339 date-time. The offset is optional and means UTC when missing.
RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?"
    r"([Zz]|[+-]\d{2}:\d{2})?$",
    re.ASCII,
)
MAX_FUTURE = timedelta(minutes=5)
# An id in a URL path: a larger number is a 422, not a database overflow.
RowId = Annotated[int, Path(ge=1, le=MAX_ID)]
TIMESTAMP_ACCEPTED = (
    "an RFC 3339 timestamp such as 2026-01-31T12:00:00Z (UTC when the offset is "
    "missing), at most 5 minutes in the future"
)


# Nesting deeper than this is refused before it can exhaust the stack.
MAX_DEPTH = 32
# Integers longer than this are read as floats (and so rejected as infinite
# where a number is expected) instead of hitting Python's digit limit.
MAX_INTEGER_DIGITS = 300


class NonFinite(float):
    """A NaN or Infinity literal, kept so that validation can name its field."""


def _non_finite(literal: str) -> NonFinite:
    return NonFinite(literal.replace("-Infinity", "-inf").replace("Infinity", "inf"))


def _parse_int(digits: str) -> int | float:
    return int(digits) if len(digits) <= MAX_INTEGER_DIGITS else float(digits)


# The first two bytes of every gzip stream (RFC 1952).
GZIP_MAGIC = b"\x1f\x8b"


def load_json_object(raw: bytes) -> dict[str, Any]:
    """Parse a request body that must be a JSON object (400 or 422 otherwise).

    Besides the syntax, every value must be storable as JSON in both
    databases: finite numbers, and strings without NUL characters or lone
    UTF-16 surrogates, nested at most ``MAX_DEPTH`` levels.
    """
    if raw.startswith(GZIP_MAGIC):
        raise ApiError(
            400,
            "malformed JSON body: the body is gzip-compressed. Send the JSON "
            "uncompressed, without Content-Encoding",
            accepted="a JSON object",
        )
    try:
        document = json.loads(raw, parse_constant=_non_finite, parse_int=_parse_int)
    except UnicodeDecodeError:
        raise ApiError(
            400, "malformed JSON body: not UTF-8 text", accepted="a JSON object"
        ) from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400,
            f"malformed JSON body: {exc.msg} at line {exc.lineno} column {exc.colno}",
            accepted="a JSON object",
        ) from None
    except RecursionError:
        raise _too_deep("body") from None
    if not isinstance(document, dict):
        raise invalid("body", document, "a JSON object", "invalid")
    check_storable(document)
    return document


def _too_deep(field: str) -> ApiError:
    accepted = f"JSON nested at most {MAX_DEPTH} levels deep"
    return ApiError(
        422,
        f"{field}: nested too deeply; accepted: {accepted}",
        field=field,
        accepted=accepted,
    )


def check_storable(document: Any) -> None:
    """Raise 422 at the first value that neither database can store."""
    pending: list[tuple[Any, str, int]] = [(document, "", 0)]
    while pending:
        value, path, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise _too_deep(path or "body")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_string(key, path or "body", "object keys")
                pending.append((item, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                pending.append((item, f"{path}[{index}]", depth + 1))
        elif isinstance(value, str):
            _check_string(value, path, "strings")
        elif isinstance(value, float) and not math.isfinite(value):
            raise invalid(path, value, "finite numbers", "non-finite")


def _check_string(value: str, path: str, what: str) -> None:
    if "\x00" in value:
        raise invalid(path, value, f"{what} without NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(path, value, f"{what} of valid Unicode text") from None


def number(
    value: Any,
    field: str,
    *,
    minimum: float,
    maximum: float,
    unit: str = "",
) -> float:
    """Read a JSON number or a plain decimal string within ``[minimum, maximum]``."""
    low, high = format_bound(minimum), format_bound(maximum)
    accepted = f"a number from {low} to {high}{unit}"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise invalid(field, value, accepted)
    if isinstance(value, str):
        if not DECIMAL_STRING.match(value):
            raise invalid(field, value, accepted)
        value = float(value)
    result = float(value)
    if isinstance(value, NonFinite) or not math.isfinite(result):
        raise invalid(field, value, accepted, "non-finite")
    if not minimum <= result <= maximum:
        raise invalid(field, value, accepted, "out-of-range")
    return result


def format_bound(value: float) -> str:
    """Format a range bound for a message: 2147483647, not 2.14748e+09."""
    if isinstance(value, int) or (
        math.isfinite(value) and value == int(value) and abs(value) < 1e16
    ):
        return str(int(value))
    return f"{value:g}"


def optional_number(
    value: Any, field: str, *, minimum: float, maximum: float, unit: str = ""
) -> float | None:
    if value is None:
        return None
    return number(value, field, minimum=minimum, maximum=maximum, unit=unit)


def integer(value: Any, field: str, *, minimum: int, maximum: int) -> int:
    accepted = f"a whole number from {minimum} to {maximum}"
    result = number(value, field, minimum=minimum, maximum=maximum)
    if result != int(result):
        raise invalid(field, value, accepted)
    return int(result)


def text(
    value: Any,
    field: str,
    *,
    max_length: int,
    min_length: int = 1,
    pattern: re.Pattern[str] | None = None,
    accepted: str | None = None,
) -> str:
    accepted = accepted or f"a string of {min_length} to {max_length} characters"
    if not isinstance(value, str):
        raise invalid(field, value, accepted)
    stripped = value.strip()
    if not min_length <= len(stripped) <= max_length:
        problem = "empty" if not stripped else "invalid"
        raise invalid(field, value, accepted, problem)
    if any(ord(char) < 32 or ord(char) == 127 for char in stripped):
        raise invalid(field, value, accepted + " without control characters")
    if pattern is not None and not pattern.match(stripped):
        raise invalid(field, value, accepted)
    return stripped


def choice(value: Any, field: str, choices: tuple[str, ...]) -> str:
    accepted = "one of " + ", ".join(choices)
    if not isinstance(value, str) or value not in choices:
        raise invalid(field, value, accepted, "unknown")
    return value


def timestamp(
    value: Any, field: str, *, now: datetime, allow_future: bool = False
) -> datetime:
    """Read an RFC 3339 timestamp, taking one without an offset as UTC."""
    match = RFC3339.match(value) if isinstance(value, str) else None
    if match is None:
        raise invalid(field, value, TIMESTAMP_ACCEPTED)
    day, clock, fraction, offset = match.groups()
    # Go programs such as Headscale and restic send up to 9 fractional digits,
    # and Python keeps 6.
    fraction = (fraction or "")[:7]
    offset = "+00:00" if offset in (None, "Z", "z") else offset
    try:
        parsed = datetime.fromisoformat(f"{day}T{clock}{fraction}{offset}")
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise invalid(field, value, TIMESTAMP_ACCEPTED) from None
    if not allow_future and parsed > now + MAX_FUTURE:
        raise invalid(field, value, TIMESTAMP_ACCEPTED, "future")
    return parsed


def optional_timestamp(
    value: Any, field: str, *, now: datetime, allow_future: bool = False
) -> datetime | None:
    if value is None:
        return None
    return timestamp(value, field, now=now, allow_future=allow_future)


def object_or_none(value: Any, field: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid(field, value, "a JSON object or null")
    return value


def array(value: Any, field: str, *, max_items: int) -> list[Any]:
    accepted = f"an array of at most {max_items} items"
    if not isinstance(value, list):
        raise invalid(field, value, accepted)
    if len(value) > max_items:
        raise ApiError(
            422,
            f"{field}: too many items ({len(value)}); accepted: {accepted}",
            field=field,
            value=len(value),
            accepted=accepted,
        )
    return value


def required(body: dict[str, Any], key: str, prefix: str = "") -> Any:
    if key not in body:
        raise ApiError(
            422,
            f"{prefix}{key}: missing required field",
            field=f"{prefix}{key}",
            accepted=f"a value for {prefix}{key}",
        )
    return body[key]
