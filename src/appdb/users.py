"""User operations: the bot's per-update touch, web registration and login, look-ups, linking.

Every operation takes the caller's session, first flushes what is pending in it, runs as few
SQL statements as the job allows and returns model instances. None of them commits: the
caller's unit of work owns the transaction. `appdb.aio` has async twins with the same names.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from appdb._passwords import PasswordCheck, check_password, hash_password
from appdb._sql import (
    constraint_name,
    dialect_name,
    insert_or_explain,
    parameters,
    returning,
    upsert_insert,
)
from appdb._validation import Arguments, validated
from appdb.exceptions import (
    EmailTakenError,
    InvalidInputError,
    TelegramIdTakenError,
    UsernameTakenError,
    UserNotFoundError,
)
from appdb.models import User, UserCreate, metadata
from appdb.models.base import utcnow
from appdb.models.schemas import (
    PASSWORD_MAX_LENGTH,
    Email,
    FirstName,
    Id,
    LanguageCode,
    LastName,
    TelegramUserId,
    TelegramUsername,
    Username,
)
from appdb.models.types import UTCDateTime

if TYPE_CHECKING:
    from sqlalchemy.orm import Session
    from sqlalchemy.sql.selectable import TypedReturnsRows

__all__ = [
    "TelegramProfile",
    "authenticate",
    "create_user",
    "get_user_by_email",
    "get_user_by_telegram_id",
    "get_user_by_username",
    "link_telegram",
    "touch_telegram_user",
]


class TelegramProfile(Protocol):
    """What `touch_telegram_user` reads from a Telegram user object, such as aiogram's `User`."""

    @property
    def id(self) -> int:
        """The Telegram user id."""

    @property
    def username(self) -> str | None:
        """The Telegram handle, without ``@``."""

    @property
    def first_name(self) -> str | None:
        """The first name."""

    @property
    def last_name(self) -> str | None:
        """The last name."""

    @property
    def language_code(self) -> str | None:
        """The IETF language tag of the user's client."""

    @property
    def is_premium(self) -> bool | None:
        """Whether the user has Telegram Premium."""


class _TouchArguments(Arguments):
    telegram_user_id: TelegramUserId
    username: TelegramUsername | None
    first_name: FirstName | None
    last_name: LastName | None
    language_code: LanguageCode | None
    is_premium: bool | None


_PROFILE_FIELDS = ("username", "first_name", "last_name", "language_code", "is_premium")
_PROFILE_COLUMNS = ("telegram_username", "first_name", "last_name", "language_code", "is_premium")

# Statements that do not depend on the dialect, built once with bound parameters.
_USERS = metadata.tables["users"]
_BY_USERNAME = sa.select(User).where(col(User.username) == sa.bindparam("key"))
_BY_EMAIL = sa.select(User).where(col(User.email) == sa.bindparam("key"))
_BY_TELEGRAM_ID = sa.select(User).where(col(User.telegram_user_id) == sa.bindparam("key"))
_TAKEN = sa.select(_USERS.c.username).where(
    (_USERS.c.username == sa.bindparam("username")) | (_USERS.c.email == sa.bindparam("email"))
)
_NOW = sa.bindparam("now", type_=UTCDateTime())
_BY_ID = sa.update(_USERS).where(_USERS.c.id == sa.bindparam("user_id"))
_RECORD_LOGIN = returning(User, _BY_ID.values(last_login_at=_NOW, updated_at=_NOW))
_RECORD_LOGIN_AND_REHASH = returning(
    User, _BY_ID.values(last_login_at=_NOW, updated_at=_NOW, **parameters("hashed_password"))
)
_LINK = returning(User, _BY_ID.values(updated_at=_NOW, **parameters("telegram_user_id")))


class _UserIdArguments(Arguments):
    user_id: Id


class _TelegramIdArguments(Arguments):
    telegram_user_id: TelegramUserId


class _LinkArguments(_UserIdArguments, _TelegramIdArguments):
    pass


class _UsernameArguments(Arguments):
    # Normalised exactly as at registration, so a user is found by what they registered with.
    username: Username


class _EmailArguments(Arguments):
    email: Email


