"""The drift check sees CHECK constraints, index predicates and uniqueness, on both backends."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.migration import MigrationContext
from alembic.operations import BatchOperations, Operations
from sqlalchemy.engine import URL

from appdb import DatabaseSettings, create_engine, metadata, migrate
from appdb.migrate.check import catalog_differences, read_catalog
from pgserver import create_database, drop_database


def _execute(settings: DatabaseSettings, *statements: str) -> None:
    engine = create_engine(settings)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)
    finally:
        engine.dispose()


def _batch(
    settings: DatabaseSettings, table: str, change: Callable[[BatchOperations], None]
) -> None:
    """Alter a table the way a migration would (SQLite rebuilds it in batch mode)."""
    engine = create_engine(settings)
    try:
        with engine.begin() as connection:
            operations = Operations(MigrationContext.configure(connection))
            with operations.batch_alter_table(table) as batch:
                change(batch)
    finally:
        engine.dispose()


@pytest.fixture
def other_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[URL]:
    """A second fresh database on the same backend."""
    if backend == "sqlite":
        yield URL.create("sqlite", database=str(tmp_path / "other.sqlite3"))
        return
    admin_url: URL = request.getfixturevalue("postgresql_admin_url")
    url = create_database(admin_url)
    try:
        yield url
    finally:
        drop_database(admin_url, url)


def test_migrations_and_create_all_agree_through_the_catalog(
    settings: DatabaseSettings, other_url: URL
) -> None:
    """A database built by the migrations and one built by create_all have the same catalog."""
    migrate.upgrade(settings=settings)
    built = create_engine(DatabaseSettings(url=other_url))
    migrated = create_engine(settings)
    try:
        metadata.create_all(built)
        tables = sorted(metadata.tables)
        with migrated.connect() as one, built.connect() as other:
            from_migrations = read_catalog(one, tables)
            from_models = read_catalog(other, tables)
    finally:
        built.dispose()
        migrated.dispose()
    assert [] == catalog_differences(from_migrations, from_models)
    # The comparison is not vacuous: the catalog holds what the models declare.
    assert {
        ("messages", "ck_messages_content_not_empty"),
        ("users", "ck_users_email_lowercase"),
        ("users", "ck_users_has_identity"),
        ("users", "ck_users_telegram_user_id_positive"),
    } == set(from_migrations.checks)
    assert from_migrations.predicates["messages", "ix_messages_recipient_id_unread"] is not None
    assert {
        ("users", ("email",)),
        ("users", ("username",)),
        ("users", ("telegram_user_id",)),
    } <= set(from_migrations.unique)


def test_check_finds_dropped_check_constraint(settings: DatabaseSettings) -> None:
    """A CHECK dropped from the database is listed with its expression."""
    migrate.upgrade(settings=settings)
    _batch(
        settings,
        "users",
        lambda batch: batch.drop_constraint("ck_users_email_lowercase", type_="check"),
    )
    [line] = migrate.check(settings)
    assert line.startswith("add check constraint ck_users_email_lowercase on users: CHECK (")
    assert "lower(" in line


def test_check_finds_model_check_without_migration(settings: DatabaseSettings) -> None:
    """A CHECK in the models that no migration creates is listed."""
    migrate.upgrade(settings=settings)
    table = metadata.tables["users"]
    constraint = sa.CheckConstraint("length(bio) < 500", name="bio_short")
    table.append_constraint(constraint)
    try:
        [line] = migrate.check(settings)
    finally:
        table.constraints.remove(constraint)
    assert line.startswith("add check constraint ck_users_bio_short on users: CHECK (")
    assert "500" in line


def test_check_finds_changed_check_expression(settings: DatabaseSettings) -> None:
    """A CHECK with the same name and another expression is listed as modified."""
    migrate.upgrade(settings=settings)

    def change(batch: BatchOperations) -> None:
        batch.drop_constraint("ck_users_telegram_user_id_positive", type_="check")
        batch.create_check_constraint(
            "ck_users_telegram_user_id_positive", sa.text("telegram_user_id > -5")
        )

    _batch(settings, "users", change)
    [line] = migrate.check(settings)
    assert line.startswith("modify check constraint ck_users_telegram_user_id_positive on users:")
    assert "-5" in line.split("->")[0]
    assert "> 0" in line.split("->")[1]


def test_check_finds_inverted_index_predicate(settings: DatabaseSettings, backend: str) -> None:
    """The unread index with its WHERE inverted is listed, old and new predicate shown."""
    migrate.upgrade(settings=settings)
    where = "is_read" if backend == "postgresql" else "is_read = 1"
    _execute(
        settings,
        "DROP INDEX ix_messages_recipient_id_unread",
        "CREATE INDEX ix_messages_recipient_id_unread ON messages (recipient_id, id) "
        f"WHERE {where}",
    )
    [line] = migrate.check(settings)
    assert line.startswith("modify index predicate ix_messages_recipient_id_unread on messages: ")
    have, want = line.split(": ", 1)[1].split(" -> ")
    assert "NOT" not in have.upper()
    assert ("NOT" in want.upper()) or ("= 0" in want)


def test_check_finds_dropped_predicate(settings: DatabaseSettings) -> None:
    """A partial index rebuilt as a full index is listed."""
    migrate.upgrade(settings=settings)
    _execute(
        settings,
        "DROP INDEX ix_messages_recipient_id_unread",
        "CREATE INDEX ix_messages_recipient_id_unread ON messages (recipient_id, id)",
    )
    [line] = migrate.check(settings)
    assert "(no WHERE) -> WHERE " in line


def test_check_finds_unique_index_added_by_hand(settings: DatabaseSettings) -> None:
    """A unique index the models do not declare is listed with its columns."""
    migrate.upgrade(settings=settings)
    _execute(settings, "CREATE UNIQUE INDEX ix_users_full_name ON users (full_name)")
    assert ["remove unique ix_users_full_name on users (full_name)"] == migrate.check(settings)


def test_check_finds_dropped_unique_constraint(settings: DatabaseSettings) -> None:
    """A unique constraint dropped from the database is listed."""
    migrate.upgrade(settings=settings)
    _batch(settings, "users", lambda batch: batch.drop_constraint("uq_users_email", type_="unique"))
    assert ["add unique uq_users_email on users (email)"] == migrate.check(settings)


@pytest.mark.postgresql_only
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_check_prints_types_and_defaults_as_sql(settings: DatabaseSettings) -> None:
    """Type and default differences read as SQL, not as Python reprs."""
    migrate.upgrade(settings=settings)
    _execute(
        settings,
        "ALTER TABLE users ALTER COLUMN full_name TYPE VARCHAR(200)",
        "ALTER TABLE users ALTER COLUMN is_active SET DEFAULT false",
    )
    lines = migrate.check(settings)
    assert "modify type users.full_name: VARCHAR(200) -> VARCHAR(128)" in lines
    assert "modify default users.is_active: false -> true" in lines
    assert not any("object at 0x" in line or "AutoString" in line for line in lines)


def test_check_leaves_no_scratch_schema(settings: DatabaseSettings, backend: str) -> None:
    """The models' scratch schema is rolled back: the database is as before."""
    migrate.upgrade(settings=settings)
    migrate.check(settings)
    engine = create_engine(settings)
    try:
        inspector = sa.inspect(engine)
        if backend == "postgresql":
            assert not [s for s in inspector.get_schema_names() if s.startswith("appdb_check")]
        assert {*metadata.tables} <= set(inspector.get_table_names())
    finally:
        engine.dispose()


@pytest.mark.postgresql_only
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_check_needs_no_create_privilege(settings: DatabaseSettings) -> None:
    """A role that may only read the tables (no CREATE on the database) can run check."""
    migrate.upgrade(settings=settings)
    role = f"appdb_reader_{uuid.uuid4().hex[:8]}"
    _execute(
        settings,
        f"CREATE ROLE {role} LOGIN",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}",
    )
    try:
        reader = DatabaseSettings(url=settings.database_url.set(username=role, password=None))
        assert [] == migrate.check(reader)
    finally:
        _execute(settings, f"DROP OWNED BY {role}", f"DROP ROLE {role}")
