"""The ``appdb.testing`` pytest plugin, run by pytester as a service's test suite would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from appdb.testing import DATABASE_URL_VARIABLE

SERVICE_TESTS = """
import httpx
import pytest
import sqlalchemy as sa
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, select
from sqlmodel.ext.asyncio.session import AsyncSession

from appdb import Message, User, aio, get_async_db, get_db, migrate
from appdb.exceptions import UsernameTakenError
from appdb.testing import override_get_db
from appdb.users import create_user, touch_telegram_user

app = FastAPI()


@app.post("/users/{name}")
def register(name: str, db: Session = Depends(get_db)) -> dict[str, int]:
    user = User(username=name)
    db.add(user)
    db.commit()
    return {"id": user.id}


def test_migrated_through_the_chain(appdb_settings, appdb_engine, appdb_database_url, tmp_path_factory):
    assert migrate.at_heads(migrate.current(appdb_settings))
    (tmp_path_factory.getbasetemp() / "database").write_text(str(appdb_database_url.database))


def test_commits_are_undone_1(appdb_session, appdb_users, appdb_messages):
    ann = appdb_users.create(username="ann")
    bob = appdb_users.telegram()
    appdb_messages.create(bob, ann)
    appdb_session.commit()
    assert 2 == len(appdb_session.exec(select(User)).all())


def test_commits_are_undone_2(appdb_session, appdb_sessionmaker):
    assert [] == appdb_session.exec(select(User)).all()
    with appdb_sessionmaker() as other:
        other.add(User(username="cat"))
        other.commit()
    assert ["cat"] == [u.username for u in appdb_session.exec(select(User)).all()]


def test_rollback_after_error_keeps_the_test_going(appdb_session):
    create_user(appdb_session, username="dan", email="dan@example.com", password="long enough pw")
    appdb_session.commit()
    with pytest.raises(UsernameTakenError):
        create_user(appdb_session, username="dan", email="d2@example.com", password="long enough pw")
    appdb_session.add(User(username="eve"))
    appdb_session.commit()
    try:
        appdb_session.add(User(username="dan"))
        appdb_session.commit()
    except sa.exc.IntegrityError:
        appdb_session.rollback()
    assert {"dan", "eve"} == {u.username for u in appdb_session.exec(select(User)).all()}


def test_route_commit_visible_to_the_test(appdb_session):
    with override_get_db(app, appdb_session), TestClient(app) as client:
        assert 200 == client.post("/users/zed").status_code
    assert get_db not in app.dependency_overrides
    assert ["zed"] == [u.username for u in appdb_session.exec(select(User)).all()]


def test_route_commit_undone(appdb_session):
    assert [] == appdb_session.exec(select(User)).all()


@pytest.mark.anyio
async def test_async_commits_are_undone_1(appdb_async_session, appdb_async_users, appdb_async_messages):
    ann = await appdb_async_users.create(password="correct horse")
    await appdb_async_messages.create(ann, ann, content="note to self")
    await appdb_async_session.commit()
    assert ann.hashed_password.startswith("$argon2id$")
    assert 1 == len((await appdb_async_session.exec(select(Message))).all())


@pytest.mark.anyio
async def test_async_commits_are_undone_2(appdb_async_session):
    assert [] == (await appdb_async_session.exec(select(User))).all()


@app.get("/users/count")
async def count_users(db: AsyncSession = Depends(get_async_db)) -> int:
    return len((await db.exec(select(User))).all())


@pytest.mark.anyio
async def test_async_route_gets_the_async_session(appdb_async_session, appdb_async_users):
    await appdb_async_users.create(username="amy")
    await appdb_async_users.telegram()
    transport = httpx.ASGITransport(app=app)
    with override_get_db(app, appdb_async_session):
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/users/count")
    assert (200, 2) == (response.status_code, response.json())
    assert get_async_db not in app.dependency_overrides


def test_connection_scopes_are_savepoints_of_the_test(appdb_connection_scope, appdb_session):
    with appdb_connection_scope() as connection:
        touch_telegram_user(connection, 7, first_name="Kept", as_row=True)
    with pytest.raises(RuntimeError), appdb_connection_scope() as connection:
        touch_telegram_user(connection, 8, first_name="Lost", as_row=True)
        raise RuntimeError
    assert ["Kept"] == [u.first_name for u in appdb_session.exec(select(User)).all()]


