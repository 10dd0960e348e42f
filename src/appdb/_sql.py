"""SQL helpers shared by the operations: dialect upserts, refreshed results, constraint names.

The operations build each statement once per shape (and dialect) with bound parameters, then
pass only the values: building a statement costs more than SQLAlchemy's cached execution.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, NoReturn, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from appdb import _direct
from appdb.exceptions import (
    AppDBError,
    ConcurrentUpdateError,
    ConfigurationError,
    InvalidInputError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from sqlalchemy.ext.asyncio import AsyncConnection
    from sqlalchemy.sql.selectable import TypedReturnsRows


__all__ = [
    "Query",
    "constraint_name",
    "core_execute",
    "dialect_name",
    "flush",
    "insert_or_explain",
    "only_row",
    "orm_session",
    "parameters",
    "retry_insert",
    "returning",
    "run",
    "run_async",
    "upsert_insert",
]

_T = TypeVar("_T")

# An INSERT that inserted nothing is explained by a second query; if that finds nothing wrong,
# a concurrent transaction changed the rows in between and the INSERT is tried again.
_ATTEMPTS = 3

# SQLite names the columns, not the constraint: "UNIQUE constraint failed: users.email".
_SQLITE_UNIQUE = re.compile(r"UNIQUE constraint failed: (?P<table>\w+)\.(?P<column>\w+)$")


def dialect_name(session: Session | sa.Connection | AsyncConnection) -> str:
    """The name of the session's database dialect, the key of dialect-specific statements.

    Args:
        session: The caller's session, or the connection of a `connection_scope` (or of an
            `async_connection_scope`).

    Returns:
        ``"postgresql"`` or ``"sqlite"``.

    Raises:
        ConfigurationError: The database is neither PostgreSQL nor SQLite.
    """
    bind = session.get_bind() if isinstance(session, Session) else session
    name = bind.dialect.name
    if name not in {"postgresql", "sqlite"}:
        msg = f"appdb supports PostgreSQL and SQLite, not {name}"
        raise ConfigurationError(msg)
    return name


def upsert_insert(dialect: str, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT with ``ON CONFLICT`` support; both dialects' have the same API.

    Args:
        dialect: What `dialect_name` returned.
        table: The table to insert into.

    Returns:
        The dialect's `Insert`.
    """
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


def parameters(*names: str) -> dict[str, sa.BindParameter[Any]]:
    """Bound parameters named after columns, for ``.values(**parameters(...))``.

    Args:
        *names: Column names; each parameter takes its column's type.

    Returns:
        A mapping of each name to a bound parameter of that name.
    """
    return {name: sa.bindparam(name) for name in names}


def returning(model: type[_T], statement: sa.Insert | sa.Update) -> TypedReturnsRows[_T]:
    """Load model instances from the rows an INSERT or UPDATE returns.

    The instances in the session's identity map are refreshed from those rows, so a caller
    holding one sees the new values.

    Args:
        model: The table model whose every column the statement returns.
        statement: The DML statement, without RETURNING.

    Returns:
        A statement for ``session.scalars(...)`` that yields instances of `model`.
    """
    table = sa.inspect(model).local_table
    loading = (
        sa.select(model)
        .from_statement(statement.returning(*table.c))
        .execution_options(populate_existing=True)
    )
    return cast("TypedReturnsRows[_T]", loading)


def insert_or_explain(
    session: Session,
    statement: TypedReturnsRows[_T],
    values: Mapping[str, Any],
    explain: Callable[[], AppDBError | None],
    found: Callable[[], _T | None] | None = None,
) -> _T:
    """Run an INSERT ... RETURNING that inserts nothing when it cannot, and say why.

    Such an INSERT (``ON CONFLICT DO NOTHING``, ``INSERT ... SELECT`` from the referenced rows)
    never makes the database raise, so the caller's transaction stays healthy and nothing
    else in it is lost.

    Args:
        session: The caller's session.
        statement: The INSERT, returning one model instance or nothing.
        values: Its parameters.
        explain: Called only when nothing was inserted: the error to raise, or ``None`` if
            nothing is wrong any more (a concurrent transaction got in the way).
        found: Called first when nothing was inserted: the stored row that this insert
            repeats (``ON CONFLICT DO NOTHING`` of an idempotent retry), or ``None``.

    Returns:
        The inserted row as a model instance, or what `found` returned.

    Raises:
        AppDBError: What `explain` (or `found`) found wrong.
        ConcurrentUpdateError: `explain` found nothing wrong on every attempt.
    """
    return retry_insert(lambda: session.scalars(statement, values).one_or_none(), explain, found)


def retry_insert(
    attempt: Callable[[], _T | None],
    explain: Callable[[], AppDBError | None],
    found: Callable[[], _T | None] | None = None,
) -> _T:
    """`insert_or_explain` for any way of running the INSERT (a Core statement, say).

    Args:
        attempt: Runs the INSERT once: the inserted row, or ``None`` if it inserted nothing.
        explain: As for `insert_or_explain`.
        found: As for `insert_or_explain`.

    Returns:
        The inserted row, or what `found` returned.

    Raises:
        AppDBError: What `explain` (or `found`) found wrong.
        ConcurrentUpdateError: `explain` found nothing wrong on every attempt.
    """
    for _ in range(_ATTEMPTS):
        row = attempt()
        if row is not None:
            return row
        stored = None if found is None else found()
        if stored is not None:
            return stored
        error = explain()
        if error is not None:
            raise error
    msg = "the rows this insert depends on keep changing; try again"
    raise ConcurrentUpdateError(msg)


