"""SessionLocal, AsyncSessionLocal and the unit-of-work scopes, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Session, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from appdb import (
    AsyncSessionLocal,
    DatabaseSettings,
    InvalidInputError,
    SessionLocal,
    User,
    aio,
    async_connection_scope,
    async_session_scope,
    connection_scope,
    create_async_engine,
    get_async_engine,
    get_engine,
    reset_engines,
    session_scope,
)
from appdb.messages import inbox, send_message, unread_count

# The name appdb.session still serves at run time (module __getattr__), unseen by type checkers.
from appdb.session import async_sessionmaker  # type: ignore[attr-defined]
from appdb.users import touch_telegram_user


def _count_users(engine: sa.Engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(User)).one()


def test_session_local_neither_autoflushes_nor_autocommits(engine: sa.Engine) -> None:
    """A query does not flush pending objects, and closing without commit stores nothing."""
    with SessionLocal(bind=engine) as session:
        assert isinstance(session, Session)
        session.add(User(username="pending"))
        assert 0 == session.exec(select(func.count()).select_from(User)).one()
        session.flush()
        assert 1 == session.exec(select(func.count()).select_from(User)).one()
    assert 0 == _count_users(engine)


@pytest.mark.anyio
async def test_async_session_local_does_not_autoflush_or_expire(
    engine: sa.Engine, async_engine: AsyncEngine
) -> None:
    """Async sessions do not flush before a query, and keep attributes loaded after a commit."""
    async with AsyncSessionLocal(bind=async_engine) as session:
        assert isinstance(session, AsyncSession)
        user = User(username="pending")
        session.add(user)
        assert 0 == (await session.exec(select(func.count()).select_from(User))).one()
        await session.commit()
        assert "pending" == user.username  # no lazy load: it would fail outside a greenlet
    assert 1 == _count_users(engine)


def test_session_local_binds_lazily_to_settings(
    monkeypatch: pytest.MonkeyPatch, engine: sa.Engine, database_url: URL
) -> None:
    """With no set-up, SessionLocal() uses DATABASE_URL from the environment at first call."""
    monkeypatch.setenv("DATABASE_URL", database_url.render_as_string(hide_password=False))
    with SessionLocal() as session:
        session.add(User(username="lazy"))
        session.commit()
        assert session.get_bind() is get_engine()
    assert 1 == _count_users(engine)


def test_session_local_is_rebuilt_after_reset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """reset_engines makes SessionLocal follow changed settings."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'one.db'}")
    with SessionLocal() as session:
        first = session.get_bind()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'two.db'}")
    reset_engines()
    with SessionLocal() as session:
        assert first is not session.get_bind()
        bind = session.get_bind()
        assert isinstance(bind, sa.Engine)
        assert str(tmp_path / "two.db") == bind.url.database


def test_explicit_bind_wins(engine: sa.Engine) -> None:
    """SessionLocal.configure(bind=...) or SessionLocal(bind=...) overrides the default."""
    with SessionLocal(bind=engine) as session:
        assert session.get_bind() is engine
    SessionLocal.configure(bind=engine)
    with SessionLocal() as session:
        assert session.get_bind() is engine


def test_session_scope_commits_on_success(engine: sa.Engine) -> None:
    """What the block adds is committed when it ends."""
    SessionLocal.configure(bind=engine)
    with session_scope() as session:
        session.add(User(username="kept"))
    assert 1 == _count_users(engine)


def test_session_scope_rolls_back_and_reraises(engine: sa.Engine) -> None:
    """An exception rolls the work back and propagates."""
    SessionLocal.configure(bind=engine)
    with pytest.raises(RuntimeError, match="boom"), session_scope() as session:
        session.add(User(username="lost"))
        session.flush()
        raise RuntimeError("boom")
    assert 0 == _count_users(engine)
    assert 0 == cast("sa.QueuePool", engine.pool).checkedout()


def test_session_scope_closes(engine: sa.Engine) -> None:
    """The connection goes back to the pool when the scope ends."""
    SessionLocal.configure(bind=engine)
    with session_scope() as session:
        session.exec(select(User)).all()
        assert 1 == cast("sa.QueuePool", engine.pool).checkedout()
    assert 0 == cast("sa.QueuePool", engine.pool).checkedout()


