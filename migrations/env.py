"""Alembic environment for appdb's bundled migrations.

Used by `appdb-migrate` (through `appdb.migrate.alembic_config`) and by appdb's developers
through the repo's alembic.ini. The database comes from, in order: a connection handed over in
``config.attributes["connection"]`` (or an engine there, as pytest-alembic passes),
settings in ``config.attributes["appdb_settings"]``, or
appdb's settings (``DATABASE_URL``).
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from appdb.engine import create_engine
from appdb.migrate import include_name
from appdb.models import metadata
from appdb.settings import DatabaseSettings, get_settings

config = context.config
if config.config_file_name is not None:  # developers' alembic.ini: its logging section
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _settings() -> DatabaseSettings:
    settings = config.attributes.get("appdb_settings")
    return settings if isinstance(settings, DatabaseSettings) else get_settings()


def _configure(**options: object) -> None:
    context.configure(
        target_metadata=metadata,
        compare_type=True,
        compare_server_default=True,
        include_name=include_name,
        on_version_apply=config.attributes.get("on_version_apply", ()),
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


def _run_on_new_connection(engine: Engine, settings: DatabaseSettings) -> None:
    with engine.connect() as connection:
        timeout = settings.ddl_lock_timeout if connection.dialect.name == "postgresql" else 0
        if timeout:
            # Set on the session and committed before Alembic opens its transactions: DDL
            # waits at most this long for a table lock instead of queueing (and blocking
            # everyone behind it) until some long transaction ends.
            connection.exec_driver_sql(f"SET lock_timeout = {int(timeout)}")
            connection.commit()
        try:
            _run(connection)
        finally:
            if timeout and not connection.invalidated:
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


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
