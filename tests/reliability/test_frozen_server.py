"""A frozen server (SIGSTOP on every PostgreSQL process) fails calls within DATABASE_CLIENT_TIMEOUT.

On loopback the kernel still acknowledges every packet for a stopped process, so keepalives and
``tcp_user_timeout`` never fire there (measured: a query still blocked after 12 s with both at
2 s); the client-side deadline is what bounds the wait. SIGCONT afterwards: the pool recovers.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from appdb import (
    AsyncSessionLocal,
    ConnectionLostError,
    DatabaseSettings,
    DatabaseUnavailableError,
    SessionLocal,
    aio,
    async_connection_scope,
    get_async_engine,
)
from appdb.engine import _postgresql_connect_args
from appdb.messages import unread_count
from appdb.session import session_scope
from appdb.users import touch_telegram_user
from pgserver import PostgresServer
from reliability_helpers import AppDBServer

pytestmark = [pytest.mark.postgresql_only, pytest.mark.slow]

CLIENT_TIMEOUT = 2.0
# The watchdog looks every 0.25 s; the rest is scheduling on a loaded CI machine.
SLACK = 1.5
SELECT_1 = text("SELECT 1")


def server_pids(server: PostgresServer) -> list[int]:
    """The postmaster and all its children."""
    postmaster = int((server.datadir / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
            pids.append(int(entry.name))
    return pids


@contextmanager
def frozen(server: PostgresServer) -> Iterator[None]:
    """Stop every server process for the block; continue them afterwards, whatever happens."""
    pids = server_pids(server)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def test_keepalives_and_tcp_user_timeout_are_set_by_default() -> None:
    """The psycopg connect arguments carry keepalives and tcp_user_timeout from the settings."""
    arguments = _postgresql_connect_args(
        DatabaseSettings(url="postgresql://u@h/db", tcp_user_timeout=7000, keepalives_idle=4)
    )
    assert {
        "keepalives": 1,
        "keepalives_idle": 4,
        "keepalives_interval": 3,
        "keepalives_count": 3,
        "tcp_user_timeout": 7000,
    }.items() <= arguments.items()


def assert_within_bound(started: float) -> float:
    elapsed = time.monotonic() - started
    print(f"frozen server surfaced after {elapsed:.2f}s")  # noqa: T201 - the README's figure
    assert CLIENT_TIMEOUT <= elapsed < CLIENT_TIMEOUT + SLACK
    return elapsed


def test_frozen_server_surfaces_as_connection_lost_sync(
    use_server: Callable[..., AppDBServer],
) -> None:
    """A warm pool: a fresh session and a statement in a transaction fail within the bound.

    A frozen server leaves the idle socket silent, so the pre-ping (which only inspects it)
    passes and the session's first statement runs into DATABASE_CLIENT_TIMEOUT.

    The first lost connection invalidates the pool, so the next call connects afresh and
    fails after DATABASE_CONNECT_TIMEOUT with DatabaseUnavailableError.
    """
    database = use_server(client_timeout=CLIENT_TIMEOUT, connect_timeout=int(CLIENT_TIMEOUT))
    with SessionLocal() as first, SessionLocal() as second:  # two pooled connections
        first.scalar(SELECT_1)
        second.scalar(SELECT_1)
    with SessionLocal() as busy:
        busy.scalar(SELECT_1)  # holds a connection in an open transaction
        with frozen(database.server):
            started = time.monotonic()
            with (
                SessionLocal() as session,
                pytest.raises(ConnectionLostError, match="DATABASE_CLIENT_TIMEOUT"),
            ):
                session.scalar(SELECT_1)
            assert_within_bound(started)
            started = time.monotonic()
            with pytest.raises(ConnectionLostError, match="DATABASE_CLIENT_TIMEOUT"):
                busy.scalar(SELECT_1)
            assert_within_bound(started)
            started = time.monotonic()
            with SessionLocal() as session, pytest.raises(DatabaseUnavailableError):
                session.scalar(SELECT_1)
            assert_within_bound(started)
        busy.rollback()
    with SessionLocal() as session:
        assert 1 == session.scalar(SELECT_1)


@pytest.mark.anyio
async def test_frozen_server_surfaces_as_connection_lost_async(
    use_server: Callable[..., AppDBServer],
) -> None:
    """The async engine: the same errors within the same bound, and recovery after SIGCONT."""
    database = use_server(client_timeout=CLIENT_TIMEOUT, connect_timeout=int(CLIENT_TIMEOUT))
    try:
        async with AsyncSessionLocal() as first, AsyncSessionLocal() as second:
            await first.scalar(SELECT_1)
            await second.scalar(SELECT_1)
        async with AsyncSessionLocal() as busy:
            await busy.scalar(SELECT_1)
            with frozen(database.server):
                started = time.monotonic()
                with pytest.raises(ConnectionLostError, match="DATABASE_CLIENT_TIMEOUT"):
                    async with AsyncSessionLocal() as session:
                        await session.scalar(SELECT_1)
                assert_within_bound(started)
                started = time.monotonic()
                with pytest.raises(ConnectionLostError, match="DATABASE_CLIENT_TIMEOUT"):
                    await busy.scalar(SELECT_1)
                assert_within_bound(started)
                started = time.monotonic()
                with pytest.raises(DatabaseUnavailableError):
                    async with AsyncSessionLocal() as session:
                        await session.scalar(SELECT_1)
                assert_within_bound(started)
            await busy.rollback()
        async with AsyncSessionLocal() as session:
            assert 1 == await session.scalar(SELECT_1)
    finally:
        await get_async_engine().dispose()


def test_frozen_server_stops_a_hot_operation_in_time(
    use_server: Callable[..., AppDBServer],
) -> None:
    """The hot statements run on the driver's cursor (`appdb._direct`), under the same deadline."""
    database = use_server(client_timeout=CLIENT_TIMEOUT, connect_timeout=int(CLIENT_TIMEOUT))
    with session_scope() as session:
        touch_telegram_user(session, 1, as_row=True)
    with SessionLocal() as session:
        with frozen(database.server):
            started = time.monotonic()
            with pytest.raises(ConnectionLostError, match="DATABASE_CLIENT_TIMEOUT"):
                touch_telegram_user(session, 1, first_name="Ann", as_row=True)
            assert_within_bound(started)
        session.rollback()
    with session_scope() as session:
        assert 0 == unread_count(session, 1)  # the pool reconnected


