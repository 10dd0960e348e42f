"""The bot's hot path at the driver's speed: appdb vs raw psycopg, asyncpg and the peers (issue 17).

Every variant of one operation runs in the same process, ten operations of each in turn (the
order rotating every pass), every single operation timed; min, median and p99 are printed with
ratios to raw psycopg doing the same statement in the same transaction shape (psycopg's implicit
BEGIN, the statement, COMMIT; ROLLBACK after a read), and the async twins with ratios to raw
asyncpg doing the same in a transaction. Raw drivers replay the very SQL text appdb sends
(captured once).

- touch (existing and new user), send_message, unread_count, mark_read (5 ids), inbox page of 50,
  each in appdb's units of work: a ``session_scope()`` (the ORM form and the row form) and a
  ``connection_scope()`` (rows, no ORM session), and their async twins
  (``async_session_scope()``, ``async_connection_scope()``);
- peers for touch: raw autocommit, raw psycopg async, SQLAlchemy Core ``engine.begin()``, naive
  SQLModel (SELECT, then INSERT or UPDATE), advanced-alchemy's ``get_or_upsert`` (if installed;
  ``nox -s bench`` installs it, appdb does not depend on it), appdb in PgBouncer mode
  (``DATABASE_POOLER=pgbouncer`` against the same server: no server-side prepares,
  ``SET LOCAL statement_timeout`` per transaction);
- throughput of touch: raw psycopg and appdb with 10 threads, appdb async with 50 tasks, and
  pgbench's ceiling (if ``pgbench`` is found);
- ``import appdb`` against ``import sqlmodel``, fresh interpreters, interleaved.

It creates and drops its own database on the server of ``APPDB_BENCH_DATABASE_URL``, with
``synchronous_commit = off`` so that no variant's COMMIT waits for the disk (the same cost for
all, and on a shared VM the noisiest one)::

    python benchmarks/bench_hotpath.py    # or: nox -s bench

``APPDB_BENCH_ROUNDS`` x ``APPDB_BENCH_OPS`` (default 10 x 100) operations per variant and
``APPDB_BENCH_MESSAGES`` (default 1,000,000) trade time for steadier figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import sqlalchemy as sa
from bench_operations import PROFILE, USERS, Replay, capture, database
from sqlalchemy.engine import URL
from sqlmodel import Session, select

from appdb import DatabaseSettings, User, aio, create_async_engine, create_engine
from appdb.messages import inbox, mark_read, send_message, unread_count
from appdb.models.base import utcnow
from appdb.session import (
    async_connection_scope,
    async_session_scope,
    connection_scope,
    session_scope,
)
from appdb.users import touch_telegram_user

ROUNDS = int(os.environ.get("APPDB_BENCH_ROUNDS", "10"))
OPS = int(os.environ.get("APPDB_BENCH_OPS", "100"))
MESSAGES = int(os.environ.get("APPDB_BENCH_MESSAGES", "1000000"))
THREADS, TASKS, SECONDS = 10, 50, 3.0
BATCH = 10  # operations of one variant in a row
BASE, ABASE = "raw psycopg, BEGIN+stmt+COMMIT", "raw asyncpg, in a transaction"
SCOPE_TOUCH = "appdb touch_telegram_user(as_row=True) in connection_scope()"
ASCOPE_TOUCH = "appdb async touch_telegram_user(as_row=True) in async_connection_scope()"
ORM_TOUCH = "appdb touch_telegram_user in session_scope()"
BOUNCER_SCOPE_TOUCH = "appdb connection_scope(), PgBouncer mode (DATABASE_POOLER=pgbouncer)"
BOUNCER_ASCOPE_TOUCH = "appdb async_connection_scope(), PgBouncer mode"
BOUNCER_ORM_TOUCH = "appdb session_scope() ORM form, PgBouncer mode"

try:
    from advanced_alchemy.repository import SQLAlchemySyncRepository
except ImportError:  # pragma: no cover - optional peer
    SQLAlchemySyncRepository = None

# One timed operation: runs it once and returns its time in µs.
Op = Callable[[], float]


def timed(operation: Callable[[], object]) -> Op:
    """A synchronous operation, timed."""

    def run() -> float:
        started = time.perf_counter_ns()
        operation()
        return (time.perf_counter_ns() - started) / 1000

    return run


def atimed(loop: asyncio.AbstractEventLoop, operation: Callable[[], Any]) -> Op:
    """A coroutine function, timed inside the running loop."""

    async def run() -> float:
        started = time.perf_counter_ns()
        await operation()
        return (time.perf_counter_ns() - started) / 1000

    return lambda: loop.run_until_complete(run())


def interleaved(variants: dict[str, Op]) -> dict[str, list[float]]:
    """ROUNDS x OPS operations per variant, BATCH of each in turn, the order rotating each pass.

    Batches of ten keep every variant's connection (and its server process) warm, as a steady
    service keeps them, while passing from variant to variant every few milliseconds, so that
    all of them meet this VM's noise (a neighbour's burst, a slow wake-up) alike.
    """
    names = list(variants)
    for _ in range(BATCH):  # warm-up: pools, prepared statements, plans
        for name in names:
            variants[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(ROUNDS * OPS // BATCH):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name] += [variants[name]() for _ in range(BATCH)]
    return samples


def report(title: str, samples: dict[str, list[float]]) -> None:
    """Print min / median / p99 per variant, with ratios to raw psycopg (and raw asyncpg)."""
    print(f"\n### {title}  ({ROUNDS * OPS} per variant, interleaved by {BATCH}; µs)\n")
    print("| variant | min | median | p99 | x raw (min / median) | x asyncpg (min / median) |")
    print("| --- | ---: | ---: | ---: | --- | --- |")

    def ratio(name: str, base: str) -> str:
        if base not in samples:
            return ""
        low, mid = min(samples[name]), statistics.median(samples[name])
        return f"{low / min(samples[base]):.2f} / {mid / statistics.median(samples[base]):.2f}"

    for name, values in samples.items():
        p99 = statistics.quantiles(values, n=100)[98]
        asynchronous = "async" in name or name == ABASE
        print(
            f"| {name} | {min(values):.0f} | {statistics.median(values):.0f} | {p99:.0f} "
            f"| {ratio(name, BASE)} | {ratio(name, ABASE) if asynchronous else ''} |"
        )


def to_asyncpg(replay: Replay) -> tuple[str, list[str]]:
    """Rewrite psycopg's ``%(name)s`` placeholders as asyncpg's ``$n``, and the names in order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        names.append(match[1])
        return f"${len(names)}"

    return re.sub(r"%\((\w+)\)s", number, replay.sql), names


