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
from sqlalchemy import inspect as sa_inspect
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
    service: str | None = None
    """The service whose chain the revision belongs to; None for appdb's own."""


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


_APPDB_VERSION_TABLE = "alembic_version"
_SERVICE_VERSION_TABLE = "alembic_version_{}"


@dataclass(frozen=True)
class _Chain:
    """One line of revisions with a version table of its own: appdb's, or one service's."""

    service: str | None
    """The service's name; None for appdb's own chain."""
    version_table: str
    versions: str
    """The folder of the chain's revision files."""

    @property
    def label(self) -> str:
        return self.service or "appdb"


if TYPE_CHECKING:
    # Moves one chain: the chain, an Alembic command (upgrade, downgrade, stamp), the target.
    _Runner = Callable[[_Chain, Callable[..., None], str], None]


def _appdb_chain() -> _Chain:
    return _Chain(None, _APPDB_VERSION_TABLE, _versions_folder(_script_location()))


def _service_chains() -> tuple[_Chain, ...]:
    """The installed services' chains, in name order: the order they are upgraded in."""
    return tuple(
        _Chain(found.name, _SERVICE_VERSION_TABLE.format(found.name), str(found.versions))
        for found in service_migrations()
    )


def _chains() -> tuple[_Chain, ...]:
    return (_appdb_chain(), *_service_chains())


def _split_target(revision: str) -> tuple[_Chain, str]:
    """``service@target`` addresses that service's chain; any other target appdb's."""
    name, at, target = revision.partition("@")
    if not at:
        return _appdb_chain(), revision
    return _service_chain(name, f"{revision!r}: "), target


def _service_chain(name: str, context: str = "") -> _Chain:
    chains = {chain.service: chain for chain in _service_chains()}
    if name not in chains:
        installed = ", ".join(str(service) for service in chains) or "none"
        msg = f"{context}no service {name!r} is installed here (installed: {installed})"
        raise MigrationError(msg)
    return chains[name]


def _chain_config(
    chain: _Chain,
    settings: DatabaseSettings,
    *,
    connection: Connection | None = None,
    stdout: TextIO | None = None,
) -> Config:
    config = Config(stdout=stdout or io.StringIO())
    config.set_main_option("script_location", _script_location())
    if chain.service is not None:
        # appdb's env.py and script.py.mako, the service's revisions alone.
        config.set_main_option("path_separator", "newline")
        # ConfigParser interpolates '%': a folder name may contain one.
        config.set_main_option("version_locations", chain.versions.replace("%", "%%"))
    config.attributes["version_table"] = chain.version_table
    config.attributes["appdb_settings"] = settings
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def alembic_config(
    settings: DatabaseSettings | None = None,
    *,
    connection: Connection | None = None,
    stdout: TextIO | None = None,
    service: str | None = None,
) -> Config:
    """Build the Alembic configuration for appdb's bundled migrations, or a service's.

    Tools such as pytest-alembic, and services that run Alembic themselves, can use it as is.

    Args:
        settings: The database to migrate; `get_settings()` when omitted. Migrations run
            on its `DatabaseSettings.for_migrations` URL unless `connection` is given.
        connection: Run migrations on this connection (inside the caller's transaction)
            instead of opening one.
        stdout: Where Alembic writes its output (offline SQL, history).
        service: A registered service's name: its revisions and its version table
            (``alembic_version_<service>``) instead of appdb's.

    Returns:
        A configuration needing no ``alembic.ini``.

    Raises:
        MigrationError: No such service is installed.
    """
    chain = _appdb_chain() if service is None else _service_chain(service)
    return _chain_config(chain, settings or get_settings(), connection=connection, stdout=stdout)


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


def _read_versions(connection: Connection, chains: Sequence[_Chain]) -> list[tuple[str, ...]]:
    """Each chain's recorded revisions; empty for a version table that does not exist."""
    return [
        tuple(
            MigrationContext.configure(
                connection, opts={"version_table": chain.version_table}
            ).get_current_heads()
        )
        for chain in chains
    ]


