"""The offline SQL of `appdb-migrate upgrade --sql`, as an operator pipes it to psql.

It starts with the online path's lock_timeout, gives up behind a long transaction, and passes
squawk for every revision.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from appdb import DatabaseSettings, create_engine, migrate
from appdb.compat import contract_of
from appdb.migrate.chains import appdb_chain, script_directory

REPO = Path(__file__).resolve().parent.parent
SCRIPT = str(Path(sys.executable).parent / "appdb-migrate")
SQUAWK = shutil.which("squawk", path=str(Path(sys.executable).parent)) or shutil.which("squawk")


def offline(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    result = subprocess.run(
        [SCRIPT, *args, "--sql"],
        cwd=cwd,
        env=environment | (env or {}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    ("env", "first"),
    [
        ({}, "SET lock_timeout = 10000;"),
        ({"DATABASE_DDL_LOCK_TIMEOUT": "2500"}, "SET lock_timeout = 2500;"),
    ],
)
@pytest.mark.parametrize("command", [["upgrade"], ["downgrade", "base"]])
def test_script_starts_with_the_ddl_lock_timeout(
    command: list[str], env: dict[str, str], first: str, tmp_path: Path
) -> None:
    """Before any BEGIN, the statement migrations/env.py runs online, with the same setting."""
    sql = offline(*command, cwd=tmp_path, env=env)
    lines = sql.splitlines()
    assert first == lines[0]
    assert lines.index("BEGIN;") > 0
    assert 1 == sql.count("SET lock_timeout")


def test_no_lock_timeout_when_turned_off(tmp_path: Path) -> None:
    """DATABASE_DDL_LOCK_TIMEOUT=0 means no limit, online and offline alike."""
    sql = offline("upgrade", cwd=tmp_path, env={"DATABASE_DDL_LOCK_TIMEOUT": "0"})
    assert "lock_timeout" not in sql
    assert sql.lstrip().startswith("BEGIN;")


def _psql(url: URL, script: Path) -> subprocess.CompletedProcess[str]:
    plain = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", plain, "-f", str(script)],
        capture_output=True,
        text=True,
        # Without the SET the script would wait for the holder forever: this fails the test.
        timeout=60,
        check=False,
    )


@pytest.mark.postgresql_only
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_script_in_psql_gives_up_behind_a_long_transaction(
    database_url: URL, tmp_path: Path
) -> None:
    """Piped to psql while a transaction holds users, 0002 stops at the lock timeout, unapplied."""
    if shutil.which("psql") is None:
        pytest.fail("psql is needed (Debian's postgresql-client)")
    settings = DatabaseSettings(url=database_url)
    migrate.upgrade("0001_users", settings=settings)
    script = tmp_path / "0002.sql"
    script.write_text(
        offline(
            "upgrade",
            "0001_users:0002_messages",
            cwd=tmp_path,
            env={"DATABASE_DDL_LOCK_TIMEOUT": "300"},
        )
    )
    engine = create_engine(settings)
    try:
        with engine.connect() as holder:
            # An open write transaction on users: its foreign keys need a conflicting lock.
            holder.exec_driver_sql("UPDATE users SET bio = bio WHERE false")
            blocked = _psql(database_url, script)
            holder.rollback()
        assert 0 != blocked.returncode
        assert "lock timeout" in blocked.stderr
        with engine.connect() as connection:
            assert (
                "0001_users"
                == connection.exec_driver_sql(
                    "SELECT version_num FROM alembic_version"
                ).scalar_one()
            )
            assert not sa.inspect(connection).has_table("messages")
        done = _psql(database_url, script)
        assert 0 == done.returncode, done.stderr
        with engine.connect() as connection:
            assert (
                "0002_messages"
                == connection.exec_driver_sql(
                    "SELECT version_num FROM alembic_version"
                ).scalar_one()
            )
    finally:
        engine.dispose()


# A declared-breaking revision drops what older code used by design (the contract phase of
# expand/contract); appdb's contract machinery, not the linter, keeps older clients safe.
BREAKING_MAY = ("ban-drop-column", "ban-drop-table")


def test_squawk_passes_every_revision(tmp_path: Path) -> None:
    """Each revision's upgrade SQL, rendered alone, passes squawk under .squawk.toml."""
    if SQUAWK is None:
        pytest.fail("squawk is needed: pip install squawk-cli (in appdb's dev extras)")
    scripts = list(reversed(list(script_directory(appdb_chain()).walk_revisions())))
    assert scripts, "no revisions found"
    files = []
    for script in scripts:
        down = script.down_revision
        target = f"{down}:{script.revision}" if isinstance(down, str) else script.revision
        sql = offline("upgrade", target, cwd=tmp_path)
        path = tmp_path / f"{script.revision}.sql"
        breaking = contract_of(script).compatibility == "breaking" and down is not None
        # A revision may waive a rule, saying why beside its `squawk_ignore`.
        waived = [*(BREAKING_MAY if breaking else ()), *getattr(script.module, "squawk_ignore", ())]
        header = f"-- squawk-ignore-file {', '.join(waived)}\n" if waived else ""
        path.write_text(header + sql)
        files.append(str(path))
    result = subprocess.run(
        [SQUAWK, "--config", str(REPO / ".squawk.toml"), "--reporter", "gcc", *files],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == result.returncode, result.stdout + result.stderr
