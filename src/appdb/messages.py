"""Message operations: send, inbox and conversation pages, replies, unread counts, mark read.

Like `appdb.users`, every operation takes the caller's session, flushes what is pending in it,
runs one SQL statement and never commits. Pages are newest first and keyset-paginated: pass the
last id of a page as ``before_id`` to get the next one; no query uses OFFSET, so page 1000 costs
what page 1 costs. Each query has an index to match (see `appdb.models.message`).
`appdb.aio` has async twins with the same names.

One module past 400 lines on purpose: the six operations share the table's statements, the
keyset paging and the explanation of a failed insert, and splitting them would scatter one
table's SQL over several files.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import sqlalchemy as sa
from pydantic import Field
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key
from sqlmodel import col

from appdb._sql import (
    Query,
    constraint_name,
    core_execute,
    dialect_name,
    flush,
    insert_or_explain,
    only_row,
    orm_session,
    retry_insert,
    returning,
    run,
    upsert_insert,
)
from appdb._validation import Arguments, validated
from appdb.exceptions import (
    AppDBError,
    IdempotencyKeyReusedError,
    InvalidInputError,
    MessageNotFoundError,
    UserNotFoundError,
)
from appdb.models import Message, metadata
from appdb.models.base import utcnow
from appdb.models.schemas import (
    MAX_PAGE_SIZE,
    Content,
    ConversationId,
    Id,
    IdempotencyKey,
    PageSize,
)
from appdb.rows import MessageRow

if TYPE_CHECKING:
    from collections.abc import Callable

    from sqlalchemy import Connection
    from sqlalchemy.sql.selectable import TypedReturnsRows

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
_M = TypeVar("_M", Message, MessageRow)

# Rendered as "is_read = false" (PostgreSQL) and "is_read = 0" (SQLite): the predicates of the
# partial index ix_messages_recipient_id_unread, which the planners then use.
_UNREAD = col(Message.is_read) == sa.false()

# Statements that have one shape, built once with bound parameters.
_REPLIES = (
    sa.select(Message)
    .where(col(Message.parent_id) == sa.bindparam("parent_id"))
    .order_by(col(Message.id))
)
_UNREAD_COUNT = (
    sa.select(sa.func.count())
    .select_from(_MESSAGES)
    .where(_MESSAGES.c.recipient_id == sa.bindparam("user_id"), _UNREAD)
)
_HAS_KEY = _MESSAGES.c.idempotency_key.is_not(None)
_KEYED = (_MESSAGES.c.sender_id == sa.bindparam("sender_id")) & (
    _MESSAGES.c.idempotency_key == sa.bindparam("idempotency_key")
)
_STORED = sa.select(Message).where(_KEYED)
_STORED_ROW = sa.select(*_MESSAGES.c).where(_KEYED)
_EXISTING = sa.select(
    sa.exists().where(_USERS.c.id == sa.bindparam("sender_id")),
    sa.exists().where(_USERS.c.id == sa.bindparam("recipient_id")),
    sa.exists().where(_MESSAGES.c.id == sa.bindparam("parent_id")),
)


class _NewMessage(Arguments):
    sender_id: Id
    recipient_id: Id
    content: Content
    parent_id: Id | None
    conversation_id: ConversationId | None
    idempotency_key: IdempotencyKey | None


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


@overload
def send_message(
    session: Session,
    *,
    sender_id: int,
    recipient_id: int,
    content: str,
    parent_id: int | None = None,
    conversation_id: str | None = None,
    idempotency_key: str | None = None,
    as_row: Literal[False] = False,
) -> Message: ...


@overload
def send_message(
    session: Session | Connection,
    *,
    sender_id: int,
    recipient_id: int,
    content: str,
    parent_id: int | None = None,
    conversation_id: str | None = None,
    idempotency_key: str | None = None,
    as_row: Literal[True],
) -> MessageRow: ...


def send_message(  # noqa: PLR0913 - the message's fields, by name
    session: Session | Connection,
    *,
    sender_id: int,
    recipient_id: int,
    content: str,
    parent_id: int | None = None,
    conversation_id: str | None = None,
    idempotency_key: str | None = None,
    as_row: bool = False,
) -> Message | MessageRow:
    """Send a message; a reply inherits its parent's conversation unless one is given.

    One statement: ``INSERT INTO messages ... SELECT ... FROM users JOIN users [JOIN messages]
    RETURNING``. It inserts nothing when the sender, recipient or parent is missing, so the
    database raises nothing and the caller's transaction stays healthy; only then does a
    second query tell which one is missing.

    With an `idempotency_key` the INSERT also does nothing when the sender already stored a
    message under that key (``ON CONFLICT DO NOTHING`` on the partial unique index
    uq_messages_sender_id_idempotency_key), and that message is returned: a retry after a
    commit that was in doubt (`ConnectionLostError`) stores the message at most once. A
    concurrent send with the same key waits for the first to commit or roll back.

    Args:
        session: The caller's session, or the connection of a `connection_scope` (with
            ``as_row=True``).
        sender_id: The sending user's id.
        recipient_id: The receiving user's id (may be the sender).
        content: The text: 1 to 4096 characters, not only whitespace.
        parent_id: The message this one replies to.
        conversation_id: The conversation, up to 64 characters (surrounding spaces stripped).
        idempotency_key: Up to 64 characters, unique per sender (a UUID the client made for
            this message, say): a send with a key the sender already used returns the message
            stored under it, provided it is the same message.
        as_row: Return a `MessageRow` instead of a `Message`: the same statement run at the
            Core level, no ORM instance made (see `appdb.rows`).

    Returns:
        The stored message, with its id, defaults and timestamps.

    Raises:
        InvalidInputError: A field is empty, too long, holds NUL, or an id is out of range.
        UserNotFoundError: The sender or the recipient does not exist.
        MessageNotFoundError: The parent message does not exist.
        IdempotencyKeyReusedError: The sender stored a different message under the key.
    """
    new = validated(
        _NewMessage,
        sender_id=sender_id,
        recipient_id=recipient_id,
        content=content,
        parent_id=parent_id,
        conversation_id=conversation_id,
        idempotency_key=idempotency_key,
    )
    flush(session)
    explain: Callable[[], AppDBError | None] = lambda: _missing(session, new)  # noqa: E731
    try:
        if as_row:
            query = _send_query(dialect_name(session), new)
            found_row = None if new.idempotency_key is None else lambda: _stored_row(session, new)
            return retry_insert(lambda: run(session, query), explain, found_row)
        orm = orm_session(session, "send_message", "as_row=True")
        found = None if new.idempotency_key is None else lambda: _stored(orm, new)
        inherit = new.parent_id is not None and new.conversation_id is None
        keyed = dialect_name(orm) if new.idempotency_key is not None else None
        statement = _send_statement(
            reply=new.parent_id is not None, inherit_conversation=inherit, keyed=keyed
        )
        return insert_or_explain(orm, statement, new.model_dump(), explain, found)
    except IntegrityError as exc:
        # A row the INSERT saw was deleted by a transaction that committed before its foreign
        # key check (PostgreSQL): the same error as if it had been missing all along.
        error = _missing_by_constraint(new, constraint_name(exc))
        if error is None:
            raise
        raise error from exc


def send_message_query(dialect: str, **message: Any) -> Query[MessageRow | None]:
    """The row form's INSERT for `dialect` and its checked values; shared with `appdb.aio`.

    `message` holds `send_message`'s keywords (``sender_id``, ``recipient_id``, ``content``,
    ``parent_id``, ``conversation_id``, ``idempotency_key``). The query makes the stored
    `MessageRow`, or ``None`` when it inserted nothing (a missing sender, recipient or parent,
    or a repeated idempotency key), which `send_message` then explains. Not part of the API.

    Raises:
        InvalidInputError: As `send_message`.
    """
    return _send_query(dialect, validated(_NewMessage, **message))


def _send_query(dialect: str, new: _NewMessage) -> Query[MessageRow | None]:
    inherit = new.parent_id is not None and new.conversation_id is None
    keyed = dialect if new.idempotency_key is not None else None
    statement = _send_row_statement(new.parent_id is not None, inherit, keyed)
    return Query(
        statement,
        new.model_dump(),
        _message_row,
        explain=lambda exc: _missing_by_constraint(new, constraint_name(exc)),
    )


def _message_row(rows: list[tuple[Any, ...]]) -> MessageRow | None:
    row = only_row(rows)
    return None if row is None else MessageRow._make(row)


@functools.cache
def _send_statement(
    *, reply: bool, inherit_conversation: bool, keyed: str | None
) -> TypedReturnsRows[Message]:
    """``INSERT INTO messages ... SELECT ... RETURNING``, loading a `Message`."""
    insert = _send_insert(reply=reply, inherit_conversation=inherit_conversation, keyed=keyed)
    return returning(Message, insert)


@functools.cache
def _send_row_statement(
    reply: bool,  # noqa: FBT001 - positional: the cache key
    inherit_conversation: bool,  # noqa: FBT001
    keyed: str | None,
) -> sa.Insert:
    """The same INSERT at the Core level, returning every column."""
    insert = _send_insert(reply=reply, inherit_conversation=inherit_conversation, keyed=keyed)
    return insert.returning(*_MESSAGES.c)


def _send_insert(*, reply: bool, inherit_conversation: bool, keyed: str | None) -> sa.Insert:
    """``INSERT INTO messages ... SELECT`` from the sender, recipient (and parent) rows.

    `keyed` is the dialect's name when the message has an idempotency key: the INSERT then
    stores the key and does nothing if the sender already used it.
    """
    sender, recipient, parent = _USERS.alias(), _USERS.alias(), _MESSAGES.alias()
    # Joined on the given ids, so a missing sender, recipient or parent yields no row.
    source = sender.join(recipient, recipient.c.id == sa.bindparam("recipient_id"))
    if reply:
        source = source.join(parent, parent.c.id == sa.bindparam("parent_id"))
    columns = _MESSAGES.c
    key_type = columns.idempotency_key.type
    rows = (
        sa.select(
            sender.c.id,
            recipient.c.id,
            sa.bindparam("content", type_=columns.content.type),
            parent.c.id if reply else sa.null(),
            parent.c.conversation_id
            if inherit_conversation
            else sa.bindparam("conversation_id", type_=columns.conversation_id.type),
            *([] if keyed is None else [sa.bindparam("idempotency_key", type_=key_type)]),
        )
        .select_from(source)
        .where(sender.c.id == sa.bindparam("sender_id"))
    )
    names = ["sender_id", "recipient_id", "content", "parent_id", "conversation_id"]
    if keyed is None:
        return sa.insert(_MESSAGES).from_select(names, rows)
    # The WHERE above also keeps SQLite from reading ON CONFLICT as a join's ON.
    return (
        upsert_insert(keyed, _MESSAGES)
        .from_select([*names, "idempotency_key"], rows)
        .on_conflict_do_nothing(
            index_elements=["sender_id", "idempotency_key"], index_where=_HAS_KEY
        )
    )


def _by_key(new: _NewMessage) -> dict[str, object]:
    return {"sender_id": new.sender_id, "idempotency_key": new.idempotency_key}


def _stored(session: Session, new: _NewMessage) -> Message | None:
    """The message the sender stored under `new`'s key, if it is the same message."""
    stored = session.scalars(_STORED, _by_key(new)).one_or_none()
    return None if stored is None else _same_message(stored, new)


