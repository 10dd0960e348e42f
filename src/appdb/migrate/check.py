"""The drift check: does the migrated database match the models?

Alembic's comparison covers tables, columns, types, defaults, indexes and foreign keys, but
not CHECK constraints or partial-index predicates, and it sees uniqueness only partly on
SQLite. For those, `catalog_differences` builds the models' schema where the database itself
normalises it (temporary tables in a rolled-back savepoint on PostgreSQL, an in-memory
database on SQLite), reads both through the catalog and compares what the catalog says.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.pool import NullPool

from appdb.engine import create_engine
from appdb.migrate.autogenerate import include_name
from appdb.migrate.chains import all_chains, read_versions
from appdb.migrate.errors import translated_errors
from appdb.migrate.guard import verify_current
from appdb.migrate.skew import ahead_of
from appdb.models import metadata
from appdb.settings import get_settings

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.engine import Connection, Dialect

    from appdb.settings import DatabaseSettings

__all__ = [
    "CatalogSchema",
    "catalog_differences",
    "check",
    "read_catalog",
    "schema_differences",
]

_UNREFLECTABLE_INDEX = r".*expression-based index '?uq_users_username_lower"


def check(settings: DatabaseSettings | None = None) -> list[str]:
    """Compare the database (which must be at head) with the models.

    Args:
        settings: The database; `get_settings()` when omitted.

    Returns:
        One line per difference (a table, column, type, default, index, CHECK constraint,
        index predicate or unique constraint the migrations and models disagree on), with SQL
        expressions and type names as the database shows them; empty when they match. On a
        database a newer, compatible appdb has migrated, what it added (and these models
        lack) is not counted.

    Raises:
        SchemaOutOfDateError: The database is not at head, so the comparison would be moot.
        DatabaseUnavailableError: The database could not be reached.
    """
    settings = (settings or get_settings()).for_migrations(session_level=False)
    verify_current(settings, tables=False)  # a missing table is a difference to list
    engine = create_engine(settings, poolclass=NullPool)
    try:
        with translated_errors(settings, "compare the schema"), engine.connect() as conn:
            lines = schema_differences(conn)
            conn.rollback()
            chains = all_chains()
            if any(
                found.compatible
                for found in ahead_of(conn, chains, read_versions(conn, chains)).values()
            ):
                # A newer, compatible release added what these models lack: not drift.
                lines = [line for line in lines if not line.startswith("remove ")]
    finally:
        engine.dispose()
    return lines


def schema_differences(conn: Connection, target: sa.MetaData = metadata) -> list[str]:
    """Alembic's comparison and the catalog's, as readable lines, for one connection.

    Args:
        conn: A connection to the database to compare.
        target: The models' metadata.

    Returns:
        One line per difference; ``add`` means the models have it and the database does not,
        ``remove`` the reverse, ``modify`` that both have it differently (database -> models).
    """
    context = MigrationContext.configure(
        conn,
        opts={
            "compare_type": True,
            "compare_server_default": True,
            "include_name": include_name,
            "target_metadata": target,
        },
    )
    with warnings.catch_warnings():
        # SQLite cannot reflect (so Alembic cannot compare) the expression index on
        # lower(username); PostgreSQL compares it, and the catalog comparison sees it on both.
        warnings.filterwarnings("ignore", message=_UNREFLECTABLE_INDEX)
        found = compare_metadata(context, target)
    diffs = [diff for diff in found if not _uniqueness(diff)]
    lines = [_describe_diff(diff, conn.dialect) for diff in diffs]
    present = set(sa.inspect(conn).get_table_names())
    tables = sorted(name for name in target.tables if name in present)
    lines += catalog_differences(read_catalog(conn, tables), _model_catalog(conn, target, tables))
    return lines


@dataclass
class CatalogSchema:
    """What a database's catalog says about some tables' CHECKs, predicates and uniqueness."""

    checks: dict[tuple[str, str], str] = field(default_factory=dict)
    """(table, constraint name) -> the CHECK's expression, whitespace normalised."""
    predicates: dict[tuple[str, str], str | None] = field(default_factory=dict)
    """(table, index name) -> the index's WHERE expression, ``None`` for a full index."""
    unique: dict[tuple[str, tuple[str, ...]], str] = field(default_factory=dict)
    """(table, columns) -> the name of a unique constraint or unique index over them."""


def read_catalog(
    conn: Connection, tables: Iterable[str], schema: str | None = None
) -> CatalogSchema:
    """Read CHECK constraints, index predicates and uniqueness of `tables` from the catalog.

    Args:
        conn: The database.
        tables: The tables to read.
        schema: Their schema; the connection's default when ``None``.

    Returns:
        What the catalog says, in the database's own rendering of each expression.
    """
    with warnings.catch_warnings():
        # SQLite cannot reflect the expression index on lower(username); skipping it is known.
        warnings.filterwarnings("ignore", message=_UNREFLECTABLE_INDEX)
        return _read_catalog(sa.inspect(conn), conn.dialect.name, tables, schema)


