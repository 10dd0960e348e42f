"""The hot Core statements run on the driver's cursor, in the session's own transaction.

SQLAlchemy's execution of a cached Core statement still builds an execution context, looks the
statement up in the compiled cache, runs the statement's parameters and results through its
result machinery and dispatches events: about a third of the Python work of a one-row touch on
PostgreSQL. Here a statement is compiled once per dialect into a `Plan` (SQL text, the
parameters' defaults and bind processors, the columns' result processors), and each call does
only what is left: the values through the bind processors, ``dialect.do_execute`` on a cursor of
the session's connection, the rows through the result processors.

What appdb guarantees holds because the same parts run:

- ``dialect.do_execute`` is the call `appdb._deadline` guards (``DATABASE_CLIENT_TIMEOUT``);
- an error goes through SQLAlchemy's own ``Connection._handle_dbapi_exception``: the
  ``handle_error`` listeners of `appdb._errors` translate it, a lost connection is invalidated;
- the connection comes from ``session.connection()``: the transaction, ``SET LOCAL`` behind
  PgBouncer and the replica routing are the session's.

Whenever someone watches the SQL (``DATABASE_ECHO``, the ``sqlalchemy.engine`` logger at INFO,
any execute or cursor-execute event listener) or the connection has a ``schema_translate_map``,
the statement runs through SQLAlchemy as before, so that what they see is complete.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from appdb._deadline import arm, disarm

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

    import sqlalchemy as sa
    from sqlalchemy.engine import Connection, Dialect
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = [
    "AsyncUnit",
    "Plan",
    "asyncpg_in_transaction",
    "awaited",
    "open_async_unit",
    "plan_for",
    "rows",
    "rows_async",
]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Plan:
    """A statement compiled for one dialect, with what executing it needs beyond the SQL."""

    sql: str
    keys: frozenset[str]
    positional: tuple[str, ...] | None
    required: frozenset[str]
    fixed: Mapping[str, Any]
    binds: tuple[tuple[str, Callable[[Any], Any]], ...]
    returns_rows: bool
    results: tuple[tuple[int, Callable[[Any], Any]], ...]

    def parameters(self, values: Mapping[str, Any]) -> Any:
        """The driver's parameters: defaults, then `values`, through the bind processors."""
        merged = {**self.fixed, **values}
        for name, process in self.binds:
            merged[name] = process(merged[name])
        if self.positional is None:
            return merged
        return [merged[name] for name in self.positional]

    def processed(self, fetched: Sequence[Any]) -> list[tuple[Any, ...]]:
        """The fetched rows through the result processors."""
        if not self.results:
            return [tuple(row) for row in fetched]  # asyncpg's are Records
        rows = []
        for row in fetched:
            values = list(row)
            for index, process in self.results:  # only the columns that have one: a few
                values[index] = process(values[index])
            rows.append(tuple(values))
        return rows


# Each dialect keeps its plans (by statement identity) for as long as it lives; statements are
# built once per shape by the operations, so there are a handful. None: the statement has none.
_PLANS = "_appdb_direct_plans"
_plans_lock = threading.Lock()


def plan_for(statement: sa.Executable, dialect: Dialect, keys: Iterable[str] = ()) -> Plan | None:
    """The cached plan of `statement` for `dialect`, or ``None`` if it needs SQLAlchemy.

    Args:
        statement: A Core statement built once (the cache holds it by identity).
        dialect: The connection's dialect.
        keys: The names of the values it is executed with: SQLAlchemy compiles an INSERT or
            UPDATE for them, so a plan serves only calls with the same names.

    Returns:
        The plan, or ``None`` for a statement with expanding or literal-execute parameters,
        escaped parameter names, or column defaults computed in Python.
    """
    plans: dict[int, tuple[sa.Executable, Plan | None]] | None = getattr(dialect, _PLANS, None)
    if plans is None:
        with _plans_lock:
            plans = dialect.__dict__.setdefault(_PLANS, {})
    cached = plans.get(id(statement))
    if cached is not None and cached[0] is statement:
        return cached[1]
    plan = _compile(statement, dialect, frozenset(keys))
    plans[id(statement)] = (statement, plan)
    return plan


