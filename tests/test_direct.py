"""The hot statements on the driver's cursor (`appdb._direct`): same rows, same errors, same SQL.

SQLAlchemy's statement execution (``Connection._execute_context``) is made to fail here, so a
test that passes ran on the direct path; watching the SQL (echo, an event listener) must bring
SQLAlchemy's execution back.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from appdb import (
    ConnectionLostError,
    DatabaseSettings,
    StatementTimeoutError,
    UserNotFoundError,
    aio,
    create_async_engine,
    create_engine,
)
from appdb._direct import plan_for, rows, rows_async
from appdb.messages import inbox, mark_read, send_message, unread_count
from appdb.models import User
from appdb.rows import MessageRow, UserRow
from appdb.session import async_connection_scope, connection_scope, session_scope
from appdb.users import touch_telegram_user


class SQLAlchemyExecutionError(AssertionError):
    """A statement went through SQLAlchemy's execution where the direct path was expected."""


@pytest.fixture
def no_sqlalchemy_execution(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLAlchemy's execution of a compiled statement raises, once `engine`'s database is made.

    Driver SQL, such as a dialect's first-connect queries, still runs.
    """
    del engine
    execute = sa.engine.Connection._execute_context

    def refuse(
        self: sa.Connection, dialect: object, constructor: object, *rest: Any, **keywords: Any
    ) -> Any:
        if getattr(constructor, "__name__", "") == "_init_compiled":
            raise SQLAlchemyExecutionError
        return execute(self, dialect, constructor, *rest, **keywords)  # type: ignore[arg-type]

    monkeypatch.setattr(sa.engine.Connection, "_execute_context", refuse)


def hot_path(
    session: Session | sa.Connection,
) -> tuple[UserRow, UserRow, MessageRow, list[MessageRow], int, int]:
    """Every hot operation once, in their row forms."""
    ann = touch_telegram_user(session, 1, username="ann", first_name="Ann", as_row=True)
    bob = touch_telegram_user(session, 2, first_name="Bob", as_row=True)
    sent = send_message(session, sender_id=ann.id, recipient_id=bob.id, content="hi", as_row=True)
    page = inbox(session, bob.id, as_rows=True)
    unread = unread_count(session, bob.id)
    marked = mark_read(session, bob.id)
    return ann, bob, sent, page, unread, marked


@pytest.fixture(params=["session", "connection"])
def unit(request: pytest.FixtureRequest, engine: sa.Engine) -> Iterator[Session | sa.Connection]:
    """A unit of work: a session, or the connection of a connection_scope (no ORM)."""
    if request.param == "session":
        with Session(engine) as session:
            yield session
    else:
        with connection_scope(engine) as connection:
            yield connection


@pytest.mark.usefixtures("no_sqlalchemy_execution")
def test_hot_operations_run_on_the_driver_cursor(
    unit: Session | sa.Connection, statements: list[str], backend: str
) -> None:
    """Touch, send, inbox, unread_count and mark_read: one driver call each, right results.

    In a session, and on the connection of a connection_scope.
    """
    ann, bob, sent, page, unread, marked = hot_path(unit)
    unit.commit()
    assert 6 == len(statements)
    assert ("ann", "Ann", 1) == (ann.telegram_username, ann.first_name, ann.telegram_user_id)
    assert (ann.id, bob.id, "hi", False) == (
        sent.sender_id,
        sent.recipient_id,
        sent.content,
        sent.is_read,
    )
    assert ([sent], 1, 1) == (page, unread, marked)
    assert sent.created_at.tzinfo is UTC, backend
    assert 0 == unread_count(unit, bob.id)


@pytest.mark.anyio
@pytest.mark.usefixtures("no_sqlalchemy_execution")
async def test_async_twins_run_on_the_driver_cursor(
    async_session: AsyncSession, async_statements: list[str]
) -> None:
    """The async twins share the path (SQLAlchemy's adapted cursor, in its greenlet).

    mark_read is given an id list here (the sync test marks all), one id repeated: it counts once.
    """
    ann = await aio.touch_telegram_user(async_session, 1, as_row=True)
    bob = await aio.touch_telegram_user(async_session, 2, as_row=True)
    sent = await aio.send_message(
        async_session, sender_id=ann.id, recipient_id=bob.id, content="hi", as_row=True
    )
    assert [sent] == await aio.inbox(async_session, bob.id, as_rows=True)
    assert 1 == await aio.mark_read(async_session, bob.id, message_ids=[sent.id, sent.id])
    assert 0 == await aio.unread_count(async_session, bob.id)
    await async_session.commit()
    assert 6 == len(async_statements)


@pytest.mark.usefixtures("no_sqlalchemy_execution")
@pytest.mark.parametrize("count", [1, 3, 5, 200, 498])
def test_mark_read_of_an_id_list_runs_on_the_driver_cursor(
    session: Session, statements: list[str], count: int
) -> None:
    """An id list, padded to a fixed size, is one driver call; the padding marks nothing more."""
    ann = touch_telegram_user(session, 1, as_row=True)
    bob = touch_telegram_user(session, 2, as_row=True)
    sent = [
        send_message(session, sender_id=ann.id, recipient_id=bob.id, content=str(n), as_row=True)
        for n in range(count + 2)
    ]
    to_ann = send_message(session, sender_id=bob.id, recipient_id=ann.id, content="x", as_row=True)
    ids = [message.id for message in sent[:count]]
    del statements[:]
    # A repeated id counts once, Ann's message is not Bob's to mark, his last two stay unread.
    assert count == mark_read(session, bob.id, message_ids=[*ids, to_ann.id, ids[0]])
    assert 1 == len(statements)
    assert 2 == unread_count(session, bob.id)
    assert 1 == unread_count(session, ann.id)
    assert 0 == mark_read(session, bob.id, message_ids=ids)


def test_rows_equal_sqlalchemys(session: Session) -> None:
    """The same statement through SQLAlchemy and directly: equal rows, values and types."""
    touch_telegram_user(session, 7, first_name="Eve", is_premium=True)
    statement = sa.select(*User.__table__.c).where(User.__table__.c.telegram_user_id == 7)  # type: ignore[attr-defined]
    connection = session.connection()
    through_sqlalchemy = [tuple(row) for row in connection.execute(statement)]
    direct = rows(connection, statement, {})
    assert through_sqlalchemy == direct
    assert [type(value) for value in through_sqlalchemy[0]] == [type(v) for v in direct[0]]
    assert plan_for(statement, connection.dialect) is not None


def test_statements_that_need_sqlalchemy_have_no_plan(engine: sa.Engine) -> None:
    """An expanding IN list and a Python-side callable default go through SQLAlchemy."""
    users = User.__table__  # type: ignore[attr-defined]
    expanding = sa.select(users.c.id).where(users.c.id.in_(sa.bindparam("ids", expanding=True)))
    table = sa.Table("t", sa.MetaData(), sa.Column("x", sa.Integer, default=lambda: 1))
    assert plan_for(expanding, engine.dialect) is None
    assert plan_for(sa.insert(table), engine.dialect) is None
    assert plan_for(sa.insert(table), engine.dialect, ["x"]) is not None


@pytest.mark.usefixtures("engine")  # the tables
def test_echo_brings_sqlalchemys_execution_back(
    settings: DatabaseSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """``DATABASE_ECHO``: every hot statement is logged, as before."""
    engine = create_engine(settings.model_copy(update={"echo": True}))
    try:
        with (
            caplog.at_level(logging.INFO, "sqlalchemy.engine"),
            session_scope(sessionmaker(engine, class_=Session)) as session,
        ):
            touch_telegram_user(session, 5, as_row=True)
            unread_count(session, 1)
        logged = [record.getMessage() for record in caplog.records]
        assert any(message.startswith("INSERT INTO users") for message in logged)
        assert any("count(" in message.lower() for message in logged)
    finally:
        engine.dispose()


@pytest.mark.parametrize("on", ["engine", "connection"])
def test_a_cursor_listener_sees_every_hot_statement(
    engine: sa.Engine, session: Session, on: str
) -> None:
    """An instrumentation listener (OpenTelemetry's, say) sees the statements, as before.

    On the engine, or on the one connection of the unit of work.
    """
    seen: list[str] = []

    def record(_c: object, _cur: object, statement: str, *_rest: object) -> None:
        seen.append(statement.split(None, 1)[0])

    target: sa.Engine | sa.Connection = engine if on == "engine" else session.connection()
    sa.event.listen(target, "before_cursor_execute", record)
    try:
        hot_path(session)
    finally:
        sa.event.remove(target, "before_cursor_execute", record)
    assert ["INSERT", "INSERT", "INSERT", "SELECT", "SELECT", "UPDATE"] == seen


@pytest.mark.usefixtures("no_sqlalchemy_execution")
def test_a_driver_error_is_sqlalchemys_and_the_session_recovers(session: Session) -> None:
    """A constraint violation on the direct path: SQLAlchemy's IntegrityError, then rollback."""
    users = User.__table__  # type: ignore[attr-defined]
    insert = sa.insert(users).values(username=sa.bindparam("u"), email=sa.bindparam("e"))
    connection = session.connection()
    rows(connection, insert, {"u": "ann", "e": "ann@example.com"})
    with pytest.raises(sa.exc.IntegrityError, match=r"UNIQUE|unique"):
        rows(connection, insert, {"u": "ann", "e": "ann@example.com"})
    session.rollback()
    assert 0 == unread_count(session, 1)


@pytest.fixture
def blocking(database_url: sa.URL) -> Iterator[psycopg.Connection]:
    """A second connection, outside the engine, holding whatever the test makes it hold."""
    url = database_url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as connection:
        yield connection


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.usefixtures("no_sqlalchemy_execution")
def test_a_statement_timeout_on_the_direct_path_is_translated(
    settings: DatabaseSettings, blocking: psycopg.Connection
) -> None:
    """A touch waiting on a row lock past DATABASE_STATEMENT_TIMEOUT: StatementTimeoutError."""
    engine = create_engine(settings.model_copy(update={"statement_timeout": 200}))
    factory = sessionmaker(engine, class_=Session)
    try:
        with session_scope(factory) as session:
            touch_telegram_user(session, 9, as_row=True)
        blocking.execute("SELECT 1 FROM users WHERE telegram_user_id = 9 FOR UPDATE")
        with factory() as session:
            with pytest.raises(StatementTimeoutError, match="200 ms"):
                touch_telegram_user(session, 9, first_name="Late", as_row=True)
            session.rollback()
            blocking.rollback()
            assert "Late" == touch_telegram_user(session, 9, first_name="Late", as_row=True)[11]
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.usefixtures("no_sqlalchemy_execution")
def test_a_lost_connection_on_the_direct_path_is_translated_and_replaced(
    engine: sa.Engine, session: Session, blocking: psycopg.Connection
) -> None:
    """The session's backend terminated: ConnectionLostError, and the pool reconnects."""
    touch_telegram_user(session, 3, as_row=True)
    session.commit()
    pid = session.connection().connection.dbapi_connection.info.backend_pid  # type: ignore[union-attr]
    blocking.execute("SELECT pg_terminate_backend(%s)", [pid])
    blocking.commit()
    with pytest.raises(ConnectionLostError, match="rolled back"):
        touch_telegram_user(session, 3, as_row=True)
    session.rollback()
    assert 3 == touch_telegram_user(session, 3, as_row=True).telegram_user_id


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.usefixtures("no_sqlalchemy_execution")
def test_errors_in_a_connection_scope_are_translated_and_roll_it_back(
    settings: DatabaseSettings, blocking: psycopg.Connection
) -> None:
    """A statement timeout, then a terminated backend, in connection_scope: appdb's errors.

    Each undoes the scope's earlier writes; the pool then serves a healthy connection.
    """
    engine = create_engine(settings.model_copy(update={"statement_timeout": 200}))
    try:
        with connection_scope(engine) as connection:
            touch_telegram_user(connection, 9, as_row=True)
        blocking.execute("SELECT 1 FROM users WHERE telegram_user_id = 9 FOR UPDATE")
        with pytest.raises(StatementTimeoutError, match="200 ms"), connection_scope(engine) as c:
            touch_telegram_user(c, 10, as_row=True)
            touch_telegram_user(c, 9, first_name="Late", as_row=True)
        blocking.rollback()
        with pytest.raises(ConnectionLostError, match="rolled back"), connection_scope(engine) as c:
            touch_telegram_user(c, 11, as_row=True)
            pid = c.connection.dbapi_connection.info.backend_pid  # type: ignore[union-attr]
            blocking.execute("SELECT pg_terminate_backend(%s)", [pid])
            blocking.commit()
            touch_telegram_user(c, 12, as_row=True)
        with connection_scope(engine) as connection:
            stored = connection.exec_driver_sql("SELECT telegram_user_id FROM users")
            assert [9] == list(stored.scalars())
    finally:
        engine.dispose()


# --- the async unit of work: statements awaited on asyncpg's own connection --------------------


@pytest.fixture
def no_greenlet(monkeypatch: pytest.MonkeyPatch) -> None:
    """An async connection's run_sync (SQLAlchemy's greenlet) raises: the direct path is taken."""

    async def refuse(*_args: object, **_keywords: object) -> object:
        raise SQLAlchemyExecutionError

    monkeypatch.setattr(AsyncConnection, "run_sync", refuse)


def _logged(connection: AsyncConnection) -> list[str]:
    """The statements asyncpg runs on `connection` from now on, but BEGIN and COMMIT."""
    sync = connection.sync_connection
    assert sync is not None
    sent: list[str] = []
    driver: Any = sync.connection.driver_connection
    driver.add_query_logger(lambda record: sent.append(record.query))
    return sent


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.anyio
@pytest.mark.usefixtures("no_sqlalchemy_execution", "no_greenlet")
async def test_async_connection_scope_awaits_asyncpg_directly(
    engine: sa.Engine, async_engine: AsyncEngine
) -> None:
    """The hot twins on a scope's connection: one asyncpg statement each, no greenlet."""
    async with async_connection_scope(async_engine) as connection:
        sent = _logged(connection)
        ann = await aio.touch_telegram_user(connection, 1, username="ann", as_row=True)
        bob = await aio.touch_telegram_user(connection, 2, first_name="Bob", as_row=True)
        message = await aio.send_message(
            connection, sender_id=ann.id, recipient_id=bob.id, content="hi", as_row=True
        )
        page = await aio.inbox(connection, bob.id, as_rows=True)
        unread = await aio.unread_count(connection, bob.id)
        marked = await aio.mark_read(connection, bob.id, message_ids=[message.id, message.id])
    statements = [query.split(None, 1)[0] for query in sent if query not in {"BEGIN;", "COMMIT;"}]
    assert ["INSERT", "INSERT", "INSERT", "SELECT", "SELECT", "UPDATE"] == statements
    assert ([message], 1, 1) == (page, unread, marked)
    assert (message.created_at.tzinfo, bob.display_name) == (UTC, "Bob")
    with Session(engine) as session:
        assert 0 == unread_count(session, bob.id)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.anyio
async def test_async_direct_rows_equal_sqlalchemys(async_engine: AsyncEngine) -> None:
    """The same statement through SQLAlchemy and awaited on asyncpg: equal rows and types."""
    statement = sa.select(*User.__table__.c)  # type: ignore[attr-defined]
    async with async_connection_scope(async_engine) as connection:
        await aio.touch_telegram_user(connection, 7, first_name="Eve", is_premium=True, as_row=True)
        direct = await rows_async(connection, statement, {})
        through_sqlalchemy = [tuple(row) for row in await connection.execute(statement)]
    assert through_sqlalchemy == direct
    assert [type(value) for value in through_sqlalchemy[0]] == [type(v) for v in direct[0]]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.anyio
async def test_a_listener_on_the_async_engine_sees_the_scopes_statements(
    engine: sa.Engine, async_engine: AsyncEngine
) -> None:
    """Watched statements run through SQLAlchemy (a savepoint of the scope's transaction)."""
    seen: list[str] = []

    def record(_c: object, _cur: object, statement: str, *_rest: object) -> None:
        seen.append(statement.split(None, 1)[0])

    sa.event.listen(async_engine.sync_engine, "before_cursor_execute", record)
    try:
        async with async_connection_scope(async_engine) as connection:
            bob = await aio.touch_telegram_user(connection, 2, as_row=True)
            assert 0 == await aio.unread_count(connection, bob.id)
    finally:
        sa.event.remove(async_engine.sync_engine, "before_cursor_execute", record)
    assert ["INSERT", "SELECT"] == seen
    with Session(engine) as session:
        assert 2 == session.exec(select(User.telegram_user_id)).one()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.anyio
async def test_an_insert_that_inserts_nothing_is_explained_and_the_scope_goes_on(
    engine: sa.Engine, async_engine: AsyncEngine
) -> None:
    """A send to nobody: UserNotFoundError (explained in SQLAlchemy); the scope still commits."""
    async with async_connection_scope(async_engine) as connection:
        ann = await aio.touch_telegram_user(connection, 1, as_row=True)
        with pytest.raises(UserNotFoundError, match="recipient"):
            await aio.send_message(
                connection, sender_id=ann.id, recipient_id=10**12, content="hi", as_row=True
            )
        await aio.touch_telegram_user(connection, 2, as_row=True)
    with Session(engine) as session:
        stored = session.exec(select(User.telegram_user_id).order_by(col(User.telegram_user_id)))
        assert [1, 2] == stored.all()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.anyio
async def test_errors_in_an_async_connection_scope_are_translated_and_roll_it_back(
    settings: DatabaseSettings, engine: sa.Engine, blocking: psycopg.Connection
) -> None:
    """A statement timeout, then a terminated backend: appdb's errors, the scope rolled back.

    The pool then serves a healthy connection.
    """
    async_engine = create_async_engine(settings.model_copy(update={"statement_timeout": 200}))
    try:
        async with async_connection_scope(async_engine) as connection:
            await aio.touch_telegram_user(connection, 9, as_row=True)
        blocking.execute("SELECT 1 FROM users WHERE telegram_user_id = 9 FOR UPDATE")
        with pytest.raises(StatementTimeoutError, match="200 ms"):
            async with async_connection_scope(async_engine) as connection:
                await aio.touch_telegram_user(connection, 10, as_row=True)
                await aio.touch_telegram_user(connection, 9, first_name="Late", as_row=True)
        blocking.rollback()
        with pytest.raises(ConnectionLostError, match="rolled back"):
            async with async_connection_scope(async_engine) as connection:
                await aio.touch_telegram_user(connection, 11, as_row=True)
                driver: Any = (await connection.get_raw_connection()).driver_connection
                blocking.execute("SELECT pg_terminate_backend(%s)", [driver.get_server_pid()])
                blocking.commit()
                await aio.touch_telegram_user(connection, 12, as_row=True)
        async with async_connection_scope(async_engine) as connection:
            assert 9 == (await aio.touch_telegram_user(connection, 9, as_row=True)).telegram_user_id
    finally:
        await async_engine.dispose()
    with Session(engine) as session:
        assert [9] == list(session.exec(select(User.telegram_user_id)).all())


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.anyio
async def test_the_scope_replaces_a_recycled_connection_in_a_greenlet(
    async_engine: AsyncEngine,
) -> None:
    """A pooled connection due for replacement: the scope reconnects (no un-awaited coroutine)."""
    async with async_connection_scope(async_engine) as connection:
        first = (await connection.get_raw_connection()).driver_connection
        raw = await connection.get_raw_connection()
        raw.invalidate(soft=True)  # replaced at its next checkout, as a recycled one is
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with async_connection_scope(async_engine) as connection:
            await aio.touch_telegram_user(connection, 3, as_row=True)
            assert first is not (await connection.get_raw_connection()).driver_connection
        gc.collect()
    assert [] == [str(warning.message) for warning in caught]
    assert 1 == async_engine.sync_engine.pool.checkedin()  # type: ignore[attr-defined]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.anyio
@pytest.mark.parametrize("pool", ["overflow", "NullPool"])
@pytest.mark.usefixtures("engine")  # the tables
async def test_connections_the_pool_closes_are_closed_cleanly(
    settings: DatabaseSettings, caplog: pytest.LogCaptureFixture, pool: str
) -> None:
    """Scopes beyond the pool's size (or on NullPool): their connections closed, no error logged."""
    options: dict[str, Any] = (
        {"poolclass": sa.pool.NullPool}
        if pool == "NullPool"
        else {"pool_size": 1, "max_overflow": 3}
    )
    sized = settings.model_copy(update=options) if pool == "overflow" else settings
    async_engine = create_async_engine(sized, **({} if pool == "overflow" else options))

    async def unit(number: int) -> None:
        async with async_connection_scope(async_engine) as connection:
            await aio.touch_telegram_user(connection, number, as_row=True)
            await asyncio.sleep(0)  # the others check out meanwhile: overflow

    try:
        with caplog.at_level(logging.INFO, "sqlalchemy.pool"):
            await asyncio.gather(*(unit(number) for number in range(1, 5)))
            async with async_connection_scope(async_engine) as connection:
                assert 0 == await aio.unread_count(connection, 1)
        pool_of: Any = async_engine.sync_engine.pool
        kept = pool_of.checkedin() if pool == "overflow" else 0
    finally:
        await async_engine.dispose()
    assert [] == [record.getMessage() for record in caplog.records if record.levelno > logging.INFO]
    assert (1 if pool == "overflow" else 0) == kept


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.anyio
async def test_a_begin_listener_of_its_own_puts_the_scope_on_sqlalchemys_transaction(
    engine: sa.Engine, async_engine: AsyncEngine
) -> None:
    """Someone else's "begin" listener runs once per scope: the transaction is SQLAlchemy's."""
    begun: list[object] = []

    def record(connection: object) -> None:
        begun.append(connection)

    sa.event.listen(async_engine.sync_engine, "begin", record)
    try:
        for number in (1, 2):
            async with async_connection_scope(async_engine) as connection:
                await aio.touch_telegram_user(connection, number, as_row=True)
    finally:
        sa.event.remove(async_engine.sync_engine, "begin", record)
    assert 2 == len(begun)
    with Session(engine) as session:
        assert 2 == len(session.exec(select(User)).all())
