"""Adoption: bring a database that predates appdb to appdb's head in place, every row kept.

One module, past 400 lines, because recognising a layout, planning its conversion and running
that plan share one table of layouts and one list of statements: the plan is what is run.

The legacy tables are moved aside (a schema of their own on PostgreSQL, a prefix on SQLite),
appdb's own revisions build the fixed baseline `BASELINE` (so the copy maps onto a schema that
never changes), the rows are copied with their ids, the counts are verified, and the normal
upgrade then applies every later revision. On PostgreSQL and SQLite all of it is one
transaction under the migration lock: a failure, or a killed process, leaves the database as
it was.
"""

# ruff: noqa: S608 - the SQL is built from the fixed layout table above and appdb's own names;
# the only values in it (replacements, the time zone) go through _quote.

from __future__ import annotations

import re
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import sqlalchemy as sa
from alembic import command
from sqlalchemy import event
from sqlalchemy.pool import NullPool

from appdb.engine import create_engine
from appdb.exceptions import ConfigurationError, MigrationError
from appdb.migrate.chains import (
    APPDB_VERSION_TABLE,
    appdb_chain,
    chain_config,
    serverless_settings,
)
from appdb.migrate.check import schema_differences
from appdb.migrate.errors import translated_errors
from appdb.migrate.lock import DEFAULT_LOCK_TIMEOUT, migration_lock
from appdb.settings import get_settings

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.engine import Connection, Engine

    from appdb.settings import DatabaseSettings

__all__ = [
    "BASELINE",
    "LAYOUTS",
    "AdoptOptions",
    "AdoptionPlan",
    "Layout",
    "Problem",
    "adopt",
    "plan",
]

BASELINE = "0002_messages"
"""The appdb revision a legacy layout is converted to; later revisions apply on top."""
OLD_VERSION_TABLE = "alembic_version_pre_appdb"
"""Where a legacy Alembic version table is kept."""
LEGACY_SCHEMA = "appdb_legacy"
"""PostgreSQL: the schema the legacy tables move to (kept with ``keep_legacy``)."""
LEGACY_PREFIX = "appdb_legacy_"
"""SQLite: the prefix the legacy tables are renamed with."""

# The baseline's column lengths (revision 0001_users and 0002_messages), not the models': the
# copy targets the baseline, whatever later revisions change.
_LENGTHS = {
    ("users", "username"): 64,
    ("users", "email"): 320,
    ("users", "hashed_password"): 255,
    ("users", "full_name"): 128,
    ("users", "telegram_username"): 32,
    ("users", "first_name"): 64,
    ("users", "last_name"): 64,
    ("users", "language_code"): 35,
    ("messages", "conversation_id"): 64,
}
# Identities are never cut: a cut username or email could name someone else.
_NEVER_TRUNCATED = frozenset({"username", "email", "hashed_password"})


@dataclass(frozen=True)
class Layout:
    """A pre-appdb layout: its tables' columns, and where each goes in appdb's baseline."""

    name: str
    description: str
    columns: dict[str, frozenset[str]]
    """Table -> the columns it has, exactly."""
    mapping: dict[str, dict[str, str]]
    """appdb table -> appdb column -> the legacy column it is copied from."""


def _layout(
    name: str, description: str, mapping: dict[str, dict[str, str]], extra: dict[str, set[str]]
) -> Layout:
    columns = {
        table: frozenset({*targets.values(), "id", *extra.get(table, set())})
        for table, targets in mapping.items()
    }
    return Layout(name, description, columns, mapping)


