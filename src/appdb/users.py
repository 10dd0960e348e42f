"""User operations: the bot's per-update touch, web registration and login, look-ups, linking.

Every operation takes the caller's session, first flushes what is pending in it, runs as few
SQL statements as the job allows and returns model instances. None of them commits: the
caller's unit of work owns the transaction. `appdb.aio` has async twins with the same names.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Literal, Protocol, overload

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from appdb._accounts import (
    BY_EMAIL,
    BY_USERNAME,
    NOW,
    UPDATE_BY_ID,
    USERS,
    EmailArguments,
    UsernameArguments,
    find_login,
    hash_of,
    insert_account,
    one_or_none,
    record_login,
    validate_account,
)
from appdb._passwords import check_password, hash_password
from appdb._sql import (
    Query,
    constraint_name,
    dialect_name,
    flush,
    orm_session,
    parameters,
    returning,
    run,
    upsert_insert,
)
from appdb._validation import Arguments, validated
from appdb.exceptions import (
    InvalidInputError,
    TelegramIdTakenError,
    UserNotFoundError,
)
from appdb.models import User
from appdb.models.base import utcnow
from appdb.models.schemas import (
    FirstName,
    Id,
    LanguageCode,
    LastName,
    TelegramUserId,
    TelegramUsername,
)
from appdb.rows import UserRow

if TYPE_CHECKING:
    from sqlalchemy import Connection
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
    username: TelegramUsername | None = None
    first_name: FirstName | None = None
    last_name: LastName | None = None
    language_code: LanguageCode | None = None
    is_premium: bool | None = None


_PROFILE_FIELDS = ("username", "first_name", "last_name", "language_code", "is_premium")
_PROFILE_COLUMNS = ("telegram_username", "first_name", "last_name", "language_code", "is_premium")

# Statements that do not depend on the dialect, built once with bound parameters.
_BY_TELEGRAM_ID = sa.select(User).where(col(User.telegram_user_id) == sa.bindparam("key"))
_LINK = returning(User, UPDATE_BY_ID.values(updated_at=NOW, **parameters("telegram_user_id")))


class _UserIdArguments(Arguments):
    user_id: Id


class _TelegramIdArguments(Arguments):
    telegram_user_id: TelegramUserId


class _LinkArguments(_UserIdArguments, _TelegramIdArguments):
    pass


@overload
def touch_telegram_user(
    session: Session, user_or_id: TelegramProfile, /, *, as_row: Literal[False] = False
) -> User: ...


@overload
def touch_telegram_user(
    session: Session | Connection, user_or_id: TelegramProfile, /, *, as_row: Literal[True]
) -> UserRow: ...


@overload
def touch_telegram_user(
    session: Session,
    user_or_id: int,
    /,
    *,
    username: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    language_code: str | None = None,
    is_premium: bool | None = None,
    as_row: Literal[False] = False,
) -> User: ...


@overload
def touch_telegram_user(
    session: Session | Connection,
    user_or_id: int,
    /,
    *,
    username: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    language_code: str | None = None,
    is_premium: bool | None = None,
    as_row: Literal[True],
) -> UserRow: ...


def touch_telegram_user(  # noqa: PLR0913 - aiogram's User fields, by name
    session: Session | Connection,
    user_or_id: int | TelegramProfile,
    /,
    *,
    username: str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    language_code: str | None = None,
    is_premium: bool | None = None,
    as_row: bool = False,
) -> User | UserRow:
    """Get or create the user with a Telegram id, refreshing their profile and `last_login_at`.

    One statement, ``INSERT ... ON CONFLICT (telegram_user_id) DO UPDATE ... RETURNING``, so
    concurrent first updates from a new user make one row and never a unique violation. The
    profile passed in replaces the stored one, as Telegram sends it with every update: ``None``
    means "not set in Telegram" (a removed handle is cleared).

    Args:
        session: The caller's session, or the connection of a `connection_scope` (with
            ``as_row=True``).
        user_or_id: A Telegram user object with the `TelegramProfile` attributes (aiogram's
            ``message.from_user``), whose fields are then used; or the Telegram user id, with
            the profile as keywords.
        username: The Telegram handle (stored as `User.telegram_username`).
        first_name: The first name.
        last_name: The last name.
        language_code: The IETF language tag of the user's client.
        is_premium: Whether the user has Telegram Premium.
        as_row: Return a `UserRow` (no password hash) instead of a `User`: the same statement
            run at the Core level, no ORM instance made (see `appdb.rows`).

    Returns:
        The user, refreshed from the row the database returned.

    Raises:
        InvalidInputError: The id is outside 1..2**63-1, or a field is too long or holds NUL;
            or a connection was given without ``as_row=True``.
        TypeError: A Telegram user object and profile keywords were both given.
    """
    query = touch_query(
        dialect_name(session),
        user_or_id,
        username=username,
        first_name=first_name,
        last_name=last_name,
        language_code=language_code,
        is_premium=is_premium,
    )
    flush(session)
    if as_row:
        return run(session, query)
    orm = orm_session(session, "touch_telegram_user", "as_row=True")
    return orm.scalars(_touch_statement(dialect_name(orm)), query.values).one()


def touch_query(
    dialect: str, user_or_id: int | TelegramProfile, /, **profile: str | bool | None
) -> Query[UserRow]:
    """`touch_telegram_user`'s upsert for `dialect` and its checked values, making a `UserRow`.

    `profile` holds `touch_telegram_user`'s profile keywords (``username``, ``first_name``,
    ``last_name``, ``language_code``, ``is_premium``). Shared with `appdb.aio`, which awaits it
    on an async connection; not part of the API.

    Raises:
        InvalidInputError: As `touch_telegram_user`, or for a keyword that is not a profile field.
        TypeError: As `touch_telegram_user`.
    """
    arguments: dict[str, object] = {"telegram_user_id": user_or_id, **profile}
    if not isinstance(user_or_id, int):
        if any(value is not None for value in arguments.values() if value is not user_or_id):
            msg = "pass either a Telegram user object or the profile keywords, not both"
            raise TypeError(msg)
        arguments = _profile_arguments(user_or_id)
    checked = validated(_TouchArguments, **arguments)
    values: dict[str, object] = {
        "telegram_user_id": checked.telegram_user_id,
        "telegram_username": checked.username,
        "first_name": checked.first_name,
        "last_name": checked.last_name,
        "language_code": checked.language_code,
        "is_premium": checked.is_premium,
        "last_login_at": utcnow(),
    }
    return Query(_touch_row_statement(dialect), values, _only_user_row)


def _only_user_row(rows: list[tuple[object, ...]]) -> UserRow:
    (row,) = rows
    return UserRow._make(row)


@functools.cache
def _touch_statement(dialect: str) -> TypedReturnsRows[User]:
    """``INSERT ... ON CONFLICT (telegram_user_id) DO UPDATE ... RETURNING``, loading a `User`."""
    return returning(User, _touch_upsert(dialect))


@functools.cache
def _touch_row_statement(dialect: str) -> sa.Insert:
    """The same upsert at the Core level, returning a `UserRow`'s columns."""
    columns = [USERS.c[name] for name in UserRow._fields]
    return _touch_upsert(dialect).returning(*columns)