def _compile(statement: sa.Executable, dialect: Dialect, keys: frozenset[str]) -> Plan | None:
    compiled: Any = statement.compile(  # type: ignore[attr-defined]
        dialect=dialect, column_keys=sorted(keys)
    )
    if compiled.literal_execute_params or compiled.post_compile_params:
        return None
    if getattr(compiled, "escaped_bind_names", None):
        return None
    fixed: dict[str, Any] = {}
    for column in (*compiled.insert_prefetch, *compiled.update_prefetch):
        default = column.default if column in compiled.insert_prefetch else column.onupdate
        if default is None or not default.is_scalar:
            return None
        fixed[column.key] = default.arg
    required: set[str] = set()
    binds: dict[str, Callable[[Any], Any]] = {}
    for bind, name in compiled.bind_names.items():
        if bind.required:
            required.add(name)
        elif name not in fixed:
            if bind.callable is not None:
                return None
            fixed[name] = bind.value
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            binds[name] = process  # once per name, however often the statement uses it
    columns = tuple(getattr(statement, "exported_columns", ()))
    processors = [
        column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
    ]
    positional = tuple(compiled.positiontup) if compiled.positional else None
    return Plan(
        sql=compiled.string,
        keys=keys,
        positional=positional,
        required=frozenset(required - fixed.keys()),
        fixed=fixed,
        binds=tuple(binds.items()),
        returns_rows=bool(columns),
        results=tuple(
            (index, process) for index, process in enumerate(processors) if process is not None
        ),
    )


def _watched(connection: Connection) -> bool:
    """Whether someone sees the SQL this connection runs: echo, logging or event listeners."""
    if connection._echo:  # noqa: SLF001 - SQLAlchemy's own per-connection flag
        return True
    # A connection's dispatch joins its own listeners to its engine's (and the Engine class's),
    # and is new with every connection: reading an event from it builds the joined listener
    # (several µs per unit of work). A listener added to the connection itself (or to the
    # Connection class) sets its _has_events; without one the engine's dispatch says it all.
    local = connection._has_events  # noqa: SLF001 - set by SQLAlchemy's event.listen
    dispatch: Any = connection.dispatch if local else connection.engine.dispatch
    return bool(
        dispatch.before_execute
        or dispatch.after_execute
        or dispatch.before_cursor_execute
        or dispatch.after_cursor_execute
        or connection.get_execution_options().get("schema_translate_map")
    )


def _plan(
    connection: Connection, statement: sa.Executable, values: Mapping[str, Any]
) -> Plan | None:
    """The plan to run `statement` with `values` directly, or ``None``: SQLAlchemy runs it.

    ``None`` for an invalidated connection, SQL someone watches, a statement with no plan, or
    values other than the names its plan was compiled for.
    """
    if connection.invalidated or _watched(connection):
        return None
    plan = plan_for(statement, connection.dialect, values.keys())
    if plan is None or values.keys() != plan.keys or not plan.required <= plan.keys:
        return None
    return plan


