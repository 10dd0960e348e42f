"""The exceptions appdb raises: one family rooted at `AppDBError`."""

from __future__ import annotations

__all__ = [
    "AlreadyExistsError",
    "AppDBError",
    "ConcurrentUpdateError",
    "ConfigurationError",
    "ConnectionLostError",
    "DDLLockTimeoutError",
    "DatabaseBusyError",
    "DatabaseUnavailableError",
    "DeadlockError",
    "EmailTakenError",
    "IdempotencyKeyReusedError",
    "InvalidInputError",
    "MessageNotFoundError",
    "MigrationError",
    "MigrationLockLostError",
    "MigrationLockTimeoutError",
    "NotFoundError",
    "PermissionDeniedError",
    "PoolTimeoutError",
    "ReadOnlyTransactionError",
    "SchemaMismatchError",
    "SchemaOutOfDateError",
    "SerializationError",
    "StatementTimeoutError",
    "TelegramIdTakenError",
    "TransientError",
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


class DDLLockTimeoutError(MigrationError):
    """A revision could not get its table lock within ``DATABASE_DDL_LOCK_TIMEOUT``."""


class MigrationLockLostError(MigrationError):
    """The migration lock's connection was closed while a migration ran; its work stopped."""


class SchemaOutOfDateError(AppDBError):
    """The database is not at the schema revision this installed appdb ships (behind or ahead)."""


class SchemaMismatchError(SchemaOutOfDateError):
    """The database lacks a table or column this appdb uses: a newer appdb's breaking migration ran.

    Raised by a query that meets the missing name (the message names it), and by
    `appdb.migrate.ensure_schema_current` at start-up. Upgrade this service's appdb.
    """


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


class DatabaseBusyError(DatabaseUnavailableError, TimeoutError):
    """SQLite stayed locked by another writer for all of `DATABASE_SQLITE_BUSY_TIMEOUT` seconds.

    Nothing was written; retry later, or move the service to PostgreSQL if it happens often.
    """


class ReadOnlyTransactionError(DatabaseUnavailableError):
    """PostgreSQL refused a write because the transaction is read-only.

    The server is a standby (a replica, or a primary demoted by a failover) or runs with
    ``default_transaction_read_only``: point `DATABASE_URL` at the primary, or retry after the
    failover. Roll the session back and it is usable again.
    """


class PermissionDeniedError(AppDBError, PermissionError):
    """The database role lacks a privilege the statement needs (SQLSTATE 42501).

    A deployment error, not a transient one: grant the service's role what the README's
    least-privilege section lists. Roll the session back and it is usable again.
    """


class TransientError(AppDBError):
    """The transaction lost a race with a concurrent one and was rolled back by PostgreSQL.

    Retrying the whole unit of work (a fresh `session_scope`) is expected to succeed; roll the
    session back first. The subclasses say which race.
    """


class DeadlockError(TransientError):
    """PostgreSQL detected a deadlock and aborted this transaction to break it (40P01)."""


class SerializationError(TransientError):
    """A ``REPEATABLE READ`` or ``SERIALIZABLE`` transaction could not be serialised (40001)."""


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
    """A value that must be unique (username, email, Telegram id, idempotency key) is taken."""


class ConcurrentUpdateError(AppDBError):
    """Concurrent transactions kept changing the rows an operation depends on; it gave up.

    The operation tried a few times and left the caller's transaction healthy: retrying the
    unit of work later is expected to succeed.
    """


class UsernameTakenError(AlreadyExistsError):
    """The username is already registered."""


class EmailTakenError(AlreadyExistsError):
    """The email address is already registered."""


class TelegramIdTakenError(AlreadyExistsError):
    """The Telegram user id is already linked to another user."""


class IdempotencyKeyReusedError(AlreadyExistsError):
    """The sender already sent a different message under this idempotency key.

    A retry must repeat the original call: same recipient, content, parent and conversation.
    A new message needs a new key.
    """
