"""The tables and columns a database has, against what the migrations or the models make.

A version record alone proves nothing (``stamp`` writes one on any database): `ensure_tables`
checks the models' tables and columns with one catalog query at start-up, and
`stamp_differences` compares the database with a scratch SQLite built by the migrations.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import command
from sqlalchemy.pool import NullPool

from appdb import compat
from appdb.engine import create_engine
from appdb.exceptions import SchemaMismatchError
from appdb.migrate.chains import (
    APPDB_VERSION_TABLE,
    Chain,
    appdb_chain,
    chain_config,
    serverless_settings,
)
from appdb.models import metadata

if TYPE_CHECKING:
    from collections.abc import Set as AbstractSet

    from sqlalchemy.engine import Connection

    from appdb.settings import DatabaseSettings

__all__ = [
    "chain_tables",
    "columns",
    "ensure_tables",
    "rows_lost_at_base",
    "stamp_differences",
    "table_differences",
]

_BOOKKEEPING = frozenset({compat.CONTRACT_TABLE})


def columns(connection: Connection) -> dict[str, set[str]]:
    """Every table of the database (its current schema) and its columns, in one query."""
    if connection.dialect.name == "sqlite":
        query = (
            "SELECT m.name, p.name FROM sqlite_master AS m JOIN pragma_table_info(m.name) AS p "
            "WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'"
        )
    else:
        query = (
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema()"
        )
    tables: dict[str, set[str]] = {}
    for table, column in connection.exec_driver_sql(query):
        tables.setdefault(str(table), set()).add(str(column))
    return tables


def chain_tables(chain: Chain, target: str) -> dict[str, set[str]]:
    """The tables and columns the migrations create up to `target`, on a scratch SQLite file.

    For a service's chain, appdb's tables are included (its revisions need them).
    """
    with tempfile.TemporaryDirectory(prefix="appdb-stamp-") as folder:
        scratch = serverless_settings(f"sqlite:///{Path(folder) / 'scratch.sqlite3'}")
        command.upgrade(chain_config(appdb_chain(), scratch), "heads" if chain.service else target)
        if chain.service is not None:
            command.upgrade(chain_config(chain, scratch), target)
        engine = create_engine(scratch, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                found = columns(connection)
        finally:
            engine.dispose()
    return {
        table: columns
        for table, columns in found.items()
        if table not in _BOOKKEEPING and not table.startswith(APPDB_VERSION_TABLE)
    }


def stamp_differences(settings: DatabaseSettings, chain: Chain, target: str) -> list[str]:
    """How the database's tables differ from what `chain`'s migrations make at `target`."""
    if target == "base":
        return []
    expected = chain_tables(chain, target)
    at_head = chain_tables(chain, "heads")
    if chain.service is not None:
        appdb_tables = chain_tables(appdb_chain(), "heads")
        expected = {name: cols for name, cols in expected.items() if name not in appdb_tables}
        at_head = {name: cols for name, cols in at_head.items() if name not in appdb_tables}
    engine = create_engine(settings, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            actual = columns(connection)
    finally:
        engine.dispose()
    return table_differences(expected, actual, later=set(at_head) - set(expected))


def table_differences(
    expected: dict[str, set[str]],
    actual: dict[str, set[str]],
    *,
    later: AbstractSet[str] = frozenset(),
) -> list[str]:
    """One line per missing table or column, unexpected column, or too-early table."""
    lines = []
    for table, columns in sorted(expected.items()):
        if table not in actual:
            lines.append(f"table {table} is missing")
            continue
        if missing := sorted(columns - actual[table]):
            lines.append(f"{table} lacks column(s) {', '.join(missing)}")
        if extra := sorted(actual[table] - columns):
            lines.append(f"{table} has unexpected column(s) {', '.join(extra)}")
    lines.extend(
        f"table {table} exists but a later revision creates it"
        for table in sorted(later & set(actual))
    )
    return lines


def ensure_tables(connection: Connection) -> None:
    """Raise `SchemaMismatchError` unless every model table and column exists."""
    wanted = {
        table.name: {column.name for column in table.columns} for table in metadata.tables.values()
    }
    actual = columns(connection)
    missing = [line for line in table_differences(wanted, actual) if "unexpected" not in line]
    if missing:
        msg = (
            f"the database's schema lacks what this appdb uses: {'; '.join(missing)}; "
            "its version record says otherwise (stamped by hand, or changed outside the "
            "migrations): compare with `appdb-migrate check`"
        )
        raise SchemaMismatchError(msg)


def rows_lost_at_base(settings: DatabaseSettings, chain: Chain) -> list[str]:
    """What taking `chain` to base would drop that holds rows: ``"users (1000 rows)"``.

    Args:
        settings: The database.
        chain: appdb's chain or a service's.

    Returns:
        One entry per table with rows, in name order; empty when nothing would be lost.
    """
    owned = set(chain_tables(chain, "heads"))
    if chain.service is not None:
        owned -= set(chain_tables(appdb_chain(), "heads"))
    engine = create_engine(settings, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            present = sorted(owned & set(columns(connection)))
            counts = {
                table: connection.execute(
                    sa.select(sa.func.count()).select_from(sa.table(table))
                ).scalar_one()
                for table in present
            }
    finally:
        engine.dispose()
    return [f"{table} ({count} rows)" for table, count in counts.items() if count]