def _stored_row(session: Session | Connection, new: _NewMessage) -> MessageRow | None:
    """`_stored` at the Core level."""
    row = only_row(core_execute(session, _STORED_ROW, _by_key(new)))
    return None if row is None else _same_message(MessageRow._make(row), new)


def _same_message(stored: _M, new: _NewMessage) -> _M:
    """`stored` if `new` repeats it (a retry), else `IdempotencyKeyReusedError`."""
    inherited = new.parent_id is not None and new.conversation_id is None
    if (stored.recipient_id, stored.content, stored.parent_id) == (
        new.recipient_id,
        new.content,
        new.parent_id,
    ) and (inherited or stored.conversation_id == new.conversation_id):
        return stored
    msg = (
        f"user {new.sender_id} already sent message {stored.id} under this idempotency key, "
        "with a different recipient, content, parent or conversation: use a new key for a new "
        "message"
    )
    raise IdempotencyKeyReusedError(msg)


def _missing(session: Session | Connection, new: _NewMessage) -> AppDBError | None:
    """Which of the rows a new message refers to does not exist (one query)."""
    values = {
        "sender_id": new.sender_id,
        "recipient_id": new.recipient_id,
        "parent_id": new.parent_id,
    }
    ((sender, recipient, parent),) = core_execute(session, _EXISTING, values)
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


