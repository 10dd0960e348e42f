"""appdb-migrate adopt: the pre-appdb layouts (from docs/adopting.md) brought to head, every row kept."""
# ruff: noqa: S608, TRY003 - SQL over the tables the test made itself; an injected failure

from __future__ import annotations

import importlib
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import bcrypt
import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from appdb import DatabaseSettings, User, cli, create_engine, messages, metadata, migrate
from appdb.exceptions import MigrationError
from appdb.migrate.adopt import AdoptOptions, adopt, plan
from appdb.migrate.chains import appdb_chain, script_directory
from appdb.users import authenticate, touch_telegram_user

DOC = Path(__file__).resolve().parent.parent / "docs" / "adopting.md"
PASSWORD = "correct horse battery"
HEAD = script_directory(appdb_chain()).get_current_head()


def layout_ddl(layout: str, backend: str) -> list[str]:
    """The DDL statements of one layout, as docs/adopting.md shows them."""
    blocks = re.findall(r"```sql (\S+) (\S+)\n(.*?)```", DOC.read_text(), re.DOTALL)
    for name, dialect, body in blocks:
        if (name, dialect) == (layout, backend):
            return [part.strip() for part in body.split(";") if part.strip()]
    pytest.skip(f"docs/adopting.md has no {layout} layout for {backend}")
    return []


def _engine(settings: DatabaseSettings) -> sa.Engine:
    return create_engine(settings)


def _execute(
    settings: DatabaseSettings,
    *statements: str,
    params: list[tuple[str, Sequence[Mapping[str, Any]]]] | None = None,
) -> None:
    # A plain engine: the legacy services ran SQLite without foreign key enforcement.
    engine = sa.create_engine(settings.database_url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)
            for sql, rows in params or []:
                connection.execute(sa.text(sql), rows)
    finally:
        engine.dispose()


