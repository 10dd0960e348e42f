"""Fixtures for the scaling tests: PgBouncer in transaction mode in front of the test server.

Tests in this directory run on PostgreSQL only. `pooled_database` gives each test a fresh
database reached through PgBouncer, and the `database_url` / `settings` overrides make every
fixture of the main suite (engines, sessions, ...) go through it with ``DATABASE_POOLER``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from sqlalchemy.engine import URL

from appdb import DatabaseSettings
from pgbouncer import PgBouncer, find_pgbouncer
from pgserver import create_database, drop_database, unavailable


@pytest.fixture(scope="session")
def pgbouncer_binary() -> Path:
    """The ``pgbouncer`` program (Debian's ``pgbouncer`` package; `.ci/run` installs it)."""
    binary = find_pgbouncer()
    if binary is None:
        unavailable("pooler", "pgbouncer is not installed (apt-get install pgbouncer)")
    return binary


@pytest.fixture(scope="session")
def pgbouncer(pgbouncer_binary: Path, postgresql_admin_url: URL) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode in front of the test server, 4 server connections per database.

    Fewer server connections than concurrent clients, so transactions of different clients
    share server connections: any state left on one would leak to another.
    """
    bouncer = PgBouncer(
        pgbouncer_binary,
        postgresql_admin_url.host or "127.0.0.1",
        postgresql_admin_url.port or 5432,
        pool_size=4,
        password=postgresql_admin_url.password,
    ).start()
    yield bouncer
    bouncer.stop()


@pytest.fixture
def make_pgbouncer(
    pgbouncer_binary: Path, postgresql_admin_url: URL
) -> Iterator[Callable[..., PgBouncer]]:
    """Start PgBouncers in front of the test server (pgbouncer.ini settings as keywords); stopped after the test."""
    started: list[PgBouncer] = []

    def make(**ini: Any) -> PgBouncer:
        bouncer = PgBouncer(
            pgbouncer_binary,
            postgresql_admin_url.host or "127.0.0.1",
            postgresql_admin_url.port or 5432,
            password=postgresql_admin_url.password,
            **ini,
        )
        started.append(bouncer)
        return bouncer.start()

    yield make
    for bouncer in started:
        bouncer.stop()


class PooledDatabase(NamedTuple):
    """One test database: its direct URL and the same database through PgBouncer."""

    direct: URL
    pooled: URL


@pytest.fixture
def pooled_database(
    postgresql_admin_url: URL, pgbouncer: PgBouncer, request: pytest.FixtureRequest
) -> Iterator[PooledDatabase]:
    """A fresh database, reachable directly and through PgBouncer; dropped after the test.

    As in the main suite, a test that uses `engine` gets a copy of the migrated template.
    """
    template = (
        request.getfixturevalue("migrated_postgresql_template")
        if "engine" in request.fixturenames
        else None
    )
    direct = create_database(postgresql_admin_url, template=template)
    try:
        yield PooledDatabase(direct, pgbouncer.url(direct.database or ""))
    finally:
        drop_database(postgresql_admin_url, direct)


@pytest.fixture(params=["postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """Scaling is about PostgreSQL: the main suite's SQLite half does not run here."""
    return str(request.param)


@pytest.fixture
def database_url(backend: str, pooled_database: PooledDatabase) -> URL:
    """The main suite's database fixture, through PgBouncer."""
    assert backend == "postgresql"
    return pooled_database.pooled


@pytest.fixture
def settings(database_url: URL, pooled_database: PooledDatabase) -> DatabaseSettings:
    """The main suite's settings, through PgBouncer with ``DATABASE_POOLER=pgbouncer``."""
    return DatabaseSettings(
        url=database_url,
        migration_url=pooled_database.direct,
        pooler="pgbouncer",
        pool_size=2,
        max_overflow=2,
        application_name="appdb-tests",
    )
