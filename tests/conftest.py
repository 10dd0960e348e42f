"""Fixtures: a fresh database per test on SQLite and on PostgreSQL, and a clean appdb state."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from appdb import DatabaseSettings, create_async_engine, create_engine, migrate, reset_engines
from appdb.session import AsyncSessionLocal, SessionLocal
from appdb.testing.servers import docker_postgresql  # the plugin's Docker fallback, shared
from pgserver import PostgresServer, create_database, drop_database, find_bindir, unavailable
from venvs import new_venv

BACKENDS = ["sqlite", "postgresql"]
ADMIN_URL_VARIABLE = "APPDB_TEST_DATABASE_URL"


@pytest.fixture(scope="session")
def postgresql_admin_url() -> Iterator[URL]:
    """An admin URL of a PostgreSQL server on which tests may create and drop databases."""
    raw = os.environ.get(ADMIN_URL_VARIABLE)
    if raw:
        url = DatabaseSettings(url=raw).database_url
        engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
        try:
            with engine.connect():
                pass
        except sa.exc.OperationalError as exc:
            pytest.fail(
                f"{ADMIN_URL_VARIABLE} is set but PostgreSQL is unreachable: "
                f"{type(exc.orig).__name__} at {url.host}:{url.port}"
            )
        finally:
            engine.dispose()
        yield url
        return
    container = docker_postgresql()
    if container is not None:
        yield from container
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must test PostgreSQL: set {ADMIN_URL_VARIABLE}")
    pytest.skip(f"PostgreSQL tests skipped: set {ADMIN_URL_VARIABLE} or start Docker")


@pytest.fixture(scope="session")
def postgresql_bindir() -> Path:
    """The PostgreSQL server binaries that fault tests run their own servers with."""
    bindir = find_bindir()
    if bindir is None:
        unavailable("fault", "no PostgreSQL server binaries (initdb, pg_ctl): set APPDB_PG_BINDIR")
    return bindir


@pytest.fixture
def make_postgres_server(postgresql_bindir: Path) -> Iterator[Callable[..., PostgresServer]]:
    """Start throwaway PostgreSQL servers (``postgresql.conf`` settings as keywords); all destroyed after the test."""
    servers: list[PostgresServer] = []

    def make(**conf: str | int) -> PostgresServer:
        server = PostgresServer.init(postgresql_bindir, **conf)
        servers.append(server)
        return server.start()

    yield make
    for server in reversed(servers):
        server.destroy()


@pytest.fixture
def postgres_server(make_postgres_server: Callable[..., PostgresServer]) -> PostgresServer:
    """A running throwaway PostgreSQL server that the test may restart, crash or stop."""
    return make_postgres_server()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test: every model and session test runs on both."""
    return str(request.param)


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file that appdb's migrations brought to head, once per session."""
    path = tmp_path_factory.mktemp("template") / "migrated.sqlite3"
    migrate.upgrade("head", settings=DatabaseSettings(url=URL.create("sqlite", database=str(path))))
    return path


@pytest.fixture(scope="session")
def migrated_postgresql_template(postgresql_admin_url: URL) -> Iterator[str]:
    """The name of a PostgreSQL database migrated to head, once per session: a template."""
    url = create_database(postgresql_admin_url, prefix="appdb_template")
    try:
        migrate.upgrade("head", settings=DatabaseSettings(url=url, pool_size=1))
        reset_engines()
        yield str(url.database)
    finally:
        drop_database(postgresql_admin_url, url)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[URL]:
    """The URL of a fresh database that is removed after the test.

    Empty, unless the test uses `engine`: then it is a copy of one that appdb's migrations
    built (not `create_all`), so every model test also runs on the schema users get.
    """
    migrated = "engine" in request.fixturenames
    if backend == "sqlite":
        path = tmp_path / "test.sqlite3"
        if migrated:
            template: Path = request.getfixturevalue("migrated_sqlite_template")
            with sqlite3.connect(template) as source, sqlite3.connect(path) as target:
                source.backup(target)
        yield URL.create("sqlite", database=str(path))
        return
    admin_url: URL = request.getfixturevalue("postgresql_admin_url")
    template_name = request.getfixturevalue("migrated_postgresql_template") if migrated else None
    url = create_database(admin_url, template=template_name)
    try:
        yield url
    finally:
        drop_database(admin_url, url)