@overload
def inbox(
    session: Session,
    user_id: int,
    *,
    limit: int = DEFAULT_PAGE_SIZE,
    before_id: int | None = None,
    unread_only: bool = False,
    as_rows: Literal[False] = False,
) -> list[Message]: ...


@overload
def inbox(
    session: Session | Connection,
    user_id: int,
    *,
    limit: int = DEFAULT_PAGE_SIZE,
    before_id: int | None = None,
    unread_only: bool = False,
    as_rows: Literal[True],
) -> list[MessageRow]: ...


def inbox(  # noqa: PLR0913 - the page's parameters, by name
    session: Session | Connection,
    user_id: int,
    *,
    limit: int = DEFAULT_PAGE_SIZE,
    before_id: int | None = None,
    unread_only: bool = False,
    as_rows: bool = False,
) -> list[Message] | list[MessageRow]:
    """A page of the messages a user received, newest first.

    Uses ix_messages_recipient_id_id, or the partial ix_messages_recipient_id_unread for
    unread-only pages, read backwards from ``before_id``.

    Args:
        session: The caller's session, or the connection of a `connection_scope` (with
            ``as_rows=True``).
        user_id: The recipient.
        limit: The page size, 1 to 500.
        before_id: The last (smallest) id of the previous page; ``None`` for the first page.
        unread_only: Only messages not yet marked read.
        as_rows: Return `MessageRow` tuples instead of `Message` instances: the same query
            run at the Core level, no ORM instances made (see `appdb.rows`).

    Returns:
        Up to `limit` messages, ids descending; fewer (or none) at the end.

    Raises:
        InvalidInputError: An id or the limit is out of range; or a connection was given
            without ``as_rows=True``.
    """
    if as_rows:
        query = inbox_query(user_id, limit=limit, before_id=before_id, unread_only=unread_only)
        flush(session)
        return run(session, query)
    page = validated(
        _InboxPage, user_id=user_id, limit=limit, before_id=before_id, unread_only=unread_only
    )
    statement = _inbox_statement(unread_only=page.unread_only, paged=page.before_id is not None)
    orm = orm_session(session, "inbox", "as_rows=True")
    return _page(orm, statement, page, user_id=page.user_id)


