"""What the user configures: `DatabaseSettings`, read from `DATABASE_*` variables and `.env`."""

from __future__ import annotations

import difflib
import functools
import inspect
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, PlainSerializer, PlainValidator, ValidationError, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from appdb._redaction import hosts_of, render_url
from appdb.exceptions import ConfigurationError

__all__ = [
    "DEFAULT_SQLITE_FILENAME",
    "DatabaseSettings",
    "Pooler",
    "get_settings",
    "render_url",
]

logger: logging.Logger = logging.getLogger("appdb")

DEFAULT_SQLITE_FILENAME = "appdb.sqlite3"
"""The file an unset `DATABASE_URL` points at, in the working directory."""

_ENV_PREFIX = "DATABASE_"
_POSTGRESQL_DRIVER = "postgresql+psycopg"
# Spellings users paste from Heroku, Render, docker-compose files, SQLAlchemy docs ...
_POSTGRESQL_ALIASES = frozenset(
    {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg3"}
)
# Other drivers' spellings: normalised to psycopg 3 with one INFO line. appdb's async engine
# runs on psycopg's async connection, so an asyncpg URL (the bot's) is read as libpq reads it.
_PSYCOPG2 = "postgresql+psycopg2"
_ASYNCPG = "postgresql+asyncpg"
# asyncpg spells libpq's sslmode as ssl (and also takes true/false).
_ASYNCPG_SSL = {"true": "require", "false": "disable"}
# SQLAlchemy's asyncpg dialect options, which mean nothing to libpq.
_ASYNCPG_ONLY = frozenset(
    {"prepared_statement_cache_size", "prepared_statement_name_func", "server_settings"}
)
_SQLITE_ALIASES = frozenset({"sqlite", "sqlite+pysqlite", "sqlite+aiosqlite"})


# libpq's multi-host URI: postgresql://user:pw@h1:5432,h2:5432/app. SQLAlchemy cannot parse
# it (the port would be "5432,h2:5432"), so it is rewritten to SQLAlchemy's spelling for
# psycopg, postgresql://user:pw@/app?host=h1:5432&host=h2:5432, before parsing.
_LIBPQ_MULTI_HOST = re.compile(
    r"^(?P<scheme>[A-Za-z][\w+.-]*://)(?P<userinfo>[^@/?#]*@)?"
    r"(?P<hosts>[^@/?#]*,[^@/?#]*)(?P<path>/[^?#]*)?(?:\?(?P<query>[^#]*))?$"
)
_TARGET_SESSION_ATTRS = frozenset(
    {"any", "read-write", "read-only", "primary", "standby", "prefer-standby"}
)
# What a URL that must reach the primary (DATABASE_URL, DATABASE_MIGRATION_URL) may ask for.
_PRIMARY_SESSION_ATTRS = frozenset({"any", "read-write", "primary"})
PRIMARY_SESSION_ATTRS_DEFAULT = "read-write"
"""``target_session_attrs`` given to a multi-host `DATABASE_URL` that sets none."""
REPLICA_SESSION_ATTRS_DEFAULT = "prefer-standby"
"""``target_session_attrs`` given to a multi-host replica URL that sets none."""


def _host_port(item: str) -> str:
    """``host:port`` for one entry of libpq's host list (``[::1]`` for IPv6; port 5432 if none)."""
    item = item.strip()
    if item.startswith("["):
        address, _, rest = item.partition("]")
        host, port = f"{address}]", rest.removeprefix(":")
    else:
        host, _, port = item.partition(":")
    if host in {"", "[]"}:
        msg = "has an empty host in its comma-separated host list"
        raise ValueError(msg)
    return f"{host}:{port or 5432}"


def _from_libpq_multi_host(text: str) -> str:
    """Rewrite libpq's ``h1:p1,h2:p2`` authority as SQLAlchemy's ``?host=h1:p1&host=h2:p2``."""
    match = _LIBPQ_MULTI_HOST.match(text)
    if match is None:
        return text
    query = match["query"] or ""
    if re.search(r"(^|&)(host|port)=", query):
        msg = "names hosts both before the path and in ?host= or ?port=: use one of the two forms"
        raise ValueError(msg)
    hosts = [f"host={_host_port(item)}" for item in match["hosts"].split(",")]
    parts = "&".join([*hosts, query] if query else hosts)
    return f"{match['scheme']}{match['userinfo'] or ''}{match['path'] or '/'}?{parts}"


def _with_session_attrs(url: URL, *, replica: bool) -> URL:
    """Check ``target_session_attrs``; give a multi-host URL the default for its role."""
    given = url.query.get("target_session_attrs")
    if given is None:
        if len(hosts_of(url)) < 2:  # noqa: PLR2004 - one host: nothing to choose between
            return url
        default = REPLICA_SESSION_ATTRS_DEFAULT if replica else PRIMARY_SESSION_ATTRS_DEFAULT
        return url.update_query_dict({"target_session_attrs": default})
    if not isinstance(given, str) or given not in _TARGET_SESSION_ATTRS:
        allowed = ", ".join(sorted(_TARGET_SESSION_ATTRS))
        msg = f"has an invalid target_session_attrs (expected one of {allowed})"
        raise ValueError(msg)
    if not replica and given not in _PRIMARY_SESSION_ATTRS:
        msg = (
            f"has target_session_attrs={given}, which may connect to a standby where writes "
            "fail: use read-write (or primary) for the primary and migrations"
        )
        raise ValueError(msg)
    return url


def _from_other_driver(url: URL) -> URL:
    """A psycopg2 or asyncpg URL as psycopg 3 reads it, with one INFO line.

    Teams paste the URLs their psycopg2 services and asyncpg bots use: libpq reads psycopg2's
    as they are, and asyncpg's once ``ssl=`` is spelled ``sslmode=``.
    """
    if url.drivername == _PSYCOPG2:
        logger.info(
            "%s uses psycopg2's driver name; appdb connects with psycopg 3 (%s://) instead",
            render_url(url),
            _POSTGRESQL_DRIVER,
        )
        return url.set(drivername=_POSTGRESQL_DRIVER)
    unknown = sorted(_ASYNCPG_ONLY.intersection(url.query))
    if unknown:
        msg = f"has asyncpg-only options ({', '.join(unknown)}); appdb connects with psycopg 3"
        raise ValueError(msg)
    query = dict(url.query)
    if "ssl" in query:
        ssl = query.pop("ssl")
        if isinstance(ssl, tuple) or "sslmode" in query:
            msg = "gives ssl more than once: use one sslmode="
            raise ValueError(msg)
        query["sslmode"] = _ASYNCPG_SSL.get(ssl.lower(), ssl)
    logger.info(
        "%s uses asyncpg's driver name; appdb connects with psycopg 3 (%s://), sync and async",
        render_url(url),
        _POSTGRESQL_DRIVER,
    )
    return url.set(drivername=_POSTGRESQL_DRIVER, query=query)


def _normalise_url(value: Any, *, replica: bool = False) -> URL | None:
    """Parse `DATABASE_URL` and pin the driver: psycopg 3 for PostgreSQL, pysqlite for SQLite.

    libpq's multi-host form (``postgresql://u@h1:5432,h2:5432/app``) and SQLAlchemy's
    (``?host=h1:5432&host=h2:5432``) both give SQLAlchemy's; with several hosts and no
    ``target_session_attrs``, `replica` decides which server libpq settles on.
    """
    if value is None or value == "":
        return None
    if isinstance(value, URL):
        url = value
    elif isinstance(value, str):
        text = _from_libpq_multi_host(value.strip())
        try:
            url = make_url(text)
        except (ArgumentError, ValueError):
            # The raw text may hold a password, so it is never echoed back.
            msg = "is not a database URL (expected e.g. postgresql://user:***@host:5432/dbname)"
            raise ValueError(msg) from None
    else:
        msg = f"must be a string, not {type(value).__name__}"
        raise TypeError(msg)
    url = _password_out_of_query(url)
    if "@" in (url.host or ""):
        # An unescaped '@' in the password shifts part of it into the host name.
        msg = "has an unescaped '@': percent-encode special characters in the password (@ is %40)"
        raise ValueError(msg)
    if url.drivername in (_ASYNCPG, _PSYCOPG2):
        url = _from_other_driver(url)
    if url.drivername in _POSTGRESQL_ALIASES:
        if url.host and url.query.get("host"):
            msg = "names a host both before the path and in ?host=: use one of the two forms"
            raise ValueError(msg)
        return _with_session_attrs(url.set(drivername=_POSTGRESQL_DRIVER), replica=replica)
    if url.drivername in _SQLITE_ALIASES:
        return url.set(drivername="sqlite")
    msg = (
        f"uses the unsupported backend or driver {url.drivername!r} in {render_url(url)}; "
        "appdb supports postgresql:// (psycopg 3) and sqlite://"
    )
    raise ValueError(msg)


def _password_out_of_query(url: URL) -> URL:
    """Move a ``?password=`` query parameter into the URL's password field.

    libpq reads both the same way, but only the password field is hidden by SQLAlchemy when
    it renders a URL (``repr(engine)``, ``str(engine.url)``, its error messages), so there the
    secret is safe on every path, not only on appdb's own. The query value wins, as in libpq.
    """
    value = url.query.get("password")
    if value is None:
        return url
    password = value if isinstance(value, str) else value[-1]
    return url.difference_update_query(["password"]).set(password=password)


DatabaseURL = Annotated[
    URL | None,
    NoDecode,
    PlainValidator(_normalise_url),
    PlainSerializer(lambda url: None if url is None else render_url(url), return_type=str | None),
]


_NEXT_URL = re.compile(r",\s*(?=[A-Za-z][\w+.-]*://)")


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
            # A comma starts a new URL only before a scheme: a libpq multi-host URL has
            # commas of its own (postgresql://u@r1:5432,r2:5432/app).
            items = _NEXT_URL.split(text.replace("\n", ","))
            value = [item.strip(" ,") for item in items if item.strip(" ,")]
    if isinstance(value, URL) or not isinstance(value, list | tuple):
        msg = "must be a list of database URLs (comma-separated in the environment)"
        raise TypeError(msg)
    urls = tuple(_normalise_url(item, replica=True) for item in value)
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

    model_config: ClassVar[SettingsConfigDict] = SettingsConfigDict(
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
        default=10.0, gt=0, description="Seconds to wait for a free connection."
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
    client_timeout: float | None = Field(
        default=20.0,
        ge=0,
        description=(
            "Seconds a call waits for PostgreSQL's answer before the connection is dropped "
            "(ConnectionLostError); at least DATABASE_STATEMENT_TIMEOUT + 2 s; 0: no limit."
        ),
    )
    tcp_user_timeout: int = Field(
        default=20_000,
        ge=0,
        description="libpq tcp_user_timeout (ms): unacknowledged data fails the connection.",
    )
    keepalives_idle: int = Field(
        default=10, ge=1, description="libpq keepalives_idle: idle seconds before probing."
    )
    keepalives_interval: int = Field(
        default=3, ge=1, description="libpq keepalives_interval: seconds between probes."
    )
    keepalives_count: int = Field(
        default=3, ge=1, description="libpq keepalives_count: lost probes that fail it."
    )
    application_name: str = Field(
        default="appdb",
        max_length=63,
        description="Shown in pg_stat_activity, so services can be told apart.",
    )
    ddl_lock_timeout: int = Field(
        default=10_000,
        ge=0,
        description=(
            "How long (ms) migration DDL keeps retrying for a table lock, in 200 ms "
            "lock_timeout attempts so traffic never queues behind it; 0 waits forever."
        ),
    )
    sqlite_busy_timeout: float = Field(
        default=5.0,
        ge=0,
        description="Seconds SQLite waits for a lock before 'database is locked'.",
    )
    sqlite_wal: bool = Field(
        default=True,
        description=(
            "SQLite files use WAL and synchronous=NORMAL: readers never block the writer. "
            "Turn off for a file on a network filesystem, where WAL cannot work."
        ),
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

    if TYPE_CHECKING:
        # What type checkers see: the real fields, keyword-only, with the input types the
        # validators accept (a URL may be a string). Runtime uses the __init__ below; a test
        # keeps these names equal to the fields. A validator cannot do the translation:
        # pydantic wraps a ConfigurationError (a ValueError) raised inside validation.
        def __init__(  # noqa: PLR0913 - one keyword per setting
            self,
            *,
            url: str | URL | None = None,
            require_url: bool = False,
            echo: bool = False,
            pool_size: int = 5,
            max_overflow: int = 10,
            pool_timeout: float = 10.0,
            pool_recycle: int = 1800,
            pool_pre_ping: bool = True,
            connect_timeout: int = 10,
            statement_timeout: int | None = None,
            client_timeout: float | None = 20.0,
            tcp_user_timeout: int = 20_000,
            keepalives_idle: int = 10,
            keepalives_interval: int = 3,
            keepalives_count: int = 3,
            application_name: str = "appdb",
            ddl_lock_timeout: int = 10_000,
            sqlite_busy_timeout: float = 5.0,
            sqlite_wal: bool = True,
            pooler: Pooler = "none",
            migration_url: str | URL | None = None,
            replica_urls: str | Sequence[str | URL] = (),
            replica_retry_interval: float = 30.0,
        ) -> None:
            """Read the settings (see the runtime `__init__`)."""

    else:

        def __init__(self, **values: Any) -> None:
            """Read the settings; raise `ConfigurationError`, not pydantic's `ValidationError`.

            Args:
                **values: Field values that take precedence over the environment.

            Raises:
                ConfigurationError: A value is missing or invalid, or a keyword names no setting.
            """
            _reject_unknown(values)
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
        unbounded: dict[str, object] = {"statement_timeout": None, "client_timeout": None}
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


def _reject_unknown(values: dict[str, Any]) -> None:
    """Refuse keywords that name no setting (``pool_sise=2``), instead of ignoring them.

    The environment and ``.env`` may hold other ``DATABASE_*`` names (a deployment's own); a
    keyword argument is code, where an unknown name is a typo. Values are never shown.
    """
    fields = DatabaseSettings.model_fields
    unknown = sorted(name for name in values if name not in fields and name not in _INIT_OPTIONS)
    if not unknown:
        return
    problems = []
    for name in unknown:
        close = difflib.get_close_matches(name, fields, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        problems.append(f"{name!r} is not a setting{hint}")
    msg = "invalid database settings: " + "; ".join(problems)
    raise ConfigurationError(msg)


def _describe(exc: ValidationError) -> str:
    """One line per invalid field, naming its environment variable, without the input value."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        where = f"{_ENV_PREFIX}{field.upper()}" if field else "settings"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where} {message}" if not field else f"{where}: {message}")
    return "invalid database settings: " + "; ".join(problems)


# pydantic-settings' own keywords (``_env_file=None``, ...), passed through as before.
_INIT_OPTIONS = frozenset(
    name for name in inspect.signature(BaseSettings.__init__).parameters if name.startswith("_")
)


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