def touch_telegram_user(  # noqa: PLR0913 - aiogram's User fields, by name
    session: Session,
    telegram_user_id: int | TelegramProfile,
    *,
    username: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    language_code: str | None = None,
    is_premium: bool | None = None,
) -> User:
    """Get or create the user with a Telegram id, refreshing their profile and `last_login_at`.

    One statement, ``INSERT ... ON CONFLICT (telegram_user_id) DO UPDATE ... RETURNING``, so
    concurrent first updates from a new user make one row and never a unique violation. The
    profile passed in replaces the stored one, as Telegram sends it with every update: ``None``
    means "not set in Telegram" (a removed handle is cleared).

    Args:
        session: The caller's session.
        telegram_user_id: The Telegram user id, or an object with the `TelegramProfile`
            attributes (aiogram's ``message.from_user``), whose fields are then used.
        username: The Telegram handle (stored as `User.telegram_username`).
        first_name: The first name.
        last_name: The last name.
        language_code: The IETF language tag of the user's client.
        is_premium: Whether the user has Telegram Premium.

    Returns:
        The user, refreshed from the row the database returned.

    Raises:
        InvalidInputError: The id is outside 1..2**63-1, or a field is too long or holds NUL.
        TypeError: A Telegram user object and profile keywords were both given.
    """
    arguments: dict[str, object] = {
        "telegram_user_id": telegram_user_id,
        "username": username,
        "first_name": first_name,
        "last_name": last_name,
        "language_code": language_code,
        "is_premium": is_premium,
    }
    if not isinstance(telegram_user_id, int):
        if any(value is not None for value in arguments.values() if value is not telegram_user_id):
            msg = "pass either a Telegram user object or the profile keywords, not both"
            raise TypeError(msg)
        arguments = _profile_arguments(telegram_user_id)
    profile = validated(_TouchArguments, **arguments)
    session.flush()
    statement = _touch_statement(dialect_name(session))
    values = {
        "telegram_user_id": profile.telegram_user_id,
        "telegram_username": profile.username,
        "first_name": profile.first_name,
        "last_name": profile.last_name,
        "language_code": profile.language_code,
        "is_premium": profile.is_premium,
        "last_login_at": utcnow(),
    }
    return session.scalars(statement, values).one()


@functools.cache
def _touch_statement(dialect: str) -> TypedReturnsRows[User]:
    """``INSERT ... ON CONFLICT (telegram_user_id) DO UPDATE ... RETURNING``, built once."""
    insert = upsert_insert(dialect, _USERS).values(
        **parameters("telegram_user_id", *_PROFILE_COLUMNS, "last_login_at")
    )
    refreshed = {name: insert.excluded[name] for name in (*_PROFILE_COLUMNS, "last_login_at")}
    return returning(
        User,
        insert.on_conflict_do_update(
            index_elements=[_USERS.c.telegram_user_id],
            set_=refreshed | {"updated_at": insert.excluded.last_login_at},
        ),
    )


def _profile_arguments(user: object) -> dict[str, object]:
    """`touch_telegram_user`'s arguments, read from a Telegram user object."""
    try:
        return {"telegram_user_id": getattr(user, "id")} | {  # noqa: B009 - any object
            name: getattr(user, name) for name in _PROFILE_FIELDS
        }
    except AttributeError:
        msg = (
            "invalid argument telegram_user_id: expected an int or a Telegram user object, "
            f"not {type(user).__name__}"
        )
        raise InvalidInputError(msg) from None


def create_user(  # noqa: PLR0913 - a registration form's fields, by name
    session: Session,
    *,
    username: str,
    email: str,
    password: str,
    full_name: str | None = None,
    bio: str | None = None,
) -> User:
    """Register a web account, storing only an Argon2id hash of the password.

    One statement on success: ``INSERT ... ON CONFLICT DO NOTHING RETURNING``. A duplicate,
    including one inserted by a concurrent registration, inserts nothing instead of failing,
    so the caller's transaction stays healthy; one more query then tells which value is taken.

    Args:
        session: The caller's session.
        username: 3 to 64 letters, digits, ``_``, ``.`` or ``-``.
        email: The email address; stored lower-cased.
        password: The plain password, 8 to 1024 characters; never stored.
        full_name: An optional display name.
        bio: An optional profile text.

    Returns:
        The new user.

    Raises:
        InvalidInputError: A field is malformed or too long.
        UsernameTakenError: Another user has this username.
        EmailTakenError: Another user has this email address.
    """
    account = _account(
        username=username, email=email, password=password, full_name=full_name, bio=bio
    )
    return _insert_account(session, account, hash_password(account.password))


def _account(**fields: object) -> UserCreate:
    """Check a registration's fields with the API's own schema."""
    return validated(UserCreate, **fields)


def _insert_account(session: Session, account: UserCreate, hashed_password: str) -> User:
    """The database half of `create_user`, run after the password is hashed."""
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
    insert = upsert_insert(dialect, _USERS).values(
        **parameters("username", "email", "hashed_password", "full_name", "bio")
    )
    return returning(User, insert.on_conflict_do_nothing())


def _taken(session: Session, account: UserCreate) -> UsernameTakenError | EmailTakenError | None:
    """Which of the account's unique values another user already has."""
    values = {"username": account.username, "email": account.email}
    taken = set(session.scalars(_TAKEN, values))
    if account.username in taken:
        msg = f"the username {account.username!r} is already taken"
        return UsernameTakenError(msg)
    if taken:
        # The address itself stays out of the message: messages end up in logs.
        msg = "the email address is already registered"
        return EmailTakenError(msg)
    return None


