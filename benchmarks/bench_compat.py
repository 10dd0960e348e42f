"""The cost of the version-compatibility checks, at start-up and per upgrade.

In one process, on one migrated PostgreSQL database and one SQLite file, interleaved rounds of:

- `ensure_schema_current()` as shipped (version tables, the contract, then one catalog query
  for the models' tables and columns) against the same guard without the catalog query
  (`verify_current(tables=False)`), and the catalog query alone;
- a no-op `upgrade()` (the database at head: the lock, the ahead check per chain, the
  breaking-revision check, Alembic's own no-op) against Alembic's `command.upgrade` alone.

    APPDB_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        python benchmarks/bench_compat.py
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from sqlalchemy.pool import NullPool

from appdb import DatabaseSettings, create_engine, migrate
from appdb.migrate.chains import appdb_chain, chain_config
from appdb.migrate.guard import verify_current
from appdb.migrate.tables import columns

ADMIN_URL = os.environ.get(
    "APPDB_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ROUNDS = int(os.environ.get("APPDB_BENCH_ROUNDS", "15"))


def _catalog_query(settings: DatabaseSettings) -> Callable[[], object]:
    engine = create_engine(settings, poolclass=NullPool)

    def run() -> object:
        with engine.connect() as connection:
            return columns(connection)

    return run


def _alembic_noop(settings: DatabaseSettings) -> Callable[[], object]:
    def run() -> object:
        command.upgrade(chain_config(appdb_chain(), settings.for_migrations()), "heads")
        return None

    return run


def _cases(settings: DatabaseSettings) -> dict[str, Callable[[], object]]:
    return {
        "ensure_schema_current()": lambda: migrate.ensure_schema_current(settings),
        "guard without the catalog query": lambda: verify_current(settings, tables=False),
        "catalog query alone (own connection)": _catalog_query(settings),
        "upgrade() at head": lambda: migrate.upgrade(settings=settings),
        "alembic command.upgrade at head": _alembic_noop(settings),
    }


def _measure(label: str, settings: DatabaseSettings) -> None:
    migrate.upgrade(settings=settings)
    cases = _cases(settings)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(ROUNDS):
        for name, case in cases.items():
            started = time.perf_counter()
            case()
            times[name].append(time.perf_counter() - started)
    print(f"\n{label}: {ROUNDS} interleaved rounds, milliseconds (min / median)")
    guard = statistics.median(times["guard without the catalog query"])
    alembic = statistics.median(times["alembic command.upgrade at head"])
    for name, values in times.items():
        median = statistics.median(values)
        base = alembic if "upgrade" in name else guard
        print(
            f"  {name:40s} {min(values) * 1000:7.1f} / {median * 1000:7.1f}"
            f"   x{median / base:.2f} of {'alembic' if 'upgrade' in name else 'the bare guard'}"
        )


def main() -> None:
    """Measure on PostgreSQL and SQLite and print the figures."""
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"appdb_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        url = sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        _measure("PostgreSQL", DatabaseSettings(url=url))
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()
    with tempfile.TemporaryDirectory() as folder:
        _measure("SQLite", DatabaseSettings(url=f"sqlite:///{Path(folder) / 'bench.sqlite3'}"))


if __name__ == "__main__":
    main()
