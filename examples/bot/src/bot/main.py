"""Build the dispatcher; run the bot with long polling."""

from __future__ import annotations

import asyncio
import os

from aiogram import Bot, Dispatcher

from appdb.migrate import ensure_schema_current
from bot.errors import create_error_router
from bot.handlers import create_router
from bot.middleware import Scope, UnitOfWorkMiddleware


def create_dispatcher(scope: Scope | None = None) -> Dispatcher:
    """A dispatcher: a unit of work around every update, the handlers, the error handler.

    Args:
        scope: Where units of work come from (`async_connection_scope` by default).

    Returns:
        The dispatcher.
    """
    dispatcher = Dispatcher()
    dispatcher.update.outer_middleware(UnitOfWorkMiddleware(scope))
    dispatcher.include_router(create_router())
    dispatcher.include_router(create_error_router())
    return dispatcher


async def main() -> None:
    """Refuse a database at the wrong schema, then poll Telegram."""
    ensure_schema_current()
    bot = Bot(token=os.environ["BOT_TOKEN"])
    await create_dispatcher().start_polling(bot)


def run() -> None:
    """Console-script entry point."""
    asyncio.run(main())