class Hot:
    """The engines, raw connections and captured SQL the variants share."""

    def __init__(self, url: URL, loop: asyncio.AbstractEventLoop) -> None:
        """Engines and connections to `url`; asyncpg's live on `loop`."""
        self.url, self.loop = url, loop
        self.settings = DatabaseSettings(url=url)  # appdb's defaults: pre-ping on
        self.engine = create_engine(self.settings)
        self.bouncer = create_engine(self.settings.model_copy(update={"pooler": "pgbouncer"}))
        self.core = sa.create_engine(url)
        self.async_engine = create_async_engine(self.settings)
        self.async_bouncer = create_async_engine(
            self.settings.model_copy(update={"pooler": "pgbouncer"})
        )
        self.factory = _sessionmaker(self.engine)
        self.bouncer_factory = _sessionmaker(self.bouncer)
        self.async_factory = _async_sessionmaker(self.async_engine)
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.raw = psycopg.connect(dsn)
        self.auto = psycopg.connect(dsn, autocommit=True)
        self.apg = loop.run_until_complete(asyncpg.connect(dsn))
        self.pga = loop.run_until_complete(psycopg.AsyncConnection.connect(dsn))
        marks = _unread_ids(self.engine, 2)
        self.marks = iter([marks[i : i + 5] for i in range(0, len(marks), 5)])
        ids = [9_000_001 + i for i in range(5)]
        plain = create_engine(DatabaseSettings(url=url, pool_pre_ping=False))
        self.replays = {
            "touch": capture(
                plain, lambda s: touch_telegram_user(s, 987_654_321, **PROFILE), id=987_654_321
            ),
            "inbox": capture(plain, lambda s: inbox(s, 424_242), user=424_242),
            "unread_count": capture(plain, lambda s: unread_count(s, 424_242), user=424_242),
            "mark_read": capture(
                plain,
                lambda s: mark_read(s, 424_242, message_ids=ids),
                user=424_242,
                **{f"id{i}": value for i, value in enumerate(ids)},
            ),
            "send_message": capture(
                plain,
                lambda s: send_message(s, sender_id=424_241, recipient_id=424_242, content="hi"),
                sender=424_241,
                recipient=424_242,
            ),
        }
        plain.dispose()

    def close(self) -> None:
        """Close every connection and engine."""
        self.raw.close()
        self.auto.close()
        self.loop.run_until_complete(self.apg.close())
        self.loop.run_until_complete(self.pga.close())
        self.loop.run_until_complete(self.async_engine.dispose())
        self.loop.run_until_complete(self.async_bouncer.dispose())
        for engine in (self.engine, self.bouncer, self.core):
            engine.dispose()

    # --- raw drivers replaying appdb's SQL --------------------------------------------------

    def raw_tx(self, name: str, *, write: bool, **arguments: Any) -> Op:
        """BEGIN (implicit), the statement, fetch, COMMIT (ROLLBACK after a read)."""
        replay = self.replays[name]

        def run() -> None:
            with self.raw.cursor() as cursor:
                cursor.execute(replay.sql, replay.bind(**_arguments(arguments)))
                cursor.fetchall()
            self.raw.commit() if write else self.raw.rollback()

        return timed(run)

    def raw_autocommit(self, name: str, **arguments: Any) -> Op:
        """The statement alone, autocommit: one round trip, no unit of work."""
        replay = self.replays[name]

        def run() -> None:
            with self.auto.cursor() as cursor:
                cursor.execute(replay.sql, replay.bind(**_arguments(arguments)))
                cursor.fetchall()

        return timed(run)

    def asyncpg_tx(self, name: str, *, write: bool, **arguments: Any) -> Op:
        """asyncpg: BEGIN, the (prepared, cached) statement, COMMIT; a read rolls back."""
        replay = self.replays[name]
        sql, names = to_asyncpg(replay)
        connection = self.apg

        async def run() -> None:
            bound = replay.bind(**_arguments(arguments))
            transaction = connection.transaction()
            await transaction.start()
            await connection.fetch(sql, *(bound[n] for n in names))
            await (transaction.commit() if write else transaction.rollback())

        return atimed(self.loop, run)

    def psycopg_async_tx(self, name: str, *, write: bool, **arguments: Any) -> Op:
        """The async connection of psycopg: implicit BEGIN, the statement, COMMIT or ROLLBACK."""
        replay = self.replays[name]
        connection = self.pga

        async def run() -> None:
            async with connection.cursor() as cursor:
                await cursor.execute(replay.sql, replay.bind(**_arguments(arguments)))
                await cursor.fetchall()
            await (connection.commit() if write else connection.rollback())

        return atimed(self.loop, run)

    def core_begin(self, name: str, **arguments: Any) -> Op:
        """SQLAlchemy Core ``engine.begin()`` on a plain engine, the same SQL text."""
        replay = self.replays[name]

        def run() -> None:
            with self.core.begin() as connection:
                connection.exec_driver_sql(replay.sql, replay.bind(**_arguments(arguments))).all()

        return timed(run)

    # --- appdb ------------------------------------------------------------------------------

    def appdb(self, operation: Callable[[Session], object], *, bouncer: bool = False) -> Op:
        """The operation in ``session_scope()`` (commit at the end, as the bot does)."""
        factory = self.bouncer_factory if bouncer else self.factory

        def run() -> None:
            with session_scope(factory) as session:
                operation(session)

        return timed(run)

    def scope(self, operation: Callable[[Any], object], *, bouncer: bool = False) -> Op:
        """The operation on the connection of a ``connection_scope()`` (no ORM session)."""
        engine = self.bouncer if bouncer else self.engine

        def run() -> None:
            with connection_scope(engine) as connection:
                operation(connection)

        return timed(run)

    def appdb_async(self, operation: Callable[[Any], Any]) -> Op:
        """The async twin in ``async_session_scope()``."""

        async def run() -> None:
            async with async_session_scope(self.async_factory) as session:
                await operation(session)

        return atimed(self.loop, run)

    def ascope(self, operation: Callable[[Any], Any], *, bouncer: bool = False) -> Op:
        """The async twin on the connection of an ``async_connection_scope()``."""
        engine = self.async_bouncer if bouncer else self.async_engine

        async def run() -> None:
            async with async_connection_scope(engine) as connection:
                await operation(connection)

        return atimed(self.loop, run)

    def next_marks(self) -> list[int]:
        """Five unread message ids of user 2 not yet marked."""
        return next(self.marks)


