"""appdb: the shared data-access package of the backend and the bot.

Settings -> engines -> session factories -> FastAPI dependencies, plus the shared models.
Importing appdb reads no environment and opens no connection.
"""

from typing import Any

from appdb.dependencies import get_async_db, get_db
from appdb.engine import (
    create_async_engine,
    create_engine,
    get_async_engine,
    get_engine,
    reset_engines,
)
from appdb.exceptions import (
    AlreadyExistsError,
    AppDBError,
    ConcurrentUpdateError,
    ConfigurationError,
    ConnectionLostError,
    DatabaseBusyError,
    DatabaseUnavailableError,
    DDLLockTimeoutError,
    DeadlockError,
    EmailTakenError,
    IdempotencyKeyReusedError,
    InvalidInputError,
    MessageNotFoundError,
    MigrationError,
    MigrationLockLostError,
    MigrationLockTimeoutError,
    NotFoundError,
    PermissionDeniedError,
    PoolTimeoutError,
    ReadOnlyTransactionError,
    SchemaMismatchError,
    SchemaOutOfDateError,
    SerializationError,
    StatementTimeoutError,
    TelegramIdTakenError,
    TransientError,
    UsernameTakenError,
    UserNotFoundError,
)
from appdb.models import (
    AppDBModel,
    Message,
    MessageCreate,
    MessageRead,
    User,
    UserCreate,
    UserRead,
    UserUpdate,
    metadata,
)
from appdb.routing import use_primary
from appdb.session import (
    SessionLocal,
    async_session_scope,
    session_scope,
)
from appdb.settings import DatabaseSettings, get_settings


def __getattr__(name: str) -> Any:
    """Names whose imports wait for first use (PEP 562): `__version__`, `AsyncSessionLocal`.

    A sync-only process then never loads ``importlib.metadata`` for the version nor
    SQLAlchemy's asyncio extension.
    """
    if name == "__version__":
        from importlib.metadata import version  # noqa: PLC0415

        value: Any = version("appdb")
    elif name == "AsyncSessionLocal":
        from appdb.session import async_session_local  # noqa: PLC0415

        value = async_session_local()
    else:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    globals()[name] = value
    return value


__all__ = [
    "AlreadyExistsError",
    "AppDBError",
    "AppDBModel",
    "AsyncSessionLocal",
    "ConcurrentUpdateError",
    "ConfigurationError",
    "ConnectionLostError",
    "DDLLockTimeoutError",
    "DatabaseBusyError",
    "DatabaseSettings",
    "DatabaseUnavailableError",
    "DeadlockError",
    "EmailTakenError",
    "IdempotencyKeyReusedError",
    "InvalidInputError",
    "Message",
    "MessageCreate",
    "MessageNotFoundError",
    "MessageRead",
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
    "SessionLocal",
    "StatementTimeoutError",
    "TelegramIdTakenError",
    "TransientError",
    "User",
    "UserCreate",
    "UserNotFoundError",
    "UserRead",
    "UserUpdate",
    "UsernameTakenError",
    "__version__",
    "async_session_scope",
    "create_async_engine",
    "create_engine",
    "get_async_db",
    "get_async_engine",
    "get_db",
    "get_engine",
    "get_settings",
    "metadata",
    "reset_engines",
    "session_scope",
    "use_primary",
]
