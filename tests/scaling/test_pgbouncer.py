"""appdb behind PgBouncer in transaction mode: what ``DATABASE_POOLER=pgbouncer`` makes safe.

Every test runs a real PgBouncer (see `pgbouncer.py`) in front of the test server. The
negative tests show the failures the setting prevents: psycopg's prepared statements meeting
another client's on a shared server connection, and the ``options`` startup parameter that
PgBouncer refuses.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from appdb import (
    ConfigurationError,
    DatabaseSettings,
    DatabaseUnavailableError,
    StatementTimeoutError,
    aio,
    async_connection_scope,
    async_session_scope,
    create_async_engine,
    create_engine,
    migrate,
    session_scope,
)
from appdb.cli import main
from appdb.messages import inbox, mark_read, send_message, unread_count
from appdb.migrate.chains import appdb_chain, script_directory
from appdb.users import touch_telegram_user
from pgbouncer import PgBouncer

if TYPE_CHECKING:
    from conftest import PooledDatabase

THREADS = 8
TASKS = 8
ROUNDS = 15

# The head of appdb's chain, whatever revision that is now.
HEAD = script_directory(appdb_chain()).get_current_head()


def _name(database: PooledDatabase) -> str:
    """The test database's name (create_database always gives its URL one)."""
    name = database.direct.database
    assert name is not None
    return name


def _pooled(database: PooledDatabase, bouncer: PgBouncer, **fields: Any) -> DatabaseSettings:
    """Settings for `database` through `bouncer` (``pooler`` and the rest as keywords)."""
    return DatabaseSettings(
        url=bouncer.url(_name(database)),
        migration_url=database.direct,
        **{"pool_size": 2, "max_overflow": 2, **fields},
    )


def _pool_of(bouncer: PgBouncer, database: str) -> dict[str, Any]:
    (pool,) = [row for row in bouncer.show("POOLS") if row["database"] == database]
    return pool


def test_concurrent_sync_and_async_clients(  # noqa: PLR0915 - one scenario, told in order
    pooled_database: PooledDatabase, pgbouncer: PgBouncer
) -> None:
    """8 threads and 8 tasks run every kind of operation through 4 shared server connections."""
    settings = _pooled(
        pooled_database, pgbouncer, pooler="pgbouncer", pool_size=THREADS, max_overflow=0
    )
    assert [] != migrate.upgrade(settings=settings)  # through DATABASE_MIGRATION_URL
    engine = create_engine(settings)
    factory = sessionmaker(engine, class_=Session, autoflush=False)
    with session_scope(factory) as session:
        hub_id = touch_telegram_user(session, 1, first_name="Hub").id
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def client(number: int) -> None:
        start.wait()
        try:
            for round_ in range(ROUNDS):
                with session_scope(factory) as session:
                    user = touch_telegram_user(session, 100 + number, first_name=f"T{number}")
                    send_message(
                        session, sender_id=user.id, recipient_id=hub_id, content=f"{round_}"
                    )
                with session_scope(factory) as session:
                    page = inbox(session, hub_id, limit=5, unread_only=True)
                    mark_read(session, hub_id, message_ids=[message.id for message in page])
                    unread_count(session, hub_id)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    async def async_clients() -> None:
        async_engine = create_async_engine(settings)
        async_factory = async_sessionmaker(
            async_engine, class_=AsyncSession, autoflush=False, expire_on_commit=False
        )

        async def one(number: int) -> None:
            for round_ in range(ROUNDS):
                async with async_session_scope(async_factory) as session:
                    user = await aio.touch_telegram_user(session, 200 + number, first_name="A")
                    await aio.send_message(
                        session, sender_id=user.id, recipient_id=hub_id, content=f"{round_}"
                    )
                async with async_session_scope(async_factory) as session:
                    page = await aio.inbox(session, hub_id, limit=5, unread_only=True)
                    await aio.mark_read(session, hub_id, message_ids=[m.id for m in page])
                    await aio.unread_count(session, hub_id)

        try:
            await asyncio.gather(*(one(number) for number in range(TASKS)))
        finally:
            await async_engine.dispose()

    with ThreadPoolExecutor(THREADS + 1) as pool:
        futures = [pool.submit(client, number) for number in range(THREADS)]
        futures.append(pool.submit(asyncio.run, async_clients()))
        for future in futures:
            future.result()
    assert [] == errors
    with session_scope(factory) as session:
        total = session.execute(sa.text("SELECT count(*) FROM messages")).scalar_one()
        unread = unread_count(session, hub_id)
    assert (THREADS + TASKS) * ROUNDS == total
    assert unread < total  # the clients marked messages read as they went
    pool_row = _pool_of(pgbouncer, _name(pooled_database))
    servers = pool_row["sv_active"] + pool_row["sv_idle"] + pool_row["sv_used"]
    assert servers <= 4
    assert pool_row["cl_active"] + pool_row["cl_waiting"] > servers  # clients really shared servers
    engine.dispose()


