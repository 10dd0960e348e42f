"""Table locks for migration DDL on PostgreSQL: short attempts, retried, so traffic never queues.

A DDL statement waiting for ACCESS EXCLUSIVE on a table queues every later query on that table
behind it. So each attempt waits at most `ATTEMPT_LOCK_TIMEOUT_MS` (``lock_timeout``), the
revision's transaction rolls back, traffic flows during a backoff, and the revision is tried
again, until the overall ``DATABASE_DDL_LOCK_TIMEOUT`` runs out. A watcher on a connection of
its own then records who holds the lock, so the final error names the revision, the table and
the blocking sessions (pid, ``application_name``, how long their transaction has been open;
never a query text, which may carry secrets).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from alembic.runtime.migration import MigrationContext
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from appdb.exceptions import AppDBError, DDLLockTimeoutError

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.engine import Connection, Engine

__all__ = [
    "ATTEMPT_LOCK_TIMEOUT_MS",
    "CLIENT_CHECK_INTERVAL_MS",
    "run_with_lock_retries",
]

ATTEMPT_LOCK_TIMEOUT_MS = 200
"""The longest one attempt waits for a table lock, and so the longest traffic queues behind it."""

CLIENT_CHECK_INTERVAL_MS = 250
"""How often the migration's server backend checks that its client is still there (PG 14+).

A killed ``appdb-migrate`` then has its revision rolled back within this long, not when the
statement ends, so its locks do not outlive it.
"""

_FIRST_BACKOFF = 0.1
_MAX_BACKOFF = 1.0
_WATCH_SECONDS = 0.05
_LOCK_NOT_AVAILABLE = "55P03"

_BLOCKERS = text(
    """
    SELECT waiting.relation::regclass::text, waiting.locktype, blocker.pid,
           blocker.application_name,
           extract(epoch FROM clock_timestamp() - blocker.xact_start), blocker.state
    FROM pg_locks AS waiting
    CROSS JOIN LATERAL unnest(pg_blocking_pids(waiting.pid)) AS blocking(pid)
    JOIN pg_stat_activity AS blocker ON blocker.pid = blocking.pid
    WHERE waiting.pid = :pid AND NOT waiting.granted
    ORDER BY blocker.pid
    """
)


@dataclass(frozen=True)
class _Blocker:
    pid: int
    application_name: str
    transaction_seconds: float | None
    state: str | None

    def describe(self) -> str:
        age = (
            "no transaction"
            if self.transaction_seconds is None
            else f"transaction open {self.transaction_seconds:.1f}s"
        )
        state = f", {self.state}" if self.state else ""
        return f"pid {self.pid} {self.application_name!r} ({age}{state})"


class _Watcher:
    """Samples, on its own connection, what the migration's backend waits for and who holds it."""

    def __init__(self, engine: Engine, pid: int) -> None:
        self._engine = engine
        self._pid = pid
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, name="appdb-ddl-lock-watch", daemon=True
        )
        self.target: str | None = None
        self.blockers: tuple[_Blocker, ...] = ()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _watch(self) -> None:
        try:
            with self._engine.connect() as opened:
                connection = opened.execution_options(isolation_level="AUTOCOMMIT")
                while not self._stop.wait(_WATCH_SECONDS):
                    rows = connection.execute(_BLOCKERS, {"pid": self._pid}).all()
                    if rows:
                        relation, locktype = rows[0][0], rows[0][1]
                        self.target = (
                            f"its lock on table {relation}" if relation else f"a {locktype} lock"
                        )
                        self.blockers = tuple(
                            _Blocker(
                                int(row[2]),
                                str(row[3] or ""),
                                None if row[4] is None else float(row[4]),
                                row[5],
                            )
                            for row in rows
                        )
        except (sa_exc.SQLAlchemyError, AppDBError):
            # Diagnosis only: the migration's own outcome does not depend on it. A lost
            # connection (the server died, the backend was terminated) arrives as appdb's
            # ConnectionLostError, and must not print a thread's traceback.
            return


