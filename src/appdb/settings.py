"""What the user configures: `DatabaseSettings`, read from `DATABASE_*` variables and `.env`."""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PlainSerializer, PlainValidator, ValidationError, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from appdb.exceptions import ConfigurationError

__all__ = [
    "DEFAULT_SQLITE_FILENAME",
    "DatabaseSettings",
    "Pooler",
    "get_settings",
    "render_url",
]

logger = logging.getLogger("appdb")

DEFAULT_SQLITE_FILENAME = "appdb.sqlite3"
"""The file an unset `DATABASE_URL` points at, in the working directory."""

_ENV_PREFIX = "DATABASE_"
_POSTGRESQL_DRIVER = "postgresql+psycopg"
# Spellings users paste from Heroku, Render, docker-compose files, SQLAlchemy docs ...
_POSTGRESQL_ALIASES = frozenset(
    {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg3"}
)
_SQLITE_ALIASES = frozenset({"sqlite", "sqlite+pysqlite", "sqlite+aiosqlite"})


def render_url(url: URL | str) -> str:
    """Render a database URL for humans: the password, if any, becomes ``***``.

    Args:
        url: A URL object, or a string that may not even parse.

    Returns:
        The URL as text, safe to print or log.
    """
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparsable URL>"


def _normalise_url(value: Any) -> URL | None:
    """Parse `DATABASE_URL` and pin the driver: psycopg 3 for PostgreSQL, pysqlite for SQLite."""
    if value is None or value == "":
        return None
    if isinstance(value, URL):
        url = value
    elif isinstance(value, str):
        try:
            url = make_url(value.strip())
        except (ArgumentError, ValueError):
            # The raw text may hold a password, so it is never echoed back.
            msg = "is not a database URL (expected e.g. postgresql://user:***@host:5432/dbname)"
            raise ValueError(msg) from None
    else:
        msg = f"must be a string, not {type(value).__name__}"
        raise TypeError(msg)
    if "@" in (url.host or ""):
        # An unescaped '@' in the password shifts part of it into the host name.
        msg = "has an unescaped '@': percent-encode special characters in the password (@ is %40)"
        raise ValueError(msg)
    if url.drivername in _POSTGRESQL_ALIASES:
        return url.set(drivername=_POSTGRESQL_DRIVER)
    if url.drivername in _SQLITE_ALIASES:
        return url.set(drivername="sqlite")
    msg = (
        f"uses the unsupported backend or driver {url.drivername!r} in {render_url(url)}; "
        "appdb supports postgresql:// (psycopg 3) and sqlite://"
    )
    raise ValueError(msg)


DatabaseURL = Annotated[
    URL | None,
    NoDecode,
    PlainValidator(_normalise_url),
    PlainSerializer(lambda url: None if url is None else render_url(url), return_type=str | None),
]


def _normalise_urls(value: Any) -> tuple[URL, ...]:
    """Parse `DATABASE_REPLICA_URLS`: a comma-separated string, a JSON list, or a sequence."""
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                msg = "is not a JSON list of URLs nor a comma-separated list"
                raise ValueError(msg) from None
        else:
            value = [item for item in text.replace("\n", ",").split(",") if item.strip()]
    if isinstance(value, URL) or not isinstance(value, list | tuple):
        msg = "must be a list of database URLs (comma-separated in the environment)"
        raise TypeError(msg)
    urls = tuple(_normalise_url(item) for item in value)
    return tuple(url for url in urls if url is not None)


DatabaseURLs = Annotated[
    tuple[URL, ...],
    NoDecode,
    PlainValidator(_normalise_urls),
    PlainSerializer(lambda urls: [render_url(url) for url in urls], return_type=list[str]),
]

Pooler = Literal["none", "pgbouncer"]
"""What sits between appdb and PostgreSQL: nothing, or PgBouncer in transaction mode."""


class DatabaseSettings(BaseSettings):
    """Connection and pool settings, from keyword arguments, `DATABASE_*` variables or `.env`.

    Keyword arguments win over the environment, which wins over `.env`. Any invalid value
    raises `ConfigurationError` naming the variable; a password is never part of the message.
    """

    model_config = SettingsConfigDict(
        env_prefix=_ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    url: DatabaseURL = Field(
        default=None,
        description="SQLAlchemy URL; unset means a SQLite file in the working directory.",
    )
    require_url: bool = Field(
        default=False,
        description="Refuse to start without an explicit DATABASE_URL (set it in production).",
    )
    echo: bool = Field(default=False, description="Log every SQL statement (debugging only).")
    pool_size: int = Field(default=5, ge=1, description="Connections kept open per process.")
    max_overflow: int = Field(default=10, ge=0, description="Extra connections under load.")
    pool_timeout: float = Field(
        default=30.0, gt=0, description="Seconds to wait for a free connection."
    )
    pool_recycle: int = Field(
        default=1800,
        ge=-1,
        description="Replace connections older than this many seconds (-1: never).",
    )
    pool_pre_ping: bool = Field(default=True, description="Test connections on checkout.")
    connect_timeout: int = Field(
        default=10, ge=1, description="Seconds to wait for a new connection."
    )
    statement_timeout: int | None = Field(
        default=None,
        ge=0,
        description="PostgreSQL statement_timeout in milliseconds (0 or unset: none).",
    )
    application_name: str = Field(
        default="appdb",
        max_length=63,
        description="Shown in pg_stat_activity, so services can be told apart.",
    )
    ddl_lock_timeout: int = Field(
        default=10_000,
        ge=0,
        description="PostgreSQL lock_timeout (ms) for migration DDL, so it never queues forever.",
    )
    sqlite_busy_timeout: float = Field(
        default=5.0,
        ge=0,
        description="Seconds SQLite waits for a lock before 'database is locked'.",
    )
    pooler: Pooler = Field(
        default="none",
        description=(
            "pgbouncer: DATABASE_URL (and the replicas) lead through PgBouncer in transaction "
            "mode, so appdb keeps no state on a server connection beyond one transaction."
        ),
    )
    migration_url: DatabaseURL = Field(
        default=None,
        description="Direct (owner) URL appdb-migrate uses; unset: DATABASE_URL.",
    )
    replica_urls: DatabaseURLs = Field(
        default=(),
        description="Streaming read replicas: sessions read there until they write.",
    )
    replica_retry_interval: float = Field(
        default=30.0,
        gt=0,
        description="Seconds an unreachable replica is left alone before it is tried again.",
    )

    def __init__(self, **values: Any) -> None:
        """Read the settings; raise `ConfigurationError` instead of pydantic's `ValidationError`.

        Args:
            **values: Field values that take precedence over the environment.

        Raises:
            ConfigurationError: A value is missing or invalid.
        """
        try:
            super().__init__(**values)
        except ValidationError as exc:
            # pydantic's own message repeats the input, which may hold a password, so the
            # error is raised outside this block: it must not even be the __context__.
            error = ConfigurationError(_describe(exc))
        else:
            return
        raise error

    @model_validator(mode="after")
    def _default_to_sqlite(self) -> DatabaseSettings:
        if self.url is None:
            if self.require_url:
                msg = (
                    f"{_ENV_PREFIX}URL is not set and {_ENV_PREFIX}REQUIRE_URL is on: "
                    "set it to the database this service must use"
                )
                raise ValueError(msg)
            path = Path.cwd() / DEFAULT_SQLITE_FILENAME
            self.url = URL.create("sqlite", database=str(path))
            logger.warning("%sURL is not set; using the SQLite file %s", _ENV_PREFIX, path)
        return self

    @model_validator(mode="after")
    def _check_scaling(self) -> DatabaseSettings:
        backend = self.database_url.get_backend_name()
        if self.pooler != "none" and backend != "postgresql":
            msg = f"{_ENV_PREFIX}POOLER={self.pooler} needs a PostgreSQL {_ENV_PREFIX}URL"
            raise ValueError(msg)
        if self.replica_urls and backend != "postgresql":
            msg = f"{_ENV_PREFIX}REPLICA_URLS needs a PostgreSQL {_ENV_PREFIX}URL"
            raise ValueError(msg)
        if any(url.get_backend_name() != backend for url in self.replica_urls):
            msg = f"{_ENV_PREFIX}REPLICA_URLS must all be {backend} URLs, as {_ENV_PREFIX}URL is"
            raise ValueError(msg)
        if self.migration_url is not None and self.migration_url.get_backend_name() != backend:
            msg = f"{_ENV_PREFIX}MIGRATION_URL must be a {backend} URL, as {_ENV_PREFIX}URL is"
            raise ValueError(msg)
        return self

    @property
    def database_url(self) -> URL:
        """The normalised URL (never ``None`` once the settings exist)."""
        if self.url is None:  # pragma: no cover - the validator always fills it
            msg = f"{_ENV_PREFIX}URL is not set"
            raise ConfigurationError(msg)
        return self.url

    @property
    def is_sqlite(self) -> bool:
        """Whether the database is SQLite (the development default)."""
        return self.database_url.get_backend_name() == "sqlite"

    @property
    def is_postgresql(self) -> bool:
        """Whether the database is PostgreSQL."""
        return self.database_url.get_backend_name() == "postgresql"

    @property
    def uses_transaction_pooler(self) -> bool:
        """Whether connections lead through a transaction pooler (`DATABASE_POOLER`)."""
        return self.pooler != "none"

    def for_migrations(self, *, session_level: bool = True) -> DatabaseSettings:
        """The settings migrations connect with: `DATABASE_MIGRATION_URL`, else `DATABASE_URL`.

        Args:
            session_level: The caller needs a real server session (the migration lock,
                ``SET lock_timeout``), which a transaction pooler cannot give.

        Returns:
            Settings whose URL is the migration target, with no pooler, no replicas and no
            statement timeout.

        Raises:
            ConfigurationError: `session_level` is asked for, but the only URL leads through
                the transaction pooler named by `DATABASE_POOLER`.
        """
        # A request-sized statement_timeout would cancel a long index build or backfill;
        # migrations are bounded by DATABASE_DDL_LOCK_TIMEOUT on the locks they wait for.
        unbounded: dict[str, object] = {"statement_timeout": None}
        if self.migration_url is not None:
            return self.model_copy(
                update={
                    "url": self.migration_url,
                    "pooler": "none",
                    "replica_urls": (),
                    **unbounded,
                }
            )
        if session_level and self.uses_transaction_pooler:
            msg = (
                f"{_ENV_PREFIX}POOLER={self.pooler}: {_ENV_PREFIX}URL leads through a transaction "
                "pooler, where the migration lock and session settings do not hold; set "
                f"{_ENV_PREFIX}MIGRATION_URL to a direct connection to PostgreSQL"
            )
            raise ConfigurationError(msg)
        return self.model_copy(update=unbounded)


def _describe(exc: ValidationError) -> str:
    """One line per invalid field, naming its environment variable, without the input value."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        where = f"{_ENV_PREFIX}{field.upper()}" if field else "settings"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where} {message}" if not field else f"{where}: {message}")
    return "invalid database settings: " + "; ".join(problems)


@functools.cache
def get_settings() -> DatabaseSettings:
    """Return the process-wide settings, read from the environment on first call.

    The result is cached; `get_settings.cache_clear()` makes the next call read again.

    Returns:
        The settings every default engine and session factory uses.

    Raises:
        ConfigurationError: The environment holds an invalid value.
    """
    return DatabaseSettings()
