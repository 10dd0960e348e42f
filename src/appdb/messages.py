"""Message operations: send, inbox and conversation pages, replies, unread counts, mark read.

Like `appdb.users`, every operation takes the caller's session, flushes what is pending in it,
runs one SQL statement and never commits. Pages are newest first and keyset-paginated: pass the
last id of a page as ``before_id`` to get the next one; no query uses OFFSET, so page 1000 costs
what page 1 costs. Each query has an index to match (see `appdb.models.message`).
`appdb.aio` has async twins with the same names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from appdb._sql import constraint_name, insert_or_explain
from appdb._validation import Arguments, validated
from appdb.exceptions import AppDBError, MessageNotFoundError, UserNotFoundError
from appdb.models import Message, metadata
from appdb.models.base import utcnow
from appdb.models.schemas import MAX_PAGE_SIZE, Content, ConversationId, Id, PageSize

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "conversation",
    "inbox",
    "mark_read",
    "replies",
    "send_message",
    "unread_count",
]

DEFAULT_PAGE_SIZE = 50
"""How many messages a page holds unless the caller says otherwise."""

_USERS, _MESSAGES = metadata.tables["users"], metadata.tables["messages"]

# Rendered as "is_read = false" (PostgreSQL) and "is_read = 0" (SQLite): the predicates of the
# partial index ix_messages_recipient_id_unread, which the planners then use.
_UNREAD = col(Message.is_read) == sa.false()


class _NewMessage(Arguments):
    sender_id: Id
    recipient_id: Id
    content: Content
    parent_id: Id | None
    conversation_id: ConversationId | None


class _Page(Arguments):
    limit: PageSize
    before_id: Id | None


class _InboxPage(_Page):
    user_id: Id
    unread_only: bool


class _ConversationPage(_Page):
    conversation_id: ConversationId


class _MessageId(Arguments):
    message_id: Id


class _UserId(Arguments):
    user_id: Id


class _MarkRead(_UserId):
    message_ids: list[Id] | None = Field(max_length=MAX_PAGE_SIZE)
    conversation_id: ConversationId | None


def send_message(  # noqa: PLR0913 - the message's fields, by name
    session: Session,
    *,
    sender_id: int,
    recipient_id: int,
    content: str,
    parent_id: int | None = None,
    conversation_id: str | None = None,
) -> Message:
    """Send a message; a reply inherits its parent's conversation unless one is given.

    One statement: ``INSERT INTO messages ... SELECT ... FROM users JOIN users [JOIN messages]
    RETURNING``. It inserts nothing when the sender, recipient or parent is missing, so the
    database raises nothing and the caller's transaction stays healthy; only then does a
    second query tell which one is missing.

    Args:
        session: The caller's session.
        sender_id: The sending user's id.
        recipient_id: The receiving user's id (may be the sender).
        content: The text: 1 to 4096 characters, not only whitespace.
        parent_id: The message this one replies to.
        conversation_id: The conversation, up to 64 characters (surrounding spaces stripped).

    Returns:
        The stored message, with its id, defaults and timestamps.

    Raises:
        InvalidInputError: A field is empty, too long, holds NUL, or an id is out of range.
        UserNotFoundError: The sender or the recipient does not exist.
        MessageNotFoundError: The parent message does not exist.
    """
    new = validated(
        _NewMessage,
        sender_id=sender_id,
        recipient_id=recipient_id,
        content=content,
        parent_id=parent_id,
        conversation_id=conversation_id,
    )
    session.flush()
    messages, sender, recipient = _MESSAGES, _USERS.alias(), _USERS.alias()
    # Joined on the literal ids, so a missing sender, recipient or parent yields no row.
    source = sender.join(recipient, recipient.c.id == new.recipient_id)
    conversation_id_value: sa.ColumnElement[str | None] = sa.literal(
        new.conversation_id, messages.c.conversation_id.type
    )
    if new.parent_id is not None:
        parent = messages.alias()
        source = source.join(parent, parent.c.id == new.parent_id)
        if new.conversation_id is None:
            conversation_id_value = parent.c.conversation_id
    rows = (
        sa.select(
            sender.c.id,
            recipient.c.id,
            sa.literal(new.content, messages.c.content.type),
            sa.literal(new.parent_id, messages.c.parent_id.type),
            conversation_id_value,
        )
        .select_from(source)
        .where(sender.c.id == new.sender_id)
    )
    statement = (
        sa.insert(Message)
        .from_select(
            ["sender_id", "recipient_id", "content", "parent_id", "conversation_id"],
            rows,
        )
        .returning(Message)
    )
    try:
        return insert_or_explain(session, statement, lambda: _missing(session, new))
    except IntegrityError as exc:
        # A row the INSERT saw was deleted by a transaction that committed before its foreign
        # key check (PostgreSQL): the same error as if it had been missing all along.
        error = _missing_by_constraint(new, constraint_name(exc))
        if error is None:
            raise
        raise error from exc


def _missing(session: Session, new: _NewMessage) -> AppDBError | None:
    """Which of the rows a new message refers to does not exist (one query)."""
    sender, recipient, parent = session.execute(
        sa.select(
            sa.exists().where(_USERS.c.id == new.sender_id),
            sa.exists().where(_USERS.c.id == new.recipient_id),
            sa.exists().where(_MESSAGES.c.id == new.parent_id),
        )
    ).one()
    for exists, constraint in (
        (sender, "fk_messages_sender_id_users"),
        (recipient, "fk_messages_recipient_id_users"),
        (parent or new.parent_id is None, "fk_messages_parent_id_messages"),
    ):
        if not exists:
            return _missing_by_constraint(new, constraint)
    return None


def _missing_by_constraint(new: _NewMessage, constraint: str | None) -> AppDBError | None:
    """The error for the foreign key of `messages` that `new` violates."""
    if constraint == "fk_messages_sender_id_users":
        return UserNotFoundError(f"the sender, user {new.sender_id}, does not exist")
    if constraint == "fk_messages_recipient_id_users":
        return UserNotFoundError(f"the recipient, user {new.recipient_id}, does not exist")
    if constraint == "fk_messages_parent_id_messages":
        return MessageNotFoundError(f"the parent, message {new.parent_id}, does not exist")
    return None


def inbox(
    session: Session,
    user_id: int,
    *,
    limit: int = DEFAULT_PAGE_SIZE,
    before_id: int | None = None,
    unread_only: bool = False,
) -> list[Message]:
    """A page of the messages a user received, newest first.

    Uses ix_messages_recipient_id_id, or the partial ix_messages_recipient_id_unread for
    unread-only pages, read backwards from ``before_id``.

    Args:
        session: The caller's session.
        user_id: The recipient.
        limit: The page size, 1 to 500.
        before_id: The last (smallest) id of the previous page; ``None`` for the first page.
        unread_only: Only messages not yet marked read.

    Returns:
        Up to `limit` messages, ids descending; fewer (or none) at the end.

    Raises:
        InvalidInputError: An id or the limit is out of range.
    """
    page = validated(
        _InboxPage, user_id=user_id, limit=limit, before_id=before_id, unread_only=unread_only
    )
    statement = sa.select(Message).where(col(Message.recipient_id) == page.user_id)
    if page.unread_only:
        statement = statement.where(_UNREAD)
    return _page(session, statement, page)


def conversation(
    session: Session,
    conversation_id: str,
    *,
    limit: int = DEFAULT_PAGE_SIZE,
    before_id: int | None = None,
) -> list[Message]:
    """A page of a conversation's messages, newest first (reverse a page to show it).

    Uses ix_messages_conversation_id_id, read backwards from ``before_id``.

    Args:
        session: The caller's session.
        conversation_id: The conversation (surrounding spaces stripped, as when sending).
        limit: The page size, 1 to 500.
        before_id: The last (smallest) id of the previous page; ``None`` for the first page.

    Returns:
        Up to `limit` messages, ids descending.

    Raises:
        InvalidInputError: The conversation id is empty or too long, or a number is out of
            range.
    """
    page = validated(
        _ConversationPage, conversation_id=conversation_id, limit=limit, before_id=before_id
    )
    statement = sa.select(Message).where(col(Message.conversation_id) == page.conversation_id)
    return _page(session, statement, page)


def _page(session: Session, statement: sa.Select[Message], page: _Page) -> list[Message]:
    """Run a keyset-paginated query: ids below ``before_id``, newest first."""
    if page.before_id is not None:
        statement = statement.where(col(Message.id) < page.before_id)
    session.flush()
    return list(session.scalars(statement.order_by(col(Message.id).desc()).limit(page.limit)))


def replies(session: Session, message_id: int) -> list[Message]:
    """The direct replies to a message, oldest first (uses ix_messages_parent_id).

    Args:
        session: The caller's session.
        message_id: The parent message.

    Returns:
        The replies, ids ascending; an empty list if there are none or the message does not
        exist.

    Raises:
        InvalidInputError: The id is out of range.
    """
    parent_id = validated(_MessageId, message_id=message_id).message_id
    session.flush()
    statement = (
        sa.select(Message).where(col(Message.parent_id) == parent_id).order_by(col(Message.id))
    )
    return list(session.scalars(statement))


def unread_count(session: Session, user_id: int) -> int:
    """How many messages a user has not read (an index-only count on the partial index).

    Args:
        session: The caller's session.
        user_id: The recipient.

    Returns:
        The number of unread messages.

    Raises:
        InvalidInputError: The id is out of range.
    """
    recipient_id = validated(_UserId, user_id=user_id).user_id
    session.flush()
    statement = (
        sa.select(sa.func.count())
        .select_from(Message)
        .where(col(Message.recipient_id) == recipient_id, _UNREAD)
    )
    return session.scalars(statement).one()


def mark_read(
    session: Session,
    user_id: int,
    *,
    message_ids: Iterable[int] | None = None,
    conversation_id: str | None = None,
) -> int:
    """Mark a user's unread messages read: all, some ids, or one conversation's.

    One ``UPDATE ... WHERE recipient_id = :user_id AND is_read = false``, so only the user's own
    messages change and messages already read are not rewritten. The session's copies of the
    changed messages are updated too.

    Args:
        session: The caller's session.
        user_id: The recipient whose messages to mark.
        message_ids: Only these messages (at most 500; others' ids are ignored).
        conversation_id: Only this conversation's messages.

    Returns:
        How many messages changed from unread to read.

    Raises:
        InvalidInputError: An id is out of range, there are more than 500 ids, or the
            conversation id is empty or too long.
    """
    marking = validated(
        _MarkRead,
        user_id=user_id,
        message_ids=None if message_ids is None else list(message_ids),
        conversation_id=conversation_id,
    )
    if marking.message_ids == []:
        return 0
    statement = sa.update(Message).where(col(Message.recipient_id) == marking.user_id, _UNREAD)
    if marking.message_ids is not None:
        statement = statement.where(col(Message.id).in_(marking.message_ids))
    if marking.conversation_id is not None:
        statement = statement.where(col(Message.conversation_id) == marking.conversation_id)
    session.flush()
    result = session.execute(statement.values(is_read=True, updated_at=utcnow()))
    return cast("sa.CursorResult[()]", result).rowcount
