"""Driver and pool failures become appdb exceptions, on every engine `appdb.engine` builds.

A SQLAlchemy ``handle_error`` listener replaces the driver's errors for a refused or broken
connection and a cancelled statement; SQLAlchemy still invalidates the broken connection (and
the pool) before the new exception propagates, chained from the driver's. Pool exhaustion is
raised by the pool itself, so the pools are subclassed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import AsyncAdaptedQueuePool, QueuePool

from appdb.exceptions import (
    AppDBError,
    ConnectionLostError,
    DatabaseUnavailableError,
    PoolTimeoutError,
    StatementTimeoutError,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine, ExceptionContext
    from sqlalchemy.pool import PoolProxiedConnection

__all__ = ["TranslatingAsyncQueuePool", "TranslatingQueuePool", "translate_errors", "where"]

# SQLSTATE query_canceled: statement_timeout, or pg_cancel_backend().
_QUERY_CANCELED = "57014"


def where(url: URL) -> str:
    """Name the database for humans without credentials: ``host:port``, or the SQLite file.

    Args:
        url: The engine's URL.

    Returns:
        ``host:port`` for a server, the file name (or ``:memory:``) for SQLite.
    """
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    host = url.host or str(url.query.get("host") or "localhost")
    return f"{host}:{url.port or 5432}"


def _reason(error: BaseException, secret: str | None) -> str:
    """The driver's first line, spaces collapsed, any password removed (belt and braces)."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    reason = " ".join(lines[0].split())
    if secret:
        for form in {secret, quote(secret, safe="")}:
            reason = reason.replace(form, "***")
    return reason


def _translated(
    context: ExceptionContext, place: str, secret: str | None, statement_timeout: int | None
) -> AppDBError | None:
    """The appdb exception for a driver error, or ``None`` to let SQLAlchemy's stand."""
    # A failed pre-ping is handled by the pool, which reconnects; anything that is not a
    # driver error (a cancelled task, a bug) must propagate unchanged.
    if context.is_pre_ping or context.sqlalchemy_exception is None:
        return None
    original = context.original_exception
    reason = _reason(original, secret)
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
        msg = f"lost the connection to the database at {place} ({reason}): {outcome}"
        return ConnectionLostError(msg)
    if getattr(original, "sqlstate", None) == _QUERY_CANCELED:
        limit = ""
        if statement_timeout:
            limit = f" (DATABASE_STATEMENT_TIMEOUT is {statement_timeout} ms)"
        msg = (
            f"the database at {place} cancelled the statement: {reason}{limit}; "
            "roll back the session and it is usable again"
        )
        return StatementTimeoutError(msg)
    return None


def translate_errors(engine: Engine, url: URL, statement_timeout: int | None = None) -> None:
    """Make `engine` raise appdb exceptions for lost connections and cancelled statements.

    Args:
        engine: A sync engine, or an async engine's ``sync_engine``.
        url: The URL it connects to (named in messages without its password).
        statement_timeout: The configured ``statement_timeout`` (ms), quoted in messages.
    """
    place = where(url)
    secret = None if url.password is None else str(url.password)

    def handle_error(context: ExceptionContext) -> None:
        error = _translated(context, place, secret, statement_timeout)
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
