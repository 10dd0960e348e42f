"""Driver and pool failures become appdb exceptions, on every engine `appdb.engine` builds.

A SQLAlchemy ``handle_error`` listener replaces the driver's errors for a refused or broken
connection and a cancelled statement; SQLAlchemy still invalidates the broken connection (and
the pool) before the new exception propagates, chained from the driver's. Pool exhaustion is
raised by the pool itself, so the pools are subclassed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import AsyncAdaptedQueuePool, QueuePool

from appdb._deadline import expired_limit
from appdb._redaction import describe_error, where
from appdb.exceptions import (
    AppDBError,
    ConnectionLostError,
    DatabaseBusyError,
    DatabaseUnavailableError,
    DeadlockError,
    PermissionDeniedError,
    PoolTimeoutError,
    ReadOnlyTransactionError,
    SchemaMismatchError,
    SerializationError,
    StatementTimeoutError,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine, ExceptionContext
    from sqlalchemy.pool import PoolProxiedConnection

__all__ = ["TranslatingAsyncQueuePool", "TranslatingQueuePool", "translate_errors"]

# SQLSTATE query_canceled: statement_timeout, or pg_cancel_backend().
_QUERY_CANCELED = "57014"
# SQLSTATE undefined_table and undefined_column; SQLite says it in words.
_UNDEFINED = {"42P01": "table", "42703": "column"}
_SQLITE_UNDEFINED = re.compile(r"^no such (table|column)\b|^table \S+ has no (column) named\b")


def _missing(original: BaseException) -> str | None:
    """``table`` or ``column`` when the database lacks one that the statement names."""
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate is not None:
        return _UNDEFINED.get(sqlstate)
    found = _SQLITE_UNDEFINED.search(str(original))
    return None if found is None else next(kind for kind in found.groups() if kind)


def _mismatch(place: str, kind: str, reason: str) -> SchemaMismatchError:
    msg = (
        f"the database at {place} lacks a {kind} this appdb uses ({reason}): its schema is not "
        "the one this version expects; if a newer appdb's breaking migration ran, upgrade "
        "appdb here (`appdb-migrate current` shows the database's revision)"
    )
    return SchemaMismatchError(msg)


def _statement_error(
    original: BaseException, place: str, reason: str, statement_timeout: int | None
) -> AppDBError | None:
    """The appdb exception for a statement the server refused, or ``None``."""
    if getattr(original, "sqlstate", None) == _QUERY_CANCELED:
        limit = ""
        if statement_timeout:
            limit = f" (DATABASE_STATEMENT_TIMEOUT is {statement_timeout} ms)"
        msg = (
            f"the database at {place} cancelled the statement: {reason}{limit}; "
            "roll back the session and it is usable again"
        )
        return StatementTimeoutError(msg)
    if (kind := _missing(original)) is not None:
        return _mismatch(place, kind, reason)
    return _translated_by_code(original, place, reason)


# SQLSTATEs of errors that say nothing about the data, each with its exception and advice.
_BY_SQLSTATE: dict[str, tuple[type[AppDBError], str]] = {
    "42501": (PermissionDeniedError, "grant the service's database role the privilege"),
    "40P01": (DeadlockError, "the transaction was rolled back to break a deadlock; retry it"),
    "40001": (SerializationError, "a concurrent transaction won; retry the transaction"),
}
# SQLite's primary result codes for a lock another connection holds.
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


# SQLSTATE read_only_sql_transaction: a write reached a server that takes none, which on an HA
# engine means a node that was demoted, or promoted but not yet let take writes, by a failover.
_READ_ONLY_SQL_TRANSACTION = "25006"


def _read_only(context: ExceptionContext, place: str, url: URL) -> AppDBError | None:
    """`ReadOnlyTransactionError` for a write refused by a read-only server, which is discarded."""
    original = context.original_exception
    if getattr(original, "sqlstate", None) != _READ_ONLY_SQL_TRANSACTION:
        return None
    reason = describe_error(original, url)
    # The connection is healthy but on the wrong server: discard it, and with it the pool (its
    # other connections were made to the same node), so that the next checkout reconnects and
    # libpq's target_session_attrs=read-write finds the primary.
    context.is_disconnect = True
    msg = (
        f"the database at {place} is read-only ({reason}): a standby, or a primary being "
        "switched over (or point DATABASE_URL at the primary); the transaction was rolled "
        "back; retry it; roll the session back and it is usable again"
    )
    return ReadOnlyTransactionError(msg)


def _translated(
    context: ExceptionContext, place: str, url: URL, statement_timeout: int | None
) -> AppDBError | None:
    """The appdb exception for a driver error, or ``None`` to let SQLAlchemy's stand."""
    # A failed pre-ping is handled by the pool, which reconnects; anything that is not a
    # driver error (a cancelled task, a bug) must propagate unchanged.
    if context.is_pre_ping or context.sqlalchemy_exception is None:
        return None
    original = context.original_exception
    reason = describe_error(original, url)
    if context.connection is None:
        if isinstance(original, context.dialect.loaded_dbapi.OperationalError):
            msg = f"cannot connect to the database at {place}: {reason}"
            return DatabaseUnavailableError(msg)
        return None
    if context.is_disconnect:
        if context.statement is None:
            outcome = "the commit or rollback under way may or may not have taken effect"
        else:
            outcome = "the transaction was rolled back; retry it"
        if (cut_after := expired_limit(context)) is not None:
            reason = (
                f"no answer within {cut_after:g}s (DATABASE_CLIENT_TIMEOUT); hung or unreachable"
            )
        msg = f"lost the connection to the database at {place} ({reason}): {outcome}"
        return ConnectionLostError(msg)
    return _statement_error(original, place, reason, statement_timeout)


