"""Look-alike accounts: usernames unique ignoring case and full-width forms, in the database itself."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from appdb import (
    DatabaseSettings,
    EmailTakenError,
    MigrationError,
    UsernameTakenError,
    create_engine,
    migrate,
)
from appdb.users import authenticate, create_user, get_user_by_email, get_user_by_username

CASEFOLD = "0003_users_username_casefold"
PASSWORD = "correct horse battery"
FULL_WIDTH_ANN = "\uff41\uff4e\uff4e"
FULL_WIDTH_DOG = "\uff24\uff2f\uff27"
# Lower-case full-width letters pass the email CHECK as stored (an older writer could store them).
FULL_WIDTH_LOWER_DOG = "\uff44\uff4f\uff47"


@pytest.fixture
def migrated(database_url: URL) -> Iterator[sa.Engine]:
    """The schema of appdb through the real migrations, at head."""
    settings = DatabaseSettings(url=database_url)
    migrate.upgrade(settings=settings)
    engine = create_engine(settings)
    yield engine
    engine.dispose()


def _users(engine: sa.Engine) -> list[tuple[object, ...]]:
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT username, email FROM users ORDER BY id"))
        return [tuple(row) for row in rows]


@pytest.mark.parametrize("look_alike", ["Ann", "ANN", FULL_WIDTH_ANN, " aNn "])
def test_a_look_alike_username_is_taken(migrated: sa.Engine, look_alike: str) -> None:
    """`ann` registered: `Ann`, `ANN` and full-width `ann` are UsernameTakenError, nothing stored."""
    with Session(migrated) as session:
        create_user(session, username="ann", email="ann@example.io", password=PASSWORD)
        session.commit()
        with pytest.raises(UsernameTakenError, match="already taken"):
            create_user(session, username=look_alike, email="other@example.io", password=PASSWORD)
        session.commit()
    assert [("ann", "ann@example.io")] == _users(migrated)


def test_the_database_refuses_look_alikes_from_any_writer(migrated: sa.Engine) -> None:
    """A raw INSERT of `Ann` next to `ann` (an older appdb, a script) violates the unique index."""
    with migrated.begin() as connection:
        connection.execute(sa.text("INSERT INTO users (username) VALUES ('ann')"))
    with pytest.raises(sa.exc.IntegrityError), migrated.begin() as connection:
        connection.execute(sa.text("INSERT INTO users (username) VALUES ('Ann')"))
    assert [("ann", None)] == _users(migrated)


def test_case_is_kept_and_lookups_ignore_it(migrated: sa.Engine) -> None:
    """`Ann` is stored as typed; `ANN` and full-width forms find her and log her in."""
    with Session(migrated) as session:
        user = create_user(session, username="Ann", email="ann@example.io", password=PASSWORD)
        session.commit()
        assert "Ann" == user.username
        assert user.id == getattr(get_user_by_username(session, "ANN"), "id", None)
        assert user.id == getattr(get_user_by_username(session, FULL_WIDTH_ANN), "id", None)
        logged_in = authenticate(session, "aNN", PASSWORD)
        assert user.id == getattr(logged_in, "id", None)


def test_a_full_width_email_local_part_is_the_same_address(migrated: sa.Engine) -> None:
    """A full-width `DOG@example.io` is stored as `dog@example.io`, so it cannot register next to it."""
    with Session(migrated) as session:
        first = create_user(
            session, username="dog1", email=f"{FULL_WIDTH_DOG}@example.io", password=PASSWORD
        )
        session.commit()
        assert "dog@example.io" == first.email
        with pytest.raises(EmailTakenError):
            create_user(session, username="dog2", email="dog@example.io", password=PASSWORD)
        session.commit()
        assert first.id == getattr(
            get_user_by_email(session, f"{FULL_WIDTH_DOG}@EXAMPLE.io"), "id", None
        )


def test_the_migration_reports_every_clash_and_changes_nothing(database_url: URL) -> None:
    """Existing look-alikes: the upgrade fails naming each group, at 0002; after a rename it runs.

    It also NFKC-normalises the existing usernames and email addresses.
    """
    settings = DatabaseSettings(url=database_url)
    migrate.upgrade("0002_messages", settings=settings)
    engine = create_engine(settings)
    with engine.begin() as connection:
        connection.execute(
            sa.text("INSERT INTO users (username, email) VALUES (:u, :e)"),
            [
                {"u": "ann", "e": None},
                {"u": "Ann", "e": None},
                {"u": "bob", "e": "bob@example.io"},
                {"u": "BOB", "e": None},
                {"u": "\uff43arol", "e": f"{FULL_WIDTH_LOWER_DOG}@example.io"},
                {"u": "dave", "e": "dog@example.io"},
            ],
        )
    before = _users(engine)
    with pytest.raises(MigrationError) as raised:
        migrate.upgrade(settings=settings)
    message = str(raised.value)
    assert "3 group(s)" in message
    assert "id 1 'ann', id 2 'Ann'" in message
    assert "id 3 'bob', id 4 'BOB'" in message
    assert "emails of id 5, id 6" in message
    assert "dog@example.io" not in message
    assert "nothing was changed" in message
    assert ("0002_messages",) == migrate.current(settings)
    assert before == _users(engine)

    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE users SET username = 'ann2' WHERE username = 'Ann'"))
        connection.execute(sa.text("DELETE FROM users WHERE username = 'BOB'"))
        connection.execute(sa.text("UPDATE users SET email = NULL WHERE username = 'dave'"))
    migrate.upgrade(settings=settings)
    assert migrate.current(settings)[0] >= CASEFOLD
    assert [
        ("ann", None),
        ("ann2", None),
        ("bob", "bob@example.io"),
        ("carol", "dog@example.io"),
        ("dave", None),
    ] == _users(engine)
    engine.dispose()