def _arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """Arguments whose values are callables are drawn anew for every operation."""
    return {name: value() if callable(value) else value for name, value in arguments.items()}


def _sessionmaker(engine: sa.Engine) -> Any:
    from sqlalchemy.orm import sessionmaker  # noqa: PLC0415 - next to its one use

    return sessionmaker(engine, class_=Session, autoflush=False)


def _async_sessionmaker(engine: Any) -> Any:
    from sqlalchemy.ext.asyncio import async_sessionmaker  # noqa: PLC0415
    from sqlmodel.ext.asyncio.session import AsyncSession  # noqa: PLC0415

    return async_sessionmaker(engine, class_=AsyncSession, autoflush=False, expire_on_commit=False)


def _unread_ids(engine: sa.Engine, user_id: int) -> list[int]:
    with engine.connect() as connection:
        query = sa.text(
            "SELECT id FROM messages WHERE recipient_id = :u AND NOT is_read ORDER BY id"
        )
        return list(connection.execute(query, {"u": user_id}).scalars())


# --- the operations -------------------------------------------------------------------------


def bench_touch(hot: Hot, kind: str, ids: Iterator[int]) -> None:
    """touch_telegram_user against raw drivers and the peers."""
    draw = lambda: next(ids)  # noqa: E731 - drawn anew per operation

    def naive(session: Session) -> None:
        telegram_user_id = next(ids)
        user = session.exec(select(User).where(User.telegram_user_id == telegram_user_id)).first()
        if user is None:
            user = User(telegram_user_id=telegram_user_id)
            session.add(user)
        user.telegram_username = PROFILE["username"]
        user.first_name = PROFILE["first_name"]
        user.language_code = PROFILE["language_code"]
        user.last_login_at = utcnow()

    variants: dict[str, Op] = {
        BASE: hot.raw_tx("touch", write=True, id=draw),
        "raw psycopg, autocommit, one statement": hot.raw_autocommit("touch", id=draw),
        "SQLAlchemy Core engine.begin(), same SQL": hot.core_begin("touch", id=draw),
        SCOPE_TOUCH: hot.scope(lambda c: touch_telegram_user(c, next(ids), **PROFILE, as_row=True)),
        "appdb touch_telegram_user(as_row=True) in session_scope()": hot.appdb(
            lambda s: touch_telegram_user(s, next(ids), **PROFILE, as_row=True)
        ),
        ORM_TOUCH: hot.appdb(lambda s: touch_telegram_user(s, next(ids), **PROFILE)),
        BOUNCER_SCOPE_TOUCH: hot.scope(
            lambda c: touch_telegram_user(c, next(ids), **PROFILE, as_row=True), bouncer=True
        ),
        BOUNCER_ORM_TOUCH: hot.appdb(
            lambda s: touch_telegram_user(s, next(ids), **PROFILE), bouncer=True
        ),
        "naive SQLModel: SELECT, then INSERT/UPDATE": hot.appdb(naive),
    }
    if SQLAlchemySyncRepository is not None:
        variants["advanced-alchemy get_or_upsert"] = hot.appdb(_advanced_alchemy(ids))
    variants[ABASE] = hot.asyncpg_tx("touch", write=True, id=draw)
    variants["raw psycopg async, in a transaction"] = hot.psycopg_async_tx(
        "touch", write=True, id=draw
    )
    variants[ASCOPE_TOUCH] = hot.ascope(
        lambda c: aio.touch_telegram_user(c, next(ids), **PROFILE, as_row=True)
    )
    variants[BOUNCER_ASCOPE_TOUCH] = hot.ascope(
        lambda c: aio.touch_telegram_user(c, next(ids), **PROFILE, as_row=True), bouncer=True
    )
    variants["appdb async touch_telegram_user(as_row=True) in async_session_scope()"] = (
        hot.appdb_async(lambda s: aio.touch_telegram_user(s, next(ids), **PROFILE, as_row=True))
    )
    variants["appdb async touch_telegram_user in async_session_scope()"] = hot.appdb_async(
        lambda s: aio.touch_telegram_user(s, next(ids), **PROFILE)
    )
    samples = interleaved(variants)
    report(f"touch_telegram_user, {kind} user", samples)
    for mode, bouncer, direct in (
        ("connection_scope()", BOUNCER_SCOPE_TOUCH, SCOPE_TOUCH),
        ("async_connection_scope()", BOUNCER_ASCOPE_TOUCH, ASCOPE_TOUCH),
        ("session_scope(), ORM form", BOUNCER_ORM_TOUCH, ORM_TOUCH),
    ):
        print(
            f"\nPgBouncer mode x direct mode, {mode} (min / median): "
            f"{min(samples[bouncer]) / min(samples[direct]):.2f} / "
            f"{statistics.median(samples[bouncer]) / statistics.median(samples[direct]):.2f}"
        )


