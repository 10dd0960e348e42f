"""PostgreSQL's refusals reach callers as appdb exceptions without SQL text; the session goes on.

A role without INSERT, a read-only transaction (as on a standby), a deadlock and a
serialization failure each raise their `AppDBError` subclass, and after ``rollback()`` the
same session works again.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlmodel import Session

from appdb import (
    AppDBError,
    DatabaseSettings,
    DeadlockError,
    PermissionDeniedError,
    ReadOnlyTransactionError,
    SerializationError,
    TransientError,
    create_engine,
    metadata,
)
from appdb.users import touch_telegram_user
from pgserver import create_database, drop_database

pytestmark = pytest.mark.postgresql_only

COUNT_USERS = sa.text("SELECT count(*) FROM users")
BUMP = sa.text("UPDATE users SET bio = 'x' WHERE telegram_user_id = :tg")


@pytest.fixture
def pg_url(postgresql_admin_url: URL) -> Iterator[URL]:
    """A fresh database with appdb's tables and two users (Telegram ids 1 and 2)."""
    url = create_database(postgresql_admin_url, "appdb_refusals")
    engine = create_engine(DatabaseSettings(url=url))
    metadata.create_all(engine)
    with Session(engine) as session:
        touch_telegram_user(session, 1)
        touch_telegram_user(session, 2)
        session.commit()
    engine.dispose()
    try:
        yield url
    finally:
        drop_database(postgresql_admin_url, url)


def assert_clean(error: AppDBError) -> None:
    """The message carries no SQL text and no parameters."""
    text = str(error)
    for fragment in ("INSERT INTO", "UPDATE users", "SELECT", "VALUES", "[SQL", "%("):
        assert fragment not in text
    assert "roll the session back" in text


def assert_usable_after_rollback(session: Session) -> None:
    session.rollback()
    assert 2 == session.scalar(COUNT_USERS)


def test_permission_denied(pg_url: URL, postgresql_admin_url: URL) -> None:
    """A role with SELECT only: a write raises PermissionDeniedError."""
    role = f"appdb_ro_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(postgresql_admin_url, isolation_level="AUTOCOMMIT")
    owner = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
    with owner.connect() as connection:
        connection.exec_driver_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    engine = create_engine(DatabaseSettings(url=pg_url.set(username=role)))
    try:
        with Session(engine) as session:
            with pytest.raises(PermissionDeniedError, match="permission denied") as info:
                touch_telegram_user(session, 3)
            assert isinstance(info.value, PermissionError)
            assert_clean(info.value)
            assert_usable_after_rollback(session)
    finally:
        engine.dispose()
        with owner.connect() as connection:
            connection.exec_driver_sql(f"DROP OWNED BY {role}")
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP ROLE {role}")
        owner.dispose()
        admin.dispose()


def test_read_only_transaction(pg_url: URL) -> None:
    """default_transaction_read_only (what a standby enforces): ReadOnlyTransactionError."""
    url = pg_url.update_query_dict({"options": "-c default_transaction_read_only=on"})
    engine = create_engine(DatabaseSettings(url=url))
    try:
        with Session(engine) as session:
            with pytest.raises(ReadOnlyTransactionError, match="read-only transaction") as info:
                touch_telegram_user(session, 3)
            assert_clean(info.value)
            assert_usable_after_rollback(session)
    finally:
        engine.dispose()


def test_deadlock(pg_url: URL) -> None:
    """Two transactions locking two rows in opposite orders: one gets DeadlockError."""
    engine = create_engine(DatabaseSettings(url=pg_url, pool_size=2))
    outcomes: dict[str, BaseException | None] = {}
    both_hold_one = threading.Barrier(2)

    def lock(name: str, first: int, second: int) -> None:
        with Session(engine) as session:
            session.execute(BUMP, {"tg": first})
            both_hold_one.wait()
            try:
                session.execute(BUMP, {"tg": second})
                session.commit()
                outcomes[name] = None
            except Exception as exc:  # noqa: BLE001 - recorded for the asserts
                outcomes[name] = exc
                assert_usable_after_rollback(session)

    threads = [
        threading.Thread(target=lock, args=("a", 1, 2)),
        threading.Thread(target=lock, args=("b", 2, 1)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    engine.dispose()
    errors = [error for error in outcomes.values() if error is not None]
    assert 2 == len(outcomes)
    assert 1 == len(errors)
    assert isinstance(errors[0], DeadlockError)
    assert isinstance(errors[0], TransientError)
    assert "deadlock detected" in str(errors[0])
    assert_clean(errors[0])


def test_serialization_failure(pg_url: URL) -> None:
    """REPEATABLE READ updating a row another transaction changed: SerializationError."""
    engine = create_engine(DatabaseSettings(url=pg_url))
    try:
        with Session(engine.execution_options(isolation_level="REPEATABLE READ")) as session:
            assert 2 == session.scalar(COUNT_USERS)  # takes the snapshot
            with Session(engine) as other:
                other.execute(BUMP, {"tg": 1})
                other.commit()
            with pytest.raises(SerializationError, match="could not serialize") as info:
                session.execute(BUMP, {"tg": 1})
            assert isinstance(info.value, TransientError)
            assert_clean(info.value)
            assert_usable_after_rollback(session)
    finally:
        engine.dispose()