def test_connection_scope_commits_rows_and_joined_orm_work_together(engine: sa.Engine) -> None:
    """Rows operations and a Session joined to the connection are one transaction.

    The joined session's commit() only flushes: nothing is visible outside until the scope ends.
    """
    with connection_scope(engine) as connection:
        bot_user = touch_telegram_user(connection, 42, first_name="Bob", as_row=True)
        with Session(bind=connection) as session:
            ann = User(username="ann")
            session.add(ann)
            session.commit()
            ann_id = ann.id
        assert ann_id is not None
        send_message(
            connection, sender_id=bot_user.id, recipient_id=ann_id, content="hi", as_row=True
        )
        assert 2 == connection.execute(sa.select(func.count()).select_from(User)).scalar_one()
        assert 0 == _count_users(engine)
        assert 1 == cast("sa.QueuePool", engine.pool).checkedout()
    assert 2 == _count_users(engine)
    assert 0 == cast("sa.QueuePool", engine.pool).checkedout()
    with Session(engine) as session:
        assert 1 == unread_count(session, ann_id)


def test_connection_scope_rolls_back_and_reraises(engine: sa.Engine) -> None:
    """An exception rolls back the rows operations and the joined ORM work, and propagates."""
    with pytest.raises(RuntimeError, match="boom"), connection_scope(engine) as connection:
        touch_telegram_user(connection, 42, as_row=True)
        with Session(bind=connection) as session:
            session.add(User(username="lost"))
            session.flush()
        raise RuntimeError("boom")
    assert 0 == _count_users(engine)
    assert 0 == cast("sa.QueuePool", engine.pool).checkedout()


def test_connection_scope_uses_the_default_engine(
    monkeypatch: pytest.MonkeyPatch, engine: sa.Engine, database_url: URL
) -> None:
    """With no engine given, the scope connects with get_engine() (DATABASE_URL)."""
    monkeypatch.setenv("DATABASE_URL", database_url.render_as_string(hide_password=False))
    with connection_scope() as connection:
        assert connection.engine is get_engine()
        touch_telegram_user(connection, 7, as_row=True)
    assert 1 == _count_users(engine)


def test_orm_forms_refuse_a_connection(engine: sa.Engine) -> None:
    """A form that returns model instances needs a Session: a connection is InvalidInputError."""
    with connection_scope(engine) as connection:
        with pytest.raises(InvalidInputError, match=r"touch_telegram_user\(\).*as_row=True"):
            touch_telegram_user(connection, 7)  # type: ignore[call-overload]
        with pytest.raises(InvalidInputError, match=r"inbox\(\).*as_rows=True"):
            inbox(connection, 1)  # type: ignore[call-overload]
        with pytest.raises(InvalidInputError, match=r"send_message\(\).*as_row=True"):
            send_message(connection, sender_id=1, recipient_id=1, content="hi")  # type: ignore[call-overload]
        assert 0 == unread_count(connection, 1)
    assert 0 == _count_users(engine)


@pytest.mark.anyio
async def test_async_scope_commits_and_rolls_back(
    engine: sa.Engine, settings: DatabaseSettings
) -> None:
    """The async scope commits on success and rolls back on error, on both backends."""
    async_engine = create_async_engine(settings)
    factory = async_sessionmaker(async_engine, class_=AsyncSession, expire_on_commit=False)
    async with async_session_scope(factory) as session:
        session.add(User(telegram_user_id=42, first_name="Ann"))
    with pytest.raises(ValueError, match="nope"):
        async with async_session_scope(factory) as session:
            session.add(User(telegram_user_id=43))
            await session.flush()
            raise ValueError("nope")
    async with factory() as session:
        ids = (await session.exec(select(User.telegram_user_id))).all()
    await async_engine.dispose()
    assert [42] == list(ids)


