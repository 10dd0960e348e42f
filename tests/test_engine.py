"""create_engine / create_async_engine: pools, SQLite pragmas, PostgreSQL connection options."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast
from urllib.parse import quote, quote_plus

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

import appdb
from appdb import (
    ConfigurationError,
    ConnectionLostError,
    DatabaseSettings,
    DatabaseUnavailableError,
    PoolTimeoutError,
    StatementTimeoutError,
    create_async_engine,
    create_engine,
    get_engine,
    reset_engines,
)
from appdb._asyncpg import transport_socket
from appdb._ping import InspectingPing
from appdb.engine import get_async_engine

# '@', '%' and ':' need percent-encoding in a URL; long and unique, so a hit is never chance.
SECRET_PASSWORD = "Sx9@Q%w:pLm-Kr-engine-7f3a"
SECRET_FORMS = (SECRET_PASSWORD, quote(SECRET_PASSWORD, safe=""), quote_plus(SECRET_PASSWORD))
SECRET_URL = f"postgresql://u:{quote(SECRET_PASSWORD, safe='')}@127.0.0.1:1/nowhere"


def _assert_secret_absent(text: str) -> None:
    for form in SECRET_FORMS:
        assert form not in text


def test_engine_does_not_connect_when_built() -> None:
    """Building an engine for an unreachable server succeeds; only use fails, without the password."""
    settings = DatabaseSettings(url=SECRET_URL, connect_timeout=1)
    assert SECRET_PASSWORD == settings.database_url.password
    engine = create_engine(settings)
    assert 0 == cast("sa.QueuePool", engine.pool).checkedout()
    with pytest.raises(DatabaseUnavailableError, match=r"127\.0\.0\.1:1\b") as info:
        engine.connect()
    _assert_secret_absent(str(info.value))
    _assert_secret_absent("".join(traceback.format_exception(info.value)))


def test_async_engine_uses_async_drivers() -> None:
    """One URL serves both: asyncpg for PostgreSQL, aiosqlite for SQLite."""
    postgresql = create_async_engine(DatabaseSettings(url="postgres://h/d")).dialect
    sqlite = create_async_engine(DatabaseSettings(url="sqlite://")).dialect
    assert ("asyncpg", True) == (postgresql.driver, postgresql.is_async)
    assert ("aiosqlite", True) == (sqlite.driver, sqlite.is_async)


def test_engine_repr_hides_password() -> None:
    """Engines print their URL without the password, in any of its spellings."""
    engine = create_engine(DatabaseSettings(url=SECRET_URL))
    async_engine = create_async_engine(DatabaseSettings(url=SECRET_URL))
    texts = (repr(engine), str(engine.url), str(async_engine.url), repr(async_engine.sync_engine))
    assert all("u:***@127.0.0.1:1" in text for text in texts)
    for text in (*texts, repr(async_engine)):
        _assert_secret_absent(text)


def test_default_engine_is_lazy_cached_and_resettable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
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


def test_default_engines_are_built_once_under_concurrent_first_use(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Threads that ask for a default engine at the same moment all get the same one."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'c.sqlite3'}")
    barrier = threading.Barrier(8)

    def first_use(_: int) -> tuple[sa.Engine, object]:
        barrier.wait()
        return get_engine(), get_async_engine()

    with ThreadPoolExecutor(8) as pool:
        engines = list(pool.map(first_use, range(8)))
    assert 1 == len({id(engine) for engine, _ in engines})
    assert 1 == len({id(async_engine) for _, async_engine in engines})


def test_sqlite_enforces_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    """Every SQLite connection has foreign keys on and the configured busy timeout."""
    settings = DatabaseSettings(
        url=URL.create("sqlite", database=str(tmp_path / "f.db")), sqlite_busy_timeout=2.5
    )
    with create_engine(settings).connect() as connection:
        assert 1 == connection.exec_driver_sql("PRAGMA foreign_keys").scalar()
        assert 2500 == connection.exec_driver_sql("PRAGMA busy_timeout").scalar()


@pytest.mark.anyio
async def test_async_sqlite_enforces_foreign_keys(tmp_path: Path) -> None:
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


def _backend_pid(connection: sa.Connection) -> int:
    return int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_pool_gives_the_configured_size_then_times_out(pg_settings: DatabaseSettings) -> None:
    """pool_size + max_overflow connections are served at once; one more waits pool_timeout."""
    settings = pg_settings.model_copy(
        update={"pool_size": 1, "max_overflow": 1, "pool_timeout": 0.3}
    )
    engine = create_engine(settings)
    with engine.connect() as first, engine.connect() as second:
        assert _backend_pid(first) != _backend_pid(second)
        started = time.monotonic()
        with pytest.raises(PoolTimeoutError, match=r"within 0\.3s"):
            engine.connect()
        assert 0.25 <= time.monotonic() - started < 10
    assert (
        1 == cast("sa.QueuePool", engine.pool).checkedin()
    )  # the overflow connection was closed, the pooled one kept
    engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_pool_recycles_old_connections(pg_settings: DatabaseSettings) -> None:
    """A pooled connection older than pool_recycle is replaced on checkout, a younger one reused."""
    engine = create_engine(pg_settings.model_copy(update={"pool_size": 1, "pool_recycle": 1}))
    with engine.connect() as connection:
        first = _backend_pid(connection)
    with engine.connect() as connection:
        assert first == _backend_pid(connection)
    time.sleep(1.2)
    with engine.connect() as connection:
        assert first != _backend_pid(connection)
    engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_postgresql_application_name_reaches_server(pg_settings: DatabaseSettings) -> None:
    """pg_stat_activity shows the configured application_name."""
    engine = create_engine(pg_settings)
    with engine.connect() as connection:
        name = connection.execute(
            sa.text("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        ).scalar()
    engine.dispose()
    assert f"appdb-engine-test appdb/{appdb.__version__}" == name


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
    assert (f"appdb-engine-test appdb/{appdb.__version__}", "200ms") == (name, timeout)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_postgresql_url_options_are_merged(database_url: URL, backend: str) -> None:
    """Options already in the URL survive next to statement_timeout."""
    url = database_url.update_query_dict({"options": "-c lock_timeout=1234"})
    engine = create_engine(DatabaseSettings(url=url, statement_timeout=4321))
    with engine.connect() as connection:
        assert "1234ms" == connection.exec_driver_sql("SHOW lock_timeout").scalar()
        assert "4321ms" == connection.exec_driver_sql("SHOW statement_timeout").scalar()
    engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.anyio
async def test_async_engine_reads_the_urls_libpq_parameters(database_url: URL) -> None:
    """The async engine passes what libpq would get: options, sslmode, target_session_attrs."""
    url = database_url.update_query_dict(
        {
            "options": "-c lock_timeout=1234",
            "sslmode": "disable",
            "target_session_attrs": "read-write",
            "connect_timeout": "3",
            "keepalives": "1",
        }
    )
    engine = create_async_engine(DatabaseSettings(url=url, statement_timeout=4321))
    async with engine.connect() as connection:
        shown = [
            (await connection.exec_driver_sql(f"SHOW {name}")).scalar()
            for name in ("lock_timeout", "statement_timeout")
        ]
        ssl = (
            await connection.exec_driver_sql(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            )
        ).scalar()
    await engine.dispose()
    assert (["1234ms", "4321ms"], False) == (shown, ssl)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.anyio
async def test_async_engine_sets_keepalives_and_tcp_user_timeout_on_its_socket(
    database_url: URL,
) -> None:
    """The keepalives and tcp_user_timeout libpq gets, as options of asyncpg's socket."""
    engine = create_async_engine(
        DatabaseSettings(
            url=database_url,
            keepalives_idle=7,
            keepalives_interval=4,
            keepalives_count=5,
            tcp_user_timeout=6000,
        )
    )
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        sock = transport_socket(raw.driver_connection)
        assert sock is not None
        options = [
            sock.getsockopt(level, name)
            for level, name in (
                (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                (socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
            )
        ]
    await engine.dispose()
    assert [1, 7, 4, 5, 6000] == options


@pytest.mark.parametrize("parameter", ["channel_binding=require", "gssencmode=disable"])
def test_async_engine_refuses_libpq_parameters_asyncpg_lacks(parameter: str) -> None:
    """A libpq-only parameter is a ConfigurationError naming it, not a server's refusal later."""
    url = f"postgresql://u:{quote(SECRET_PASSWORD, safe='')}@h/d?{parameter}"
    with pytest.raises(ConfigurationError, match=parameter.partition("=")[0]) as info:
        create_async_engine(DatabaseSettings(url=url))
    _assert_secret_absent(str(info.value))
    create_engine(DatabaseSettings(url=url)).dispose()  # psycopg takes it


def test_unopenable_sqlite_file_raises_database_unavailable(tmp_path: Path) -> None:
    """SQLite's counterpart of an unreachable server: the error names the file."""
    path = tmp_path / "missing-directory" / "app.sqlite3"
    engine = create_engine(DatabaseSettings(url=URL.create("sqlite", database=str(path))))
    with pytest.raises(DatabaseUnavailableError, match="cannot connect") as info:
        engine.connect()
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, Exception)


READ_ONLY = "SET TRANSACTION READ ONLY"


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_write_on_a_read_only_server_discards_the_connection(
    pg_settings: DatabaseSettings,
) -> None:
    """A write refused as read-only (a demoted node) is DatabaseUnavailableError; then reconnect."""
    engine = create_engine(pg_settings)
    with engine.connect() as connection:
        connection.exec_driver_sql(READ_ONLY)
        with pytest.raises(DatabaseUnavailableError, match=r"is read-only .*retry it") as caught:
            connection.exec_driver_sql("CREATE TEMP TABLE t (x int)")
        assert not isinstance(caught.value, ConnectionLostError)
        assert connection.invalidated
    with engine.connect() as connection:
        assert "off" == connection.exec_driver_sql("SHOW transaction_read_only").scalar()
    engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.anyio
async def test_async_write_on_a_read_only_server_discards_the_connection(
    pg_settings: DatabaseSettings,
) -> None:
    """The async engine does the same."""
    engine = create_async_engine(pg_settings)
    async with engine.connect() as connection:
        await connection.exec_driver_sql(READ_ONLY)
        with pytest.raises(DatabaseUnavailableError, match="is read-only"):
            await connection.exec_driver_sql("CREATE TEMP TABLE t (x int)")
        assert connection.invalidated
    async with engine.connect() as connection:
        result = await connection.exec_driver_sql("SHOW transaction_read_only")
        assert "off" == result.scalar()
    await engine.dispose()


def _count_server_pings(engine: sa.Engine) -> list[object]:
    """Record every ``SELECT 1`` the pre-ping sends (it bypasses SQLAlchemy's events)."""
    sent: list[object] = []
    ping = engine.dialect.do_ping
    assert isinstance(ping, InspectingPing)
    server_ping = ping.server_ping

    def counting(dbapi_connection: object) -> bool:
        sent.append(dbapi_connection)
        return server_ping(dbapi_connection)

    ping.server_ping = counting
    return sent


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_pre_ping_of_a_healthy_idle_connection_sends_nothing(
    pg_settings: DatabaseSettings,
) -> None:
    """Checking out an idle pooled connection costs no round trip; the pool still reuses it."""
    engine = create_engine(pg_settings.model_copy(update={"pool_size": 1, "pool_pre_ping": True}))
    sent = _count_server_pings(engine)
    with engine.connect() as connection:
        first = _backend_pid(connection)
    for _ in range(3):
        with engine.connect() as connection:
            assert first == _backend_pid(connection)
    assert sent == []
    engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.anyio
async def test_async_pre_ping_of_a_healthy_idle_connection_sends_nothing(
    pg_settings: DatabaseSettings,
) -> None:
    """The same on asyncpg's connection: no round trip, the same connection again."""
    engine = create_async_engine(
        pg_settings.model_copy(update={"pool_size": 1, "pool_pre_ping": True})
    )
    sent = _count_server_pings(engine.sync_engine)
    pids = []
    for _ in range(4):
        async with engine.connect() as connection:
            pids.append((await connection.exec_driver_sql("SELECT pg_backend_pid()")).scalar())
    await engine.dispose()
    assert ([], 1) == (sent, len(set(pids)))


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_pre_ping_replaces_a_terminated_connection(pg_settings: DatabaseSettings) -> None:
    """A pooled connection the server terminated is pinged, discarded and replaced on checkout."""
    engine = create_engine(pg_settings.model_copy(update={"pool_size": 1, "pool_pre_ping": True}))
    sent = _count_server_pings(engine)
    with engine.connect() as connection:
        first = _backend_pid(connection)
    admin = sa.create_engine(pg_settings.database_url, poolclass=sa.pool.NullPool)
    with admin.connect() as connection:
        connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    admin.dispose()
    time.sleep(0.2)  # the server's goodbye reaches the socket
    with engine.connect() as connection:
        assert first != _backend_pid(connection)
    assert len(sent) == 1  # the real ping ran once, for the connection whose socket spoke
    engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.anyio
async def test_async_pre_ping_replaces_a_terminated_connection(
    pg_settings: DatabaseSettings,
) -> None:
    """The async engine's pre-ping also sees a terminated connection and replaces it."""
    engine = create_async_engine(
        pg_settings.model_copy(update={"pool_size": 1, "pool_pre_ping": True})
    )
    async with engine.connect() as connection:
        first = (await connection.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one()
    admin = sa.create_engine(pg_settings.database_url, poolclass=sa.pool.NullPool)
    with admin.connect() as connection:
        connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    admin.dispose()
    await asyncio.sleep(0.2)  # the server's goodbye reaches the socket
    async with engine.connect() as connection:
        replaced = (await connection.exec_driver_sql("SELECT pg_backend_pid()")).scalar_one()
    assert replaced != first
    await engine.dispose()
