"""Password hashing with Argon2id: the only place a plain password is handled."""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["PasswordCheck", "check_password", "hash_password"]

# OWASP's recommended Argon2id parameters (19 MiB, 2 passes, 1 lane): about 40 ms per hash, and
# a burst of logins does not take argon2's default 64 MiB each on a small server. Hashes made
# with other parameters are upgraded at the next successful login.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    """The outcome of `check_password`."""

    matches: bool
    new_hash: str | None = None
    """A hash of the same password with the current parameters, when the stored one is outdated."""


def hash_password(password: str) -> str:
    """Hash a password with a fresh salt (CPU-bound: tens of milliseconds).

    Args:
        password: The plain password.

    Returns:
        The encoded Argon2id hash, parameters and salt included.
    """
    return _hasher.hash(password)


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random password, made on first use rather than at import."""
    return _hasher.hash(secrets.token_urlsafe(16))


def check_password(stored_hash: str | None, password: str) -> PasswordCheck:
    """Verify a password in about the same time whether or not there is a hash to check.

    Args:
        stored_hash: The user's hash; ``None`` for an unknown user or one without a password.
        password: The plain password to check.

    Returns:
        Whether it matches, and a replacement hash if the stored one should be upgraded.
    """
    # Verifying against a dummy hash costs what a real check costs, so response times do not
    # tell an attacker which logins exist.
    # A lone surrogate has no UTF-8 form: no registered password holds one (registration
    # rejects it), so it is checked, as bytes, against the dummy and cannot match.
    encodable = not any("\ud800" <= char <= "\udfff" for char in password)
    candidate = password if encodable else password.encode("utf-8", "surrogatepass")
    try:
        _hasher.verify(stored_hash if stored_hash and encodable else _dummy_hash(), candidate)
    except (VerificationError, InvalidHashError):
        return PasswordCheck(matches=False)
    if stored_hash is None or not encodable:
        return PasswordCheck(matches=False)
    if _hasher.check_needs_rehash(stored_hash):
        return PasswordCheck(matches=True, new_hash=hash_password(password))
    return PasswordCheck(matches=True)