def authenticate(session: Session, login: str, password: str) -> User | None:
    """Check a username or email and a password; on success record `last_login_at`.

    Two statements on success (find the user, then ``UPDATE ... RETURNING``), one otherwise.
    The password is always checked against a hash, a dummy one if the login is unknown, so the
    time taken does not reveal which logins exist. A hash made with outdated parameters is
    replaced by a current one in the same UPDATE.

    Args:
        session: The caller's session.
        login: A username, or an email address (any case).
        password: The plain password.

    Returns:
        The user, or ``None`` if the login is unknown or malformed, the account is inactive or
        has no password, or the password is wrong.
    """
    user = _find_login(session, login, password)
    return _record_login(session, user, check_password(_hash_of(user), password))


def _find_login(session: Session, login: str, password: str) -> User | None:
    """The database half of `authenticate` before the password check."""
    if len(password) > PASSWORD_MAX_LENGTH:
        return None
    try:
        if "@" in login:
            statement, key = _BY_EMAIL, validated(_EmailArguments, email=login).email
        else:
            statement, key = _BY_USERNAME, validated(_UsernameArguments, username=login).username
    except InvalidInputError:
        return None
    return _one_or_none(session, statement, key)


def _one_or_none(session: Session, statement: sa.Select[User], key: object) -> User | None:
    """Flush, then run a look-up by a unique key."""
    session.flush()
    return session.scalars(statement, {"key": key}).one_or_none()


def _hash_of(user: User | None) -> str | None:
    """The hash to check a password against; ``None`` makes the check use a dummy."""
    if user is None or not user.is_active:
        return None
    return user.hashed_password


def _record_login(session: Session, user: User | None, check: PasswordCheck) -> User | None:
    """The database half of `authenticate` after the password check."""
    if user is None or not check.matches:
        return None
    values: dict[str, Any] = {"user_id": user.id, "now": utcnow()}
    if check.new_hash is None:
        return session.scalars(_RECORD_LOGIN, values).one_or_none()
    values["hashed_password"] = check.new_hash
    return session.scalars(_RECORD_LOGIN_AND_REHASH, values).one_or_none()


def get_user_by_username(session: Session, username: str) -> User | None:
    """Find a web account by username.

    Args:
        session: The caller's session.
        username: The username, as it was registered.

    Returns:
        The user, or ``None``.

    Raises:
        InvalidInputError: The username could not have been registered (wrong length or
            characters).
    """
    key = validated(_UsernameArguments, username=username).username
    return _one_or_none(session, _BY_USERNAME, key)


def get_user_by_email(session: Session, email: str) -> User | None:
    """Find a web account by email address, in any case.

    Args:
        session: The caller's session.
        email: The email address.

    Returns:
        The user, or ``None``.

    Raises:
        InvalidInputError: The address is malformed or too long.
    """
    key = validated(_EmailArguments, email=email).email
    return _one_or_none(session, _BY_EMAIL, key)


def get_user_by_telegram_id(session: Session, telegram_user_id: int) -> User | None:
    """Find a user by Telegram id without touching them.

    Args:
        session: The caller's session.
        telegram_user_id: The Telegram user id.

    Returns:
        The user, or ``None``.

    Raises:
        InvalidInputError: The id is outside 1..2**63-1.
    """
    key = validated(_TelegramIdArguments, telegram_user_id=telegram_user_id).telegram_user_id
    return _one_or_none(session, _BY_TELEGRAM_ID, key)


def link_telegram(session: Session, user_id: int, telegram_user_id: int) -> User:
    """Attach a Telegram identity to an existing user (typically a web account).

    One ``UPDATE ... RETURNING`` inside a SAVEPOINT: an UPDATE has no ``ON CONFLICT``, and
    a concurrent `touch_telegram_user` can take the id at any moment, so the unique violation
    is caught, rolled back to the savepoint and reported by its constraint's name. The rest of
    the caller's transaction is untouched.

    Args:
        session: The caller's session.
        user_id: The user to link.
        telegram_user_id: The Telegram user id to attach; it replaces any previous one.

    Returns:
        The updated user.

    Raises:
        InvalidInputError: An id is out of range.
        UserNotFoundError: No user has `user_id`.
        TelegramIdTakenError: Another user already has this Telegram id (for instance a row
            made by `touch_telegram_user` before the person registered on the web).
    """
    link = validated(_LinkArguments, user_id=user_id, telegram_user_id=telegram_user_id)
    session.flush()
    values = {"user_id": link.user_id, "telegram_user_id": link.telegram_user_id, "now": utcnow()}
    try:
        with session.begin_nested():
            user = session.scalars(_LINK, values).one_or_none()
    except IntegrityError as exc:
        if constraint_name(exc) != "uq_users_telegram_user_id":
            raise
        msg = f"Telegram user {link.telegram_user_id} is already linked to another user"
        raise TelegramIdTakenError(msg) from None
    if user is None:
        msg = f"user {link.user_id} does not exist"
        raise UserNotFoundError(msg)
    return user
