"""/start, /inbox, and /send <username> <text>, which stores a message for another user."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.types import Message as TelegramMessage
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from appdb import User
from appdb.aio import get_user_by_username, inbox, mark_read, send_message, unread_count
from appdb.exceptions import InvalidInputError
from appdb.rows import UserRow

INBOX_PAGE = 5


def _orm(connection: AsyncConnection) -> AsyncSession:
    """An ORM session in the update's transaction (a savepoint of it), for the rarer look-ups."""
    return AsyncSession(bind=connection, expire_on_commit=False)


async def _find(connection: AsyncConnection, name: str) -> User | None:
    """A user by web username, else by the Telegram handle they last used."""
    name = name.removeprefix("@")
    async with _orm(connection) as session:
        user = await get_user_by_username(session, name)
        if user is None:
            statement = (
                select(User)
                .where(col(User.telegram_username) == name)
                .order_by(col(User.id).desc())
            )
            user = (await session.exec(statement)).first()
    return user


async def start(message: TelegramMessage, connection: AsyncConnection, db_user: UserRow) -> None:
    """Greet the user with their unread count."""
    unread = await unread_count(connection, db_user.id)
    await message.answer(f"Hi {db_user.display_name}! You have {unread} unread message(s).")


async def show_inbox(
    message: TelegramMessage, connection: AsyncConnection, db_user: UserRow
) -> None:
    """Show the newest unread messages and mark them read."""
    page = await inbox(connection, db_user.id, limit=INBOX_PAGE, unread_only=True, as_rows=True)
    if not page:
        await message.answer("No unread messages.")
        return
    async with _orm(connection) as session:
        senders = {
            user.id: user.display_name
            for user in await session.exec(
                select(User).where(col(User.id).in_({item.sender_id for item in page}))
            )
        }
    lines = [f"{senders[item.sender_id]}: {item.content}" for item in page]
    await mark_read(connection, db_user.id, message_ids=[item.id for item in page])
    await message.answer("\n".join(lines))


async def send(
    message: TelegramMessage,
    command: CommandObject,
    connection: AsyncConnection,
    db_user: UserRow,
) -> None:
    """Store ``/send <username> <text>`` for that user."""
    name, _, text = (command.args or "").partition(" ")
    recipient = await _find(connection, name) if name else None
    if recipient is None or recipient.id is None:
        await message.answer("Usage: /send <username> <text> (to someone who used this bot)")
        return
    try:
        await send_message(
            connection,
            sender_id=db_user.id,
            recipient_id=recipient.id,
            content=text,
            # Telegram redelivers an update it saw no answer to: store the message once.
            idempotency_key=f"tg-{message.chat.id}-{message.message_id}",
            as_row=True,
        )
    except InvalidInputError:
        await message.answer("The message must not be empty.")
        return
    await message.answer(f"Sent to {recipient.display_name}.")


async def fallback(message: TelegramMessage) -> None:
    """Anything else."""
    await message.answer("Commands: /start, /inbox, /send <username> <text>")


def create_router() -> Router:
    """The bot's handlers, on a new router (a router can join one dispatcher only)."""
    router = Router(name="appdb-example")
    router.message.register(start, CommandStart())
    router.message.register(show_inbox, Command("inbox"))
    router.message.register(send, Command("send"))
    router.message.register(fallback, F.text)
    return router
