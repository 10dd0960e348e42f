"""The lightweight row forms of the hot operations (`appdb.rows`), sync and async, both backends."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from appdb import User, aio
from appdb.rows import MessageRow, UserRow
from appdb.users import touch_telegram_user


def test_touch_as_row_is_the_same_upsert(session: Session, statements: list[str]) -> None:
    """A new and an existing user: one statement each, the ORM form's values, no hash, no instance."""
    row = touch_telegram_user(session, 42, username="ann_tg", first_name="Ann", as_row=True)
    assert isinstance(row, UserRow)
    assert (42, "ann_tg", "Ann", None, True) == (
        row.telegram_user_id,
        row.telegram_username,
        row.first_name,
        row.last_name,
        row.is_active,
    )
    assert "hashed_password" not in UserRow._fields
    profile = SimpleNamespace(
        id=42, username=None, first_name="Ann", last_name="Lee", language_code="en", is_premium=None
    )
    again = touch_telegram_user(session, profile, as_row=True)
    assert (row.id, None, "Lee") == (again.id, again.telegram_username, again.last_name)
    assert again.last_login_at is not None
    assert row.last_login_at is not None
    assert again.last_login_at >= row.last_login_at
    assert 2 == len(statements)
    assert [] == [o for o in session.identity_map.values() if isinstance(o, User)]
    user = touch_telegram_user(session, 42, first_name="Ann")
    assert {name: getattr(user, name) for name in ("id", "first_name", "last_name")} == {
        "id": row.id,
        "first_name": "Ann",
        "last_name": None,
    }
    session.commit()


@pytest.mark.anyio
async def test_async_row_forms(async_session: AsyncSession, async_statements: list[str]) -> None:
    """The async twins pass as_row / as_rows through: same rows, one statement each."""
    ann = await aio.touch_telegram_user(async_session, 1, as_row=True)
    bob = await aio.touch_telegram_user(async_session, 2, as_row=True)
    sent = await aio.send_message(
        async_session, sender_id=ann.id, recipient_id=bob.id, content="hi", as_row=True
    )
    page = await aio.inbox(async_session, bob.id, as_rows=True)
    assert 4 == len(async_statements)
    assert isinstance(ann, UserRow)
    assert isinstance(sent, MessageRow)
    assert [sent] == page
    await async_session.commit()


@pytest.mark.parametrize(
    ("handle", "first_name", "last_name", "expected"),
    [
        ("ann_tg", "Ann", None, "@ann_tg"),
        (None, "Ann", "Lee", "Ann Lee"),
        (None, None, "Lee", "Lee"),
        (None, None, None, "User{id}"),
    ],
)
def test_a_user_row_is_addressed_as_its_user(
    session: Session,
    handle: str | None,
    first_name: str | None,
    last_name: str | None,
    expected: str,
) -> None:
    """`UserRow.display_name` is `User.display_name` of the same row."""
    profile = SimpleNamespace(
        id=42,
        username=handle,
        first_name=first_name,
        last_name=last_name,
        language_code=None,
        is_premium=None,
    )
    row = touch_telegram_user(session, profile, as_row=True)
    user = session.get_one(User, row.id)
    assert expected.format(id=row.id) == row.display_name
    assert user.display_name == row.display_name
    user.username = "ann"
    session.flush()
    assert "ann" == touch_telegram_user(session, profile, as_row=True).display_name
