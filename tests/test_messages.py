"""appdb.messages: sending, pages, replies, unread counts and mark-read, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from appdb import (
    AlreadyExistsError,
    IdempotencyKeyReusedError,
    InvalidInputError,
    Message,
    MessageNotFoundError,
    NotFoundError,
    User,
    UserNotFoundError,
)
from appdb.messages import (
    conversation,
    inbox,
    mark_read,
    replies,
    send_message,
    unread_count,
)
from appdb.models.types import BIGINT_MAX
from appdb.rows import MessageRow
from appdb.users import touch_telegram_user


@pytest.fixture
def ann(session: Session) -> User:
    user = touch_telegram_user(session, 1, first_name="Ann")
    session.commit()
    return user


@pytest.fixture
def bob(session: Session) -> User:
    user = touch_telegram_user(session, 2, first_name="Bob")
    session.commit()
    return user


def _send(session: Session, sender: User, recipient: User, count: int, **fields: Any) -> list[int]:
    """Send `count` messages and return their ids, oldest first."""
    return [
        send_message(
            session, sender_id=sender.id, recipient_id=recipient.id, content=f"m{i}", **fields
        ).id
        for i in range(count)
    ]


def _ids(messages: list[Message]) -> list[int]:
    return [message.id for message in messages]


def _count(session: Session) -> int:
    return session.exec(select(func.count()).select_from(Message)).one()


# --- send_message ---------------------------------------------------------------------------


def test_send_message(session: Session, ann: User, bob: User) -> None:
    """A message is stored with its fields, unread, and returned with id and timestamps."""
    message = send_message(
        session, sender_id=ann.id, recipient_id=bob.id, content="  hi\n", conversation_id=" c1 "
    )
    session.commit()
    session.expire_all()
    stored = session.get(Message, message.id)
    assert stored is not None
    assert (ann.id, bob.id, "  hi\n", False, None, "c1") == (
        stored.sender_id,
        stored.recipient_id,
        stored.content,
        stored.is_read,
        stored.parent_id,
        stored.conversation_id,
    )
    assert stored.created_at is not None


def test_send_message_is_one_statement(
    session: Session, ann: User, bob: User, statements: list[str]
) -> None:
    """Checking the sender, recipient and parent and inserting is one INSERT ... SELECT."""
    ann_id, bob_id = ann.id, bob.id
    statements.clear()
    parent = send_message(session, sender_id=ann_id, recipient_id=bob_id, content="hi")
    send_message(session, sender_id=bob_id, recipient_id=ann_id, content="re", parent_id=parent.id)
    assert 2 == len(statements)
    assert all(statement.startswith("INSERT INTO messages") for statement in statements)


def test_reply_inherits_conversation(session: Session, ann: User, bob: User) -> None:
    """A reply joins its parent's conversation unless it names one itself."""
    parent = send_message(
        session, sender_id=ann.id, recipient_id=bob.id, content="hi", conversation_id="c1"
    )
    inherited = send_message(
        session, sender_id=bob.id, recipient_id=ann.id, content="re", parent_id=parent.id
    )
    explicit = send_message(
        session,
        sender_id=bob.id,
        recipient_id=ann.id,
        content="re",
        parent_id=parent.id,
        conversation_id="c2",
    )
    root = send_message(session, sender_id=ann.id, recipient_id=bob.id, content="solo")
    orphan = send_message(
        session, sender_id=bob.id, recipient_id=ann.id, content="re", parent_id=root.id
    )
    assert ("c1", parent.id) == (inherited.conversation_id, inherited.parent_id)
    assert "c2" == explicit.conversation_id
    assert orphan.conversation_id is None


def test_send_to_self(session: Session, ann: User) -> None:
    """Saved-messages style: sender and recipient may be the same user."""
    message = send_message(session, sender_id=ann.id, recipient_id=ann.id, content="note")
    assert [message.id] == _ids(inbox(session, ann.id))


