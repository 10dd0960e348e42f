"""Lightweight results: plain named tuples of a row, for callers that need no ORM instance.

The hot operations return model instances by default. With ``as_row=True``
(`touch_telegram_user`, `send_message`) or ``as_rows=True`` (`inbox`) they run the same one
statement on the driver's cursor of the session's own connection, in the caller's transaction
(through SQLAlchemy's execution whenever the SQL is watched: echo, logging, event listeners), and
return these tuples instead: no identity map entry, no attribute instrumentation, nothing to
refresh or expire, about half of the Python work per call. A `UserRow` leaves out the
password hash; the values are what the database returned, so they never go stale within the
call but are not updated by later writes either.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from appdb.models.user import User

__all__ = ["MessageRow", "UserRow"]


def _display_name(user: User | UserRow) -> str:
    """How to address `user`: username, Telegram handle, names, else ``User<id>``."""
    if user.username:
        return user.username
    if user.telegram_username:
        return f"@{user.telegram_username}"
    names = " ".join(part for part in (user.first_name, user.last_name) if part)
    return names or user.full_name or f"User{user.id}"


class UserRow(NamedTuple):
    """A `User` as a tuple, without `hashed_password` (fields in the table's column order)."""

    created_at: datetime
    updated_at: datetime
    id: int
    username: str | None
    email: str | None
    full_name: str | None
    bio: str | None
    is_active: bool
    is_superuser: bool
    telegram_user_id: int | None
    telegram_username: str | None
    first_name: str | None
    last_name: str | None
    language_code: str | None
    is_premium: bool | None
    last_login_at: datetime | None

    @property
    def display_name(self) -> str:
        """How to address the user, as `User.display_name` does."""
        return _display_name(self)


class MessageRow(NamedTuple):
    """A `Message` as a tuple (fields in the table's column order)."""

    created_at: datetime
    updated_at: datetime
    id: int
    sender_id: int
    recipient_id: int
    content: str
    is_read: bool
    parent_id: int | None
    conversation_id: str | None
    idempotency_key: str | None
