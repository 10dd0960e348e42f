"""appdb.users: touch, registration, login, look-ups and linking, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from aiogram.types import User as AiogramUser
from argon2 import PasswordHasher
from sqlmodel import Session, func, select

from appdb import (
    AlreadyExistsError,
    AppDBError,
    ConcurrentUpdateError,
    DatabaseSettings,
    EmailTakenError,
    InvalidInputError,
    TelegramIdTakenError,
    User,
    UsernameTakenError,
    UserNotFoundError,
    _accounts,
    create_engine,
)
from appdb.models.types import BIGINT_MAX
from appdb.users import (
    authenticate,
    create_user,
    get_user_by_email,
    get_user_by_telegram_id,
    get_user_by_username,
    link_telegram,
    touch_telegram_user,
)

PASSWORD = "correct horse battery"

T = TypeVar("T")


def _count(session: Session) -> int:
    return session.exec(select(func.count()).select_from(User)).one()


def _stored(engine: sa.Engine, user_id: int) -> User:
    """The row as another session reads it after commit."""
    with Session(engine) as other:
        stored = other.get(User, user_id)
    assert stored is not None
    return stored


def _telegram_profile(
    user: User,
) -> tuple[int | None, str | None, str | None, str | None, str | None, bool | None]:
    return (
        user.telegram_user_id,
        user.telegram_username,
        user.first_name,
        user.last_name,
        user.language_code,
        user.is_premium,
    )


def _register(session: Session, username: str = "ann", **fields: Any) -> User:
    fields.setdefault("email", f"{username}@example.io")
    return create_user(session, username=username, password=PASSWORD, **fields)


# --- touch_telegram_user ------------------------------------------------------------------


def test_touch_creates_user_with_profile(session: Session) -> None:
    """A first touch creates the row with the Telegram profile and a login time."""
    before = datetime.now(UTC)
    user = touch_telegram_user(
        session,
        42,
        username="ann_tg",
        first_name="Ann",
        last_name="Lee",
        language_code="en",
        is_premium=True,
    )
    session.commit()
    assert user.id is not None
    assert (42, "ann_tg", "Ann", "Lee", "en", True) == _telegram_profile(user)
    assert user.last_login_at is not None
    assert before <= user.last_login_at <= datetime.now(UTC)
    assert (None, None, None, True) == (
        user.username,
        user.email,
        user.hashed_password,
        user.is_active,
    )
    assert 1 == _count(session)


def test_touch_existing_refreshes_profile_and_login(session: Session, engine: sa.Engine) -> None:
    """A later touch updates the same row: new profile, later login, created_at kept."""
    first = touch_telegram_user(session, 42, username="old", first_name="Ann", is_premium=True)
    session.commit()
    user_id, created, login, updated = (
        first.id,
        first.created_at,
        first.last_login_at,
        first.updated_at,
    )
    time.sleep(0.01)
    again = touch_telegram_user(session, 42, username=None, first_name="Anna", language_code="de")
    session.commit()
    stored = _stored(engine, user_id)
    assert (user_id, None, "Anna", "de", None) == (
        stored.id,
        stored.telegram_username,
        stored.first_name,
        stored.language_code,
        stored.is_premium,
    )
    assert created == stored.created_at
    assert stored.last_login_at is not None
    assert login is not None
    assert stored.last_login_at > login
    assert stored.updated_at is not None
    assert updated is not None
    assert stored.updated_at > updated
    assert again is first
    assert 1 == _count(session)


def test_touch_refreshes_the_loaded_instance(session: Session) -> None:
    """A user already in the session is updated in place, not left stale."""
    loaded = touch_telegram_user(session, 42, first_name="Ann")
    session.commit()
    touched = touch_telegram_user(session, 42, first_name="Anna")
    assert touched is loaded
    assert "Anna" == loaded.first_name


def test_touch_is_one_statement(session: Session, statements: list[str]) -> None:
    """Get-or-create plus refresh is a single INSERT ... ON CONFLICT ... RETURNING."""
    touch_telegram_user(session, 42, first_name="Ann")
    touch_telegram_user(session, 42, first_name="Anna")
    assert 2 == len(statements)
    for statement in statements:
        assert statement.startswith("INSERT INTO users")
        assert "ON CONFLICT (telegram_user_id) DO UPDATE" in statement
        assert "RETURNING" in statement


def test_touch_keeps_web_account_fields(session: Session) -> None:
    """Touching a linked web account leaves its username, email and password hash alone."""
    account = _register(session)
    link_telegram(session, account.id, 42)
    session.commit()
    hashed = account.hashed_password
    touched = touch_telegram_user(session, 42, first_name="Ann")
    session.commit()
    assert (account.id, "ann", "ann@example.io", hashed) == (
        touched.id,
        touched.username,
        touched.email,
        touched.hashed_password,
    )


def test_touch_accepts_an_aiogram_user(session: Session) -> None:
    """The bot can pass message.from_user straight through."""
    from_user = AiogramUser(
        id=BIGINT_MAX,
        is_bot=False,
        first_name="Ann",
        last_name="Lee",
        username="ann_tg",
        language_code="en-GB",
        is_premium=None,
    )
    user = touch_telegram_user(session, from_user)
    assert (BIGINT_MAX, "ann_tg", "Ann", "Lee", "en-GB", None) == _telegram_profile(user)


def test_touch_refuses_an_object_and_keywords(session: Session) -> None:
    """An aiogram user and profile keywords together are ambiguous."""
    from_user = AiogramUser(id=1, is_bot=False, first_name="Ann")
    with pytest.raises(TypeError, match="not both"):
        # An object and keywords together, on purpose.
        touch_telegram_user(session, from_user, first_name="Other")  # type: ignore[call-overload]


def test_touch_takes_the_user_or_id_by_position(session: Session) -> None:
    """`user_or_id` is positional-only: a keyword for it is refused before any SQL."""
    with pytest.raises(TypeError):
        touch_telegram_user(session, telegram_user_id=42)  # type: ignore[call-overload]
    assert 0 == _count(session)


def test_touch_refuses_an_object_without_an_id(session: Session) -> None:
    """Something that is neither an int nor a Telegram user names the argument at fault."""
    with pytest.raises(InvalidInputError, match="user_or_id: expected a telegram_user_id"):
        touch_telegram_user(session, object())  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"telegram_user_id": 0}, "telegram_user_id"),
        ({"telegram_user_id": -5}, "telegram_user_id"),
        ({"telegram_user_id": BIGINT_MAX + 1}, "telegram_user_id"),
        ({"telegram_user_id": True}, "telegram_user_id"),
        ({"telegram_user_id": "42"}, "telegram_user_id"),
        ({"telegram_user_id": 42.0}, "telegram_user_id"),
        ({"username": "u" * 33}, "username"),
        ({"first_name": "f" * 65}, "first_name"),
        ({"last_name": "l" * 65}, "last_name"),
        ({"language_code": "x" * 36}, "language_code"),
        ({"first_name": "nul\x00"}, "first_name"),
        ({"is_premium": "yes"}, "is_premium"),
    ],
)
def test_touch_rejects_bad_input(
    session: Session,
    engine: sa.Engine,
    statements: list[str],
    arguments: dict[str, Any],
    field: str,
) -> None:
    """Bad ids and over-long fields raise InvalidInputError before any SQL; nothing changes."""
    existing = touch_telegram_user(session, 42, first_name="Ann")
    session.commit()
    sent = len(statements)
    arguments = {"telegram_user_id": 42} | arguments
    with pytest.raises(InvalidInputError, match=field) as caught:
        touch_telegram_user(session, arguments.pop("telegram_user_id"), **arguments)
    assert isinstance(caught.value, ValueError)
    assert sent == len(statements)
    session.rollback()
    assert "Ann" == _stored(engine, existing.id).first_name
    touch_telegram_user(session, 43)
    session.commit()
    assert 2 == _count(session)


def _race(settings: DatabaseSettings, threads: int, work: Callable[[Session, int], T]) -> list[T]:
    """Run work(session, index) in threads, each with its own session, released at once."""
    racing = create_engine(settings.model_copy(update={"pool_size": threads}))
    start = threading.Barrier(threads)

    def run(index: int) -> T:
        with Session(racing) as session:
            start.wait()
            return work(session, index)

    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(run, range(threads)))
    racing.dispose()
    return outcomes


def test_concurrent_first_touches_make_one_row(
    settings: DatabaseSettings, engine: sa.Engine
) -> None:
    """12 threads touching a new id at once, each in its own session: one row, no error."""

    def touch(session: Session, index: int) -> int:
        user = touch_telegram_user(session, 777, first_name=f"Ann {index}")
        session.commit()
        return user.id

    ids = _race(settings, 12, touch)
    with Session(engine) as session:
        rows = session.exec(select(User)).all()
    assert [rows[0].id] * 12 == ids
    assert 1 == len(rows)
    assert rows[0].first_name is not None
    assert rows[0].first_name.startswith("Ann ")


# --- create_user --------------------------------------------------------------------------


def test_create_user_stores_an_argon2_hash(session: Session, engine: sa.Engine) -> None:
    """Registration stores the lower-cased email and an Argon2id hash, never the password."""
    user = create_user(
        session,
        username="ann",
        email="Ann@Example.IO",
        password=PASSWORD,
        full_name="Ann Lee",
        bio="Hello",
    )
    session.commit()
    stored = _stored(engine, user.id)
    assert ("ann", "ann@example.io", "Ann Lee", "Hello", True, False) == (
        stored.username,
        stored.email,
        stored.full_name,
        stored.bio,
        stored.is_active,
        stored.is_superuser,
    )
    assert stored.hashed_password is not None
    assert stored.hashed_password.startswith("$argon2id$")
    assert PASSWORD not in stored.hashed_password
    assert PasswordHasher().verify(stored.hashed_password, PASSWORD)


def test_create_user_is_one_statement(session: Session, statements: list[str]) -> None:
    """A registration that succeeds is one INSERT ... ON CONFLICT DO NOTHING RETURNING."""
    _register(session)
    assert 1 == len(statements)
    assert "ON CONFLICT DO NOTHING" in statements[0]


@pytest.mark.parametrize(
    ("username", "email", "error"),
    [
        ("ann", "other@example.io", UsernameTakenError),
        ("bob", "ANN@example.io", EmailTakenError),
        ("ann", "ann@example.io", UsernameTakenError),
    ],
)
def test_create_user_duplicates(
    session: Session,
    engine: sa.Engine,
    username: str,
    email: str,
    error: type[AlreadyExistsError],
) -> None:
    """A taken username or email raises its own error; the transaction and first user survive."""
    first = _register(session)
    session.commit()
    hashed = first.hashed_password
    earlier = touch_telegram_user(session, 42)
    with pytest.raises(error) as caught:
        create_user(session, username=username, email=email, password="another password")
    assert isinstance(caught.value, AlreadyExistsError)
    assert isinstance(caught.value, AppDBError)
    # The failed registration did not abort the transaction: the touch before it commits.
    session.commit()
    found = get_user_by_telegram_id(session, 42)
    assert found is not None
    assert earlier.id == found.id
    assert hashed == _stored(engine, first.id).hashed_password
    assert 2 == _count(session)


def test_create_user_gives_up_when_the_clash_keeps_vanishing(
    session: Session, statements: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An insert that keeps inserting nothing for no visible reason ends in ConcurrentUpdateError.

    That is what a registration racing transactions that take and free its username sees; here
    the explanation query is made to find nothing, as if the clashing row had just gone.
    """
    _register(session)
    session.commit()
    monkeypatch.setattr(_accounts, "_taken", lambda _session, _account: None)
    sent = len(statements)
    with pytest.raises(ConcurrentUpdateError, match="keep changing; try again"):
        _register(session, email="new@example.io")
    assert 3 == sum("ON CONFLICT DO NOTHING" in sql for sql in statements[sent:])
    assert 1 == _count(session)


