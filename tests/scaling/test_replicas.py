"""Read replicas for real: a throwaway primary, its streaming replica made by pg_basebackup.

Both run on loopback, started and stopped by these tests. Sessions from `SessionLocal` and
`AsyncSessionLocal` read from the replica until they write; which server ran a statement is
read off the engine that sent it, and the replica's connections report ``pg_is_in_recovery()``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import Session, func, select

from appdb import (
    AsyncSessionLocal,
    DatabaseSettings,
    SessionLocal,
    User,
    aio,
    async_session_scope,
    get_async_engine,
    get_engine,
    migrate,
    reset_engines,
    session_scope,
    use_primary,
)
from appdb.engine import get_async_replica_engines, get_replica_engines
from appdb.messages import inbox, send_message
from appdb.routing import RoutingSession
from appdb.users import touch_telegram_user
from pgserver import PostgresServer

DATABASE = "appdb_replicated"
IN_RECOVERY = select(func.pg_is_in_recovery())


class Cluster:
    """A primary and its hot-standby replica, both serving `DATABASE` at appdb's head."""

    def __init__(self, bindir: Path) -> None:
        """Start the primary, migrate it, clone the replica and wait until it has caught up."""
        self.primary = PostgresServer.init(bindir).start()
        self.replica: PostgresServer | None = None
        self.primary.create_database(DATABASE)
        migrate.upgrade(settings=DatabaseSettings(url=self.primary.url(DATABASE)))
        self.replica = PostgresServer.replica_of(self.primary).start()
        self.wait_replayed()

    def wait_replayed(self, timeout: float = 30) -> None:
        """Block until the replica has replayed everything the primary has written so far."""
        assert self.replica is not None
        (lsn,) = self.primary.execute("SELECT pg_current_wal_lsn()::text")[0]
        deadline = time.monotonic() + timeout
        query = f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"
        while not self.replica.execute(query)[0][0]:
            assert time.monotonic() < deadline, "the replica did not catch up"
            time.sleep(0.02)

    @contextmanager
    def replay_paused(self) -> Iterator[None]:
        """Hold the replica back, as a lagging replica is: the primary's new writes stay unseen."""
        assert self.replica is not None
        self.replica.execute("SELECT pg_wal_replay_pause()")
        try:
            yield
        finally:
            self.replica.execute("SELECT pg_wal_replay_resume()")

    def destroy(self) -> None:
        """Stop both servers and delete their files."""
        if self.replica is not None:
            self.replica.destroy()
        self.primary.destroy()


@pytest.fixture(scope="module")
def cluster(postgresql_bindir: Path) -> Iterator[Cluster]:
    """One primary and replica for the module (the tests that stop the replica start it again)."""
    cluster = Cluster(postgresql_bindir)
    yield cluster
    cluster.destroy()