def inbox_query(
    user_id: int, *, limit: int, before_id: int | None, unread_only: bool
) -> Query[list[MessageRow]]:
    """The row form of `inbox`: statement and checked values; shared with `appdb.aio`.

    Not part of the API.

    Raises:
        InvalidInputError: As `inbox`.
    """
    page = validated(
        _InboxPage, user_id=user_id, limit=limit, before_id=before_id, unread_only=unread_only
    )
    statement = _inbox_row_statement(page.unread_only, page.before_id is not None)
    values = {"user_id": page.user_id, "limit": page.limit, "before_id": page.before_id}
    return Query(statement, values, _message_rows)


def _message_rows(rows: list[tuple[Any, ...]]) -> list[MessageRow]:
    return [MessageRow._make(row) for row in rows]


@functools.cache
def _inbox_statement(*, unread_only: bool, paged: bool) -> sa.Select[Message]:
    statement = sa.select(Message).where(col(Message.recipient_id) == sa.bindparam("user_id"))
    return _keyset(statement.where(_UNREAD) if unread_only else statement, paged=paged)


@functools.cache
def _inbox_row_statement(unread_only: bool, paged: bool) -> sa.Select[Any]:  # noqa: FBT001
    """The inbox page at the Core level: the table's columns, same WHERE, ORDER BY, LIMIT."""
    statement = sa.select(*_MESSAGES.c).where(_MESSAGES.c.recipient_id == sa.bindparam("user_id"))
    if unread_only:
        statement = statement.where(_UNREAD)
    if paged:
        statement = statement.where(_MESSAGES.c.id < sa.bindparam("before_id"))
    return statement.order_by(_MESSAGES.c.id.desc()).limit(sa.bindparam("limit"))


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
    statement = _conversation_statement(paged=page.before_id is not None)
    return _page(session, statement, page, conversation_id=page.conversation_id)