@pytest.fixture
def settings(database_url: URL) -> DatabaseSettings:
    """Settings for the fresh database, with small pools."""
    return DatabaseSettings(
        url=database_url, pool_size=2, max_overflow=2, application_name="appdb-tests"
    )


@pytest.fixture
def engine(settings: DatabaseSettings) -> Iterator[sa.Engine]:
    """An engine on the fresh database, which appdb's migrations brought to head."""
    engine = create_engine(settings)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: sa.Engine) -> Iterator[Session]:
    """A session on the fresh database."""
    with Session(engine) as session:
        yield session


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio, as FastAPI and aiogram do."""
    return "asyncio"


@pytest.fixture(autouse=True)
def _clean_appdb_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Each test starts with no DATABASE_* variables, no .env, no cached settings or engines."""
    for name in list(os.environ):
        if name.startswith("DATABASE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    reset_engines()
    SessionLocal.configure(bind=None)
    AsyncSessionLocal.configure(bind=None)
    yield
    reset_engines()
    SessionLocal.configure(bind=None)
    AsyncSessionLocal.configure(bind=None)


REPO_ROOT = Path(__file__).resolve().parent.parent


class InstalledWheel(NamedTuple):
    """A built wheel and the bin directory of a fresh venv it is installed in."""

    wheel: Path
    bin: Path


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory: pytest.TempPathFactory) -> InstalledWheel:
    """Build appdb's wheel (or take the one ``$APPDB_DIST`` holds) and install it in a fresh venv.

    This is what users install: nothing from the source tree is importable from there.
    """
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    root = tmp_path_factory.mktemp("wheel")
    # .ci/run builds the sdist and wheel once for every test and session that installs them.
    dist = Path(os.environ.get("APPDB_DIST") or root / "dist")
    if not list(dist.glob("appdb-*.whl")):
        subprocess.run(
            [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO_ROOT)],
            check=True,
            capture_output=True,
        )
    (wheel,) = dist.glob("appdb-*.whl")
    bin_dir = new_venv(root / "venv")
    subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", f"{wheel}[aiosqlite]"],
        check=True,
        capture_output=True,
    )
    return InstalledWheel(wheel, bin_dir)


@contextmanager
def recorded_statements(engine: sa.Engine) -> Iterator[list[str]]:
    """Collect the SQL statements an engine sends (the driver's own BEGIN is not one).

    They are taken at the dialect's driver calls, which SQLAlchemy's execution and appdb's
    direct execution of the hot statements (`appdb._direct`) both go through; an event
    listener would see only the former, and would make appdb fall back to it.
    """
    sent: list[str] = []
    dialect: Any = engine.dialect
    names = ("do_execute", "do_execute_no_params", "do_executemany")
    originals = {name: dialect.__dict__.get(name) for name in names}

    def recording(name: str) -> Callable[..., object]:
        call = getattr(dialect, name)

        def record(cursor: object, statement: str, *rest: object) -> object:
            sent.append(statement)
            return call(cursor, statement, *rest)

        return record

    for name in names:
        setattr(dialect, name, recording(name))
    try:
        yield sent
    finally:
        for name, original in originals.items():
            if original is None:
                delattr(dialect, name)
            else:
                setattr(dialect, name, original)


@pytest.fixture
def statements(engine: sa.Engine) -> Iterator[list[str]]:
    """The SQL statements `engine` sends during the test."""
    with engine.connect():  # the dialect's first-connect queries are no part of the test
        pass
    with recorded_statements(engine) as sent:
        yield sent


@pytest.fixture
async def async_engine(settings: DatabaseSettings, engine: sa.Engine) -> AsyncIterator[AsyncEngine]:
    """An async engine on the fresh database, whose tables `engine` created."""
    async_engine = create_async_engine(settings)
    yield async_engine
    await async_engine.dispose()


@pytest.fixture
async def async_statements(async_engine: AsyncEngine) -> AsyncIterator[list[str]]:
    """The SQL statements `async_engine` sends during the test."""
    async with async_engine.connect():  # the dialect's first-connect queries are not counted
        pass
    with recorded_statements(async_engine.sync_engine) as sent:
        yield sent


@pytest.fixture
async def async_session(async_engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """An async session on the fresh database, configured as `AsyncSessionLocal` makes them."""
    async with AsyncSession(async_engine, autoflush=False, expire_on_commit=False) as session:
        yield session
