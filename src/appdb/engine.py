"""The only place engines are built: `create_engine`, `create_async_engine`, lazy defaults."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import create_async_engine as _sa_create_async_engine
from sqlalchemy.pool import QueuePool

from appdb._errors import TranslatingAsyncQueuePool, TranslatingQueuePool, translate_errors
from appdb._redact import redact_engine_logs
from appdb.settings import DatabaseSettings, get_settings

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine
    from sqlalchemy.pool import ConnectionPoolEntry

__all__ = [
    "create_async_engine",
    "create_async_replica_engines",
    "create_engine",
    "create_replica_engines",
    "get_async_engine",
    "get_async_replica_engines",
    "get_engine",
    "get_replica_engines",
    "reset_engines",
]

_lock = threading.Lock()
_engine: Engine | None = None
_async_engine: AsyncEngine | None = None
_replica_engines: tuple[Engine, ...] | None = None
_async_replica_engines: tuple[AsyncEngine, ...] | None = None


def _postgresql_connect_args(settings: DatabaseSettings) -> dict[str, Any]:
    """Connection parameters for psycopg: timeouts and the name shown in pg_stat_activity."""
    connect_args: dict[str, Any] = {
        "connect_timeout": settings.connect_timeout,
        "application_name": settings.application_name,
    }
    # Merge rather than replace: a URL may already carry ?options=-c...
    options = [str(settings.database_url.query.get("options", ""))]
    if settings.statement_timeout and not settings.uses_transaction_pooler:
        options.append(f"-c statement_timeout={settings.statement_timeout}")
    if joined := " ".join(option for option in options if option):
        connect_args["options"] = joined
    if settings.uses_transaction_pooler:
        connect_args |= _transaction_pooler_connect_args()
    return connect_args


def _transaction_pooler_connect_args() -> dict[str, Any]:
    """Connection parameters for a transaction pooler, which hands each transaction any server.

    A prepared statement lives on the server connection that prepared it: the next
    transaction may run on another one ("prepared statement ... does not exist") or on one
    where another client prepared the same name ("... already exists").
    """
    return {"prepare_threshold": None}


def _apply_transaction_pooler(sync_engine: Engine, settings: DatabaseSettings) -> None:
    """Settings a startup packet would carry, applied per transaction instead.

    PgBouncer refuses (or drops) the ``options`` startup parameter, and a session-level ``SET``
    would outlive the transaction on a server connection other clients get next, so the
    statement timeout is set with ``SET LOCAL`` when each transaction begins.
    """
    if not settings.statement_timeout:
        return
    set_local = f"SET LOCAL statement_timeout = {int(settings.statement_timeout)}"

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: sqlalchemy.Connection) -> None:
        connection.exec_driver_sql(set_local)


_POOL_SIZING = ("pool_size", "max_overflow", "pool_timeout")


def _engine_arguments(settings: DatabaseSettings, overrides: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for SQLAlchemy's engine constructors, shared by sync and async.

    `overrides` win; a pool class without a queue (``NullPool``) drops the sizing arguments.
    """
    arguments: dict[str, Any] = {
        "echo": settings.echo,
        "pool_pre_ping": settings.pool_pre_ping,
        # Statement parameters can hold password hashes and personal data: keep them out of
        # logs and exception messages.
        "hide_parameters": True,
    }
    if settings.is_postgresql:
        arguments |= {
            "pool_size": settings.pool_size,
            "max_overflow": settings.max_overflow,
            "pool_timeout": settings.pool_timeout,
            "pool_recycle": settings.pool_recycle,
            "connect_args": _postgresql_connect_args(settings),
        }
    else:
        arguments["connect_args"] = {
            "timeout": settings.sqlite_busy_timeout,
            # FastAPI runs sync routes in a thread pool; the pool already keeps one
            # connection per checkout, so SQLite's same-thread guard only gets in the way.
            "check_same_thread": False,
        }
    arguments |= overrides
    if "poolclass" in overrides and not issubclass(overrides["poolclass"], QueuePool):
        for name in _POOL_SIZING:
            arguments.pop(name, None)
    return arguments


def _enable_sqlite_foreign_keys(sync_engine: Engine) -> None:
    """SQLite ignores foreign keys unless each connection asks for them."""

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()


def create_engine(settings: DatabaseSettings | None = None, **kwargs: Any) -> Engine:
    """Build a synchronous engine from settings.

    Args:
        settings: The settings to use; `get_settings()` when omitted.
        **kwargs: Extra `sqlalchemy.create_engine` arguments, overriding appdb's.

    Returns:
        A new engine. It does not connect until first used; then it raises
        `DatabaseUnavailableError` (unreachable), `ConnectionLostError`, `PoolTimeoutError`
        and `StatementTimeoutError` instead of the driver's errors.
    """
    settings = settings or get_settings()
    redact_engine_logs()
    if settings.is_postgresql:
        kwargs = {"poolclass": TranslatingQueuePool} | kwargs
    engine = sqlalchemy.create_engine(settings.database_url, **_engine_arguments(settings, kwargs))
    if settings.is_sqlite:
        _enable_sqlite_foreign_keys(engine)
    if settings.uses_transaction_pooler:
        _apply_transaction_pooler(engine, settings)
    translate_errors(engine, settings.database_url, settings.statement_timeout)
    return engine


def _async_url(url: URL) -> URL:
    """The same database through an asyncio driver (psycopg 3 is both; SQLite needs aiosqlite)."""
    if url.get_backend_name() == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    return url


