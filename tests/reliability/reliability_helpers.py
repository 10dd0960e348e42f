"""Helpers for the reliability tests: appdb's schema on throwaway servers, databases, waits."""

from __future__ import annotations

import time
from typing import NamedTuple

from sqlalchemy.engine import URL

from appdb import DatabaseSettings, create_engine, metadata
from pgserver import PostgresServer

# '@', '%' and ':' all need escaping in a URL; the throwaway server trusts loopback, so any
# password connects, and every message must still hide it.
FAULT_PASSWORD = "Fault@pw%3A:Zq7"


class AppDBServer(NamedTuple):
    """A throwaway server holding a database with appdb's tables."""

    server: PostgresServer
    url: URL

    @property
    def url_text(self) -> str:
        """The URL as a service would put it in DATABASE_URL (password included)."""
        return self.url.render_as_string(hide_password=False)


def with_schema(server: PostgresServer, password: str | None = FAULT_PASSWORD) -> AppDBServer:
    """Create database ``appdb`` with appdb's tables on `server`."""
    server.create_database("appdb")
    url = server.url("appdb", password=password)
    engine = create_engine(DatabaseSettings(url=url))
    metadata.create_all(engine)
    engine.dispose()
    return AppDBServer(server, url)


def wait_gone(server: PostgresServer, pids: set[int], timeout: float = 10) -> None:
    """Wait until terminated server processes have exited."""
    deadline = time.monotonic() + timeout
    listed = ",".join(str(pid) for pid in pids)
    query = f"SELECT pid FROM pg_stat_activity WHERE pid IN ({listed})"  # noqa: S608 - ints
    while server.execute(query):
        if time.monotonic() > deadline:
            msg = f"server processes {listed} still running after {timeout}s"
            raise TimeoutError(msg)
        time.sleep(0.02)
