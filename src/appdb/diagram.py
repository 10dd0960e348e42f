"""Pictures of the data model: a Mermaid ER diagram or plain text, from `appdb.metadata`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import UniqueConstraint
from sqlalchemy.dialects import postgresql

from appdb.migrate.services import service_migrations
from appdb.models import metadata as default_metadata

if TYPE_CHECKING:
    from sqlalchemy import Column, MetaData, Table

__all__ = ["render_mermaid", "render_text"]

_POSTGRESQL = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]  # untyped in SQLAlchemy


def _with_services() -> MetaData:
    """Return appdb's metadata once every registered service's models have joined it."""
    service_migrations()
    return default_metadata


def _sql_type(column: Column[object]) -> str:
    """The column's type as PostgreSQL, the production database, spells it."""
    try:
        return str(column.type.compile(dialect=_POSTGRESQL))
    except Exception:  # noqa: BLE001 - a type PostgreSQL cannot render
        return type(column.type).__name__


def _mermaid_type(column: Column[object]) -> str:
    # Mermaid attribute types are single words.
    return "".join(c if c.isalnum() else "_" for c in _sql_type(column)).strip("_")


def _keys(table: Table, column: Column[object]) -> str:
    keys = []
    if column.primary_key:
        keys.append("PK")
    if column.foreign_keys:
        keys.append("FK")
    if any(
        isinstance(constraint, UniqueConstraint) and list(constraint.columns) == [column]
        for constraint in table.constraints
    ):
        keys.append("UK")
    return ", ".join(keys)


def render_mermaid(metadata: MetaData | None = None) -> str:
    """Render the tables as a Mermaid ``erDiagram`` (paste into a README or a pull request).

    Args:
        metadata: The tables to draw; appdb's (with registered service tables) by default.

    Returns:
        The diagram source.
    """
    metadata = metadata or _with_services()
    lines = ["erDiagram"]
    for table in metadata.sorted_tables:
        lines.append(f"    {table.name} {{")
        for column in table.columns:
            keys = _keys(table, column)
            lines.append(
                f"        {_mermaid_type(column)} {column.name}{' ' + keys if keys else ''}"
            )
        lines.append("    }")
    for table in metadata.sorted_tables:
        for foreign_key in sorted(table.foreign_keys, key=lambda fk: fk.parent.name):
            cardinality = "|o--o{" if foreign_key.parent.nullable else "||--o{"
            target = foreign_key.column.table.name
            lines.append(f'    {target} {cardinality} {table.name} : "{foreign_key.parent.name}"')
    return "\n".join(lines) + "\n"


def render_text(metadata: MetaData | None = None) -> str:
    """Render the tables as plain text: one block per table, one line per column.

    Args:
        metadata: The tables to describe; appdb's (with registered service tables) by default.

    Returns:
        The description.
    """
    metadata = metadata or _with_services()
    blocks = []
    for table in metadata.sorted_tables:
        lines = [table.name]
        for column in table.columns:
            null = "" if column.nullable else " NOT NULL"
            keys = _keys(table, column)
            refs = "".join(f" -> {fk.target_fullname}" for fk in column.foreign_keys)
            marks = f" [{keys}]" if keys else ""
            lines.append(f"  {column.name}: {_sql_type(column)}{null}{refs}{marks}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"