def constraint_name(exc: IntegrityError) -> str | None:
    """The name of the constraint an `IntegrityError` reports, on PostgreSQL and SQLite.

    Args:
        exc: The error SQLAlchemy raised.

    Returns:
        The constraint's name under appdb's naming convention, or ``None`` if unknown.
    """
    # psycopg's diagnostics; asyncpg's error, which SQLAlchemy's adapter wraps, names it too.
    name = getattr(getattr(exc.orig, "diag", None), "constraint_name", None) or getattr(
        getattr(exc.orig, "__cause__", None), "constraint_name", None
    )
    if name:
        return str(name)
    if match := _SQLITE_UNIQUE.search(str(exc.orig)):
        return f"uq_{match['table']}_{match['column']}"
    return None


def flush(session: Session | sa.Connection) -> None:
    """Flush what is pending in a session before a statement of its own; a connection has none.

    Args:
        session: The caller's session, or the connection of a `connection_scope`.
    """
    if isinstance(session, Session):
        session.flush()


def orm_session(session: Session | sa.Connection, operation: str, option: str) -> Session:
    """`session` itself, for a form of `operation` that returns model instances.

    Args:
        session: The caller's session, or the connection of a `connection_scope`.
        operation: The operation's name, for the message.
        option: The keyword that asks for rows instead (``as_row=True``).

    Returns:
        The session.

    Raises:
        InvalidInputError: It is a connection, which has no ORM to make instances with.
    """
    if isinstance(session, Session):
        return session
    msg = (
        f"invalid argument session: {operation}() makes model instances only in a Session; "
        f"on a connection pass {option}"
    )
    raise InvalidInputError(msg)


def core_execute(
    session: Session | sa.Connection, statement: sa.Executable, values: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """Run a Core statement on the session's own connection, in its transaction.

    No ORM execution: no loading context, no identity map, no instances; on the driver's cursor
    when nobody watches the SQL (`appdb._direct`). The bind is chosen from the statement as the
    ORM would choose it, so a `RoutingSession` still sends a read to its replica and a write
    (and all after it) to the primary. A connection (`connection_scope`) runs it itself.

    Args:
        session: The caller's session, or the connection of a `connection_scope`.
        statement: A Core statement (built once, with bound parameters).
        values: Its parameters.

    Returns:
        Every row the statement returned, as a tuple.
    """
    if isinstance(session, Session):
        bind = session.get_bind(clause=statement)  # type: ignore[arg-type]
        connection = session.connection(bind_arguments={"bind": bind})
    else:
        connection = session
    return _direct.rows(connection, statement, values)


def only_row(rows: list[tuple[Any, ...]]) -> tuple[Any, ...] | None:
    """The one row of a statement that returns at most one, or ``None``.

    Args:
        rows: What `core_execute` returned.

    Returns:
        The row, or ``None`` if there is none.

    Raises:
        AppDBError: There was more than one row (a bug in the statement).
    """
    if len(rows) > 1:
        msg = f"expected at most one row, got {len(rows)}"
        raise AppDBError(msg)
    return rows[0] if rows else None


class Query(NamedTuple, Generic[_T]):
    """The one statement of a hot operation: its checked values, and what its rows make.

    The sync operations run it with `run`; `appdb.aio` awaits it on an async connection with
    `run_async` (on asyncpg's connection itself), so both share one definition of each. A named
    tuple: one is made per call, and on the hot path a dataclass costs more to make.
    """

    statement: sa.Executable
    values: dict[str, Any]
    result: Callable[[list[tuple[Any, ...]]], _T]
    explain: Callable[[IntegrityError], AppDBError | None] | None = None
    """The appdb error for an `IntegrityError` the statement raised, if it has one."""

    def raise_explained(self, exc: IntegrityError) -> NoReturn:
        """Raise the appdb error `explain` makes of `exc`, or `exc` itself if it makes none."""
        error = None if self.explain is None else self.explain(exc)
        if error is None:
            raise exc
        raise error from exc


def run(session: Session | sa.Connection, query: Query[_T]) -> _T:
    """Run `query` in the caller's session (or on a `connection_scope`'s connection).

    Args:
        session: The caller's session or connection.
        query: The statement and its values.

    Returns:
        What the query's rows make.
    """
    try:
        rows = core_execute(session, query.statement, query.values)
    except IntegrityError as exc:
        query.raise_explained(exc)
    return query.result(rows)


async def run_async(connection: AsyncConnection, query: Query[_T]) -> _T:
    """Run `query` on an async connection: on asyncpg's own, in its open transaction.

    Args:
        connection: The connection of an `async_connection_scope` (or any async connection).
        query: The statement and its values.

    Returns:
        What the query's rows make.
    """
    try:
        rows = await _direct.rows_async(connection, query.statement, query.values)
    except IntegrityError as exc:
        query.raise_explained(exc)
    return query.result(rows)
