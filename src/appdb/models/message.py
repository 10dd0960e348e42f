"""The `messages` table: one user's message to another, optionally a reply in a conversation."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import BigInteger, CheckConstraint, Index, Text, false, text
from sqlmodel import Field

from appdb.models.base import AppDBModel, TimestampMixin
from appdb.models.types import BigIntegerPK

__all__ = ["Message", "MessageLimits"]


class MessageLimits:
    """Lengths shared by the table and the schemas."""

    CONTENT = 4096  # Telegram's own limit for one text message
    CONVERSATION_ID = 64
    IDEMPOTENCY_KEY = 64  # a UUID, or a hex SHA-256 of what the client derives it from


class Message(AppDBModel, TimestampMixin, table=True):
    """A message from `sender_id` to `recipient_id`; `parent_id` makes it a reply."""

    __tablename__: ClassVar[str] = "messages"
    __table_args__: ClassVar[tuple[Any, ...]] = (
        CheckConstraint("length(trim(content)) > 0", name="content_not_empty"),
        # A recipient's inbox, newest first, paged by id (keyset).
        Index("ix_messages_recipient_id_id", "recipient_id", "id"),
        # Unread counts and "unread only" inbox pages touch only the unread rows.
        Index(
            "ix_messages_recipient_id_unread",
            "recipient_id",
            "id",
            postgresql_where=text("NOT is_read"),
            sqlite_where=text("is_read = 0"),
        ),
        # A conversation's thread, paged by id.
        Index("ix_messages_conversation_id_id", "conversation_id", "id"),
        # One message per sender and idempotency key; rows without a key are not indexed.
        Index(
            "uq_messages_sender_id_idempotency_key",
            "sender_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
            sqlite_where=text("idempotency_key IS NOT NULL"),
        ),
    )

    # `int`, not `int | None`: every row an operation returns is flushed, so its id can be
    # passed on (`send_message(session, sender_id=user.id, ...)`) under a strict type checker.
    # It is None only on an instance built by hand and not yet flushed.
    id: int = Field(default=None, primary_key=True, sa_type=BigIntegerPK)
    sender_id: int = Field(
        sa_type=BigInteger, foreign_key="users.id", ondelete="CASCADE", index=True
    )
    recipient_id: int = Field(sa_type=BigInteger, foreign_key="users.id", ondelete="CASCADE")
    content: str = Field(sa_type=Text)
    is_read: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    # A reply survives its parent's deletion as the root of what is left of the thread.
    parent_id: int | None = Field(
        default=None, sa_type=BigInteger, foreign_key="messages.id", ondelete="SET NULL", index=True
    )
    conversation_id: str | None = Field(default=None, max_length=MessageLimits.CONVERSATION_ID)
    # Set by `send_message(..., idempotency_key=...)`: a retry with the same key returns this row.
    idempotency_key: str | None = Field(default=None, max_length=MessageLimits.IDEMPOTENCY_KEY)