def rows(
    connection: Connection, statement: sa.Executable, values: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """Run `statement` on `connection` and return all its rows (none for a DML without RETURNING).

    Args:
        connection: The session's connection, in its transaction.
        statement: A Core statement built once, with bound parameters.
        values: Its parameters.

    Returns:
        The rows, as tuples of processed values (what SQLAlchemy's result would hold).
    """
    plan = _plan(connection, statement, values)
    if plan is None:
        return [tuple(row) for row in connection.execute(statement, values)]
    dialect: Any = connection.dialect
    cursor = None
    parameters: Any = values
    try:
        parameters = plan.parameters(values)
        cursor = connection.connection.cursor()
        dialect.do_execute(cursor, plan.sql, parameters, None)
        # psycopg builds `cursor.description` anew on every access: the plan knows instead.
        fetched = cursor.fetchall() if plan.returns_rows else ()
        cursor.close()
    except BaseException as exc:  # noqa: BLE001 - re-raised by SQLAlchemy, as its execute does
        # SQLAlchemy's own handling: handle_error listeners, invalidation, the cursor closed.
        connection._handle_dbapi_exception(exc, plan.sql, parameters, cursor, None)  # noqa: SLF001
    return plan.processed(fetched)


# --- asyncio: statements awaited on asyncpg's own connection ---------------------------------
#
# SQLAlchemy's asyncio layer runs each call in a new greenlet, which on CPython 3.11 maps and
# unmaps a fresh frame stack: more than the statement's own client time. The async unit of
# work (`appdb.session.async_connection_scope`) therefore awaits asyncpg's connection itself
# for its transaction and the hot statements; SQLAlchemy still checks the connection out,
# translates errors (``handle_error``) and invalidates a lost connection, as for `rows`.


def asyncpg_in_transaction(connection: Connection | None) -> Any:
    """The asyncpg connection under `connection`, if a transaction is open on it; else ``None``.

    Args:
        connection: An async connection's ``sync_connection``.

    Returns:
        asyncpg's connection, or ``None`` (another driver, closed, or no transaction yet).
    """
    if connection is None or connection.invalidated or connection.dialect.driver != "asyncpg":
        return None
    driver: Any = connection.connection.driver_connection
    return driver if driver.is_in_transaction() else None


async def awaited(connection: Connection, driver: Any, call: Awaitable[_T], sql: str) -> _T:
    """Await `call` on asyncpg's connection under the engine's deadline; errors as SQLAlchemy's.

    Args:
        connection: The async connection's ``sync_connection``.
        driver: asyncpg's connection under it.
        call: The awaitable asyncpg returned (a statement, BEGIN, COMMIT ...).
        sql: The SQL, for the error SQLAlchemy raises.

    Returns:
        What `call` returned.
    """
    token = arm(connection.dialect, driver)
    try:
        return await call
    except Exception as exc:  # noqa: BLE001 - re-raised by SQLAlchemy, translated
        _reraise(connection, exc, sql)
    finally:
        disarm(token)


def _reraise(connection: Connection, exc: Exception, sql: str) -> NoReturn:
    """Raise `exc` as SQLAlchemy would have: its DBAPI error, ``handle_error``, invalidation."""
    adapter: Any = connection.connection.dbapi_connection
    try:
        # SQLAlchemy's asyncpg adapter makes asyncpg's errors its DBAPI module's.
        adapter._handle_exception(exc)  # noqa: SLF001 - raises; no public spelling
    except Exception as dbapi_error:  # noqa: BLE001 - handed to SQLAlchemy, which raises
        connection._handle_dbapi_exception(dbapi_error, sql, (), None, None)  # noqa: SLF001
    raise exc  # pragma: no cover - _handle_exception always raises


async def rows_async(
    connection: AsyncConnection, statement: sa.Executable, values: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """`rows` for an async connection: awaited on asyncpg in its open transaction.

    Otherwise (another driver, no transaction opened yet, someone watching the SQL, no plan)
    the statement runs through SQLAlchemy in its greenlet, which begins a transaction (on
    asyncpg, a savepoint in the one already open) where none is.

    Args:
        connection: The async connection.
        statement: A Core statement built once, with bound parameters.
        values: Its parameters.

    Returns:
        The rows, as tuples of processed values.
    """
    sync = connection.sync_connection
    driver = asyncpg_in_transaction(sync)
    plan = None if driver is None or sync is None else _plan(sync, statement, values)
    if plan is None or sync is None:
        return await connection.run_sync(rows, statement, values)
    parameters = plan.parameters(values)
    fetched = await awaited(sync, driver, driver.fetch(plan.sql, *parameters), plan.sql)
    return plan.processed(fetched)


class AsyncUnit:
    """An async connection and the transaction of a unit of work on it (`open_async_unit`).

    On asyncpg the transaction is asyncpg's own, begun and ended by awaiting asyncpg's
    connection (with PgBouncer mode's ``SET LOCAL`` after its BEGIN); what SQLAlchemy runs on
    the connection meanwhile (Core, an ORM session, a statement watched by a listener) is in a
    savepoint of it that SQLAlchemy begins and that `commit` releases first. Elsewhere
    (aiosqlite, or an engine with ``begin`` listeners other than appdb's) it is SQLAlchemy's
    transaction.
    """

    def __init__(self, connection: AsyncConnection, transaction: Any) -> None:
        """Hold `connection` and `transaction` (asyncpg's, or ``None`` for SQLAlchemy's)."""
        self.connection = connection
        self._transaction = transaction

    async def commit(self) -> None:
        """Commit SQLAlchemy's savepoint or transaction, then asyncpg's transaction."""
        sync = self.connection.sync_connection
        if sync is not None and sync.in_transaction():
            await self.connection.commit()
        if self._transaction is not None and sync is not None:
            driver = sync.connection.driver_connection
            await awaited(sync, driver, self._transaction.commit(), "COMMIT")

    async def rollback(self) -> None:
        """Roll everything back; a connection that cannot be rolled back is discarded.

        Called while an error propagates, so it raises nothing of its own.
        """
        sync = self.connection.sync_connection
        if sync is None or sync.invalidated:
            return
        try:
            if sync.in_transaction():
                await self.connection.rollback()
            if self._transaction is not None:
                driver = sync.connection.driver_connection
                await awaited(sync, driver, self._transaction.rollback(), "ROLLBACK")
        except Exception:  # noqa: BLE001 - the original error is the one to raise
            if not sync.invalidated:
                sync.invalidate()

    async def close(self) -> None:
        """Return the connection to the pool (on asyncpg, without a greenlet when it keeps it)."""
        sync = self.connection.sync_connection
        if sync is not None and _kept(sync):
            # Nothing to roll back on asyncpg's adapter and room in the pool: the reset and the
            # check-in do not await. A connection the pool closes instead (an overflow one, or
            # NullPool's) is closed in SQLAlchemy's greenlet.
            sync.close()
        else:
            await self.connection.close()


def _kept(connection: Connection) -> bool:
    """Whether an asyncpg connection goes back to its pool open, with nothing to undo.

    aiosqlite's adapter awaits even an empty rollback, so its connections never qualify.
    """
    from sqlalchemy.pool import QueuePool  # noqa: PLC0415 - loaded with the engine already

    pool = connection.engine.pool
    return (
        connection.dialect.driver == "asyncpg"
        and not connection.invalidated
        and not connection.in_transaction()
        and isinstance(pool, QueuePool)
        and pool.checkedin() < pool.size()
    )


async def open_async_unit(engine: AsyncEngine) -> AsyncUnit:
    """Check out a connection of `engine` and begin a unit of work's transaction on it.

    A connection idle in the pool is checked out without a greenlet; making a new one (or
    replacing a recycled one) awaits, so it is done in SQLAlchemy's greenlet.

    Args:
        engine: The async engine.

    Returns:
        The unit, its transaction begun.
    """
    from sqlalchemy.exc import MissingGreenlet  # noqa: PLC0415 - with the asyncio extension
    from sqlalchemy.ext.asyncio import AsyncConnection  # noqa: PLC0415

    from appdb.engine import begin_statements  # noqa: PLC0415 - the operations load this module alone

    sync_engine = engine.sync_engine
    on_asyncpg = sync_engine.dialect.driver == "asyncpg"
    connection = None
    if on_asyncpg:
        with contextlib.suppress(MissingGreenlet):
            connection = AsyncConnection(engine, sync_engine.connect())
    if connection is None:
        # aiosqlite awaits in every call (the pool's pre-ping and reset included), and asyncpg
        # when a connection is made or replaced: in SQLAlchemy's greenlet.
        connection = AsyncConnection(engine)
        await connection.start()
    sync = connection.sync_connection
    statements = begin_statements(sync_engine) if on_asyncpg else None
    try:
        if sync is None or statements is None:
            await connection.begin()
            return AsyncUnit(connection, None)
        driver: Any = sync.connection.driver_connection
        transaction = driver.transaction()
        await awaited(sync, driver, transaction.start(), "BEGIN")
        for statement in statements:  # what appdb's begin listener runs (PgBouncer mode)
            await awaited(sync, driver, driver.execute(statement), statement)
    except BaseException:
        await connection.close()
        raise
    return AsyncUnit(connection, transaction)
