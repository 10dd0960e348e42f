"""appdb-migrate's safety: serialised SQLite, no vanishing database, asks before dropping rows.

And when interrupted it exits 130 in one line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from filelock import FileLock
from sqlalchemy.engine import URL

from appdb import DatabaseSettings, create_engine, migrate
from appdb.migrate.chains import appdb_chain, script_directory
from appdb.migrate.lock import LOCK_KEY

# The head of appdb's chain, whatever revision that is now.
HEAD = script_directory(appdb_chain()).get_current_head()


SCRIPT = str(Path(sys.executable).parent / "appdb-migrate")


def _migrate(*args: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    return subprocess.run(
        [SCRIPT, "--database-url", url, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _text(url: URL) -> str:
    return url.render_as_string(hide_password=False)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_eight_concurrent_upgrades_of_one_sqlite_file(database_url: URL, tmp_path: Path) -> None:
    """They queue on the lock file: every one exits 0 and the file ends at head."""
    url = _text(database_url)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: _migrate("upgrade", url=url, cwd=tmp_path), range(8)))
    assert [0] * 8 == [result.returncode for result in results], [r.stderr for r in results]
    assert (HEAD,) == migrate.current(DatabaseSettings(url=database_url))
    applied = sum(f"upgraded {HEAD}" in result.stdout for result in results)
    assert 1 == applied


def test_in_memory_sqlite_is_refused(tmp_path: Path) -> None:
    """A database that vanishes with the process is not "migrated": exit 2, one line."""
    result = _migrate("upgrade", url="sqlite://", cwd=tmp_path)
    assert 2 == result.returncode
    assert 1 == len(result.stderr.splitlines())
    assert "in-memory SQLite database" in result.stderr


def test_downgrade_to_base_asks_before_dropping_rows(database_url: URL, tmp_path: Path) -> None:
    """Refused while users hold rows, naming them; nothing dropped; --yes drops them."""
    settings = DatabaseSettings(url=database_url)
    migrate.upgrade(settings=settings)
    engine = create_engine(settings)
    with engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO users (telegram_user_id) VALUES (1), (2)"))
    engine.dispose()
    refused = _migrate("downgrade", "base", url=_text(database_url), cwd=tmp_path)
    assert 1 == refused.returncode
    assert 1 == len(refused.stderr.splitlines())
    assert "these hold rows: users (2 rows); pass --yes" in refused.stderr
    assert (HEAD,) == migrate.current(settings)
    done = _migrate("downgrade", "base", "--yes", url=_text(database_url), cwd=tmp_path)
    assert 0 == done.returncode, done.stderr
    assert () == migrate.current(settings)


def test_interrupted_migrate_exits_130_in_one_line(database_url: URL, tmp_path: Path) -> None:
    """SIGINT while waiting for the lock: exit 130, one line, no traceback."""
    settings = DatabaseSettings(url=database_url)
    if settings.is_postgresql:
        holder = create_engine(settings, isolation_level="AUTOCOMMIT")
        connection = holder.connect()
        connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
        release = connection.close
    else:
        lock = FileLock(f"{database_url.database}.appdb-migrate.lock")
        lock.acquire()
        release = lock.release
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
        process = subprocess.Popen(
            [SCRIPT, "--database-url", _text(database_url), "upgrade"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(2.0)  # past start-up, waiting for the lock
        assert process.poll() is None
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        release()
    assert (130, "appdb-migrate: interrupted\n") == (process.returncode, err)
    assert () == migrate.current(settings)