def _read_catalog(
    inspector: sa.Inspector, dialect: str, tables: Iterable[str], schema: str | None
) -> CatalogSchema:
    found = CatalogSchema()
    for table in tables:
        for check_ in inspector.get_check_constraints(table, schema=schema):
            found.checks[table, str(check_["name"])] = _normalise(check_["sqltext"])
        for unique in inspector.get_unique_constraints(table, schema=schema):
            found.unique[table, tuple(unique["column_names"])] = str(unique["name"])
        for index in inspector.get_indexes(table, schema=schema):
            name = str(index["name"])
            where = index.get("dialect_options", {}).get(f"{dialect}_where")
            found.predicates[table, name] = None if where is None else _normalise(where)
            if index["unique"]:
                columns = tuple(str(column) for column in index["column_names"])
                found.unique.setdefault((table, columns), name)
    return found


def catalog_differences(database: CatalogSchema, models: CatalogSchema) -> list[str]:
    """Compare two catalogs' CHECKs, index predicates and uniqueness.

    Args:
        database: What the database has.
        models: What the models make.

    Returns:
        One readable line per difference, sorted.
    """
    lines: list[str] = []
    for key in sorted(database.checks.keys() | models.checks.keys()):
        table, name = key
        have, want = database.checks.get(key), models.checks.get(key)
        if have is None:
            lines.append(f"add check constraint {name} on {table}: CHECK ({want})")
        elif want is None:
            lines.append(f"remove check constraint {name} on {table}: CHECK ({have})")
        elif have != want:
            lines.append(f"modify check constraint {name} on {table}: {have} -> {want}")
    for key in sorted(database.predicates.keys() & models.predicates.keys()):
        table, name = key
        have_where, want_where = database.predicates[key], models.predicates[key]
        if have_where != want_where:
            lines.append(
                f"modify index predicate {name} on {table}: "
                f"{_where(have_where)} -> {_where(want_where)}"
            )
    for unique_key in sorted(database.unique.keys() ^ models.unique.keys()):
        table, columns = unique_key
        if unique_key in models.unique:
            kind, name = "add", models.unique[unique_key]
        else:
            kind, name = "remove", database.unique[unique_key]
        lines.append(f"{kind} unique {name} on {table} ({', '.join(columns)})")
    return lines


def _model_catalog(conn: Connection, target: sa.MetaData, tables: list[str]) -> CatalogSchema:
    """The catalog the models make, normalised by the same database engine."""
    subset = [target.tables[name] for name in tables]
    if conn.dialect.name == "postgresql":
        # A scratch schema in a transaction that is rolled back: nothing is left behind.
        # Temporary tables (TEMP is granted to everyone by default, CREATE on the database is
        # not) in a savepoint, so that this also runs inside the caller's transaction (`adopt`).
        savepoint = conn.begin_nested()
        try:
            # Undone with the savepoint; unqualified names now make temporary tables.
            conn.exec_driver_sql("SET LOCAL search_path TO pg_temp")
            target.create_all(conn, tables=subset)
            schema = conn.exec_driver_sql(
                "SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()"
            ).scalar_one()
            return read_catalog(conn, tables, schema=str(schema))
        finally:
            savepoint.rollback()
    engine = sa.create_engine(f"{conn.dialect.name}://", poolclass=NullPool)
    try:
        with engine.begin() as scratch_conn:
            target.create_all(scratch_conn, tables=subset)
            return read_catalog(scratch_conn, tables)
    finally:
        engine.dispose()


def _normalise(expression: object) -> str:
    """An expression's SQL with its whitespace collapsed."""
    text = expression.text if isinstance(expression, sa.TextClause) else str(expression)
    return re.sub(r"\s+", " ", text).strip()


def _where(expression: str | None) -> str:
    return "(no WHERE)" if expression is None else f"WHERE {expression}"


def _uniqueness(diff: Any) -> bool:
    """An Alembic diff about a unique constraint or index: `catalog_differences` covers those."""
    if isinstance(diff, list) or diff[0] not in {
        "add_constraint",
        "remove_constraint",
        "add_index",
        "remove_index",
    }:
        return False
    item = diff[1]
    return isinstance(item, sa.UniqueConstraint) or (
        isinstance(item, sa.Index) and bool(item.unique)
    )


def _sql(value: Any, dialect: Dialect) -> str:
    """A type, a server default or a plain value as SQL, not as a Python repr."""
    if value is None:
        return "none"
    if isinstance(value, sa.types.TypeEngine):
        return str(value.compile(dialect=dialect))
    if isinstance(value, sa.DefaultClause):
        value = value.arg
    if isinstance(value, sa.TextClause):
        return value.text
    if isinstance(value, sa.ClauseElement):
        return str(value.compile(dialect=dialect))
    return str(value)


def _describe_diff(diff: Any, dialect: Dialect) -> str:
    """Render one Alembic diff (a tuple, or a list of tuples for column changes) as a line."""
    if isinstance(diff, list):
        return "; ".join(_describe_diff(item, dialect) for item in diff)
    kind = diff[0]
    if kind.startswith("modify_"):
        _, _schema, table, column, _existing, old, new = diff
        what = kind.removeprefix("modify_")
        return f"modify {what} {table}.{column}: {_sql(old, dialect)} -> {_sql(new, dialect)}"
    if kind in {"add_column", "remove_column"}:
        _, _schema, table, column = diff
        return f"{kind.replace('_', ' ')} {table}.{column.name}"
    item = diff[1]
    table = getattr(item, "table", None)
    where = f" on {table.name}" if table is not None else ""
    return f"{kind.replace('_', ' ')} {getattr(item, 'name', item)}{where}"
