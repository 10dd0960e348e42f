"""The operations that change the schema: `upgrade`, `downgrade` and `stamp`.

Each runs inside a `migration_session`: the migration lock is held, errors are translated, and
every revision applied or undone is recorded as an `AppliedRevision`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from alembic import command
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.pool import NullPool

from appdb.engine import create_engine
from appdb.exceptions import MigrationError, MigrationLockLostError, SchemaMismatchError
from appdb.migrate.chains import (
    SERVICE_VERSION_TABLE,
    Chain,
    all_chains,
    appdb_chain,
    chain_config,
    read_versions,
    service_chains,
    split_target,
)
from appdb.migrate.errors import translated_errors
from appdb.migrate.lock import DEFAULT_LOCK_TIMEOUT, HeldLock, migration_lock
from appdb.migrate.skew import ahead_chain, refuse_breaking, refuse_when_ahead
from appdb.migrate.tables import rows_lost_at_base, stamp_differences
from appdb.settings import get_settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from alembic.config import Config

    from appdb.settings import DatabaseSettings

    # An Alembic command that moves one chain to a target: upgrade, downgrade or stamp.
    AlembicCommand = Callable[[Config, str], None]

logger: logging.Logger = logging.getLogger("appdb")

__all__ = [
    "AppliedRevision",
    "MigrationSession",
    "downgrade",
    "migration_session",
    "stamp",
    "upgrade",
]


@dataclass(frozen=True)
class AppliedRevision:
    """A revision that `upgrade` or `downgrade` just ran, and how long it took."""

    revision: str
    description: str
    seconds: float
    is_upgrade: bool


@dataclass
class MigrationSession:
    """One locked migration run: moves chains and records the revisions it applies."""

    settings: DatabaseSettings
    """The database, as reached for migrations (see `DatabaseSettings.for_migrations`)."""
    lock: HeldLock = field(default_factory=HeldLock)
    """The migration lock, verified before each revision commits."""
    applied: list[AppliedRevision] = field(default_factory=list)
    """Every revision applied or undone so far, in order."""
    _step_started: float = field(default_factory=time.perf_counter, init=False, repr=False)

    def run(self, chain: Chain, alembic_command: AlembicCommand, target: str) -> None:
        """Move `chain` to `target` with `alembic_command`, recording each revision.

        Args:
            chain: appdb's chain or a service's.
            alembic_command: ``alembic.command.upgrade``, ``downgrade`` or ``stamp``.
            target: The revision to move the chain to.
        """
        self.lock.verify(f"move {chain.label}'s chain")
        config = chain_config(chain, self.settings)
        config.attributes["on_version_apply"] = self._record
        alembic_command(config, target)

    def _record(self, *, step: Any, **_: Any) -> None:
        """Alembic's ``on_version_apply`` hook: called after each revision, before it commits."""
        revision = step.up_revision_id
        try:
            self.lock.verify(f"commit {revision}")
        except MigrationLockLostError as exc:
            # Raised inside the revision's transaction, which rolls back: say so.
            msg = f"{exc}; {revision} was rolled back: rerun the command"
            raise MigrationLockLostError(msg) from None
        now = time.perf_counter()
        # For a downgrade step too, the "up" revision is the one being applied or undone.
        script = step.revision_map.get_revision(step.up_revision_id)
        self.applied.append(
            AppliedRevision(
                revision=revision,
                description=script.doc if script is not None else "",
                seconds=now - self._step_started,
                is_upgrade=step.is_upgrade,
            )
        )
        self._step_started = now


@contextlib.contextmanager
def migration_session(
    settings: DatabaseSettings | None, action: str, lock_timeout: float
) -> Iterator[MigrationSession]:
    """Hold the migration lock and translate errors for the block, which moves chains.

    Args:
        settings: The database; `get_settings()` when omitted. Its migration URL is used.
        action: What the block does, for error messages (``upgrade``).
        lock_timeout: Seconds to wait for a concurrent migration to finish.

    Yields:
        The session whose `MigrationSession.run` moves a chain.

    Raises:
        MigrationError: A revision failed.
        MigrationLockTimeoutError: Another migration held the lock for too long.
        DatabaseUnavailableError: The database could not be reached.
        ConfigurationError: The connection leads through a transaction pooler.
    """
    settings = (settings or get_settings()).for_migrations()
    session = MigrationSession(settings)
    try:
        with translated_errors(settings, action), migration_lock(settings, lock_timeout) as lock:
            session.lock = lock
            yield session
            if not lock.is_held():
                # Every revision was verified under the lock before it committed: they stand.
                logger.warning("the migration lock's connection closed after the last revision")
    except SchemaMismatchError as exc:
        # A revision met a table or column it expected: a migration failure, not a guard's.
        msg = f"cannot {action}: {exc}"
        raise MigrationError(msg) from exc


