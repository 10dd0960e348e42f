"""Where the database is, where the installed migrations end, and the start-up guard.

`current`, `heads` and `at_heads` answer ``appdb-migrate current`` and ``heads``;
`ensure_schema_current` is what a service calls at start-up to refuse the wrong schema.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy.pool import NullPool

from appdb.engine import create_engine
from appdb.exceptions import SchemaOutOfDateError
from appdb.migrate.chains import Chain, all_chains, read_versions, script_directory
from appdb.migrate.errors import translated_errors
from appdb.migrate.skew import ahead_of
from appdb.migrate.tables import ensure_tables
from appdb.settings import get_settings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from appdb.settings import DatabaseSettings

__all__ = ["at_heads", "current", "ensure_schema_current", "heads", "verify_current"]

logger: logging.Logger = logging.getLogger("appdb")


def _heads_of(chains: Sequence[Chain]) -> list[tuple[str, ...]]:
    return [tuple(script_directory(chain).get_heads()) for chain in chains]


def _current_by_chain(
    settings: DatabaseSettings | None, chains: Sequence[Chain]
) -> list[tuple[str, ...]]:
    # A read needs no server session: through the pooler is fine when there is no direct URL.
    settings = (settings or get_settings()).for_migrations(session_level=False)
    engine = create_engine(settings, poolclass=NullPool)
    try:
        with translated_errors(settings, "read the current revision"), engine.connect() as conn:
            return read_versions(conn, chains)
    finally:
        engine.dispose()


def heads() -> tuple[str, ...]:
    """The head revisions: appdb's, then each registered service's (see `appdb.migrate.services`).

    Returns:
        Revision ids.
    """
    return tuple(revision for chain_heads in _heads_of(all_chains()) for revision in chain_heads)


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
    recorded = _current_by_chain(settings, all_chains())
    return tuple(revision for revisions in recorded for revision in revisions)


def _chain_problem(chain: Chain, actual: tuple[str, ...], expected: tuple[str, ...]) -> str:
    shown = ", ".join(actual) or "no revision (never migrated)"
    wanted = ", ".join(expected)
    known = {item.revision for item in script_directory(chain).walk_revisions()}
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
    Services installed elsewhere keep their versions in tables of their own. A chain that a
    newer package has moved on passes when the database records that it still serves this
    version (one line in the ``appdb`` log says so). Then one catalog query checks that every
    table and column the models use exists, so a version record alone cannot pass.

    Args:
        settings: The database; `get_settings()` when omitted.

    Returns:
        The revision(s) the database is at, comma-separated.

    Raises:
        SchemaOutOfDateError: A chain is behind (run ``appdb-migrate upgrade``) or ahead of
            the head installed here in a way this version cannot serve (the message names the
            version needed).
        SchemaMismatchError: A table or column the models use is missing.
        DatabaseUnavailableError: The database could not be reached.
    """
    return verify_current(settings, tables=True)


def verify_current(settings: DatabaseSettings | None, *, tables: bool) -> str:
    """`ensure_schema_current`, optionally without the table and column check (for `check`)."""
    chains = all_chains()
    expected = _heads_of(chains)
    settings = (settings or get_settings()).for_migrations(session_level=False)
    engine = create_engine(settings, poolclass=NullPool)
    try:
        with translated_errors(settings, "check the schema"), engine.connect() as connection:
            actual = read_versions(connection, chains)
            moved_on = ahead_of(connection, chains, actual)
            problems = []
            for chain, have, want in zip(chains, actual, expected, strict=True):
                found = moved_on.get(chain.label)
                if found is not None and found.compatible:
                    logger.info("%s", found.describe())
                elif found is not None:
                    problems.append(found.describe())
                elif sorted(have) != sorted(want):
                    problems.append(_chain_problem(chain, have, want))
            if problems:
                raise SchemaOutOfDateError("; ".join(problems))
            if tables:
                ensure_tables(connection)
    finally:
        engine.dispose()
    return ", ".join(revision for revisions in actual for revision in revisions)