def test_session_usable_after_rollback(session: Session) -> None:
    """After an error and a rollback, the same session carries on."""
    _register(session)
    session.commit()
    with pytest.raises(UsernameTakenError):
        _register(session, email="new@example.io")
    session.rollback()
    assert "bob" == _register(session, "bob").username
    session.commit()
    assert 2 == _count(session)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("username", "ab"),
        ("username", "has space"),
        ("username", "u" * 65),
        ("username", "nul\x00name"),
        ("email", "not-an-email"),
        ("email", "a" * 320 + "@example.io"),
        ("password", "short"),
        ("password", "p" * 1025),
        ("password", "nul\x00in password"),
        ("full_name", "f" * 129),
        ("bio", "b" * 1001),
        ("bio", "nul\x00"),
    ],
)
def test_create_user_rejects_bad_input(
    session: Session, statements: list[str], field: str, value: str
) -> None:
    """Malformed fields raise InvalidInputError naming the field, never echoing a password."""
    fields = {"username": "ann", "email": "ann@example.io", "password": PASSWORD} | {field: value}
    with pytest.raises(InvalidInputError, match=field) as caught:
        create_user(session, **fields)
    assert value not in str(caught.value)
    assert caught.value.__context__ is None
    assert [] == statements
    assert 0 == _count(session)


