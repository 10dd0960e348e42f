"""appdb: the shared data-access package of the backend and the bot.

Settings -> engines -> session factories -> FastAPI dependencies, plus the shared models.
Importing appdb reads no environment and opens no connection.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import async_sessionmaker
    from sqlmodel.ext.asyncio.session import AsyncSession

    from appdb.dependencies import get_async_db, get_db
    from appdb.engine import (
        create_async_engine,
        create_engine,
        get_async_engine,
        get_engine,
        reset_engines,
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
        async_connection_scope,
        async_session_scope,
        connection_scope,
        session_scope,
    )
    from appdb.settings import DatabaseSettings, get_settings

    AsyncSessionLocal: async_sessionmaker[AsyncSession]
    __version__: str

# Each public name's module, imported on first access (PEP 562): `import appdb` alone loads
# neither SQLAlchemy nor pydantic, and `from appdb import User` loads the models only.
_LAZY = {
    name: module
    for module, names in {
        "appdb.dependencies": ("get_async_db", "get_db"),
        "appdb.engine": (
            "create_async_engine",
            "create_engine",
            "get_async_engine",
            "get_engine",
            "reset_engines",
        ),
        "appdb.models": (
            "AppDBModel",
            "Message",
            "MessageCreate",
            "MessageRead",
            "User",
            "UserCreate",
            "UserRead",
            "UserUpdate",
            "metadata",
        ),
        "appdb.routing": ("use_primary",),
        "appdb.session": (
            "SessionLocal",
            "async_connection_scope",
            "async_session_scope",
            "connection_scope",
            "session_scope",
        ),
        "appdb.settings": ("DatabaseSettings", "get_settings"),
    }.items()
    for name in names
}


# Type checkers see the declarations above instead, so a misspelt name is an error for them.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        """The public names, each imported from its module on first access (PEP 562).

        `__version__` reads ``importlib.metadata`` and `AsyncSessionLocal` loads SQLAlchemy's
        asyncio extension only when asked for.
        """
        if name in _LAZY:
            value: Any = getattr(import_module(_LAZY[name]), name)
        elif name == "__version__":
            from importlib.metadata import version  # noqa: PLC0415

            value = version("appdb")
        elif name == "AsyncSessionLocal":
            from appdb.session import async_session_local  # noqa: PLC0415

            value = async_session_local()
        else:
            msg = f"module {__name__!r} has no attribute {name!r}"
            raise AttributeError(msg)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})


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
    "async_connection_scope",
    "async_session_scope",
    "connection_scope",
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