_TIMESTAMPS = {"created_at": "created_at", "updated_at": "updated_at"}
LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        _layout(
            "spec",
            "the original access-database spec's shared users table",
            {
                "users": {
                    "telegram_user_id": "telegram_user_id",
                    "telegram_username": "username",
                    "first_name": "first_name",
                    "last_name": "last_name",
                    "language_code": "language_code",
                    "is_premium": "is_premium",
                    "created_at": "created_at",
                    "updated_at": "created_at",
                    "last_login_at": "last_login_at",
                }
            },
            {},
        ),
        _layout(
            "bot",
            "the bot's users table (before appdb)",
            {
                "users": {
                    "telegram_user_id": "telegram_id",
                    "telegram_username": "username",
                    "first_name": "first_name",
                    "last_name": "last_name",
                    "language_code": "language_code",
                    "is_active": "is_active",
                    **_TIMESTAMPS,
                }
            },
            {},
        ),
        _layout(
            "backend",
            "the backend's users and messages tables (before appdb)",
            {
                "users": {
                    "username": "username",
                    "email": "email",
                    "hashed_password": "hashed_password",
                    "full_name": "full_name",
                    "bio": "bio",
                    "is_active": "is_active",
                    "is_superuser": "is_superuser",
                    **_TIMESTAMPS,
                },
                "messages": {
                    "sender_id": "sender_id",
                    "recipient_id": "recipient_id",
                    "content": "content",
                    "is_read": "is_read",
                    "parent_id": "parent_id",
                    "conversation_id": "conversation_id",
                    **_TIMESTAMPS,
                },
            },
            {},
        ),
    )
}
"""The layouts `adopt` recognises, by name (``spec``, ``bot``, ``backend``)."""


@dataclass(frozen=True)
class AdoptOptions:
    """What to do with values that do not fit; the defaults refuse them.

    Attributes:
        naive_timezone: The zone naive legacy timestamps are read in (PostgreSQL; SQLite
            stores appdb's timestamps as naive UTC, so only ``UTC`` is accepted there).
        duplicates: ``refuse``, or ``suffix``: of the emails (usernames) equal once
            lower-cased, the lowest id keeps its value and each other row gets
            ``local+dup<id>@domain`` (``name_<id>``).
        long_values: ``refuse``, or ``truncate`` names, handles and other descriptive text to
            the baseline's length; usernames and emails are never truncated.
        keep_legacy: Keep the legacy tables (moved aside) instead of dropping them once the
            copy is verified; the old version table is always kept.
    """

    naive_timezone: str = "UTC"
    duplicates: Literal["refuse", "suffix"] = "refuse"
    long_values: Literal["refuse", "truncate"] = "refuse"
    keep_legacy: bool = False


@dataclass(frozen=True)
class Problem:
    """A value that cannot go into appdb's schema as it is."""

    table: str
    column: str
    row_ids: tuple[int, ...]
    reason: str
    option: str | None
    """The CLI option that resolves it (``--duplicates suffix``); ``None``: only a fix by hand."""
    resolved: bool = False

    def __str__(self) -> str:
        """One line naming the rows by id (never their values) and what resolves it."""
        ids = ", ".join(str(row_id) for row_id in self.row_ids[:20])
        more = f" and {len(self.row_ids) - 20} more" if len(self.row_ids) > 20 else ""  # noqa: PLR2004
        if self.resolved:
            fix = f"resolved by {self.option}"
        elif self.option:
            fix = f"refused: pick {self.option}, or fix by hand"
        else:
            fix = "refused: fix by hand"
        return f"{self.table}.{self.column}: {self.reason} (ids {ids}{more}): {fix}"


@dataclass
class AdoptionPlan:
    """What `adopt` will do, or did: found by `plan`, returned by `adopt`."""

    backend: str
    layout: str | None = None
    """The recognised layout's name, ``appdb`` for appdb's own schema, ``None`` if unknown."""
    description: str = ""
    row_counts: dict[str, int] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)
    """What is renamed, converted and copied, in order, for people."""
    problems: list[Problem] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    """Why the database is not a layout `adopt` knows (empty when it is)."""
    statements: list[str] = field(default_factory=list)
    """The SQL, in order; ``-- appdb revisions ...`` marks where Alembic runs revisions."""

    @property
    def ready(self) -> bool:
        """Whether `adopt` would run: a known layout and no unresolved problem."""
        return self.layout is not None and not any(not p.resolved for p in self.problems)

    def lines(self) -> list[str]:
        """The plan for people: layout, row counts, steps, problems or differences."""
        if self.layout is None:
            return [
                "not a layout appdb-migrate adopt knows; nothing was changed:",
                *(f"  {line}" for line in self.differences),
            ]
        lines = [f"layout: {self.layout} ({self.description}) on {self.backend}"]
        lines += [f"rows: {table} {count}" for table, count in self.row_counts.items()]
        lines += [f"step: {step}" for step in self.steps]
        lines += [f"value: {problem}" for problem in self.problems]
        return lines