@pytest.mark.anyio
async def test_async_connection_scopes_are_savepoints_of_the_test(
    appdb_async_connection_scope, appdb_async_session
):
    async with appdb_async_connection_scope() as connection:
        await aio.touch_telegram_user(connection, 7, first_name="Kept", as_row=True)
    with pytest.raises(RuntimeError):
        async with appdb_async_connection_scope() as connection:
            await aio.touch_telegram_user(connection, 8, first_name="Lost", as_row=True)
            raise RuntimeError
    users = (await appdb_async_session.exec(select(User))).all()
    assert ["Kept"] == [u.first_name for u in users]


def test_connection_scope_work_is_undone(appdb_session):
    assert [] == appdb_session.exec(select(User)).all()


def test_empty_database_is_not_migrated(appdb_empty_database_url):
    engine = sa.create_engine(appdb_empty_database_url)
    try:
        assert [] == sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def plugin_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> URL | None:
    """Point the plugin at SQLite, or at the PostgreSQL server the suite uses."""
    if request.param == "sqlite":
        monkeypatch.setenv(DATABASE_URL_VARIABLE, "sqlite")
        return None
    admin_url: URL = request.getfixturevalue("postgresql_admin_url")
    monkeypatch.setenv(DATABASE_URL_VARIABLE, admin_url.render_as_string(hide_password=False))
    return admin_url


def _database_exists(admin_url: URL, name: str) -> bool:
    engine = sa.create_engine(admin_url)
    try:
        with engine.connect() as connection:
            query = sa.text("SELECT count(*) FROM pg_database WHERE datname = :name")
            return bool(connection.execute(query, {"name": name}).scalar())
    finally:
        engine.dispose()


def test_service_suite_passes_isolated(
    pytester: pytest.Pytester, plugin_backend: URL | None
) -> None:
    """Migrated once, every commit undone between tests, sync and async, FastAPI overridden."""
    pytester.makepyfile(test_service=SERVICE_TESTS)
    result = pytester.runpytest("-p", "anyio")
    result.assert_outcomes(passed=13)
    backend = "SQLite" if plugin_backend is None else "postgresql+psycopg://postgres@127.0.0.1"
    assert any(f"appdb: test databases on {backend}" in line for line in result.outlines)
    name = (Path(str(pytester.path)).parent / "basetemp" / "database").read_text()
    if plugin_backend is not None:
        assert not _database_exists(plugin_backend, name), "the test database was not dropped"


def test_plugin_is_opt_in(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests that request no appdb fixture never touch a database (even an unreachable one)."""
    monkeypatch.setenv(DATABASE_URL_VARIABLE, "postgresql://nobody@127.0.0.1:9/none")
    pytester.makepyfile("def test_plain():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=1)


def test_unreachable_server_fails_the_tests(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PostgreSQL URL that does not answer is an error, never a silent fallback to SQLite."""
    monkeypatch.setenv(DATABASE_URL_VARIABLE, "postgresql://nobody:s3cret-pw@127.0.0.1:9/none")
    pytester.makepyfile("def test_db(appdb_session):\n    pass\n")
    # A process of its own, as in a service: in-process runs share imported driver modules.
    result = pytester.runpytest_subprocess("-q")
    result.assert_outcomes(errors=1)
    assert "s3cret-pw" not in result.stdout.str()
    assert any(
        "APPDB_TEST_DATABASE_URL: cannot create a test database on PostgreSQL at 127.0.0.1:9"
        in line
        for line in result.outlines
    )


def test_plugin_imports_cheaply(tmp_path: Path) -> None:
    """Pytest loads the plugin wherever appdb is installed: no Alembic, FastAPI or Docker client."""
    code = (
        "import sys, appdb.testing\n"
        "print(sorted(m for m in ('alembic', 'fastapi', 'testcontainers', 'docker') "
        "if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert (0, "[]") == (result.returncode, result.stdout.strip()), result.stderr
