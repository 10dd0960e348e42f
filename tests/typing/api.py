"""The API as users type it: checked by ``mypy --strict`` and pyright strict, never run.

A line ending in an ignore comment must be an error: mypy's ``warn_unused_ignores`` (in
``--strict``) and pyright's ``reportUnnecessaryTypeIgnoreComment`` fail on an ignore nobody
needs, so a typo that type checkers stop catching fails the check.
"""

from __future__ import annotations

from sqlalchemy.engine import URL
from sqlmodel import Session

from appdb import DatabaseSettings, Message, User
from appdb.messages import inbox, send_message
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