@pytest.mark.parametrize(
    ("field", "error", "name"),
    [
        ("sender_id", UserNotFoundError, "sender"),
        ("recipient_id", UserNotFoundError, "recipient"),
        ("parent_id", MessageNotFoundError, "parent"),
    ],
)
def test_send_unknown_reference(
    session: Session, ann: User, bob: User, field: str, error: type[NotFoundError], name: str
) -> None:
    """A missing sender, recipient or parent raises a NotFoundError; the transaction survives."""
    kept = send_message(session, sender_id=ann.id, recipient_id=bob.id, content="kept")
    fields: dict[str, Any] = {"sender_id": ann.id, "recipient_id": bob.id, "content": "lost"} | {
        field: 999
    }
    with pytest.raises(error, match=f"{name}.*999") as caught:
        send_message(session, **fields)
    assert isinstance(caught.value, NotFoundError)
    session.commit()
    assert [kept.id] == session.exec(select(Message.id)).all()


def test_session_usable_after_rollback(session: Session, ann: User, bob: User) -> None:
    """After an error and a rollback, the same session sends again."""
    with pytest.raises(UserNotFoundError):
        send_message(session, sender_id=ann.id, recipient_id=999, content="lost")
    session.rollback()
    send_message(session, sender_id=ann.id, recipient_id=bob.id, content="sent")
    session.commit()
    assert 1 == _count(session)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("content", ""),
        ("content", " \n\t "),
        ("content", "x" * 4097),
        ("content", "nul\x00"),
        ("content", None),
        ("sender_id", 0),
        ("recipient_id", -1),
        ("recipient_id", BIGINT_MAX + 1),
        ("recipient_id", True),
        ("parent_id", 0),
        ("conversation_id", ""),
        ("conversation_id", "   "),
        ("conversation_id", "c" * 65),
        ("conversation_id", "nul\x00"),
    ],
)
def test_send_rejects_bad_input(
    session: Session, ann: User, bob: User, statements: list[str], field: str, value: Any
) -> None:
    """Empty, over-long or NUL content, bad ids and conversations fail before any SQL."""
    kept = send_message(session, sender_id=ann.id, recipient_id=bob.id, content="kept")
    statements.clear()
    fields: dict[str, Any] = {"sender_id": ann.id, "recipient_id": bob.id, "content": "hi"} | {
        field: value
    }
    with pytest.raises(InvalidInputError, match=field):
        send_message(session, **fields)
    assert [] == statements
    session.commit()
    assert [kept.id] == session.exec(select(Message.id)).all()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_send_while_sender_is_deleted(
    session: Session, engine: sa.Engine, ann: User, bob: User
) -> None:
    """A sender deleted by a transaction committing mid-INSERT still gives UserNotFoundError."""
    deleting = Session(engine)
    deleting.execute(sa.delete(User).where(col(User.id) == ann.id))
    outcome: list[BaseException | Message] = []

    def send() -> None:
        # The INSERT sees the sender, then its foreign key check waits for the DELETE.
        try:
            outcome.append(
                send_message(session, sender_id=ann.id, recipient_id=bob.id, content="hi")
            )
        except Exception as exc:  # noqa: BLE001 - the test inspects whatever happened
            outcome.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(0.5)
    deleting.commit()
    deleting.close()
    sender.join(10)
    assert [UserNotFoundError] == [type(item) for item in outcome]
    assert isinstance(outcome[0], BaseException)
    assert isinstance(outcome[0].__cause__, sa.exc.IntegrityError)
    session.rollback()
    assert 0 == _count(session)


# --- idempotent sends -----------------------------------------------------------------------


def _send_once(session: Session, sender: User, recipient: User, **fields: Any) -> Message:
    message: Message = send_message(
        session,
        sender_id=sender.id,
        recipient_id=recipient.id,
        content=fields.pop("content", "hi"),
        idempotency_key=fields.pop("idempotency_key", "7f1c-key"),
        **fields,
    )
    return message