def _get(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    assert user is not None
    return user


def snapshot(settings: DatabaseSettings) -> dict[str, Any]:
    """Every table's columns and rows: what "exactly as it was" compares."""
    engine = _engine(settings)
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            found: dict[str, Any] = {}
            for table in sorted(inspector.get_table_names()):
                columns = [c["name"] for c in inspector.get_columns(table)]
                rows = connection.exec_driver_sql(f"SELECT * FROM {table} ORDER BY 1").all()
                found[table] = (columns, [tuple(row) for row in rows])
            if engine.dialect.name == "postgresql":
                found["__schemas__"] = sorted(inspector.get_schema_names())
            return found
    finally:
        engine.dispose()


NAIVE = datetime(2024, 3, 1, 12, 30, 0)  # noqa: DTZ001 (the legacy layouts stored naive times)


def seed_backend(settings: DatabaseSettings, backend: str) -> None:
    """Backend layout: bcrypt users, mixed-case emails, a reply whose parent was deleted."""
    for statement in layout_ddl("backend", backend):
        _execute(settings, statement)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    users = [
        {"id": i, "u": f"user{i}", "e": f"User{i}@Example.COM", "h": hashed, "f": f"Full {i}"}
        for i in (1, 2, 3, 7, 42)
    ]
    messages = [
        {"id": 1, "s": 1, "r": 2, "c": "hello", "p": None, "conv": "c-1"},
        {"id": 2, "s": 2, "r": 1, "c": "hi back", "p": 1, "conv": "c-1"},
        {
            "id": 5,
            "s": 42,
            "r": 7,
            "c": "orphaned reply",
            "p": 99 if backend == "sqlite" else None,
            "conv": None,
        },
        {"id": 9, "s": 7, "r": 42, "c": "reply to 2", "p": 2, "conv": "c-1"},
    ]
    _execute(
        settings,
        params=[
            (
                (
                    "INSERT INTO users (id, username, email, hashed_password, is_active, is_superuser, "
                    "full_name, created_at, updated_at) VALUES (:id, :u, :e, :h, true, false, :f, :t, NULL)"
                ),
                [{**user, "t": NAIVE} for user in users],
            ),
            (
                (
                    "INSERT INTO messages (id, sender_id, recipient_id, content, is_read, parent_id, "
                    "conversation_id, created_at, updated_at) VALUES (:id, :s, :r, :c, false, :p, :conv, :t, :t)"
                ),
                [{**message, "t": NAIVE} for message in messages],
            ),
        ],
    )


def seed_bot(settings: DatabaseSettings) -> None:
    """Bot layout: Telegram users with naive timestamps and one overlong handle."""
    for statement in layout_ddl("bot", "postgresql"):
        _execute(settings, statement)
    rows = [
        {"id": i, "tg": 1000 + i, "u": f"handle{i}", "fn": f"First{i}", "t": NAIVE}
        for i in (1, 2, 5)
    ]
    _execute(
        settings,
        params=[
            (
                (
                    "INSERT INTO users (id, telegram_id, username, first_name, last_name, is_active, "
                    "language_code, created_at, updated_at) VALUES (:id, :tg, :u, :fn, NULL, true, 'en', :t, :t)"
                ),
                rows,
            )
        ],
    )


def _current(settings: DatabaseSettings) -> tuple[str, ...]:
    return migrate.current(settings)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_backend_layout_adopted(settings: DatabaseSettings, backend: str) -> None:
    """The backend's users and messages: ids kept, emails lowered, bcrypt users log in, check clean."""
    seed_backend(settings, backend)
    before = snapshot(settings)
    found = adopt(settings)
    assert "backend" == found.layout
    assert {"users": 5, "messages": 4} == found.row_counts
    assert (HEAD,) == _current(settings)
    assert [] == migrate.check(settings)
    after = snapshot(settings)
    assert "alembic_version_pre_appdb" in after
    assert [("b7e1c2a9d4f0",)] == after["alembic_version_pre_appdb"][1]
    engine = _engine(settings)
    try:
        with Session(engine) as session:
            ids = list(session.exec(select(User.id).order_by(col(User.id))))
            assert [1, 2, 3, 7, 42] == ids
            user = _get(session, 7)
            assert "user7@example.com" == user.email
            assert NAIVE.replace(tzinfo=UTC) == user.created_at
            assert user.created_at == user.updated_at
            # A web user logs in with the old bcrypt hash, and is rehashed.
            assert authenticate(session, "user7", PASSWORD) is not None
            session.commit()
            hashed_password = _get(session, 7).hashed_password
            assert hashed_password is not None
            assert hashed_password.startswith("$argon2id$")
            assert authenticate(session, "User42@example.com", PASSWORD) is not None
            # The services' operations work on the adopted rows.
            assert [9] == [m.id for m in messages.inbox(session, 42)]
            assert [2] == [m.id for m in messages.replies(session, 1)]
            assert 1 == messages.unread_count(session, 2)
            reply = messages.send_message(
                session, sender_id=1, recipient_id=2, content="and again", parent_id=2
            )
            session.commit()
            assert reply.id > 9
            assert "c-1" == reply.conversation_id
            assert 2 == messages.mark_read(session, 2)
            session.commit()
            # The sequence is past the kept ids.
            new = User(username="newcomer", email="new@example.com")
            session.add(new)
            session.commit()
            assert new.id > 42
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(
                "SELECT id, parent_id, conversation_id FROM messages WHERE id <= 9 ORDER BY id"
            ).all()
        assert [(1, None, "c-1"), (2, 1, "c-1"), (5, None, None), (9, 2, "c-1")] == [
            tuple(r) for r in rows
        ]
    finally:
        engine.dispose()
    assert before != after


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_bot_layout_adopted(settings: DatabaseSettings) -> None:
    """The bot's users: telegram_id -> telegram_user_id, handle -> telegram_username, '001' kept."""
    seed_bot(settings)
    found = plan(settings)
    assert "bot" == found.layout
    assert found.ready
    adopt(settings)
    assert [] == migrate.check(settings)
    engine = _engine(settings)
    try:
        with Session(engine) as session:
            user = _get(session, 5)
            assert (1005, "handle5", "First5") == (
                user.telegram_user_id,
                user.telegram_username,
                user.first_name,
            )
            touched = touch_telegram_user(session, 1005, first_name="Renamed")
            session.commit()
            assert 5 == touched.id
            assert "Renamed" == _get(session, 5).first_name
            new = touch_telegram_user(session, 77)
            session.commit()
            assert new.id > 5
        with engine.connect() as connection:
            assert [("001",)] == connection.exec_driver_sql(
                "SELECT version_num FROM alembic_version_pre_appdb"
            ).all()
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_spec_layout_adopted(settings: DatabaseSettings) -> None:
    """The spec's shared users: no version table before, appdb's head after."""
    for statement in layout_ddl("spec", "postgresql"):
        _execute(settings, statement)
    _execute(
        settings,
        "INSERT INTO users (id, telegram_user_id, username, is_premium, last_login_at) "
        "VALUES (3, 333, 'spec_user', true, now()), (10, 444, NULL, NULL, NULL)",
    )
    assert "spec" == adopt(settings).layout
    assert [] == migrate.check(settings)
    engine = _engine(settings)
    try:
        with Session(engine) as session:
            user = _get(session, 3)
            assert (333, "spec_user", True) == (
                user.telegram_user_id,
                user.telegram_username,
                user.is_premium,
            )
            assert user.last_login_at is not None
    finally:
        engine.dispose()


def test_values_that_do_not_fit_are_listed_and_refused(
    settings: DatabaseSettings, backend: str
) -> None:
    """Emails equal once lower-cased and an overlong name: listed, refused, nothing changed."""
    seed_backend(settings, backend)
    _execute(
        settings,
        params=[
            (
                (
                    "INSERT INTO users (id, username, email, hashed_password, is_active, is_superuser, "
                    "full_name, created_at) VALUES (:id, :u, :e, 'x', true, false, :f, :t)"
                ),
                [
                    {"id": 50, "u": "dup", "e": "user7@example.com", "f": None, "t": NAIVE},
                    {"id": 51, "u": "long", "e": "long@example.com", "f": "x" * 200, "t": NAIVE},
                ],
            )
        ],
    )
    before = snapshot(settings)
    found = plan(settings)
    assert not found.ready
    lines = "\n".join(found.lines())
    assert "users.email: equal to a lower id's email once lower-cased" in lines
    assert "ids 50" in lines
    assert "users.full_name: longer than appdb's 128 characters (ids 51)" in lines
    assert "user7@example.com" not in lines  # ids, never values
    with pytest.raises(MigrationError, match="nothing was changed"):
        adopt(settings)
    assert before == snapshot(settings)
    # The documented options resolve them.
    adopt(settings, AdoptOptions(duplicates="suffix", long_values="truncate"))
    assert [] == migrate.check(settings)
    engine = _engine(settings)
    try:
        with Session(engine) as session:
            assert "user7+dup50@example.com" == _get(session, 50).email
            assert "user7@example.com" == _get(session, 7).email
            assert "x" * 128 == _get(session, 51).full_name
    finally:
        engine.dispose()


def test_unknown_layout_refused(settings: DatabaseSettings) -> None:
    """A users table of another shape is refused with the differences, and left alone."""
    _execute(
        settings,
        "CREATE TABLE users (id INTEGER PRIMARY KEY, login VARCHAR(20), telegram_id BIGINT)",
    )
    before = snapshot(settings)
    found = plan(settings)
    assert found.layout is None
    assert any("lacks" in line for line in found.differences)
    with pytest.raises(MigrationError, match="cannot adopt this database"):
        adopt(settings)
    assert before == snapshot(settings)


def test_appdb_schema_without_version_is_baselined(settings: DatabaseSettings) -> None:
    """Appdb's tables with a foreign version record: verified, the record kept, head recorded."""
    engine = _engine(settings)
    try:
        metadata.create_all(engine)
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
            )
            connection.exec_driver_sql("INSERT INTO alembic_version VALUES ('foreign1')")
            connection.exec_driver_sql("INSERT INTO users (id, username) VALUES (4, 'kept')")
    finally:
        engine.dispose()
    assert "appdb" == adopt(settings).layout
    assert (HEAD,) == _current(settings)
    assert [] == migrate.check(settings)
    engine = _engine(settings)
    try:
        with engine.connect() as connection:
            assert [(4, "kept")] == connection.exec_driver_sql(
                "SELECT id, username FROM users"
            ).all()
            assert [("foreign1",)] == connection.exec_driver_sql(
                "SELECT version_num FROM alembic_version_pre_appdb"
            ).all()
    finally:
        engine.dispose()