@pytest.fixture
def replicated(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    """``DATABASE_URL`` on the primary and ``DATABASE_REPLICA_URLS`` on the replica, with one seeded user."""
    assert cluster.replica is not None
    monkeypatch.setenv("DATABASE_URL", cluster.primary.url(DATABASE).render_as_string())
    monkeypatch.setenv("DATABASE_REPLICA_URLS", cluster.replica.url(DATABASE).render_as_string())
    monkeypatch.setenv("DATABASE_REPLICA_RETRY_INTERVAL", "1")
    monkeypatch.setenv("DATABASE_POOL_SIZE", "2")
    reset_engines()
    cluster.primary.execute("TRUNCATE users, messages RESTART IDENTITY CASCADE", DATABASE)
    with session_scope() as session:
        user = touch_telegram_user(session, 1, first_name="Ann")
        send_message(session, sender_id=user.id, recipient_id=user.id, content="seed")
    cluster.wait_replayed()
    return cluster


@contextmanager
def served_by() -> Iterator[list[str]]:
    """Record which server ran each statement: ``primary`` or ``replica``."""
    served: list[str] = []
    engines = {get_engine(): "primary"} | dict.fromkeys(get_replica_engines(), "replica")
    engines |= {get_async_engine().sync_engine: "primary"}
    engines |= dict.fromkeys((e.sync_engine for e in get_async_replica_engines()), "replica")

    def record(connection: sa.Connection, *_args: object) -> None:
        served.append(engines[connection.engine])

    for engine in engines:
        sa.event.listen(engine, "before_cursor_execute", record)
    try:
        yield served
    finally:
        for engine in engines:
            sa.event.remove(engine, "before_cursor_execute", record)


def test_reads_go_to_the_replica(replicated: Cluster) -> None:
    """An inbox page is read on the replica, a connection in recovery."""
    with served_by() as served, session_scope() as session:
        assert isinstance(session, RoutingSession)
        assert ["seed"] == [message.content for message in inbox(session, 1)]
        assert session.exec(IN_RECOVERY).one() is True
    assert ["replica", "replica"] == served


def test_writes_and_what_follows_go_to_the_primary(replicated: Cluster) -> None:
    """After a write the session reads its own writes on the primary, even past its commit."""
    with replicated.replay_paused(), served_by() as served, session_scope() as session:
        assert 1 == len(inbox(session, 1))  # the replica
        user = touch_telegram_user(session, 1, first_name="Ann")
        send_message(session, sender_id=user.id, recipient_id=user.id, content="new")
        assert ["new", "seed"] == [message.content for message in inbox(session, 1)]
        session.commit()
        assert ["new", "seed"] == [message.content for message in inbox(session, 1)]
        assert session.exec(IN_RECOVERY).one() is False
        with session_scope() as other:  # a new session reads the (lagging) replica again
            assert ["seed"] == [message.content for message in inbox(other, 1)]
    assert ["replica", *["primary"] * 5, "replica"] == served


def test_flush_and_for_update_go_to_the_primary(replicated: Cluster) -> None:
    """A flush of pending objects, and SELECT ... FOR UPDATE, pin the session to the primary."""
    with served_by() as served, session_scope() as session:
        session.add(User(username="bea"))
        session.flush()
        assert isinstance(session, RoutingSession)
        assert session.on_primary
    with served_by() as locked, session_scope() as session:
        session.exec(select(User).where(User.id == 1).with_for_update()).one()
        assert session.exec(IN_RECOVERY).one() is False
    assert {"primary"} == set(served)
    assert ["primary", "primary"] == locked


def test_use_primary_forces_the_primary_for_a_block(replicated: Cluster) -> None:
    """use_primary sends reads to the primary inside the block only."""
    with served_by() as served, session_scope() as session:
        with use_primary(session):
            assert session.exec(IN_RECOVERY).one() is False
        assert session.exec(IN_RECOVERY).one() is True
    assert ["primary", "replica"] == served


def test_replica_down_falls_back_to_the_primary(
    replicated: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A stopped replica: reads go to the primary with one warning, then back once it returns."""
    assert replicated.replica is not None
    with session_scope() as session:  # a pooled replica connection, which will go stale
        inbox(session, 1)
    replicated.replica.stop()
    try:
        with caplog.at_level(logging.WARNING, "appdb"), served_by() as served:
            for _ in range(3):
                with session_scope() as session:
                    assert ["seed"] == [message.content for message in inbox(session, 1)]
        assert ["primary"] * 3 == served
        warnings = [r.getMessage() for r in caplog.records if "read replica" in r.getMessage()]
        assert 1 == len(warnings)
        assert "unavailable" in warnings[0]
        assert "reading from the primary for 1s" in warnings[0]
    finally:
        replicated.replica.start()
    time.sleep(1.1)  # DATABASE_REPLICA_RETRY_INTERVAL
    with served_by() as served, session_scope() as session:
        inbox(session, 1)
    assert ["replica"] == served


@pytest.mark.anyio
async def test_async_sessions_route_the_same_way(replicated: Cluster) -> None:
    """AsyncSessionLocal reads on the replica, writes and reads its writes on the primary."""
    with served_by() as served:
        async with async_session_scope() as session:
            assert isinstance(session.sync_session, RoutingSession)
            assert 1 == len(await aio.inbox(session, 1))
            assert (await session.exec(IN_RECOVERY)).one() is True
            with use_primary(session):
                assert (await session.exec(IN_RECOVERY)).one() is False
            user = await aio.touch_telegram_user(session, 1, first_name="Ann")
            await aio.send_message(session, sender_id=user.id, recipient_id=1, content="async")
            assert 2 == len(await aio.inbox(session, 1))
            assert (await session.exec(IN_RECOVERY)).one() is False
    assert ["replica", "replica", "primary", "primary", "primary", "primary", "primary"] == served


@pytest.mark.anyio
async def test_async_replica_down_falls_back(
    replicated: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """The async sessions fall back to the primary too."""
    assert replicated.replica is not None
    replicated.replica.stop()
    try:
        with caplog.at_level(logging.WARNING, "appdb"), served_by() as served:
            async with async_session_scope() as session:
                assert 1 == len(await aio.inbox(session, 1))
        assert ["primary"] == served
        assert any("read replica" in record.getMessage() for record in caplog.records)
    finally:
        replicated.replica.start()
    await get_async_engine().dispose()
    for engine in get_async_replica_engines():
        await engine.dispose()


def test_without_replicas_sessions_are_plain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No DATABASE_REPLICA_URLS: SessionLocal and AsyncSessionLocal make the same sessions as before."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite3'}")
    with SessionLocal() as session:
        assert Session is type(session).__mro__[1]
        assert not isinstance(session, RoutingSession)
    async_session = AsyncSessionLocal()
    assert not isinstance(async_session.sync_session, RoutingSession)
    assert () == get_replica_engines()
