"""Fixtures for the fault tests: appdb's schema on a throwaway PostgreSQL server the test may restart."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pgserver import PostgresServer
from reliability_helpers import AppDBServer, with_schema


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
