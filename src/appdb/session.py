"""Session factories (`SessionLocal`, `AsyncSessionLocal`) and unit-of-work scopes."""

from __future__ import annotations

import logging
import random
import threading
import time
import weakref
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import sessionmaker
from sqlalchemy.sql import CompoundSelect, Select
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from appdb.engine import (
    get_async_engine,
    get_async_replica_engines,
    get_engine,
    get_replica_engines,
)
from appdb.exceptions import DatabaseUnavailableError
from appdb.settings import get_settings, render_url

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence

    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.orm import SessionTransaction
    from sqlalchemy.sql import ClauseElement

__all__ = [
    "AsyncSessionLocal",
    "RoutingSession",
    "SessionLocal",
    "async_session_scope",
    "session_scope",
    "use_primary",
]

logger = logging.getLogger("appdb")

# When each unreachable replica may be tried again, shared by every session of the process.
_replica_down_until: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()
_replica_lock = threading.Lock()


def _reads_only(clause: ClauseElement | None) -> bool:
    """Whether a statement can run on a replica: a plain SELECT, not ``FOR UPDATE``.

    Anything else (DML, ``text()``, ``INSERT ... RETURNING`` loaded into models) may write.
    """
    return isinstance(clause, Select | CompoundSelect) and clause._for_update_arg is None  # noqa: SLF001 - no public accessor


def _replica_available(replica: Engine) -> bool:
    return _replica_down_until.get(replica, 0.0) <= time.monotonic()


def _mark_replica_down(replica: Engine, retry_after: float, error: BaseException) -> None:
    with _replica_lock:
        if not _replica_available(replica):
            return  # another session already reported this outage
        _replica_down_until[replica] = time.monotonic() + retry_after
    reason = " ".join(str(getattr(error, "orig", None) or error).split())
    password = replica.url.password
    if password:
        reason = reason.replace(str(password), "***")
    logger.warning(
        "read replica %s unavailable (%s); reading from the primary for %gs",
        render_url(replica.url),
        reason.split(" (Background on this error")[0],
        retry_after,
    )


class RoutingSession(Session):
    """A SQLModel session that reads from a replica and writes to the primary.

    Plain ``SELECT`` statements go to one replica (the same one for the whole session, so reads
    never go back in time). From the first write, flush, ``SELECT ... FOR UPDATE``, ``text()``
    statement or `connection()` call on, everything goes to the primary until the session is
    closed, so a request always reads its own writes. `use_primary` forces the primary for a
    block. A replica that cannot be reached is left alone for `replica_retry_interval` seconds,
    with a warning in the ``appdb`` log, and its reads go to the primary instead.

    `SessionLocal` and `AsyncSessionLocal` make these when ``DATABASE_REPLICA_URLS`` is set.
    """

    def __init__(
        self,
        bind: Engine | Connection | None = None,
        *,
        replicas: Sequence[Engine] = (),
        replica_retry_interval: float = 30.0,
        **kwargs: Any,
    ) -> None:
        """Build a session on the primary `bind` that reads from `replicas`.

        Args:
            bind: The primary's engine.
            replicas: Engines of the read replicas (sync engines, also for async sessions).
            replica_retry_interval: Seconds an unreachable replica is left alone.
            **kwargs: Any other `sqlalchemy.orm.Session` argument.
        """
        super().__init__(bind=bind, **kwargs)
        self.replicas = tuple(replicas)
        self.replica_retry_interval = replica_retry_interval
        self._forced_primary = 0
        self._reset_routing()

    def _reset_routing(self) -> None:
        self._on_primary = not self.replicas
        self._replica: Engine | None = None
        self._replica_transaction: SessionTransaction | None = None

    @property
    def on_primary(self) -> bool:
        """Whether the session has written, so every statement now goes to the primary."""
        return self._on_primary

    def get_bind(
        self,
        mapper: Any = None,
        *,
        clause: ClauseElement | None = None,
        bind: Any = None,
        **kwargs: Any,
    ) -> Engine | Connection:
        """Route a statement: reads to the replica, writes (and all after them) to the primary.

        Args:
            mapper: The mapped class or mapper the statement is about, if any.
            clause: The statement.
            bind: An explicit bind, used as is.
            **kwargs: Passed on to `sqlalchemy.orm.Session.get_bind`.

        Returns:
            The engine to run on.
        """
        primary = super().get_bind(mapper, clause=clause, bind=bind, **kwargs)
        if bind is not None or self._on_primary or self._forced_primary:
            return primary
        if self._flushing or (clause is not None and not _reads_only(clause)):
            self._on_primary = True
            return primary
        if clause is None:
            # A bare look-up (the dialect, say): any engine answers it, nothing runs.
            return primary
        return self._replica_for_read() or primary

    def _replica_for_read(self) -> Engine | None:
        """The replica this transaction reads from, connected; ``None`` when none can be reached."""
        transaction = self.get_transaction()
        if transaction is not None and transaction is self._replica_transaction:
            return self._replica
        candidates = [replica for replica in self.replicas if _replica_available(replica)]
        if self._replica in candidates:
            candidates = [self._replica]
        random.shuffle(candidates)
        for replica in candidates:
            try:
                # Connect now, so an unreachable replica costs a fallback, not a failure.
                super().connection(bind_arguments={"bind": replica})
            except (sa_exc.DBAPIError, DatabaseUnavailableError) as error:
                _mark_replica_down(replica, self.replica_retry_interval, error)
                continue
            self._replica = replica
            self._replica_transaction = self.get_transaction()
            return replica
        return None

    def connection(
        self,
        bind_arguments: dict[str, Any] | None = None,
        execution_options: Any = None,
    ) -> Connection:
        """The primary's connection: what runs on it is unknown, so it counts as a write.

        Args:
            bind_arguments: As for `sqlalchemy.orm.Session.connection`.
            execution_options: As for `sqlalchemy.orm.Session.connection`.

        Returns:
            The connection of the session's transaction on the chosen bind.
        """
        if not bind_arguments or bind_arguments.get("bind") is None:
            self._on_primary = True
        return super().connection(bind_arguments, execution_options)

    def close(self) -> None:
        """Close the session; the next transaction may read from a replica again."""
        super().close()
        self._reset_routing()

    def reset(self) -> None:
        """Reset the session; the next transaction may read from a replica again."""
        super().reset()
        self._reset_routing()


