"""Column types shared by appdb's models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Integer, types
from sqlalchemy.engine.interfaces import Dialect

__all__ = ["BIGINT_MAX", "BigIntegerPK", "UTCDateTime"]

BIGINT_MAX = 2**63 - 1
"""The largest value a BIGINT column holds: the bound of every id and Telegram id."""

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY (an alias of the
# 64-bit rowid), so BIGINT there would silently lose auto-increment.
BigIntegerPK: types.TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(types.TypeDecorator[datetime]):
    """`TIMESTAMP WITH TIME ZONE` that accepts only aware datetimes and returns them in UTC.

    SQLite has no time zones and hands back naive values; they are stored as UTC, so they are
    returned as UTC.
    """

    impl: types.TypeEngine[Any] | type[types.TypeEngine[Any]] = types.DateTime(timezone=True)
    cache_ok: bool | None = True

    def coerce_compared_value(self, op: Any, value: Any) -> types.TypeEngine[Any]:
        """Compare against intervals as intervals (``created_at > now() - interval``)."""
        del op
        if isinstance(value, timedelta):
            return types.Interval()
        return self

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Reject naive datetimes; store aware ones converted to UTC."""
        del dialect
        if value is None:
            return None
        if value.utcoffset() is None:
            msg = "naive datetime: pass an aware one, e.g. datetime.now(UTC)"
            raise ValueError(msg)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return aware UTC datetimes on every backend."""
        del dialect
        if value is None:
            return None
        if value.utcoffset() is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