@functools.cache
def _conversation_statement(*, paged: bool) -> sa.Select[Message]:
    statement = sa.select(Message).where(
        col(Message.conversation_id) == sa.bindparam("conversation_id")
    )
    return _keyset(statement, paged=paged)


def _keyset(statement: sa.Select[Message], *, paged: bool) -> sa.Select[Message]:
    """Newest first from ``before_id`` (exclusive) when paged: never OFFSET."""
    if paged:
        statement = statement.where(col(Message.id) < sa.bindparam("before_id"))
    return statement.order_by(col(Message.id).desc()).limit(sa.bindparam("limit"))


def _page(
    session: Session, statement: sa.Select[Message], page: _Page, **values: object
) -> list[Message]:
    """Run a keyset page query built by `_keyset`."""
    session.flush()
    values |= {"limit": page.limit, "before_id": page.before_id}
    return list(session.scalars(statement, values))


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
    return list(session.scalars(_REPLIES, {"parent_id": parent_id}))


def unread_count(session: Session | Connection, user_id: int) -> int:
    """How many messages a user has not read (an index-only count on the partial index).

    Args:
        session: The caller's session, or the connection of a `connection_scope`.
        user_id: The recipient.

    Returns:
        The number of unread messages.

    Raises:
        InvalidInputError: The id is out of range.
    """
    query = unread_count_query(user_id)
    flush(session)
    return run(session, query)


def unread_count_query(user_id: int) -> Query[int]:
    """`unread_count`'s statement and checked values; shared with `appdb.aio`, not the API.

    Raises:
        InvalidInputError: As `unread_count`.
    """
    recipient_id = validated(_UserId, user_id=user_id).user_id
    return Query(_UNREAD_COUNT, {"user_id": recipient_id}, _count)


def _count(rows: list[tuple[Any, ...]]) -> int:
    ((count,),) = rows
    return int(count)


def mark_read(
    session: Session | Connection,
    user_id: int,
    *,
    message_ids: Iterable[int] | None = None,
    conversation_id: str | None = None,
) -> int:
    """Mark a user's unread messages read: all, some ids, or one conversation's.

    One ``UPDATE ... WHERE recipient_id = :user_id AND is_read = false ... RETURNING id``, so
    only the user's own messages change and messages already read are not rewritten. Both
    filters combine (AND); with neither, every unread message of the user is marked. Copies of
    the changed messages already loaded in the session are updated too.

    Args:
        session: The caller's session, or the connection of a `connection_scope`.
        user_id: The recipient whose messages to mark.
        message_ids: Only these messages (at most 500; others' ids are ignored).
        conversation_id: Only this conversation's messages.

    Returns:
        How many messages changed from unread to read.

    Raises:
        InvalidInputError: An id is out of range or not an int, `message_ids` is not an
            iterable, there are more than 500 ids, or the conversation id is empty or too long.
    """
    query = mark_read_query(user_id, message_ids=message_ids, conversation_id=conversation_id)
    if query is None:
        return 0
    flush(session)
    marked = run(session, query)
    if isinstance(session, Session):
        # Keep the session's copies of the marked messages in step with the rows.
        for message_id in marked:
            loaded = session.identity_map.get(identity_key(Message, message_id))
            if loaded is not None:
                set_committed_value(loaded, "is_read", True)  # noqa: FBT003 - the value to set
                set_committed_value(loaded, "updated_at", query.values["now"])
    return len(marked)