def _advanced_alchemy(ids: Iterator[int]) -> Callable[[Session], object]:
    class Users(SQLAlchemySyncRepository[User]):  # type: ignore[misc,valid-type]
        model_type = User

    def run(session: Session) -> object:
        telegram_user_id = next(ids)
        return Users(session=session, auto_commit=False).get_or_upsert(
            match_fields=["telegram_user_id"],
            telegram_user_id=telegram_user_id,
            telegram_username=PROFILE["username"],
            first_name=PROFILE["first_name"],
            language_code=PROFILE["language_code"],
            last_login_at=utcnow(),
        )

    return run


def bench_messages(hot: Hot) -> None:
    """send_message, unread_count, mark_read and the inbox page against the raw drivers."""
    senders = itertools.cycle(range(3, USERS + 1))
    cases: list[
        tuple[
            str, str, bool, dict[str, Any], Callable[..., Any], Callable[..., Any], dict[str, Any]
        ]
    ] = [
        (
            "send_message",
            "send_message",
            True,
            {"sender": lambda: next(senders), "recipient": 4},
            lambda s, **kw: send_message(
                s, sender_id=next(senders), recipient_id=4, content="hi", **kw
            ),
            lambda s, **kw: aio.send_message(
                s, sender_id=next(senders), recipient_id=4, content="hi", **kw
            ),
            {"as_row": True},
        ),
        (
            "unread_count",
            "unread_count",
            False,
            {"user": 1},
            lambda s: unread_count(s, 1),
            lambda s: aio.unread_count(s, 1),
            {},
        ),
        (
            "inbox page of 50",
            "inbox",
            False,
            {"user": 1},
            lambda s, **kw: inbox(s, 1, **kw),
            lambda s, **kw: aio.inbox(s, 1, **kw),
            {"as_rows": True},
        ),
    ]
    for title, name, write, arguments, sync_op, async_op, light in cases:
        option = f"({', '.join(f'{key}=True' for key in light)})" if light else ""
        variants = {
            BASE: hot.raw_tx(name, write=write, **arguments),
            f"appdb {name}{option} in connection_scope()": hot.scope(
                lambda c, op=sync_op, light=light: op(c, **light)
            ),
            f"appdb {name} in session_scope()": hot.appdb(sync_op),
            ABASE: hot.asyncpg_tx(name, write=write, **arguments),
            f"appdb async {name}{option} in async_connection_scope()": hot.ascope(
                lambda c, op=async_op, light=light: op(c, **light)
            ),
            f"appdb async {name} in async_session_scope()": hot.appdb_async(async_op),
        }
        if light:
            variants[f"appdb {name}{option} in session_scope()"] = hot.appdb(
                lambda s, op=sync_op, light=light: op(s, **light)
            )
            variants[f"appdb async {name}{option} in async_session_scope()"] = hot.appdb_async(
                lambda s, op=async_op, light=light: op(s, **light)
            )
        report(title, interleaved(variants))
    # One batch of five ids per operation: each variant draws its own.
    pending: list[int] = []

    def draw(i: int) -> int:
        if i == 0:
            pending[:] = hot.next_marks()
        return pending[i]

    marks = {f"id{i}": (lambda i=i: draw(i)) for i in range(5)}
    variants = {
        BASE: hot.raw_tx("mark_read", write=True, user=2, **marks),
        "appdb mark_read in connection_scope()": hot.scope(
            lambda c: mark_read(c, 2, message_ids=hot.next_marks())
        ),
        "appdb mark_read in session_scope()": hot.appdb(
            lambda s: mark_read(s, 2, message_ids=hot.next_marks())
        ),
        ABASE: hot.asyncpg_tx("mark_read", write=True, user=2, **marks),
        "appdb async mark_read in async_connection_scope()": hot.ascope(
            lambda c: aio.mark_read(c, 2, message_ids=hot.next_marks())
        ),
        "appdb async mark_read in async_session_scope()": hot.appdb_async(
            lambda s: aio.mark_read(s, 2, message_ids=hot.next_marks())
        ),
    }
    report("mark_read, 5 ids", interleaved(variants))