def test_idempotent_retry_returns_the_stored_message(
    session: Session, engine: sa.Engine, ann: User, bob: User
) -> None:
    """A retry with the same key, from a new session after the commit, stores nothing new."""
    first_id = _send_once(session, ann, bob).id
    session.commit()
    with Session(engine) as retrying:
        again_id = _send_once(retrying, ann, bob).id
        as_row = send_message(
            retrying,
            sender_id=ann.id,
            recipient_id=bob.id,
            content="hi",
            idempotency_key="7f1c-key",
            as_row=True,
        )
        retrying.commit()
    assert (first_id, first_id, "7f1c-key") == (again_id, as_row.id, as_row.idempotency_key)
    assert 1 == _count(session)


def test_idempotent_reply_retry(session: Session, ann: User, bob: User) -> None:
    """A reply that inherited its parent's conversation is recognised as the same message."""
    parent = _send_once(session, ann, bob, conversation_id="c1", idempotency_key="p")
    reply = _send_once(session, bob, ann, parent_id=parent.id, idempotency_key="r")
    assert reply.id == _send_once(session, bob, ann, parent_id=parent.id, idempotency_key="r").id
    assert ("c1", 2) == (reply.conversation_id, _count(session))


def test_idempotency_key_is_unique_per_sender(session: Session, ann: User, bob: User) -> None:
    """Two senders may use the same key; without a key nothing is deduplicated."""
    mine, theirs = _send_once(session, ann, bob), _send_once(session, bob, ann)
    plain = _send(session, ann, bob, 1) + _send(session, ann, bob, 1)
    assert mine.id != theirs.id
    assert len(set(plain)) == 2
    assert 4 == _count(session)


@pytest.mark.parametrize(
    "change",
    [{"content": "other"}, {"conversation_id": "c2"}, {"recipient": "ann"}],
    ids=["content", "conversation", "recipient"],
)
def test_reused_key_for_another_message_is_refused(
    session: Session, ann: User, bob: User, change: dict[str, str]
) -> None:
    """The same key for a different message raises, and the caller's transaction is healthy."""
    first = _send_once(session, ann, bob)
    fields = dict(change)
    recipient = ann if fields.pop("recipient", None) else bob
    with pytest.raises(IdempotencyKeyReusedError, match=rf"message {first.id} under this") as info:
        _send_once(session, ann, recipient, **fields)
    assert isinstance(info.value, AlreadyExistsError)
    assert "7f1c-key" not in str(info.value)
    session.commit()
    assert 1 == _count(session)


@pytest.mark.parametrize("key", ["", "k" * 65, "a\x00b", 5])
def test_send_rejects_bad_idempotency_keys(
    session: Session, ann: User, bob: User, key: Any
) -> None:
    """Empty, over 64 characters, NUL or not a string: InvalidInputError, no SQL."""
    with pytest.raises(InvalidInputError, match="idempotency_key"):
        _send_once(session, ann, bob, idempotency_key=key)
    assert 0 == _count(session)


def test_keyed_send_is_one_statement(
    session: Session, ann: User, bob: User, statements: list[str]
) -> None:
    """A first keyed send is the same one INSERT ... SELECT, with ON CONFLICT DO NOTHING."""
    ann_id, bob_id = ann.id, bob.id
    statements.clear()
    send_message(session, sender_id=ann_id, recipient_id=bob_id, content="hi", idempotency_key="k")
    assert 1 == len(statements)
    assert "ON CONFLICT (sender_id, idempotency_key) WHERE" in statements[0]


@pytest.mark.parametrize("first_commits", [True, False], ids=["commit", "rollback"])
def test_concurrent_sends_with_one_key_store_one_message(
    engine: sa.Engine, ann: User, bob: User, *, first_commits: bool
) -> None:
    """A second send with the key waits for the first: its message if committed, else its own.

    PostgreSQL waits on the first transaction's row; SQLite on the database's write lock.
    """
    first_session, second_session = Session(engine), Session(engine)
    first = _send_once(first_session, ann, bob)
    outcome: list[BaseException | int] = []

    def second() -> None:
        try:
            outcome.append(_send_once(second_session, ann, bob).id)
            second_session.commit()
        except Exception as exc:  # noqa: BLE001 - the test inspects whatever happened
            outcome.append(exc)

    racer = threading.Thread(target=second)
    racer.start()
    time.sleep(0.5)
    assert [] == outcome  # waiting on the first transaction's row
    first_id = first.id
    if first_commits:
        first_session.commit()
    else:
        first_session.rollback()
    racer.join(10)
    first_session.close()
    second_session.close()
    with Session(engine) as check:
        stored = check.scalars(sa.select(col(Message.id))).all()
    # After a rollback the second send stores its own row (SQLite may reuse the freed id).
    assert len(outcome) == 1
    assert isinstance(outcome[0], int)
    assert [outcome[0]] == stored
    if first_commits:
        assert [first_id] == outcome


