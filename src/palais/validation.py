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
from typing import Any

from palais.errors import ApiError, invalid

# Plain decimal strings, as n8n sends numbers typed into its "fields" mode.
DECIMAL_STRING = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$")
# RFC 3339 date-time. The offset is optional and means UTC when missing.
RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?"
    r"([Zz]|[+-]\d{2}:\d{2})?$"
)
MAX_FUTURE = timedelta(minutes=5)
TIMESTAMP_ACCEPTED = (
    "an RFC 3339 timestamp such as 2026-01-31T12:00:00Z (UTC when the offset is "
    "missing), at most 5 minutes in the future"
)


class NonFinite(float):
    """A NaN or Infinity literal, kept so that validation can name its field."""


def _non_finite(literal: str) -> NonFinite:
    return NonFinite(literal.replace("-Infinity", "-inf").replace("Infinity", "inf"))


def load_json_object(raw: bytes) -> dict[str, Any]:
    """Parse a request body that must be a JSON object (400 or 422 otherwise)."""
    try:
        document = json.loads(raw, parse_constant=_non_finite)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(
            400,
            f"malformed JSON body: {exc}",
            accepted="a JSON object",
        ) from None
    if not isinstance(document, dict):
        raise invalid("body", document, "a JSON object", "invalid")
    return document


def number(
    value: Any,
    field: str,
    *,
    minimum: float,
    maximum: float,
    unit: str = "",
) -> float:
    """Read a JSON number or a plain decimal string within ``[minimum, maximum]``."""
    accepted = f"a number from {minimum:g} to {maximum:g}{unit}"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise invalid(field, value, accepted)
    if isinstance(value, str):
        if not DECIMAL_STRING.match(value.strip()):
            raise invalid(field, value, accepted)
        value = float(value)
    result = float(value)
    if isinstance(value, NonFinite) or not math.isfinite(result):
        raise invalid(field, value, accepted, "non-finite")
    if not minimum <= result <= maximum:
        raise invalid(field, value, accepted, "out-of-range")
    return result


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
    except ValueError:
        raise invalid(field, value, TIMESTAMP_ACCEPTED) from None
    parsed = parsed.astimezone(UTC)
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
            accepted="see the API documentation at /docs",
        )
    return body[key]
