"""pytest plugin for services (``appdb[testing]``): a migrated database, isolated sessions.

Registered through the ``pytest11`` entry point, so a service's tests only request fixtures:

- ``appdb_database_url``: a database migrated once per test session through the real migration
  chain (appdb's revisions and every registered service's), dropped at the end. PostgreSQL when
  ``APPDB_TEST_DATABASE_URL`` names a server (an admin URL: a database is created on it), else
  PostgreSQL in Docker through testcontainers when Docker answers, else a SQLite file.
  ``APPDB_TEST_DATABASE_URL=sqlite`` asks for SQLite explicitly.
- ``appdb_session`` / ``appdb_async_session``: a session inside an outer transaction that is
  rolled back after the test; the code under test may commit (it releases a savepoint), and
  the next test still starts from the migrated, empty database.
- ``appdb_sessionmaker`` / ``appdb_async_sessionmaker``: factories of such sessions, for code
  that opens a session per request or per update.
- ``appdb_users`` / ``appdb_messages`` (and ``appdb_async_users`` / ``appdb_async_messages``):
  small factories that insert rows with sensible defaults.
- ``appdb_empty_database_url``: a fresh database that is not migrated, for migration tests.

`override_get_db` points FastAPI's `get_db` (or `get_async_db`) at a test session.
Nothing here runs unless a test requests an ``appdb_*`` fixture.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
    from sqlalchemy.orm import sessionmaker
    from sqlmodel import Session
    from sqlmodel.ext.asyncio.session import AsyncSession

    from appdb.models import Message, User
    from appdb.settings import DatabaseSettings

__all__ = [
    "DATABASE_URL_VARIABLE",
    "AsyncMessageFactory",
    "AsyncUserFactory",
    "MessageFactory",
    "UserFactory",
    "override_get_db",
]

DATABASE_URL_VARIABLE = "APPDB_TEST_DATABASE_URL"
"""An admin URL of a PostgreSQL server the tests may create databases on, or ``sqlite``."""


# --- where the test databases live -------------------------------------------------------------


class _Server:
    """Makes and drops test databases: on a PostgreSQL server, or as SQLite files."""

    def __init__(self, admin_url: URL | None, directory: Path) -> None:
        self.admin_url = admin_url
        self.directory = directory

    def describe(self) -> str:
        if self.admin_url is None:
            return f"SQLite files in {self.directory}"
        return f"PostgreSQL at {self.admin_url.host}:{self.admin_url.port or 5432}"

    def create(self) -> URL:
        from sqlalchemy.engine import URL  # noqa: PLC0415 - the plugin imports cheaply

        name = f"appdb_test_{uuid.uuid4().hex[:12]}"
        if self.admin_url is None:
            return URL.create("sqlite", database=str(self.directory / f"{name}.sqlite3"))
        from sqlalchemy.exc import OperationalError  # noqa: PLC0415

        engine = _admin_engine(self.admin_url)
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        except OperationalError as exc:
            # One line, no traceback: pytest's would show the driver's arguments, password too.
            reason = " ".join(str(exc.orig).split())
            if self.admin_url.password:
                reason = reason.replace(str(self.admin_url.password), "***")
            pytest.fail(
                f"{DATABASE_URL_VARIABLE}: cannot create a test database on "
                f"{self.describe()}: {reason}",
                pytrace=False,
            )
        finally:
            engine.dispose()
        return self.admin_url.set(database=name)

    def drop(self, url: URL) -> None:
        if self.admin_url is None:
            Path(str(url.database)).unlink(missing_ok=True)
            return
        engine = _admin_engine(self.admin_url)
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
        finally:
            engine.dispose()


def _admin_engine(admin_url: URL) -> Engine:
    import sqlalchemy as sa  # noqa: PLC0415

    return sa.create_engine(
        admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool, hide_parameters=True
    )


def _docker_postgresql() -> Iterator[URL] | None:
    """PostgreSQL in Docker through testcontainers, when it is installed and Docker answers."""
    try:
        import docker  # type: ignore[import-untyped]  # noqa: PLC0415 - optional
        from testcontainers.postgres import PostgresContainer  # noqa: PLC0415

        docker.from_env().ping()
    except Exception:  # noqa: BLE001 - any failure means "no Docker here"
        return None

    def run() -> Iterator[URL]:
        from sqlalchemy.engine import make_url  # noqa: PLC0415

        with PostgresContainer("postgres:16-alpine", driver="psycopg") as container:
            yield make_url(container.get_connection_url()).set(database="postgres")

    return run()


@pytest.fixture(scope="session")
def _appdb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Server]:
    from appdb.settings import DatabaseSettings  # noqa: PLC0415

    directory = tmp_path_factory.mktemp("appdb")
    raw = os.environ.get(DATABASE_URL_VARIABLE, "").strip()
    if raw and not raw.startswith("sqlite"):
        # Normalised like DATABASE_URL (postgres:// works); a bad value is a ConfigurationError.
        yield _Server(DatabaseSettings(url=raw).database_url, directory)
        return
    container = None if raw else _docker_postgresql()
    if container is None:
        yield _Server(None, directory)
        return
    for url in container:
        yield _Server(url, directory)


def _settings(url: URL) -> DatabaseSettings:
    from appdb.settings import DatabaseSettings  # noqa: PLC0415

    return DatabaseSettings(url=url, pool_size=2, max_overflow=2, application_name="appdb-tests")


def _isolating(engine: Engine) -> Engine:
    """Let pysqlite run SAVEPOINTs: SQLAlchemy emits BEGIN itself (its documented recipe)."""
    from sqlalchemy import event  # noqa: PLC0415

    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN")

    return engine


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def appdb_database_url(_appdb_server: _Server) -> Iterator[URL]:
    """The URL of a database migrated to every head (appdb's and services'), once per session."""
    from appdb import migrate  # noqa: PLC0415 - Alembic loads only when a test needs it

    url = _appdb_server.create()
    try:
        migrate.upgrade(settings=_settings(url))
        yield url
    finally:
        _appdb_server.drop(url)


@pytest.fixture
def appdb_empty_database_url(_appdb_server: _Server) -> Iterator[URL]:
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
    from appdb.engine import create_engine  # noqa: PLC0415

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
def appdb_sessionmaker(appdb_connection: Connection) -> sessionmaker[Session]:
    """Sessions joined to the test's transaction: their commits release savepoints only."""
    from sqlalchemy.orm import sessionmaker  # noqa: PLC0415
    from sqlmodel import Session  # noqa: PLC0415

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
    from sqlalchemy.pool import NullPool  # noqa: PLC0415

    from appdb.engine import create_async_engine  # noqa: PLC0415

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
def appdb_async_sessionmaker(
    appdb_async_connection: AsyncConnection,
) -> async_sessionmaker[AsyncSession]:
    """Async sessions joined to the test's transaction, configured as `AsyncSessionLocal`'s."""
    from sqlalchemy.ext.asyncio import async_sessionmaker  # noqa: PLC0415
    from sqlmodel.ext.asyncio.session import AsyncSession  # noqa: PLC0415

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