# --- inbox ----------------------------------------------------------------------------------


def test_inbox_pages_newest_first(session: Session, ann: User, bob: User) -> None:
    """Keyset pages of 3 over 7 messages: 3, 3, 1, then an empty page."""
    sent = _send(session, ann, bob, 7)
    _send(session, bob, ann, 2)
    newest_first = sent[::-1]
    first = inbox(session, bob.id, limit=3)
    second = inbox(session, bob.id, limit=3, before_id=first[-1].id)
    third = inbox(session, bob.id, limit=3, before_id=second[-1].id)
    assert [newest_first[:3], newest_first[3:6], newest_first[6:]] == [
        _ids(first),
        _ids(second),
        _ids(third),
    ]
    assert [] == inbox(session, bob.id, limit=3, before_id=third[-1].id)


def test_inbox_boundaries(session: Session, ann: User, bob: User) -> None:
    """A page exactly full, limits 1 and 500, and before_id beyond either end."""
    sent = _send(session, ann, bob, 6)
    assert sent[::-1] == _ids(inbox(session, bob.id, limit=6))
    assert [] == inbox(session, bob.id, limit=6, before_id=sent[0])
    assert [sent[-1]] == _ids(inbox(session, bob.id, limit=1))
    assert sent[::-1] == _ids(inbox(session, bob.id, limit=500))
    assert sent[::-1] == _ids(inbox(session, bob.id, before_id=BIGINT_MAX))
    assert [sent[2], sent[1]] == _ids(inbox(session, bob.id, limit=2, before_id=sent[3]))
    assert [] == inbox(session, ann.id)
    assert [] == inbox(session, 999)


def test_inbox_unread_only(session: Session, ann: User, bob: User) -> None:
    """unread_only leaves out what was marked read, and pages the same way."""
    sent = _send(session, ann, bob, 5)
    mark_read(session, bob.id, message_ids=[sent[1], sent[3]])
    unread = [sent[4], sent[2], sent[0]]
    assert unread == _ids(inbox(session, bob.id, unread_only=True))
    assert [sent[2], sent[0]] == _ids(
        inbox(session, bob.id, unread_only=True, before_id=sent[4], limit=5)
    )


def test_inbox_never_offsets(
    session: Session, backend: str, ann: User, bob: User, statements: list[str]
) -> None:
    """Pages are found by id, not by skipping rows."""
    sent = _send(session, ann, bob, 3)
    statements.clear()
    inbox(session, bob.id, limit=2, before_id=sent[-1])
    (statement,) = statements
    assert "messages.id <" in statement
    if backend == "postgresql":
        # SQLAlchemy writes a constant "OFFSET 0" after every SQLite LIMIT.
        assert "OFFSET" not in statement


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": "10"}, "limit"),
        ({"before_id": 0}, "before_id"),
        ({"user_id": 0}, "user_id"),
        ({"unread_only": "yes"}, "unread_only"),
    ],
)
def test_inbox_rejects_bad_input(
    session: Session, statements: list[str], arguments: dict[str, Any], field: str
) -> None:
    """Limits outside 1..500 and bad ids raise InvalidInputError before any SQL."""
    arguments = {"user_id": 1} | arguments
    with pytest.raises(InvalidInputError, match=field):
        inbox(session, arguments.pop("user_id"), **arguments)
    assert [] == statements


# --- conversation and replies ---------------------------------------------------------------


