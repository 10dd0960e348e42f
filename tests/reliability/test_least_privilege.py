"""Least privilege on PostgreSQL: services as a DML-only role, `appdb-migrate` as the owner role.

The set-up SQL is the README's ("Least privilege"), run on the shared server with roles and a
database named uniquely for this test and dropped afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlmodel import Session

from appdb import DatabaseSettings, PermissionDeniedError, create_async_engine, create_engine
from appdb import aio as appdb_aio
from appdb.messages import inbox, mark_read, send_message, unread_count
from appdb.migrate import ensure_schema_current
from appdb.migrate.chains import appdb_chain, script_directory
from appdb.session import AsyncSessionLocal
from appdb.users import authenticate, create_user, link_telegram, touch_telegram_user

# The head of appdb's chain, whatever revision that is now.
HEAD = script_directory(appdb_chain()).get_current_head()


pytestmark = pytest.mark.postgresql_only

SCRIPT = str(Path(sys.executable).parent / "appdb-migrate")


class Roles(NamedTuple):
    """The owner's and the application's URLs for one database."""

    owner: URL
    app: URL


def _admin(admin_url: URL, *statements: str, database: str | None = None) -> None:
    engine = sa.create_engine(
        admin_url.set(database=database or admin_url.database), isolation_level="AUTOCOMMIT"
    )
    with engine.connect() as connection:
        for statement in statements:
            connection.exec_driver_sql(statement)
    engine.dispose()


def setup_sql(database: str, owner: str, app: str) -> list[str]:
    """The statements the README gives, to run as a superuser in `database` once it exists."""
    return [
        f"REVOKE ALL ON DATABASE {database} FROM PUBLIC",
        f"GRANT CONNECT ON DATABASE {database} TO {app}",
        f"ALTER SCHEMA public OWNER TO {owner}",
        "REVOKE ALL ON SCHEMA public FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA public TO {app}",
        (
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app}"
        ),
        (
            f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
            f"GRANT USAGE, SELECT ON SEQUENCES TO {app}"
        ),
    ]


@pytest.fixture
def roles(postgresql_admin_url: URL) -> Iterator[Roles]:
    """An owner role, a DML-only app role and a database the owner owns."""
    suffix = uuid.uuid4().hex[:10]
    owner, app, database = f"appdb_owner_{suffix}", f"appdb_app_{suffix}", f"appdb_lp_{suffix}"
    _admin(
        postgresql_admin_url,
        f"CREATE ROLE {owner} LOGIN PASSWORD 'owner-pw-{suffix}'",
        f"CREATE ROLE {app} LOGIN PASSWORD 'app-pw-{suffix}'",
        f"CREATE DATABASE {database} OWNER {owner}",
    )
    try:
        _admin(postgresql_admin_url, *setup_sql(database, owner, app), database=database)
        base = postgresql_admin_url.set(database=database)
        yield Roles(
            owner=base.set(username=owner, password=f"owner-pw-{suffix}"),
            app=base.set(username=app, password=f"app-pw-{suffix}"),
        )
    finally:
        _admin(
            postgresql_admin_url,
            f"DROP DATABASE IF EXISTS {database} WITH (FORCE)",
            f"DROP ROLE IF EXISTS {app}",
            f"DROP ROLE IF EXISTS {owner}",
        )


def _migrate(*args: str, url: URL, cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    environment["DATABASE_URL"] = url.render_as_string(hide_password=False)
    return subprocess.run(
        [SCRIPT, *args],
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_app_role_runs_every_operation_but_no_ddl(roles: Roles, tmp_path: Path) -> None:
    """The owner migrates; the app role serves every operation and is refused every DDL."""
    migrated = _migrate("upgrade", url=roles.owner, cwd=tmp_path)
    assert 0 == migrated.returncode, migrated.stderr
    # Optional hardening from the README: the services may read the schema version, not write it.
    owner_engine = sa.create_engine(roles.owner, isolation_level="AUTOCOMMIT")
    with owner_engine.connect() as connection:
        connection.exec_driver_sql(
            f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON alembic_version FROM {roles.app.username}"
        )
    owner_engine.dispose()

    app_settings = DatabaseSettings(url=roles.app)
    assert HEAD == ensure_schema_current(app_settings)
    engine = create_engine(app_settings)
    with Session(engine) as session:
        ann = create_user(session, username="ann", email="ann@x.io", password="correct horse")
        bot = touch_telegram_user(session, 7, first_name="Bot")
        message = send_message(session, sender_id=bot.id, recipient_id=ann.id, content="hi")
        assert [message.id] == [item.id for item in inbox(session, ann.id)]
        assert 1 == unread_count(session, ann.id)
        assert 1 == mark_read(session, ann.id)
        link_telegram(session, ann.id, 8)
        session.commit()
        assert authenticate(session, "ann", "correct horse") is not None
        session.commit()

    refused = [
        "CREATE TABLE intruder (id integer)",
        "CREATE TEMP TABLE intruder (id integer)",
        "ALTER TABLE users ADD COLUMN intruder integer",
        "DROP TABLE messages",
        "CREATE INDEX intruder ON users (bio)",
        "TRUNCATE messages",
        "UPDATE alembic_version SET version_num = 'tampered'",
    ]
    with engine.connect() as connection:
        for statement in refused:
            with pytest.raises(PermissionDeniedError, match=r"permission denied|must be owner"):
                connection.exec_driver_sql(statement)
            connection.rollback()
    engine.dispose()

    downgrade = _migrate("downgrade", "base", "--yes", url=roles.app, cwd=tmp_path)
    assert 1 == downgrade.returncode
    assert 1 == len(downgrade.stderr.strip().splitlines()), downgrade.stderr
    assert "must be owner" in downgrade.stderr or "permission denied" in downgrade.stderr
    assert 0 == _migrate("current", "--check", url=roles.owner, cwd=tmp_path).returncode


@pytest.mark.anyio
async def test_app_role_serves_the_async_engine(roles: Roles, tmp_path: Path) -> None:
    """The bot's async path works as the app role too."""
    assert 0 == _migrate("upgrade", url=roles.owner, cwd=tmp_path).returncode
    engine = create_async_engine(DatabaseSettings(url=roles.app))
    try:
        async with AsyncSessionLocal(bind=engine) as session:
            user = await appdb_aio.touch_telegram_user(session, 99, first_name="Async")
            await session.commit()
            assert user.id is not None
    finally:
        await engine.dispose()