def test_registration_race(settings: DatabaseSettings, engine: sa.Engine) -> None:
    """Concurrent registrations of one username: one wins, the rest get UsernameTakenError."""

    def register(session: Session, index: int) -> str:
        try:
            _register(session, "ann", email=f"ann{index}@example.io")
            # Stay uncommitted a while, so that the others meet the row in flight.
            time.sleep(0.3)
            session.commit()
        except UsernameTakenError:
            return "taken"
        return "created"

    assert ["created", "taken", "taken", "taken"] == sorted(_race(settings, 4, register))
    with Session(engine) as session:
        assert 1 == _count(session)


# --- authenticate ---------------------------------------------------------------------------


@pytest.mark.parametrize("login", ["ann", "ann@example.io", "ANN@Example.IO"])
def test_authenticate_by_username_or_email(session: Session, engine: sa.Engine, login: str) -> None:
    """The right password logs in by username or email (any case) and records the login."""
    user = _register(session)
    session.commit()
    assert user.last_login_at is None
    before = datetime.now(UTC)
    assert user is authenticate(session, login, PASSWORD)
    session.commit()
    last_login_at = _stored(engine, user.id).last_login_at
    assert last_login_at is not None
    assert before <= last_login_at <= datetime.now(UTC)


def test_authenticate_statements(session: Session, statements: list[str]) -> None:
    """A login is one SELECT plus one UPDATE ... RETURNING; a failed one only the SELECT."""
    _register(session)
    statements.clear()
    authenticate(session, "ann", PASSWORD)
    assert ["SELECT", "UPDATE"] == [statement.split()[0] for statement in statements]
    statements.clear()
    authenticate(session, "ann", "wrong password")
    assert ["SELECT"] == [statement.split()[0] for statement in statements]