def test_conversation_pages(session: Session, ann: User, bob: User) -> None:
    """A conversation's messages from both sides, newest first, paged by id."""
    a = _send(session, ann, bob, 2, conversation_id="c1")
    b = _send(session, bob, ann, 2, conversation_id="c1")
    _send(session, ann, bob, 2, conversation_id="c2")
    _send(session, ann, bob, 1)
    first = conversation(session, "c1", limit=3)
    assert [b[1], b[0], a[1]] == _ids(first)
    assert [a[0]] == _ids(conversation(session, " c1 ", limit=3, before_id=first[-1].id))
    assert [] == conversation(session, "missing")


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"conversation_id": ""}, "conversation_id"),
        ({"conversation_id": "c" * 65}, "conversation_id"),
        ({"limit": 501}, "limit"),
        ({"before_id": -1}, "before_id"),
    ],
)
def test_conversation_rejects_bad_input(
    session: Session, statements: list[str], arguments: dict[str, Any], field: str
) -> None:
    """Bad conversation ids, limits and before_ids raise InvalidInputError before any SQL."""
    arguments = {"conversation_id": "c1"} | arguments
    with pytest.raises(InvalidInputError, match=field):
        conversation(session, arguments.pop("conversation_id"), **arguments)
    assert [] == statements


def test_replies(session: Session, ann: User, bob: User) -> None:
    """Direct replies, oldest first; not replies to replies; none for an unknown message."""
    (parent,) = _send(session, ann, bob, 1)
    direct = _send(session, bob, ann, 3, parent_id=parent)
    _send(session, ann, bob, 1, parent_id=direct[0])
    assert direct == _ids(replies(session, parent))
    assert [] == replies(session, 999)
    with pytest.raises(InvalidInputError, match="message_id"):
        replies(session, 0)


# --- unread_count and mark_read -------------------------------------------------------------


def test_unread_count(session: Session, ann: User, bob: User, statements: list[str]) -> None:
    """Only the user's own unread messages count."""
    sent = _send(session, ann, bob, 4)
    _send(session, bob, ann, 2)
    mark_read(session, bob.id, message_ids=sent[:1])
    statements.clear()
    assert (3, 2) == (unread_count(session, bob.id), unread_count(session, ann.id))
    assert 2 == len(statements)
    assert 0 == unread_count(session, 999)
    with pytest.raises(InvalidInputError, match="user_id"):
        unread_count(session, 0)


def test_mark_read_all(session: Session, engine: sa.Engine, ann: User, bob: User) -> None:
    """Without filters every unread message of the user is marked; the count is returned."""
    _send(session, ann, bob, 3)
    _send(session, bob, ann, 2)
    assert 3 == mark_read(session, bob.id)
    assert 0 == mark_read(session, bob.id)
    session.commit()
    with Session(engine) as other:
        assert (0, 2) == (unread_count(other, bob.id), unread_count(other, ann.id))


def test_mark_read_ids_only_own(
    session: Session, ann: User, bob: User, statements: list[str]
) -> None:
    """Ids of others' or already-read messages are ignored; it is one UPDATE."""
    to_bob = _send(session, ann, bob, 3)
    to_ann = _send(session, bob, ann, 1)
    mark_read(session, bob.id, message_ids=to_bob[:1])
    statements.clear()
    assert 1 == mark_read(session, bob.id, message_ids=(to_bob[0], to_bob[1], to_ann[0], 999))
    assert 1 == len(statements)
    assert statements[0].startswith("UPDATE messages")
    assert 1 == unread_count(session, ann.id)


def test_mark_read_conversation(session: Session, ann: User, bob: User) -> None:
    """Only the conversation's messages are marked, and combined with ids both must match."""
    c1 = _send(session, ann, bob, 2, conversation_id="c1")
    _send(session, ann, bob, 2, conversation_id="c2")
    assert 0 == mark_read(session, bob.id, message_ids=c1, conversation_id="c2")
    assert 2 == mark_read(session, bob.id, conversation_id="c1")
    assert 2 == unread_count(session, bob.id)


