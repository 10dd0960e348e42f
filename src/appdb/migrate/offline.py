"""Offline SQL: the script an upgrade or downgrade would run, rendered without a server."""

from __future__ import annotations

import io

from alembic import command

from appdb.migrate.chains import all_chains, chain_config, serverless_settings, split_target
from appdb.migrate.errors import translated_errors

__all__ = ["offline_sql"]


def offline_sql(revision: str, *, downgrade: bool = False) -> str:
    """Render the SQL of an upgrade or downgrade without a server (PostgreSQL dialect).

    Args:
        revision: ``heads`` (appdb's chain, then every service's), a target or ``FROM:TO``
            of appdb's chain, or ``service@...`` for a service's chain; a downgrade without
            ``FROM:`` starts from that chain's heads.
        downgrade: Render the downgrade instead.

    Returns:
        The SQL script. It starts with the ``SET lock_timeout`` the online path sets
        (``DATABASE_DDL_LOCK_TIMEOUT``), so the script piped to psql behind a long
        transaction gives up instead of queueing every later query on the table behind it.

    Raises:
        MigrationError: The revision range is not valid.
    """
    buffer = io.StringIO()
    settings = serverless_settings("postgresql://offline/appdb")
    if settings.ddl_lock_timeout:
        # Session-wide and ahead of every chain's BEGIN, as migrations/env.py does online.
        buffer.write(f"SET lock_timeout = {int(settings.ddl_lock_timeout)};\n\n")
    chain, target = split_target(revision)
    chains = all_chains() if revision == "heads" and not downgrade else (chain,)
    if downgrade and ":" not in target:
        target = f"heads:{target}"
    with translated_errors(settings, "render SQL"):
        for each in chains:
            config = chain_config(each, settings, stdout=buffer)
            config.output_buffer = buffer
            if downgrade:
                command.downgrade(config, target, sql=True)
            else:
                command.upgrade(config, target, sql=True)
    return buffer.getvalue()
