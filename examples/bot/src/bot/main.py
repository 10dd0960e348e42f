"""Build the dispatcher; run the bot with long polling."""

from __future__ import annotations

import asyncio
import os

from aiogram import Bot, Dispatcher
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from appdb.migrate import ensure_schema_current
from bot.errors import create_error_router
from bot.handlers import create_router
from bot.middleware import DbSessionMiddleware


def create_dispatcher(
    session_factory: async_sessionmaker[AsyncSession] | None = None,
) -> Dispatcher:
    """A dispatcher: the session middleware around every update, the handlers, the error handler.

    Args:
        session_factory: Where sessions come from (`AsyncSessionLocal` by default).

    Returns:
        The dispatcher.
    """
    dispatcher = Dispatcher()
    dispatcher.update.outer_middleware(DbSessionMiddleware(session_factory))
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
