"""Every query of appdb.users and appdb.messages uses an index on PostgreSQL at scale.

A database migrated to head is loaded once for the module with 50k users and 200k messages
and analysed; each operation then runs in a transaction that is rolled back, and every
statement it sent is EXPLAINed with the same parameters. Without the indexes, the message
queries would cost at least ten times more, which is checked too: the data set is big enough
for the planner to care.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlmodel import Session

from appdb import DatabaseSettings, create_engine, messages, metadata, users
from appdb.migrate import upgrade

pytestmark = pytest.mark.slow

USERS = 50_000
MESSAGES = 200_000
RECIPIENTS = 1_000  # 200 messages each, 10% of them unread
CONVERSATIONS = 5_000  # 40 messages each

LOAD = [
    f"""
    INSERT INTO users (id, username, email, telegram_user_id, first_name, is_active, is_superuser)
    SELECT i, 'user' || i, 'user' || i || '@example.io', 1000000 + i, 'User', true, false
    FROM generate_series(1, {USERS}) AS i
    """,  # noqa: S608 - constants, no input
    "SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT max(id) FROM users))",
    f"""
    INSERT INTO messages (id, sender_id, recipient_id, content, is_read, parent_id, conversation_id)
    SELECT i, 1 + mod(i * 7919, {USERS}), 1 + mod(i, {RECIPIENTS}), 'message ' || i,
           mod(i, 10) <> 0, CASE WHEN mod(i, 10) = 5 THEN i - 4 END, 'c' || mod(i, {CONVERSATIONS})
    FROM generate_series(1, {MESSAGES}) AS i
    """,  # noqa: S608 - constants, no input
    "SELECT setval(pg_get_serial_sequence('messages', 'id'), (SELECT max(id) FROM messages))",
]

Operation = Callable[[Session], object]

# Each operation, and the index its statements must use (None: any index, checked anyway).
CASES: dict[str, tuple[Operation, str | None]] = {
    "inbox": (lambda s: messages.inbox(s, 7), "ix_messages_recipient_id_id"),
    "inbox_next_page": (
        lambda s: messages.inbox(s, 7, before_id=150_000),
        "ix_messages_recipient_id_id",
    ),
    "inbox_unread": (
        lambda s: messages.inbox(s, 7, unread_only=True),
        "ix_messages_recipient_id_unread",
    ),
    "unread_count": (lambda s: messages.unread_count(s, 7), "ix_messages_recipient_id_unread"),
    "conversation": (
        lambda s: messages.conversation(s, "c42", before_id=150_000),
        "ix_messages_conversation_id_id",
    ),
    "replies": (lambda s: messages.replies(s, 100_000), "ix_messages_parent_id"),
    "mark_read_all": (lambda s: messages.mark_read(s, 7), "ix_messages_recipient_id_unread"),
    "mark_read_ids": (lambda s: messages.mark_read(s, 7, message_ids=[1007, 2007, 3007]), None),
    "mark_read_conversation": (lambda s: messages.mark_read(s, 7, conversation_id="c7"), None),
    "send_message": (
        lambda s: messages.send_message(s, sender_id=1, recipient_id=2, content="hi"),
        "pk_users",
    ),
    "send_reply": (
        lambda s: messages.send_message(
            s, sender_id=1, recipient_id=2, content="re", parent_id=99_999
        ),
        "pk_messages",
    ),
    "send_to_unknown_user": (
        lambda s: _expect_error(
            lambda: messages.send_message(s, sender_id=1, recipient_id=10**9, content="x")
        ),
        None,
    ),
    "touch_existing": (
        lambda s: users.touch_telegram_user(s, 1_000_007),
        "uq_users_telegram_user_id",
    ),
    "touch_new": (lambda s: users.touch_telegram_user(s, 999_999_999), "uq_users_telegram_user_id"),
    "create_user": (
        lambda s: users.create_user(
            s, username="new", email="new@example.io", password="password12"
        ),
        None,  # INSERT ... VALUES ... ON CONFLICT DO NOTHING reads no table
    ),
    "create_user_taken": (
        lambda s: _expect_error(
            lambda: users.create_user(
                s, username="user7", email="x@example.io", password="password12"
            )
        ),
        None,
    ),
    "authenticate_username": (lambda s: users.authenticate(s, "user7", "wrong password"), None),
    "authenticate_email": (
        lambda s: users.authenticate(s, "user7@example.io", "wrong password"),
        None,
    ),
    "get_user_by_username": (
        lambda s: users.get_user_by_username(s, "user7"),
        "uq_users_username_lower",
    ),
    "get_user_by_email": (
        lambda s: users.get_user_by_email(s, "user7@example.io"),
        "uq_users_email",
    ),
    "get_user_by_telegram_id": (
        lambda s: users.get_user_by_telegram_id(s, 1_000_007),
        "uq_users_telegram_user_id",
    ),
    "link_telegram": (lambda s: users.link_telegram(s, 7, 999_999_999), "pk_users"),
}

# Without the secondary indexes of messages, these would cost at least ten times as much.
INDEX_PAYS_OFF = [
    "inbox",
    "inbox_next_page",
    "inbox_unread",
    "unread_count",
    "conversation",
    "replies",
    "mark_read_all",
    "mark_read_conversation",
]
SECONDARY_INDEXES = sorted(cast("str", index.name) for index in metadata.tables["messages"].indexes)


def _expect_error(operation: Callable[[], object]) -> None:
    with pytest.raises(Exception):  # noqa: B017 - only the statements matter here
        operation()


@pytest.fixture(scope="module")
def loaded_engine(postgresql_admin_url: URL) -> Iterator[sa.Engine]:
    """A PostgreSQL database migrated to head, loaded with 200k messages and analysed."""
    name = f"appdb_explain_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgresql_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    settings = DatabaseSettings(url=postgresql_admin_url.set(database=name))
    engine = create_engine(settings)
    try:
        # The shipped migrations, not create_all: their indexes are the ones deployed.
        upgrade(settings=settings)
        with engine.begin() as connection:
            for statement in LOAD:
                connection.exec_driver_sql(statement)
        # VACUUM sets the visibility map, which index-only scans (unread counts) rely on.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE users")
            connection.exec_driver_sql("VACUUM ANALYZE messages")
        yield engine
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _statements_of(engine: sa.Engine, operation: Operation) -> list[tuple[str, Any]]:
    """Run an operation in a transaction that is rolled back; return what it sent."""
    sent: list[tuple[str, Any]] = []

    def record(
        _connection: sa.Connection, _cursor: object, statement: str, parameters: Any, *_rest: object
    ) -> None:
        if not statement.startswith(("SAVEPOINT", "RELEASE", "ROLLBACK")):
            sent.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        with Session(engine) as session:
            operation(session)
            session.rollback()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    return sent


def _plan(connection: sa.Connection, statement: str, parameters: Any) -> dict[str, Any]:
    """PostgreSQL's plan for a statement with these parameters (psycopg decodes the JSON)."""
    explained = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
    plan: dict[str, Any] = explained.scalar_one()[0]
    return plan


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _indexes(plan: dict[str, Any]) -> set[str]:
    """The indexes a plan reads, and those an INSERT ... ON CONFLICT checks."""
    used = {node["Index Name"] for node in _nodes(plan) if "Index Name" in node}
    return used | {
        name for node in _nodes(plan) for name in node.get("Conflict Arbiter Indexes", [])
    }


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize("case", CASES)
def test_queries_use_indexes(backend: str, loaded_engine: sa.Engine, case: str) -> None:
    """No statement of the operation scans a table sequentially; reads go through an index."""
    operation, expected_index = CASES[case]
    statements = _statements_of(loaded_engine, operation)
    assert statements
    used: set[str] = set()
    with loaded_engine.connect() as connection:
        for statement, parameters in statements:
            plan = _plan(connection, statement, parameters)["Plan"]
            scans = [node["Node Type"] for node in _nodes(plan) if "Scan" in node["Node Type"]]
            assert "Seq Scan" not in scans, (statement, plan)
            if scans:
                assert _indexes(plan), (statement, plan)
            used |= _indexes(plan)
    if expected_index is not None:
        assert expected_index in used


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize("case", INDEX_PAYS_OFF)
def test_indexes_matter_at_this_size(backend: str, loaded_engine: sa.Engine, case: str) -> None:
    """Without the indexes a query would cost 10x more: the data set is big enough to tell."""
    ((statement, parameters),) = _statements_of(loaded_engine, CASES[case][0])
    with loaded_engine.connect() as connection:
        with_indexes = _plan(connection, statement, parameters)["Plan"]["Total Cost"]
        # DDL is transactional: the indexes are back once this transaction rolls back.
        for index in SECONDARY_INDEXES:
            connection.exec_driver_sql(f"DROP INDEX {index}")
        without = _plan(connection, statement, parameters)["Plan"]
        connection.rollback()
    assert without["Total Cost"] > 10 * with_indexes, (with_indexes, without)
