"""Schema contracts between appdb versions that share one database.

Services deploy separately, so for weeks a database is migrated by the newest appdb while
older ones keep serving from it. Every revision declares what it does to them, in two
module-level names next to ``revision``:

- ``compatibility``: ``"additive"`` (code built for the earlier revisions keeps working: a new
  table, a nullable or defaulted column, an index, a looser constraint) or ``"breaking"``
  (a drop, a rename, a type change, a new NOT NULL without default, a tighter constraint);
- ``since``: the version of the chain's package (appdb, or the service's distribution) that
  first ships the revision.

As revisions run, the table ``appdb_schema_contract`` records, per chain, the revision the
database is at and the oldest package version that can still use it (the ``since`` of the
newest breaking revision applied). It is written in the same transaction as each revision,
and it is plain enough for an older appdb, which knows none of the newer revisions, to read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

import sqlalchemy as sa
from packaging.version import InvalidVersion, Version

from appdb.clients import installed_versions
from appdb.exceptions import MigrationError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from alembic.runtime.migration import MigrationContext
    from alembic.script import Script, ScriptDirectory
    from sqlalchemy.engine import Connection

__all__ = [
    "APPDB_VERSION_TABLE",
    "CONTRACT_TABLE",
    "SERVICE_VERSION_TABLE_PREFIX",
    "UNDECLARED_SINCE",
    "Compatibility",
    "Contract",
    "RevisionContract",
    "chain_of_version_table",
    "contract_of",
    "floor_of",
    "read_contract",
    "record_contract",
    "version_policy_problems",
    "write_contract",
]

Compatibility = Literal["additive", "breaking"]
_COMPATIBILITIES: tuple[str, ...] = get_args(Compatibility)

logger: logging.Logger = logging.getLogger("appdb")

UNDECLARED_SINCE = Version("0")
"""The ``since`` of a revision that declares none: it serves no older version it knows of."""

_warned: set[str] = set()  # revision files already warned about, once per process

CONTRACT_TABLE = "appdb_schema_contract"
"""The record of each chain's revision and the oldest package version it still serves."""

_contract_metadata = sa.MetaData()
_contract = sa.Table(
    CONTRACT_TABLE,
    _contract_metadata,
    sa.Column("chain", sa.String(64), primary_key=True),
    sa.Column("revision", sa.String(255), nullable=False),
    sa.Column("min_version", sa.String(64), nullable=False),
    sa.Column("written_by", sa.String(64), nullable=False),
)


@dataclass(frozen=True)
class RevisionContract:
    """What one revision declares about the code that ran before it."""

    revision: str
    compatibility: Compatibility
    since: Version


@dataclass(frozen=True)
class Contract:
    """What the database records for one chain."""

    chain: str
    revision: str
    """The head revision(s) the chain is at, comma-separated."""
    min_version: Version
    """The oldest package version whose code works on this schema."""
    written_by: Version
    """The package version that ran the last revision."""

    def serves(self, version: Version) -> bool:
        """Whether code of `version` works on this schema."""
        return version >= self.min_version


def _version(value: object, what: str) -> Version:
    try:
        return Version(str(value))
    except InvalidVersion:
        msg = f"{what}: {value!r} is not a version"
        raise MigrationError(msg) from None


def contract_of(script: Script, *, strict: bool = True) -> RevisionContract:
    """Read the ``compatibility`` and ``since`` a revision file declares.

    Args:
        script: The revision, as Alembic's script directory holds it.
        strict: Raise on a missing or invalid declaration. Otherwise (when revisions run) an
            undeclared revision counts as breaking in `undeclared_since`, with a warning: a
            service chain written before contracts existed keeps working, conservatively.

    Returns:
        The declaration.

    Raises:
        MigrationError: The revision declares neither, or something invalid (`strict`).
    """
    module = script.module
    where = f"revision {script.revision} ({script.path})"
    compatibility = getattr(module, "compatibility", None)
    since = getattr(module, "since", None)
    problem = None
    if compatibility not in _COMPATIBILITIES:
        problem = (
            f"{where} must declare compatibility = 'additive' or 'breaking' "
            f"(found {compatibility!r}); see docs/deploying.md"
        )
    elif since is None:
        problem = f"{where} must declare since = '<the package version that first ships it>'"
    if problem is None:
        declared: Compatibility = "breaking" if compatibility == "breaking" else "additive"
        return RevisionContract(script.revision, declared, _version(since, f"{where}: since"))
    if strict:
        raise MigrationError(problem)
    if script.path not in _warned:
        _warned.add(script.path)
        logger.warning("%s; counted as breaking", problem)
    return RevisionContract(script.revision, "breaking", UNDECLARED_SINCE)


def floor_of(
    script_directory: ScriptDirectory, heads: Iterable[str], writer: Version | None = None
) -> Version:
    """The oldest package version that can use a database at `heads`.

    That is the ``since`` of the newest breaking revision among `heads` and their ancestors;
    a chain with no breaking revision serves everything since its first revision.

    Args:
        script_directory: The chain's revisions.
        heads: The revisions the database is at.
        writer: The version running the revisions: an undeclared revision counts as breaking
            in it (no older version is known to work).

    Returns:
        The version floor.
    """
    contracts = [
        contract_of(script, strict=False)
        for script in script_directory.iterate_revisions(tuple(heads), "base")
        if script is not None
    ]
    undeclared = writer or UNDECLARED_SINCE
    breaking = [
        undeclared if contract.since == UNDECLARED_SINCE else contract.since
        for contract in contracts
        if contract.compatibility == "breaking"
    ]
    if breaking:
        return max(breaking)
    return min((contract.since for contract in contracts), default=Version("0"))


