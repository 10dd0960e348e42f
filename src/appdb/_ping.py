"""A pool pre-ping that looks at the idle connection instead of sending ``SELECT 1``.

A connection checked in to the pool was rolled back, so at checkout it is idle and the server
has nothing to say to it: any byte waiting on its socket is the server's goodbye (a
``FATAL: terminating connection`` error, then end of file) or a notice, and a closed or broken
connection shows in libpq's status. Only then is the real ping sent, whose failure makes the
pool invalidate the connection and reconnect, as before. A healthy connection costs one
non-blocking ``select`` instead of a round trip.

What no socket can show is a server that froze or a network that went silent: the first
statement then runs into ``DATABASE_CLIENT_TIMEOUT`` (or ``tcp_user_timeout``) and fails with
`ConnectionLostError`, as the ``SELECT 1`` would have.
"""

from __future__ import annotations

import select
from typing import TYPE_CHECKING, Any

from appdb._asyncpg import transport_socket

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy.engine import Engine

__all__ = ["InspectingPing", "inspect_before_ping"]


# psycopg.pq's ConnStatus.OK and TransactionStatus.IDLE; psycopg itself is imported only
# when a connection is made, not when appdb is.
_CONNECTION_OK = 0
_TRANSACTION_IDLE = 0


def _idle_and_quiet(dbapi_connection: object) -> bool:
    """Whether a pooled psycopg or asyncpg connection is open, idle and has no unread input."""
    # The sync dialect pools psycopg's connection itself; the async one an adapter around
    # asyncpg's, which reads the socket whenever the event loop runs: a goodbye it has read
    # already shows in is_closed().
    driver: Any = getattr(dbapi_connection, "_connection", dbapi_connection)
    if hasattr(driver, "pgconn"):
        if driver.closed or driver.broken:
            return False
        pgconn = driver.pgconn
        if pgconn.status != _CONNECTION_OK or pgconn.transaction_status != _TRANSACTION_IDLE:
            return False
        fileno: Any = pgconn.socket
    elif hasattr(driver, "is_in_transaction"):
        if driver.is_closed() or driver.is_in_transaction():
            return False
        fileno = transport_socket(driver)
    else:
        return False
    try:
        readable, _, _ = select.select([fileno], [], [], 0)
    except (OSError, ValueError, TypeError):
        return False
    return not readable


class InspectingPing:
    """A dialect's ``do_ping``: the socket first, `server_ping` (``SELECT 1``) only if needed."""

    def __init__(self, server_ping: Callable[[object], bool]) -> None:
        """Wrap the dialect's own ping.

        Args:
            server_ping: The ping that sends ``SELECT 1`` (already under the client timeout).
        """
        self.server_ping = server_ping

    def __call__(self, dbapi_connection: object) -> bool:
        """Whether the connection is usable; a ``False`` makes the pool reconnect."""
        return _idle_and_quiet(dbapi_connection) or self.server_ping(dbapi_connection)


def inspect_before_ping(engine: Engine) -> None:
    """Make `engine`'s pre-ping send ``SELECT 1`` only when the socket says something is wrong.

    Args:
        engine: A sync engine (psycopg), or an async engine's ``sync_engine`` (asyncpg).
    """
    dialect: Any = engine.dialect
    dialect.do_ping = InspectingPing(dialect.do_ping)
