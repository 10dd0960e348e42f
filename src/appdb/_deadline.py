"""A client-side deadline on every wait for PostgreSQL's answer: `DATABASE_CLIENT_TIMEOUT`.

TCP keepalives and ``tcp_user_timeout`` (set through libpq) catch a dead host or a network
partition, but not a server that is alive at the TCP level and never answers: a hung or
frozen (``SIGSTOP``) server whose kernel still acknowledges every packet. There psycopg would
wait forever. So each driver call that waits for the server (execute, commit, rollback, the
pool's pre-ping) is armed with a deadline; one watchdog thread per process shuts down the socket
of a call still waiting past it. The driver then sees the connection closed, SQLAlchemy
invalidates it, and `appdb._errors` raises `ConnectionLostError` saying which limit expired.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from appdb._asyncpg import transport_socket
from appdb.exceptions import ConnectionLostError

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.engine import Engine, ExceptionContext

__all__ = [
    "apply_client_timeout",
    "arm",
    "disarm",
    "effective_client_timeout",
    "expired_limit",
]

# psycopg.pq's TransactionStatus.IDLE (psycopg itself is imported with the first connection).
_TRANSACTION_IDLE = 0
# How often the watchdog looks at the armed calls: the deadline holds to within this.
_TICK = 0.25
# A wait for a lock can legitimately outlast a statement_timeout by a little; the server's own
# cancel (StatementTimeoutError) must come first.
_STATEMENT_TIMEOUT_MARGIN = 2.0


class _Watchdog:
    """Armed calls, and the daemon thread that cuts off those past their deadline."""

    def __init__(self) -> None:
        self._armed: dict[int, tuple[float, float, object]] = {}
        self._tokens = itertools.count()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.cut: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    def arm(self, target: object, seconds: float) -> int:
        token = next(self._tokens)
        self._armed[token] = (time.monotonic() + seconds, seconds, target)
        if self._thread is None:
            self._start()
        return token

    def disarm(self, token: int) -> None:
        self._armed.pop(token, None)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="appdb-client-timeout", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(_TICK)
            now = time.monotonic()
            for token, (deadline, seconds, target) in list(self._armed.items()):
                if deadline <= now and self._armed.pop(token, None) is not None:
                    self._cut_off(target, seconds)

    def _cut_off(self, target: object, seconds: float) -> None:
        connection = _driver_connection(target)
        if connection is None:
            return
        self.cut[connection] = seconds
        # shutdown() acts on the socket, not on this duplicate descriptor: the driver's own
        # wait (psycopg's, or the event loop's for asyncpg) wakes up at once and reads
        # end-of-file.
        try:
            with socket.fromfd(_fileno(connection), socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except (OSError, ValueError, AttributeError):
            pass  # the connection closed meanwhile


_watchdog = _Watchdog()
# Each guarded dialect's deadline, for the calls appdb awaits on asyncpg itself (`arm`).
_deadlines: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def _reset_after_fork() -> None:
    global _watchdog  # noqa: PLW0603 - the parent's thread does not exist in the child
    _watchdog = _Watchdog()


os.register_at_fork(after_in_child=_reset_after_fork)


def _driver_connection(target: object) -> Any:
    """The psycopg or asyncpg connection behind a cursor, a DBAPI connection or an adapter."""
    for _ in range(4):
        if hasattr(target, "pgconn") or hasattr(target, "is_in_transaction"):
            return target
        target = getattr(target, "_connection", None) or getattr(target, "connection", None)
    return None


def _fileno(connection: Any) -> int:
    """The socket descriptor of a psycopg or asyncpg connection."""
    if hasattr(connection, "pgconn"):
        return int(connection.pgconn.socket)
    sock = transport_socket(connection)
    if sock is None:
        msg = "the connection has no socket"
        raise ValueError(msg)
    return sock.fileno()


def expired_limit(context: ExceptionContext) -> float | None:
    """The deadline (seconds) that cut off the failed call, if the watchdog did.

    Args:
        context: The ``handle_error`` context of a driver error.

    Returns:
        The `DATABASE_CLIENT_TIMEOUT` in force, or ``None`` if the watchdog did not intervene.
    """
    connection = context.connection
    if connection is None or connection.invalidated:
        return None
    try:
        driver = _driver_connection(connection.connection.dbapi_connection)
    except Exception:  # noqa: BLE001 - only a better message is at stake
        return None
    return None if driver is None else _watchdog.cut.get(driver)


def _guarded(method: Callable[..., Any], seconds: float) -> Callable[..., Any]:
    """`method`, whose first argument (cursor or connection) is cut off after `seconds`."""

    def guarded(target: object, *args: Any, **kwargs: Any) -> Any:
        token = _watchdog.arm(target, seconds)
        try:
            return method(target, *args, **kwargs)
        finally:
            _watchdog.disarm(token)

    return guarded


def _guarded_rollback(method: Callable[..., Any], seconds: float) -> Callable[..., Any]:
    """The dialect's rollback, guarded; a psycopg connection with no transaction open is skipped.

    The pool rolls back every connection it takes back, most of them committed already: psycopg
    would find nothing to do, after taking its lock and driving an empty generator.
    """
    guarded = _guarded(method, seconds)

    def rollback(dbapi_connection: Any) -> Any:
        pgconn = getattr(dbapi_connection, "pgconn", None)
        if pgconn is not None and pgconn.transaction_status == _TRANSACTION_IDLE:
            return None
        return guarded(dbapi_connection)

    return rollback


def _guarded_ping(method: Callable[..., Any], seconds: float, place: str) -> Callable[..., Any]:
    """The pool's pre-ping, raising `ConnectionLostError` rather than reconnecting when cut off.

    A server that does not answer a ping would not answer the reconnect either: waiting
    `DATABASE_CONNECT_TIMEOUT` more for it only delays the error.
    """
    ping = _guarded(method, seconds)

    def guarded_ping(dbapi_connection: object) -> Any:
        try:
            return ping(dbapi_connection)
        except Exception as exc:
            driver = _driver_connection(dbapi_connection)
            if driver is None or driver not in _watchdog.cut:
                raise
            msg = (
                f"lost the connection to the database at {place}: no answer to the pool's "
                f"pre-ping within {seconds:g}s (DATABASE_CLIENT_TIMEOUT); the server is hung "
                "or unreachable"
            )
            raise ConnectionLostError(msg) from exc

    return guarded_ping


def arm(dialect: object, target: object) -> int | None:
    """Start `dialect`'s deadline on a call `target` (a driver connection) waits in.

    For the calls appdb awaits on asyncpg's connection itself, outside the dialect's methods
    that `apply_client_timeout` guards.

    Args:
        dialect: The engine's dialect.
        target: The driver connection the call waits on.

    Returns:
        The token for `disarm`, or ``None`` if the engine has no deadline.
    """
    seconds = _deadlines.get(dialect)
    return None if seconds is None else _watchdog.arm(target, seconds)


def disarm(token: int | None) -> None:
    """End the deadline `arm` started (the call has returned or raised).

    Args:
        token: What `arm` returned.
    """
    if token is not None:
        _watchdog.disarm(token)


def effective_client_timeout(client_timeout: float | None, statement_timeout: int | None) -> float:
    """The deadline in force: the setting, but never before the server's statement timeout.

    Args:
        client_timeout: `DATABASE_CLIENT_TIMEOUT` in seconds (``None`` or 0: none).
        statement_timeout: `DATABASE_STATEMENT_TIMEOUT` in milliseconds.

    Returns:
        Seconds, or 0 for no deadline.
    """
    if not client_timeout:
        return 0.0
    if statement_timeout:
        return max(client_timeout, statement_timeout / 1000 + _STATEMENT_TIMEOUT_MARGIN)
    return client_timeout


def apply_client_timeout(engine: Engine, seconds: float, place: str) -> None:
    """Cut off each of `engine`'s calls that waits longer than `seconds` for the server.

    Args:
        engine: A sync engine (psycopg), or an async engine's ``sync_engine`` (asyncpg).
        seconds: The deadline; 0 leaves the engine alone.
        place: ``host:port``, for messages.
    """
    if seconds <= 0:
        return
    dialect: Any = engine.dialect
    _deadlines[dialect] = seconds
    for name in ("do_execute", "do_execute_no_params", "do_executemany", "do_commit"):
        setattr(dialect, name, _guarded(getattr(dialect, name), seconds))
    # A rollback also runs when a connection is returned to the pool.
    dialect.do_rollback = _guarded_rollback(dialect.do_rollback, seconds)
    dialect.do_ping = _guarded_ping(dialect.do_ping, seconds, place)
