"""appdb.aio: the async twins behave as the sync operations do, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Session, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from appdb import (
    DatabaseSettings,
    EmailTakenError,
    IdempotencyKeyReusedError,
    InvalidInputError,
    Message,
    MessageNotFoundError,
    TelegramIdTakenError,
    User,
    UsernameTakenError,
    UserNotFoundError,
    aio,
    create_async_engine,
    messages,
    users,
)

pytestmark = pytest.mark.anyio

PASSWORD = "correct horse battery"


async def _count(session: AsyncSession, model: type) -> int:
    return (await session.exec(select(func.count()).select_from(model))).one()


@pytest.mark.parametrize("name", aio.__all__)
def test_twins_match_the_sync_operations(name: str) -> None:
    """Every twin is a coroutine function with its original's name, arguments and defaults."""
    twin = getattr(aio, name)
    original = _original(name)
    twin_parameters = list(inspect.signature(twin).parameters.values())
    original_parameters = list(inspect.signature(original).parameters.values())
    assert inspect.iscoroutinefunction(twin)
    assert (name, "appdb.aio") == (twin.__name__, twin.__module__)
    assert [(p.name, p.kind, p.default) for p in original_parameters[1:]] == [
        (p.name, p.kind, p.default) for p in twin_parameters[1:]
    ]
    assert "session" == twin_parameters[0].name
    assert f"Async twin of `{original.__module__}.{name}`" in twin.__doc__


def _original(name: str) -> Callable[..., object]:
    function: Callable[..., object] = getattr(users if hasattr(users, name) else messages, name)
    return function


def test_every_operation_has_a_twin() -> None:
    """appdb.aio covers appdb.users and appdb.messages completely."""
    names = [*users.__all__, *messages.__all__]
    assert {name for name in names if inspect.isfunction(_original(name))} == set(aio.__all__)


async def test_touch(async_session: AsyncSession, async_statements: list[str]) -> None:
    """Touch creates, then refreshes the same row, one statement each time."""
    created = await aio.touch_telegram_user(async_session, 42, first_name="Ann")
    refreshed = await aio.touch_telegram_user(async_session, 42, first_name="Anna", is_premium=True)
    await async_session.commit()
    assert (created.id, "Anna", True) == (refreshed.id, refreshed.first_name, refreshed.is_premium)
    assert created is refreshed
    assert 2 == len(async_statements)
    assert 1 == await _count(async_session, User)


async def test_concurrent_first_touches_make_one_row(
    settings: DatabaseSettings, async_engine: AsyncEngine
) -> None:
    """12 tasks, each with its own session, touching a new id at once: one row, no error."""
    tasks = 12
    racing = create_async_engine(settings.model_copy(update={"pool_size": tasks}))
    start = asyncio.Barrier(tasks)

    async def touch(index: int) -> int:
        async with AsyncSession(racing, expire_on_commit=False) as session:
            await start.wait()
            user = await aio.touch_telegram_user(session, 777, first_name=f"Ann {index}")
            await session.commit()
            return user.id

    ids = await asyncio.gather(*(touch(index) for index in range(tasks)))
    await racing.dispose()
    async with AsyncSession(async_engine) as session:
        rows = (await session.exec(select(User))).all()
    assert [rows[0].id] * tasks == ids
    assert 1 == len(rows)


async def test_create_user_and_authenticate(async_session: AsyncSession) -> None:
    """Registration and login work as in sync code; login records last_login_at."""
    user = await aio.create_user(
        async_session, username="ann", email="Ann@Example.IO", password=PASSWORD
    )
    assert ("ann@example.io", None) == (user.email, user.last_login_at)
    assert user is await aio.authenticate(async_session, "ANN@example.io", PASSWORD)
    assert user.last_login_at is not None
    assert await aio.authenticate(async_session, "ann", "wrong password") is None
    assert await aio.authenticate(async_session, "nobody", PASSWORD) is None


@pytest.mark.parametrize(
    ("username", "email", "error"),
    [("ann", "bob@example.io", UsernameTakenError), ("bob", "ANN@example.io", EmailTakenError)],
)
async def test_create_user_duplicates_keep_transaction(
    async_session: AsyncSession, username: str, email: str, error: type
) -> None:
    """A duplicate raises its error and the rest of the transaction still commits."""
    await aio.create_user(async_session, username="ann", email="ann@example.io", password=PASSWORD)
    await async_session.commit()
    await aio.touch_telegram_user(async_session, 42)
    with pytest.raises(error):
        await aio.create_user(async_session, username=username, email=email, password=PASSWORD)
    await async_session.commit()
    assert 2 == await _count(async_session, User)


async def test_hashing_does_not_block_the_event_loop(async_session: AsyncSession) -> None:
    """Other tasks keep running while a password is hashed and checked."""
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.002)

    async def log_in() -> None:
        await aio.create_user(async_session, username="ann", email="a@x.io", password=PASSWORD)
        await aio.authenticate(async_session, "ann", PASSWORD)
        stop.set()

    started = time.perf_counter()
    await asyncio.gather(ticker(), log_in())
    elapsed = time.perf_counter() - started
    # Two Argon2 hashes take ~40 ms each: ~40 ticks; with the hashing in the loop, ~6.
    assert ticks > 15, (ticks, elapsed)


