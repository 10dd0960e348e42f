"""Factories that insert users and messages with unique, sensible defaults.

The defaults are built once, in `_user` and `_message`; the sync and async factories only
differ in how they flush (`_SyncFactory` / `_AsyncFactory`).
"""

from __future__ import annotations

import itertools
from typing import Any, Generic, TypeVar

from sqlmodel import Session, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from appdb._passwords import hash_password
from appdb.models import Message, User

__all__ = ["AsyncMessageFactory", "AsyncUserFactory", "MessageFactory", "UserFactory"]

SessionT = TypeVar("SessionT", Session, AsyncSession)
RowT = TypeVar("RowT", bound=SQLModel)

_sequence = itertools.count(1)


def _user(fields: dict[str, Any], *, telegram: bool) -> User:
    n = next(_sequence)
    password = fields.pop("password", None)
    if password is not None:
        fields["hashed_password"] = hash_password(password)
    if telegram:
        defaults: dict[str, Any] = {"telegram_user_id": 7_000_000_000 + n, "first_name": f"Tg{n}"}
    else:
        defaults = {"username": f"user{n}", "email": f"user{n}@example.com"}
    return User(**(defaults | fields))


def _message(sender: User | int, recipient: User | int, fields: dict[str, Any]) -> Message:
    def key(user: User | int) -> int:
        if isinstance(user, int):
            return user
        if user.id is None:
            msg = "the user has no id yet: flush it first"
            raise ValueError(msg)
        return user.id

    defaults = {"content": f"message {next(_sequence)}"}
    return Message(sender_id=key(sender), recipient_id=key(recipient), **(defaults | fields))


class _Factory(Generic[SessionT]):
    """What every factory holds: the session it inserts into."""

    def __init__(self, session: SessionT) -> None:
        """Insert into `session` (flushed, not committed)."""
        self.session: SessionT = session


class _SyncFactory(_Factory[Session]):
    """A factory on a sync session: rows are added and flushed, so they have their ids."""

    def _insert(self, row: RowT) -> RowT:
        self.session.add(row)
        self.session.flush()
        return row


class _AsyncFactory(_Factory[AsyncSession]):
    """A factory on an async session: rows are added and flushed, so they have their ids."""

    async def _insert(self, row: RowT) -> RowT:
        self.session.add(row)
        await self.session.flush()
        return row


class UserFactory(_SyncFactory):
    """Insert users with unique defaults; hashing happens only when a password is given."""

    def create(self, **fields: Any) -> User:
        """Insert a web account (``username`` ``userN``, ``email`` ``userN@example.com``).

        Args:
            **fields: `User` fields overriding the defaults; ``password`` is hashed.

        Returns:
            The flushed user, with its id.
        """
        return self._insert(_user(fields, telegram=False))

    def telegram(self, **fields: Any) -> User:
        """Insert a Telegram user (a unique ``telegram_user_id``, ``first_name`` ``TgN``).

        Args:
            **fields: `User` fields overriding the defaults.

        Returns:
            The flushed user, with its id.
        """
        return self._insert(_user(fields, telegram=True))


class MessageFactory(_SyncFactory):
    """Insert messages between users."""

    def create(self, sender: User | int, recipient: User | int, **fields: Any) -> Message:
        """Insert a message from `sender` to `recipient` (``content`` ``message N`` by default).

        Args:
            sender: The sending user or its id.
            recipient: The receiving user or its id.
            **fields: `Message` fields overriding the defaults.

        Returns:
            The flushed message, with its id.
        """
        return self._insert(_message(sender, recipient, fields))


class AsyncUserFactory(_AsyncFactory):
    """The async twin of `UserFactory`."""

    async def create(self, **fields: Any) -> User:
        """Insert a web account; see `UserFactory.create`.

        Args:
            **fields: `User` fields overriding the defaults; ``password`` is hashed.

        Returns:
            The flushed user, with its id.
        """
        return await self._insert(_user(fields, telegram=False))

    async def telegram(self, **fields: Any) -> User:
        """Insert a Telegram user; see `UserFactory.telegram`.

        Args:
            **fields: `User` fields overriding the defaults.

        Returns:
            The flushed user, with its id.
        """
        return await self._insert(_user(fields, telegram=True))


class AsyncMessageFactory(_AsyncFactory):
    """The async twin of `MessageFactory`."""

    async def create(self, sender: User | int, recipient: User | int, **fields: Any) -> Message:
        """Insert a message; see `MessageFactory.create`.

        Args:
            sender: The sending user or its id.
            recipient: The receiving user or its id.
            **fields: `Message` fields overriding the defaults.

        Returns:
            The flushed message, with its id.
        """
        return await self._insert(_message(sender, recipient, fields))