def _count_unread_repeatedly(settings: DatabaseSettings, hub_id: int, times: int = 8) -> None:
    """One client runs the same query in `times` transactions (psycopg prepares it on the 5th)."""
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    factory = sessionmaker(engine, class_=Session)
    try:
        for _ in range(times):
            with session_scope(factory) as session:
                unread_count(session, hub_id)
    finally:
        engine.dispose()


@pytest.fixture
def single_server_connection(
    pooled_database: PooledDatabase, make_pgbouncer: Callable[..., PgBouncer]
) -> tuple[PgBouncer, int]:
    """A PgBouncer with one server connection per database, and a migrated database behind it."""
    bouncer = make_pgbouncer(pool_size=1)
    settings = _pooled(pooled_database, bouncer, pooler="pgbouncer")
    migrate.upgrade(settings=settings)
    with session_scope(sessionmaker(create_engine(settings), class_=Session)) as session:
        hub_id = touch_telegram_user(session, 1).id
    return bouncer, hub_id


def test_prepared_statements_collide_without_the_setting(
    pooled_database: PooledDatabase, single_server_connection: tuple[PgBouncer, int]
) -> None:
    """Without DATABASE_POOLER two clients prepare the same statement name on one server connection."""
    bouncer, hub_id = single_server_connection
    settings = _pooled(pooled_database, bouncer)
    _count_unread_repeatedly(settings, hub_id)
    with pytest.raises(sa.exc.ProgrammingError, match='prepared statement "_pg3_0" already exists'):
        _count_unread_repeatedly(settings, hub_id)


def test_no_prepared_statements_with_the_setting(
    pooled_database: PooledDatabase, single_server_connection: tuple[PgBouncer, int]
) -> None:
    """With DATABASE_POOLER=pgbouncer the same two clients share the server connection fine."""
    bouncer, hub_id = single_server_connection
    settings = _pooled(pooled_database, bouncer, pooler="pgbouncer")
    _count_unread_repeatedly(settings, hub_id)
    _count_unread_repeatedly(settings, hub_id)
    # Through the only server connection both clients used: nothing prepared on it.
    engine = create_engine(settings)
    with engine.connect() as connection:
        prepared = connection.execute(sa.text("SELECT count(*) FROM pg_prepared_statements"))
        assert 0 == prepared.scalar_one()
    engine.dispose()


def test_statement_timeout_without_the_setting_is_refused(
    pooled_database: PooledDatabase, pgbouncer: PgBouncer
) -> None:
    """PgBouncer refuses the startup ``options`` that carry statement_timeout on a direct connection."""
    engine = create_engine(_pooled(pooled_database, pgbouncer, statement_timeout=100))
    with pytest.raises(DatabaseUnavailableError, match="unsupported startup parameter: options"):
        engine.connect()
    engine.dispose()


def test_statement_timeout_is_set_per_transaction(
    pooled_database: PooledDatabase, single_server_connection: tuple[PgBouncer, int]
) -> None:
    """With the setting, statement_timeout holds in each transaction and leaks to no other client."""
    bouncer, _ = single_server_connection
    timed = create_engine(
        _pooled(pooled_database, bouncer, pooler="pgbouncer", statement_timeout=100)
    )
    plain = create_engine(_pooled(pooled_database, bouncer, pooler="pgbouncer"))
    try:
        with timed.connect() as connection:
            assert "100ms" == connection.exec_driver_sql("SHOW statement_timeout").scalar()
            with pytest.raises(StatementTimeoutError, match="statement timeout"):
                connection.exec_driver_sql("SELECT pg_sleep(2)")
        # The same (only) server connection, another client: the timeout did not outlive it.
        with plain.connect() as connection:
            assert "0" == connection.exec_driver_sql("SHOW statement_timeout").scalar()
    finally:
        timed.dispose()
        plain.dispose()


async def _async_statement_timeout(settings: DatabaseSettings) -> str:
    engine = create_async_engine(settings)
    try:
        async with engine.connect() as connection:
            return str((await connection.exec_driver_sql("SHOW statement_timeout")).scalar())
    finally:
        await engine.dispose()


def test_async_statement_timeout_is_set_per_transaction(
    pooled_database: PooledDatabase, pgbouncer: PgBouncer
) -> None:
    """The async engine sets the timeout per transaction too."""
    settings = _pooled(pooled_database, pgbouncer, pooler="pgbouncer", statement_timeout=250)
    assert "250ms" == asyncio.run(_async_statement_timeout(settings))


