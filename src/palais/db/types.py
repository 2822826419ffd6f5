"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, BigInteger, DateTime, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

# SQLite only auto-increments an INTEGER PRIMARY KEY, so big ids are plain
# integers there and BIGINT on PostgreSQL.
BigId = BigInteger().with_variant(Integer(), "sqlite")

JSONValue = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in Python.

    PostgreSQL stores ``timestamptz``. SQLite has no time zones, so the value is
    stored as naive UTC text, which keeps string comparison in SQL correct.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):  # noqa: ANN001
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}; Palais stores only UTC")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):  # noqa: ANN001
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


# The largest value of an INTEGER id column on PostgreSQL; routes bound their
# id parameters with it so that a huge number is a 422, not a driver error.
MAX_ID = 2_147_483_647
