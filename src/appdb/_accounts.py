"""Registration and login in steps, shared by `appdb.users` and its async twins in `appdb.aio`.

Hashing or checking a password takes tens of milliseconds of CPU: `appdb.users` runs the steps
in a row, `appdb.aio` runs the database steps in the session and the password step in a worker
thread. The look-ups by username and email the steps use serve `appdb.users` too.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import col

from appdb._sql import dialect_name, insert_or_explain, parameters, returning, upsert_insert
from appdb._validation import Arguments, validated
from appdb.exceptions import EmailTakenError, InvalidInputError, UsernameTakenError
from appdb.models import User, UserCreate, metadata
from appdb.models.base import utcnow
from appdb.models.schemas import PASSWORD_MAX_LENGTH, Email, Username
from appdb.models.types import UTCDateTime

if TYPE_CHECKING:
    from sqlalchemy.orm import Session
    from sqlalchemy.sql.selectable import TypedReturnsRows

    from appdb._passwords import PasswordCheck

__all__ = [
    "BY_EMAIL",
    "BY_USERNAME",
    "NOW",
    "UPDATE_BY_ID",
    "USERS",
    "EmailArguments",
    "UsernameArguments",
    "find_login",
    "hash_of",
    "insert_account",
    "one_or_none",
    "record_login",
    "validate_account",
]

logger: logging.Logger = logging.getLogger("appdb")

# Statements that do not depend on the dialect, built once with bound parameters.
USERS = metadata.tables["users"]
"""The ``users`` table."""
BY_USERNAME = sa.select(User).where(
    sa.func.lower(col(User.username)) == sa.func.lower(sa.bindparam("key"))
)
"""The user whose username is ``:key``, ignoring case (served by ``uq_users_username_lower``)."""
BY_EMAIL = sa.select(User).where(col(User.email) == sa.bindparam("key"))
"""The user whose email address is ``:key``."""
NOW = sa.bindparam("now", type_=UTCDateTime())
"""The ``:now`` parameter, a timestamp."""
UPDATE_BY_ID = sa.update(USERS).where(USERS.c.id == sa.bindparam("user_id"))
"""An UPDATE of the user whose id is ``:user_id``; add ``.values(...)``."""

_TAKEN = sa.select(USERS.c.username).where(
    (sa.func.lower(USERS.c.username) == sa.func.lower(sa.bindparam("username")))
    | (USERS.c.email == sa.bindparam("email"))
)
_RECORD_LOGIN = returning(User, UPDATE_BY_ID.values(last_login_at=NOW, updated_at=NOW))
_RECORD_LOGIN_AND_REHASH = returning(
    User, UPDATE_BY_ID.values(last_login_at=NOW, updated_at=NOW, **parameters("hashed_password"))
)


class UsernameArguments(Arguments):
    """A username, normalised exactly as at registration, so a user is found by it."""

    username: Username


class EmailArguments(Arguments):
    """An email address, normalised as at registration."""

    email: Email


def validate_account(**fields: object) -> UserCreate:
    """Check a registration's fields with the API's own schema."""
    check_password_size(fields["password"])
    return validated(UserCreate, **fields)


def check_password_size(password: object) -> None:
    """Refuse a non-string or over-long password in constant time, before anything reads it.

    Hashing costs CPU in proportion to the length (a 10 MB password: over a second), so an
    over-long one must never reach the hasher, nor even a validator that scans it.

    Raises:
        InvalidInputError: Not a string, or longer than `PASSWORD_MAX_LENGTH` characters.
    """
    if not isinstance(password, str):
        msg = f"invalid argument password: expected a string, not {type(password).__name__}"
        raise InvalidInputError(msg)
    if len(password) > PASSWORD_MAX_LENGTH:
        msg = f"invalid argument password: longer than {PASSWORD_MAX_LENGTH} characters"
        raise InvalidInputError(msg)


def check_login_type(login: object) -> None:
    """A login that is not a string is the caller's bug, not an unknown user.

    Raises:
        InvalidInputError: `login` is not a string.
    """
    if not isinstance(login, str):
        msg = f"invalid argument login: expected a string, not {type(login).__name__}"
        raise InvalidInputError(msg)


def insert_account(session: Session, account: UserCreate, hashed_password: str) -> User:
    """The database half of `create_user`, run after the password is hashed.

    Args:
        session: The caller's session.
        account: What `validate_account` returned.
        hashed_password: The Argon2id hash of ``account.password``.

    Returns:
        The new user.

    Raises:
        UsernameTakenError: Another user has this username.
        EmailTakenError: Another user has this email address.
    """
    session.flush()
    values = {
        "username": account.username,
        "email": account.email,
        "hashed_password": hashed_password,
        "full_name": account.full_name,
        "bio": account.bio,
    }
    statement = _register_statement(dialect_name(session))
    return insert_or_explain(session, statement, values, lambda: _taken(session, account))


@functools.cache
def _register_statement(dialect: str) -> TypedReturnsRows[User]:
    """``INSERT ... ON CONFLICT DO NOTHING RETURNING``: any unique clash inserts nothing."""
    insert = upsert_insert(dialect, USERS).values(
        **parameters("username", "email", "hashed_password", "full_name", "bio")
    )
    return returning(User, insert.on_conflict_do_nothing())


def _taken(session: Session, account: UserCreate) -> UsernameTakenError | EmailTakenError | None:
    """Which of the account's unique values another user already has."""
    values = {"username": account.username, "email": account.email}
    taken = set(session.scalars(_TAKEN, values))
    if account.username.lower() in {name.lower() for name in taken if name is not None}:
        msg = f"the username {account.username!r} is already taken"
        return UsernameTakenError(msg)
    if taken:
        # The address itself stays out of the message: messages end up in logs.
        msg = "the email address is already registered"
        return EmailTakenError(msg)
    return None


def find_login(session: Session, login: str, password: str) -> User | None:
    """The database half of `authenticate` before the password check."""
    check_login_type(login)
    check_password_size(password)
    try:
        if "@" in login:
            statement, key = BY_EMAIL, validated(EmailArguments, email=login).email
        else:
            statement, key = BY_USERNAME, validated(UsernameArguments, username=login).username
    except InvalidInputError:
        return None
    return one_or_none(session, statement, key)


def one_or_none(session: Session, statement: sa.Select[User], key: object) -> User | None:
    """Flush, then run a look-up by a unique key."""
    session.flush()
    return session.scalars(statement, {"key": key}).one_or_none()


def hash_of(user: User | None) -> str | None:
    """The hash to check a password against; ``None`` makes the check use a dummy."""
    if user is None or not user.is_active:
        return None
    return user.hashed_password


def record_login(session: Session, user: User | None, check: PasswordCheck) -> User | None:
    """The database half of `authenticate` after the password check."""
    if user is not None and check.unknown_scheme is not None:
        # The scheme's name only: a hash in a log is an offline-cracking target.
        logger.warning(
            "user %s has a password hash of unknown scheme %r: the login is refused",
            user.id,
            check.unknown_scheme,
        )
    if user is None or not check.matches:
        return None
    values: dict[str, Any] = {"user_id": user.id, "now": utcnow()}
    if check.new_hash is None:
        return session.scalars(_RECORD_LOGIN, values).one_or_none()
    values["hashed_password"] = check.new_hash
    return session.scalars(_RECORD_LOGIN_AND_REHASH, values).one_or_none()
