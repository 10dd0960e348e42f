"""Legacy password hashes: bcrypt logs in and is rehashed; an unknown scheme is refused and logged."""

from __future__ import annotations

import logging

import bcrypt
import pytest
import sqlalchemy as sa
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from appdb import User, aio
from appdb._passwords import check_password, hash_scheme
from appdb.users import authenticate

PASSWORD = "correct horse battery"


def _legacy_user(session: Session, hashed: str, username: str = "legacy") -> int:
    user = User(username=username, email=f"{username}@example.com", hashed_password=hashed)
    session.add(user)
    session.commit()
    assert user.id is not None
    return user.id


def _stored_hash(engine: sa.Engine, user_id: int) -> str:
    with Session(engine) as other:
        user = other.get(User, user_id)
        assert user is not None
        assert user.hashed_password is not None
        return user.hashed_password


@pytest.mark.parametrize("prefix", [b"2a", b"2b"])
def test_bcrypt_hash_logs_in_and_is_rehashed(
    session: Session, engine: sa.Engine, prefix: bytes
) -> None:
    """A $2a$/$2b$ hash verifies, and the stored hash becomes Argon2id in the same login."""
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4, prefix)).decode()
    assert legacy.startswith(f"${prefix.decode()}$")
    user_id = _legacy_user(session, legacy)
    user = authenticate(session, "legacy", PASSWORD)
    session.commit()
    assert user is not None
    assert user_id == user.id
    assert user.last_login_at is not None
    rehashed = _stored_hash(engine, user_id)
    assert rehashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    # The new hash works, and is not rewritten again.
    assert authenticate(session, "legacy@example.com", PASSWORD) is not None
    session.commit()
    assert rehashed == _stored_hash(engine, user_id)


def test_bcrypt_wrong_password_keeps_hash(session: Session, engine: sa.Engine) -> None:
    """A wrong password against a bcrypt hash fails and leaves the hash as it was."""
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    user_id = _legacy_user(session, legacy)
    assert authenticate(session, "legacy", "wrong password") is None
    session.commit()
    assert legacy == _stored_hash(engine, user_id)


def test_bcrypt_password_over_72_bytes_does_not_match() -> None:
    """A password past bcrypt's 72-byte limit is a failed check, not an error."""
    legacy = bcrypt.hashpw(b"x" * 72, bcrypt.gensalt(4)).decode()
    assert check_password(legacy, "x" * 100).matches is False
    assert check_password(legacy, "x" * 72).matches is True


def test_unknown_scheme_is_refused_with_one_warning(
    session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    """An unknown scheme fails the login and logs the user id and scheme, never the hash."""
    secret_part = "c2FsdHNhbHQ$Vh4vS3cretHashValue0123456789abcdef"
    stored = f"$pbkdf2-sha256$29000${secret_part}"
    user_id = _legacy_user(session, stored)
    with caplog.at_level(logging.WARNING, logger="appdb"):
        assert authenticate(session, "legacy", PASSWORD) is None
    records = [record for record in caplog.records if "unknown scheme" in record.getMessage()]
    assert 1 == len(records)
    message = records[0].getMessage()
    assert f"user {user_id} " in message
    assert "pbkdf2-sha256" in message
    assert secret_part not in caplog.text
    assert "29000$" not in caplog.text


def test_hash_scheme_names_only_the_prefix() -> None:
    """The scheme of a hash is its prefix's name, or a fixed phrase for anything else."""
    assert "2b" == hash_scheme("$2b$12$abcdefghijklmnopqrstuu")
    assert "unrecognised format" == hash_scheme("plaintext-password")
    assert "unrecognised format" == hash_scheme("{SSHA}abcdef")


@pytest.mark.anyio
async def test_bcrypt_hash_logs_in_async(async_session: AsyncSession, engine: sa.Engine) -> None:
    """The async twin verifies bcrypt and rehashes too."""
    legacy = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    with Session(engine) as session:
        user_id = _legacy_user(session, legacy)
    user = await aio.authenticate(async_session, "legacy", PASSWORD)
    await async_session.commit()
    assert user is not None
    assert _stored_hash(engine, user_id).startswith("$argon2id$")
