"""SmartSpace's tables on top of appdb's, migrated by one `appdb-migrate upgrade`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from smartspace import (
    ApiKey,
    Budget,
    Payment,
    PaymentStatus,
    Policy,
    Request,
    RequestStatus,
    UserTier,
)
from sqlmodel import select

from appdb import DatabaseSettings, create_engine, migrate
from appdb.compat import CONTRACT_TABLE
from appdb.migrate.chains import appdb_chain, script_directory

# The head of appdb's chain, whatever revision that is now.
HEAD = script_directory(appdb_chain()).get_current_head()

SERVICE_TABLES = {"api_keys", "budgets", "policies", "payments", "requests"}
ENUM_TYPES = {"accountstatus", "usertier", "apikeystatus", "paymentstatus", "requeststatus"}


def _enum_labels(engine: sa.Engine) -> dict[str, list[str]]:
    query = (
        "SELECT t.typname, e.enumlabel FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid "
        "ORDER BY t.typname, e.enumsortorder"
    )
    labels: dict[str, list[str]] = {}
    with engine.connect() as connection:
        for name, label in connection.exec_driver_sql(query):
            labels.setdefault(name, []).append(label)
    return labels


def _insert_request(connection: sa.Connection, status: str) -> None:
    user_id = connection.execute(
        sa.text("INSERT INTO users (username) VALUES (:name) RETURNING id"),
        {"name": f"user_{status}"},
    ).scalar_one()
    connection.execute(
        sa.text(
            "INSERT INTO requests (user_id, endpoint, status, tokens_in, tokens_out, cost_cents,"
            " request_meta) VALUES (:user_id, '/v1/chat', :status, 0, 0, 0, '{}')"
        ),
        {"user_id": user_id, "status": status},
    )


def test_one_upgrade_made_appdb_and_service_tables(appdb_engine: sa.Engine) -> None:
    """The plugin's database went through appdb's chain and SmartSpace's."""
    tables = set(sa.inspect(appdb_engine).get_table_names())
    versions = {"alembic_version", "alembic_version_smartspace", CONTRACT_TABLE}
    assert {"users", "messages", *versions, *SERVICE_TABLES} == tables


def test_named_indexes_and_foreign_keys_to_users(appdb_engine: sa.Engine) -> None:
    """api_keys has the named indexes; every service table references users.id."""
    inspector = sa.inspect(appdb_engine)
    indexes = {index["name"]: index for index in inspector.get_indexes("api_keys")}
    assert ["key_hash"] == indexes["idx_api_keys_key_hash"]["column_names"]
    assert indexes["idx_api_keys_key_hash"]["unique"]
    assert ["user_id"] == indexes["idx_api_keys_user_id"]["column_names"]
    for table in SERVICE_TABLES:
        references = {
            (fk["referred_table"], tuple(fk["referred_columns"]))
            for fk in inspector.get_foreign_keys(table)
        }
        assert ("users", ("id",)) in references, table


def test_enum_types(appdb_engine: sa.Engine) -> None:
    """PostgreSQL has the native enum types; SQLite checks the strings instead."""
    if appdb_engine.dialect.name == "postgresql":
        labels = _enum_labels(appdb_engine)
        assert ENUM_TYPES == set(labels)
        assert ["pending", "completed", "failed", "cancelled"] == labels["requeststatus"]
    else:
        with appdb_engine.connect() as connection:
            sql = connection.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'requests'"
            ).scalar_one()
        assert "CHECK (status IN ('pending', 'completed', 'failed', 'cancelled'))" in sql


