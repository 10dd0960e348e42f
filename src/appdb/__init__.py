"""appdb: the shared data-access package of the backend and the bot.

Settings -> engines -> session factories -> FastAPI dependencies, plus the shared models.
Importing appdb reads no environment and opens no connection.
"""

from importlib.metadata import version as _version

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
    ConfigurationError,
    ConnectionLostError,
    DatabaseUnavailableError,
    EmailTakenError,
    InvalidInputError,
    MessageNotFoundError,
    MigrationError,
    MigrationLockTimeoutError,
    NotFoundError,
    PoolTimeoutError,
    SchemaOutOfDateError,
    StatementTimeoutError,
    TelegramIdTakenError,
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
from appdb.session import (
    AsyncSessionLocal,
    SessionLocal,
    async_session_scope,
    session_scope,
    use_primary,
)
from appdb.settings import DatabaseSettings, get_settings

__version__ = _version("appdb")

__all__ = [
    "AlreadyExistsError",
    "AppDBError",
    "AppDBModel",
    "AsyncSessionLocal",
    "ConfigurationError",
    "ConnectionLostError",
    "DatabaseSettings",
    "DatabaseUnavailableError",
    "EmailTakenError",
    "InvalidInputError",
    "Message",
    "MessageCreate",
    "MessageNotFoundError",
    "MessageRead",
    "MigrationError",
    "MigrationLockTimeoutError",
    "NotFoundError",
    "PoolTimeoutError",
    "SchemaOutOfDateError",
    "SessionLocal",
    "StatementTimeoutError",
    "TelegramIdTakenError",
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
