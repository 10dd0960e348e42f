"""Time appdb's operations against raw psycopg and the naive ORM pattern, on PostgreSQL.

Raw psycopg replays the very SQL text appdb sends (captured once from appdb itself) in the same
transaction shape (psycopg's implicit BEGIN, the statement, COMMIT, or ROLLBACK after a read),
on one open connection. Variants run in interleaved rounds, their order rotating, so machine
noise hits them alike; every single operation is timed and min and median are reported.

- touch, existing and new users: appdb vs raw psycopg vs SELECT-then-INSERT/UPDATE with the ORM;
- inbox page, unread count, mark_read, send_message: appdb vs raw psycopg;
- growth: inbox page and unread count of the same mailbox in a 10k and a 1M message table;
- async: touch throughput of 50 tasks on the async engine vs one thread on the sync engine.

It creates and drops its own databases on the server of ``APPDB_BENCH_DATABASE_URL``
(default ``postgresql://postgres@127.0.0.1:5432/postgres``)::

    python benchmarks/bench_operations.py    # or: nox -s bench

``APPDB_BENCH_ROUNDS`` (default 7) and ``APPDB_BENCH_OPS`` (operations per variant and round,
default 150) trade time for steadier figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlmodel import Session, select
from sqlmodel.ext.asyncio.session import AsyncSession

from appdb import (
    AppDBError,
    DatabaseSettings,
    User,
    aio,
    create_async_engine,
    create_engine,
    metadata,
)
from appdb.messages import inbox, mark_read, send_message, unread_count
from appdb.models.base import utcnow
from appdb.users import touch_telegram_user

ADMIN_URL = DatabaseSettings(
    url=os.environ.get("APPDB_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
).database_url
ROUNDS = int(os.environ.get("APPDB_BENCH_ROUNDS", "7"))
OPS = int(os.environ.get("APPDB_BENCH_OPS", "150"))

USERS = 10_000
MAILBOX = 200  # user 1's messages, 20 of them unread, in every database
# Unread messages of user 2, five of which each mark_read (of the 3 variants) consumes.
MARK_READ_POOL = 3 * ROUNDS * OPS * 5 + 1_000
ASYNC_TASKS = 50
ASYNC_TOUCHES = 1_500  # per round and variant

FLOOR = "SQLAlchemy Session, same SQL, no ORM"
PROFILE = {"username": "bench_user", "first_name": "Bench", "language_code": "en"}


# --- databases ------------------------------------------------------------------------------


@contextmanager
def database(
    size: int, *, mark_read_pool: int = 0, wait_for_wal_flush: bool = True
) -> Iterator[URL]:
    """A fresh database with USERS users and `size` messages, dropped afterwards.

    ``wait_for_wal_flush=False`` sets ``synchronous_commit = off`` on it: every COMMIT then
    skips the same disk flush, whose latency on a shared VM varies more than the client-side
    costs being compared.
    """
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    url = ADMIN_URL.set(database=f"appdb_bench_{uuid.uuid4().hex[:8]}")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{url.database}"')
        if not wait_for_wal_flush:
            connection.exec_driver_sql(
                f'ALTER DATABASE "{url.database}" SET synchronous_commit = off'
            )
    try:
        engine = sa.create_engine(url)
        metadata.create_all(engine)
        _load(engine, size, mark_read_pool)
        engine.dispose()
        yield url
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
        admin.dispose()


def _load(engine: sa.Engine, size: int, mark_read_pool: int) -> None:
    """Users, user 1's mailbox spread over the table, other mail, then VACUUM ANALYZE."""
    step = (size - mark_read_pool) // MAILBOX
    statements = [
        f"""INSERT INTO users (id, username, email, telegram_user_id, first_name, is_active,
                               is_superuser)
            SELECT i, 'user' || i, 'user' || i || '@example.io', i, 'User', true, false
            FROM generate_series(1, {USERS}) AS i""",
        "SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT max(id) FROM users))",
        # Every step-th message goes to user 1 (one in ten of those unread); the rest go to
        # users 3.., one in ten unread, in 50k conversations.
        f"""INSERT INTO messages (sender_id, recipient_id, content, is_read, conversation_id)
            SELECT 2 + mod(i * 7919, {USERS - 2}),
                   CASE WHEN mod(i, {step}) = 0 THEN 1 ELSE 3 + mod(i * 104729, {USERS - 2}) END,
                   'message ' || i,
                   CASE WHEN mod(i, {step}) = 0 THEN mod(i / {step}, 10) <> 0
                        ELSE mod(i, 10) <> 0 END,
                   'c' || mod(i, 50000)
            FROM generate_series(1::bigint, {size - mark_read_pool}) AS i""",
        f"""INSERT INTO messages (sender_id, recipient_id, content, is_read)
            SELECT 3, 2, 'to mark read ' || i, false
            FROM generate_series(1, {mark_read_pool}) AS i""",
    ]
    with engine.begin() as connection:
        # The rows are valid by construction; skipping the per-row foreign key triggers
        # makes loading a million rows take seconds instead of minutes.
        connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
        for statement in statements:
            connection.exec_driver_sql(statement)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")