def mark_read_query(
    user_id: int, *, message_ids: Iterable[int] | None, conversation_id: str | None
) -> Query[list[int]] | None:
    """`mark_read`'s UPDATE and checked values, making the marked ids; ``None``: no ids given.

    Shared with `appdb.aio`; not part of the API.

    Raises:
        InvalidInputError: As `mark_read`.
    """
    marking = validated(
        _MarkRead,
        user_id=user_id,
        message_ids=_id_list(message_ids),
        conversation_id=conversation_id,
    )
    if marking.message_ids == []:
        return None
    ids = _padded(marking.message_ids) if marking.message_ids is not None else ()
    statement = _mark_read_statement(
        id_count=len(ids), by_conversation=marking.conversation_id is not None
    )
    values: dict[str, Any] = {
        "user_id": marking.user_id,
        "in_conversation": marking.conversation_id,
        "now": utcnow(),
        **{f"message_id_{index}": message_id for index, message_id in enumerate(ids)},
    }
    return Query(statement, values, _ids)


def _ids(rows: list[tuple[Any, ...]]) -> list[int]:
    return [message_id for (message_id,) in rows]


def _id_list(message_ids: object) -> list[object] | None:
    """`mark_read`'s ids as a list; a non-iterable (a bare id, say) is `InvalidInputError`."""
    if message_ids is None:
        return None
    if isinstance(message_ids, str | bytes) or not isinstance(message_ids, Iterable):
        msg = (
            "invalid argument message_ids: expected an iterable of ids, "
            f"not {type(message_ids).__name__}"
        )
        raise InvalidInputError(msg)
    return list(message_ids)


# An id list is padded to the next of these sizes by repeating its last id, which does not
# change what ``IN`` matches: a handful of statements, each one plain bound parameters, so
# they run on the driver's cursor (`appdb._direct`) and PostgreSQL's prepared statements are
# reused, where an expanding ``IN`` would be expanded by SQLAlchemy per call.
_ID_LIST_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, MAX_PAGE_SIZE)


def _padded(message_ids: list[int]) -> list[int]:
    """`message_ids` (not empty) padded to the next size of `_ID_LIST_SIZES`."""
    size = next(size for size in _ID_LIST_SIZES if size >= len(message_ids))
    return message_ids + [message_ids[-1]] * (size - len(message_ids))


@functools.cache
def _mark_read_statement(*, id_count: int, by_conversation: bool) -> TypedReturnsRows[int]:
    """``UPDATE messages SET is_read = true ... WHERE <the user's unread> RETURNING id``.

    With `id_count` ids bound as ``message_id_0`` onwards (none: no id filter).
    """
    columns = _MESSAGES.c
    statement = sa.update(_MESSAGES).where(columns.recipient_id == sa.bindparam("user_id"), _UNREAD)
    if id_count:
        ids = [
            sa.bindparam(f"message_id_{index}", type_=columns.id.type) for index in range(id_count)
        ]
        statement = statement.where(columns.id.in_(ids))
    if by_conversation:
        # A bound parameter of an UPDATE must not be named after a column.
        statement = statement.where(columns.conversation_id == sa.bindparam("in_conversation"))
    now = sa.bindparam("now", type_=columns.updated_at.type)
    return statement.values(is_read=True, updated_at=now).returning(columns.id)
