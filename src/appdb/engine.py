"""The only place engines are built: `create_engine`, `create_async_engine`, lazy defaults."""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.pool import QueuePool

from appdb import _asyncpg
from appdb._deadline import apply_client_timeout, effective_client_timeout
from appdb._errors import TranslatingAsyncQueuePool, TranslatingQueuePool, translate_errors
from appdb._ping import inspect_before_ping
from appdb._redaction import redact_engine_logs, redact_logs_of, render_url, where
from appdb.clients import installed_versions, tag_application_name
from appdb.exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.engine import URL, Engine
    from sqlalchemy.ext.asyncio import AsyncEngine
    from sqlalchemy.pool import ConnectionPoolEntry

    from appdb.settings import DatabaseSettings

__all__ = [
    "begin_statements",
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

_T = TypeVar("_T")


def default_settings() -> DatabaseSettings:
    """`appdb.settings.get_settings()`, imported with the first engine rather than with appdb."""
    # pydantic-settings and the settings model take ~50 ms to import; a process that never
    # builds an engine (a CLI's --help, a test that only uses the models) skips them.
    from appdb.settings import get_settings  # noqa: PLC0415

    return get_settings()


class _Lazy(Generic[_T]):
    """A process-wide default: built by `build` on the first `get()`, forgotten by `reset()`.

    Threads that ask at the same time get the same value; `build` runs once until a reset.
    """

    def __init__(self, build: Callable[[], _T]) -> None:
        self._build = build
        self._value: _T | None = None
        self._lock = threading.Lock()

    def get(self) -> _T:
        """The value, built now if this is the first call since the last reset."""
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
                value = self._value
        return value

    def reset(self) -> _T | None:
        """Forget the value, so the next `get()` builds a new one.

        Returns:
            The value forgotten, for the caller to dispose of; ``None`` if none was built.
        """
        with self._lock:
            value, self._value = self._value, None
        return value

    @property
    def built(self) -> bool:
        """Whether a value is held now."""
        return self._value is not None


def _application_name(settings: DatabaseSettings) -> str:
    """``application_name``, tagged with the package versions.

    So that a breaking migration sees, in ``pg_stat_activity``, who it would break.
    """
    return tag_application_name(settings.application_name, installed_versions())


def _options(settings: DatabaseSettings) -> str | None:
    """The ``options`` libpq gets: the URL's, then appdb's ``-c statement_timeout``."""
    # Merge rather than replace: a URL may already carry ?options=-c...
    options = [str(settings.database_url.query.get("options", ""))]
    if settings.statement_timeout and not settings.uses_transaction_pooler:
        options.append(f"-c statement_timeout={settings.statement_timeout}")
    return " ".join(option for option in options if option) or None


def _postgresql_connect_args(settings: DatabaseSettings) -> dict[str, Any]:
    """Connection parameters for psycopg: timeouts and the name shown in pg_stat_activity."""
    connect_args: dict[str, Any] = {
        "connect_timeout": settings.connect_timeout,
        "application_name": _application_name(settings),
        **_tcp_connect_args(settings),
    }
    if options := _options(settings):
        connect_args["options"] = options
    if settings.uses_transaction_pooler:
        connect_args |= _transaction_pooler_connect_args()
    return connect_args


def _asyncpg_connect_args(settings: DatabaseSettings) -> dict[str, Any]:
    """The same parameters for asyncpg, the async engine's driver (see `appdb._asyncpg`).

    Raises:
        ConfigurationError: The URL has libpq parameters that asyncpg cannot honour.
    """
    if unsupported := _asyncpg.unsupported_parameters(settings.database_url):
        msg = (
            f"DATABASE_URL ({render_url(settings.database_url)}) has libpq parameters that "
            f"asyncpg, appdb's async driver, does not support: {', '.join(unsupported)}"
        )
        raise ConfigurationError(msg)
    return _asyncpg.connect_args(settings, _application_name(settings), _options(settings))


def _tcp_connect_args(settings: DatabaseSettings) -> dict[str, Any]:
    """TCP keepalives and ``tcp_user_timeout``: a dead host or a partition fails the connection.

    The kernel then gives up on a peer that stops acknowledging; a server that is up but never
    answers is caught by `DATABASE_CLIENT_TIMEOUT` instead (see `appdb._deadline`).
    """
    return {
        "keepalives": 1,
        "keepalives_idle": settings.keepalives_idle,
        "keepalives_interval": settings.keepalives_interval,
        "keepalives_count": settings.keepalives_count,
        "tcp_user_timeout": settings.tcp_user_timeout,
    }


def _apply_client_timeout(sync_engine: Engine, settings: DatabaseSettings) -> None:
    """Arm `DATABASE_CLIENT_TIMEOUT` on a PostgreSQL engine's driver calls."""
    seconds = effective_client_timeout(settings.client_timeout, settings.statement_timeout)
    apply_client_timeout(sync_engine, seconds, where(settings.database_url))


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

    def _on_begin(connection: sqlalchemy.Connection) -> None:
        connection.exec_driver_sql(set_local)

    event.listen(sync_engine, "begin", _on_begin)
    _begin_statements[sync_engine] = (_on_begin, set_local)


# What appdb's own "begin" listener of an engine runs (PgBouncer mode's SET LOCAL), for the
# async unit of work, which begins asyncpg's transaction itself and runs the statement there.
_begin_statements: weakref.WeakKeyDictionary[Engine, tuple[Callable[..., None], str]] = (
    weakref.WeakKeyDictionary()
)


def begin_statements(sync_engine: Engine) -> tuple[str, ...] | None:
    """The statements every transaction of `sync_engine` begins with, if appdb's listener alone.

    Args:
        sync_engine: An engine, or an async engine's ``sync_engine``.

    Returns:
        appdb's statements (none, or PgBouncer mode's ``SET LOCAL statement_timeout``); ``None``
        when someone else listens to the engine's transactions beginning too, whose listener
        only SQLAlchemy's transaction runs.
    """
    listeners = sync_engine.dispatch.begin
    own = _begin_statements.get(sync_engine)
    if not listeners:
        return ()
    if own is not None and len(listeners) == 1 and own[0] in listeners:
        return (own[1],)
    return None


_POOL_SIZING = ("pool_size", "max_overflow", "pool_timeout")


def _engine_arguments(
    settings: DatabaseSettings,
    overrides: dict[str, Any],
    connect_args: Callable[[DatabaseSettings], dict[str, Any]] = _postgresql_connect_args,
) -> dict[str, Any]:
    """Keyword arguments for SQLAlchemy's engine constructors, shared by sync and async.

    `overrides` win; a pool class without a queue (``NullPool``) drops the sizing arguments.
    `connect_args` builds the driver's arguments for PostgreSQL (psycopg's by default).
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
            "connect_args": connect_args(settings),
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


def _is_sqlite_file(url: URL) -> bool:
    """Whether a SQLite URL names a file (not ``:memory:`` nor a shared in-memory URI)."""
    database = url.database or ""
    return database not in {"", ":memory:"} and "mode=memory" not in database + str(url.query)


def _use_sqlite_wal(sync_engine: Engine, settings: DatabaseSettings) -> None:
    """WAL and ``synchronous=NORMAL`` for a SQLite file, on every connection.

    In WAL mode readers and the one writer do not block each other, so concurrent writers only
    queue for the write lock (within ``DATABASE_SQLITE_BUSY_TIMEOUT``); ``NORMAL`` is the
    durable-across-crashes level WAL is designed for (a power loss may drop the last commits).
    The journal mode is stored in the file; ``synchronous`` is per connection.
    """
    if not settings.sqlite_wal or not _is_sqlite_file(settings.database_url):
        return

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
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
    settings = settings or default_settings()
    redact_engine_logs()
    if settings.is_postgresql:
        kwargs = {"poolclass": TranslatingQueuePool} | kwargs
    engine = sqlalchemy.create_engine(settings.database_url, **_engine_arguments(settings, kwargs))
    if settings.is_sqlite:
        _enable_sqlite_foreign_keys(engine)
        _use_sqlite_wal(engine, settings)
    if settings.uses_transaction_pooler:
        _apply_transaction_pooler(engine, settings)
    if settings.is_postgresql:
        _apply_client_timeout(engine, settings)
        inspect_before_ping(engine)
    redact_logs_of(engine)
    translate_errors(engine, settings.database_url, settings.statement_timeout)
    return engine


def _async_url(url: URL) -> URL:
    """The same database through an asyncio driver: asyncpg, or aiosqlite for SQLite."""
    if url.get_backend_name() == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    return _asyncpg.async_url(url)


def create_async_engine(settings: DatabaseSettings | None = None, **kwargs: Any) -> AsyncEngine:
    """Build an asyncio engine from the same settings as `create_engine`.

    PostgreSQL is reached through asyncpg (the sync engine's psycopg 3 reads the same URL and
    settings; see `appdb._asyncpg`), SQLite through aiosqlite.

    Args:
        settings: The settings to use; `get_settings()` when omitted.
        **kwargs: Extra `sqlalchemy.ext.asyncio.create_async_engine` arguments.

    Returns:
        A new async engine. It does not connect until first used, and raises the same
        appdb exceptions as `create_engine`'s.

    Raises:
        ConfigurationError: `DATABASE_URL` has a libpq parameter asyncpg cannot honour
            (``channel_binding``, ``gssencmode``, ``hostaddr`` ...).
    """
    # The asyncio extension loads on first use: sync-only processes never import it.
    from sqlalchemy.ext.asyncio import (  # noqa: PLC0415
        create_async_engine as _sa_create_async_engine,
    )

    settings = settings or default_settings()
    redact_engine_logs()
    if settings.is_postgresql:
        kwargs = {"poolclass": TranslatingAsyncQueuePool} | kwargs
    engine = _sa_create_async_engine(
        _async_url(settings.database_url),
        **_engine_arguments(settings, kwargs, _asyncpg_connect_args),
    )
    if settings.is_sqlite:
        _enable_sqlite_foreign_keys(engine.sync_engine)
        _use_sqlite_wal(engine.sync_engine, settings)
    if settings.uses_transaction_pooler:
        _apply_transaction_pooler(engine.sync_engine, settings)
    if settings.is_postgresql:
        _asyncpg.apply_socket_options(engine.sync_engine, settings)
        _asyncpg.translate_connect_errors(engine.sync_engine)
        _apply_client_timeout(engine.sync_engine, settings)
        inspect_before_ping(engine.sync_engine)
    redact_logs_of(engine.sync_engine)
    translate_errors(engine.sync_engine, settings.database_url, settings.statement_timeout)
    return engine


def get_engine() -> Engine:
    """Return the process-wide engine, built from `get_settings()` on first call.

    Returns:
        The default engine that `SessionLocal` binds to.
    """
    return _engine.get()


def get_async_engine() -> AsyncEngine:
    """Return the process-wide async engine, built from `get_settings()` on first call.

    Returns:
        The default engine that `AsyncSessionLocal` binds to.
    """
    return _async_engine.get()


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
    settings = settings or default_settings()
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
    settings = settings or default_settings()
    return tuple(create_async_engine(replica, **kwargs) for replica in _replica_settings(settings))


# The process-wide defaults behind the get_* functions; reset_engines forgets them.
_engine: _Lazy[Engine] = _Lazy(create_engine)
_async_engine: _Lazy[AsyncEngine] = _Lazy(create_async_engine)
_replica_engines: _Lazy[tuple[Engine, ...]] = _Lazy(create_replica_engines)
_async_replica_engines: _Lazy[tuple[AsyncEngine, ...]] = _Lazy(create_async_replica_engines)


def get_replica_engines() -> tuple[Engine, ...]:
    """Return the process-wide replica engines, built from `get_settings()` on first call.

    Returns:
        The engines `SessionLocal` reads from; empty without `DATABASE_REPLICA_URLS`.
    """
    return _replica_engines.get()


def get_async_replica_engines() -> tuple[AsyncEngine, ...]:
    """Return the process-wide async replica engines, built from `get_settings()` on first call.

    Returns:
        The engines `AsyncSessionLocal` reads from; empty without `DATABASE_REPLICA_URLS`.
    """
    return _async_replica_engines.get()


def reset_engines(*, close: bool = True) -> None:
    """Dispose of the default engines so that the next use builds them again.

    Call it in tests after changing settings, and in a child process after `fork()` with
    ``close=False`` (the parent still owns the sockets). It also forgets the cached settings.
    Async connections cannot be closed from synchronous code: await
    ``get_async_engine().dispose()`` first for a clean shutdown.

    Args:
        close: Close pooled connections (``False``: only forget them).
    """
    engine = _engine.reset()
    if engine is not None:
        engine.dispose(close=close)
    async_engine = _async_engine.reset()
    if async_engine is not None:
        async_engine.sync_engine.dispose(close=False)
    for replica in _replica_engines.reset() or ():
        replica.dispose(close=close)
    for async_replica in _async_replica_engines.reset() or ():
        async_replica.sync_engine.dispose(close=False)
    from appdb.settings import get_settings  # noqa: PLC0415

    get_settings.cache_clear()