@pytest.mark.parametrize(
    ("login", "password"),
    [
        ("ann", "wrong password"),
        ("ann", ""),
        ("nobody", PASSWORD),
        ("nobody@example.io", PASSWORD),
        ("tg_only", PASSWORD),
        ("inactive", PASSWORD),
        ("nul\x00", PASSWORD),
        ("", PASSWORD),
        ("x" * 10_000, PASSWORD),
        ("not@an@email", PASSWORD),
    ],
)
def test_authenticate_failures(
    session: Session, engine: sa.Engine, login: str, password: str
) -> None:
    """Wrong passwords, unknown, malformed, inactive or password-less logins give None."""
    user = _register(session)
    _register(session, "inactive").is_active = False
    touch_telegram_user(session, 42, username="tg_only")
    session.commit()
    assert authenticate(session, login, password) is None
    session.commit()
    assert _stored(engine, user.id).last_login_at is None


def test_authenticate_unknown_login_still_hashes(session: Session) -> None:
    """An unknown login takes about as long as a wrong password: no timing oracle."""
    _register(session)
    session.commit()
    authenticate(session, "nobody", PASSWORD)  # the dummy hash is made on first use

    def fastest(login: str) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            authenticate(session, login, "wrong password")
            times.append(time.perf_counter() - started)
        return min(times)

    assert fastest("nobody") > 0.5 * fastest("ann")


def test_authenticate_upgrades_outdated_hash(session: Session, engine: sa.Engine) -> None:
    """A hash made with weaker parameters is replaced by a current one at login."""
    weak = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1).hash(PASSWORD)
    user = User(username="ann", hashed_password=weak)
    session.add(user)
    session.commit()
    assert user is authenticate(session, "ann", PASSWORD)
    session.commit()
    upgraded = _stored(engine, user.id).hashed_password
    assert upgraded is not None
    assert weak != upgraded
    assert "m=19456,t=2,p=1" in upgraded
    assert authenticate(session, "ann", PASSWORD) is user


# --- look-ups -------------------------------------------------------------------------------


def test_lookups(session: Session) -> None:
    """Users are found by username, email (any case) and Telegram id; others give None."""
    ann = _register(session)
    link_telegram(session, ann.id, 42)
    session.commit()
    assert ann is get_user_by_username(session, "ann")
    assert ann is get_user_by_email(session, "Ann@EXAMPLE.io")
    assert ann is get_user_by_telegram_id(session, 42)
    assert get_user_by_username(session, "bob") is None
    assert get_user_by_email(session, "bob@example.io") is None
    assert get_user_by_telegram_id(session, 43) is None


