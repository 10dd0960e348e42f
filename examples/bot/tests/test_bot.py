"""/start, /inbox and /send through aiogram's dispatcher, with one unit of work per update."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from aiogram.types import CallbackQuery, Chat, Update
from aiogram.types import Message as TelegramMessage
from bot.errors import RETRY_LATER, SOMETHING_WENT_WRONG
from bot.handlers import create_router
from bot.main import create_dispatcher
from sqlmodel import select

from appdb import ConnectionLostError, Message, SchemaOutOfDateError, User, UsernameTakenError
from appdb.aio import get_user_by_telegram_id
from conftest import FakeTelegram, telegram_user

pytestmark = pytest.mark.anyio

ANN = telegram_user(1001, "Ann", "ann_tg")
BOB = telegram_user(1002, "Bob", "bob_tg")


async def test_start_touches_the_user(telegram: FakeTelegram, appdb_async_session) -> None:
    """The first update creates the user; the next refreshes the profile, not a second row."""
    assert "Hi @ann_tg! You have 0 unread message(s)." == await telegram.text(ANN, "/start")
    first = await get_user_by_telegram_id(appdb_async_session, ANN.id)
    assert (first.first_name, first.last_login_at is not None) == ("Ann", True)
    renamed = telegram_user(ANN.id, "Annie", "annie")
    assert "Hi @annie!" in await telegram.text(renamed, "/start")
    appdb_async_session.expire_all()
    users = (await appdb_async_session.exec(select(User))).all()
    assert [("Annie", "annie")] == [(u.first_name, u.telegram_username) for u in users]


async def test_send_then_inbox(telegram: FakeTelegram, appdb_async_session) -> None:
    """A message stored for another user shows in their inbox once, then is read."""
    await telegram.text(BOB, "/start")
    assert "Sent to @bob_tg." == await telegram.text(ANN, "/send bob_tg see you at 5")
    assert "You have 1 unread message(s)." in await telegram.text(BOB, "/start")
    assert "@ann_tg: see you at 5" == await telegram.text(BOB, "/inbox")
    assert "No unread messages." == await telegram.text(BOB, "/inbox")
    stored = (await appdb_async_session.exec(select(Message))).one()
    assert ("see you at 5", True) == (stored.content, stored.is_read)


async def test_redelivered_send_is_stored_once(telegram: FakeTelegram, appdb_async_session) -> None:
    """Telegram delivering one /send update twice stores one message (its idempotency key)."""
    await telegram.text(BOB, "/start")
    update = Update(
        update_id=900,
        message=TelegramMessage(
            message_id=901,
            date=datetime.now(UTC),
            chat=Chat(id=ANN.id, type="private"),
            from_user=ANN,
            text="/send bob_tg once",
        ),
    )
    assert ["Sent to @bob_tg."] * 2 == [*await telegram.feed(update), *await telegram.feed(update)]
    stored = (await appdb_async_session.exec(select(Message))).all()
    assert [("once", f"tg-{ANN.id}-901")] == [(m.content, m.idempotency_key) for m in stored]


async def test_bad_sends_store_nothing(telegram: FakeTelegram, appdb_async_session) -> None:
    """An unknown recipient or an empty text is answered, and nothing is stored."""
    assert "Usage:" in await telegram.text(ANN, "/send nobody hello")
    assert "Usage:" in await telegram.text(ANN, "/send")
    assert "must not be empty" in await telegram.text(ANN, "/send ann_tg")
    assert [] == (await appdb_async_session.exec(select(Message))).all()


async def test_failing_handler_rolls_back_and_answers_politely(
    appdb_async_connection_scope, appdb_async_session, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler that raises after writing leaves nothing behind; the user gets an apology."""
    from aiogram.filters import Command

    from appdb.aio import send_message

    dispatcher = create_dispatcher(appdb_async_connection_scope)

    async def explode(message, connection, db_user) -> None:
        await send_message(
            connection, sender_id=db_user.id, recipient_id=db_user.id, content="x", as_row=True
        )
        raise RuntimeError("handler failed: secret detail")

    # Registered ahead of the bot's own router, so it wins for /explode.
    dispatcher.message.register(explode, Command("explode"))
    telegram = FakeTelegram(dispatcher)
    await telegram.text(BOB, "/start")
    with caplog.at_level(logging.ERROR, "bot"):
        assert SOMETHING_WENT_WRONG == await telegram.text(ANN, "/explode")
    assert "RuntimeError" in caplog.text
    assert "handler failed: secret detail" in caplog.text  # the traceback, for the operator
    assert [] == (await appdb_async_session.exec(select(Message))).all()
    assert None is await get_user_by_telegram_id(appdb_async_session, ANN.id)
    assert None is not await get_user_by_telegram_id(appdb_async_session, BOB.id)
    assert create_router() is not create_router()


async def test_database_errors_get_a_retry_answer(appdb_async_connection_scope) -> None:
    """Errors of appdb are answered by kind, never with the error's own message."""
    from aiogram.filters import Command

    dispatcher = create_dispatcher(appdb_async_connection_scope)
    errors = {
        "down": ConnectionLostError("connection to 10.0.0.7:5432 lost"),
        "old": SchemaOutOfDateError("database at revision 0003"),
        "taken": UsernameTakenError("username taken"),
    }

    async def fail(message, command) -> None:
        raise errors[command.command]

    dispatcher.message.register(fail, Command(*errors))
    telegram = FakeTelegram(dispatcher)
    assert RETRY_LATER == await telegram.text(ANN, "/down")
    assert RETRY_LATER == await telegram.text(ANN, "/old")
    assert "already taken" in await telegram.text(ANN, "/taken")


async def test_middleware_serves_updates_without_a_user(
    appdb_async_connection_scope, appdb_async_session
) -> None:
    """A channel post gets a connection and ``db_user=None``; nothing is touched, no KeyError."""
    dispatcher = create_dispatcher(appdb_async_connection_scope)
    seen: list[tuple[bool, object]] = []

    async def on_post(post, connection, db_user) -> None:
        seen.append((connection is not None, db_user))

    dispatcher.channel_post.register(on_post)
    telegram = FakeTelegram(dispatcher)
    post = TelegramMessage(
        message_id=1,
        date=datetime.now(UTC),
        chat=Chat(id=-100123, type="channel", title="news"),
        text="hello channel",
    )
    assert [] == await telegram.feed(Update(update_id=1, channel_post=post))
    assert [(True, None)] == seen
    assert [] == (await appdb_async_session.exec(select(User))).all()


async def test_middleware_touches_the_user_of_any_update_type(
    telegram: FakeTelegram, appdb_async_session
) -> None:
    """A callback query (not a message) touches its user like a message does."""
    query = CallbackQuery(id="q1", from_user=ANN, chat_instance="c", data="x")
    await telegram.feed(Update(update_id=2, callback_query=query))
    touched = await get_user_by_telegram_id(appdb_async_session, ANN.id)
    assert "Ann" == touched.first_name


async def test_each_test_starts_empty(appdb_async_session) -> None:
    """What earlier tests' updates committed is gone."""
    assert [] == (await appdb_async_session.exec(select(User))).all()