@pytest.mark.anyio
async def test_frozen_server_stops_an_async_scopes_statement_in_time(
    use_server: Callable[..., AppDBServer],
) -> None:
    """In an async connection scope the statement awaits asyncpg itself, under the deadline too."""
    database = use_server(client_timeout=CLIENT_TIMEOUT, connect_timeout=int(CLIENT_TIMEOUT))
    try:
        async with async_connection_scope() as connection:
            await aio.touch_telegram_user(connection, 1, as_row=True)
        started = time.monotonic()
        with pytest.raises(ConnectionLostError, match="DATABASE_CLIENT_TIMEOUT"):
            async with async_connection_scope() as connection:
                with frozen(database.server):
                    await aio.touch_telegram_user(connection, 1, first_name="Ann", as_row=True)
        assert_within_bound(started)
        async with async_connection_scope() as connection:
            assert 0 == await aio.unread_count(connection, 1)  # the pool reconnected
    finally:
        await get_async_engine().dispose()


def test_a_long_statement_within_the_deadline_is_left_alone(
    use_server: Callable[..., AppDBServer],
) -> None:
    """A statement that takes a while but answers inside the deadline is not cut off."""
    use_server(client_timeout=CLIENT_TIMEOUT)
    with SessionLocal() as session:
        assert session.scalar(text("SELECT pg_sleep(1.2) IS NOT NULL")) is True


def test_client_timeout_never_undercuts_statement_timeout() -> None:
    """The deadline in force is at least statement_timeout + 2 s, so the server's cancel comes first."""
    from appdb._deadline import effective_client_timeout  # noqa: PLC0415

    assert 20.0 == effective_client_timeout(20.0, None)
    assert 62.0 == effective_client_timeout(20.0, 60_000)
    assert 0.0 == effective_client_timeout(0, 60_000)
    assert DatabaseSettings(url="postgresql://u@h/db").for_migrations().client_timeout is None