def _touch_upsert(dialect: str) -> sa.Insert:
    """``INSERT ... ON CONFLICT (telegram_user_id) DO UPDATE``, without RETURNING."""
    insert = upsert_insert(dialect, USERS).values(
        **parameters("telegram_user_id", *_PROFILE_COLUMNS, "last_login_at")
    )
    refreshed = {name: insert.excluded[name] for name in (*_PROFILE_COLUMNS, "last_login_at")}
    return insert.on_conflict_do_update(
        index_elements=[USERS.c.telegram_user_id],
        set_=refreshed | {"updated_at": insert.excluded.last_login_at},
    )


def _profile_arguments(user: object) -> dict[str, object]:
    """`touch_telegram_user`'s arguments, read from a Telegram user object."""
    try:
        return {"telegram_user_id": getattr(user, "id")} | {  # noqa: B009 - any object
            name: getattr(user, name) for name in _PROFILE_FIELDS
        }
    except AttributeError:
        msg = (
            "invalid argument user_or_id: expected a telegram_user_id (an int) or a Telegram "
            "user object, "
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
        username: 3 to 64 letters, digits, ``_``, ``.`` or ``-`` (full-width forms are
            NFKC-normalised to them); unique ignoring case, so ``Ann`` is taken by ``ann``.
        email: The email address; stored NFKC-normalised and lower-cased.
        password: The plain password, 8 to 1024 characters; never stored. A longer one is
            refused before it is hashed or even scanned.
        full_name: An optional display name.
        bio: An optional profile text.

    Returns:
        The new user.

    Raises:
        InvalidInputError: A field is malformed or too long.
        UsernameTakenError: Another user has this username.
        EmailTakenError: Another user has this email address.
    """
    account = validate_account(
        username=username, email=email, password=password, full_name=full_name, bio=bio
    )
    return insert_account(session, account, hash_password(account.password))


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

    Raises:
        InvalidInputError: The login or the password is not a string, or the password is longer
            than 1024 characters (no registered password is); raised before any hashing or SQL,
            for every login alike, so it reveals nothing about accounts.
    """
    user = find_login(session, login, password)
    return record_login(session, user, check_password(hash_of(user), password))


def get_user_by_username(session: Session, username: str) -> User | None:
    """Find a web account by username.

    Args:
        session: The caller's session.
        username: The username, in any case (``ANN`` finds ``ann``).

    Returns:
        The user, or ``None``.

    Raises:
        InvalidInputError: The username could not have been registered (wrong length or
            characters).
    """
    key = validated(UsernameArguments, username=username).username
    return one_or_none(session, BY_USERNAME, key)


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
    key = validated(EmailArguments, email=email).email
    return one_or_none(session, BY_EMAIL, key)


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
    return one_or_none(session, _BY_TELEGRAM_ID, key)


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
