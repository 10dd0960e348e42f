"""The bundled migrations: pytest-alembic's checks, transactional failure, locks, on both backends."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from pytest_alembic.tests import (
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from pytest_alembic.tests.experimental import test_downgrade_leaves_no_trace
from sqlalchemy.engine import URL

from appdb import DatabaseSettings, create_engine, metadata, migrate
from appdb.compat import CONTRACT_TABLE
from appdb.exceptions import (
    DatabaseUnavailableError,
    DDLLockTimeoutError,
    MigrationError,
    MigrationLockTimeoutError,
    SchemaOutOfDateError,
    StatementTimeoutError,
)
from appdb.migrate.chains import appdb_chain, script_directory
from appdb.migrate.errors import translated_errors
from appdb.migrate.lock import LOCK_KEY

__all__ = [
    "test_downgrade_leaves_no_trace",
    "test_model_definitions_match_ddl",
    "test_single_head_revision",
    "test_up_down_consistency",
    "test_upgrade",
]


# The head of appdb's chain, whatever revision that is now.
HEAD = script_directory(appdb_chain()).get_current_head()


@pytest.fixture
def alembic_config(settings: DatabaseSettings) -> Config:
    """pytest-alembic runs appdb's real configuration (it hands env.py its own connection)."""
    return migrate.alembic_config(settings)


@pytest.fixture
def alembic_engine(settings: DatabaseSettings) -> Iterator[sa.Engine]:
    """pytest-alembic's engine: the fresh database of this test, on each backend."""
    engine = create_engine(settings)
    yield engine
    engine.dispose()


def _tables(settings: DatabaseSettings) -> set[str]:
    engine = create_engine(settings)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_creates_every_model_table(settings: DatabaseSettings) -> None:
    """After upgrade the database holds exactly appdb's tables plus alembic_version."""
    applied = migrate.upgrade(settings=settings)
    assert ["0001_users", "0002_messages"] == [step.revision for step in applied][:2]
    assert HEAD == applied[-1].revision
    assert all(step.seconds >= 0 for step in applied)
    assert {*metadata.tables, "alembic_version", CONTRACT_TABLE} == _tables(settings)
    assert (HEAD,) == migrate.current(settings)


def test_upgrade_twice_does_nothing(settings: DatabaseSettings) -> None:
    """A second upgrade applies nothing."""
    migrate.upgrade(settings=settings)
    assert [] == migrate.upgrade(settings=settings)


def test_downgrade_to_base_removes_everything(settings: DatabaseSettings) -> None:
    """Downgrading to base leaves only the version table, and upgrading again works."""
    migrate.upgrade(settings=settings)
    undone = migrate.downgrade("base", settings)
    assert ["0002_messages", "0001_users"] == [step.revision for step in undone][-2:]
    assert {"alembic_version"} == _tables(settings)
    assert () == migrate.current(settings)
    assert len(undone) == len(migrate.upgrade(settings=settings))


def test_check_passes_at_head(settings: DatabaseSettings) -> None:
    """At head the database and the models agree."""
    migrate.upgrade(settings=settings)
    assert [] == migrate.check(settings)


def test_check_finds_column_added_to_database(settings: DatabaseSettings) -> None:
    """A column added by hand (drift) is reported."""
    migrate.upgrade(settings=settings)
    engine = create_engine(settings)
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE users ADD COLUMN nickname VARCHAR(20)")
    engine.dispose()
    assert ["remove column users.nickname"] == migrate.check(settings)


def test_check_finds_model_column_without_migration(settings: DatabaseSettings) -> None:
    """A column in the models that no migration creates is reported."""
    migrate.upgrade(settings=settings)
    column = sa.Column("nickname", sa.String(20))
    metadata.tables["users"].append_column(column)
    try:
        assert ["add column users.nickname"] == migrate.check(settings)
    finally:
        metadata.tables["users"]._columns.remove(column)


def test_check_finds_model_table_without_migration(settings: DatabaseSettings) -> None:
    """A table in the models that no migration creates is reported."""
    migrate.upgrade(settings=settings)
    table = sa.Table("audit_log", metadata, sa.Column("id", sa.Integer, primary_key=True))
    try:
        assert ["add table audit_log"] == migrate.check(settings)
    finally:
        metadata.remove(table)


