"""The migration lock: one appdb-migrate at a time per database.

Operations that change the schema hold a session-level advisory lock on a connection of their
own for the whole run (PostgreSQL), or an exclusive lock on a file beside the database (SQLite),
so two services deploying at the same moment never migrate the same database twice. A
session-level lock needs a real server session, so a transaction pooler (PgBouncer) in front of
the database is detected and refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from typing import TYPE_CHECKING

from filelock import FileLock
from filelock import Timeout as FileLockTimeout
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.pool import NullPool

from appdb._redaction import render_url
from appdb.engine import create_engine
from appdb.exceptions import (
    ConfigurationError,
    DatabaseUnavailableError,
    MigrationLockLostError,
    MigrationLockTimeoutError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.engine import Connection

    from appdb.settings import DatabaseSettings

__all__ = ["DEFAULT_LOCK_TIMEOUT", "LOCK_KEY", "HeldLock", "migration_lock"]

DEFAULT_LOCK_TIMEOUT = 300.0
"""Seconds a migration waits for another one to finish before giving up."""

# Derived from a fixed name so that it cannot collide with small integers services pick for
# their own advisory locks.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"appdb-migrate").digest()[:8], "big", signed=True)
"""The advisory lock key every appdb-migrate takes, the same in every database."""

_LOCK_POLL_SECONDS = 0.1

# A custom setting sent in the startup packet: PostgreSQL applies it to the session, while a
# transaction pooler either refuses the packet or drops it (it cannot keep one client's
# session settings on server connections that every client shares).
_DIRECT_SESSION_PROBE = "appdb.direct_session"


def _with_probe(settings: DatabaseSettings) -> DatabaseSettings:
    url = settings.database_url
    given = str(url.query.get("options", ""))
    options = " ".join(part for part in (given, f"-c {_DIRECT_SESSION_PROBE}=on") if part)
    return settings.model_copy(update={"url": url.update_query_dict({"options": options})})


def _not_direct(settings: DatabaseSettings, why: str) -> ConfigurationError:
    msg = (
        f"{render_url(settings.database_url)} is not a direct connection to PostgreSQL ({why}); "
        "migrations hold a session-level lock that a transaction pooler such as PgBouncer "
        "does not keep: set DATABASE_MIGRATION_URL (or --database-url) to PostgreSQL itself"
    )
    return ConfigurationError(msg)


class HeldLock:
    """The migration lock while it is held: ask it, before committing work, whether it still is.

    A session-level advisory lock lives as long as its connection; if the server closes that
    connection (``idle_session_timeout``, a network blip, an administrator), the lock is gone
    and another migration may start. `verify` notices.
    """

    def __init__(self, connection: Connection | None = None) -> None:
        """Track the lock held by `connection`'s session; None for a lock that cannot be lost."""
        self._connection = connection
        self._pid = None if connection is None else self._backend_pid()

    def _backend_pid(self) -> int:
        assert self._connection is not None  # noqa: S101 - narrowing for the type checker
        return int(self._connection.execute(text("SELECT pg_backend_pid()")).scalar_one())

    def is_held(self) -> bool:
        """Whether the lock is still held: its connection answers, and is the same server session.

        Returns:
            True on SQLite (a file lock cannot be taken away) and while the session lives.
        """
        if self._connection is None:
            return True
        try:
            return self._backend_pid() == self._pid
        except (sa_exc.SQLAlchemyError, DatabaseUnavailableError):
            return False

    def verify(self, doing: str) -> None:
        """Raise unless the lock is still held.

        Args:
            doing: What is about to happen, for the message (``commit 0003_x``).

        Raises:
            MigrationLockLostError: The lock's connection was closed.
        """
        if not self.is_held():
            msg = (
                f"lost the migration lock (the server closed its connection) before it could "
                f"{doing}, so another appdb-migrate may be running"
            )
            raise MigrationLockLostError(msg)


@contextlib.contextmanager
def migration_lock(settings: DatabaseSettings, timeout: float) -> Iterator[HeldLock]:
    """Hold appdb's advisory lock on a dedicated connection (PostgreSQL), waiting at most `timeout`.

    The lock lives as long as that connection: if the process dies, the server releases it.
    Waiting is done by polling, so no lock_timeout set for the DDL can cut the wait short.
    On a SQLite file the lock is ``<file>.appdb-migrate.lock``, held with the operating
    system's file lock (released when the process dies); an in-memory SQLite database is
    refused, since what it migrated would vanish with the process.

    Args:
        settings: The database, reached directly (see `DatabaseSettings.for_migrations`).
        timeout: Seconds to wait for another holder to let go.

    Yields:
        The lock, which the block verifies before committing each piece of work.

    Raises:
        MigrationLockTimeoutError: Another migration held the lock for over `timeout` seconds.
        ConfigurationError: The connection leads through a transaction pooler, or the
            database is an in-memory SQLite one.
        DatabaseUnavailableError: The database could not be reached.
    """
    if not settings.is_postgresql:
        with _sqlite_file_lock(settings, timeout):
            yield HeldLock()
        return
    engine = create_engine(_with_probe(settings), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        try:
            connection = engine.connect()
        except (sa_exc.OperationalError, DatabaseUnavailableError) as exc:
            if "startup parameter" in str(exc):
                raise _not_direct(settings, "it refused the startup options") from None
            raise
        with connection:
            probe = text("SELECT current_setting(:name, true)").bindparams(
                name=_DIRECT_SESSION_PROBE
            )
            if connection.execute(probe).scalar() != "on":
                raise _not_direct(settings, "it dropped the startup options")
            if (connection.dialect.server_version_info or (0,)) >= (14,):
                # The lock's session is idle for the whole run: a server-wide
                # idle_session_timeout must not close it (and take the lock along).
                connection.execute(text("SET idle_session_timeout = 0"))
            deadline = time.monotonic() + timeout
            try_lock = text("SELECT pg_try_advisory_lock(:key)").bindparams(key=LOCK_KEY)
            while not connection.execute(try_lock).scalar():
                if time.monotonic() >= deadline:
                    raise _busy(timeout)
                time.sleep(_LOCK_POLL_SECONDS)
            held = HeldLock(connection)
            try:
                yield held
            finally:
                # A lost session took its lock along: unlocking on a fresh one would fail, and
                # must not turn work already committed into a reported failure.
                if held.is_held():
                    connection.execute(
                        text("SELECT pg_advisory_unlock(:key)").bindparams(key=LOCK_KEY)
                    )
    finally:
        engine.dispose()


def _busy(timeout: float) -> MigrationLockTimeoutError:
    msg = (
        f"another appdb-migrate has held the migration lock for over {timeout:g}s; "
        "retry later or raise --lock-timeout"
    )
    return MigrationLockTimeoutError(msg)


@contextlib.contextmanager
def _sqlite_file_lock(settings: DatabaseSettings, timeout: float) -> Iterator[None]:
    """Serialise migrations of one SQLite file with a lock file beside it."""
    database = settings.database_url.database
    if database in {None, "", ":memory:"} or str(database).startswith("file::memory:"):
        msg = (
            "an in-memory SQLite database (sqlite://) vanishes when this process exits, so "
            "there is nothing to migrate: set DATABASE_URL to a file (sqlite:///app.sqlite3)"
        )
        raise ConfigurationError(msg)
    lock = FileLock(f"{database}.appdb-migrate.lock", timeout=timeout)
    try:
        lock.acquire()
    except FileLockTimeout:
        raise _busy(timeout) from None
    try:
        yield
    finally:
        lock.release()
