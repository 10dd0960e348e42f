"""Session factories (`SessionLocal`, `AsyncSessionLocal`) and unit-of-work scopes.

With ``DATABASE_REPLICA_URLS`` set the factories make `appdb.routing.RoutingSession`s; that
module holds the replica routing, re-exported here for compatibility. `connection_scope` and
`async_connection_scope` are the units of work without an ORM session, for hot paths that need
only rows (the async one's transaction is `appdb._direct.AsyncUnit`).
"""

from __future__ import annotations

from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from appdb._direct import open_async_unit
from appdb.engine import (
    default_settings,
    get_async_engine,
    get_async_replica_engines,
    get_engine,
    get_replica_engines,
)
from appdb.routing import RoutingSession, use_primary

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from sqlalchemy import Connection, Engine
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
    from sqlmodel.ext.asyncio.session import AsyncSession

__all__ = [
    "AsyncSessionLocal",
    "RoutingSession",
    "SessionLocal",
    "async_connection_scope",
    "async_session_scope",
    "connection_scope",
    "session_scope",
    "use_primary",
]


class _LazySessionmaker(sessionmaker[Session]):
    """A sessionmaker that binds to the default engine when it is first called, not when built."""

    def __call__(self, **local_kw: Any) -> Session:
        if local_kw.get("bind") is None and self.kw.get("bind") is None:
            local_kw["bind"] = get_engine()
            if replicas := get_replica_engines():
                return RoutingSession(
                    replicas=replicas,
                    replica_retry_interval=default_settings().replica_retry_interval,
                    **{**self.kw, **local_kw},
                )
        return super().__call__(**local_kw)


def _async_session_local() -> async_sessionmaker[AsyncSession]:
    """Build `AsyncSessionLocal`: the asyncio extension is imported on first use, not with appdb."""
    from sqlalchemy.ext.asyncio import async_sessionmaker  # noqa: PLC0415
    from sqlmodel.ext.asyncio.session import AsyncSession  # noqa: PLC0415

    class _LazyAsyncSessionmaker(async_sessionmaker[AsyncSession]):
        """The asyncio twin of `_LazySessionmaker`."""

        def __call__(self, **local_kw: Any) -> AsyncSession:
            if local_kw.get("bind") is None and self.kw.get("bind") is None:
                local_kw["bind"] = get_async_engine()
                if replicas := get_async_replica_engines():
                    local_kw |= {
                        "sync_session_class": RoutingSession,
                        "replicas": tuple(replica.sync_engine for replica in replicas),
                        "replica_retry_interval": default_settings().replica_retry_interval,
                    }
            return super().__call__(**local_kw)

    # Async code cannot lazy-load attributes expired by a commit, so they are kept.
    return _LazyAsyncSessionmaker(class_=AsyncSession, autoflush=False, expire_on_commit=False)


def __getattr__(name: str) -> Any:
    """`AsyncSessionLocal`, built on first access (PEP 562), then a plain module global."""
    if name == "AsyncSessionLocal":
        factory = globals()["AsyncSessionLocal"] = _async_session_local()
        return factory
    if name == "async_sessionmaker":  # importable from here before it became lazy
        from sqlalchemy.ext.asyncio import async_sessionmaker  # noqa: PLC0415

        return async_sessionmaker
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def async_session_local() -> async_sessionmaker[AsyncSession]:
    """The `AsyncSessionLocal` factory, built on first use.

    Returns:
        The process-wide async session factory (the module global, if one was set).
    """
    factory: async_sessionmaker[AsyncSession] | None = globals().get("AsyncSessionLocal")
    return factory if factory is not None else __getattr__("AsyncSessionLocal")


# SQLAlchemy 2 sessions never autocommit; autoflush is off so that nothing reaches the
# database before the caller asks for it.
SessionLocal: sessionmaker[Session] = _LazySessionmaker(class_=Session, autoflush=False)
"""Factory of SQLModel sessions, bound lazily to `get_engine()`; `configure(bind=...)` rebinds."""

AsyncSessionLocal: async_sessionmaker[AsyncSession]
"""Factory of SQLModel async sessions, bound lazily to `get_async_engine()` (built on first use)."""


@contextmanager
def session_scope(factory: sessionmaker[Session] | None = None) -> Iterator[Session]:
    """Run a unit of work: commit if the block succeeds, roll back if it raises, always close.

    Args:
        factory: The session factory; `SessionLocal` when omitted.

    Yields:
        A session whose transaction the scope owns.
    """
    with (factory or SessionLocal)() as session:
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        session.commit()


@contextmanager
def connection_scope(engine: Engine | None = None) -> Iterator[Connection]:
    """Run a unit of work on one connection, without an ORM session: commit or roll back.

    The hot operations take its connection in place of a session and return rows
    (``touch_telegram_user(connection, ..., as_row=True)``, ``send_message(..., as_row=True)``,
    ``inbox(..., as_rows=True)``, ``unread_count``, ``mark_read``): no session's transaction
    bookkeeping, which costs more than the statement itself. ORM work in the same unit joins it
    with ``Session(bind=connection)``; that session's ``commit()`` only flushes, the scope
    commits. It runs on the primary (`DATABASE_URL`), never on a replica.

    Args:
        engine: The engine to connect with; `get_engine()` when omitted.

    Yields:
        A connection in a transaction that the scope commits if the block succeeds, rolls back
        if it raises, and closes.
    """
    with (engine or get_engine()).begin() as connection:
        yield connection


@asynccontextmanager
async def async_session_scope(
    factory: async_sessionmaker[AsyncSession] | None = None,
) -> AsyncIterator[AsyncSession]:
    """Run an async unit of work: commit on success, roll back on error, always close.

    This is the bot's per-update pattern: ``async with async_session_scope() as session:``.

    Args:
        factory: The session factory; `AsyncSessionLocal` when omitted.

    Yields:
        An async session whose transaction the scope owns.
    """
    async with (factory or async_session_local())() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


@asynccontextmanager
async def async_connection_scope(
    engine: AsyncEngine | None = None,
) -> AsyncIterator[AsyncConnection]:
    """The asyncio twin of `connection_scope`: a unit of work on one connection, no ORM session.

    The async hot operations take its connection in place of a session
    (``await aio.touch_telegram_user(connection, ..., as_row=True)`` ...). On PostgreSQL the
    scope begins and ends asyncpg's transaction itself and those operations await asyncpg's
    connection directly: no SQLAlchemy greenlet per call, which costs more than the statement.
    What SQLAlchemy runs on the connection (``await connection.execute(...)``, an
    ``AsyncSession(bind=connection)``) runs in a savepoint of the scope's transaction: its
    ``commit()`` releases the savepoint, the scope commits. It runs on the primary.

    Args:
        engine: The async engine to connect with; `get_async_engine()` when omitted.

    Yields:
        A connection in a transaction that the scope commits if the block succeeds, rolls back
        if it raises, and closes.
    """
    unit = await open_async_unit(engine or get_async_engine())
    try:
        try:
            yield unit.connection
        except BaseException:
            await unit.rollback()
            raise
        await unit.commit()
    finally:
        await unit.close()