@pytest.mark.parametrize(
    ("lookup", "value"),
    [
        (get_user_by_username, "nul\x00"),
        (get_user_by_username, "u" * 65),
        (get_user_by_email, "not-an-email"),
        (get_user_by_email, "nul\x00@example.io"),
        (get_user_by_telegram_id, 0),
        (get_user_by_telegram_id, BIGINT_MAX + 1),
        (get_user_by_telegram_id, "42"),
    ],
)
def test_lookups_reject_bad_input(
    session: Session,
    statements: list[str],
    lookup: Callable[[Session, Any], User | None],
    value: Any,
) -> None:
    """Keys that cannot exist raise InvalidInputError before any SQL."""
    with pytest.raises(InvalidInputError):
        lookup(session, value)
    assert [] == statements


# --- link_telegram --------------------------------------------------------------------------


def test_link_telegram_then_touch_finds_the_account(session: Session) -> None:
    """After linking, the bot's touch updates the web account instead of making a new row."""
    ann = _register(session)
    linked = link_telegram(session, ann.id, 42)
    session.commit()
    assert (ann, 42) == (linked, linked.telegram_user_id)
    assert ann.id == touch_telegram_user(session, 42, first_name="Ann").id
    assert 1 == _count(session)


def test_link_telegram_taken_keeps_transaction(session: Session, engine: sa.Engine) -> None:
    """A Telegram id of another user raises TelegramIdTakenError; earlier work is kept."""
    bot_user = touch_telegram_user(session, 42)
    ann = _register(session)
    session.commit()
    bob = _register(session, "bob")
    with pytest.raises(TelegramIdTakenError, match="42"):
        link_telegram(session, ann.id, 42)
    session.commit()
    found = get_user_by_username(session, "bob")
    assert found is not None
    assert bob.id == found.id
    assert _stored(engine, ann.id).telegram_user_id is None
    assert 42 == _stored(engine, bot_user.id).telegram_user_id


def test_link_telegram_unknown_user(session: Session) -> None:
    """Linking a user that does not exist raises UserNotFoundError."""
    with pytest.raises(UserNotFoundError, match="999"):
        link_telegram(session, 999, 42)
    session.rollback()
    assert 0 == _count(session)


@pytest.mark.parametrize(
    ("user_id", "telegram_user_id"), [(0, 42), (1, 0), (1, BIGINT_MAX + 1), (1, None)]
)
def test_link_telegram_rejects_bad_ids(
    session: Session, user_id: int, telegram_user_id: Any
) -> None:
    """Ids out of range raise InvalidInputError."""
    with pytest.raises(InvalidInputError):
        link_telegram(session, user_id, telegram_user_id)


def test_operations_flush_pending_changes(session: Session) -> None:
    """Objects the caller added are flushed first, so operations see them and keep them."""
    pending = User(username="ann", email="ann@example.io")
    session.add(pending)
    assert pending is get_user_by_username(session, "ann")
    assert pending.id is not None


@pytest.mark.parametrize(
    ("login", "password"),
    [(None, PASSWORD), (42, PASSWORD), (b"ann", PASSWORD), ("ann", None), ("ann", 12345678)],
)
def test_authenticate_wrong_types_are_invalid_input(
    session: Session, login: Any, password: Any
) -> None:
    """A login or password that is not a string raises InvalidInputError, not TypeError."""
    _register(session)
    with pytest.raises(InvalidInputError, match="expected a string"):
        authenticate(session, login, password)


def test_create_user_wrong_password_type_is_invalid_input(session: Session) -> None:
    """A password that is not a string raises InvalidInputError before hashing."""
    with pytest.raises(InvalidInputError, match="password"):
        create_user(session, username="ann", email="ann@x.io", password=None)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [1025, 10_000_000])
def test_over_long_passwords_are_refused_without_hashing(session: Session, size: int) -> None:
    """Over 1024 characters: InvalidInputError from both, fast, and the hasher never runs."""
    _register(session)
    session.commit()
    password = "p" * size
    with pytest.raises(InvalidInputError, match="longer than 1024 characters"):
        create_user(session, username="bob", email="bob@x.io", password=password)
    started = time.perf_counter()
    for login in ("ann", "nobody"):
        with pytest.raises(InvalidInputError, match="longer than 1024 characters"):
            authenticate(session, login, password)
    assert time.perf_counter() - started < 0.05  # one argon2 check alone takes ~40 ms


def test_longest_password_still_registers_and_logs_in(session: Session) -> None:
    """The maximum itself (1024 characters, up to 4 KiB of UTF-8) is accepted."""
    password = "ü" * 1024
    create_user(session, username="ann", email="ann@x.io", password=password)
    assert authenticate(session, "ann", password) is not None
