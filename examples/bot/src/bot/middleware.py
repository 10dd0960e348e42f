"""One unit of work per update: committed when the handler succeeds, rolled back if it raises."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject
from sqlalchemy.ext.asyncio import AsyncConnection

from appdb import async_connection_scope
from appdb.aio import touch_telegram_user

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]
Scope = Callable[[], AbstractAsyncContextManager[AsyncConnection]]


class UnitOfWorkMiddleware(BaseMiddleware):
    """Outer update middleware: hands handlers ``connection`` and ``db_user`` (a `UserRow`).

    The unit of work is a connection, not an ORM session: the touch every update makes, and
    the handlers' hot operations, run at the driver's speed on it; a handler that needs the ORM
    opens an `AsyncSession` on the same connection, in the same transaction.
    """

    def __init__(self, scope: Scope | None = None) -> None:
        """Open units of work with `scope` (default `async_connection_scope`; tests pass theirs)."""
        self.scope = scope or async_connection_scope

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        """Run the handler inside one unit of work."""
        async with self.scope() as connection:
            data["connection"] = connection
            telegram_user = data.get("event_from_user")
            # One race-free upsert: get-or-create, refresh the profile and last_login_at, in
            # the row form: no ORM instance is built on every update.
            data["db_user"] = (
                None
                if telegram_user is None
                else await touch_telegram_user(connection, telegram_user, as_row=True)
            )
            return await handler(event, data)
