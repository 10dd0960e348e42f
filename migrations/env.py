"""Alembic environment for appdb's bundled migrations.

Used by `appdb-migrate` (through `appdb.migrate.alembic_config`) and by appdb's developers
through the repo's alembic.ini. The database comes from, in order: a connection handed over in
``config.attributes["connection"]`` (or an engine there, as pytest-alembic passes),
settings in ``config.attributes["appdb_settings"]``, or
appdb's settings (``DATABASE_URL``).
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Mapping
from logging.config import fileConfig
from typing import Any

from alembic import context
from alembic.runtime.migration import MigrationContext, MigrationInfo
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from appdb.compat import record_contract
from appdb.engine import create_engine
from appdb.migrate.autogenerate import include_name
from appdb.migrate.ddl_locks import CLIENT_CHECK_INTERVAL_MS, run_with_lock_retries
from appdb.models import metadata
from appdb.settings import DatabaseSettings, get_settings

config = context.config
if config.config_file_name is not None:  # developers' alembic.ini: its logging section
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _settings() -> DatabaseSettings:
    settings = config.attributes.get("appdb_settings")
    return settings if isinstance(settings, DatabaseSettings) else get_settings()


def _on_version_apply(
    ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any], run_args: Mapping[str, Any]
) -> None:
    """After each revision, in its transaction: the caller's hook, then the contract record."""
    given = config.attributes.get("on_version_apply")
    if callable(given):
        given(ctx=ctx, step=step, heads=heads, run_args=run_args)
    # Every chain records what the schema still serves (appdb.compat), online and offline.
    record_contract(ctx=ctx, heads=heads)


def _configure(**options: Any) -> None:
    # Any: each caller's options go to Alembic's configure() verbatim, typed there.
    context.configure(
        target_metadata=metadata,
        compare_type=True,
        compare_server_default=True,
        include_name=include_name,
        on_version_apply=_on_version_apply,
        # appdb's chain keeps the default; each service's chain has a table of its own.
        version_table=config.attributes.get("version_table", "alembic_version"),
        **options,
    )


def run_migrations_offline() -> None:
    """Render SQL for the configured dialect, with no server (``--sql``)."""
    _configure(
        url=_settings().database_url, literal_binds=True, dialect_opts={"paramstyle": "named"}
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    _configure(
        connection=connection,
        render_as_batch=connection.dialect.name == "sqlite",
        # One transaction per revision: a failing revision rolls back alone and the database
        # stays at the previous one (PostgreSQL has transactional DDL).
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _target() -> object:
    try:
        return context.get_revision_argument()
    except KeyError:  # commands with no target (autogenerate, check)
        return None


def _run_on_new_connection(engine: Engine, settings: DatabaseSettings) -> None:
    with engine.connect() as connection:
        if connection.dialect.name != "postgresql":
            _run(connection)
            return
        # The server stops the revision soon after this process dies, instead of when its
        # statement ends, so a killed migrator's locks do not block the rerun.
        if (connection.dialect.server_version_info or (0,)) >= (14,):
            connection.exec_driver_sql(
                f"SET client_connection_check_interval = {CLIENT_CHECK_INTERVAL_MS}"
            )
            connection.commit()
        try:
            # Short lock_timeout attempts, retried: a DDL waiting for a table lock queues every
            # later query on that table behind it, so it must never wait long in one go.
            run_with_lock_retries(
                connection,
                lambda: _run(connection),
                deadline_ms=settings.ddl_lock_timeout,
                version_table=config.attributes.get("version_table", "alembic_version"),
                target=_target(),
            )
        finally:
            if not connection.invalidated:
                connection.rollback()
                connection.exec_driver_sql("RESET lock_timeout")
                connection.commit()


def run_migrations_online() -> None:
    """Run the migrations on a live database."""
    settings = _settings()
    given = config.attributes.get("connection")
    if isinstance(given, Engine):
        _run_on_new_connection(given, settings)
    elif isinstance(given, Connection):
        # The caller's connection and transaction: its session settings are not ours to change.
        _run(given)
    elif given is not None:
        # Something engine-like (pytest-alembic wraps its open connection this way).
        with given.connect() as connection:
            _run(connection)
    else:
        # DATABASE_MIGRATION_URL when set: DDL and SET lock_timeout need a real server session.
        settings = settings.for_migrations()
        engine = create_engine(settings, poolclass=NullPool)
        try:
            _run_on_new_connection(engine, settings)
        finally:
            engine.dispose()


with warnings.catch_warnings():
    # SQLite cannot reflect an expression index; this one is known, created and dropped by
    # 0003_users_username_casefold. (A batch *recreation* of users on SQLite would lose it: such
    # a revision must create it again.)
    warnings.filterwarnings(
        "ignore", message="Skipped unsupported reflection of expression-based index uq_users_"
    )
    if context.is_offline_mode():
        run_migrations_offline()
    else:
        run_migrations_online()