# --- throughput -----------------------------------------------------------------------------


def bench_throughput(hot: Hot) -> None:  # noqa: C901, PLR0915 - one table, several workers
    """Touches per second: THREADS threads (raw psycopg, appdb), TASKS tasks (asyncpg, appdb)."""
    replay = hot.replays["touch"]
    dsn = hot.url.set(drivername="postgresql").render_as_string(hide_password=False)
    engine = create_engine(hot.settings.model_copy(update={"pool_size": THREADS}))
    factory = _sessionmaker(engine)

    def shuffled() -> Iterator[int]:
        return itertools.cycle(random.sample(range(3, USERS + 1), USERS - 2))

    def raw_worker(stop: float, counts: list[int]) -> None:
        ids = shuffled()
        with psycopg.connect(dsn) as connection:
            while time.perf_counter() < stop:
                with connection.cursor() as cursor:
                    cursor.execute(replay.sql, replay.bind(id=next(ids)))
                    cursor.fetchall()
                connection.commit()
                counts.append(1)

    def session_worker(stop: float, counts: list[int], *, as_row: bool = False) -> None:
        ids = shuffled()
        while time.perf_counter() < stop:
            with session_scope(factory) as session:
                touch_telegram_user(session, next(ids), **PROFILE, as_row=as_row)
            counts.append(1)

    def session_row_worker(stop: float, counts: list[int]) -> None:
        session_worker(stop, counts, as_row=True)

    def scope_worker(stop: float, counts: list[int]) -> None:
        ids = shuffled()
        while time.perf_counter() < stop:
            with connection_scope(engine) as connection:
                touch_telegram_user(connection, next(ids), **PROFILE, as_row=True)
            counts.append(1)

    def threaded(worker: Callable[[float, list[int]], None]) -> float:
        counts: list[int] = []
        stop = time.perf_counter() + SECONDS
        threads = [threading.Thread(target=worker, args=(stop, counts)) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return len(counts) / SECONDS

    async def tasks(kind: str) -> float:
        """TASKS tasks on one event loop: raw asyncpg (a pool), or appdb in one of its scopes."""
        async_engine = create_async_engine(hot.settings.model_copy(update={"pool_size": THREADS}))
        async_factory = _async_sessionmaker(async_engine)
        pool = await asyncpg.create_pool(dsn, min_size=THREADS, max_size=THREADS)
        sql, names = to_asyncpg(replay)
        ids = shuffled()
        count = 0
        stop = time.perf_counter() + SECONDS

        async def one() -> None:
            if kind == "asyncpg":
                async with pool.acquire() as connection, connection.transaction():
                    bound = replay.bind(id=next(ids))
                    await connection.fetch(sql, *(bound[name] for name in names))
            elif kind == "scope":
                async with async_connection_scope(async_engine) as connection:
                    await aio.touch_telegram_user(connection, next(ids), **PROFILE, as_row=True)
            else:
                async with async_session_scope(async_factory) as session:
                    await aio.touch_telegram_user(
                        session, next(ids), **PROFILE, as_row=kind == "session rows"
                    )

        async def worker() -> None:
            nonlocal count
            while time.perf_counter() < stop:
                await one()
                count += 1

        await asyncio.gather(*(worker() for _ in range(TASKS)))
        await pool.close()
        await async_engine.dispose()
        return count / SECONDS

    runs: dict[str, Callable[[], float]] = {
        f"raw psycopg, {THREADS} threads": lambda: threaded(raw_worker),
        f"appdb connection_scope(), {THREADS} threads": lambda: threaded(scope_worker),
        f"appdb session_scope() as_row=True, {THREADS} threads": lambda: threaded(
            session_row_worker
        ),
        f"appdb session_scope() ORM form, {THREADS} threads": lambda: threaded(session_worker),
        f"raw asyncpg (a pool of {THREADS}), {TASKS} tasks": lambda: hot.loop.run_until_complete(
            tasks("asyncpg")
        ),
        f"appdb async_connection_scope(), {TASKS} tasks": lambda: hot.loop.run_until_complete(
            tasks("scope")
        ),
        f"appdb async_session_scope() as_row=True, {TASKS} tasks": (
            lambda: hot.loop.run_until_complete(tasks("session rows"))
        ),
        f"appdb async_session_scope() ORM form, {TASKS} tasks": (
            lambda: hot.loop.run_until_complete(tasks("session"))
        ),
    }
    results: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for round_ in range(3):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            results[name].append(runs[name]())
    engine.dispose()
    if ceiling := _pgbench(hot.url, replay):
        results[f"pgbench, {THREADS} clients (ceiling)"] = [ceiling]
    base = statistics.median(results[f"raw psycopg, {THREADS} threads"])
    print(f"\n### touch throughput ({SECONDS:.0f} s runs, 3 interleaved rounds; touches/s)\n")
    print("| variant | best | median | x raw psycopg, 10 threads (median) |")
    print("| --- | ---: | ---: | ---: |")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"| {name} | {max(values):.0f} | {median:.0f} | {median / base:.2f} |")