def create_async_engine(settings: DatabaseSettings | None = None, **kwargs: Any) -> AsyncEngine:
    """Build an asyncio engine from the same settings as `create_engine`.

    Args:
        settings: The settings to use; `get_settings()` when omitted.
        **kwargs: Extra `sqlalchemy.ext.asyncio.create_async_engine` arguments.

    Returns:
        A new async engine. It does not connect until first used, and raises the same
        appdb exceptions as `create_engine`'s.
    """
    settings = settings or get_settings()
    redact_engine_logs()
    if settings.is_postgresql:
        kwargs = {"poolclass": TranslatingAsyncQueuePool} | kwargs
    engine = _sa_create_async_engine(
        _async_url(settings.database_url), **_engine_arguments(settings, kwargs)
    )
    if settings.is_sqlite:
        _enable_sqlite_foreign_keys(engine.sync_engine)
    if settings.uses_transaction_pooler:
        _apply_transaction_pooler(engine.sync_engine, settings)
    translate_errors(engine.sync_engine, settings.database_url, settings.statement_timeout)
    return engine


def get_engine() -> Engine:
    """Return the process-wide engine, built from `get_settings()` on first call.

    Returns:
        The default engine that `SessionLocal` binds to.
    """
    global _engine  # noqa: PLW0603 - a lazily built process-wide default
    if _engine is None:
        with _lock:
            if _engine is None:
                _engine = create_engine()
    return _engine


def get_async_engine() -> AsyncEngine:
    """Return the process-wide async engine, built from `get_settings()` on first call.

    Returns:
        The default engine that `AsyncSessionLocal` binds to.
    """
    global _async_engine  # noqa: PLW0603 - a lazily built process-wide default
    if _async_engine is None:
        with _lock:
            if _async_engine is None:
                _async_engine = create_async_engine()
    return _async_engine


def _replica_settings(settings: DatabaseSettings) -> list[DatabaseSettings]:
    return [settings.model_copy(update={"url": url}) for url in settings.replica_urls]


def create_replica_engines(
    settings: DatabaseSettings | None = None, **kwargs: Any
) -> tuple[Engine, ...]:
    """Build one synchronous engine per read replica (`DATABASE_REPLICA_URLS`).

    Each gets the primary's pool, timeout and pooler settings.

    Args:
        settings: The settings to use; `get_settings()` when omitted.
        **kwargs: Extra `sqlalchemy.create_engine` arguments, overriding appdb's.

    Returns:
        The replica engines, in the order of the setting; empty when there are none.
    """
    settings = settings or get_settings()
    return tuple(create_engine(replica, **kwargs) for replica in _replica_settings(settings))


def create_async_replica_engines(
    settings: DatabaseSettings | None = None, **kwargs: Any
) -> tuple[AsyncEngine, ...]:
    """Build one asyncio engine per read replica, as `create_replica_engines` does.

    Args:
        settings: The settings to use; `get_settings()` when omitted.
        **kwargs: Extra `sqlalchemy.ext.asyncio.create_async_engine` arguments.

    Returns:
        The replica engines; empty when there are none.
    """
    settings = settings or get_settings()
    return tuple(create_async_engine(replica, **kwargs) for replica in _replica_settings(settings))


def get_replica_engines() -> tuple[Engine, ...]:
    """Return the process-wide replica engines, built from `get_settings()` on first call.

    Returns:
        The engines `SessionLocal` reads from; empty without `DATABASE_REPLICA_URLS`.
    """
    global _replica_engines  # noqa: PLW0603 - see get_engine
    if _replica_engines is None:
        with _lock:
            if _replica_engines is None:
                _replica_engines = create_replica_engines()
    return _replica_engines


def get_async_replica_engines() -> tuple[AsyncEngine, ...]:
    """Return the process-wide async replica engines, built from `get_settings()` on first call.

    Returns:
        The engines `AsyncSessionLocal` reads from; empty without `DATABASE_REPLICA_URLS`.
    """
    global _async_replica_engines  # noqa: PLW0603 - see get_engine
    if _async_replica_engines is None:
        with _lock:
            if _async_replica_engines is None:
                _async_replica_engines = create_async_replica_engines()
    return _async_replica_engines


def _reset_replica_engines(*, close: bool) -> None:
    """Forget the replica engines; the caller holds `_lock`."""
    global _replica_engines, _async_replica_engines  # noqa: PLW0603 - see get_engine
    for engine in _replica_engines or ():
        engine.dispose(close=close)
    for async_engine in _async_replica_engines or ():
        async_engine.sync_engine.dispose(close=False)
    _replica_engines = None
    _async_replica_engines = None


def reset_engines(*, close: bool = True) -> None:
    """Dispose of the default engines so that the next use builds them again.

    Call it in tests after changing settings, and in a child process after `fork()` with
    ``close=False`` (the parent still owns the sockets). It also forgets the cached settings.
    Async connections cannot be closed from synchronous code: await
    ``get_async_engine().dispose()`` first for a clean shutdown.

    Args:
        close: Close pooled connections (``False``: only forget them).
    """
    global _engine, _async_engine  # noqa: PLW0603 - see get_engine
    with _lock:
        if _engine is not None:
            _engine.dispose(close=close)
        if _async_engine is not None:
            _async_engine.sync_engine.dispose(close=False)
        _engine = None
        _async_engine = None
        _reset_replica_engines(close=close)
    get_settings.cache_clear()
