"""One `AsyncSession` per update: committed when the handler succeeds, rolled back if it raises."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from appdb import AsyncSessionLocal, async_session_scope
from appdb.aio import touch_telegram_user

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class DbSessionMiddleware(BaseMiddleware):
    """Outer update middleware: hands handlers ``session`` and ``db_user`` (a `UserRow`)."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession] | None = None) -> None:
        """Open sessions from `session_factory` (default `AsyncSessionLocal`; tests pass theirs)."""
        self.session_factory = session_factory or AsyncSessionLocal

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        """Run the handler inside one unit of work."""
        async with async_session_scope(self.session_factory) as session:
            data["session"] = session
            telegram_user = data.get("event_from_user")
            # One race-free upsert: get-or-create, refresh the profile and last_login_at. The
            # row form: handlers read the user, so no ORM instance is built on every update.
            data["db_user"] = (
                None
                if telegram_user is None
                else await touch_telegram_user(session, telegram_user, as_row=True)
            )
            return await handler(event, data)