def test_appdb_schema_without_any_version_table(settings: DatabaseSettings) -> None:
    """The tables made by create_all, no version table at all: verified, head recorded."""
    engine = _engine(settings)
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()
    found = adopt(settings)
    assert ("appdb", {"users": 0, "messages": 0}) == (found.layout, found.row_counts)
    assert (HEAD,) == _current(settings)
    assert [] == migrate.check(settings)


def test_appdb_schema_with_drift_is_refused(settings: DatabaseSettings) -> None:
    """Appdb's tables missing a CHECK are not baselined: the drift is listed."""
    engine = _engine(settings)
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()
    table = metadata.tables["users"]
    constraint = sa.CheckConstraint("length(bio) < 500", name="bio_short")
    table.append_constraint(constraint)
    try:
        found = plan(settings)
    finally:
        table.constraints.remove(constraint)
    assert found.layout is None
    assert any("ck_users_bio_short" in line for line in found.differences)


def test_already_appdb_is_refused(settings: DatabaseSettings) -> None:
    """A database at an appdb revision is told to use upgrade."""
    migrate.upgrade(settings=settings)
    with pytest.raises(MigrationError, match="use `appdb-migrate upgrade`"):
        adopt(settings)


def test_injected_error_leaves_database_as_it_was(
    settings: DatabaseSettings, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the copy (at the count check) rolls everything back."""
    seed_backend(settings, backend)
    before = snapshot(settings)

    def fail(*_args: object, **_kwargs: object) -> NoReturn:
        raise MigrationError("injected failure")

    monkeypatch.setattr(importlib.import_module("appdb.migrate.adopt"), "_verify_counts", fail)
    with pytest.raises(MigrationError, match="injected failure"):
        adopt(settings)
    assert before == snapshot(settings)


def test_killed_adoption_leaves_database_as_it_was(
    settings: DatabaseSettings, backend: str, tmp_path: Path
) -> None:
    """Kill -9 in the middle of the adoption (after the copy) changes nothing."""
    seed_backend(settings, backend)
    before = snapshot(settings)
    script = tmp_path / "killed.py"
    script.write_text(
        textwrap.dedent(
            """
            import importlib, os, signal, sys
            from appdb import DatabaseSettings
            module = importlib.import_module("appdb.migrate.adopt")

            def die(*args, **kwargs):
                os.kill(os.getpid(), signal.SIGKILL)

            module._verify_counts = die
            module.adopt(DatabaseSettings(url=sys.argv[1]))
            """
        )
    )
    url = settings.database_url.render_as_string(hide_password=False)
    result = subprocess.run(
        [sys.executable, str(script), url], check=False, capture_output=True, env={**os.environ}
    )
    assert -signal.SIGKILL == result.returncode, result.stderr
    assert before == snapshot(settings)
    # And a later adoption still works.
    assert "backend" == adopt(settings).layout


def test_sql_lists_the_statements(settings: DatabaseSettings, backend: str) -> None:
    """The plan's SQL names the moves, the baseline, the copy and the upgrade."""
    seed_backend(settings, backend)
    statements = "\n".join(plan(settings).statements)
    assert "-- appdb revisions: upgrade 0002_messages" in statements
    assert "INSERT INTO users (id, username, email" in statements
    assert "-- appdb revisions: upgrade heads" in statements


def _url(settings: DatabaseSettings) -> str:
    return settings.database_url.render_as_string(hide_password=False)


def test_cli_plan_sql_and_adopt(
    settings: DatabaseSettings, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI's --plan and --sql change nothing; adopt does it; refusals exit 1 with one line."""
    seed_backend(settings, backend)
    before = snapshot(settings)
    assert 0 == cli.main(["--database-url", _url(settings), "adopt", "--plan"])
    shown = capsys.readouterr().out
    assert "layout: backend" in shown
    assert "rows: users 5" in shown
    assert "rows: messages 4" in shown
    assert 0 == cli.main(["--database-url", _url(settings), "adopt", "--sql"])
    sql = capsys.readouterr().out
    assert "INSERT INTO messages (id, sender_id" in sql
    assert before == snapshot(settings)
    assert 0 == cli.main(["--database-url", _url(settings), "adopt"])
    assert "adopted the backend layout (5 users, 4 messages)" in capsys.readouterr().out
    assert 0 == cli.main(["--database-url", _url(settings), "check"])
    assert 1 == cli.main(["--database-url", _url(settings), "adopt"])
    error = capsys.readouterr().err
    assert error.startswith("appdb-migrate: error: cannot adopt")
    assert 1 == len(error.strip().splitlines())


def test_cli_plan_lists_unfit_values_and_exits_1(
    settings: DatabaseSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plan with a value that does not fit lists it and exits 1."""
    seed_backend(
        settings, "sqlite" if settings.database_url.get_backend_name() == "sqlite" else "postgresql"
    )
    _execute(settings, "UPDATE users SET email = 'USER1@example.com' WHERE id = 2")
    assert 1 == cli.main(["--database-url", _url(settings), "adopt", "--plan"])
    captured = capsys.readouterr()
    assert "users.email: equal to a lower id's email once lower-cased" in captured.out
    assert "(ids 2): refused: pick --duplicates suffix, or fix by hand" in captured.out
    assert 0 == cli.main(
        ["--database-url", _url(settings), "adopt", "--plan", "--duplicates", "suffix"]
    )


def test_cli_bad_timezone_is_usage_error(
    settings: DatabaseSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown zone for naive timestamps exits 2."""
    seed_backend(
        settings, "sqlite" if settings.database_url.get_backend_name() == "sqlite" else "postgresql"
    )
    assert 2 == cli.main(
        ["--database-url", _url(settings), "adopt", "--plan", "--naive-timezone", "Mars/Olympus"]
    )
    assert "unknown time zone" in capsys.readouterr().err


LATER_REVISION = '''"""A later revision, as other engineers add them after the baseline.

Revision ID: 9003_nickname
Revises: __HEAD__
"""

import sqlalchemy as sa
from alembic import op

revision = "9003_nickname"
down_revision = "__HEAD__"
branch_labels = None
depends_on = None
compatibility = "additive"
since = "0.1.0"


def upgrade() -> None:
    # Not batch mode: rebuilding users on SQLite would lose the lower(username) index.
    op.add_column("users", sa.Column("nickname", sa.String(20), nullable=True))


def downgrade() -> None:
    op.drop_column("users", "nickname")
'''


def test_later_revisions_apply_on_top_of_the_baseline(
    settings: DatabaseSettings, backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a revision after head, the copy still targets 0002 and the upgrade then applies it."""
    location = tmp_path / "migrations"
    shutil.copytree(Path(__file__).resolve().parent.parent / "migrations", location)
    (location / "versions" / "9003_nickname.py").write_text(
        LATER_REVISION.replace("__HEAD__", str(HEAD))
    )
    monkeypatch.setattr("appdb.migrate.chains.script_location", lambda: str(location))
    column = sa.Column("nickname", sa.String(20))
    metadata.tables["users"].append_column(column)
    try:
        seed_backend(settings, backend)
        adopt(settings)
        assert ("9003_nickname",) == migrate.current(settings)
        assert [] == migrate.check(settings)
    finally:
        metadata.tables["users"]._columns.remove(column)
    engine = _engine(settings)
    try:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql("SELECT id, nickname FROM users ORDER BY id").all()
        assert [(1, None), (2, None), (3, None), (7, None), (42, None)] == [tuple(r) for r in rows]
    finally:
        engine.dispose()


def test_quotes_and_percent_in_replaced_values(settings: DatabaseSettings, backend: str) -> None:
    """Usernames equal once lower-cased, with a quote and a percent sign: suffixed intact."""
    seed_backend(settings, backend)
    _execute(
        settings,
        params=[
            (
                (
                    "INSERT INTO users (id, username, email, hashed_password, is_active, is_superuser, "
                    "created_at) VALUES (:id, :u, :e, 'x', true, false, :t)"
                ),
                [
                    {"id": 60, "u": "Pct%O'k", "e": "a@example.com", "t": NAIVE},
                    {"id": 61, "u": "pct%o'k", "e": "b@example.com", "t": NAIVE},
                ],
            )
        ],
    )
    found = plan(settings)
    assert any(
        problem.column == "username" and problem.row_ids == (61,) for problem in found.problems
    )
    adopt(settings, AdoptOptions(duplicates="suffix"))
    engine = _engine(settings)
    try:
        with Session(engine) as session:
            assert "Pct%O'k" == _get(session, 60).username
            assert "pct%o'k_61" == _get(session, 61).username
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_bot_layout_overlong_handle_and_naive_zone(settings: DatabaseSettings) -> None:
    """A 255-character handle is refused until truncation is chosen; naive times read in a zone."""
    seed_bot(settings)
    _execute(settings, f"UPDATE users SET username = '{'h' * 40}' WHERE id = 2")
    found = plan(settings)
    [problem] = found.problems
    assert ("telegram_username", (2,), False) == (problem.column, problem.row_ids, problem.resolved)
    with pytest.raises(MigrationError, match="--long-values truncate"):
        adopt(settings)
    adopt(settings, AdoptOptions(long_values="truncate", naive_timezone="Europe/Berlin"))
    engine = _engine(settings)
    try:
        with Session(engine) as session:
            user = _get(session, 2)
            assert "h" * 32 == user.telegram_username
            # 12:30 in Berlin (CET, UTC+1 on 1 March) is 11:30 UTC.
            assert datetime(2024, 3, 1, 11, 30, tzinfo=UTC) == user.created_at
    finally:
        engine.dispose()
    assert [] == migrate.check(settings)