def test_service_tables_are_ignored(settings: DatabaseSettings) -> None:
    """A service's own table in the same database is not proposed for dropping."""
    migrate.upgrade(settings=settings)
    engine = create_engine(settings)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE service_owned (id INTEGER PRIMARY KEY)")
    engine.dispose()
    assert [] == migrate.check(settings)


def test_check_requires_head(settings: DatabaseSettings) -> None:
    """Check refuses to compare a database that is not at head."""
    migrate.upgrade("0001_users", settings)
    with pytest.raises(SchemaOutOfDateError, match="run `appdb-migrate upgrade`"):
        migrate.check(settings)


def test_ensure_schema_current(settings: DatabaseSettings) -> None:
    """The start-up guard raises when behind or ahead, and passes at head."""
    with pytest.raises(SchemaOutOfDateError, match="never migrated"):
        migrate.ensure_schema_current(settings)
    migrate.upgrade("0001_users", settings)
    with pytest.raises(SchemaOutOfDateError, match=f"expects {HEAD}"):
        migrate.ensure_schema_current(settings)
    migrate.upgrade(settings=settings)
    assert HEAD == migrate.ensure_schema_current(settings)
    migrate.stamp(HEAD, settings)
    engine = create_engine(settings)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0099_future'")
    engine.dispose()
    with pytest.raises(SchemaOutOfDateError, match="ahead"):
        migrate.ensure_schema_current(settings)


def test_stamp_records_without_migrating(settings: DatabaseSettings) -> None:
    """Stamp refuses a database without the revision's tables; forced, it records and creates none."""
    with pytest.raises(MigrationError, match=r"do not match 0001_users.*table users is missing"):
        migrate.stamp("0001_users", settings)
    assert () == migrate.current(settings)
    migrate.stamp("0001_users", settings, force=True)
    assert ("0001_users",) == migrate.current(settings)
    assert {"alembic_version", CONTRACT_TABLE} == _tables(settings)


def test_unknown_revision_is_migration_error(settings: DatabaseSettings) -> None:
    """A revision that does not exist is a MigrationError, not an Alembic traceback."""
    with pytest.raises(MigrationError, match="nonexistent"):
        migrate.upgrade("nonexistent", settings)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_alembic_config_runs_inside_callers_transaction(settings: DatabaseSettings) -> None:
    """A service can migrate on its own connection, inside its own transaction."""
    engine = create_engine(settings)
    with engine.connect() as connection:
        transaction = connection.begin()
        command.upgrade(migrate.alembic_config(settings, connection=connection), "head")
        transaction.rollback()
    engine.dispose()
    # Transactional DDL: the caller's rollback undid everything (pysqlite commits DDL eagerly,
    # so this is PostgreSQL-only by nature).
    assert (set(), ()) == (_tables(settings), migrate.current(settings))


FAILING_REVISION = '''
"""A revision that fails halfway (test only).

Revision ID: 0003_fails
Revises: __HEAD__
"""
import sqlalchemy as sa
from sqlalchemy.engine import URL
from alembic import op

revision = "0003_fails"
down_revision = "__HEAD__"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("half_done", sa.Column("id", sa.Integer, primary_key=True))
    op.add_column("users", sa.Column("half_column", sa.Integer))
    raise RuntimeError("failing halfway on purpose")


def downgrade():
    pass
'''


SLOW_REVISION = '''
"""A revision with one slow statement (test only).

Revision ID: 0003_slow
Revises: __HEAD__
"""
from alembic import op

revision = "0003_slow"
down_revision = "__HEAD__"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("SELECT pg_sleep(0.3)")


def downgrade():
    pass
'''


