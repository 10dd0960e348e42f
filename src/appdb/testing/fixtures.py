"""The plugin's pytest fixtures: a migrated database, isolated sessions, factories on them.

`appdb.testing` imports every fixture from here, which is how pytest registers them (it reads
fixtures from the plugin module's namespace). Nothing here runs until a test requests one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import NullPool
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from appdb.engine import create_async_engine, create_engine
from appdb.settings import DatabaseSettings
from appdb.testing import servers
from appdb.testing.databases import DatabaseServer
from appdb.testing.factories import (
    AsyncMessageFactory,
    AsyncUserFactory,
    MessageFactory,
    UserFactory,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = [
    "appdb_async_connection",
    "appdb_async_connection_scope",
    "appdb_async_engine",
    "appdb_async_messages",
    "appdb_async_session",
    "appdb_async_sessionmaker",
    "appdb_async_users",
    "appdb_connection",
    "appdb_connection_scope",
    "appdb_database_url",
    "appdb_empty_database_url",
    "appdb_engine",
    "appdb_messages",
    "appdb_server",
    "appdb_session",
    "appdb_sessionmaker",
    "appdb_settings",
    "appdb_users",
]


def _settings(url: URL) -> DatabaseSettings:
    return DatabaseSettings(url=url, pool_size=2, max_overflow=2, application_name="appdb-tests")


def _isolating(engine: Engine) -> Engine:
    """Let pysqlite run SAVEPOINTs: SQLAlchemy emits BEGIN itself (its documented recipe)."""
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN")

    return engine


# The fixture keeps its private name (tests request appdb_database_url, not the server);
# the function is public so that appdb.testing can import it for pytest to register.
@pytest.fixture(scope="session", name="_appdb_server")
def appdb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseServer]:
    """Where this session's test databases are made (fixture ``_appdb_server``)."""
    directory = tmp_path_factory.mktemp("appdb")
    with servers.admin_url() as admin_url:
        yield DatabaseServer(admin_url, directory)


@pytest.fixture(scope="session")
def appdb_database_url(_appdb_server: DatabaseServer) -> Iterator[URL]:
    """The URL of a database migrated to every head (appdb's and services'), once per session."""
    from appdb import migrate  # noqa: PLC0415 - Alembic loads only when a test needs it

    url = _appdb_server.create()
    try:
        migrate.upgrade(settings=_settings(url))
        yield url
    finally:
        _appdb_server.drop(url)


@pytest.fixture
def appdb_empty_database_url(_appdb_server: DatabaseServer) -> Iterator[URL]:
    """The URL of a fresh database that nothing has migrated, dropped after the test."""
    url = _appdb_server.create()
    try:
        yield url
    finally:
        _appdb_server.drop(url)


@pytest.fixture(scope="session")
def appdb_settings(appdb_database_url: URL) -> DatabaseSettings:
    """`DatabaseSettings` for the migrated test database (small pools)."""
    return _settings(appdb_database_url)


@pytest.fixture(scope="session")
def appdb_engine(appdb_settings: DatabaseSettings) -> Iterator[Engine]:
    """A sync engine on the migrated test database, shared by the whole session."""
    engine = _isolating(create_engine(appdb_settings))
    yield engine
    engine.dispose()


@pytest.fixture
def appdb_connection(appdb_engine: Engine) -> Iterator[Connection]:
    """A connection whose outer transaction is rolled back after the test."""
    with appdb_engine.connect() as connection:
        transaction = connection.begin()
        try:
            yield connection
        finally:
            if transaction.is_active:
                transaction.rollback()


@pytest.fixture
def appdb_connection_scope(
    appdb_connection: Connection,
) -> Callable[[], AbstractContextManager[Connection]]:
    """A stand-in for `appdb.connection_scope` inside the test's transaction.

    Each scope it opens is a savepoint of ``appdb_connection``: released when the block
    succeeds, rolled back when it raises, and undone with the rest after the test.
    """

    @contextmanager
    def scope() -> Iterator[Connection]:
        with appdb_connection.begin_nested():
            yield appdb_connection

    return scope


@pytest.fixture
def appdb_sessionmaker(appdb_connection: Connection) -> sessionmaker[Session]:
    """Sessions joined to the test's transaction: their commits release savepoints only."""
    return sessionmaker(
        bind=appdb_connection,
        class_=Session,
        autoflush=False,
        join_transaction_mode="create_savepoint",
    )


@pytest.fixture
def appdb_session(appdb_sessionmaker: sessionmaker[Session]) -> Iterator[Session]:
    """A session isolated in the test's transaction; everything it commits is undone afterwards."""
    with appdb_sessionmaker() as session:
        yield session


@pytest.fixture
async def appdb_async_engine(appdb_settings: DatabaseSettings) -> AsyncIterator[AsyncEngine]:
    """An async engine on the migrated test database (one per test: it lives on the test's loop)."""
    engine = create_async_engine(appdb_settings, poolclass=NullPool)
    _isolating(engine.sync_engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def appdb_async_connection(
    appdb_async_engine: AsyncEngine,
) -> AsyncIterator[AsyncConnection]:
    """An async connection whose outer transaction is rolled back after the test."""
    async with appdb_async_engine.connect() as connection:
        transaction = await connection.begin()
        try:
            yield connection
        finally:
            if transaction.is_active:
                await transaction.rollback()


@pytest.fixture
def appdb_async_connection_scope(
    appdb_async_connection: AsyncConnection,
) -> Callable[[], AbstractAsyncContextManager[AsyncConnection]]:
    """The async twin of ``appdb_connection_scope``, for `appdb.async_connection_scope`."""

    @asynccontextmanager
    async def scope() -> AsyncIterator[AsyncConnection]:
        async with appdb_async_connection.begin_nested():
            yield appdb_async_connection

    return scope


@pytest.fixture
def appdb_async_sessionmaker(
    appdb_async_connection: AsyncConnection,
) -> async_sessionmaker[AsyncSession]:
    """Async sessions joined to the test's transaction, configured as `AsyncSessionLocal`'s."""
    return async_sessionmaker(
        bind=appdb_async_connection,
        class_=AsyncSession,
        autoflush=False,
        expire_on_commit=False,
        join_transaction_mode="create_savepoint",
    )


@pytest.fixture
async def appdb_async_session(
    appdb_async_sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """The async twin of ``appdb_session``."""
    async with appdb_async_sessionmaker() as session:
        yield session


@pytest.fixture
def appdb_users(appdb_session: Session) -> UserFactory:
    """Insert users into ``appdb_session``: ``appdb_users.create()``, ``.telegram()``."""
    return UserFactory(appdb_session)


@pytest.fixture
def appdb_messages(appdb_session: Session) -> MessageFactory:
    """Insert messages into ``appdb_session``: ``appdb_messages.create(sender, recipient)``."""
    return MessageFactory(appdb_session)


@pytest.fixture
def appdb_async_users(appdb_async_session: AsyncSession) -> AsyncUserFactory:
    """Insert users into ``appdb_async_session``: ``await appdb_async_users.create()``."""
    return AsyncUserFactory(appdb_async_session)


@pytest.fixture
def appdb_async_messages(appdb_async_session: AsyncSession) -> AsyncMessageFactory:
    """Insert messages into ``appdb_async_session``."""
    return AsyncMessageFactory(appdb_async_session)