def _lock_not_available(error: sa_exc.OperationalError) -> bool:
    return getattr(error.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE


def _failing_revision(error: BaseException) -> str | None:
    """The revision whose upgrade() or downgrade() raised `error`, from its traceback."""
    found = None
    traceback = error.__traceback__
    while traceback is not None:
        frame = traceback.tb_frame
        names = frame.f_globals
        if frame.f_code.co_name in {"upgrade", "downgrade"} and "down_revision" in names:
            found = str(names.get("revision"))
        traceback = traceback.tb_next
    return found


def _is_relative(target: object) -> bool:
    return target is not None and any(sign in str(target) for sign in "+-")


def _set_lock_timeout(connection: Connection, milliseconds: int) -> None:
    connection.exec_driver_sql(f"SET lock_timeout = {int(milliseconds)}")
    connection.commit()


def run_with_lock_retries(
    connection: Connection,
    run: Callable[[], None],
    *,
    deadline_ms: int,
    version_table: str,
    target: object,
) -> None:
    """Run `run` (Alembic's revisions, one transaction each), retrying those that wait for a lock.

    The session's ``lock_timeout`` is one short attempt; a revision that times out rolls back
    alone (the ones before it stay committed) and is retried after a backoff with jitter.

    Args:
        connection: The migration's PostgreSQL connection, outside any transaction.
        run: Runs the pending revisions on `connection`; may be called again to resume.
        deadline_ms: The overall wait (``DATABASE_DDL_LOCK_TIMEOUT``); 0 waits forever in
            one attempt.
        version_table: The chain's version table, to tell whether a failed attempt moved it.
        target: The command's target; a relative one (``-1``) is not resumed once it moved.

    Raises:
        DDLLockTimeoutError: The deadline ran out; the message names the revision, the
            table and the blocking sessions.
    """
    if deadline_ms == 0:
        run()
        return
    deadline = time.monotonic() + deadline_ms / 1000
    backoff = _FIRST_BACKOFF
    # Watching from the start: with a short deadline, the first attempt may be the last.
    watcher = _watch(connection)
    try:
        while True:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            _set_lock_timeout(connection, max(1, min(ATTEMPT_LOCK_TIMEOUT_MS, remaining_ms)))
            before = _heads(connection, version_table)
            try:
                run()
            except sa_exc.OperationalError as exc:
                _raise_unless_retryable(exc, connection, version_table, target, before)
                pause = backoff * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto
                if time.monotonic() + pause >= deadline:
                    raise _timed_out(exc, deadline_ms, watcher) from None
                time.sleep(pause)
                backoff = min(backoff * 2, _MAX_BACKOFF)
            else:
                return
    finally:
        watcher.stop()
        if not connection.invalidated:
            connection.rollback()


def _raise_unless_retryable(
    error: sa_exc.OperationalError,
    connection: Connection,
    version_table: str,
    target: object,
    before: tuple[str, ...],
) -> None:
    """Re-raise `error` unless it is a lock timeout after which the run can resume."""
    if not _lock_not_available(error) or connection.invalidated:
        raise error
    connection.rollback()
    # A relative target (-1) counts from where the chain is now: resuming would overshoot.
    if _is_relative(target) and _heads(connection, version_table) != before:
        raise error


def _watch(connection: Connection) -> _Watcher:
    pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    connection.commit()
    watcher = _Watcher(connection.engine, int(pid))
    watcher.start()
    return watcher


def _heads(connection: Connection, version_table: str) -> tuple[str, ...]:
    heads = MigrationContext.configure(
        connection, opts={"version_table": version_table}
    ).get_current_heads()
    connection.commit()
    return tuple(heads)


def _timed_out(error: BaseException, deadline_ms: int, watcher: _Watcher) -> DDLLockTimeoutError:
    revision = _failing_revision(error) or "a revision"
    what = watcher.target or "a lock it needs"
    if watcher.blockers:
        held = "held by " + "; ".join(blocker.describe() for blocker in watcher.blockers)
    else:
        held = "its holders could not be seen"
    msg = (
        f"revision {revision} could not get {what} within "
        f"DATABASE_DDL_LOCK_TIMEOUT={deadline_ms}ms (tried in {ATTEMPT_LOCK_TIMEOUT_MS}ms "
        f"attempts, so traffic was never held up longer), {held}; end those transactions "
        "or raise DATABASE_DDL_LOCK_TIMEOUT, then rerun"
    )
    return DDLLockTimeoutError(msg)
