"""create_engine / create_async_engine: pools, SQLite pragmas, PostgreSQL connection options."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from appdb import (
    DatabaseSettings,
    DatabaseUnavailableError,
    StatementTimeoutError,
    create_async_engine,
    create_engine,
    get_engine,
    reset_engines,
)
from appdb.engine import get_async_engine


def test_engine_does_not_connect_when_built() -> None:
    """Building an engine for an unreachable server succeeds; only use fails."""
    settings = DatabaseSettings(url="postgresql://u:pw@127.0.0.1:1/nowhere", connect_timeout=1)
    engine = create_engine(settings)
    assert 0 == engine.pool.checkedout()
    with pytest.raises(DatabaseUnavailableError, match=r"127\.0\.0\.1:1\b") as info:
        engine.connect()
    assert "pw" not in str(info.value).replace("appdb", "")


def test_pool_settings_applied() -> None:
    """pool_size, max_overflow, pool_timeout, pool_recycle and pre-ping reach the pool."""
    settings = DatabaseSettings(
        url="postgresql://h/d", pool_size=3, max_overflow=4, pool_timeout=7, pool_recycle=99
    )
    pool = create_engine(settings).pool
    assert isinstance(pool, sa.pool.QueuePool)
    assert (3, 4, 7, 99, True) == (
        pool.size(),
        pool._max_overflow,
        pool._timeout,
        pool._recycle,
        pool._pre_ping,
    )


def test_async_engine_uses_async_drivers() -> None:
    """One URL serves both: psycopg 3 async for PostgreSQL, aiosqlite for SQLite."""
    postgresql = create_async_engine(DatabaseSettings(url="postgres://h/d")).dialect
    sqlite = create_async_engine(DatabaseSettings(url="sqlite://")).dialect
    assert ("psycopg", True) == (postgresql.driver, postgresql.is_async)
    assert ("aiosqlite", True) == (sqlite.driver, sqlite.is_async)


def test_engine_repr_hides_password() -> None:
    """Engines print their URL without the password."""
    engine = create_engine(DatabaseSettings(url="postgresql://u:hunter2@h/d"))
    async_engine = create_async_engine(DatabaseSettings(url="postgresql://u:hunter2@h/d"))
    for text in (repr(engine), str(engine.url), repr(async_engine), repr(async_engine.sync_engine)):
        assert "hunter2" not in text


def test_default_engine_is_lazy_cached_and_resettable(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """get_engine builds one engine from get_settings and reset_engines forgets it."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'a.sqlite3'}")
    first = get_engine()
    assert first is get_engine()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'b.sqlite3'}")
    reset_engines()
    second = get_engine()
    assert second is not first
    assert str(tmp_path / "b.sqlite3") == second.url.database
    assert get_async_engine().url.database == second.url.database


def test_sqlite_enforces_foreign_keys_and_busy_timeout(tmp_path) -> None:
    """Every SQLite connection has foreign keys on and the configured busy timeout."""
    settings = DatabaseSettings(
        url=URL.create("sqlite", database=str(tmp_path / "f.db")), sqlite_busy_timeout=2.5
    )
    with create_engine(settings).connect() as connection:
        assert 1 == connection.exec_driver_sql("PRAGMA foreign_keys").scalar()
        assert 2500 == connection.exec_driver_sql("PRAGMA busy_timeout").scalar()


@pytest.mark.anyio
async def test_async_sqlite_enforces_foreign_keys(tmp_path) -> None:
    """Aiosqlite connections get the same pragma."""
    engine = create_async_engine(
        DatabaseSettings(url=URL.create("sqlite", database=str(tmp_path / "f.db")))
    )
    async with engine.connect() as connection:
        assert 1 == (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar()
    await engine.dispose()


@pytest.fixture
def pg_settings(database_url: URL, backend: str) -> DatabaseSettings:
    if backend != "postgresql":
        pytest.skip("PostgreSQL-only by nature")
    return DatabaseSettings(
        url=database_url, application_name="appdb-engine-test", statement_timeout=200
    )


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_postgresql_application_name_reaches_server(pg_settings: DatabaseSettings) -> None:
    """pg_stat_activity shows the configured application_name."""
    engine = create_engine(pg_settings)
    with engine.connect() as connection:
        name = connection.execute(
            sa.text("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        ).scalar()
    engine.dispose()
    assert "appdb-engine-test" == name


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_postgresql_statement_timeout_cancels_long_query(pg_settings: DatabaseSettings) -> None:
    """A pg_sleep longer than statement_timeout is cancelled; the connection is usable after."""
    engine = create_engine(pg_settings)
    with engine.connect() as connection:
        assert "200ms" == connection.exec_driver_sql("SHOW statement_timeout").scalar()
        with pytest.raises(StatementTimeoutError, match="statement timeout"):
            connection.exec_driver_sql("SELECT pg_sleep(2)")
        connection.rollback()
        assert 1 == connection.exec_driver_sql("SELECT 1").scalar()
    engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.anyio
async def test_postgresql_async_engine_has_same_options(pg_settings: DatabaseSettings) -> None:
    """The async engine applies application_name and statement_timeout too."""
    engine = create_async_engine(pg_settings)
    async with engine.connect() as connection:
        name = (await connection.exec_driver_sql("SHOW application_name")).scalar()
        timeout = (await connection.exec_driver_sql("SHOW statement_timeout")).scalar()
    await engine.dispose()
    assert ("appdb-engine-test", "200ms") == (name, timeout)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_postgresql_url_options_are_merged(database_url: URL, backend: str) -> None:
    """Options already in the URL survive next to statement_timeout."""
    url = database_url.update_query_dict({"options": "-c lock_timeout=1234"})
    engine = create_engine(DatabaseSettings(url=url, statement_timeout=4321))
    with engine.connect() as connection:
        assert "1234ms" == connection.exec_driver_sql("SHOW lock_timeout").scalar()
        assert "4321ms" == connection.exec_driver_sql("SHOW statement_timeout").scalar()
    engine.dispose()


def test_unopenable_sqlite_file_raises_database_unavailable(tmp_path) -> None:
    """SQLite's counterpart of an unreachable server: the error names the file."""
    path = tmp_path / "missing-directory" / "app.sqlite3"
    engine = create_engine(DatabaseSettings(url=URL.create("sqlite", database=str(path))))
    with pytest.raises(DatabaseUnavailableError, match="cannot connect") as info:
        engine.connect()
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, Exception)