@pytest.mark.anyio
async def test_async_connection_scope_commits_rows_core_and_orm_together(
    engine: sa.Engine, async_engine: AsyncEngine
) -> None:
    """The hot twins, Core and an AsyncSession on the connection: one unit of work.

    The session's commit() only ends its savepoint: nothing shows outside before the scope ends.
    """
    async with async_connection_scope(async_engine) as connection:
        bob = await aio.touch_telegram_user(connection, 42, first_name="Bob", as_row=True)
        async with AsyncSession(bind=connection, expire_on_commit=False) as session:
            ann = User(username="ann")
            session.add(ann)
            await session.commit()
            ann_id = ann.id
        assert ann_id is not None
        await aio.send_message(
            connection, sender_id=bob.id, recipient_id=ann_id, content="hi", as_row=True
        )
        counted = await connection.execute(sa.select(func.count()).select_from(User))
        assert (2, 1) == (counted.scalar_one(), await aio.unread_count(connection, ann_id))
        assert 0 == _count_users(engine)
    assert 2 == _count_users(engine)
    assert 0 == async_engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]
    with Session(engine) as session:
        assert 1 == unread_count(session, ann_id)


@pytest.mark.anyio
async def test_async_connection_scope_rolls_back_and_reraises(
    engine: sa.Engine, async_engine: AsyncEngine
) -> None:
    """An exception rolls back the hot twins' writes and the session's, and propagates."""
    with pytest.raises(RuntimeError, match="boom"):
        async with async_connection_scope(async_engine) as connection:
            await aio.touch_telegram_user(connection, 42, as_row=True)
            async with AsyncSession(bind=connection) as session:
                session.add(User(username="lost"))
                await session.commit()
            raise RuntimeError("boom")
    assert 0 == _count_users(engine)
    assert 0 == async_engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_async_connection_scope_returns_its_connection_to_the_pool(
    async_engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """A healthy connection goes back to the pool and serves the next scope: nothing reset it."""
    drivers = []
    with caplog.at_level(logging.INFO, "sqlalchemy.pool"):
        for _ in range(3):
            async with async_connection_scope(async_engine) as connection:
                drivers.append((await connection.get_raw_connection()).driver_connection)
    assert 1 == len({id(driver) for driver in drivers})
    assert [] == [record.getMessage() for record in caplog.records if record.levelno > logging.INFO]


@pytest.mark.anyio
async def test_async_connection_scope_uses_the_default_engine(
    monkeypatch: pytest.MonkeyPatch, engine: sa.Engine, database_url: URL
) -> None:
    """With no engine given, the scope connects with get_async_engine() (DATABASE_URL)."""
    monkeypatch.setenv("DATABASE_URL", database_url.render_as_string(hide_password=False))
    async with async_connection_scope() as connection:
        assert connection.engine is get_async_engine()
        await aio.touch_telegram_user(connection, 7, as_row=True)
    await get_async_engine().dispose()
    assert 1 == _count_users(engine)


@pytest.mark.anyio
async def test_async_orm_forms_refuse_a_connection(
    engine: sa.Engine, async_engine: AsyncEngine
) -> None:
    """The twins' ORM forms need an AsyncSession: a connection is InvalidInputError."""
    async with async_connection_scope(async_engine) as connection:
        with pytest.raises(InvalidInputError, match=r"touch_telegram_user\(\).*as_row=True"):
            await aio.touch_telegram_user(connection, 7)  # type: ignore[call-overload]
        with pytest.raises(InvalidInputError, match=r"inbox\(\).*as_rows=True"):
            await aio.inbox(connection, 1)  # type: ignore[call-overload]
    assert 0 == _count_users(engine)


@pytest.mark.anyio
async def test_async_session_local_binds_lazily(
    monkeypatch: pytest.MonkeyPatch, engine: sa.Engine, database_url: URL
) -> None:
    """AsyncSessionLocal() with no set-up uses DATABASE_URL; objects stay loaded after commit."""
    monkeypatch.setenv("DATABASE_URL", database_url.render_as_string(hide_password=False))
    async with AsyncSessionLocal() as session:
        user = User(username="async")
        session.add(user)
        await session.commit()
        assert "async" == user.username  # expire_on_commit=False: no lazy load needed
        bind = session.bind
    assert isinstance(bind, AsyncEngine)
    await bind.dispose()
    assert 1 == _count_users(engine)