def test_mark_read_updates_loaded_messages(session: Session, ann: User, bob: User) -> None:
    """Messages already in the session show is_read at once."""
    _send(session, ann, bob, 2)
    loaded = inbox(session, bob.id)
    mark_read(session, bob.id)
    assert [True, True] == [message.is_read for message in loaded]


def test_mark_read_empty_ids(session: Session, bob: User, statements: list[str]) -> None:
    """An empty id list marks nothing and sends no SQL."""
    bob_id = bob.id
    statements.clear()
    assert 0 == mark_read(session, bob_id, message_ids=[])
    assert [] == statements


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"user_id": 0}, "user_id"),
        ({"message_ids": [1, 0]}, "message_ids"),
        ({"message_ids": list(range(1, 502))}, "message_ids"),
        ({"message_ids": ["1"]}, "message_ids"),
        ({"conversation_id": ""}, "conversation_id"),
    ],
)
def test_mark_read_rejects_bad_input(
    session: Session, ann: User, bob: User, arguments: dict[str, Any], field: str
) -> None:
    """Bad ids, more than 500 ids or a bad conversation change nothing."""
    _send(session, ann, bob, 2)
    arguments = {"user_id": bob.id} | arguments
    with pytest.raises(InvalidInputError, match=field):
        mark_read(session, arguments.pop("user_id"), **arguments)
    assert 2 == unread_count(session, bob.id)


@pytest.mark.parametrize("message_ids", [5, 5.0, object()])
def test_mark_read_non_iterable_ids_are_invalid_input(session: Session, message_ids: Any) -> None:
    """A bare id (or any non-iterable) for message_ids raises InvalidInputError, not TypeError."""
    user = touch_telegram_user(session, 7)
    with pytest.raises(InvalidInputError, match="message_ids"):
        mark_read(session, user.id, message_ids=message_ids)


# --- lightweight rows -----------------------------------------------------------------------


def test_row_forms_match_the_instances(
    session: Session, ann: User, bob: User, statements: list[str]
) -> None:
    """as_row / as_rows: one statement each, the same values as the ORM forms, no instances."""
    ann_id, bob_id = ann.id, bob.id
    statements.clear()
    row = send_message(session, sender_id=ann_id, recipient_id=bob_id, content="hi", as_row=True)
    reply = send_message(
        session, sender_id=bob_id, recipient_id=ann_id, content="re", parent_id=row.id, as_row=True
    )
    assert 2 == len(statements)
    assert isinstance(row, MessageRow)
    assert (ann_id, bob_id, "hi", False, None) == (
        row.sender_id,
        row.recipient_id,
        row.content,
        row.is_read,
        row.parent_id,
    )
    assert row.id == reply.parent_id
    assert row.created_at.tzinfo is not None
    statements.clear()
    rows = inbox(session, bob_id, as_rows=True)
    assert 1 == len(statements)
    assert [row] == rows
    assert [r._asdict() for r in rows] == [
        {name: getattr(m, name) for name in MessageRow._fields} for m in inbox(session, bob_id)
    ]
    assert [] == inbox(session, bob_id, before_id=row.id, as_rows=True)
    assert [reply] == inbox(session, ann_id, unread_only=True, as_rows=True)
    assert not any(isinstance(o, Message) and o.id == row.id for o in session.identity_map.values())
    with pytest.raises(UserNotFoundError, match="recipient"):
        send_message(session, sender_id=ann_id, recipient_id=999, content="x", as_row=True)
    with pytest.raises(MessageNotFoundError):
        send_message(
            session, sender_id=ann_id, recipient_id=bob_id, content="x", parent_id=999, as_row=True
        )
    session.rollback()
    assert 0 == _count(session)


def test_mark_read_updates_loaded_copies(session: Session, ann: User, bob: User) -> None:
    """mark_read runs at the Core level and still updates the session's loaded messages."""
    sent = _send(session, ann, bob, 2)
    loaded = inbox(session, bob.id)
    assert 1 == mark_read(session, bob.id, message_ids=sent[:1])
    assert [False, True] == [message.is_read for message in loaded]