def plan(
    settings: DatabaseSettings | None = None, options: AdoptOptions | None = None
) -> AdoptionPlan:
    """Recognise the database's layout and plan its adoption, changing nothing.

    Args:
        settings: The database; `get_settings()` when omitted. Its migration URL is used.
        options: What to do with values that do not fit.

    Returns:
        The plan: layout, row counts, steps, SQL, and every value that does not fit.

    Raises:
        ConfigurationError: An option is not valid here.
        DatabaseUnavailableError: The database could not be reached.
    """
    settings = (settings or get_settings()).for_migrations()
    options = options or AdoptOptions()
    engine = _engine(settings)
    try:
        with translated_errors(settings, "plan the adoption"), engine.connect() as conn:
            found = _plan(conn, options)
            conn.rollback()
            return found
    finally:
        engine.dispose()


def adopt(
    settings: DatabaseSettings | None = None,
    options: AdoptOptions | None = None,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> AdoptionPlan:
    """Bring a pre-appdb database to appdb's head in place, in one transaction.

    Args:
        settings: The database; `get_settings()` when omitted. Its migration URL is used.
        options: What to do with values that do not fit.
        lock_timeout: Seconds to wait for a concurrent migration to finish.

    Returns:
        The plan that was carried out.

    Raises:
        MigrationError: The layout is not one adopt knows, a value does not fit and no
            option resolves it, or a verification failed; nothing was changed.
        ConfigurationError: An option is not valid here.
        MigrationLockTimeoutError: Another migration held the lock for too long.
        DatabaseUnavailableError: The database could not be reached.
    """
    settings = (settings or get_settings()).for_migrations()
    options = options or AdoptOptions()
    with translated_errors(settings, "adopt"), migration_lock(settings, lock_timeout):
        engine = _engine(settings)
        try:
            with engine.connect() as conn, conn.begin():
                found = _plan(conn, options)
                _refuse_unless_ready(found)
                _run(conn, found, settings)
                _verify(conn, found)
        finally:
            engine.dispose()
    return found


def _engine(settings: DatabaseSettings) -> Engine:
    """An engine whose transactions cover DDL too (pysqlite otherwise commits before DDL)."""
    engine = create_engine(settings, poolclass=NullPool)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _no_implicit_transactions(dbapi_connection: object, _record: object) -> None:
            dbapi_connection.isolation_level = None  # type: ignore[attr-defined]

        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _refuse_unless_ready(found: AdoptionPlan) -> None:
    if found.layout is None:
        msg = "cannot adopt this database, nothing was changed: " + "; ".join(found.differences)
        raise MigrationError(msg)
    refused = [str(problem) for problem in found.problems if not problem.resolved]
    if refused:
        msg = (
            f"cannot adopt: {len(refused)} kind(s) of value do not fit, nothing was changed "
            "(see `appdb-migrate adopt --plan` and docs/adopting.md): " + "; ".join(refused)
        )
        raise MigrationError(msg)


# Recognising the layout ------------------------------------------------------------------


def _columns(conn: Connection) -> dict[str, set[str]]:
    inspector = sa.inspect(conn)
    return {
        table: {column["name"] for column in inspector.get_columns(table)}
        for table in inspector.get_table_names()
    }


def _versions(conn: Connection, tables: dict[str, set[str]]) -> list[str]:
    if APPDB_VERSION_TABLE not in tables:
        return []
    return list(conn.scalars(sa.text(f"SELECT version_num FROM {APPDB_VERSION_TABLE}")))


def _plan(conn: Connection, options: AdoptOptions) -> AdoptionPlan:
    backend = conn.dialect.name
    _validate(options, backend)
    found = AdoptionPlan(backend=backend)
    tables = _columns(conn)
    versions = _versions(conn, tables)
    script = _appdb_revisions()
    if any(version in script for version in versions):
        found.differences = [
            (
                f"alembic_version already records appdb's revision {', '.join(versions)}: use "
                "`appdb-migrate upgrade`"
            ),
        ]
        return found
    schemas = sa.inspect(conn).get_schema_names() if backend == "postgresql" else []
    if LEGACY_SCHEMA in schemas:
        found.differences = [f"the schema {LEGACY_SCHEMA} already exists (an earlier adoption?)"]
        return found
    for clash in (OLD_VERSION_TABLE, f"{LEGACY_PREFIX}users", f"{LEGACY_PREFIX}messages"):
        if clash in tables:
            found.differences = [f"{clash} already exists (an earlier adoption?)"]
            return found
    layout = _recognise(tables, found)
    if layout == "appdb":
        _plan_appdb(conn, found, versions)
    elif layout is not None:
        _plan_legacy(conn, LAYOUTS[layout], found, options, tables, versions)
    return found


def _appdb_revisions() -> set[str]:
    """Every revision id of appdb's own chain."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415 (alembic loads on use)

    settings = serverless_settings("postgresql://offline/appdb")
    directory = ScriptDirectory.from_config(chain_config(appdb_chain(), settings))
    return {script.revision for script in directory.walk_revisions()}


def _recognise(tables: dict[str, set[str]], found: AdoptionPlan) -> str | None:
    """The layout whose tables match exactly, ``appdb``, or ``None`` with the differences."""
    from appdb.models import metadata  # noqa: PLC0415 (the models' columns at head)

    users = tables.get("users")
    if users is None:
        found.differences = ["no users table"]
        return None
    appdb_users = {column.name for column in metadata.tables["users"].columns}
    if users == appdb_users:
        found.layout, found.description = "appdb", "appdb's schema without its version record"
        return "appdb"
    best: tuple[int, str, list[str]] | None = None
    for name, layout in LAYOUTS.items():
        differences = []
        for table, expected in layout.columns.items():
            have = tables.get(table)
            if have is None:
                differences.append(f"{name}: no {table} table")
                continue
            differences += [f"{name}: {table} lacks {column}" for column in sorted(expected - have)]
            differences += [
                f"{name}: {table} has {column}, unknown to this layout"
                for column in sorted(have - expected)
            ]
        if "messages" in tables and "messages" not in layout.columns:
            differences.append(f"{name}: has a messages table this layout lacks")
        if not differences:
            found.layout, found.description = name, layout.description
            return name
        if best is None or len(differences) < best[0]:
            best = (len(differences), name, differences)
    assert best is not None  # noqa: S101 (LAYOUTS is not empty)
    found.differences = [f"closest layout: {best[1]}", *best[2]]
    return None


def _validate(options: AdoptOptions, backend: str) -> None:
    try:
        zoneinfo.ZoneInfo(options.naive_timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        msg = f"unknown time zone {options.naive_timezone!r} for naive timestamps"
        raise ConfigurationError(msg) from None
    if backend == "sqlite" and options.naive_timezone != "UTC":
        msg = "on SQLite appdb stores timestamps as naive UTC: naive_timezone must be UTC there"
        raise ConfigurationError(msg)
    if options.duplicates not in {"refuse", "suffix"}:
        msg = f"duplicates must be refuse or suffix, not {options.duplicates!r}"
        raise ConfigurationError(msg)
    if options.long_values not in {"refuse", "truncate"}:
        msg = f"long_values must be refuse or truncate, not {options.long_values!r}"
        raise ConfigurationError(msg)


# Planning ---------------------------------------------------------------------------------


def _plan_appdb(conn: Connection, found: AdoptionPlan, versions: list[str]) -> None:
    """Plan for appdb's schema without its version record: verify it, then record head."""
    differences = schema_differences(conn)
    if differences:
        found.layout = None
        found.differences = ["appdb's tables, but not as the models make them:", *differences]
        return
    found.row_counts = {
        table: _count(conn, table) for table in ("users", "messages") if _exists(conn, table)
    }
    if versions:
        found.steps.append(f"keep the foreign version record {versions} as {OLD_VERSION_TABLE}")
        found.statements += _move_version_table(conn)
    found.steps.append("verified: the schema matches appdb's models; record appdb's head")
    found.statements.append("-- appdb revisions: stamp heads")


def _exists(conn: Connection, table: str) -> bool:
    return sa.inspect(conn).has_table(table)


def _count(conn: Connection, table: str) -> int:
    return int(conn.scalar(sa.text(f"SELECT count(*) FROM {table}")) or 0)


def _legacy(conn: Connection, table: str) -> str:
    """The name a legacy table has once moved aside."""
    if conn.dialect.name == "postgresql":
        return f"{LEGACY_SCHEMA}.{table}"
    return f"{LEGACY_PREFIX}{table}"


def _plan_legacy(  # noqa: PLR0913, PLR0917 (the plan's inputs, each used)
    conn: Connection,
    layout: Layout,
    found: AdoptionPlan,
    options: AdoptOptions,
    tables: dict[str, set[str]],
    versions: list[str],
) -> None:
    del tables
    found.row_counts = {table: _count(conn, table) for table in layout.columns}
    naive = _naive_columns(conn, layout)
    replacements = _problems(conn, layout, found, options)
    # 1. Move the legacy tables and the version table aside.
    found.statements += _move_aside(conn, layout)
    found.steps.append(
        f"move {', '.join(layout.columns)} aside as "
        f"{', '.join(_legacy(conn, table) for table in layout.columns)}"
    )
    if versions:
        found.statements += _move_version_table(conn)
        found.steps.append(f"keep the old version record {versions} as {OLD_VERSION_TABLE}")
    # 2. appdb's baseline, built by appdb's own revisions.
    found.statements.append(f"-- appdb revisions: upgrade {BASELINE}")
    found.steps.append(f"create appdb's baseline schema (revision {BASELINE})")
    # 3. Copy, with ids; on PostgreSQL into tables without their foreign keys and indexes,
    # which are then re-made from their own catalog definitions (one validating pass each,
    # instead of a trigger and index insert per row).
    bulk = conn.dialect.name == "postgresql" and "messages" in layout.mapping
    if bulk:
        found.statements.append(_SET_ASIDE)
        found.steps.append("set the baseline's foreign keys and indexes aside during the copy")
    for table, targets in layout.mapping.items():
        found.statements.append(_copy(conn, layout, table, targets, naive, replacements, options))
        renamed = [f"{old} -> {new}" for new, old in targets.items() if old != new]
        found.steps.append(
            f"copy {found.row_counts[table]} {table} rows with their ids"
            + (f"; {', '.join(renamed)}" if renamed else "")
        )
    for column in sorted(naive):
        found.steps.append(f"convert naive {column} as {options.naive_timezone}")
    if bulk:
        found.statements.append(_RESTORE)
        found.steps.append("re-make the foreign keys (validated) and indexes as they were")
    if conn.dialect.name == "postgresql":
        found.statements += [_setval(table) for table in layout.mapping]
        found.steps.append("move the id sequences past the kept ids")
    # 4. Drop the moved tables, unless kept; then the normal upgrade.
    found.steps.append("verify the row counts")
    found.statements.append(_VERIFY_COUNTS)
    if not options.keep_legacy:
        found.statements += _drop_legacy(conn, layout)
        found.steps.append("drop the moved legacy tables (their rows are copied and counted)")
    found.statements.append("-- appdb revisions: upgrade heads")
    found.steps.append("upgrade to appdb's head; verify that check finds no drift")


def _naive_columns(conn: Connection, layout: Layout) -> set[str]:
    """``table.column`` of every legacy timestamp without a time zone (PostgreSQL)."""
    if conn.dialect.name != "postgresql":
        return set()
    naive = set()
    inspector = sa.inspect(conn)
    for table in layout.columns:
        for column in inspector.get_columns(table):
            kind = column["type"]
            if isinstance(kind, sa.DateTime) and not kind.timezone:
                naive.add(f"{table}.{column['name']}")
    return naive


def _problems(  # noqa: C901 (one check per kind of value, in a row)
    conn: Connection, layout: Layout, found: AdoptionPlan, options: AdoptOptions
) -> dict[tuple[str, str], dict[int, str]]:
    """List what does not fit; return the replacement values the options chose."""
    replacements: dict[tuple[str, str], dict[int, str]] = {}
    for table, targets in layout.mapping.items():
        for target, source in targets.items():
            limit = _LENGTHS.get((table, target))
            if limit is None:
                continue
            ids = _ids(conn, f"SELECT id FROM {table} WHERE length({source}) > {limit}")
            if ids:
                option = None if target in _NEVER_TRUNCATED else "--long-values truncate"
                found.problems.append(
                    Problem(
                        table,
                        target,
                        ids,
                        f"longer than appdb's {limit} characters",
                        option,
                        resolved=option is not None and options.long_values == "truncate",
                    )
                )
    users = layout.mapping["users"]
    for target in ("email", "username"):
        if target in users:
            replaced = _duplicates(conn, users[target], target, found, options)
            if replaced:
                replacements["users", target] = replaced
    if "telegram_user_id" in users:
        source = users["telegram_user_id"]
        ids = _ids(conn, f"SELECT id FROM users WHERE {source} <= 0")
        if ids:
            found.problems.append(
                Problem("users", "telegram_user_id", ids, "not a positive Telegram id", None)
            )
    if "messages" in layout.mapping:
        _message_problems(conn, found)
    return replacements


def _message_problems(conn: Connection, found: AdoptionPlan) -> None:
    empty = _ids(conn, "SELECT id FROM messages WHERE length(trim(content)) = 0")
    if empty:
        found.problems.append(Problem("messages", "content", empty, "empty content", None))
    for column in ("sender_id", "recipient_id"):
        # NOT EXISTS, an anti-join: NOT IN over a million ids can degrade to a nested loop.
        orphans = _ids(
            conn,
            f"SELECT id FROM messages AS m WHERE NOT EXISTS "
            f"(SELECT 1 FROM users AS u WHERE u.id = m.{column})",
        )
        if orphans:
            found.problems.append(
                Problem("messages", column, orphans, "refers to a user that does not exist", None)
            )
    dangling = _ids(
        conn,
        "SELECT id FROM messages AS m WHERE parent_id IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM messages AS p WHERE p.id = m.parent_id)",
    )
    if dangling:
        found.steps.append(
            f"{len(dangling)} replies whose parent was deleted become thread roots "
            "(parent_id NULL, as appdb does when a parent is deleted)"
        )


def _ids(conn: Connection, query: str) -> tuple[int, ...]:
    return tuple(int(row_id) for row_id in conn.scalars(sa.text(query + " ORDER BY id")))


def _duplicates(
    conn: Connection, source: str, target: str, found: AdoptionPlan, options: AdoptOptions
) -> dict[int, str]:
    groups: dict[str, list[tuple[int, str]]] = defaultdict(list)
    query = sa.text(f"SELECT id, {source} FROM users WHERE {source} IS NOT NULL ORDER BY id")
    for row_id, value in conn.execute(query):
        groups[str(value).lower()].append((int(row_id), str(value)))
    clashing = [group for group in groups.values() if len(group) > 1]
    if not clashing:
        return {}
    ids = tuple(sorted(row_id for group in clashing for row_id, _ in group[1:]))
    found.problems.append(
        Problem(
            "users",
            target,
            ids,
            f"equal to a lower id's {target} once lower-cased (the lowest id keeps it)",
            "--duplicates suffix",
            resolved=options.duplicates == "suffix",
        )
    )
    replaced = {}
    for group in clashing:
        for row_id, value in group[1:]:
            if target == "email":
                local, _, domain = value.lower().rpartition("@")
                replaced[row_id] = f"{local}+dup{row_id}@{domain}"
            else:
                suffix = f"_{row_id}"
                replaced[row_id] = value[: _LENGTHS["users", "username"] - len(suffix)] + suffix
    return replaced


# Statements -------------------------------------------------------------------------------


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _move_aside(conn: Connection, layout: Layout) -> list[str]:
    statements = []
    # Children first on SQLite, so each rename rewrites the references that remain.
    names = sorted(layout.columns, key=lambda table: table != "messages")
    if conn.dialect.name == "postgresql":
        statements.append(f"CREATE SCHEMA {LEGACY_SCHEMA}")
        # Indexes, constraints and owned sequences move with their table: no name clashes.
        statements += [f"ALTER TABLE {table} SET SCHEMA {LEGACY_SCHEMA}" for table in names]
        return statements
    for table in names:
        # SQLite's index names are database-wide: the legacy indexes would clash with
        # appdb's. They hold no data; the rows stay in the renamed table.
        for (index,) in conn.execute(
            sa.text(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t "
                "AND sql IS NOT NULL"
            ),
            {"t": table},
        ):
            statements.append(f'DROP INDEX "{index}"')
        statements.append(f"ALTER TABLE {table} RENAME TO {LEGACY_PREFIX}{table}")
    return statements


def _move_version_table(conn: Connection) -> list[str]:
    statements = [f"ALTER TABLE {APPDB_VERSION_TABLE} RENAME TO {OLD_VERSION_TABLE}"]
    if conn.dialect.name == "postgresql":
        # Alembic names its primary key alembic_version_pkc: appdb's version table needs it.
        pk = sa.inspect(conn).get_pk_constraint(APPDB_VERSION_TABLE).get("name")
        if pk:
            statements.append(
                f'ALTER TABLE {OLD_VERSION_TABLE} RENAME CONSTRAINT "{pk}" '
                f"TO {OLD_VERSION_TABLE}_pkey"
            )
    return statements


def _copy(  # noqa: PLR0913, PLR0917 (one INSERT's inputs)
    conn: Connection,
    layout: Layout,
    table: str,
    targets: dict[str, str],
    naive: set[str],
    replacements: dict[tuple[str, str], dict[int, str]],
    options: AdoptOptions,
) -> str:
    del layout
    expressions = {"id": "id"}
    for target, source in targets.items():
        expression = source
        if f"{table}.{source}" in naive:
            expression = f"({source} AT TIME ZONE {_quote(options.naive_timezone)})"
        limit = _LENGTHS.get((table, target))
        if limit and options.long_values == "truncate" and target not in _NEVER_TRUNCATED:
            expression = f"substr({expression}, 1, {limit})"
        if target == "email":
            expression = f"lower({expression})"
        replaced = replacements.get((table, target))
        if replaced:
            cases = " ".join(
                f"WHEN {row_id} THEN {_quote(value)}" for row_id, value in sorted(replaced.items())
            )
            expression = f"CASE id {cases} ELSE {expression} END"
        if target == "parent_id":
            # The parent's id if it still exists (one primary-key look-up per row), else NULL.
            expression = (
                f"(SELECT parent.id FROM {_legacy(conn, table)} AS parent "
                f"WHERE parent.id = legacy.{source})"
            )
        expressions[target] = expression
    if targets.get("updated_at", "created_at") != "created_at":
        # A legacy updated_at may be NULL (never updated); appdb's is NOT NULL.
        expressions["updated_at"] = (
            f"COALESCE({expressions['updated_at']}, {expressions['created_at']})"
        )
    columns = ", ".join(expressions)
    values = ", ".join(expressions.values())
    return (
        f"INSERT INTO {table} ({columns}) SELECT {values} "
        f"FROM {_legacy(conn, table)} AS legacy ORDER BY legacy.id"
    )


def _setval(table: str) -> str:
    return (
        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
        f"COALESCE((SELECT max(id) FROM {table}), 0) + 1, false)"
    )


def _drop_legacy(conn: Connection, layout: Layout) -> list[str]:
    if conn.dialect.name == "postgresql":
        return [f"DROP SCHEMA {LEGACY_SCHEMA} CASCADE"]
    names = sorted(layout.columns, key=lambda table: table != "messages")
    return [f"DROP TABLE {LEGACY_PREFIX}{table}" for table in names]


# Running ----------------------------------------------------------------------------------

_REVISIONS = re.compile(r"-- appdb revisions: (upgrade|stamp) (\S+)")
_VERIFY_COUNTS = "-- verify row counts (adopt stops here if one differs)"
_SET_ASIDE = "-- drop the baseline's foreign keys and indexes, keeping their definitions"
_RESTORE = "-- re-create them from those definitions"


def _run(conn: Connection, found: AdoptionPlan, settings: DatabaseSettings) -> None:
    set_aside: list[str] = []
    for statement in _statements(found):
        if statement == _VERIFY_COUNTS:
            _verify_counts(conn, found)
            continue
        if statement == _SET_ASIDE:
            set_aside = _set_aside(conn, list(found.row_counts))
            continue
        if statement == _RESTORE:
            for definition in set_aside:
                conn.exec_driver_sql(definition.replace("%", "%%"))
            continue
        match = _REVISIONS.fullmatch(statement)
        if match is None:
            # psycopg reads % as a placeholder even inside a quoted value ('50%_off').
            postgresql = conn.dialect.name == "postgresql"
            conn.exec_driver_sql(statement.replace("%", "%%") if postgresql else statement)
            continue
        action, target = match.groups()
        config = chain_config(appdb_chain(), settings, connection=conn)
        (command.upgrade if action == "upgrade" else command.stamp)(config, target)


def _set_aside(conn: Connection, tables: list[str]) -> list[str]:
    """Drop the foreign keys and plain indexes of `tables`; return the DDL that re-makes them.

    The definitions come from the catalog (``pg_get_constraintdef``, ``pg_get_indexdef``), so
    what is re-made is exactly what the baseline revisions made; the drift check at the end
    verifies it again.
    """
    rows = conn.execute(
        sa.text(
            "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) "
            "FROM pg_constraint AS c WHERE c.contype = 'f' "
            "AND c.conrelid = ANY(CAST(:tables AS regclass[])) ORDER BY c.conname"
        ),
        {"tables": tables},
    ).all()
    indexes = conn.execute(
        sa.text(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) "
            "FROM pg_index AS i WHERE i.indrelid = ANY(CAST(:tables AS regclass[])) "
            "AND NOT i.indisprimary AND NOT i.indisunique ORDER BY 1"
        ),
        {"tables": tables},
    ).all()
    restore = [definition for _name, definition in indexes]
    for table, name, definition in rows:
        conn.exec_driver_sql(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        restore.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    for name, _definition in indexes:
        conn.exec_driver_sql(f"DROP INDEX {name}")
    return restore


def _statements(found: AdoptionPlan) -> Iterator[str]:
    yield from found.statements


def _verify_counts(conn: Connection, found: AdoptionPlan) -> None:
    """Every legacy row is in appdb's table: checked before anything is dropped or committed."""
    for table, expected in found.row_counts.items():
        copied = _count(conn, table)
        if copied != expected:
            msg = f"cannot adopt: {table} has {copied} rows after the copy, not {expected}"
            raise MigrationError(msg)


def _verify(conn: Connection, found: AdoptionPlan) -> None:
    """Before commit: the rows are all there and `check` would find no drift."""
    _verify_counts(conn, found)
    differences = schema_differences(conn)
    if differences:
        msg = "cannot adopt: the adopted schema differs from the models: " + "; ".join(differences)
        raise MigrationError(msg)