def pytest_report_header() -> str | None:
    """Say where appdb's test databases come from, so a SQLite-only run is never a surprise."""
    raw = os.environ.get(DATABASE_URL_VARIABLE, "").strip()
    if not raw:
        return f"appdb: {DATABASE_URL_VARIABLE} unset: Docker PostgreSQL if it answers, else SQLite"
    if raw.startswith("sqlite"):
        return "appdb: test databases on SQLite"
    from appdb.settings import render_url  # noqa: PLC0415

    return f"appdb: test databases on {render_url(raw)}"


# --- factories -----------------------------------------------------------------------------------

_sequence = itertools.count(1)


def _user(fields: dict[str, Any], *, telegram: bool) -> User:
    from appdb._passwords import hash_password  # noqa: PLC0415
    from appdb.models import User  # noqa: PLC0415

    n = next(_sequence)
    password = fields.pop("password", None)
    if password is not None:
        fields["hashed_password"] = hash_password(password)
    if telegram:
        defaults: dict[str, Any] = {"telegram_user_id": 7_000_000_000 + n, "first_name": f"Tg{n}"}
    else:
        defaults = {"username": f"user{n}", "email": f"user{n}@example.com"}
    return User(**(defaults | fields))


def _message(sender: User | int, recipient: User | int, fields: dict[str, Any]) -> Message:
    from appdb.models import Message  # noqa: PLC0415

    def key(user: User | int) -> int:
        if isinstance(user, int):
            return user
        if user.id is None:
            msg = "the user has no id yet: flush it first"
            raise ValueError(msg)
        return user.id

    defaults = {"content": f"message {next(_sequence)}"}
    return Message(sender_id=key(sender), recipient_id=key(recipient), **(defaults | fields))


