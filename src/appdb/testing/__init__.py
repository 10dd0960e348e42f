"""pytest plugin for services (``appdb[testing]``): a migrated database, isolated sessions.

Registered through the ``pytest11`` entry point, so a service's tests only request fixtures:

- ``appdb_database_url``: a database migrated once per test session through the real migration
  chain (appdb's revisions and every registered service's), dropped at the end. PostgreSQL when
  ``APPDB_TEST_DATABASE_URL`` names a server (an admin URL: a database is created on it), else
  PostgreSQL in Docker through testcontainers when Docker answers, else a SQLite file.
  ``APPDB_TEST_DATABASE_URL=sqlite`` asks for SQLite explicitly.
- ``appdb_session`` / ``appdb_async_session``: a session inside an outer transaction that is
  rolled back after the test; the code under test may commit (it releases a savepoint), and
  the next test still starts from the migrated, empty database.
- ``appdb_sessionmaker`` / ``appdb_async_sessionmaker``: factories of such sessions, for code
  that opens a session per request or per update.
- ``appdb_connection_scope`` / ``appdb_async_connection_scope``: stand-ins for
  `connection_scope` / `async_connection_scope` whose scopes are savepoints of the test's
  transaction, for code that opens a unit of work on a connection (the bot's middleware).
- ``appdb_users`` / ``appdb_messages`` (and ``appdb_async_users`` / ``appdb_async_messages``):
  small factories that insert rows with sensible defaults.
- ``appdb_empty_database_url``: a fresh database that is not migrated, for migration tests.

`override_get_db` points FastAPI's `get_db` (or `get_async_db`) at a test session.
Nothing here runs unless a test requests an ``appdb_*`` fixture.

The package, in data-flow order: `servers` (where the test server comes from), `databases`
(create and drop test databases on it), `factories` (rows with defaults), `fixtures` (what
tests request) and `overrides` (FastAPI). pytest reads a plugin's fixtures and hooks from
this module's namespace, hence the imports of every fixture below.
"""

from __future__ import annotations

from appdb.testing.factories import (
    AsyncMessageFactory,
    AsyncUserFactory,
    MessageFactory,
    UserFactory,
)
from appdb.testing.fixtures import (  # noqa: F401 - pytest registers fixtures from this namespace
    appdb_async_connection,
    appdb_async_connection_scope,
    appdb_async_engine,
    appdb_async_messages,
    appdb_async_session,
    appdb_async_sessionmaker,
    appdb_async_users,
    appdb_connection,
    appdb_connection_scope,
    appdb_database_url,
    appdb_empty_database_url,
    appdb_engine,
    appdb_messages,
    appdb_server,
    appdb_session,
    appdb_sessionmaker,
    appdb_settings,
    appdb_users,
)
from appdb.testing.overrides import override_get_db
from appdb.testing.servers import DATABASE_URL_VARIABLE, describe_source

__all__ = [
    "DATABASE_URL_VARIABLE",
    "AsyncMessageFactory",
    "AsyncUserFactory",
    "MessageFactory",
    "UserFactory",
    "override_get_db",
]


def pytest_report_header() -> str | None:
    """Say where appdb's test databases come from, so a SQLite-only run is never a surprise."""
    return f"appdb: {describe_source()}"
