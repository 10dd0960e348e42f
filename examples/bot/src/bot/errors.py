"""What the user sees when a handler fails: a polite answer, and the error in the log."""

from __future__ import annotations

import logging

from aiogram import Bot, Router
from aiogram.types import Chat, ErrorEvent
from aiogram.types import User as TelegramUser

from appdb.exceptions import (
    AlreadyExistsError,
    DatabaseUnavailableError,
    InvalidInputError,
    NotFoundError,
    SchemaOutOfDateError,
    TransientError,
)

logger = logging.getLogger("bot")

RETRY_LATER = "Sorry, I cannot reach my database right now. Please try again in a minute."
SOMETHING_WENT_WRONG = "Sorry, something went wrong. Please try again later."
_ANSWERS: tuple[tuple[type[Exception] | tuple[type[Exception], ...], str], ...] = (
    ((DatabaseUnavailableError, SchemaOutOfDateError, TransientError), RETRY_LATER),
    (NotFoundError, "Sorry, I could not find that."),
    (AlreadyExistsError, "Sorry, that is already taken."),
    (InvalidInputError, "Sorry, I could not understand that."),
)


def answer_for(error: Exception) -> str:
    """The text a user gets for `error`; it never contains the error's own message."""
    return next((text for kind, text in _ANSWERS if isinstance(error, kind)), SOMETHING_WENT_WRONG)


async def on_error(
    event: ErrorEvent,
    bot: Bot,
    event_chat: Chat | None = None,
    event_from_user: TelegramUser | None = None,
) -> bool:
    """Log the failed update and, when a person sent it, answer them; the update is handled.

    The session middleware has rolled the update's unit of work back before this runs.
    """
    error = event.exception
    logger.error(
        "update %s failed: %s", event.update.update_id, type(error).__name__, exc_info=error
    )
    # A channel post has no person to apologise to: the channel's readers did nothing.
    if event_chat is not None and event_from_user is not None:
        await bot.send_message(event_chat.id, answer_for(error))
    return True


def create_error_router() -> Router:
    """A router whose error handler answers every update the bot's handlers failed on."""
    router = Router(name="appdb-example-errors")
    router.errors.register(on_error)
    return router
