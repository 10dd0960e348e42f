"""asyncpg, the asyncio driver of appdb's PostgreSQL engines: the settings as asyncpg takes them.

`DATABASE_URL` speaks libpq: the sync engine hands it to psycopg 3 as it is. asyncpg reads most
of libpq's parameters itself from a DSN (``sslmode`` and the certificate files,
``target_session_attrs``, ``passfile``, ``service``, ``krbsrvname``) and sends any other query
parameter to the server in the startup packet, as libpq does with ``options``. So the async
engine gives asyncpg the URL's parameters as a DSN, except the client-side ones only libpq
knows: ``connect_timeout`` becomes asyncpg's ``timeout``, keepalives and ``tcp_user_timeout``
become options of the connection's socket, and the others are refused up front rather than
sent to a server that would reject them.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from sqlalchemy import event

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine
    from sqlalchemy.pool import ConnectionPoolEntry

    from appdb.settings import DatabaseSettings

__all__ = [
    "ASYNCPG_DRIVER",
    "apply_socket_options",
    "async_url",
    "connect_args",
    "translate_connect_errors",
    "transport_socket",
    "unsupported_parameters",
]

ASYNCPG_DRIVER = "postgresql+asyncpg"
"""SQLAlchemy's name for the asyncpg dialect, which appdb's async PostgreSQL engines use."""

# libpq parameters that appdb translates for asyncpg (from its settings, which the sync engine
# passes to libpq the same way), so they must not reach the server as settings.
_TRANSLATED = frozenset(
    {
        "connect_timeout",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "application_name",
        "options",
    }
)
# libpq's other client-side parameters: asyncpg has no equivalent.
_LIBPQ_ONLY = frozenset(
    {
        "channel_binding",
        "client_encoding",
        "fallback_application_name",
        "gssdelegation",
        "gssencmode",
        "hostaddr",
        "load_balance_hosts",
        "replication",
        "require_auth",
        "requirepeer",
        "requiressl",
        "sslcertmode",
        "sslcompression",
        "sslsni",
    }
)
# SQLAlchemy's asyncpg dialect reads ?host=h1:p1&host=h2:p2 itself (several hosts).
_FOR_SQLALCHEMY = frozenset({"host", "port"})


def unsupported_parameters(url: URL) -> list[str]:
    """The libpq parameters of `url` that asyncpg cannot honour, sorted.

    Args:
        url: The normalised PostgreSQL URL.

    Returns:
        Their names; empty when the async engine can serve the URL.
    """
    return sorted(_LIBPQ_ONLY.intersection(url.query))


def async_url(url: URL) -> URL:
    """`url` for SQLAlchemy's asyncpg dialect: the driver, and only the parameters it reads.

    Args:
        url: The normalised PostgreSQL URL (psycopg 3, libpq parameters).

    Returns:
        The same server, user and database through asyncpg; the other parameters travel in
        `connect_args`.
    """
    query = {name: value for name, value in url.query.items() if name in _FOR_SQLALCHEMY}
    return url.set(drivername=ASYNCPG_DRIVER, query=query)


def connect_args(
    settings: DatabaseSettings, application_name: str, options: str | None
) -> dict[str, Any]:
    """The connection arguments of asyncpg for `settings`, as libpq gets them for the sync engine.

    Args:
        settings: The settings (the URL's own parameters included).
        application_name: The tagged ``application_name``.
        options: libpq's ``options`` (``-c name=value`` ...), the URL's and appdb's merged.

    Returns:
        Keyword arguments for ``asyncpg.connect`` (and SQLAlchemy's asyncpg adapter).
    """
    url = settings.database_url
    passed = {
        name: value
        for name, value in url.query.items()
        if name not in _TRANSLATED | _FOR_SQLALCHEMY | _LIBPQ_ONLY
    }
    server_settings = {"application_name": application_name}
    if options:
        server_settings["options"] = options
    arguments: dict[str, Any] = {
        "timeout": float(settings.connect_timeout),
        "server_settings": server_settings,
        # DATABASE_CLIENT_TIMEOUT (appdb._deadline) bounds every wait instead.
        "command_timeout": None,
    }
    if passed:
        arguments["dsn"] = "postgresql://?" + urlencode(passed, doseq=True)
    if settings.uses_transaction_pooler:
        # A prepared statement lives on the server connection that prepared it, which PgBouncer
        # hands to other clients between transactions: asyncpg then prepares each statement
        # unnamed (or under a name no other client uses) in the transaction that runs it.
        arguments |= {
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": _unique_statement_name,
        }
    return arguments


def _unique_statement_name() -> str:
    import uuid  # noqa: PLC0415 - PgBouncer mode only

    return f"__appdb_{uuid.uuid4().hex}__"


def transport_socket(driver_connection: object) -> socket.socket | None:
    """The TCP or Unix socket of an asyncpg connection, or ``None`` if it has none (closed).

    asyncpg keeps its asyncio transport private; the transport itself gives its socket out.
    """
    transport = getattr(driver_connection, "_transport", None)
    if transport is None:
        return None
    sock: socket.socket | None = transport.get_extra_info("socket")
    return sock


def apply_socket_options(sync_engine: Engine, settings: DatabaseSettings) -> None:
    """Set keepalives and ``tcp_user_timeout`` on each new asyncpg connection's TCP socket.

    libpq does this for the sync engine from the same settings (`DATABASE_KEEPALIVES_*`,
    `DATABASE_TCP_USER_TIMEOUT`); a Unix socket has none of them.

    Args:
        sync_engine: An async engine's ``sync_engine`` (asyncpg).
        settings: The settings.
    """
    wanted = (
        (socket.SOL_SOCKET, "SO_KEEPALIVE", 1),
        (socket.IPPROTO_TCP, "TCP_KEEPIDLE", settings.keepalives_idle),
        (socket.IPPROTO_TCP, "TCP_KEEPINTVL", settings.keepalives_interval),
        (socket.IPPROTO_TCP, "TCP_KEEPCNT", settings.keepalives_count),
        (socket.IPPROTO_TCP, "TCP_USER_TIMEOUT", settings.tcp_user_timeout),
    )
    # Linux has them all; elsewhere (macOS) the ones the platform lacks are left out.
    options = [
        (level, getattr(socket, name), value)
        for level, name, value in wanted
        if hasattr(socket, name)
    ]

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        sock = transport_socket(dbapi_connection.driver_connection)
        if sock is None or sock.family not in {socket.AF_INET, socket.AF_INET6}:
            return
        for level, name, value in options:
            sock.setsockopt(level, name, value)


def translate_connect_errors(sync_engine: Engine) -> None:
    """Make every failure to connect a DBAPI ``OperationalError``, as psycopg's are.

    And refuse to connect outside SQLAlchemy's greenlet with its ``MissingGreenlet``, before
    asyncpg's coroutine is made (see `appdb._direct.open_async_unit`).

    asyncpg raises the socket's own error there (``ConnectionRefusedError``,
    ``socket.gaierror``), ``TimeoutError``, or the server's refusal ("the database system is
    shutting down", a failed login), which SQLAlchemy's adapter makes its generic ``Error``.
    The ``handle_error`` listeners (`appdb._errors`) make an ``OperationalError`` at connect
    `DatabaseUnavailableError`, whichever driver raised it.

    Args:
        sync_engine: An async engine's ``sync_engine`` (asyncpg).
    """
    from sqlalchemy.exc import MissingGreenlet  # noqa: PLC0415 - with the asyncio extension
    from sqlalchemy.util.concurrency import in_greenlet  # noqa: PLC0415

    dialect: Any = sync_engine.dialect
    connect = dialect.connect

    def connecting(*args: Any, **kwargs: Any) -> Any:
        if not in_greenlet():
            # A checkout tried without a greenlet (`appdb._direct.open_async_unit`) needs a new
            # connection: say so before asyncpg's connect coroutine exists, which SQLAlchemy
            # would otherwise leave un-awaited (a RuntimeWarning); the caller retries in one.
            msg = "a new connection is made in SQLAlchemy's greenlet"
            raise MissingGreenlet(msg)
        dbapi = dialect.loaded_dbapi
        try:
            return connect(*args, **kwargs)
        except dbapi.OperationalError:
            raise
        except dbapi.Error as exc:
            raise dbapi.OperationalError(str(exc.args[0]), exc.__cause__) from exc
        except (OSError, TimeoutError) as exc:
            reason = "connection timeout expired" if isinstance(exc, TimeoutError) else str(exc)
            raise dbapi.OperationalError(reason or type(exc).__name__) from exc

    dialect.connect = connecting