def test_rows_round_trip(appdb_session, appdb_users) -> None:
    """Enums come back as enums, JSON as Python values, foreign keys hold."""
    user = appdb_users.create()
    key = ApiKey(user_id=user.id, name="ci", key_prefix="sk_", key_hash="h" * 64, scopes=["read"])
    appdb_session.add_all(
        [
            key,
            Budget(user_id=user.id, tier=UserTier.PRO, alerts={"at_percent": [50, 90]}),
            Policy(name="pro default", tier=UserTier.PRO, rules={"burst": 10}),
            Payment(user_id=user.id, amount_cents=1999, currency="EUR", provider="stripe"),
        ]
    )
    appdb_session.flush()
    appdb_session.add(
        Request(
            user_id=user.id,
            api_key_id=key.id,
            endpoint="/v1/chat",
            status=RequestStatus.CANCELLED,
            request_meta={"model": "small", "stream": True},
        )
    )
    appdb_session.commit()
    appdb_session.expire_all()
    request = appdb_session.exec(select(Request)).one()
    assert (RequestStatus.CANCELLED, {"model": "small", "stream": True}) == (
        request.status,
        request.request_meta,
    )
    assert PaymentStatus.PENDING == appdb_session.exec(select(Payment)).one().status
    assert ["read"] == appdb_session.exec(select(ApiKey)).one().scopes
    assert {"at_percent": [50, 90]} == appdb_session.exec(select(Budget)).one().alerts


def test_unknown_status_is_refused(appdb_session) -> None:
    """A value outside the enum is refused by the database itself, on both backends."""
    connection = appdb_session.connection()
    with pytest.raises(sa.exc.DBAPIError), appdb_session.begin_nested():
        _insert_request(connection, "exploded")


def test_deleting_a_user_deletes_their_keys(appdb_session, appdb_users) -> None:
    """ON DELETE CASCADE from users.id."""
    user = appdb_users.create()
    appdb_session.add(ApiKey(user_id=user.id, name="k", key_prefix="sk_", key_hash="x" * 64))
    appdb_session.flush()
    appdb_session.execute(sa.text("DELETE FROM users WHERE id = :id"), {"id": user.id})
    assert 0 == appdb_session.execute(sa.text("SELECT count(*) FROM api_keys")).scalar_one()


def test_downgrade_and_upgrade_again(appdb_empty_database_url: sa.URL) -> None:
    """Down drops the types (and 'cancelled' safely); the next upgrade creates them again."""
    settings = DatabaseSettings(url=appdb_empty_database_url)
    engine = create_engine(settings)
    postgresql = engine.dialect.name == "postgresql"
    try:
        migrate.upgrade(settings=settings)
        assert [] == migrate.check(settings)
        with engine.begin() as connection:
            _insert_request(connection, "cancelled")

        undone = migrate.downgrade("smartspace@-1", settings)
        assert ["smartspace_0002"] == [step.revision for step in undone]
        with engine.connect() as connection:
            statuses = connection.exec_driver_sql("SELECT status FROM requests").scalars().all()
        assert ["failed"] == list(statuses)
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as connection:
            _insert_request(connection, "cancelled")
        if postgresql:
            assert ["pending", "completed", "failed"] == _enum_labels(engine)["requeststatus"]

        migrate.downgrade("smartspace@base", settings, drop_data=True)  # its requests hold rows
        assert SERVICE_TABLES.isdisjoint(sa.inspect(engine).get_table_names())
        if postgresql:
            assert {} == _enum_labels(engine)

        applied = migrate.upgrade(settings=settings)
        assert ["smartspace_0001", "smartspace_0002"] == [step.revision for step in applied]
        assert [] == migrate.check(settings)
    finally:
        engine.dispose()


def test_appdb_migrate_cli_knows_the_service(
    appdb_empty_database_url: sa.URL, tmp_path: Path
) -> None:
    """The installed console script upgrades both chains and draws the service's tables."""
    script = str(Path(sys.executable).parent / "appdb-migrate")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    env["DATABASE_URL"] = appdb_empty_database_url.render_as_string(hide_password=False)

    def run(*args: str) -> str:
        result = subprocess.run(
            [script, *args], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
        )
        assert 0 == result.returncode, result.stderr
        return result.stdout

    assert "upgraded smartspace_0002" in run("upgrade")
    assert f"{HEAD}, smartspace_0002 (head): up to date\n" == run("current", "--check")
    assert "models and migrations agree" in run("check")
    assert '    users ||--o{ api_keys : "user_id"' in run("schema").splitlines()
    assert "  status: requeststatus NOT NULL" in run("schema", "--format", "text").splitlines()
