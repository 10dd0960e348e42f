"""users and messages: constraints, defaults, timestamps, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from appdb import Message, User, metadata
from appdb.models.types import BIGINT_MAX


def _user(session: Session, **fields: Any) -> User:
    user = User(**fields)
    session.add(user)
    session.commit()
    session.refresh(user)
    return user


def _violates(session: Session, obj: object) -> None:
    session.add(obj)
    with pytest.raises(sa.exc.IntegrityError):
        session.flush()
    session.rollback()


@pytest.mark.parametrize("field", ["username", "email", "telegram_user_id"])
def test_unique_identities(session: Session, field: str) -> None:
    """Usernames, emails and Telegram ids are unique; the first row survives the clash."""
    value: Any = 77 if field == "telegram_user_id" else "same@x.io"
    first = _user(session, **{field: value})
    _violates(session, User(**{field: value}))
    assert [first.id] == session.exec(select(User.id)).all()


def test_telegram_username_is_not_unique(session: Session) -> None:
    """Telegram handles change hands, so two rows may carry the same one."""
    _user(session, telegram_user_id=1, telegram_username="handle")
    _user(session, telegram_user_id=2, telegram_username="handle")
    assert 2 == len(session.exec(select(User)).all())


def test_identity_check(session: Session) -> None:
    """A row must be a web account, a Telegram user, or both."""
    _violates(session, User(full_name="Nobody"))
    both = _user(session, username="ann", email="ann@x.io", telegram_user_id=5)
    assert both.id is not None


def test_email_must_be_lower_case(session: Session) -> None:
    """The CHECK backs up the normalisation the schemas and operations do."""
    _violates(session, User(email="Ann@X.io"))


def test_telegram_id_range(session: Session) -> None:
    """Telegram ids are positive and fit in BIGINT up to 2**63-1."""
    _violates(session, User(telegram_user_id=0))
    big = _user(session, telegram_user_id=BIGINT_MAX)
    session.expire_all()
    stored = session.get(User, big.id)
    assert stored is not None
    assert BIGINT_MAX == stored.telegram_user_id


def test_message_foreign_keys(session: Session) -> None:
    """Senders, recipients and parents must exist (SQLite too: foreign keys are on)."""
    ann = _user(session, username="ann")
    _violates(session, Message(sender_id=ann.id, recipient_id=9999, content="hi"))
    _violates(session, Message(sender_id=9999, recipient_id=ann.id, content="hi"))
    _violates(session, Message(sender_id=ann.id, recipient_id=ann.id, content="hi", parent_id=9999))


@pytest.mark.parametrize("content", ["", "   "])
def test_message_content_not_empty(session: Session, content: str) -> None:
    """Empty or blank content is refused by the database itself."""
    ann = _user(session, username="ann")
    _violates(session, Message(sender_id=ann.id, recipient_id=ann.id, content=content))


def test_message_defaults_and_64_bit_id(session: Session) -> None:
    """is_read defaults to false; ids beyond 32 bits are accepted."""
    ann = _user(session, username="ann")
    message = Message(id=2**40, sender_id=ann.id, recipient_id=ann.id, content="big id")
    session.add(message)
    session.commit()
    session.expire_all()
    stored = session.get(Message, 2**40)
    assert stored is not None
    assert (False, None, None) == (stored.is_read, stored.parent_id, stored.conversation_id)


def test_reply_survives_parent_deletion(session: Session) -> None:
    """Deleting a parent makes its replies roots instead of deleting them."""
    ann = _user(session, username="ann")
    parent = Message(sender_id=ann.id, recipient_id=ann.id, content="parent")
    session.add(parent)
    session.commit()
    reply = Message(sender_id=ann.id, recipient_id=ann.id, content="reply", parent_id=parent.id)
    session.add(reply)
    session.commit()
    reply_id = reply.id
    session.execute(sa.delete(Message).where(col(Message.id) == parent.id))
    session.commit()
    session.expire_all()
    stored = session.get(Message, reply_id)
    assert stored is not None
    assert stored.parent_id is None


def test_deleting_user_deletes_their_messages(session: Session) -> None:
    """Messages cascade with their sender or recipient."""
    ann = _user(session, username="ann")
    bob = _user(session, username="bob")
    session.add(Message(sender_id=ann.id, recipient_id=bob.id, content="hi"))
    session.commit()
    session.execute(sa.delete(User).where(col(User.id) == ann.id))
    session.commit()
    assert [] == session.exec(select(Message)).all()


def test_timestamps_are_aware_utc_and_server_set(session: Session) -> None:
    """created_at/updated_at come from the database and read back as aware UTC."""
    before = datetime.now(UTC) - timedelta(seconds=2)
    user = _user(session, username="ann")
    assert user.created_at is not None
    assert user.created_at.tzinfo is not None
    assert timedelta(0) == user.created_at.utcoffset()
    assert before <= user.created_at <= datetime.now(UTC) + timedelta(seconds=2)
    assert user.last_login_at is None


def test_updated_at_moves_on_update(session: Session) -> None:
    """An ORM update moves updated_at forward and leaves created_at alone."""
    user = _user(session, username="ann")
    created, updated = user.created_at, user.updated_at
    time.sleep(0.01)
    user.full_name = "Ann Smith"
    session.commit()
    session.refresh(user)
    assert created == user.created_at
    assert user.updated_at is not None
    assert updated is not None
    assert user.updated_at > updated


def test_aware_datetimes_round_trip_in_utc(session: Session) -> None:
    """A datetime in another zone is stored as the same instant and read back in UTC."""
    moment = datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=timezone(timedelta(hours=5)))
    user = _user(session, telegram_user_id=1, last_login_at=moment)
    session.expire_all()
    stored_user = session.get(User, user.id)
    assert stored_user is not None
    stored = stored_user.last_login_at
    assert stored is not None
    assert moment == stored
    assert UTC == stored.tzinfo


def test_naive_datetime_rejected(session: Session) -> None:
    """Naive datetimes are ambiguous and refused before they reach the database."""
    session.add(User(telegram_user_id=1, last_login_at=datetime(2030, 1, 1)))  # noqa: DTZ001
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        session.flush()


def test_display_name() -> None:
    """Username, else Telegram handle, else names, else User<id>."""
    assert "ann" == User(username="ann", telegram_username="a").display_name
    assert "@tg" == User(telegram_username="tg", first_name="Ann").display_name
    assert "Ann Lee" == User(first_name="Ann", last_name="Lee").display_name
    assert "User7" == User(id=7).display_name


def test_hashed_password_not_in_repr() -> None:
    """repr(User) never shows the hash."""
    assert "argon2-hash" not in repr(User(username="a", hashed_password="argon2-hash"))


def _constraints_and_indexes(table: sa.Table) -> list[sa.Constraint | sa.Index]:
    return [*table.constraints, *table.indexes]


def test_naming_convention_names_every_constraint() -> None:
    """Every index and constraint has a predictable name (downgrades and batch mode need them)."""
    names = {
        constraint.name
        for table in metadata.tables.values()
        for constraint in _constraints_and_indexes(table)
    }
    assert {
        "pk_users",
        "uq_users_username",
        "uq_messages_sender_id_idempotency_key",
        "uq_users_username_lower",
        "uq_users_email",
        "uq_users_telegram_user_id",
        "ck_users_has_identity",
        "ck_users_email_lowercase",
        "ck_users_telegram_user_id_positive",
        "pk_messages",
        "fk_messages_sender_id_users",
        "fk_messages_recipient_id_users",
        "fk_messages_parent_id_messages",
        "ck_messages_content_not_empty",
        "ix_messages_recipient_id_id",
        "ix_messages_recipient_id_unread",
        "ix_messages_conversation_id_id",
        "ix_messages_sender_id",
        "ix_messages_parent_id",
    } == names
