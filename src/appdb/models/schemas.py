"""Pydantic schemas for APIs: what clients send (`*Create`, `*Update`) and get back (`*Read`).

Table models skip validation, so input from strangers goes through these first.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
)

from appdb.models.message import MessageLimits
from appdb.models.types import BIGINT_MAX
from appdb.models.user import UserLimits

if TYPE_CHECKING:
    from pydantic.json_schema import JsonSchemaValue
    from pydantic_core import CoreSchema

__all__ = [
    "MessageCreate",
    "MessageRead",
    "TelegramUserId",
    "UserCreate",
    "UserRead",
    "UserUpdate",
]

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 1024


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL; reject it here instead of failing in the driver.
    if "\x00" in value:
        msg = "must not contain NUL characters"
        raise ValueError(msg)
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        msg = "must not be empty or only whitespace"
        raise ValueError(msg)
    return value


def _lower(value: str) -> str:
    return value.lower()


def _nfkc(value: object) -> object:
    # Full-width and other compatibility forms become their plain letters before the checks,
    # so a look-alike of a registered name or address is that name or address.
    return unicodedata.normalize("NFKC", value) if isinstance(value, str) else value


Username = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=3,
        max_length=UserLimits.USERNAME,
        pattern=r"^[A-Za-z0-9_.-]+$",
    ),
    BeforeValidator(_nfkc),
]
"""Stored as typed (after NFKC); unique ignoring case (the database's index on lower())."""


def _email(value: str) -> str:
    # pydantic's EmailStr check, with email-validator (~30 ms to import) loaded by the first
    # address checked instead of by `import appdb`.
    from pydantic.networks import validate_email  # noqa: PLC0415

    return validate_email(value)[1]


class _EmailFormat:
    """Marks the OpenAPI schema ``format: email``, as `pydantic.EmailStr` does."""

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return handler(schema) | {"format": "email"}


Email = Annotated[
    str,
    AfterValidator(_email),
    _EmailFormat(),
    StringConstraints(max_length=UserLimits.EMAIL),
    AfterValidator(_lower),
    BeforeValidator(_nfkc),
]
Password = Annotated[
    str,
    StringConstraints(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH),
    AfterValidator(_no_nul),
]
FullName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=UserLimits.FULL_NAME),
    AfterValidator(_no_nul),
]
Bio = Annotated[
    str,
    StringConstraints(max_length=UserLimits.BIO),
    AfterValidator(_no_nul),
]
Content = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MessageLimits.CONTENT),
    AfterValidator(_no_nul),
    AfterValidator(_not_blank),
]
ConversationId = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=MessageLimits.CONVERSATION_ID
    ),
    AfterValidator(_no_nul),
]
IdempotencyKey = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MessageLimits.IDEMPOTENCY_KEY),
    AfterValidator(_no_nul),
]
"""An opaque client-chosen key, compared exactly (no stripping, no case folding)."""
TelegramUserId = Annotated[int, Field(ge=1, le=BIGINT_MAX)]
"""A Telegram user id: positive and within a signed 64-bit integer."""
Id = Annotated[int, Field(ge=1, le=BIGINT_MAX)]
# Telegram profile fields are stored as Telegram sends them: no stripping, only the column limits.
TelegramUsername = Annotated[
    str, StringConstraints(max_length=UserLimits.TELEGRAM_USERNAME), AfterValidator(_no_nul)
]
FirstName = Annotated[
    str, StringConstraints(max_length=UserLimits.FIRST_NAME), AfterValidator(_no_nul)
]
LastName = Annotated[
    str, StringConstraints(max_length=UserLimits.LAST_NAME), AfterValidator(_no_nul)
]
LanguageCode = Annotated[
    str, StringConstraints(max_length=UserLimits.LANGUAGE_CODE), AfterValidator(_no_nul)
]
MAX_PAGE_SIZE = 500
"""The most rows one page of messages may hold."""
PageSize = Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)]


class UserCreate(BaseModel):
    """A registration: the only schema that carries a plain password, which is never stored."""

    # A validation error must not repeat a password into logs.
    model_config: ClassVar[ConfigDict] = ConfigDict(
        extra="forbid", hide_input_in_errors=True, defer_build=True
    )

    username: Username
    email: Email
    password: Password = Field(repr=False)
    full_name: FullName | None = None
    bio: Bio | None = None


class UserUpdate(BaseModel):
    """A partial profile update; unset fields stay as they are."""

    model_config: ClassVar[ConfigDict] = ConfigDict(
        extra="forbid", hide_input_in_errors=True, defer_build=True
    )

    email: Email | None = None
    full_name: FullName | None = None
    bio: Bio | None = None
    password: Password | None = Field(default=None, repr=False)


class UserRead(BaseModel):
    """A user as an API returns it; it has no field for the password hash."""

    model_config: ClassVar[ConfigDict] = ConfigDict(from_attributes=True, defer_build=True)

    id: int
    username: str | None
    email: str | None
    full_name: str | None
    bio: str | None
    is_active: bool
    is_superuser: bool
    telegram_user_id: int | None
    telegram_username: str | None
    first_name: str | None
    last_name: str | None
    language_code: str | None
    is_premium: bool | None
    display_name: str
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None


class MessageCreate(BaseModel):
    """A message to send; the sender is whoever is authenticated."""

    model_config: ClassVar[ConfigDict] = ConfigDict(extra="forbid", defer_build=True)

    recipient_id: Id
    content: Content
    parent_id: Id | None = None
    conversation_id: ConversationId | None = None
    # Chosen by the client per message: a retried request stores the message once.
    idempotency_key: IdempotencyKey | None = None


class MessageRead(BaseModel):
    """A message as an API returns it."""

    model_config: ClassVar[ConfigDict] = ConfigDict(from_attributes=True, defer_build=True)

    id: int
    sender_id: int
    recipient_id: int
    content: str
    is_read: bool
    parent_id: int | None
    conversation_id: str | None
    created_at: datetime
    updated_at: datetime