def _translated_by_code(original: BaseException, place: str, reason: str) -> AppDBError | None:
    """The appdb exception for a PostgreSQL SQLSTATE or a SQLite lock, else ``None``.

    The message quotes the driver's first line only: never the statement or its parameters.
    """
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate in _BY_SQLSTATE:
        error_class, advice = _BY_SQLSTATE[sqlstate]
        msg = f"the database at {place} refused the statement: {reason}; {advice}"
        msg += "; roll the session back and it is usable again"
        return error_class(msg)
    code = getattr(original, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in {_SQLITE_BUSY, _SQLITE_LOCKED}:
        msg = (
            f"the SQLite database {place} stayed locked by another connection for all of "
            f"DATABASE_SQLITE_BUSY_TIMEOUT ({reason}); nothing was written, retry later"
        )
        return DatabaseBusyError(msg)
    return None


def translate_errors(engine: Engine, url: URL, statement_timeout: int | None = None) -> None:
    """Make `engine` raise appdb exceptions for lost connections and cancelled statements.

    Args:
        engine: A sync engine, or an async engine's ``sync_engine``.
        url: The URL it connects to (named in messages without its password).
        statement_timeout: The configured ``statement_timeout`` (ms), quoted in messages.
    """
    place = where(url)

    def handle_error(context: ExceptionContext) -> None:
        error = _read_only(context, place, url) or _translated(
            context, place, url, statement_timeout
        )
        if error is not None:
            raise error

    event.listen(engine, "handle_error", handle_error)


def _pool_timeout_message(pool: QueuePool) -> str:
    overflow = pool._max_overflow  # noqa: SLF001 - QueuePool has no public accessor for it
    return (
        f"no free database connection within {pool.timeout():g}s: all {pool.size() + overflow} "
        f"(DATABASE_POOL_SIZE {pool.size()} + DATABASE_MAX_OVERFLOW {overflow}) are checked "
        "out; close sessions sooner or raise the pool size"
    )


class TranslatingQueuePool(QueuePool):
    """SQLAlchemy's `QueuePool`, raising `PoolTimeoutError` when no connection frees up in time."""

    def connect(self) -> PoolProxiedConnection:
        """Check out a connection, waiting at most the pool timeout.

        Raises:
            PoolTimeoutError: Every connection stayed checked out for the whole wait.
        """
        try:
            return super().connect()
        except sa_exc.TimeoutError as exc:
            raise PoolTimeoutError(_pool_timeout_message(self)) from exc


class TranslatingAsyncQueuePool(AsyncAdaptedQueuePool):
    """The asyncio twin of `TranslatingQueuePool`."""

    def connect(self) -> PoolProxiedConnection:
        """Check out a connection, waiting at most the pool timeout.

        Raises:
            PoolTimeoutError: Every connection stayed checked out for the whole wait.
        """
        try:
            return super().connect()
        except sa_exc.TimeoutError as exc:
            raise PoolTimeoutError(_pool_timeout_message(self)) from exc