def _with_extra_revision(
    settings: DatabaseSettings, folder: Path, name: str, source: str
) -> Config:
    """Appdb's Alembic config with one more revision file in `folder`."""
    assert HEAD is not None
    folder.mkdir()
    (folder / name).write_text(textwrap.dedent(source).replace("__HEAD__", HEAD))
    config = migrate.alembic_config(settings)
    bundled = ScriptDirectory.from_config(config).versions
    config.set_main_option("path_separator", "newline")
    config.set_main_option("version_locations", f"{bundled}\n{folder}")
    return config


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_migrations_are_not_cut_short_by_the_statement_timeout(
    settings: DatabaseSettings, tmp_path: Path
) -> None:
    """DATABASE_STATEMENT_TIMEOUT bounds the service's requests, not a long migration step."""
    timed = settings.model_copy(update={"statement_timeout": 100})
    engine = create_engine(timed)
    with engine.connect() as connection, pytest.raises(StatementTimeoutError):
        connection.exec_driver_sql("SELECT pg_sleep(0.3)")
    engine.dispose()
    config = _with_extra_revision(timed, tmp_path / "extra", "0003_slow.py", SLOW_REVISION)
    command.upgrade(config, "head")
    assert ("0003_slow",) == migrate.current(timed)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_failing_revision_leaves_previous_revision(
    settings: DatabaseSettings, tmp_path: Path
) -> None:
    """On PostgreSQL a revision that raises halfway is rolled back whole; earlier ones stay."""
    config = _with_extra_revision(settings, tmp_path / "extra", "0003_fails.py", FAILING_REVISION)
    with pytest.raises(RuntimeError, match="failing halfway"):
        command.upgrade(config, "head")
    assert (HEAD,) == migrate.current(settings)
    assert {*metadata.tables, "alembic_version", CONTRACT_TABLE} == _tables(settings)
    engine = create_engine(settings)
    columns = {column["name"] for column in sa.inspect(engine).get_columns("users")}
    engine.dispose()
    assert "half_column" not in columns


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_ddl_lock_timeout_stops_waiting_for_table_lock(database_url: URL) -> None:
    """DDL that would queue behind a long transaction gives up after ddl_lock_timeout."""
    settings = DatabaseSettings(url=database_url, ddl_lock_timeout=300)
    migrate.upgrade("0001_users", settings)
    engine = create_engine(settings)
    with engine.connect() as blocker:
        blocker.exec_driver_sql("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(DDLLockTimeoutError, match=r"0002_messages .* lock on table users"):
            migrate.upgrade(settings=settings, lock_timeout=5)
        blocker.rollback()
    engine.dispose()
    assert ("0001_users",) == migrate.current(settings)
    assert HEAD == migrate.upgrade(settings=settings)[-1].revision


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_advisory_lock_serialises_and_times_out(settings: DatabaseSettings) -> None:
    """While another holder has the lock, upgrade waits; it fails cleanly when the wait runs out."""
    engine = create_engine(settings)
    with engine.connect() as holder:
        holder.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
        with pytest.raises(MigrationLockTimeoutError, match="lock"):
            migrate.upgrade(settings=settings, lock_timeout=0.5)
        assert () == migrate.current(settings)
        holder.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
        holder.commit()
    engine.dispose()
    assert HEAD == migrate.upgrade(settings=settings, lock_timeout=5)[-1].revision


def test_unreachable_server_is_database_unavailable() -> None:
    """Migrating against a closed port raises DatabaseUnavailableError naming the operation."""
    settings = DatabaseSettings(url="postgresql://postgres:s3cret@127.0.0.1:1/appdb")
    with pytest.raises(DatabaseUnavailableError) as raised:
        migrate.upgrade(settings=settings, lock_timeout=1)
    assert str(raised.value).startswith("cannot upgrade: ")
    assert "127.0.0.1:1" in str(raised.value)
    assert "s3cret" not in str(raised.value)


@pytest.mark.parametrize(
    "failure",
    [
        sa.exc.OperationalError("SELECT 1", {}, psycopg.errors.ConnectionFailure("s3cret gone")),
        sa.exc.OperationalError(
            "SELECT 1", {}, Exception("s3cret gone"), connection_invalidated=True
        ),
    ],
    ids=["sqlstate-08", "invalidated"],
)
def test_connection_problem_is_database_unavailable(failure: sa.exc.OperationalError) -> None:
    """An OperationalError with SQLSTATE class 08, or an invalidated connection, is unavailability."""
    settings = DatabaseSettings(url="postgresql://app:s3cret@db.example:6543/appdb")
    expected = "cannot upgrade: database at db.example:6543 unavailable: *** gone"
    with pytest.raises(DatabaseUnavailableError) as raised, translated_errors(settings, "upgrade"):
        raise failure
    assert expected == str(raised.value)


def test_other_operational_error_is_migration_error() -> None:
    """An OperationalError that is not a connection problem is a MigrationError, whatever its text."""
    settings = DatabaseSettings(url="postgresql://app@db.example:6543/appdb")
    lock = psycopg.errors.LockNotAvailable("lock timeout on the connection's table")
    failure = sa.exc.OperationalError("LOCK TABLE users", {}, lock)
    with pytest.raises(MigrationError) as raised, translated_errors(settings, "upgrade"):
        raise failure
    assert "cannot upgrade: lock timeout on the connection's table" == str(raised.value)