def _services_above_base(settings: DatabaseSettings) -> list[str]:
    """Every service with revisions recorded in this database, installed here or not."""
    prefix = SERVICE_VERSION_TABLE.format("")
    engine = create_engine(settings, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            tables = sorted(
                name for name in sa_inspect(connection).get_table_names() if name.startswith(prefix)
            )
            chains = [Chain(name.removeprefix(prefix), name, "") for name in tables]
            recorded = read_versions(connection, chains)
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


def upgrade(
    revision: str = "heads",
    settings: DatabaseSettings | None = None,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    allow_breaking: bool = False,
) -> list[AppliedRevision]:
    """Bring the database up to `revision` (default: appdb's head, then every service's).

    Args:
        revision: ``heads`` (appdb's chain, then each installed service's in name order);
            a target of appdb's chain (``head``, a revision id, ``+1``); or
            ``service@target`` (``smartspace@head``), which brings appdb's chain to its head
            first, then moves that service's chain alone.
        settings: The database; `get_settings()` when omitted.
        lock_timeout: Seconds to wait for a concurrent migration to finish.
        allow_breaking: Run a breaking revision even while sessions of versions it breaks
            are connected (an emergency override; they will fail).

    Returns:
        The revisions applied, in order; empty when the database was already there, or is
        ahead of this installation and compatible with it (see `appdb.migrate.ahead`).

    Raises:
        MigrationError: A revision failed (PostgreSQL stays at the last revision that
            completed), `revision` names a service not installed here, a newer appdb moved the
            database to a schema this version cannot serve, or a breaking revision would
            break connected sessions.
        MigrationLockTimeoutError: Another migration held the lock for too long.
        DatabaseUnavailableError: The database could not be reached.
        ConfigurationError: The connection leads through a transaction pooler (see
            `DatabaseSettings.for_migrations`).
    """
    chain, target = split_target(revision)
    with migration_session(settings, "upgrade", lock_timeout) as session:
        # Service tables reference appdb's: appdb's chain always goes first.
        moves = [(appdb_chain(), "heads" if chain.service else target)]
        if chain.service is not None:
            moves.append((chain, target))
        elif revision == "heads":
            moves.extend((service, "heads") for service in service_chains())
        for each, to in moves:
            found = ahead_chain(session.settings, each)
            if found is not None:
                if not (found.compatible and to in {"head", "heads"}):
                    raise MigrationError(found.describe())
                logger.info("%s: nothing to do", found.describe())
                continue
            if not allow_breaking:
                refuse_breaking(session.settings, each, to)
            session.run(each, command.upgrade, to)
    return session.applied


def downgrade(
    revision: str,
    settings: DatabaseSettings | None = None,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    drop_data: bool = False,
) -> list[AppliedRevision]:
    """Take a chain down to `revision`: appdb's, or a service's with ``service@target``.

    Args:
        revision: A target of appdb's chain (a revision id, ``base``, ``-1``), refused while
            any service is above base (its tables reference appdb's); or ``service@target``
            (``smartspace@-1``, ``smartspace@base``) for that service's chain.
        settings: The database; `get_settings()` when omitted.
        lock_timeout: Seconds to wait for a concurrent migration to finish.
        drop_data: Go to ``base`` although the chain's tables hold rows (``--yes``).

    Returns:
        The revisions undone, in order.

    Raises:
        MigrationError: A downgrade step failed, services are above base, `revision`
            names a service not installed here, or it is ``base`` and the tables it drops
            hold rows (listed) without `drop_data`.
        MigrationLockTimeoutError: Another migration held the lock for too long.
        DatabaseUnavailableError: The database could not be reached.
        ConfigurationError: The connection leads through a transaction pooler (see
            `DatabaseSettings.for_migrations`).
    """
    chain, target = split_target(revision)
    with migration_session(settings, "downgrade", lock_timeout) as session:
        refuse_when_ahead(session.settings, [chain], "downgrade")
        if chain.service is None:
            _refuse_with_services_above_base(session.settings, revision)
        if target == "base" and not drop_data:
            lost = rows_lost_at_base(session.settings, chain)
            if lost:
                msg = (
                    f"{revision!r} drops every table of {chain.label}'s chain, and these hold "
                    f"rows: {', '.join(lost)}; pass --yes (drop_data=True) to drop them"
                )
                raise MigrationError(msg)
        session.run(chain, command.downgrade, target)
    return session.applied


def stamp(
    revision: str,
    settings: DatabaseSettings | None = None,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    force: bool = False,
) -> None:
    """Record `revision` as a chain's schema version without running any migration.

    Args:
        revision: ``heads`` (every installed chain at its head); a revision of appdb's chain
            (``head``, ``base``, an id), refused while any service is above base; or
            ``service@target`` for that service's chain.
        settings: The database; `get_settings()` when omitted.
        lock_timeout: Seconds to wait for a concurrent migration to finish.
        force: Stamp even when the database's tables do not match `revision`.

    Raises:
        MigrationError: The revision is unknown, services are above base, the database's
            tables and columns do not match `revision` (the message lists the differences),
            the database is ahead of this installation, or the stamp failed.
        ConfigurationError: The connection leads through a transaction pooler.
    """
    chain, target = split_target(revision)
    with migration_session(settings, "stamp", lock_timeout) as session:
        moves = (
            [(each, "heads") for each in all_chains()] if revision == "heads" else [(chain, target)]
        )
        refuse_when_ahead(session.settings, [each for each, _ in moves], "stamp")
        if revision != "heads" and chain.service is None:
            _refuse_with_services_above_base(session.settings, revision)
        if not force:
            differences = [
                line for each, to in moves for line in stamp_differences(session.settings, each, to)
            ]
            if differences:
                msg = (
                    f"the database's tables do not match {revision}, so stamping it would be a "
                    f"false record: {'; '.join(differences)} (use --force to stamp anyway)"
                )
                raise MigrationError(msg)
        for each, to in moves:
            session.run(each, command.stamp, to)
