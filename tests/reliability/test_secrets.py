"""The password in DATABASE_URL and users' password hashes never leak, on a server that checks them.

A throwaway server asks role ``app_secret`` for its password (SCRAM), so the password really
travels; it must still never appear in reprs, exceptions and their tracebacks, log records at
any level with echo on, or `appdb-migrate` output with ``--verbose``. The existing tests cover
`DatabaseSettings` (tests/test_settings.py) and unreachable-server CLI errors (tests/test_cli.py).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from appdb import (
    AppDBError,
    DatabaseSettings,
    DatabaseUnavailableError,
    User,
    UserRead,
    create_async_engine,
    create_engine,
    migrate,
)
from appdb.messages import inbox, send_message
from appdb.users import authenticate, create_user, touch_telegram_user
from pgserver import PostgresServer

pytestmark = pytest.mark.postgresql_only

SCRIPT = str(Path(sys.executable).parent / "appdb-migrate")
# One with '@', '%' and ':' (percent-encoded in the URL), one plain.
PASSWORDS = ["Sx9@Q%w:pLm-Kr", "plainSecretPw4Kq"]
USER_PASSWORD = "correct horse battery"


class SecretDatabase(NamedTuple):
    """Database ``appdb`` owned by ``app_secret``, whose password the server checks."""

    server: PostgresServer
    url: URL
    password: str

    def forms(self) -> set[str]:
        """Every spelling of the password that must never show."""
        return {self.password, quote(self.password, safe=""), quote(self.password)}

    def assert_absent(self, text: str) -> None:
        """Fail if any spelling of the password is in `text`."""
        for form in self.forms():
            assert form not in text


@pytest.fixture(params=PASSWORDS, ids=["special-characters", "plain"])
def secret_db(request: pytest.FixtureRequest, postgres_server: PostgresServer) -> SecretDatabase:
    password = request.param
    postgres_server.execute(f"CREATE ROLE app_secret LOGIN PASSWORD '{password}'")
    postgres_server.execute("CREATE DATABASE appdb OWNER app_secret")
    hba = postgres_server.datadir / "pg_hba.conf"
    hba.write_text(f"host all app_secret 127.0.0.1/32 scram-sha-256\n{hba.read_text()}")
    postgres_server.execute("SELECT pg_reload_conf()")
    url = postgres_server.url("appdb", user="app_secret", password=password)
    return SecretDatabase(postgres_server, url, password)


def _failure_texts(error: BaseException) -> str:
    return str(error) + "".join(traceback.format_exception(error))


def test_server_checks_the_password(secret_db: SecretDatabase) -> None:
    """The fixture is meaningful: a wrong password is refused, with a clean error."""
    engine = create_engine(DatabaseSettings(url=secret_db.url.set(password="wrong-password")))
    with pytest.raises(DatabaseUnavailableError, match="password authentication failed"):
        engine.connect()
    engine.dispose()


@pytest.mark.anyio
async def test_password_absent_from_reprs(secret_db: SecretDatabase) -> None:
    """Engines, their URLs and pools, and sessions, sync and async, print no password."""
    settings = DatabaseSettings(url=secret_db.url)
    engine = create_engine(settings)
    async_engine = create_async_engine(settings)
    texts = [
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        repr(engine),
        str(engine.url),
        repr(engine.url),
        repr(engine.pool),
        engine.pool.status(),
        repr(async_engine),
        str(async_engine.url),
    ]
    with Session(engine) as session:
        session.scalar(sa.text("SELECT 1"))
        texts += [repr(session), str(session), repr(session.get_bind()), repr(session.connection())]
    async with AsyncSession(async_engine) as async_session:
        await async_session.scalar(sa.text("SELECT 1"))
        texts += [repr(async_session), repr(async_session.bind)]
    await async_engine.dispose()
    engine.dispose()
    assert any("app_secret" in text for text in texts)
    secret_db.assert_absent("\n".join(texts))


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every record of every logger at DEBUG."""
    for name in (None, "sqlalchemy", "alembic", "psycopg", "appdb"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    return "\n".join(handler.format(record) for record in caplog.records)


@pytest.mark.parametrize("echo", [True, False], ids=["echo", "no-echo"])
def test_password_and_hashes_absent_from_logs_and_errors(
    secret_db: SecretDatabase,
    all_logs: pytest.LogCaptureFixture,
    echo: bool,  # noqa: FBT001
) -> None:
    """Migrations, operations, failures: no log record or error shows a password or hash.

    Every logger is at DEBUG, so with echo off SQLAlchemy logs fetched rows too.
    """
    settings = DatabaseSettings(url=secret_db.url, echo=echo, pool_pre_ping=False)
    migrate.upgrade(settings=settings)
    engine = create_engine(settings, echo_pool="debug")
    with Session(engine) as session:
        ann = create_user(session, username="ann", email="Ann@x.io", password=USER_PASSWORD)
        bot = touch_telegram_user(session, 42, first_name="Bot")
        send_message(session, sender_id=bot.id, recipient_id=ann.id, content="hello")
        inbox(session, ann.id)
        session.commit()
        assert authenticate(session, "ann", USER_PASSWORD) is not None
        user = session.get(User, ann.id)
        assert user is not None
        shown = repr(user) + UserRead.model_validate(user).model_dump_json()
        stored_hash = user.hashed_password
        session.commit()

    failures: list[str] = []
    wrong = create_engine(
        DatabaseSettings(url=secret_db.url.set(password="nope-" + secret_db.password))
    )
    with pytest.raises(DatabaseUnavailableError) as refused:
        wrong.connect()
    failures.append(_failure_texts(refused.value))
    secret_db.server.restart()
    with Session(engine) as session, pytest.raises(AppDBError) as lost:
        session.scalar(sa.text("SELECT 1"))
    failures.append(_failure_texts(lost.value))
    secret_db.server.stop()
    with Session(engine) as session, pytest.raises(DatabaseUnavailableError) as down:
        session.scalar(sa.text("SELECT 1"))
    failures.append(_failure_texts(down.value))
    engine.dispose()

    logged = _logged(all_logs)
    assert "SELECT" in logged or "select" in logged
    assert "Running upgrade" in logged
    assert stored_hash is not None
    assert stored_hash.startswith("$argon2id$")
    for text in (logged, shown, *failures):
        secret_db.assert_absent(text)
        assert stored_hash not in text
        assert "$argon2" not in text
        assert USER_PASSWORD not in text


def _cli(*args: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    return subprocess.run(
        [SCRIPT, *args],
        env=environment | {"DATABASE_URL": url},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_cli_output_never_shows_password(secret_db: SecretDatabase, tmp_path: Path) -> None:
    """appdb-migrate -v: successes, a wrong password and a stopped server print no password."""
    url = secret_db.url.render_as_string(hide_password=False)
    outputs = []
    for args in (["-v", "upgrade"], ["-v", "current"], ["-v", "check"]):
        result = _cli(*args, url=url, cwd=tmp_path)
        assert 0 == result.returncode, result.stderr
        outputs.append(result.stdout + result.stderr)
    with_option = subprocess.run(
        [SCRIPT, "-v", "--database-url", url, "current"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == with_option.returncode
    outputs.append(with_option.stdout + with_option.stderr)

    wrong = secret_db.url.set(password=secret_db.password + "x").render_as_string(
        hide_password=False
    )
    refused = _cli("-v", "upgrade", url=wrong, cwd=tmp_path)
    assert 1 == refused.returncode
    assert "Traceback" in refused.stderr
    assert "password authentication failed" in refused.stderr
    outputs.append(refused.stdout + refused.stderr)
    secret_db.server.stop()
    down = _cli("-v", "upgrade", url=url, cwd=tmp_path)
    assert 1 == down.returncode
    assert f"127.0.0.1:{secret_db.server.port}" in down.stderr
    outputs.append(down.stdout + down.stderr)
    for output in outputs:
        secret_db.assert_absent(output)


def _query_password_urls(secret_db: SecretDatabase) -> list[str]:
    """The URL with the password as ``?password=``: percent-encoded, and raw where it parses."""
    base = secret_db.url.set(password=None).render_as_string(hide_password=False)
    urls = [f"{base}?password={quote(secret_db.password, safe='')}"]
    if quote(secret_db.password, safe="") == secret_db.password:
        urls.append(f"{base}?password={secret_db.password}")
    return urls


@pytest.mark.anyio
async def test_query_password_hidden_on_every_path(secret_db: SecretDatabase) -> None:
    """A ``?password=`` URL connects, and reprs, dumps and errors never show the password."""
    for url in _query_password_urls(secret_db):
        settings = DatabaseSettings(url=url)
        engine = create_engine(settings)
        async_engine = create_async_engine(settings)
        with engine.connect() as connection:  # the server checks it: the password was used
            assert 1 == connection.exec_driver_sql("SELECT 1").scalar_one()
        async with async_engine.connect() as connection:
            assert 1 == (await connection.exec_driver_sql("SELECT 1")).scalar_one()
        texts = [
            repr(settings),
            str(settings),
            settings.model_dump_json(),
            repr(engine),
            str(engine.url),
            repr(engine.url),
            repr(async_engine),
            str(async_engine.url),
        ]
        wrong = create_engine(DatabaseSettings(url=url.replace("?password=", "?password=no")))
        with pytest.raises(DatabaseUnavailableError, match="password authentication") as refused:
            wrong.connect()
        texts.append(_failure_texts(refused.value))
        wrong.dispose()
        await async_engine.dispose()
        engine.dispose()
        assert all("app_secret" in text for text in texts[:2])
        secret_db.assert_absent("\n".join(texts))


def test_logging_name_engine_logs_no_hashes(
    secret_db: SecretDatabase, all_logs: pytest.LogCaptureFixture
) -> None:
    """An engine with its own logging_name logs fetched rows at DEBUG without Argon2 hashes."""
    settings = DatabaseSettings(url=secret_db.url)
    migrate.upgrade(settings=settings)
    engine = create_engine(settings, logging_name="svc")
    with Session(engine) as session:
        create_user(session, username="ann", email="ann@x.io", password=USER_PASSWORD)
        session.commit()
        assert authenticate(session, "ann", USER_PASSWORD) is not None
        stored = session.scalar(sa.select(User.hashed_password))  # type: ignore[call-overload]
    engine.dispose()
    assert stored is not None
    from_engine = [r for r in all_logs.records if r.name == "sqlalchemy.engine.Engine.svc"]
    assert any("Row" in record.getMessage() for record in from_engine)
    logged = _logged(all_logs)
    assert stored not in logged
    assert "$argon2" not in logged


def test_user_dumps_leave_out_the_hash(secret_db: SecretDatabase) -> None:
    """User.model_dump(), model_dump_json() and repr() omit hashed_password; the ORM stores it."""
    settings = DatabaseSettings(url=secret_db.url)
    migrate.upgrade(settings=settings)
    engine = create_engine(settings)
    with Session(engine) as session:
        user = User(username="ann", email="ann@x.io", hashed_password="$argon2id$v=19$orm-write")
        session.add(user)
        session.commit()
        session.refresh(user)
        assert "$argon2id$v=19$orm-write" == user.hashed_password
        assert "hashed_password" not in user.model_dump()
        for text in (str(user.model_dump()), user.model_dump_json(), repr(user), str(user)):
            assert "$argon2" not in text
        stored = session.scalar(sa.text("SELECT hashed_password FROM users"))
    engine.dispose()
    assert "$argon2id$v=19$orm-write" == stored
