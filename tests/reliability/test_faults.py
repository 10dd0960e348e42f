"""Faults on a throwaway PostgreSQL server: restarts, killed connections, outages, pools, timeouts.

Restarts happen while idle and under traffic; connections are killed with pg_terminate_backend;
the server is down at start-up; the pool runs dry; a runaway query meets statement_timeout.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from sqlalchemy import text

import appdb
from appdb import (
    AppDBError,
    AsyncSessionLocal,
    ConnectionLostError,
    DatabaseUnavailableError,
    PoolTimeoutError,
    SessionLocal,
    StatementTimeoutError,
    get_async_db,
    get_async_engine,
    get_db,
    get_engine,
    session_scope,
)
from appdb.messages import send_message
from appdb.users import touch_telegram_user
from reliability_helpers import FAULT_PASSWORD, AppDBServer, wait_gone

pytestmark = pytest.mark.postgresql_only

SCRIPT = str(Path(sys.executable).parent / "appdb-migrate")
SELECT_PID = text("SELECT pg_backend_pid()")
PASSWORD_FORMS = (FAULT_PASSWORD, quote(FAULT_PASSWORD, safe=""), "Fault@pw")


def assert_no_password(text_: str) -> None:
    for form in PASSWORD_FORMS:
        assert form not in text_


def request_pid() -> int:
    """One FastAPI-style request through get_db: the server process that served it."""
    requests = get_db()
    session = next(requests)
    try:
        return int(session.scalar(SELECT_PID))
    finally:
        requests.close()


def assert_served(database: AppDBServer, pid: int) -> None:
    """`pid` is a live backend of the test's server, in database appdb, opened by the service."""
    rows = database.server.execute(
        f"SELECT datname, application_name FROM pg_stat_activity WHERE pid = {int(pid)}"  # noqa: S608 - an int
    )
    assert [("appdb", f"appdb-fault-test appdb/{appdb.__version__}")] == rows


async def async_request_pid() -> int:
    """One async request through get_async_db."""
    requests = get_async_db()
    session = await anext(requests)
    try:
        return int(await session.scalar(SELECT_PID))
    finally:
        await requests.aclose()


def test_idle_restart_next_request_succeeds(use_server: Callable[..., AppDBServer]) -> None:
    """After a restart while idle, the next SessionLocal() and get_db request succeed (pre-ping)."""
    database = use_server()
    with SessionLocal() as session:
        before = session.scalar(SELECT_PID)
    database.server.restart()
    with SessionLocal() as session:
        after = session.scalar(SELECT_PID)
    assert before != after
    assert_served(database, request_pid())


@pytest.mark.anyio
async def test_idle_restart_next_async_request_succeeds(
    use_server: Callable[..., AppDBServer],
) -> None:
    """After a restart while idle, the next AsyncSessionLocal() and get_async_db request succeed."""
    database = use_server()
    async with AsyncSessionLocal() as session:
        before = await session.scalar(SELECT_PID)
    database.server.restart()
    try:
        async with AsyncSessionLocal() as session:
            after = await session.scalar(SELECT_PID)
        assert before != after
        assert_served(database, await async_request_pid())
    finally:
        await get_async_engine().dispose()


def test_without_pre_ping_one_request_fails_cleanly_then_pool_recovers(
    use_server: Callable[..., AppDBServer],
) -> None:
    """Pre-ping off: one ConnectionLostError after a restart, then the invalidated pool recovers.

    The translation must not break SQLAlchemy's invalidation: the very next request works.
    """
    database = use_server(pool_pre_ping="false")
    request_pid()
    database.server.restart()
    with pytest.raises(ConnectionLostError, match="lost the connection") as info:
        request_pid()
    assert f"127.0.0.1:{database.server.port}" in str(info.value)
    assert isinstance(info.value.__cause__, Exception)
    assert_served(database, request_pid())


@pytest.mark.anyio
async def test_without_pre_ping_async_fails_cleanly_then_recovers(
    use_server: Callable[..., AppDBServer],
) -> None:
    """The async engine translates the lost connection too and recovers on the next request."""
    database = use_server(pool_pre_ping="false")
    try:
        await async_request_pid()
        database.server.restart()
        with pytest.raises(ConnectionLostError, match="lost the connection"):
            await async_request_pid()
        assert_served(database, await async_request_pid())
    finally:
        await get_async_engine().dispose()


def test_terminated_pooled_connection_recovers(use_server: Callable[..., AppDBServer]) -> None:
    """A killed idle connection is replaced on checkout; a killed busy one raises, then recovers."""
    database = use_server()
    first = request_pid()
    database.server.execute(f"SELECT pg_terminate_backend({first})")
    wait_gone(database.server, {first})
    second = request_pid()
    assert first != second

    with SessionLocal() as session:
        pid = session.scalar(SELECT_PID)
        database.server.execute(f"SELECT pg_terminate_backend({pid})")
        wait_gone(database.server, {pid})
        with pytest.raises(ConnectionLostError, match="terminating connection"):
            session.scalar(text("SELECT 1"))
        session.rollback()
        assert 1 == session.scalar(text("SELECT 1"))
    assert_served(database, request_pid())


