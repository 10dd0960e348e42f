"""Feed real aiogram updates to the dispatcher; the bot's API calls land in a recording session."""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.base import BaseSession
from aiogram.methods import SendMessage, TelegramMethod
from aiogram.types import Chat, Message, Update, User
from bot.main import create_dispatcher

_ids = itertools.count(1)


class RecordingSession(BaseSession):
    """A bot session that never touches the network: it records what the bot sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[SendMessage] = []

    async def make_request(
        self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None
    ) -> Any:
        if isinstance(method, SendMessage):
            self.sent.append(method)
            chat = Chat(id=int(method.chat_id), type="private")
            return Message(
                message_id=next(_ids), date=datetime.now(UTC), chat=chat, text=method.text
            )
        return True

    async def stream_content(self, *args: Any, **kwargs: Any) -> AsyncGenerator[bytes, None]:
        raise NotImplementedError
        yield b""

    async def close(self) -> None:
        pass


class FakeTelegram:
    """A dispatcher, a bot on a recording session, and helpers to send it text as a user."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.session = RecordingSession()
        self.bot = Bot(token="42:TEST-TOKEN", session=self.session)

    async def feed(self, update: Update) -> list[str]:
        """Feed any update; return the texts the bot sent in answer."""
        before = len(self.session.sent)
        await self.dispatcher.feed_update(self.bot, update)
        return [str(method.text) for method in self.session.sent[before:]]

    async def text(self, user: User, text: str) -> str:
        """Send `text` as `user`; return what the bot answered."""
        update = Update(
            update_id=next(_ids),
            message=Message(
                message_id=next(_ids),
                date=datetime.now(UTC),
                chat=Chat(id=user.id, type="private"),
                from_user=user,
                text=text,
            ),
        )
        before = len(self.session.sent)
        await self.dispatcher.feed_update(self.bot, update)
        answers = self.session.sent[before:]
        assert 1 == len(answers), answers
        return str(answers[0].text)


def telegram_user(user_id: int, first_name: str, username: str | None = None) -> User:
    return User(id=user_id, is_bot=False, first_name=first_name, username=username)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def telegram(appdb_async_connection_scope) -> FakeTelegram:
    """The bot, its units of work opened inside the test's rolled-back transaction."""
    return FakeTelegram(create_dispatcher(appdb_async_connection_scope))
