"""Replica routing: `RoutingSession` reads from a replica until it writes, `use_primary` pins it.

The bookkeeping of unreachable replicas (when each may be tried again) is shared by every
session of the process. `appdb.session` builds these sessions when replicas are configured.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import weakref
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.sql import CompoundSelect, Select
from sqlmodel import Session

from appdb._redaction import describe_error, render_url
from appdb.exceptions import DatabaseUnavailableError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.orm import SessionTransaction
    from sqlalchemy.sql import ClauseElement
    from sqlmodel.ext.asyncio.session import AsyncSession

__all__ = ["RoutingSession", "use_primary"]

logger: logging.Logger = logging.getLogger("appdb")

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
    logger.warning(
        "read replica %s unavailable (%s); reading from the primary for %gs",
        render_url(replica.url),
        describe_error(error, replica.url),
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
        self.replicas: tuple[Engine, ...] = tuple(replicas)
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
    # An AsyncSession wraps its sync session (checked by attribute: no asyncio import here).
    sync_session = getattr(session, "sync_session", session)
    if not isinstance(sync_session, RoutingSession):
        yield
        return
    sync_session._forced_primary += 1  # noqa: SLF001 - the context manager is the public face
    try:
        yield
    finally:
        sync_session._forced_primary -= 1  # noqa: SLF001