def test_server_down_at_start_up(use_server: Callable[..., AppDBServer], tmp_path: Path) -> None:
    """Server down: first use raises DatabaseUnavailableError (host:port, no password); CLI exits 1.

    Building the engine succeeds; the traceback hides the password too; appdb-migrate prints one
    line.
    """
    database = use_server(connect_timeout=2)
    database.server.stop()
    engine = get_engine()
    assert 0 == cast("sa.QueuePool", engine.pool).checkedout()
    where = f"127.0.0.1:{database.server.port}"
    with pytest.raises(DatabaseUnavailableError, match="cannot connect") as info:
        request_pid()
    assert where in str(info.value)
    assert not isinstance(info.value, ConnectionLostError)
    assert_no_password("".join(traceback.format_exception(info.value)))

    environment = {k: v for k, v in os.environ.items() if k.startswith("DATABASE_") or k == "PATH"}
    for verbose in ([], ["-v"]):
        result = subprocess.run(
            [SCRIPT, *verbose, "upgrade"],
            env=environment,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert 1 == result.returncode
        assert where in result.stderr
        assert_no_password(result.stdout + result.stderr)
        if not verbose:
            assert 1 == len(result.stderr.strip().splitlines()), result.stderr
            assert result.stderr.startswith("appdb-migrate: error: cannot upgrade: cannot connect")


@pytest.mark.anyio
async def test_server_down_at_start_up_async(use_server: Callable[..., AppDBServer]) -> None:
    """The async engine reports the unreachable server the same way."""
    database = use_server(connect_timeout=2)
    database.server.stop()
    with pytest.raises(DatabaseUnavailableError, match="cannot connect") as info:
        await async_request_pid()
    assert f"127.0.0.1:{database.server.port}" in str(info.value)
    assert_no_password("".join(traceback.format_exception(info.value)))


def test_exhausted_pool_times_out_then_recovers(use_server: Callable[..., AppDBServer]) -> None:
    """All connections held: PoolTimeoutError after pool_timeout, not a hang; then it recovers."""
    database = use_server(pool_size=2, max_overflow=1, pool_timeout=1)
    held = [SessionLocal() for _ in range(3)]
    for session in held:
        session.scalar(text("SELECT 1"))
    started = time.monotonic()
    with pytest.raises(PoolTimeoutError, match=r"within 1s.*DATABASE_POOL_SIZE 2") as info:
        request_pid()
    waited = time.monotonic() - started
    assert 0.9 <= waited < 15
    assert isinstance(info.value, DatabaseUnavailableError)
    assert isinstance(info.value, TimeoutError)
    held.pop().close()
    assert_served(database, request_pid())
    for session in held:
        session.close()
    assert 0 == cast("sa.QueuePool", get_engine().pool).checkedout()


@pytest.mark.anyio
async def test_exhausted_async_pool_times_out_then_recovers(
    use_server: Callable[..., AppDBServer],
) -> None:
    """The async pool raises PoolTimeoutError as well, and recovers."""
    database = use_server(pool_size=1, max_overflow=0, pool_timeout=0.5)
    held = AsyncSessionLocal()
    try:
        await held.scalar(text("SELECT 1"))
        with pytest.raises(PoolTimeoutError, match=r"within 0\.5s"):
            await async_request_pid()
        await held.close()
        assert_served(database, await async_request_pid())
    finally:
        await held.close()
        await get_async_engine().dispose()


def test_statement_timeout_cancels_runaway_query(use_server: Callable[..., AppDBServer]) -> None:
    """A query past statement_timeout raises StatementTimeoutError; the session works after rollback."""
    use_server(statement_timeout=200)
    with SessionLocal() as session:
        with pytest.raises(StatementTimeoutError, match=r"statement timeout.*200 ms"):
            session.execute(text("SELECT pg_sleep(5)"))
        session.rollback()
        assert 1 == session.scalar(text("SELECT 1"))


@pytest.mark.anyio
async def test_statement_timeout_async(use_server: Callable[..., AppDBServer]) -> None:
    """The async engine raises StatementTimeoutError too, and the session stays usable."""
    use_server(statement_timeout=200)
    try:
        async with AsyncSessionLocal() as session:
            with pytest.raises(StatementTimeoutError):
                await session.scalar(text("SELECT pg_sleep(5)"))
            await session.rollback()
            assert 1 == await session.scalar(text("SELECT 1"))
    finally:
        await get_async_engine().dispose()


@dataclass
class Outcome:
    """One request of the traffic test."""

    token: str
    started: float
    error: BaseException | None


def _traffic(worker: int, recipient_id: int, stop: threading.Event, log: list[Outcome]) -> None:
    """Touch a Telegram user and send a message with a unique token, as the bot does, until stopped."""
    number = 0
    while not stop.is_set():
        number += 1
        token = f"w{worker}-{number}"
        started = time.monotonic()
        try:
            with session_scope() as session:
                user = touch_telegram_user(session, 1000 + worker, first_name=f"worker {worker}")
                send_message(session, sender_id=user.id, recipient_id=recipient_id, content=token)
        except Exception as exc:  # noqa: BLE001 - every failure is recorded and judged below
            log.append(Outcome(token, started, exc))
            time.sleep(0.02)
        else:
            log.append(Outcome(token, started, None))


def _long_query(errors: list[BaseException], running: threading.Event) -> None:
    try:
        with session_scope() as session:
            running.set()
            session.execute(text("SELECT pg_sleep(60)"))
    except Exception as exc:  # noqa: BLE001 - judged by the test
        errors.append(exc)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fast", "immediate"], ids=["restart", "crash"])
def test_restart_during_traffic_loses_nothing(
    use_server: Callable[..., AppDBServer], mode: str
) -> None:
    """A restart under traffic: clean errors in flight, success afterwards, no message lost or doubled.

    Requests in flight fail with ConnectionLostError (new ones while the server is down with
    DatabaseUnavailableError), every request started after the restart succeeds, and the stored
    messages are exactly the successful sends, once each. A crash (immediate shutdown) may kill
    a backend between its commit and the reply: such an in-doubt send (ConnectionLostError from
    the commit) may or may not be stored, and nothing else may differ.
    """
    database = use_server(pool_size=4, max_overflow=2, connect_timeout=2)
    with session_scope() as session:
        recipient_id = touch_telegram_user(session, 1, first_name="recipient").id
    stop = threading.Event()
    log: list[Outcome] = []
    workers = [
        threading.Thread(target=_traffic, args=(worker, recipient_id, stop, log))
        for worker in range(4)
    ]
    long_errors: list[BaseException] = []
    long_running = threading.Event()
    long_query = threading.Thread(target=_long_query, args=(long_errors, long_running))
    for thread in workers:
        thread.start()
    try:
        while sum(outcome.error is None for outcome in log) < 100:
            time.sleep(0.01)
        long_query.start()
        assert long_running.wait(10)
        time.sleep(0.2)  # the pg_sleep is running on the server
        database.server.restart(mode, down_for=0.5)
        back_up = time.monotonic()
        while sum(outcome.started > back_up for outcome in log) < 100:
            time.sleep(0.01)
    finally:
        stop.set()
        for thread in [*workers, long_query]:
            thread.join(60)

    assert 1 == len(long_errors)
    assert isinstance(long_errors[0], ConnectionLostError), repr(long_errors[0])
    assert f"lost the connection to the database at 127.0.0.1:{database.server.port}" in str(
        long_errors[0]
    )
    errors = [outcome.error for outcome in log if outcome.error is not None]
    raw = [error for error in errors if not isinstance(error, DatabaseUnavailableError)]
    assert [] == raw
    for error in errors:
        assert isinstance(error, AppDBError)
        assert_no_password(str(error))
    after = [outcome for outcome in log if outcome.started > back_up]
    assert [] == [outcome for outcome in after if outcome.error is not None]

    succeeded = sorted(outcome.token for outcome in log if outcome.error is None)
    engine = sa.create_engine(database.url)
    with engine.connect() as connection:
        stored = sorted(connection.exec_driver_sql("SELECT content FROM messages").scalars().all())
    engine.dispose()
    assert len(stored) == len(set(stored))
    if mode == "fast":
        assert succeeded == stored
    else:
        in_doubt = {
            outcome.token
            for outcome in log
            if isinstance(outcome.error, ConnectionLostError) and "commit" in str(outcome.error)
        }
        assert set(succeeded) <= set(stored) <= set(succeeded) | in_doubt


@pytest.mark.anyio
async def test_cancelled_task_is_not_translated(use_server: Callable[..., AppDBServer]) -> None:
    """A task cancelled mid-query (a bot handler's timeout) stays a cancellation, not an AppDBError.

    SQLAlchemy discards the interrupted connection; the next request gets a fresh one.
    """
    database = use_server()
    try:
        async with AsyncSessionLocal() as session:
            with pytest.raises(TimeoutError) as info:
                await asyncio.wait_for(session.scalar(text("SELECT pg_sleep(5)")), 0.3)
            assert not isinstance(info.value, AppDBError)
        assert_served(database, await async_request_pid())
    finally:
        await get_async_engine().dispose()
