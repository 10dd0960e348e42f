"""The API as users type it: checked by ``mypy --strict`` and pyright strict, never run.

A line ending in an ignore comment must be an error: mypy's ``warn_unused_ignores`` (in
``--strict``) and pyright's ``reportUnnecessaryTypeIgnoreComment`` fail on an ignore nobody
needs, so a typo that type checkers stop catching fails the check.
"""

from __future__ import annotations

from sqlalchemy.engine import URL
from sqlmodel import Session

from appdb import (
    DatabaseSettings,
    Message,
    User,
    aio,
    async_connection_scope,
    connection_scope,
)
from appdb.messages import inbox, send_message, unread_count
from appdb.rows import MessageRow, UserRow
from appdb.users import create_user, get_user_by_username, touch_telegram_user

settings = DatabaseSettings(url="postgresql://app@db/app", pool_size=2, statement_timeout=100)
from_url = DatabaseSettings(url=URL.create("sqlite", database="x.sqlite3"), echo=True)
replicas = DatabaseSettings(url="postgresql://app@db/app", replica_urls=["postgresql://r/app"])
pool_size: int = settings.pool_size
url: URL = settings.database_url

DatabaseSettings(pool_sise=2)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
DatabaseSettings(statment_timeout=100)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
DatabaseSettings(pool_size="2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def stored_ids_pass_on(session: Session) -> list[Message]:
    """Rows operations return have ids of type int, ready for the next operation."""
    ann = create_user(session, username="ann", email="ann@example.io", password="correct horse")
    bob = touch_telegram_user(session, 123456789, first_name="Bob")
    message = send_message(session, sender_id=bob.id, recipient_id=ann.id, content="hi")
    message_id: int = message.id
    found: User | None = get_user_by_username(session, "ann")
    if found is not None:
        return inbox(session, found.id, before_id=message_id)
    return []


def rows_on_a_connection() -> int:
    """A connection scope takes the row forms; an ORM form on it is a type error."""
    with connection_scope() as connection:
        bob: UserRow = touch_telegram_user(connection, 123456789, first_name="Bob", as_row=True)
        sent: MessageRow = send_message(
            connection, sender_id=bob.id, recipient_id=bob.id, content="hi", as_row=True
        )
        page: list[MessageRow] = inbox(connection, bob.id, as_rows=True)
        touch_telegram_user(connection, 1)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue,reportArgumentType]
        return sent.id + len(page) + unread_count(connection, bob.id)


async def rows_on_an_async_connection() -> int:
    """The async twins take an async connection scope's connection the same way."""
    async with async_connection_scope() as connection:
        bob: UserRow = await aio.touch_telegram_user(connection, 123456789, as_row=True)
        page: list[MessageRow] = await aio.inbox(connection, bob.id, as_rows=True)
        await aio.inbox(connection, bob.id)  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType]
        return len(page) + await aio.mark_read(connection, bob.id, message_ids=[1])
