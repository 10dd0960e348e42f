"""What this installation makes of a database that other appdb versions migrate too.

A newer package may have moved a chain past the revisions installed here (`ahead`): the
contract it recorded (`appdb.compat`) says whether this version still works on it. A breaking
revision about to run checks who is connected that it would break (`refuse_breaking`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from alembic.util.exc import CommandError
from packaging.version import Version
from sqlalchemy.pool import NullPool

from appdb import compat
from appdb.clients import Client, clients_below, installed_versions
from appdb.engine import create_engine
from appdb.exceptions import MigrationError
from appdb.migrate.chains import Chain, all_chains, read_versions, script_directory
from appdb.migrate.errors import translated_errors
from appdb.settings import get_settings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.engine import Connection

    from appdb.settings import DatabaseSettings

__all__ = [
    "AheadChain",
    "ahead",
    "ahead_chain",
    "ahead_of",
    "local_version",
    "refuse_breaking",
    "refuse_when_ahead",
]


@dataclass(frozen=True)
class AheadChain:
    """A chain the database has moved past what this installation knows (a newer package ran)."""

    chain: str
    """``appdb`` or the service's name."""
    revisions: tuple[str, ...]
    """What the database is at."""
    contract: compat.Contract | None
    """What the database records about it; None when nothing matching is recorded."""
    local_version: str
    """This installation's version of the chain's package."""

    @property
    def compatible(self) -> bool:
        """Whether this installation's code works on the database as it is."""
        return self.contract is not None and self.contract.serves(Version(self.local_version))

    def describe(self) -> str:
        """One line for humans: where the database is, who put it there, what follows."""
        at = ", ".join(self.revisions)
        here = f"this {self.chain} {self.local_version}"
        if self.contract is None:
            return (
                f"{self.chain}: database is at {at}, which {here} does not know (the database "
                f"is ahead) and for which it records no compatibility: upgrade {self.chain}"
            )
        by = f"{self.chain} {self.contract.written_by}"
        if self.compatible:
            return f"{self.chain}: database is at {at} ({by}), compatible with {here}"
        return (
            f"{self.chain}: database is at {at} ({by}), which needs {self.chain} >= "
            f"{self.contract.min_version}; {here} is older (the database is ahead): upgrade "
            f"{self.chain}"
        )


def local_version(chain: Chain) -> str:
    """This installation's version of the package that ships `chain`."""
    return dict(installed_versions()).get(chain.label, "0")


def ahead_of(
    connection: Connection, chains: Sequence[Chain], recorded: Sequence[tuple[str, ...]]
) -> dict[str, AheadChain]:
    """The chains whose recorded revisions this installation does not know, by label."""
    found = {}
    for chain, revisions in zip(chains, recorded, strict=True):
        known = {item.revision for item in script_directory(chain).walk_revisions()}
        if not set(revisions) - known:
            continue
        contract = compat.read_contract(connection, chain.label)
        if contract is not None and contract.revision != ",".join(sorted(revisions)):
            contract = None  # written for another revision: not evidence about this one
        found[chain.label] = AheadChain(chain.label, revisions, contract, local_version(chain))
    return found


def ahead(settings: DatabaseSettings | None = None) -> list[AheadChain]:
    """The installed chains the database is ahead of: a newer appdb (or service) migrated it.

    Args:
        settings: The database; `get_settings()` when omitted.

    Returns:
        One entry per such chain; `AheadChain.compatible` says whether this installation
        can serve from it.

    Raises:
        DatabaseUnavailableError: The database could not be reached.
    """
    settings = (settings or get_settings()).for_migrations(session_level=False)
    chains = all_chains()
    engine = create_engine(settings, poolclass=NullPool)
    try:
        with translated_errors(settings, "read the current revision"), engine.connect() as conn:
            return list(ahead_of(conn, chains, read_versions(conn, chains)).values())
    finally:
        engine.dispose()


def ahead_chain(settings: DatabaseSettings, chain: Chain) -> AheadChain | None:
    """`chain` when the database is ahead of this installation on it, else None."""
    engine = create_engine(settings, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            recorded = read_versions(connection, [chain])
            return ahead_of(connection, [chain], recorded).get(chain.label)
    finally:
        engine.dispose()


def refuse_when_ahead(settings: DatabaseSettings, chains: Sequence[Chain], action: str) -> None:
    """Only a version that knows the database's revisions may stamp or downgrade it."""
    for chain in chains:
        found = ahead_chain(settings, chain)
        if found is None:
            continue
        writer = found.contract.written_by if found.contract else "a newer version"
        msg = (
            f"{found.describe()}; {action} needs the revisions it would move, so run it with "
            f"{chain.label} >= {writer}"
        )
        raise MigrationError(msg)


def _pending(chain: Chain, connection: Connection, target: str) -> list[compat.RevisionContract]:
    """The declarations of the revisions an upgrade of `chain` to `target` would run."""
    (current,) = read_versions(connection, [chain])
    script = script_directory(chain)
    try:
        scripts = list(script.iterate_revisions(target, current or "base"))
    except CommandError:
        return []  # Alembic reports a bad target itself, in the words users know
    except Exception:  # noqa: BLE001 - Alembic raises several types for an unknown target
        return []
    return [compat.contract_of(item, strict=False) for item in scripts if item is not None]


def refuse_breaking(settings: DatabaseSettings, chain: Chain, target: str) -> None:
    """Refuse a breaking revision while a session of a version it would break is connected."""
    engine = create_engine(settings, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            pending = _pending(chain, connection, target)
            local = Version(local_version(chain))
            for contract in pending:
                if contract.compatibility != "breaking":
                    continue
                floor = local if contract.since == compat.UNDECLARED_SINCE else contract.since
                older = clients_below(connection, chain.label, floor)
                if older:
                    raise _breaking_refused(chain, contract.revision, floor, older)
    finally:
        engine.dispose()


def _breaking_refused(
    chain: Chain, revision: str, floor: Version, clients: Sequence[Client]
) -> MigrationError:
    sessions = "; ".join(
        f"pid {client.pid} {client.application_name!r} from {client.host} "
        f"({chain.label} {client.versions[chain.label]})"
        for client in clients
    )
    msg = (
        f"revision {revision} is breaking: it needs {chain.label} >= {floor}, but "
        f"{len(clients)} session(s) on older versions are connected: {sessions}; upgrade or stop "
        "them first, or pass --allow-breaking (allow_breaking=True) to break them knowingly"
    )
    return MigrationError(msg)