class UserFactory:
    """Insert users with unique defaults; hashing happens only when a password is given."""

    def __init__(self, session: Session) -> None:
        """Insert into `session` (flushed, not committed)."""
        self.session = session

    def create(self, **fields: Any) -> User:
        """Insert a web account (``username`` ``userN``, ``email`` ``userN@example.com``).

        Args:
            **fields: `User` fields overriding the defaults; ``password`` is hashed.

        Returns:
            The flushed user, with its id.
        """
        return self._add(_user(fields, telegram=False))

    def telegram(self, **fields: Any) -> User:
        """Insert a Telegram user (a unique ``telegram_user_id``, ``first_name`` ``TgN``).

        Args:
            **fields: `User` fields overriding the defaults.

        Returns:
            The flushed user, with its id.
        """
        return self._add(_user(fields, telegram=True))

    def _add(self, user: User) -> User:
        self.session.add(user)
        self.session.flush()
        return user


class MessageFactory:
    """Insert messages between users."""

    def __init__(self, session: Session) -> None:
        """Insert into `session` (flushed, not committed)."""
        self.session = session

    def create(self, sender: User | int, recipient: User | int, **fields: Any) -> Message:
        """Insert a message from `sender` to `recipient` (``content`` ``message N`` by default).

        Args:
            sender: The sending user or its id.
            recipient: The receiving user or its id.
            **fields: `Message` fields overriding the defaults.

        Returns:
            The flushed message, with its id.
        """
        message = _message(sender, recipient, fields)
        self.session.add(message)
        self.session.flush()
        return message


class AsyncUserFactory:
    """The async twin of `UserFactory`."""

    def __init__(self, session: AsyncSession) -> None:
        """Insert into `session` (flushed, not committed)."""
        self.session = session

    async def create(self, **fields: Any) -> User:
        """Insert a web account; see `UserFactory.create`.

        Args:
            **fields: `User` fields overriding the defaults; ``password`` is hashed.

        Returns:
            The flushed user, with its id.
        """
        return await self._add(_user(fields, telegram=False))

    async def telegram(self, **fields: Any) -> User:
        """Insert a Telegram user; see `UserFactory.telegram`.

        Args:
            **fields: `User` fields overriding the defaults.

        Returns:
            The flushed user, with its id.
        """
        return await self._add(_user(fields, telegram=True))

    async def _add(self, user: User) -> User:
        self.session.add(user)
        await self.session.flush()
        return user


class AsyncMessageFactory:
    """The async twin of `MessageFactory`."""

    def __init__(self, session: AsyncSession) -> None:
        """Insert into `session` (flushed, not committed)."""
        self.session = session

    async def create(self, sender: User | int, recipient: User | int, **fields: Any) -> Message:
        """Insert a message; see `MessageFactory.create`.

        Args:
            sender: The sending user or its id.
            recipient: The receiving user or its id.
            **fields: `Message` fields overriding the defaults.

        Returns:
            The flushed message, with its id.
        """
        message = _message(sender, recipient, fields)
        self.session.add(message)
        await self.session.flush()
        return message


# --- FastAPI -------------------------------------------------------------------------------------


@contextlib.contextmanager
def override_get_db(app: Any, session: Session | AsyncSession) -> Iterator[None]:
    """Serve `session` to every route that depends on `get_db` (or `get_async_db` if async).

    The route's ``db.commit()`` releases a savepoint of the test's transaction, so what it
    writes is visible to the test and gone after it. The previous override is restored.

    Args:
        app: The FastAPI application (anything with ``dependency_overrides``).
        session: ``appdb_session`` or ``appdb_async_session``.

    Yields:
        Nothing; the override holds inside the ``with`` block.
    """
    from sqlmodel.ext.asyncio.session import AsyncSession  # noqa: PLC0415

    from appdb.dependencies import get_async_db, get_db  # noqa: PLC0415

    if isinstance(session, AsyncSession):
        asynchronous = session

        async def _async_db() -> AsyncIterator[AsyncSession]:
            yield asynchronous

        dependency: Any = get_async_db
        override: Any = _async_db
    else:
        synchronous = session

        def _db() -> Iterator[Session]:
            yield synchronous

        dependency, override = get_db, _db
    overrides: dict[Any, Any] = app.dependency_overrides
    missing = object()
    previous = overrides.get(dependency, missing)
    overrides[dependency] = override
    try:
        yield
    finally:
        if previous is missing:
            overrides.pop(dependency, None)
        else:
            overrides[dependency] = previous
