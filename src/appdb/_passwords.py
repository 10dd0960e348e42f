"""Password hashing with Argon2id: the only place a plain password is handled.

Hashing and verification go through pwdlib: new hashes are Argon2id; bcrypt hashes (``$2a$`` /
``$2b$``, what the backend stored before appdb) still verify and are replaced by an Argon2id hash
at the next successful login. Any other scheme never matches, and is named (never shown) so the
caller can log it.
"""

from __future__ import annotations

import functools
import re
import secrets
from dataclasses import dataclass

from pwdlib import PasswordHash
from pwdlib.exceptions import UnknownHashError
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

__all__ = ["PasswordCheck", "check_password", "hash_password", "hash_scheme"]

# OWASP's recommended Argon2id parameters (19 MiB, 2 passes, 1 lane): about 40 ms per hash, and
# a burst of logins does not take argon2's default 64 MiB each on a small server. Hashes made
# with other parameters, or with bcrypt, are upgraded at the next successful login.
_hasher = PasswordHash(
    (Argon2Hasher(time_cost=2, memory_cost=19 * 1024, parallelism=1), BcryptHasher())
)

# A modular-crypt prefix (``$name$``); only its short, harmless name is ever reported.
_SCHEME = re.compile(r"\$([A-Za-z0-9._-]{1,32})\$")


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    """The outcome of `check_password`."""

    matches: bool
    new_hash: str | None = None
    """A hash of the same password with the current parameters, when the stored one is outdated."""
    unknown_scheme: str | None = None
    """The name of the stored hash's scheme when no hasher knows it (the check then fails)."""


def hash_password(password: str) -> str:
    """Hash a password with a fresh salt (CPU-bound: tens of milliseconds).

    Args:
        password: The plain password.

    Returns:
        The encoded Argon2id hash, parameters and salt included.
    """
    return _hasher.hash(password)


def hash_scheme(stored_hash: str) -> str:
    """Name a stored hash's scheme without revealing any of the hash itself.

    Args:
        stored_hash: A stored password hash.

    Returns:
        The ``$name$`` prefix's name (``2b``, ``argon2id``, ``pbkdf2-sha256``, ...), or
        ``unrecognised format`` for a value without one.
    """
    match = _SCHEME.match(stored_hash)
    return match.group(1) if match else "unrecognised format"


_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
_BCRYPT_MAX_BYTES = 72


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
        Whether it matches, a replacement hash if the stored one should be upgraded (other
        Argon2 parameters, or bcrypt), and the scheme's name if no hasher knows the stored hash.
    """
    # Verifying against a dummy hash costs what a real check costs, so response times do not
    # tell an attacker which logins exist.
    # A lone surrogate has no UTF-8 form: no registered password holds one (registration
    # rejects it), so it is checked, as bytes, against the dummy and cannot match.
    encodable = not any("\ud800" <= char <= "\udfff" for char in password)
    candidate = password if encodable else password.encode("utf-8", "surrogatepass")
    target = stored_hash if stored_hash and encodable else _dummy_hash()
    size = len(password.encode("utf-8", "surrogatepass"))
    if target.startswith(_BCRYPT_PREFIXES) and size > _BCRYPT_MAX_BYTES:
        # bcrypt reads 72 bytes at most: older bcrypt releases truncate a longer password (so
        # a suffix would not matter), newer ones refuse it. Neither may match here.
        _hasher.verify(candidate, _dummy_hash())  # the same time as a real check
        return PasswordCheck(matches=False)
    try:
        matches, new_hash = _hasher.verify_and_update(candidate, target)
    except UnknownHashError:
        _hasher.verify(candidate, _dummy_hash())  # the same time as a real check
        return PasswordCheck(matches=False, unknown_scheme=hash_scheme(target))
    except ValueError:
        # bcrypt refuses a password over 72 bytes: it cannot be what was stored.
        return PasswordCheck(matches=False)
    if stored_hash is None or not encodable or not matches:
        return PasswordCheck(matches=False)
    return PasswordCheck(matches=True, new_hash=new_hash)
