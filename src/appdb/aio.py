"""Async twins of `appdb.users` and `appdb.messages`, for an `AsyncSession` (the bot, async routes).

Each twin has the name, arguments, result and errors of its sync original and runs that very
function in the session with `AsyncSession.run_sync`, so the SQL is the same statement for
statement and there is one implementation to maintain. Hashing and checking passwords takes
tens of milliseconds of CPU, so those steps run in a worker thread and the event loop keeps
serving other updates meanwhile::

    async with async_session_scope() as session:
        user = await aio.touch_telegram_user(session, message.from_user)
        await aio.send_message(session, sender_id=user.id, recipient_id=..., content=...)
"""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from appdb import messages, users
from appdb._accounts import find_login, hash_of, insert_account, record_login, validate_account
from appdb._passwords import check_password, hash_password

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import Session

    from appdb.models import User

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

_P = ParamSpec("_P")
_T = TypeVar("_T")


def _twin(
    operation: Callable[Concatenate[Session, _P], _T],
) -> Callable[Concatenate[AsyncSession, _P], Coroutine[Any, Any, _T]]:
    """Make the async twin of a sync operation: same name, arguments, docs, result, errors."""

    async def twin(session: AsyncSession, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await session.run_sync(operation, *args, **kwargs)

    twin.__name__ = twin.__qualname__ = operation.__name__
    twin.__module__ = __name__
    twin.__doc__ = (
        f"Async twin of `{operation.__module__}.{operation.__name__}`, for an `AsyncSession`.\n\n"
        f"{inspect.getdoc(operation)}"
    )
    # help(), IDEs and documentation tools show the real arguments, not *args/**kwargs.
    session, *arguments = inspect.signature(operation).parameters.values()
    twin.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [session.replace(annotation="AsyncSession"), *arguments],
        return_annotation=inspect.signature(operation).return_annotation,
    )
    return twin


touch_telegram_user = _twin(users.touch_telegram_user)
get_user_by_username = _twin(users.get_user_by_username)
get_user_by_email = _twin(users.get_user_by_email)
get_user_by_telegram_id = _twin(users.get_user_by_telegram_id)
link_telegram = _twin(users.link_telegram)
send_message = _twin(messages.send_message)
inbox = _twin(messages.inbox)
conversation = _twin(messages.conversation)
replies = _twin(messages.replies)
unread_count = _twin(messages.unread_count)
mark_read = _twin(messages.mark_read)


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
