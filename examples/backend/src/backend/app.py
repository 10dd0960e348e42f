"""The routes: register, log in, send, inbox (cursor paging), unread count, mark read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Query, status
from pydantic import BaseModel, Field
from sqlmodel import Session

from appdb import MessageRead, UserRead, get_db
from appdb.fastapi import add_exception_handlers
from appdb.messages import inbox, mark_read, send_message, unread_count
from appdb.migrate import ensure_schema_current
from appdb.users import authenticate, create_user, get_user_by_username
from backend.auth import current_user_id, issue_token

Db = Annotated[Session, Depends(get_db)]
UserId = Annotated[int, Depends(current_user_id)]


class Registration(BaseModel):
    """A new web account."""

    username: str
    email: str
    password: str = Field(repr=False)


class Login(BaseModel):
    """A username or email, and the password."""

    login: str
    password: str = Field(repr=False)


class Token(BaseModel):
    """What a successful login returns."""

    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret


class NewMessage(BaseModel):
    """A message to another user, by username."""

    to: str
    content: str
    parent_id: int | None = None


class InboxPage(BaseModel):
    """One page of the inbox; pass `next_before_id` as `before_id` for the next one."""

    messages: list[MessageRead]
    next_before_id: int | None


class MarkRead(BaseModel):
    """The messages to mark read; all unread ones when omitted."""

    message_ids: list[int] | None = None


@asynccontextmanager
async def _refuse_wrong_schema(_app: FastAPI) -> AsyncIterator[None]:
    # Start-up guard: SchemaOutOfDateError stops the server before it serves a request.
    ensure_schema_current()
    yield


def create_app(*, check_schema: bool = True) -> FastAPI:
    """Build the application.

    Args:
        check_schema: Refuse to start unless the database is at the installed appdb's schema.

    Returns:
        The FastAPI application.
    """
    app = FastAPI(
        title="appdb example backend", lifespan=_refuse_wrong_schema if check_schema else None
    )
    # appdb's errors: 404, 409, 422, and 503 with Retry-After when the database is unavailable.
    add_exception_handlers(app)

    @app.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserRead)
    def register(body: Registration, db: Db) -> object:
        user = create_user(db, username=body.username, email=body.email, password=body.password)
        db.commit()
        return user

    @app.post("/login")
    def login(body: Login, db: Db) -> Token:
        user = authenticate(db, body.login, body.password)
        if user is None or user.id is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong login or password")
        db.commit()  # authenticate recorded last_login_at
        return Token(access_token=issue_token(user.id))

    @app.post("/messages", status_code=status.HTTP_201_CREATED, response_model=MessageRead)
    def send(
        body: NewMessage,
        db: Db,
        user_id: UserId,
        # A client retrying after a timeout sends the same key: the message is stored once.
        idempotency_key: Annotated[str | None, Header(max_length=64)] = None,
    ) -> object:
        recipient = get_user_by_username(db, body.to)
        if recipient is None or recipient.id is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {body.to!r}")
        message = send_message(
            db,
            sender_id=user_id,
            recipient_id=recipient.id,
            content=body.content,
            parent_id=body.parent_id,
            idempotency_key=idempotency_key,
        )
        db.commit()
        return message

    @app.get("/inbox")
    def read_inbox(
        db: Db,
        user_id: UserId,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        before_id: int | None = None,
        unread_only: bool = False,  # noqa: FBT001, FBT002 - a query parameter
    ) -> InboxPage:
        page = inbox(db, user_id, limit=limit, before_id=before_id, unread_only=unread_only)
        next_before_id = page[-1].id if len(page) == limit else None
        return InboxPage(
            messages=[MessageRead.model_validate(message) for message in page],
            next_before_id=next_before_id,
        )

    @app.get("/inbox/unread-count")
    def count_unread(db: Db, user_id: UserId) -> dict[str, int]:
        return {"unread": unread_count(db, user_id)}

    @app.post("/inbox/read")
    def read(body: MarkRead, db: Db, user_id: UserId) -> dict[str, int]:
        marked = mark_read(db, user_id, message_ids=body.message_ids)
        db.commit()
        return {"marked": marked}

    return app


app = create_app()
"""What ``uvicorn backend.app:app`` serves."""