def _engine(url: URL, **overrides: Any) -> sa.Engine:
    """Appdb's engine; pre-ping off unless asked, as the raw connection does not ping either."""
    return create_engine(DatabaseSettings(url=url, **({"pool_pre_ping": False} | overrides)))


def _raw(url: URL) -> psycopg.Connection[Any]:
    return psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))


# --- replaying appdb's SQL with raw psycopg -------------------------------------------------


@dataclass(frozen=True)
class Replay:
    """The SQL text appdb sent for one call, and which parameter carries which argument."""

    sql: str
    parameters: dict[str, Any]
    roles: dict[str, str]  # parameter name -> argument name, or "now" for timestamps

    def bind(self, **arguments: Any) -> dict[str, Any]:
        """The parameters for new argument values (timestamps: now)."""
        now = utcnow()
        bound = dict(self.parameters)
        for name, role in self.roles.items():
            bound[name] = now if role == "now" else arguments[role]
        return bound


def capture(engine: sa.Engine, call: Callable[[Session], object], **sentinels: Any) -> Replay:
    """Run `call` once and capture its first statement; `sentinels` name the argument values."""
    sent: list[tuple[str, dict[str, Any]]] = []

    def record(_connection: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, dict(parameters)))

    sa.event.listen(engine, "before_cursor_execute", record)
    with Session(engine) as session:
        # A call may fail on purpose (send_message to nobody): only the statement matters.
        with contextlib.suppress(AppDBError):
            call(session)
        session.rollback()
    sa.event.remove(engine, "before_cursor_execute", record)
    sql, parameters = sent[0]
    by_value = {value: role for role, value in sentinels.items()}
    roles = {
        name: "now" if isinstance(value, datetime) else by_value[value]
        for name, value in parameters.items()
        if isinstance(value, datetime) or (type(value) is int and value in by_value)
    }
    return Replay(sql, parameters, roles)


def raw_write(connection: psycopg.Connection[Any], replay: Replay, **arguments: Any) -> None:
    """BEGIN (implicit), the statement, fetch what it returns, COMMIT."""
    with connection.cursor() as cursor:
        cursor.execute(replay.sql, replay.bind(**arguments))
        if cursor.description is not None:
            cursor.fetchall()
    connection.commit()


def raw_read(connection: psycopg.Connection[Any], replay: Replay, **arguments: Any) -> None:
    """BEGIN (implicit), the query, fetch, ROLLBACK: what a session does for a read."""
    with connection.cursor() as cursor:
        cursor.execute(replay.sql, replay.bind(**arguments))
        cursor.fetchall()
    connection.rollback()


