"""Create and drop test databases: on a PostgreSQL server, or as SQLite files."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError

from appdb._redaction import describe_error
from appdb.testing.servers import DATABASE_URL_VARIABLE

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["DatabaseServer"]


class DatabaseServer:
    """Makes and drops test databases: on a PostgreSQL server, or as SQLite files."""

    def __init__(self, admin_url: URL | None, directory: Path) -> None:
        """Create databases on the server `admin_url` names, or as SQLite files in `directory`.

        Args:
            admin_url: An admin URL of a PostgreSQL server, or ``None`` for SQLite.
            directory: Where SQLite databases are created.
        """
        self.admin_url = admin_url
        self.directory = directory

    def describe(self) -> str:
        """Name the server for humans, without credentials.

        Returns:
            ``PostgreSQL at host:port`` or ``SQLite files in <directory>``.
        """
        if self.admin_url is None:
            return f"SQLite files in {self.directory}"
        return f"PostgreSQL at {self.admin_url.host}:{self.admin_url.port or 5432}"

    def create(self) -> URL:
        """Create an empty database with a unique name.

        A server that refuses fails the test with one line and no traceback (pytest's would
        show the driver's arguments, password too).

        Returns:
            The new database's URL.
        """
        name = f"appdb_test_{uuid.uuid4().hex[:12]}"
        if self.admin_url is None:
            return URL.create("sqlite", database=str(self.directory / f"{name}.sqlite3"))
        engine = _admin_engine(self.admin_url)
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        except OperationalError as exc:
            reason = describe_error(exc, self.admin_url)
            pytest.fail(
                f"{DATABASE_URL_VARIABLE}: cannot create a test database on "
                f"{self.describe()}: {reason}",
                pytrace=False,
            )
        finally:
            engine.dispose()
        return self.admin_url.set(database=name)

    def drop(self, url: URL) -> None:
        """Drop the database `create` made (a SQLite file is deleted), even if still in use.

        Args:
            url: What `create` returned.
        """
        if self.admin_url is None:
            Path(str(url.database)).unlink(missing_ok=True)
            return
        engine = _admin_engine(self.admin_url)
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
        finally:
            engine.dispose()


def _admin_engine(admin_url: URL) -> Engine:
    return sa.create_engine(
        admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool, hide_parameters=True
    )