def test_migrate_cli_uses_the_migration_url(
    pooled_database: PooledDatabase,
    pgbouncer: PgBouncer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """appdb-migrate upgrades through DATABASE_MIGRATION_URL while DATABASE_URL is the pooler."""
    monkeypatch.setenv("DATABASE_URL", pgbouncer.url(_name(pooled_database)).render_as_string())
    monkeypatch.setenv("DATABASE_POOLER", "pgbouncer")
    monkeypatch.setenv("DATABASE_MIGRATION_URL", pooled_database.direct.render_as_string())
    assert 0 == main(["upgrade"])
    assert f"database now at {HEAD}" in capsys.readouterr().out
    monkeypatch.delenv("DATABASE_MIGRATION_URL")
    # Reading the revision needs no server session: it works through the pooler.
    assert 0 == main(["current", "--check"])


def test_migrate_cli_refuses_the_pooler_setting_without_a_migration_url(
    pooled_database: PooledDatabase,
    pgbouncer: PgBouncer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """DATABASE_POOLER=pgbouncer and no DATABASE_MIGRATION_URL: exit 2 before connecting."""
    monkeypatch.setenv("DATABASE_URL", pgbouncer.url(_name(pooled_database)).render_as_string())
    monkeypatch.setenv("DATABASE_POOLER", "pgbouncer")
    assert 2 == main(["upgrade"])
    error = capsys.readouterr().err
    assert error.startswith("appdb-migrate: error: DATABASE_POOLER=pgbouncer: DATABASE_URL leads")
    assert "set DATABASE_MIGRATION_URL to a direct connection" in error
    assert () == migrate.current(DatabaseSettings(url=pooled_database.direct))


@pytest.mark.parametrize(
    ("ini", "why"),
    [({}, "refused the startup options"), ({"ignore_startup_parameters": "options"}, "dropped")],
)
def test_migrate_detects_a_pooler_it_was_not_told_about(
    pooled_database: PooledDatabase,
    make_pgbouncer: Callable[..., PgBouncer],
    capsys: pytest.CaptureFixture[str],
    ini: dict[str, str],
    why: str,
) -> None:
    """--database-url pointing at PgBouncer is found out by the startup-options probe: exit 2."""
    bouncer = make_pgbouncer(**ini)
    assert 2 == main(["--database-url", str(bouncer.url(_name(pooled_database))), "upgrade"])
    error = capsys.readouterr().err
    assert "is not a direct connection to PostgreSQL" in error
    assert why in error
    assert () == migrate.current(DatabaseSettings(url=pooled_database.direct))


def test_pooler_setting_needs_postgresql() -> None:
    """DATABASE_POOLER is refused with a SQLite URL."""
    with pytest.raises(ConfigurationError, match="DATABASE_POOLER=pgbouncer needs a PostgreSQL"):
        DatabaseSettings(url="sqlite://", pooler="pgbouncer")


async def _two_clients_through_async_scopes(
    settings: DatabaseSettings, hub_id: int
) -> tuple[list[int], str]:
    """Two async engines take turns on PgBouncer's one server connection, in connection scopes."""
    engines = [create_async_engine(settings), create_async_engine(settings)]
    counts: list[int] = []
    try:
        for _ in range(6):
            for engine in engines:
                async with async_connection_scope(engine) as connection:
                    await aio.touch_telegram_user(connection, 2, first_name="Two", as_row=True)
                    counts.append(await aio.unread_count(connection, hub_id))
        with pytest.raises(StatementTimeoutError, match="statement timeout"):
            async with async_connection_scope(engines[0]) as connection:
                await connection.exec_driver_sql("SELECT pg_sleep(2)")
        async with async_connection_scope(engines[1]) as connection:
            # On asyncpg's connection itself: what the scope set, not SQLAlchemy's listener.
            driver: Any = (await connection.get_raw_connection()).driver_connection
            timeout = str(await driver.fetchval("SHOW statement_timeout"))
    finally:
        for engine in engines:
            await engine.dispose()
    return counts, timeout


def test_async_connection_scopes_share_a_server_connection(
    pooled_database: PooledDatabase, single_server_connection: tuple[PgBouncer, int]
) -> None:
    """Async scopes through PgBouncer: no prepared statement collides, SET LOCAL holds in each."""
    bouncer, hub_id = single_server_connection
    settings = _pooled(pooled_database, bouncer, pooler="pgbouncer", statement_timeout=250)
    counts, timeout = asyncio.run(_two_clients_through_async_scopes(settings, hub_id))
    assert ([0] * 12, "250ms") == (counts, timeout)
