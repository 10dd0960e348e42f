"""The exceptions appdb raises: one family rooted at `AppDBError`."""

from __future__ import annotations

__all__ = [
    "AlreadyExistsError",
    "AppDBError",
    "ConfigurationError",
    "ConnectionLostError",
    "DatabaseUnavailableError",
    "EmailTakenError",
    "InvalidInputError",
    "MessageNotFoundError",
    "MigrationError",
    "MigrationLockTimeoutError",
    "NotFoundError",
    "PoolTimeoutError",
    "SchemaOutOfDateError",
    "StatementTimeoutError",
    "TelegramIdTakenError",
    "UserNotFoundError",
    "UsernameTakenError",
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
    """The database cannot serve this request now: it could not be reached, or see the subclasses.

    Retrying later may succeed (a service answers 503). Messages name the host and port (or the
    SQLite file) and the driver's reason, never the password; the driver's error is chained.
    """


class ConnectionLostError(DatabaseUnavailableError):
    """An open connection to the database broke: a server restart, or the connection was killed.

    The pool discards the broken connection and the next checkout gets a fresh one. The failed
    unit of work was rolled back; raised by a commit, the commit may or may not have happened.
    """


class PoolTimeoutError(DatabaseUnavailableError, TimeoutError):
    """No pooled connection became free within `DATABASE_POOL_TIMEOUT` seconds.

    Every connection the pool may open (`DATABASE_POOL_SIZE` + `DATABASE_MAX_OVERFLOW`) is
    checked out by sessions that have not been closed yet.
    """


class StatementTimeoutError(AppDBError, TimeoutError):
    """PostgreSQL cancelled a statement that ran past `DATABASE_STATEMENT_TIMEOUT`.

    The message gives the server's reason (a timeout, or ``pg_cancel_backend`` by an admin).

    The connection stays healthy: roll the session back and it is usable again.
    """


class InvalidInputError(AppDBError, ValueError):
    """An argument of an appdb operation is malformed, out of range or too long.

    Raised before any SQL runs; the message names the argument but never repeats its value.
    """


class NotFoundError(AppDBError, LookupError):
    """A row that an operation refers to does not exist."""


class UserNotFoundError(NotFoundError):
    """A sender, recipient or user id refers to no user."""


class MessageNotFoundError(NotFoundError):
    """A parent message id refers to no message."""


class AlreadyExistsError(AppDBError):
    """A value that must be unique (username, email, Telegram id) belongs to another user."""


class UsernameTakenError(AlreadyExistsError):
    """The username is already registered."""


class EmailTakenError(AlreadyExistsError):
    """The email address is already registered."""


class TelegramIdTakenError(AlreadyExistsError):
    """The Telegram user id is already linked to another user."""