def _pgbench(url: URL, replay: Replay) -> float | None:
    """Run pgbench on the same upsert with THREADS clients; None without pgbench."""
    binary = shutil.which("pgbench") or "/usr/lib/postgresql/15/bin/pgbench"
    if not Path(binary).exists():
        return None
    sql = replay.sql
    values = replay.bind(id=0)
    for name, value in values.items():
        literal = (
            ":id"
            if replay.roles.get(name) == "id"
            else "now()"
            if replay.roles.get(name) == "now"
            else "NULL"
            if value is None
            else f"'{value}'"
            if isinstance(value, str)
            else str(value).lower()
        )
        sql = sql.replace(f"%({name})s", literal)
    script = f"\\set id random(3, {USERS})\n{' '.join(sql.split())};\n"
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as file:
        file.write(script)
    try:
        output = subprocess.run(  # noqa: S603 - our own arguments
            [
                binary,
                "-n",
                "-M",
                "prepared",
                "-c",
                str(THREADS),
                "-j",
                "2",
                "-T",
                str(int(SECONDS)),
                "-f",
                file.name,
                "-h",
                url.host or "127.0.0.1",
                "-p",
                str(url.port or 5432),
                "-U",
                url.username or "postgres",
                url.database or "postgres",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except subprocess.CalledProcessError as exc:
        print(f"pgbench failed: {exc.stderr.strip()}")
        return None
    finally:
        Path(file.name).unlink()
    found = re.search(r"tps = ([\d.]+)", output)
    return float(found[1]) if found else None


# --- import time ----------------------------------------------------------------------------


def bench_import() -> None:
    """``import appdb`` vs ``import sqlmodel``, each in a fresh interpreter, interleaved.

    ``import appdb`` alone loads only the exceptions (the rest is PEP 562 lazy), so the line a
    service really runs, the README's ``from appdb import ...``, is timed too.
    """
    times: dict[str, list[float]] = {
        "import sqlmodel": [],
        "import appdb": [],
        "from appdb import get_db, SessionLocal, User, Message": [],
    }
    for round_ in range(10):
        for name in sorted(times, reverse=round_ % 2 == 1):  # interleaved, both orders
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", name], check=True)  # noqa: S603
            times[name].append((time.perf_counter() - started) * 1000)
    base = statistics.median(times["import sqlmodel"])
    print("\n### import time (fresh interpreter, 10 interleaved rounds; ms)\n")
    print("| statement | min | median | x sqlmodel (median) |")
    print("| --- | ---: | ---: | ---: |")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| `{name}` | {min(values):.0f} | {median:.0f} | {median / base:.2f} |")


def main() -> None:
    """Build the database, run every variant, print the tables."""
    random.seed(17)
    started = time.perf_counter()
    print(
        f"Python {sys.version.split()[0]}, SQLAlchemy {sa.__version__}, psycopg "
        f"{psycopg.__version__}, asyncpg {getattr(asyncpg, '__version__', 'absent')}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    bench_import()
    # synchronous_commit = off: the figures compare client-side costs, not this VM's disk.
    pool = 3 * (ROUNDS * OPS + 10) * 5 * 2
    with database(MESSAGES, mark_read_pool=pool, wait_for_wal_flush=False) as url:
        print(
            f"\ndatabase ({USERS} users, {MESSAGES} messages) loaded in "
            f"{time.perf_counter() - started:.0f} s"
        )
        loop = asyncio.new_event_loop()
        hot = Hot(url, loop)
        try:
            existing = itertools.cycle(random.sample(range(3, USERS + 1), USERS - 2))
            bench_touch(hot, "existing", existing)
            bench_touch(hot, "new", itertools.count(10**9))
            bench_messages(hot)
            bench_throughput(hot)
        finally:
            hot.close()
            loop.close()
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
