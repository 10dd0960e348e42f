"""SQL helpers shared by the operations: dialect upserts, refreshed results, constraint names."""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.dialects import postgresql, sqlite

from appdb.exceptions import AppDBError, ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from sqlalchemy.exc import IntegrityError
    from sqlalchemy.orm import Session
    from sqlalchemy.sql.selectable import TypedReturnsRows

    from appdb.models import AppDBModel

__all__ = ["REFRESH", "constraint_name", "dialect_insert", "insert_or_explain"]

_T = TypeVar("_T")

REFRESH: Mapping[str, Any] = MappingProxyType({"populate_existing": True})
"""Execution options that overwrite the identity map's copy with the row the statement returned."""

# An INSERT that inserted nothing is explained by a second query; if that finds nothing wrong,
# a concurrent transaction changed the rows in between and the INSERT is tried again.
_ATTEMPTS = 3

# SQLite names the columns, not the constraint: "UNIQUE constraint failed: users.email".
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (?P<table>\w+)\.(?P<column>\w+)$")


def dialect_insert(session: Session, model: type[AppDBModel]) -> postgresql.Insert | sqlite.Insert:
    """An INSERT with ``ON CONFLICT`` support for the session's database.

    Args:
        session: The session whose bind decides the dialect.
        model: The table model to insert into.

    Returns:
        The dialect's `Insert`; both have the same upsert API.

    Raises:
        ConfigurationError: The database is neither PostgreSQL nor SQLite.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model)
    if dialect == "sqlite":
        return sqlite.insert(model)
    msg = f"appdb supports PostgreSQL and SQLite, not {dialect}"
    raise ConfigurationError(msg)


def insert_or_explain(
    session: Session,
    statement: TypedReturnsRows[_T],
    explain: Callable[[], AppDBError | None],
) -> _T:
    """Run an INSERT ... RETURNING that inserts nothing when it cannot, and say why.

    Such an INSERT (``ON CONFLICT DO NOTHING``, ``INSERT ... SELECT`` from the referenced rows)
    never makes the database raise, so the caller's transaction stays healthy and nothing
    else in it is lost.

    Args:
        session: The caller's session.
        statement: The INSERT, returning one model instance or nothing.
        explain: Called only when nothing was inserted: the error to raise, or ``None`` if
            nothing is wrong any more (a concurrent transaction got in the way).

    Returns:
        The inserted row as a model instance.

    Raises:
        AppDBError: What `explain` found wrong.
    """
    for _ in range(_ATTEMPTS):
        row = session.scalars(statement, execution_options=REFRESH).one_or_none()
        if row is not None:
            return row
        error = explain()
        if error is not None:
            raise error
    msg = "the rows this insert depends on keep changing; try again"
    raise AppDBError(msg)


def constraint_name(exc: IntegrityError) -> str | None:
    """The name of the constraint an `IntegrityError` reports, on PostgreSQL and SQLite.

    Args:
        exc: The error SQLAlchemy raised.

    Returns:
        The constraint's name under appdb's naming convention, or ``None`` if unknown.
    """
    name = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
    if name:
        return str(name)
    if match := _SQLITE_UNIQUE.search(str(exc.orig)):
        return f"uq_{match['table']}_{match['column']}"
    return None