def session_sql(engine: sa.Engine, replay: Replay, *, commit: bool, **arguments: Any) -> None:
    """What any Session-based code pays at least: the same SQL, no ORM objects made.

    The gap between this and raw psycopg is SQLAlchemy's (session, pool, connection
    wrapper, result); the gap between appdb and this is the ORM loading model instances.
    """
    with Session(engine) as session:
        result = session.connection().exec_driver_sql(replay.sql, replay.bind(**arguments))
        if result.returns_rows:
            result.all()
        if commit:
            session.commit()


# --- timing ---------------------------------------------------------------------------------


def interleaved(variants: dict[str, Callable[[], object]]) -> dict[str, list[float]]:
    """Run OPS operations of each variant per round, ROUNDS rounds, order rotating."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for round_ in range(ROUNDS):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            operation = variants[name]
            for _ in range(OPS):
                started = time.perf_counter_ns()
                operation()
                samples[name].append((time.perf_counter_ns() - started) / 1000)
    return samples


def report(title: str, samples: dict[str, list[float]], baseline: str) -> None:
    """Print min and median per variant, and ratios to the baseline."""
    base_min, base_median = min(samples[baseline]), statistics.median(samples[baseline])
    print(f"\n{title}  ({ROUNDS} rounds x {OPS} operations per variant; µs per operation)")
    print(f"| {'variant':<34} | {'min':>7} | {'median':>7} | {'x min':>6} | {'x median':>8} |")
    print(f"| {'-' * 34} | {'-' * 6}: | {'-' * 6}: | {'-' * 5}: | {'-' * 7}: |")
    for name, values in samples.items():
        low, median = min(values), statistics.median(values)
        print(
            f"| {name:<34} | {low:>7.0f} | {median:>7.0f} | {low / base_min:>6.2f} "
            f"| {median / base_median:>8.2f} |"
        )


# --- the benchmarks -------------------------------------------------------------------------


def bench_touch(url: URL) -> None:
    """touch_telegram_user vs raw psycopg vs the naive ORM pattern, existing and new users."""
    engine, pinging = _engine(url), _engine(url, pool_pre_ping=True)
    connection = _raw(url)
    replay = capture(
        engine, lambda s: touch_telegram_user(s, 987_654_321, **PROFILE), id=987_654_321
    )
    existing = itertools.cycle(random.sample(range(3, USERS + 1), USERS - 2))
    fresh = itertools.count(10**9)

    def appdb(engine: sa.Engine, ids: Iterator[int]) -> Callable[[], None]:
        def run() -> None:
            with Session(engine) as session:
                touch_telegram_user(session, next(ids), **PROFILE)
                session.commit()

        return run

    def naive(ids: Iterator[int]) -> Callable[[], None]:
        def run() -> None:
            with Session(engine) as session:
                telegram_user_id = next(ids)
                user = session.exec(
                    select(User).where(User.telegram_user_id == telegram_user_id)
                ).first()
                if user is None:
                    user = User(telegram_user_id=telegram_user_id)
                    session.add(user)
                user.telegram_username = PROFILE["username"]
                user.first_name = PROFILE["first_name"]
                user.language_code = PROFILE["language_code"]
                user.last_login_at = utcnow()
                session.commit()

        return run

    def raw(ids: Iterator[int]) -> Callable[[], None]:
        return lambda: raw_write(connection, replay, id=next(ids))

    def floor(ids: Iterator[int]) -> Callable[[], None]:
        return lambda: session_sql(engine, replay, commit=True, id=next(ids))

    for kind, ids in (("existing", existing), ("new", fresh)):
        samples = interleaved(
            {
                "raw psycopg, same upsert": raw(ids),
                "appdb touch_telegram_user": appdb(engine, ids),
                FLOOR: floor(ids),
                "appdb, pool_pre_ping=True": appdb(pinging, ids),
                "naive ORM: SELECT, then INSERT/UPDATE": naive(ids),
            }
        )
        report(f"touch, {kind} users", samples, "raw psycopg, same upsert")
    connection.close()
    engine.dispose()
    pinging.dispose()


def bench_messages(url: URL) -> None:
    """inbox, unread_count, mark_read and send_message vs raw psycopg replaying their SQL."""
    engine = _engine(url)
    connection = _raw(url)
    with engine.connect() as read:
        pool = list(
            read.execute(sa.text("SELECT id FROM messages WHERE recipient_id = 2 ORDER BY id"))
            .scalars()
            .all()
        )
    batches = iter([pool[i : i + 5] for i in range(0, len(pool), 5)])
    ids = [9_000_001 + i for i in range(5)]
    replays = {
        "inbox": capture(engine, lambda s: inbox(s, 424_242), user=424_242),
        "unread_count": capture(engine, lambda s: unread_count(s, 424_242), user=424_242),
        "mark_read": capture(
            engine,
            lambda s: mark_read(s, 424_242, message_ids=ids),
            user=424_242,
            **{f"id{i}": value for i, value in enumerate(ids)},
        ),
        "send_message": capture(
            engine,
            lambda s: send_message(s, sender_id=424_241, recipient_id=424_242, content="hi"),
            sender=424_241,
            recipient=424_242,
        ),
    }

    def session_run(operation: Callable[[Session], object], *, commit: bool) -> None:
        with Session(engine) as session:
            operation(session)
            if commit:
                session.commit()

    def marking() -> tuple[int, dict[str, int]]:
        batch = next(batches)
        return 2, {f"id{i}": value for i, value in enumerate(batch)}

    def raw_mark() -> None:
        user, batch = marking()
        raw_write(connection, replays["mark_read"], user=user, **batch)

    def floor_mark() -> None:
        user, batch = marking()
        session_sql(engine, replays["mark_read"], commit=True, user=user, **batch)

    def appdb_mark() -> None:
        _, batch = marking()
        session_run(lambda s: mark_read(s, 2, message_ids=list(batch.values())), commit=True)

    cases: dict[str, dict[str, Callable[[], object]]] = {
        "inbox page (50, newest first)": {
            "raw psycopg": lambda: raw_read(connection, replays["inbox"], user=1),
            "appdb inbox": lambda: session_run(lambda s: inbox(s, 1), commit=False),
            FLOOR: lambda: session_sql(engine, replays["inbox"], commit=False, user=1),
        },
        "unread count": {
            "raw psycopg": lambda: raw_read(connection, replays["unread_count"], user=1),
            "appdb unread_count": lambda: session_run(lambda s: unread_count(s, 1), commit=False),
            FLOOR: lambda: session_sql(engine, replays["unread_count"], commit=False, user=1),
        },
        "mark_read, 5 ids": {
            "raw psycopg": raw_mark,
            "appdb mark_read": appdb_mark,
            FLOOR: floor_mark,
        },
        "send_message": {
            "raw psycopg": lambda: raw_write(
                connection, replays["send_message"], sender=3, recipient=4
            ),
            "appdb send_message": lambda: session_run(
                lambda s: send_message(s, sender_id=3, recipient_id=4, content="hi"),
                commit=True,
            ),
            FLOOR: lambda: session_sql(
                engine, replays["send_message"], commit=True, sender=3, recipient=4
            ),
        },
    }
    for title, variants in cases.items():
        report(title, interleaved(variants), "raw psycopg")
    connection.close()
    engine.dispose()


def bench_growth(small: URL, large: URL) -> None:
    """The same mailbox's inbox page and unread count in a 10k and a 1M message table."""
    engines = {"10k": _engine(small), "1M": _engine(large)}

    def run(size: str, operation: Callable[[Session], object]) -> Callable[[], None]:
        def read() -> None:
            with Session(engines[size]) as session:
                operation(session)

        return read

    for title, operation in (
        ("inbox page (50)", lambda s: inbox(s, 1)),
        ("unread count (20)", lambda s: unread_count(s, 1)),
    ):
        samples = interleaved({f"{size} messages": run(size, operation) for size in engines})
        report(f"growth: {title}", samples, "10k messages")
    for engine in engines.values():
        engine.dispose()


