"""Migration operations as plain functions: what `appdb-migrate` runs, callable from services too.

The migrations ship inside the wheel (``appdb/migrations``) and are found as a package resource,
so no ``alembic.ini`` or working directory is involved. On PostgreSQL, operations that change the
schema hold a session-level advisory lock on a connection of their own for the whole run, so two
services deploying at the same moment never migrate the same database twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.pool import NullPool

from appdb.engine import create_engine
from appdb.exceptions import (
    AppDBError,
    ConfigurationError,
    DatabaseUnavailableError,
    MigrationError,
    MigrationLockTimeoutError,
    SchemaOutOfDateError,
)
from appdb.extensions import service_migrations
from appdb.models import metadata
from appdb.settings import DatabaseSettings, get_settings, render_url

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from sqlalchemy.engine import Connection

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "AppliedRevision",
    "Revision",
    "alembic_config",
    "at_heads",
    "check",
    "current",
    "downgrade",
    "ensure_schema_current",
    "heads",
    "history",
    "include_name",
    "stamp",
    "upgrade",
]

DEFAULT_LOCK_TIMEOUT = 300.0
"""Seconds a migration waits for another one to finish before giving up."""

# One advisory lock key per database for every appdb-migrate, derived from a fixed name so that
# it cannot collide with small integers services pick for their own locks.
_LOCK_KEY = int.from_bytes(hashlib.sha256(b"appdb-migrate").digest()[:8], "big", signed=True)
_LOCK_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Revision:
    """One migration script."""

    revision: str
    down_revision: str | None
    description: str
    is_head: bool
    branch_labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class AppliedRevision:
    """A revision that `upgrade` or `downgrade` just ran, and how long it took."""

    revision: str
    description: str
    seconds: float
    is_upgrade: bool


def _script_location() -> str:
    """Where the migrations are: the wheel's package resource, or the live checkout."""
    if resources.files("appdb").joinpath("migrations", "env.py").is_file():
        return "appdb:migrations"
    # An editable install or a source checkout: read the live files, never a stale copy.
    checkout = Path(__file__).resolve().parents[2] / "migrations"
    if (checkout / "env.py").is_file():
        return str(checkout)
    msg = "appdb's migrations are missing from this installation (reinstall appdb)"
    raise MigrationError(msg)


def _versions_folder(script_location: str) -> str:
    if script_location == "appdb:migrations":
        return str(resources.files("appdb").joinpath("migrations", "versions"))
    return str(Path(script_location) / "versions")


def _add_service_locations(config: Config, script_location: str) -> None:
    """Add every registered service's versions folder next to appdb's own.

    With no service installed nothing is set, and Alembic reads appdb's folder as always.
    """
    services = service_migrations()
    if not services:
        return
    folders = [_versions_folder(script_location), *(str(s.versions) for s in services)]
    config.set_main_option("path_separator", "newline")
    # ConfigParser interpolates '%': a folder name may contain one.
    config.set_main_option("version_locations", "\n".join(f.replace("%", "%%") for f in folders))