async def test_bad_input_and_rollback(async_session: AsyncSession) -> None:
    """Bad input raises before any SQL; after a database-side error and rollback, work goes on."""
    with pytest.raises(InvalidInputError, match="telegram_user_id"):
        await aio.touch_telegram_user(async_session, 0)
    with pytest.raises(InvalidInputError, match="limit"):
        await aio.inbox(async_session, 1, limit=501)
    ann = await aio.touch_telegram_user(async_session, 1)
    with pytest.raises(UserNotFoundError, match="recipient"):
        await aio.send_message(async_session, sender_id=ann.id, recipient_id=999, content="x")
    await async_session.rollback()
    bob = await aio.touch_telegram_user(async_session, 2)
    await async_session.commit()
    assert bob.id is not None
    assert 1 == await _count(async_session, User)


async def test_messages(async_session: AsyncSession, async_statements: list[str]) -> None:
    """Send, pages, conversation, replies, unread counts and mark_read, each one statement."""
    ann = await aio.touch_telegram_user(async_session, 1)
    bob = await aio.touch_telegram_user(async_session, 2)
    sent = [
        (
            await aio.send_message(
                async_session,
                sender_id=ann.id,
                recipient_id=bob.id,
                content=f"m{i}",
                conversation_id="c1",
            )
        ).id
        for i in range(5)
    ]
    reply = await aio.send_message(
        async_session, sender_id=bob.id, recipient_id=ann.id, content="re", parent_id=sent[0]
    )
    with pytest.raises(MessageNotFoundError):
        await aio.send_message(
            async_session, sender_id=bob.id, recipient_id=ann.id, content="re", parent_id=999
        )
    async_statements.clear()
    first = await aio.inbox(async_session, bob.id, limit=3)
    second = await aio.inbox(async_session, bob.id, limit=3, before_id=first[-1].id)
    assert [sent[4], sent[3], sent[2]] == [message.id for message in first]
    assert [sent[1], sent[0]] == [message.id for message in second]
    assert [reply.id, *sent[::-1]] == [m.id for m in await aio.conversation(async_session, "c1")]
    assert [reply.id] == [message.id for message in await aio.replies(async_session, sent[0])]
    assert 5 == await aio.unread_count(async_session, bob.id)
    assert 2 == await aio.mark_read(async_session, bob.id, message_ids=sent[:2])
    assert 3 == await aio.unread_count(async_session, bob.id)
    assert [sent[4], sent[3], sent[2]] == [
        message.id for message in await aio.inbox(async_session, bob.id, unread_only=True)
    ]
    assert 8 == len(async_statements)
    await async_session.commit()
    assert 6 == await _count(async_session, Message)


async def test_idempotent_send(async_session: AsyncSession) -> None:
    """A retry with the key returns the stored message; a different message under it raises."""
    ann = await aio.touch_telegram_user(async_session, 1)
    bob = await aio.touch_telegram_user(async_session, 2)
    sent = await aio.send_message(
        async_session, sender_id=ann.id, recipient_id=bob.id, content="hi", idempotency_key="k"
    )
    await async_session.commit()
    again = await aio.send_message(
        async_session, sender_id=ann.id, recipient_id=bob.id, content="hi", idempotency_key="k"
    )
    row = await aio.send_message(
        async_session,
        sender_id=ann.id,
        recipient_id=bob.id,
        content="hi",
        idempotency_key="k",
        as_row=True,
    )
    with pytest.raises(IdempotencyKeyReusedError):
        await aio.send_message(
            async_session, sender_id=ann.id, recipient_id=bob.id, content="x", idempotency_key="k"
        )
    await async_session.commit()
    assert (sent.id, sent.id) == (again.id, row.id)
    assert 1 == await _count(async_session, Message)


async def test_lookups_and_link(async_session: AsyncSession, engine: sa.Engine) -> None:
    """Look-ups find the user; linking a taken Telegram id raises and keeps the transaction."""
    ann = await aio.create_user(
        async_session, username="ann", email="ann@example.io", password=PASSWORD
    )
    await aio.touch_telegram_user(async_session, 7)
    assert ann is await aio.link_telegram(async_session, ann.id, 42)
    with pytest.raises(TelegramIdTakenError):
        await aio.link_telegram(async_session, ann.id, 7)
    assert ann is await aio.get_user_by_username(async_session, "ann")
    assert ann is await aio.get_user_by_email(async_session, "ANN@example.io")
    assert ann is await aio.get_user_by_telegram_id(async_session, 42)
    await async_session.commit()
    with Session(engine) as session:
        stored = session.get(User, ann.id)
        assert stored is not None
        assert 42 == stored.telegram_user_id


async def test_wrong_types_and_over_long_passwords_are_invalid_input(
    async_session: AsyncSession,
) -> None:
    """The async twins raise InvalidInputError for wrong types and over-long passwords too."""
    await aio.create_user(async_session, username="ann", email="ann@x.io", password=PASSWORD)
    with pytest.raises(InvalidInputError, match="login"):
        await aio.authenticate(async_session, None, PASSWORD)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="longer than 1024"):
        await aio.authenticate(async_session, "ann", "p" * 10_000_000)
    with pytest.raises(InvalidInputError, match="longer than 1024"):
        await aio.create_user(async_session, username="bob", email="b@x.io", password="p" * 2000)
    with pytest.raises(InvalidInputError, match="message_ids"):
        await aio.mark_read(async_session, 1, message_ids=5)  # type: ignore[arg-type]
