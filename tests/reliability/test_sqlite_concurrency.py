"""The zero-config SQLite default under concurrency: WAL, bounded busy waits, a clean busy error."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from appdb import (
    DatabaseBusyError,
    DatabaseSettings,
    DatabaseUnavailableError,
    create_async_engine,
    create_engine,
    metadata,
)
from appdb.aio import touch_telegram_user as async_touch
from appdb.users import touch_telegram_user
from sqlite_load import run_load

BUSY_TIMEOUT = 0.5


def file_settings(path: Path, **values: Any) -> DatabaseSettings:
    return DatabaseSettings(url=URL.create("sqlite", database=str(path)), **values)


def pragmas(engine: sa.Engine) -> tuple[str, int]:
    with engine.connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar_one()
        synchronous = connection.exec_driver_sql("PRAGMA synchronous").scalar_one()
    return str(mode), int(synchronous)


def test_file_database_defaults_to_wal_and_synchronous_normal(tmp_path: Path) -> None:
    """A SQLite file gets WAL and synchronous=NORMAL (1); DATABASE_SQLITE_WAL=false keeps it off."""
    engine = create_engine(file_settings(tmp_path / "db.sqlite3"))
    assert ("wal", 1) == pragmas(engine)
    engine.dispose()
    plain = create_engine(file_settings(tmp_path / "plain.sqlite3", sqlite_wal=False))
    assert ("delete", 2) == pragmas(plain)
    plain.dispose()


def test_in_memory_database_is_left_alone() -> None:
    """``:memory:`` keeps its memory journal (WAL needs a file)."""
    engine = create_engine(DatabaseSettings(url="sqlite://"))
    assert "memory" == pragmas(engine)[0]
    engine.dispose()


@pytest.mark.anyio
async def test_async_file_database_uses_wal(tmp_path: Path) -> None:
    """The aiosqlite engine gets the same pragmas."""
    engine = create_async_engine(file_settings(tmp_path / "db.sqlite3"))
    async with engine.connect() as connection:
        assert "wal" == (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar_one()
        assert 1 == (await connection.exec_driver_sql("PRAGMA synchronous")).scalar_one()
    await engine.dispose()


@pytest.mark.slow
def test_two_processes_of_four_writer_threads_see_no_errors(tmp_path: Path) -> None:
    """2 processes x 4 threads writing for 3 s on the default settings: every operation succeeds."""
    result = run_load(tmp_path / "db.sqlite3", wal=True, processes=2, threads=4, seconds=3)
    assert {} == result.errors, result.messages
    assert result.operations > 0


@pytest.fixture
def locked_file(tmp_path: Path) -> Iterator[tuple[Path, sqlite3.Connection]]:
    """A SQLite file with appdb's tables whose write lock another connection holds."""
    path = tmp_path / "db.sqlite3"
    engine = create_engine(file_settings(path))
    metadata.create_all(engine)
    engine.dispose()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    yield path, holder
    holder.close()


def assert_busy_error(error: DatabaseBusyError, path: Path, elapsed: float) -> None:
    assert isinstance(error, DatabaseUnavailableError)
    assert BUSY_TIMEOUT <= elapsed < BUSY_TIMEOUT + 2
    text = str(error)
    assert "DATABASE_SQLITE_BUSY_TIMEOUT" in text
    assert str(path) in text
    for fragment in ("INSERT", "telegram_user_id", "[SQL", "?"):
        assert fragment not in text


def test_held_write_lock_raises_database_busy_without_sql(
    locked_file: tuple[Path, sqlite3.Connection],
) -> None:
    """A write lock held past the busy timeout: DatabaseBusyError, no SQL text; usable after."""
    path, holder = locked_file
    engine = create_engine(file_settings(path, sqlite_busy_timeout=BUSY_TIMEOUT))
    with Session(engine) as session:
        started = time.monotonic()
        with pytest.raises(DatabaseBusyError) as info:
            touch_telegram_user(session, 1)
        assert_busy_error(info.value, path, time.monotonic() - started)
        session.rollback()
        holder.execute("ROLLBACK")
        assert touch_telegram_user(session, 1).id is not None
        session.commit()
    engine.dispose()


@pytest.mark.anyio
async def test_held_write_lock_raises_database_busy_async(
    locked_file: tuple[Path, sqlite3.Connection],
) -> None:
    """The aiosqlite engine raises the same DatabaseBusyError."""
    path, _holder = locked_file
    engine = create_async_engine(file_settings(path, sqlite_busy_timeout=BUSY_TIMEOUT))
    async with AsyncSession(engine) as session:
        started = time.monotonic()
        with pytest.raises(DatabaseBusyError) as info:
            await async_touch(session, 1)
        assert_busy_error(info.value, path, time.monotonic() - started)
    await engine.dispose()