def alembic_config(
    settings: DatabaseSettings | None = None,
    *,
    connection: Connection | None = None,
    stdout: TextIO | None = None,
) -> Config:
    """Build the Alembic configuration for appdb's bundled migrations.

    Tools such as pytest-alembic, and services that run Alembic themselves, can use it as is.

    Args:
        settings: The database to migrate; `get_settings()` when omitted. Migrations run
            on its `DatabaseSettings.for_migrations` URL unless `connection` is given.
        connection: Run migrations on this connection (inside the caller's transaction)
            instead of opening one.
        stdout: Where Alembic writes its output (offline SQL, history).

    Returns:
        A configuration needing no ``alembic.ini``.
    """
    config = Config(stdout=stdout or io.StringIO())
    location = _script_location()
    config.set_main_option("script_location", location)
    _add_service_locations(config, location)
    config.attributes["appdb_settings"] = settings or get_settings()
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Let autogenerate see only the tables appdb's metadata owns.

    A service's own tables in the same database are never proposed for dropping.
    """
    del parent_names
    if type_ == "table":
        return name in metadata.tables
    return True


def _settings(settings: DatabaseSettings | None) -> DatabaseSettings:
    return settings or get_settings()


def _describe_failure(error: BaseException, settings: DatabaseSettings) -> str:
    """One line about a failure, with the password removed even from driver messages."""
    message = " ".join(str(getattr(error, "orig", None) or error).split())
    message = message.split(" (Background on this error")[0]
    password = settings.database_url.password
    if password:
        message = message.replace(str(password), "***")
    return message


@contextlib.contextmanager
def _translated_errors(settings: DatabaseSettings, action: str) -> Iterator[None]:
    """Turn Alembic and driver errors into appdb exceptions with readable messages."""
    try:
        yield
    except DatabaseUnavailableError as exc:
        # Raised by the engine, naming host and port; say which operation it stopped.
        msg = f"cannot {action}: {exc}"
        raise type(exc)(msg) from exc
    except AppDBError:
        raise
    except sa_exc.OperationalError as exc:
        url = settings.database_url
        where = f"{url.host or 'localhost'}:{url.port or 5432}" if url.host else render_url(url)
        if exc.connection_invalidated or "connection" in str(exc.orig).lower():
            reason = _describe_failure(exc, settings)
            msg = f"cannot {action}: database at {where} unavailable: {reason}"
            raise DatabaseUnavailableError(msg) from None
        msg = f"cannot {action}: {_describe_failure(exc, settings)}"
        raise MigrationError(msg) from exc
    except (CommandError, sa_exc.SQLAlchemyError) as exc:
        msg = f"cannot {action}: {_describe_failure(exc, settings)}"
        raise MigrationError(msg) from exc


# A custom setting sent in the startup packet: PostgreSQL applies it to the session, while a
# transaction pooler either refuses the packet or drops it (it cannot keep one client's
# session settings on server connections that every client shares).
_DIRECT_SESSION_PROBE = "appdb.direct_session"


def _with_probe(settings: DatabaseSettings) -> DatabaseSettings:
    url = settings.database_url
    given = str(url.query.get("options", ""))
    options = " ".join(part for part in (given, f"-c {_DIRECT_SESSION_PROBE}=on") if part)
    return settings.model_copy(update={"url": url.update_query_dict({"options": options})})


def _not_direct(settings: DatabaseSettings, why: str) -> ConfigurationError:
    msg = (
        f"{render_url(settings.database_url)} is not a direct connection to PostgreSQL ({why}); "
        "migrations hold a session-level lock that a transaction pooler such as PgBouncer "
        "does not keep: set DATABASE_MIGRATION_URL (or --database-url) to PostgreSQL itself"
    )
    return ConfigurationError(msg)


@contextlib.contextmanager
def _migration_lock(settings: DatabaseSettings, timeout: float) -> Iterator[None]:
    """Hold appdb's advisory lock on a dedicated connection (PostgreSQL), waiting at most `timeout`.

    The lock lives as long as that connection: if the process dies, the server releases it.
    Waiting is done by polling, so no lock_timeout set for the DDL can cut the wait short.
    The connection must be a real server session, so a transaction pooler is refused.
    """
    if not settings.is_postgresql:
        yield
        return
    engine = create_engine(_with_probe(settings), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        try:
            connection = engine.connect()
        except (sa_exc.OperationalError, DatabaseUnavailableError) as exc:
            if "startup parameter" in str(exc):
                raise _not_direct(settings, "it refused the startup options") from None
            raise
        with connection:
            probe = text("SELECT current_setting(:name, true)").bindparams(
                name=_DIRECT_SESSION_PROBE
            )
            if connection.execute(probe).scalar() != "on":
                raise _not_direct(settings, "it dropped the startup options")
            deadline = time.monotonic() + timeout
            try_lock = text("SELECT pg_try_advisory_lock(:key)").bindparams(key=_LOCK_KEY)
            while not connection.execute(try_lock).scalar():
                if time.monotonic() >= deadline:
                    msg = (
                        f"another appdb-migrate has held the migration lock for over {timeout:g}s; "
                        "retry later or raise --lock-timeout"
                    )
                    raise MigrationLockTimeoutError(msg)
                time.sleep(_LOCK_POLL_SECONDS)
            try:
                yield
            finally:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)").bindparams(key=_LOCK_KEY)
                )
    finally:
        engine.dispose()


def _recorder(applied: list[AppliedRevision]) -> Callable[..., None]:
    started = [time.perf_counter()]

    def on_version_apply(*, step: Any, **_: Any) -> None:
        now = time.perf_counter()
        # For a downgrade step too, the "up" revision is the one being applied or undone.
        script = step.revision_map.get_revision(step.up_revision_id)
        applied.append(
            AppliedRevision(
                revision=step.up_revision_id,
                description=script.doc if script is not None else "",
                seconds=now - started[0],
                is_upgrade=step.is_upgrade,
            )
        )
        started[0] = now

    return on_version_apply


def _run_locked(
    operation: Callable[[Config], None],
    settings: DatabaseSettings | None,
    action: str,
    lock_timeout: float,
) -> list[AppliedRevision]:
    settings = _settings(settings).for_migrations()
    config = alembic_config(settings)
    applied: list[AppliedRevision] = []
    config.attributes["on_version_apply"] = _recorder(applied)
    with _translated_errors(settings, action), _migration_lock(settings, lock_timeout):
        operation(config)
    return applied


def upgrade(
    revision: str = "heads",
    settings: DatabaseSettings | None = None,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> list[AppliedRevision]:
    """Bring the database up to `revision` (default: every head, appdb's and the services').

    Args:
        revision: Target revision id, ``heads``, ``head`` (when there is one), a branch
            such as ``smartspace@head``, or a relative target such as ``+1``.
        settings: The database; `get_settings()` when omitted.
        lock_timeout: Seconds to wait for a concurrent migration to finish.

    Returns:
        The revisions applied, in order; empty when the database was already there.

    Raises:
        MigrationError: A revision failed (PostgreSQL stays at the last revision that completed).
        MigrationLockTimeoutError: Another migration held the lock for too long.
        DatabaseUnavailableError: The database could not be reached.
        ConfigurationError: The connection leads through a transaction pooler (see
            `DatabaseSettings.for_migrations`).
    """
    return _run_locked(
        lambda config: command.upgrade(config, revision), settings, "upgrade", lock_timeout
    )


def downgrade(
    revision: str,
    settings: DatabaseSettings | None = None,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> list[AppliedRevision]:
    """Take the database down to `revision` (``base`` removes every appdb table).

    Args:
        revision: Target revision id, ``base``, or a relative target such as ``-1``.
        settings: The database; `get_settings()` when omitted.
        lock_timeout: Seconds to wait for a concurrent migration to finish.

    Returns:
        The revisions undone, in order.

    Raises:
        MigrationError: A downgrade step failed.
        MigrationLockTimeoutError: Another migration held the lock for too long.
        DatabaseUnavailableError: The database could not be reached.
        ConfigurationError: The connection leads through a transaction pooler (see
            `DatabaseSettings.for_migrations`).
    """
    return _run_locked(
        lambda config: command.downgrade(config, revision), settings, "downgrade", lock_timeout
    )


def stamp(
    revision: str,
    settings: DatabaseSettings | None = None,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> None:
    """Record `revision` as the database's schema version without running any migration.

    Args:
        revision: The revision to record (``head``, ``base`` or an id).
        settings: The database; `get_settings()` when omitted.
        lock_timeout: Seconds to wait for a concurrent migration to finish.

    Raises:
        MigrationError: The revision is unknown or the stamp failed.
        ConfigurationError: The connection leads through a transaction pooler.
    """
    _run_locked(lambda config: command.stamp(config, revision), settings, "stamp", lock_timeout)


def _serverless_settings(url: str) -> DatabaseSettings:
    """Settings for work that needs no server, whatever the environment says about one."""
    return DatabaseSettings(url=url, pooler="none", migration_url=None, replica_urls=())


def offline_sql(revision: str, *, downgrade: bool = False) -> str:
    """Render the SQL of an upgrade or downgrade without a server (PostgreSQL dialect).

    Args:
        revision: ``heads``/an id (upgrade from base), or ``FROM:TO``; a plain downgrade
            target is taken from ``heads`` (``branch@head`` for ``branch@...``).
        downgrade: Render the downgrade instead.

    Returns:
        The SQL script.

    Raises:
        MigrationError: The revision range is not valid.
    """
    buffer = io.StringIO()
    settings = _serverless_settings("postgresql://offline/appdb")
    config = alembic_config(settings, stdout=buffer)
    config.output_buffer = buffer
    if downgrade and ":" not in revision:
        branch, at, _ = revision.rpartition("@")
        revision = f"{branch}@head:{revision}" if at else f"heads:{revision}"
    with _translated_errors(settings, "render SQL"):
        if downgrade:
            command.downgrade(config, revision, sql=True)
        else:
            command.upgrade(config, revision, sql=True)
    return buffer.getvalue()


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(_serverless_settings("sqlite://")))


def heads() -> tuple[str, ...]:
    """The head revisions: appdb's, and one per registered service (see `appdb.extensions`).

    Returns:
        Revision ids.
    """
    return tuple(_script().get_heads())


def at_heads(revisions: Sequence[str]) -> bool:
    """Whether a database at `revisions` has every head applied and nothing unknown.

    Alembic records a service's head alone once it depends on appdb's head, so the recorded
    revisions and their ancestors (dependencies included) are compared with the heads.

    Args:
        revisions: What `current()` returned.

    Returns:
        True when an upgrade to ``heads`` would do nothing.
    """
    script = _script()
    known = {item.revision for item in script.walk_revisions()}
    if not revisions or not set(revisions) <= known:
        return False
    applied = {item.revision for item in script.iterate_revisions(tuple(revisions), "base")}
    return set(script.get_heads()) <= applied


def history() -> list[Revision]:
    """Every revision, appdb's and the registered services', newest first.

    Returns:
        The revisions with their descriptions.
    """
    script = _script()
    head_ids = set(script.get_heads())
    return [
        Revision(
            revision=item.revision,
            down_revision=item.down_revision if isinstance(item.down_revision, str) else None,
            description=item.doc,
            is_head=item.revision in head_ids,
            branch_labels=tuple(sorted(item.branch_labels)),
        )
        for item in script.walk_revisions()
    ]


def current(settings: DatabaseSettings | None = None) -> tuple[str, ...]:
    """The revision(s) the database is at; empty when it has never been migrated.

    Args:
        settings: The database; `get_settings()` when omitted.

    Returns:
        Revision ids from the ``alembic_version`` table.

    Raises:
        DatabaseUnavailableError: The database could not be reached.
    """
    # A read needs no server session: through the pooler is fine when there is no direct URL.
    settings = _settings(settings).for_migrations(session_level=False)
    engine = create_engine(settings, poolclass=NullPool)
    try:
        with _translated_errors(settings, "read the current revision"), engine.connect() as conn:
            return tuple(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()


def ensure_schema_current(settings: DatabaseSettings | None = None) -> str:
    """Refuse to serve against the wrong schema: call it at start-up.

    Args:
        settings: The database; `get_settings()` when omitted.

    Returns:
        The head revision(s) the database is at, comma-separated.

    Raises:
        SchemaOutOfDateError: The database is behind (run ``appdb-migrate upgrade``) or ahead
            of (upgrade appdb) the head this installed version ships.
        DatabaseUnavailableError: The database could not be reached.
    """
    expected = heads()
    actual = current(settings)
    if at_heads(actual):
        return ", ".join(expected)
    known = {revision.revision for revision in history()}
    shown = ", ".join(actual) or "no revision (never migrated)"
    if set(actual) - known:
        msg = (
            f"database is at {shown}, which this appdb does not know (it ships "
            f"{', '.join(expected)}): the database is ahead, upgrade appdb, or a service "
            "migrated it whose migrations are not installed here: install its package"
        )
    else:
        msg = (
            f"database is at {shown} but this appdb expects {', '.join(expected)}: "
            "run `appdb-migrate upgrade`"
        )
    raise SchemaOutOfDateError(msg)


def check(settings: DatabaseSettings | None = None) -> list[str]:
    """Compare the database (which must be at head) with the models.

    Args:
        settings: The database; `get_settings()` when omitted.

    Returns:
        One line per difference (a table, column, index or type the migrations and models
        disagree on); empty when they match.

    Raises:
        SchemaOutOfDateError: The database is not at head, so the comparison would be moot.
        DatabaseUnavailableError: The database could not be reached.
    """
    settings = _settings(settings).for_migrations(session_level=False)
    ensure_schema_current(settings)
    engine = create_engine(settings, poolclass=NullPool)
    try:
        with _translated_errors(settings, "compare the schema"), engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "compare_server_default": True,
                    "include_name": include_name,
                    "target_metadata": metadata,
                },
            )
            diffs = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    return [_describe_diff(diff) for diff in diffs]


def _describe_diff(diff: Any) -> str:
    """Render one Alembic diff (a tuple, or a list of tuples for column changes) as a line."""
    if isinstance(diff, list):
        return "; ".join(_describe_diff(item) for item in diff)
    kind = diff[0]
    if kind.startswith("modify_"):
        _, _schema, table, column, _existing, old, new = diff
        return f"{kind.replace('_', ' ')} {table}.{column}: {old!r} -> {new!r}"
    if kind in {"add_column", "remove_column"}:
        _, _schema, table, column = diff
        return f"{kind.replace('_', ' ')} {table}.{column.name}"
    item = diff[1]
    table = getattr(item, "table", None)
    where = f" on {table.name}" if table is not None else ""
    return f"{kind.replace('_', ' ')} {getattr(item, 'name', item)}{where}"


def format_revisions(revisions: Sequence[str]) -> str:
    """Render revision ids for humans (``(none)`` for an unmigrated database)."""
    return ", ".join(revisions) or "(none)"