def _services_above_base(settings: DatabaseSettings) -> list[str]:
    """Every service with revisions recorded in this database, installed here or not."""
    prefix = _SERVICE_VERSION_TABLE.format("")
    engine = create_engine(settings, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            tables = sorted(
                name for name in sa_inspect(connection).get_table_names() if name.startswith(prefix)
            )
            chains = [_Chain(name.removeprefix(prefix), name, "") for name in tables]
            recorded = _read_versions(connection, chains)
    finally:
        engine.dispose()
    return [chain.label for chain, revisions in zip(chains, recorded, strict=True) if revisions]


def _refuse_with_services_above_base(settings: DatabaseSettings, revision: str) -> None:
    services = _services_above_base(settings)
    if services:
        names = ", ".join(services)
        first = " ".join(f"{name}@base" for name in services)
        msg = (
            f"{revision!r} addresses appdb's own chain, but service(s) {names} still have "
            f"tables referencing appdb's: take them down first ({first})"
        )
        raise MigrationError(msg)


def _run_locked(
    operation: Callable[[_Runner, DatabaseSettings], None],
    settings: DatabaseSettings | None,
    action: str,
    lock_timeout: float,
) -> list[AppliedRevision]:
    """Run `operation` under the migration lock; it calls its runner once per chain to move."""
    settings = _settings(settings).for_migrations()
    applied: list[AppliedRevision] = []
    recorder = _recorder(applied)

    def run(chain: _Chain, alembic_command: Callable[..., None], target: str) -> None:
        config = _chain_config(chain, settings)
        config.attributes["on_version_apply"] = recorder
        alembic_command(config, target)

    with _translated_errors(settings, action), _migration_lock(settings, lock_timeout):
        operation(run, settings)
    return applied


def upgrade(
    revision: str = "heads",
    settings: DatabaseSettings | None = None,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> list[AppliedRevision]:
    """Bring the database up to `revision` (default: appdb's head, then every service's).

    Args:
        revision: ``heads`` (appdb's chain, then each installed service's in name order);
            a target of appdb's chain (``head``, a revision id, ``+1``); or
            ``service@target`` (``smartspace@head``), which brings appdb's chain to its head
            first, then moves that service's chain alone.
        settings: The database; `get_settings()` when omitted.
        lock_timeout: Seconds to wait for a concurrent migration to finish.

    Returns:
        The revisions applied, in order; empty when the database was already there.

    Raises:
        MigrationError: A revision failed (PostgreSQL stays at the last revision that
            completed), or `revision` names a service not installed here.
        MigrationLockTimeoutError: Another migration held the lock for too long.
        DatabaseUnavailableError: The database could not be reached.
        ConfigurationError: The connection leads through a transaction pooler (see
            `DatabaseSettings.for_migrations`).
    """
    chain, target = _split_target(revision)

    def operation(run: _Runner, _: object) -> None:
        # Service tables reference appdb's: appdb's chain always goes first.
        run(_appdb_chain(), command.upgrade, "heads" if chain.service else target)
        if chain.service is not None:
            run(chain, command.upgrade, target)
        elif revision == "heads":
            for service in _service_chains():
                run(service, command.upgrade, "heads")

    return _run_locked(operation, settings, "upgrade", lock_timeout)


def downgrade(
    revision: str,
    settings: DatabaseSettings | None = None,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> list[AppliedRevision]:
    """Take a chain down to `revision`: appdb's, or a service's with ``service@target``.

    Args:
        revision: A target of appdb's chain (a revision id, ``base``, ``-1``), refused while
            any service is above base (its tables reference appdb's); or ``service@target``
            (``smartspace@-1``, ``smartspace@base``) for that service's chain.
        settings: The database; `get_settings()` when omitted.
        lock_timeout: Seconds to wait for a concurrent migration to finish.

    Returns:
        The revisions undone, in order.

    Raises:
        MigrationError: A downgrade step failed, services are above base, or `revision`
            names a service not installed here.
        MigrationLockTimeoutError: Another migration held the lock for too long.
        DatabaseUnavailableError: The database could not be reached.
        ConfigurationError: The connection leads through a transaction pooler (see
            `DatabaseSettings.for_migrations`).
    """
    chain, target = _split_target(revision)

    def operation(run: _Runner, settings: DatabaseSettings) -> None:
        if chain.service is None:
            _refuse_with_services_above_base(settings, revision)
        run(chain, command.downgrade, target)

    return _run_locked(operation, settings, "downgrade", lock_timeout)


def stamp(
    revision: str,
    settings: DatabaseSettings | None = None,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> None:
    """Record `revision` as a chain's schema version without running any migration.

    Args:
        revision: ``heads`` (every installed chain at its head); a revision of appdb's chain
            (``head``, ``base``, an id), refused while any service is above base; or
            ``service@target`` for that service's chain.
        settings: The database; `get_settings()` when omitted.
        lock_timeout: Seconds to wait for a concurrent migration to finish.

    Raises:
        MigrationError: The revision is unknown, services are above base, or the stamp failed.
        ConfigurationError: The connection leads through a transaction pooler.
    """
    chain, target = _split_target(revision)

    def operation(run: _Runner, settings: DatabaseSettings) -> None:
        if revision == "heads":
            for each in _chains():
                run(each, command.stamp, "heads")
            return
        if chain.service is None:
            _refuse_with_services_above_base(settings, revision)
        run(chain, command.stamp, target)

    _run_locked(operation, settings, "stamp", lock_timeout)


def _serverless_settings(url: str) -> DatabaseSettings:
    """Settings for work that needs no server, whatever the environment says about one."""
    return DatabaseSettings(url=url, pooler="none", migration_url=None, replica_urls=())


def offline_sql(revision: str, *, downgrade: bool = False) -> str:
    """Render the SQL of an upgrade or downgrade without a server (PostgreSQL dialect).

    Args:
        revision: ``heads`` (appdb's chain, then every service's), a target or ``FROM:TO``
            of appdb's chain, or ``service@...`` for a service's chain; a downgrade without
            ``FROM:`` starts from that chain's heads.
        downgrade: Render the downgrade instead.

    Returns:
        The SQL script.

    Raises:
        MigrationError: The revision range is not valid.
    """
    buffer = io.StringIO()
    settings = _serverless_settings("postgresql://offline/appdb")
    chain, target = _split_target(revision)
    chains = _chains() if revision == "heads" and not downgrade else (chain,)
    if downgrade and ":" not in target:
        target = f"heads:{target}"
    with _translated_errors(settings, "render SQL"):
        for each in chains:
            config = _chain_config(each, settings, stdout=buffer)
            config.output_buffer = buffer
            if downgrade:
                command.downgrade(config, target, sql=True)
            else:
                command.upgrade(config, target, sql=True)
    return buffer.getvalue()


def _script(chain: _Chain) -> ScriptDirectory:
    with _translated_errors(_serverless_settings("sqlite://"), f"read {chain.label}'s revisions"):
        return ScriptDirectory.from_config(_chain_config(chain, _serverless_settings("sqlite://")))


def _heads_of(chains: Sequence[_Chain]) -> list[tuple[str, ...]]:
    return [tuple(_script(chain).get_heads()) for chain in chains]


def heads() -> tuple[str, ...]:
    """The head revisions: appdb's, then each registered service's (see `appdb.extensions`).

    Returns:
        Revision ids.
    """
    return tuple(revision for chain_heads in _heads_of(_chains()) for revision in chain_heads)


def at_heads(revisions: Sequence[str]) -> bool:
    """Whether a database at `revisions` has every head applied and nothing unknown.

    Each chain records its own heads in its own version table, so a database at every head
    holds exactly the heads.

    Args:
        revisions: What `current()` returned.

    Returns:
        True when an upgrade to ``heads`` would do nothing.
    """
    return bool(revisions) and sorted(revisions) == sorted(heads())


def history() -> list[Revision]:
    """Every revision, appdb's chain then each registered service's, each newest first.

    Returns:
        The revisions with their descriptions; a service's carry its name in `Revision.service`.
    """
    revisions: list[Revision] = []
    for chain in _chains():
        script = _script(chain)
        head_ids = set(script.get_heads())
        revisions.extend(
            Revision(
                revision=item.revision,
                down_revision=item.down_revision if isinstance(item.down_revision, str) else None,
                description=item.doc,
                is_head=item.revision in head_ids,
                branch_labels=tuple(sorted(item.branch_labels)),
                service=chain.service,
            )
            for item in script.walk_revisions()
        )
    return revisions


def _current_by_chain(
    settings: DatabaseSettings | None, chains: Sequence[_Chain]
) -> list[tuple[str, ...]]:
    # A read needs no server session: through the pooler is fine when there is no direct URL.
    settings = _settings(settings).for_migrations(session_level=False)
    engine = create_engine(settings, poolclass=NullPool)
    try:
        with _translated_errors(settings, "read the current revision"), engine.connect() as conn:
            return _read_versions(conn, chains)
    finally:
        engine.dispose()


def current(settings: DatabaseSettings | None = None) -> tuple[str, ...]:
    """The revision(s) the database is at; empty when it has never been migrated.

    Args:
        settings: The database; `get_settings()` when omitted.

    Returns:
        Revision ids from appdb's ``alembic_version`` table, then from each installed
        service's ``alembic_version_<service>``. Services not installed here are left out.

    Raises:
        DatabaseUnavailableError: The database could not be reached.
    """
    recorded = _current_by_chain(settings, _chains())
    return tuple(revision for revisions in recorded for revision in revisions)


def _chain_problem(chain: _Chain, actual: tuple[str, ...], expected: tuple[str, ...]) -> str:
    shown = ", ".join(actual) or "no revision (never migrated)"
    wanted = ", ".join(expected)
    known = {item.revision for item in _script(chain).walk_revisions()}
    if chain.service is None:
        if set(actual) - known:
            return (
                f"database is at {shown}, which this appdb does not know (it ships {wanted}): "
                "the database is ahead, upgrade appdb"
            )
        return (
            f"database is at {shown} but this appdb expects {wanted}: run `appdb-migrate upgrade`"
        )
    if set(actual) - known:
        return (
            f"service {chain.service} is at {shown}, which its installed migrations do not "
            f"know (they end at {wanted}): upgrade its package"
        )
    return (
        f"service {chain.service} is at {shown} but its migrations end at {wanted}: "
        "run `appdb-migrate upgrade`"
    )


def ensure_schema_current(settings: DatabaseSettings | None = None) -> str:
    """Refuse to serve against the wrong schema: call it at start-up.

    Only the chains installed here are checked: appdb's, and each registered service's.
    Services installed elsewhere keep their versions in tables of their own.

    Args:
        settings: The database; `get_settings()` when omitted.

    Returns:
        The head revision(s) the database is at, comma-separated.

    Raises:
        SchemaOutOfDateError: A chain is behind (run ``appdb-migrate upgrade``) or ahead of
            (upgrade appdb, or the service's package) the head installed here.
        DatabaseUnavailableError: The database could not be reached.
    """
    chains = _chains()
    expected = _heads_of(chains)
    actual = _current_by_chain(settings, chains)
    problems = [
        _chain_problem(chain, have, want)
        for chain, have, want in zip(chains, actual, expected, strict=True)
        if sorted(have) != sorted(want)
    ]
    if problems:
        raise SchemaOutOfDateError("; ".join(problems))
    return ", ".join(revision for chain_heads in expected for revision in chain_heads)


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
