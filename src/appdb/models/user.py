"""The `users` table: a web account, a Telegram identity, or both in one row."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import BigInteger, CheckConstraint, Index, Text, false, func, literal_column, true
from sqlmodel import Field

from appdb.models.base import AppDBModel, TimestampMixin
from appdb.models.types import BigIntegerPK, UTCDateTime
from appdb.rows import _display_name

__all__ = ["User", "UserLimits"]


class UserLimits:
    """Column lengths, shared by the table and the schemas that validate input for it."""

    USERNAME = 64
    EMAIL = 320
    HASHED_PASSWORD = 255
    FULL_NAME = 128
    BIO = 1000
    TELEGRAM_USERNAME = 32
    FIRST_NAME = 64
    LAST_NAME = 64
    LANGUAGE_CODE = 35


class User(AppDBModel, TimestampMixin, table=True):
    """A person: a web account (username, email, password hash), a Telegram user, or both."""

    __tablename__: ClassVar[str] = "users"
    __table_args__: ClassVar[tuple[Any, ...]] = (
        CheckConstraint(
            "username IS NOT NULL OR email IS NOT NULL OR telegram_user_id IS NOT NULL",
            name="has_identity",
        ),
        CheckConstraint("email = lower(email)", name="email_lowercase"),
        CheckConstraint("telegram_user_id > 0", name="telegram_user_id_positive"),
        # Usernames are unique ignoring case, enforced by the database for every writer
        # (registration stores them NFKC-normalised, so full-width forms cannot slip past).
        Index("uq_users_username_lower", func.lower(literal_column("username")), unique=True),
    )

    # `int`, not `int | None`: every row an operation returns is flushed, so its id can be
    # passed on (`send_message(session, sender_id=user.id, ...)`) under a strict type checker.
    # It is None only on an instance built by hand and not yet flushed.
    id: int = Field(default=None, primary_key=True, sa_type=BigIntegerPK)

    username: str | None = Field(default=None, max_length=UserLimits.USERNAME, unique=True)
    email: str | None = Field(default=None, max_length=UserLimits.EMAIL, unique=True)
    # Kept out of repr() and of model_dump()/model_dump_json(); the ORM still writes it.
    hashed_password: str | None = Field(
        default=None, max_length=UserLimits.HASHED_PASSWORD, repr=False, exclude=True
    )
    full_name: str | None = Field(default=None, max_length=UserLimits.FULL_NAME)
    bio: str | None = Field(default=None, sa_type=Text)
    is_active: bool = Field(default=True, sa_column_kwargs={"server_default": true()})
    is_superuser: bool = Field(default=False, sa_column_kwargs={"server_default": false()})

    telegram_user_id: int | None = Field(default=None, sa_type=BigInteger, unique=True)
    telegram_username: str | None = Field(default=None, max_length=UserLimits.TELEGRAM_USERNAME)
    first_name: str | None = Field(default=None, max_length=UserLimits.FIRST_NAME)
    last_name: str | None = Field(default=None, max_length=UserLimits.LAST_NAME)
    language_code: str | None = Field(default=None, max_length=UserLimits.LANGUAGE_CODE)
    is_premium: bool | None = Field(default=None)

    last_login_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    @property
    def display_name(self) -> str:
        """How to address the user: username, Telegram handle, names, else ``User<id>``."""
        return _display_name(self)