@contextmanager
def use_primary(session: Session | AsyncSession) -> Iterator[None]:
    """Send every statement of `session` to the primary inside the block.

    For reads that must see what another session has just committed, or statements that
    write in ways appdb cannot see (a function with side effects in a ``SELECT``). Without
    replicas it changes nothing.

    Args:
        session: A session from `SessionLocal` or `AsyncSessionLocal` (or any session).

    Yields:
        Nothing; the block runs with the session pinned to the primary.
    """
    sync_session = session.sync_session if isinstance(session, AsyncSession) else session
    if not isinstance(sync_session, RoutingSession):
        yield
        return
    sync_session._forced_primary += 1  # noqa: SLF001 - the context manager is the public face
    try:
        yield
    finally:
        sync_session._forced_primary -= 1  # noqa: SLF001


class _LazySessionmaker(sessionmaker[Session]):
    """A sessionmaker that binds to the default engine when it is first called, not when built."""

    def __call__(self, **local_kw: Any) -> Session:
        if local_kw.get("bind") is None and self.kw.get("bind") is None:
            local_kw["bind"] = get_engine()
            if replicas := get_replica_engines():
                return RoutingSession(
                    replicas=replicas,
                    replica_retry_interval=get_settings().replica_retry_interval,
                    **{**self.kw, **local_kw},
                )
        return super().__call__(**local_kw)


class _LazyAsyncSessionmaker(async_sessionmaker[AsyncSession]):
    """The asyncio twin of `_LazySessionmaker`."""

    def __call__(self, **local_kw: Any) -> AsyncSession:
        if local_kw.get("bind") is None and self.kw.get("bind") is None:
            local_kw["bind"] = get_async_engine()
            if replicas := get_async_replica_engines():
                local_kw |= {
                    "sync_session_class": RoutingSession,
                    "replicas": tuple(replica.sync_engine for replica in replicas),
                    "replica_retry_interval": get_settings().replica_retry_interval,
                }
        return super().__call__(**local_kw)


# SQLAlchemy 2 sessions never autocommit; autoflush is off so that nothing reaches the
# database before the caller asks for it.
SessionLocal: sessionmaker[Session] = _LazySessionmaker(class_=Session, autoflush=False)
"""Factory of SQLModel sessions, bound lazily to `get_engine()`; `configure(bind=...)` rebinds."""

# Async code cannot lazy-load attributes expired by a commit, so they are kept.
AsyncSessionLocal: async_sessionmaker[AsyncSession] = _LazyAsyncSessionmaker(
    class_=AsyncSession, autoflush=False, expire_on_commit=False
)
"""Factory of SQLModel async sessions, bound lazily to `get_async_engine()`."""


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
    async with (factory or AsyncSessionLocal)() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()
