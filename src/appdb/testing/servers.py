"""Where the test databases' server comes from: ``APPDB_TEST_DATABASE_URL``, Docker, or SQLite.

``APPDB_TEST_DATABASE_URL`` names a PostgreSQL server (an admin URL: test databases are created
on it) or says ``sqlite``. Unset, PostgreSQL runs in Docker through testcontainers when Docker
answers, else the test databases are SQLite files.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from appdb._redaction import render_url
from appdb.settings import DatabaseSettings

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sqlalchemy.engine import URL

__all__ = ["DATABASE_URL_VARIABLE", "admin_url", "describe_source", "docker_postgresql"]

DATABASE_URL_VARIABLE = "APPDB_TEST_DATABASE_URL"
"""An admin URL of a PostgreSQL server the tests may create databases on, or ``sqlite``."""


def docker_postgresql() -> Iterator[URL] | None:
    """PostgreSQL in Docker through testcontainers, when it is installed and Docker answers.

    Returns:
        A generator that starts the container and yields its admin URL once (the container
        stops when the generator finishes), or ``None`` when there is no Docker here.
    """
    try:
        import docker  # type: ignore[import-untyped]  # noqa: PLC0415 - optional, and slow to import
        from testcontainers.postgres import PostgresContainer  # noqa: PLC0415 - optional

        docker.from_env().ping()
    except Exception:  # noqa: BLE001 - any failure means "no Docker here"
        return None

    def run() -> Iterator[URL]:
        with PostgresContainer("postgres:16-alpine", driver="psycopg") as container:
            yield make_url(container.get_connection_url()).set(database="postgres")

    return run()


@contextlib.contextmanager
def admin_url() -> Iterator[URL | None]:
    """The admin URL of the PostgreSQL server to create test databases on, ``None`` for SQLite.

    A Docker container, if one is started, runs until the ``with`` block ends.

    Yields:
        The server's admin URL, or ``None`` when the test databases are SQLite files.

    Raises:
        ConfigurationError: ``APPDB_TEST_DATABASE_URL`` is not a valid database URL.
    """
    raw = os.environ.get(DATABASE_URL_VARIABLE, "").strip()
    if raw and not raw.startswith("sqlite"):
        # Normalised like DATABASE_URL (postgres:// works); a bad value is a ConfigurationError.
        yield DatabaseSettings(url=raw).database_url
        return
    container = None if raw else docker_postgresql()
    if container is None:
        yield None
        return
    yield from container


def describe_source() -> str:
    """Say where the test databases will come from, judged from the environment alone.

    Returns:
        One line for pytest's report header; a server's password is hidden.
    """
    raw = os.environ.get(DATABASE_URL_VARIABLE, "").strip()
    if not raw:
        return f"{DATABASE_URL_VARIABLE} unset: Docker PostgreSQL if it answers, else SQLite"
    if raw.startswith("sqlite"):
        return "test databases on SQLite"
    return f"test databases on {render_url(raw)}"
