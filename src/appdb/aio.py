"""Async twins of `appdb.users` and `appdb.messages`, for an `AsyncSession` (the bot, async routes).

Each twin has the name, arguments, result and errors of its sync original and runs that very
function in the session with `AsyncSession.run_sync`, so the SQL is the same statement for
statement and there is one implementation to maintain. The twins are written out (not
generated) so that type checkers and `pyright --verifytypes` see their exact signatures and
overloads; `tests/test_aio.py` checks that they keep matching the originals. Hashing and
checking passwords takes tens of milliseconds of CPU, so those steps run in a worker thread
and the event loop keeps serving other updates meanwhile::

    async with async_session_scope() as session:
        user = await aio.touch_telegram_user(session, message.from_user)
        await aio.send_message(session, sender_id=user.id, recipient_id=..., content=...)

The hot twins (`touch_telegram_user`, `send_message`, `inbox` in their row forms,
`unread_count`, `mark_read`) also take the connection of an `async_connection_scope`. There
they await the statement their original builds (its `*_query` function) on asyncpg's
connection itself, without SQLAlchemy's greenlet, and run the original in it only for what
is rare (explaining an insert that inserted nothing) or watched (echo, event listeners).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Literal, overload

from sqlalchemy.ext.asyncio import AsyncSession

from appdb import messages, users
from appdb._accounts import find_login, hash_of, insert_account, record_login, validate_account
from appdb._passwords import check_password, hash_password
from appdb._sql import dialect_name, run_async

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from sqlalchemy.ext.asyncio import AsyncConnection

    from appdb.models import Message, User
    from appdb.rows import MessageRow, UserRow
    from appdb.users import TelegramProfile

__all__ = [
    "authenticate",
    "conversation",
    "create_user",
    "get_user_by_email",
    "get_user_by_telegram_id",
    "get_user_by_username",
    "inbox",
    "link_telegram",
    "mark_read",
    "replies",
    "send_message",
    "touch_telegram_user",
    "unread_count",
]

# The originals' implementations, not their overloads: a twin passes `as_row` on as a bool.
_touch: Callable[..., User | UserRow] = users.touch_telegram_user
_send: Callable[..., Message | MessageRow] = messages.send_message
_inbox: Callable[..., list[Message] | list[MessageRow]] = messages.inbox


@overload
async def touch_telegram_user(
    session: AsyncSession, user_or_id: TelegramProfile, /, *, as_row: Literal[False] = False
) -> User: ...


@overload
async def touch_telegram_user(
    session: AsyncSession | AsyncConnection,
    user_or_id: TelegramProfile,
    /,
    *,
    as_row: Literal[True],
) -> UserRow: ...


@overload
async def touch_telegram_user(
    session: AsyncSession,
    user_or_id: int,
    /,
    *,
    username: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    language_code: str | None = None,
    is_premium: bool | None = None,
    as_row: Literal[False] = False,
) -> User: ...


@overload
async def touch_telegram_user(
    session: AsyncSession | AsyncConnection,
    user_or_id: int,
    /,
    *,
    username: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    language_code: str | None = None,
    is_premium: bool | None = None,
    as_row: Literal[True],
) -> UserRow: ...


async def touch_telegram_user(  # noqa: PLR0913 - the profile's fields, by name
    session: AsyncSession | AsyncConnection,
    user_or_id: int | TelegramProfile,
    /,
    *,
    username: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    language_code: str | None = None,
    is_premium: bool | None = None,
    as_row: bool = False,
) -> User | UserRow:
    """Async twin of `appdb.users.touch_telegram_user`, for an `AsyncSession`.

    The same arguments, result and errors: get-or-create the Telegram user and refresh the
    profile and ``last_login_at`` in one statement. The row form also takes the connection of
    an `async_connection_scope`.
    """
    profile: dict[str, Any] = {
        "username": username,
        "first_name": first_name,
        "last_name": last_name,
        "language_code": language_code,
        "is_premium": is_premium,
    }
    if as_row and not isinstance(session, AsyncSession):
        query = users.touch_query(dialect_name(session), user_or_id, **profile)
        return await run_async(session, query)
    return await session.run_sync(_touch, user_or_id, **profile, as_row=as_row)


async def get_user_by_username(session: AsyncSession, username: str) -> User | None:
    """Async twin of `appdb.users.get_user_by_username`, for an `AsyncSession`."""
    return await session.run_sync(users.get_user_by_username, username)


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    """Async twin of `appdb.users.get_user_by_email`, for an `AsyncSession`."""
    return await session.run_sync(users.get_user_by_email, email)


async def get_user_by_telegram_id(session: AsyncSession, telegram_user_id: int) -> User | None:
    """Async twin of `appdb.users.get_user_by_telegram_id`, for an `AsyncSession`."""
    return await session.run_sync(users.get_user_by_telegram_id, telegram_user_id)


async def link_telegram(session: AsyncSession, user_id: int, telegram_user_id: int) -> User:
    """Async twin of `appdb.users.link_telegram`, for an `AsyncSession`."""
    return await session.run_sync(users.link_telegram, user_id, telegram_user_id)


@overload
async def send_message(
    session: AsyncSession,
    *,
    sender_id: int,
    recipient_id: int,
    content: str,
    parent_id: int | None = None,
    conversation_id: str | None = None,
    idempotency_key: str | None = None,
    as_row: Literal[False] = False,
) -> Message: ...


@overload
async def send_message(
    session: AsyncSession | AsyncConnection,
    *,
    sender_id: int,
    recipient_id: int,
    content: str,
    parent_id: int | None = None,
    conversation_id: str | None = None,
    idempotency_key: str | None = None,
    as_row: Literal[True],
) -> MessageRow: ...


async def send_message(  # noqa: PLR0913 - the message's fields, by name
    session: AsyncSession | AsyncConnection,
    *,
    sender_id: int,
    recipient_id: int,
    content: str,
    parent_id: int | None = None,
    conversation_id: str | None = None,
    idempotency_key: str | None = None,
    as_row: bool = False,
) -> Message | MessageRow:
    """Async twin of `appdb.messages.send_message`, for an `AsyncSession`.

    The same arguments, result and errors, idempotency key included. The row form also takes
    the connection of an `async_connection_scope`.
    """
    message: dict[str, Any] = {
        "sender_id": sender_id,
        "recipient_id": recipient_id,
        "content": content,
        "parent_id": parent_id,
        "conversation_id": conversation_id,
        "idempotency_key": idempotency_key,
    }
    if as_row and not isinstance(session, AsyncSession):
        query = messages.send_message_query(dialect_name(session), **message)
        sent = await run_async(session, query)
        if sent is not None:
            return sent
        # Nothing inserted: the original finds the stored message or says what is missing.
    return await session.run_sync(_send, **message, as_row=as_row)


@overload
async def inbox(
    session: AsyncSession,
    user_id: int,
    *,
    limit: int = messages.DEFAULT_PAGE_SIZE,
    before_id: int | None = None,
    unread_only: bool = False,
    as_rows: Literal[False] = False,
) -> list[Message]: ...


@overload
async def inbox(
    session: AsyncSession | AsyncConnection,
    user_id: int,
    *,
    limit: int = messages.DEFAULT_PAGE_SIZE,
    before_id: int | None = None,
    unread_only: bool = False,
    as_rows: Literal[True],
) -> list[MessageRow]: ...


async def inbox(  # noqa: PLR0913 - the page's parameters, by name
    session: AsyncSession | AsyncConnection,
    user_id: int,
    *,
    limit: int = messages.DEFAULT_PAGE_SIZE,
    before_id: int | None = None,
    unread_only: bool = False,
    as_rows: bool = False,
) -> list[Message] | list[MessageRow]:
    """Async twin of `appdb.messages.inbox`, for an `AsyncSession`.

    The row form also takes the connection of an `async_connection_scope`.
    """
    if as_rows and not isinstance(session, AsyncSession):
        query = messages.inbox_query(
            user_id, limit=limit, before_id=before_id, unread_only=unread_only
        )
        return await run_async(session, query)
    return await session.run_sync(
        _inbox,
        user_id,
        limit=limit,
        before_id=before_id,
        unread_only=unread_only,
        as_rows=as_rows,
    )


async def conversation(
    session: AsyncSession,
    conversation_id: str,
    *,
    limit: int = messages.DEFAULT_PAGE_SIZE,
    before_id: int | None = None,
) -> list[Message]:
    """Async twin of `appdb.messages.conversation`, for an `AsyncSession`."""
    return await session.run_sync(
        messages.conversation, conversation_id, limit=limit, before_id=before_id
    )


async def replies(session: AsyncSession, message_id: int) -> list[Message]:
    """Async twin of `appdb.messages.replies`, for an `AsyncSession`."""
    return await session.run_sync(messages.replies, message_id)


async def unread_count(session: AsyncSession | AsyncConnection, user_id: int) -> int:
    """Async twin of `appdb.messages.unread_count`, for an `AsyncSession`.

    It also takes the connection of an `async_connection_scope`.
    """
    if not isinstance(session, AsyncSession):
        return await run_async(session, messages.unread_count_query(user_id))
    return await session.run_sync(messages.unread_count, user_id)


async def mark_read(
    session: AsyncSession | AsyncConnection,
    user_id: int,
    *,
    message_ids: Iterable[int] | None = None,
    conversation_id: str | None = None,
) -> int:
    """Async twin of `appdb.messages.mark_read`, for an `AsyncSession`.

    It also takes the connection of an `async_connection_scope`.
    """
    if not isinstance(session, AsyncSession):
        query = messages.mark_read_query(
            user_id, message_ids=message_ids, conversation_id=conversation_id
        )
        if query is None:
            return 0
        marked = await run_async(session, query)
        return len(marked)
    return await session.run_sync(
        messages.mark_read, user_id, message_ids=message_ids, conversation_id=conversation_id
    )


async def create_user(  # noqa: PLR0913 - a registration form's fields, by name
    session: AsyncSession,
    *,
    username: str,
    email: str,
    password: str,
    full_name: str | None = None,
    bio: str | None = None,
) -> User:
    """Async twin of `appdb.users.create_user`; the password is hashed in a worker thread.

    The arguments, the result and the errors are those of the sync `create_user`.
    """
    account = validate_account(
        username=username, email=email, password=password, full_name=full_name, bio=bio
    )
    hashed_password = await asyncio.to_thread(hash_password, account.password)
    return await session.run_sync(insert_account, account, hashed_password)


async def authenticate(session: AsyncSession, login: str, password: str) -> User | None:
    """Async twin of `appdb.users.authenticate`; the password is checked in a worker thread.

    The arguments and the result are those of the sync `authenticate`.
    """
    user = await session.run_sync(find_login, login, password)
    check = await asyncio.to_thread(check_password, hash_of(user), password)
    return await session.run_sync(record_login, user, check)
