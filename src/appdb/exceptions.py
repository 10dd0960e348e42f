"""The exceptions appdb raises: one family rooted at `AppDBError`."""

from __future__ import annotations

__all__ = [
    "AppDBError",
    "ConfigurationError",
    "DatabaseUnavailableError",
    "MigrationError",
    "MigrationLockTimeoutError",
    "SchemaOutOfDateError",
]


class AppDBError(Exception):
    """Base class of every error appdb raises on purpose."""


class ConfigurationError(AppDBError, ValueError):
    """The settings are invalid or incomplete (bad `DATABASE_URL`, a pool size below one, ...).

    Messages name the environment variable at fault and never contain a password.
    """


class MigrationError(AppDBError):
    """A migration operation failed; the database is left at the last revision that completed."""


class MigrationLockTimeoutError(MigrationError):
    """Another `appdb-migrate` held the migration lock for longer than the allowed wait."""


class SchemaOutOfDateError(AppDBError):
    """The database is not at the schema revision this installed appdb ships (behind or ahead)."""


class DatabaseUnavailableError(AppDBError, ConnectionError):
    """The database could not be reached, or the connection to it was lost."""
