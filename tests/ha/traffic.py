"""Bot-like write traffic through appdb while a fault happens, and what it tells afterwards.

Shared by tests/ha/test_failover.py and benchmarks/bench_failover.py. Each worker (a thread, or
an asyncio task) alternates `touch_telegram_user` and `send_message`, each its own unit of work
through one engine; every send carries a unique token, so the messages stored afterwards can be
compared with the sends that returned success. Workers stop after `max_operations` each or when
told to, and wait a little after a failure, as a service's retry would.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from appdb import (
    AppDBError,
    ConnectionLostError,
    DatabaseSettings,
    aio,
    async_session_scope,
    create_async_engine,
    create_engine,
    session_scope,
)
from appdb._asyncpg import transport_socket
from appdb.messages import send_message
from appdb.users import touch_telegram_user

BACKOFF_SECONDS = 0.05
IN_DOUBT = "may or may not have taken effect"


@dataclass
class Outcome:
    """One finished operation."""

    worker: int
    kind: str
    started: float
    ended: float
    error: BaseException | None = None
    token: str | None = None
    port: int | None = None


@dataclass
class Traffic:
    """Everything the workers did, for the assertions and the figures."""

    prefix: str
    outcomes: list[Outcome] = field(default_factory=list)
    fault_at: float = 0.0
    fault_done_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, outcome: Outcome) -> None:
        """Add one finished operation (from any thread)."""
        with self.lock:
            self.outcomes.append(outcome)

    @property
    def errors(self) -> list[BaseException]:
        """Every exception a worker saw."""
        return [outcome.error for outcome in self.outcomes if outcome.error is not None]

    @property
    def error_counts(self) -> Counter[str]:
        """Exception class names and how often each was raised."""
        return Counter(type(error).__name__ for error in self.errors)

    def successful_sends(self) -> list[str]:
        """Tokens of the sends that returned success."""
        return [o.token for o in self.outcomes if o.kind == "send" and o.error is None and o.token]

    def in_doubt_sends(self) -> set[str]:
        """Tokens of sends whose commit lost its connection: they may or may not be stored."""
        return {
            o.token
            for o in self.outcomes
            if o.kind == "send"
            and o.token
            and isinstance(o.error, ConnectionLostError)
            and IN_DOUBT in str(o.error)
        }

    def first_success_on(self, port: int) -> float | None:
        """Seconds from the fault to the first success on the server listening on `port`."""
        ends = [
            o.ended
            for o in self.outcomes
            if o.error is None and o.port == port and o.ended >= self.fault_at
        ]
        return min(ends) - self.fault_at if ends else None

    def workers_recovered(self, workers: int) -> bool:
        """Whether every worker has succeeded at least once since the fault ended."""
        done = {
            o.worker for o in self.outcomes if o.error is None and o.started >= self.fault_done_at
        }
        return self.fault_done_at > 0 and len(done) == workers

    def failures_after_fault(self) -> list[Outcome]:
        """Failed operations that ended after the fault began."""
        return [o for o in self.outcomes if o.error is not None and o.ended >= self.fault_at]

    def outage_seconds(self) -> float:
        """From the fault to the last failure it caused (0 when nothing failed)."""
        failures = self.failures_after_fault()
        return max(o.ended for o in failures) - self.fault_at if failures else 0.0


def _port(driver_connection: object) -> int | None:
    """The port of the server a psycopg or asyncpg connection is on (no round trip).

    libpq knows it; asyncpg's socket does.
    """
    info = getattr(driver_connection, "info", None)
    if info is not None:
        return int(info.port)
    sock = transport_socket(driver_connection)
    return None if sock is None else int(sock.getpeername()[1])


def stored_tokens(settings: DatabaseSettings, prefix: str) -> list[str]:
    """The contents of the messages stored with `prefix`, read on the primary."""
    engine = create_engine(settings)
    try:
        with engine.connect() as connection:
            statement = sa.text("SELECT content FROM messages WHERE content LIKE :prefix")
            return list(connection.execute(statement, {"prefix": f"{prefix}-%"}).scalars())
    finally:
        engine.dispose()


def _wait_then_fault(
    traffic: Traffic,
    fault: Callable[[], object],
    *,
    workers: int,
    before: float,
    after: float,
    deadline: float,
) -> None:
    time.sleep(before)
    traffic.fault_at = time.monotonic()
    fault()
    traffic.fault_done_at = time.monotonic()
    recovered_at: float | None = None
    while time.monotonic() < deadline:
        if recovered_at is None and traffic.workers_recovered(workers):
            recovered_at = time.monotonic()
        if recovered_at is not None and time.monotonic() - recovered_at >= after:
            return
        time.sleep(0.02)


def _users(session: Session, prefix: str, workers: int) -> list[int]:
    base = abs(hash(prefix)) % 10**9 * 100
    return [
        int(touch_telegram_user(session, base + number, first_name=prefix).id or 0)
        for number in range(workers)
    ]


def run_sync(
    settings: DatabaseSettings,
    fault: Callable[[], object],
    *,
    prefix: str,
    threads: int = 20,
    before: float = 1.0,
    after: float = 1.0,
    max_operations: int = 2000,
    max_seconds: float = 90.0,
) -> tuple[Traffic, sa.Engine]:
    """Run `threads` threads of touches and sends through one engine; call `fault` meanwhile.

    Args:
        settings: The service's settings (a multi-host `DATABASE_URL`).
        fault: Takes the primary away (kill, switchover); runs `before` seconds in.
        prefix: Names this run's users and message tokens.
        threads: Concurrent workers.
        before: Seconds of traffic before the fault.
        after: Seconds of traffic after every worker has succeeded again.
        max_operations: Upper bound of operations per worker.
        max_seconds: Upper bound of the whole run.

    Returns:
        What happened, and the engine (still open: the caller checks it still works).
    """
    engine = create_engine(settings)
    factory = sessionmaker(engine, class_=Session, autoflush=False, expire_on_commit=False)
    with session_scope(factory) as session:
        users = _users(session, prefix, threads)
    traffic = Traffic(prefix)
    stop = threading.Event()

    def work(number: int) -> None:
        me, other = users[number], users[(number + 1) % threads]
        for count in range(max_operations):
            if stop.is_set():
                return
            kind = "send" if count % 2 else "touch"
            token = f"{prefix}-{number}-{count}" if kind == "send" else None
            started = time.monotonic()
            error: BaseException | None = None
            port: int | None = None
            try:
                with session_scope(factory) as session:
                    if kind == "send":
                        send_message(session, sender_id=me, recipient_id=other, content=token or "")
                    else:
                        touch_telegram_user(session, abs(hash(prefix)) % 10**9 * 100 + number)
                    port = _port(session.connection().connection.driver_connection)
            except AppDBError as exc:
                error = exc
            except Exception as exc:  # noqa: BLE001 - a foreign error is what the test looks for
                error = exc
            traffic.record(Outcome(number, kind, started, time.monotonic(), error, token, port))
            if error is not None:
                time.sleep(BACKOFF_SECONDS)

    running = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(threads)]
    deadline = time.monotonic() + max_seconds
    for thread in running:
        thread.start()
    try:
        _wait_then_fault(
            traffic, fault, workers=threads, before=before, after=after, deadline=deadline
        )
    finally:
        stop.set()
        for thread in running:
            thread.join(30)
    return traffic, engine


async def run_async(
    settings: DatabaseSettings,
    fault: Callable[[], object],
    *,
    prefix: str,
    tasks: int = 50,
    before: float = 1.0,
    after: float = 1.0,
    max_operations: int = 2000,
    max_seconds: float = 90.0,
) -> Traffic:
    """The asyncio twin of `run_sync`: `tasks` tasks on one async engine (`fault` in a thread).

    Returns:
        What happened; the engine has been checked to work again and disposed of.
    """
    engine = create_async_engine(settings)
    factory = async_sessionmaker(
        engine, class_=AsyncSession, autoflush=False, expire_on_commit=False
    )
    base = abs(hash(prefix)) % 10**9 * 100
    async with async_session_scope(factory) as session:
        users = [
            int((await aio.touch_telegram_user(session, base + n, first_name=prefix)).id or 0)
            for n in range(tasks)
        ]
    traffic = Traffic(prefix)
    stop = asyncio.Event()

    async def work(number: int) -> None:
        me, other = users[number], users[(number + 1) % tasks]
        for count in range(max_operations):
            if stop.is_set():
                return
            kind = "send" if count % 2 else "touch"
            token = f"{prefix}-{number}-{count}" if kind == "send" else None
            started = time.monotonic()
            error: BaseException | None = None
            port: int | None = None
            try:
                async with async_session_scope(factory) as session:
                    if kind == "send":
                        await aio.send_message(
                            session, sender_id=me, recipient_id=other, content=token or ""
                        )
                    else:
                        await aio.touch_telegram_user(session, base + number)
                    raw = await (await session.connection()).get_raw_connection()
                    port = _port(raw.driver_connection)
            except AppDBError as exc:
                error = exc
            except Exception as exc:  # noqa: BLE001 - a foreign error is what the test looks for
                error = exc
            traffic.record(Outcome(number, kind, started, time.monotonic(), error, token, port))
            await asyncio.sleep(BACKOFF_SECONDS if error is not None else 0)

    workers = [asyncio.create_task(work(n)) for n in range(tasks)]
    try:
        await asyncio.to_thread(
            _wait_then_fault,
            traffic,
            fault,
            workers=tasks,
            before=before,
            after=after,
            deadline=time.monotonic() + max_seconds,
        )
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*workers), 60)
    async with async_session_scope(factory) as session:
        await aio.touch_telegram_user(session, base)
    await engine.dispose()
    return traffic