def bench_async(url: URL) -> None:
    """Touch throughput: 50 tasks on the async engine vs one thread on the sync engine."""
    settings = DatabaseSettings(url=url, pool_pre_ping=False)
    engine = create_engine(settings)
    ids = itertools.cycle(random.sample(range(3, USERS + 1), USERS - 2))

    def sync_round() -> float:
        started = time.perf_counter()
        for _ in range(ASYNC_TOUCHES):
            with Session(engine) as session:
                touch_telegram_user(session, next(ids), **PROFILE)
                session.commit()
        return ASYNC_TOUCHES / (time.perf_counter() - started)

    async def async_round() -> float:
        async_engine = create_async_engine(settings)
        remaining = iter(range(ASYNC_TOUCHES))

        async def worker() -> None:
            for _ in remaining:
                async with AsyncSession(async_engine, expire_on_commit=False) as session:
                    await aio.touch_telegram_user(session, next(ids), **PROFILE)
                    await session.commit()

        # Connections are opened before the clock starts, as in a warmed-up bot.
        await asyncio.gather(*(_warm(async_engine) for _ in range(settings.pool_size)))
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(ASYNC_TASKS)))
        elapsed = time.perf_counter() - started
        await async_engine.dispose()
        return ASYNC_TOUCHES / elapsed

    throughput: dict[str, list[float]] = {"sync, 1 thread": [], f"async, {ASYNC_TASKS} tasks": []}
    for round_ in range(max(3, ROUNDS // 2)):
        order = [False, True] if round_ % 2 == 0 else [True, False]
        for use_async in order:
            if use_async:
                throughput[f"async, {ASYNC_TASKS} tasks"].append(asyncio.run(async_round()))
            else:
                throughput["sync, 1 thread"].append(sync_round())
    engine.dispose()
    print(
        f"\nasync touch throughput ({ASYNC_TOUCHES} touches per round; pool "
        f"{settings.pool_size}+{settings.max_overflow}; touches per second)"
    )
    print(f"| {'variant':<20} | {'best':>6} | {'median':>6} |")
    print(f"| {'-' * 20} | {'-' * 5}: | {'-' * 5}: |")
    for name, values in throughput.items():
        print(f"| {name:<20} | {max(values):>6.0f} | {statistics.median(values):>6.0f} |")
    ratio = statistics.median(throughput[f"async, {ASYNC_TASKS} tasks"]) / statistics.median(
        throughput["sync, 1 thread"]
    )
    print(f"async / sync (median): {ratio:.2f}x")


async def _warm(engine: Any) -> None:
    async with engine.connect() as connection:
        await connection.exec_driver_sql("SELECT 1")


def main() -> None:
    """Build the two databases, run every benchmark, print the figures."""
    random.seed(4)
    started = time.perf_counter()
    with _admin() as server:
        print(
            f"PostgreSQL {server}, Python {platform.python_version()}, SQLAlchemy {sa.__version__},"
            f" psycopg {psycopg.__version__}, {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.2f} at start"
        )
    with database(10_000) as small, database(1_000_000, mark_read_pool=MARK_READ_POOL) as large:
        print(f"databases loaded in {time.perf_counter() - started:.0f} s")
        bench_touch(large)
        bench_messages(large)
        bench_growth(small, large)
        bench_async(large)
    print(
        f"\ntotal {time.perf_counter() - started:.0f} s; load average now {os.getloadavg()[0]:.2f}"
    )


@contextmanager
def _admin() -> Iterator[str]:
    engine = sa.create_engine(ADMIN_URL)
    with engine.connect() as connection:
        yield str(connection.exec_driver_sql("SHOW server_version").scalar_one())
    engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
