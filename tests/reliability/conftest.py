"""Fixtures for the fault tests: appdb's schema on a throwaway PostgreSQL server the test may restart."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import hypothesis
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from appdb import DatabaseSettings, create_engine, metadata
from pgserver import PostgresServer, create_database, drop_database
from reliability_helpers import AppDBServer, with_schema

# Modest example counts keep CI fast; derandomized so a CI failure reproduces. Examples share
# a module-scoped engine and restore its state themselves, which the health check cannot see.
hypothesis.settings.register_profile(
    "appdb",
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
hypothesis.settings.register_profile(
    "appdb-thorough",
    parent=hypothesis.settings.get_profile("appdb"),
    max_examples=1000,
    derandomize=False,
)
hypothesis.settings.load_profile(os.environ.get("APPDB_HYPOTHESIS_PROFILE", "appdb"))


@pytest.fixture
def appdb_server(postgres_server: PostgresServer) -> AppDBServer:
    """A running throwaway server with appdb's schema in database ``appdb``."""
    return with_schema(postgres_server)


@pytest.fixture
def use_server(
    appdb_server: AppDBServer, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., AppDBServer]:
    """Point DATABASE_* at the throwaway server (extra settings as keywords), as a service's env would."""

    def configure(**settings: object) -> AppDBServer:
        monkeypatch.setenv("DATABASE_URL", appdb_server.url_text)
        monkeypatch.setenv("DATABASE_APPLICATION_NAME", "appdb-fault-test")
        for name, value in settings.items():
            monkeypatch.setenv(f"DATABASE_{name.upper()}", str(value))
        return appdb_server

    return configure


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sa.Engine]:
    """One engine with appdb's tables per module and backend, shared by hypothesis examples.

    Each example cleans up after itself.
    """
    admin_url: URL | None = None
    if request.param == "sqlite":
        url = URL.create("sqlite", database=str(tmp_path_factory.mktemp("shared") / "db.sqlite3"))
    else:
        admin_url = request.getfixturevalue("postgresql_admin_url")
        url = create_database(admin_url, "appdb_hostile")
    engine = create_engine(DatabaseSettings(url=url, pool_size=2, max_overflow=2))
    metadata.create_all(engine)
    try:
        yield engine
    finally:
        engine.dispose()
        if admin_url is not None:
            drop_database(admin_url, url)