def _series(version: Version) -> tuple[int, ...]:
    """What a breaking release must bump: the major, or before 1.0 the minor."""
    return (version.major,) if version.major >= 1 else (0, version.minor)


def version_policy_problems(
    contracts: Sequence[RevisionContract], package_version: Version
) -> list[str]:
    """Check a chain against the version policy; empty when it holds.

    The policy: revisions ship in non-decreasing versions; a breaking revision ships in a
    release that bumps the major version (before 1.0: the minor) over every earlier revision,
    so ``~=`` pins never cross it; an additive one may ship in a patch or minor release; the
    package is at least as new as every revision it ships.

    Args:
        contracts: The chain's declarations, oldest first.
        package_version: The version of the package that ships the chain.

    Returns:
        One line per violation.
    """
    problems = []
    shipped: list[Version] = []
    for contract in contracts:
        newest = max(shipped, default=None)
        # Earlier releases only: two breaking revisions may ship in the same release.
        before = max((since for since in shipped if since < contract.since), default=None)
        if newest is not None and contract.since < newest:
            problems.append(
                f"{contract.revision} says since {contract.since}, older than {newest} of an "
                "earlier revision"
            )
        elif (
            before is not None
            and contract.compatibility == "breaking"
            and _series(contract.since) <= _series(before)
        ):
            bump = "major" if contract.since.major >= 1 else "minor (before 1.0)"
            problems.append(
                f"{contract.revision} is breaking but ships in {contract.since}, the same "
                f"series as {before}: a breaking revision needs a {bump} version bump"
            )
        shipped.append(contract.since)
    newest = max(shipped, default=None)
    if newest is not None and package_version < newest:
        problems.append(f"the package is {package_version} but a revision says since {newest}")
    return problems


def write_contract(
    context: MigrationContext,
    chain: str,
    heads: Iterable[str],
    script_directory: ScriptDirectory,
    writer: Version,
) -> None:
    """Record a chain's revision and floor, in the transaction of the revision just run.

    Works online and in offline (``--sql``) mode, on PostgreSQL and SQLite.

    Args:
        context: Alembic's migration context (``on_version_apply``'s ``ctx``).
        chain: ``appdb`` or the service's name.
        heads: The chain's heads after the revision.
        script_directory: The chain's revisions.
        writer: The version of the package that ran it.
    """
    at = sorted(heads)
    impl = context.impl
    impl.execute(sa.schema.CreateTable(_contract, if_not_exists=True))
    impl.execute(_contract.delete().where(_contract.c.chain == chain))
    if not at:
        # Back at base: leave no trace once no chain is recorded any more.
        connection = None if context.as_sql else context.connection
        if (
            connection is not None
            and connection.scalar(sa.select(sa.func.count()).select_from(_contract)) == 0
        ):
            impl.execute(sa.schema.DropTable(_contract))
        return
    impl.execute(
        _contract.insert().values(
            chain=chain,
            revision=",".join(at),
            min_version=str(floor_of(script_directory, at, writer)),
            written_by=str(writer),
        )
    )


APPDB_VERSION_TABLE = "alembic_version"
SERVICE_VERSION_TABLE_PREFIX = "alembic_version_"


def chain_of_version_table(version_table: str) -> str:
    """``appdb`` for appdb's version table, the service's name for ``alembic_version_<name>``."""
    if version_table == APPDB_VERSION_TABLE:
        return "appdb"
    return version_table.removeprefix(SERVICE_VERSION_TABLE_PREFIX)


def record_contract(*, ctx: MigrationContext, heads: Iterable[str], **_: object) -> None:
    """An Alembic ``on_version_apply`` callback that keeps `CONTRACT_TABLE` current.

    ``migrations/env.py`` installs it for every chain, online and offline.

    Args:
        ctx: The migration context of the chain being migrated.
        heads: Its heads after the revision just applied (or undone, or stamped).
        **_: Alembic's other arguments.
    """
    script_directory = ctx.script
    if script_directory is None:
        return
    chain = chain_of_version_table(ctx.version_table)
    writer = dict(installed_versions()).get(chain, "0")
    write_contract(ctx, chain, heads, script_directory, Version(writer))


def read_contract(connection: Connection, chain: str) -> Contract | None:
    """What the database records for `chain`; None before any revision recorded one.

    Args:
        connection: A connection to the database.
        chain: ``appdb`` or the service's name.

    Returns:
        The contract, or None.
    """
    if not sa.inspect(connection).has_table(CONTRACT_TABLE):
        return None
    row = connection.execute(
        sa.select(_contract.c.revision, _contract.c.min_version, _contract.c.written_by).where(
            _contract.c.chain == chain
        )
    ).first()
    if row is None:
        return None
    return Contract(
        chain=chain,
        revision=row.revision,
        min_version=_version(row.min_version, f"{CONTRACT_TABLE}.min_version"),
        written_by=_version(row.written_by, f"{CONTRACT_TABLE}.written_by"),
    )
