"""`appdb-migrate` through real subprocesses: exit codes, output, secrecy, concurrency."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from appdb import DatabaseSettings, create_engine, migrate
from appdb.migrate.chains import appdb_chain, script_directory
from appdb.migrate.lock import LOCK_KEY

if TYPE_CHECKING:
    from conftest import InstalledWheel

# The head of appdb's chain, whatever revision that is now.
HEAD = script_directory(appdb_chain()).get_current_head()


SCRIPT = str(Path(sys.executable).parent / "appdb-migrate")
PASSWORD = "pa:ss@w%rd-Zq9"  # ':', '@' and '%' all need escaping in a URL


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    return subprocess.run(
        [SCRIPT, *args],
        cwd=cwd,
        env=environment | (env or {}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _url(database_url: URL) -> str:
    return database_url.render_as_string(hide_password=False)


def test_default_sqlite_in_empty_directory(tmp_path: Path) -> None:
    """With no configuration, upgrade creates ./appdb.sqlite3 at head; a rerun has nothing to do."""
    first = run("upgrade", cwd=tmp_path)
    assert 0 == first.returncode, first.stderr
    assert "upgraded 0001_users in " in first.stdout
    assert "upgraded 0002_messages in " in first.stdout
    assert (tmp_path / "appdb.sqlite3").exists()
    assert 1 == first.stderr.count("DATABASE_URL is not set")
    second = run("upgrade", cwd=tmp_path)
    assert 0 == second.returncode
    assert f"nothing to do: database already at {HEAD}" in second.stdout
    checked = run("current", "--check", cwd=tmp_path)
    assert (0, f"{HEAD} (head): up to date\n") == (checked.returncode, checked.stdout)


def test_python_dash_m_appdb(tmp_path: Path) -> None:
    """`python -m appdb` is the same command."""
    result = subprocess.run(
        [sys.executable, "-m", "appdb", "heads"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (0, f"{HEAD}\n") == (result.returncode, result.stdout)


def test_importing_appdb_main_runs_nothing(tmp_path: Path) -> None:
    """Importing `appdb.__main__` (pytest-alembic's all-models test does) does not run the CLI."""
    result = subprocess.run(
        [sys.executable, "-c", "import appdb.__main__"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (0, "", "") == (result.returncode, result.stdout, result.stderr)


def test_postgresql_lifecycle(database_url: URL, backend: str, tmp_path: Path) -> None:
    """upgrade, current --check, check, downgrade, stamp and history on each backend."""
    url = ["--database-url", _url(database_url)]
    assert 1 == run(*url, "current", "--check", cwd=tmp_path).returncode
    assert "(none)\n" == run(*url, "current", cwd=tmp_path).stdout
    assert 0 == run(*url, "upgrade", "0001_users", cwd=tmp_path).returncode
    behind = run(*url, "current", "--check", cwd=tmp_path)
    assert 1 == behind.returncode
    assert "run `appdb-migrate upgrade`" in behind.stderr
    assert 0 == run(*url, "upgrade", cwd=tmp_path).returncode
    assert f"{HEAD} (head)\n" == run(*url, "current", cwd=tmp_path).stdout
    check = run(*url, "check", cwd=tmp_path)
    # Nothing on stderr either: SQLite's unreflectable expression index is no warning.
    assert (0, "models and migrations agree\n", "") == (
        check.returncode,
        check.stdout,
        check.stderr,
    )
    down = run(*url, "downgrade", "base", cwd=tmp_path)
    assert 0 == down.returncode
    assert "downgraded 0002_messages" in down.stdout
    assert "downgraded 0001_users" in down.stdout
    refused = run(*url, "stamp", "head", cwd=tmp_path)
    assert 1 == refused.returncode
    assert 1 == len(refused.stderr.splitlines())
    assert "table messages is missing; table users is missing (use --force" in refused.stderr
    assert 0 == run(*url, "stamp", "head", "--force", cwd=tmp_path).returncode
    assert f"{HEAD} (head)\n" == run(*url, "current", cwd=tmp_path).stdout
    history = run("history", cwd=tmp_path).stdout.splitlines()
    assert f" -> {HEAD} (head): " in history[0]
    assert history[-2].startswith("0001_users -> 0002_messages: ")
    assert history[-1].startswith("<base> -> 0001_users: ")


def test_check_reports_drift_exit_1(database_url: URL, backend: str, tmp_path: Path) -> None:
    """A column added to the database by hand makes check exit 1 and name it."""
    settings = DatabaseSettings(url=database_url)
    migrate.upgrade(settings=settings)
    engine = create_engine(settings)
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE messages ADD COLUMN rogue INTEGER")
    engine.dispose()
    result = run("--database-url", _url(database_url), "check", cwd=tmp_path)
    assert 1 == result.returncode
    assert "remove column messages.rogue" in result.stdout
    assert "1 difference(s)" in result.stderr


def test_offline_sql_needs_no_server(tmp_path: Path) -> None:
    """Upgrade --sql and downgrade --sql print PostgreSQL DDL with no database at all."""
    up = run(
        "--database-url", "postgresql://nobody@127.0.0.1:1/none", "upgrade", "--sql", cwd=tmp_path
    )
    assert 0 == up.returncode, up.stderr
    assert "CREATE TABLE users" in up.stdout
    assert "BIGSERIAL" in up.stdout
    assert "WHERE NOT is_read" in up.stdout
    down = run("downgrade", "base", "--sql", cwd=tmp_path)
    assert 0 == down.returncode, down.stderr
    assert "DROP TABLE messages" in down.stdout
    assert not (tmp_path / "appdb.sqlite3").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--database-url", "mysql://root@h/d", "upgrade"], "--database-url"),
        (["--database-url", "definitely not a url", "current"], "--database-url"),
        (["frobnicate"], "invalid choice"),
        (["downgrade"], "the following arguments are required"),
    ],
)
def test_usage_and_configuration_errors_exit_2(
    args: list[str], message: str, tmp_path: Path
) -> None:
    """Bad usage or configuration: exit 2, one line about it, no traceback."""
    result = run(*args, cwd=tmp_path)
    assert 2 == result.returncode
    assert message in result.stderr
    assert 1 == result.stderr.count(message), result.stderr  # said once, not per setting
    assert "Traceback" not in result.stderr


def test_require_url_without_url_exits_2(tmp_path: Path) -> None:
    """Production mode with no URL is a configuration error."""
    result = run("upgrade", cwd=tmp_path, env={"DATABASE_REQUIRE_URL": "true"})
    assert 2 == result.returncode
    assert 1 == len(result.stderr.strip().splitlines())


@pytest.mark.parametrize("verbose", [[], ["-v"]])
def test_unreachable_server_never_prints_password(tmp_path: Path, verbose: list[str]) -> None:
    """Connection errors exit 1 with one line naming host and port, never the password."""
    url = f"postgresql://app:{quote(PASSWORD, safe='')}@127.0.0.1:1/appdb"
    result = run(*verbose, "--database-url", url, "upgrade", cwd=tmp_path)
    assert 1 == result.returncode
    output = result.stdout + result.stderr
    for fragment in (PASSWORD, quote(PASSWORD, safe=""), "w%rd", "pa:ss"):
        assert fragment not in output
    assert "127.0.0.1:1" in result.stderr
    if not verbose:
        assert 1 == len(result.stderr.strip().splitlines())
        assert "Traceback" not in result.stderr


def test_unknown_revision_exits_1(tmp_path: Path) -> None:
    """An unknown revision is an operation failure, reported in one line."""
    result = run("upgrade", "no_such_rev", cwd=tmp_path)
    assert 1 == result.returncode
    errors = [line for line in result.stderr.splitlines() if not line.startswith("WARNING appdb")]
    assert 1 == len(errors)
    assert "no_such_rev" in errors[0]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_four_concurrent_upgrades(database_url: URL, tmp_path: Path) -> None:
    """Four appdb-migrate upgrade started at once: all exit 0, each revision applied once."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    environment["DATABASE_URL"] = _url(database_url)
    processes = [
        subprocess.Popen(
            [SCRIPT, "upgrade"],
            cwd=tmp_path,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [0, 0, 0, 0] == [process.returncode for process in processes], outputs
    applied = sum(stdout.count("upgraded 0001_users") for stdout, _ in outputs)
    nothing = sum("nothing to do" in stdout for stdout, _ in outputs)
    assert (1, 3) == (applied, nothing)
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    engine.dispose()
    assert [(HEAD,)] == rows


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_lock_waiter_times_out_exit_1(database_url: URL, tmp_path: Path) -> None:
    """A waiter whose --lock-timeout runs out exits 1 with a clear message."""
    engine = sa.create_engine(database_url)
    with engine.connect() as holder:
        holder.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": LOCK_KEY})
        result = run(
            "--database-url", _url(database_url), "upgrade", "--lock-timeout", "0.5", cwd=tmp_path
        )
    engine.dispose()
    assert 1 == result.returncode
    assert "held the migration lock" in result.stderr


@pytest.mark.slow
def test_installed_wheel_migrates_from_anywhere(
    installed_wheel: InstalledWheel, tmp_path: Path
) -> None:
    """From the built wheel, outside the repo, with no alembic.ini: upgrade then current --check."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "PYTHON"))}
    script = str(installed_wheel.bin / "appdb-migrate")
    upgrade = subprocess.run(
        [script, "upgrade"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    assert 0 == upgrade.returncode, upgrade.stderr
    assert "upgraded 0002_messages" in upgrade.stdout
    check = subprocess.run(
        [script, "current", "--check"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (0, f"{HEAD} (head): up to date\n") == (check.returncode, check.stdout)
    assert not (tmp_path / "alembic.ini").exists()
    where = subprocess.run(
        [
            str(installed_wheel.bin / "python"),
            "-c",
            "from appdb.migrate import chains; print(chains.script_location())",
        ],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "appdb:migrations" == where.stdout.strip()


def test_schema_mermaid_and_text(tmp_path: Path) -> None:
    """`schema` prints an ER diagram of every table and its relations, or plain text."""
    mermaid = run("schema", cwd=tmp_path)
    assert 0 == mermaid.returncode
    lines = mermaid.stdout.splitlines()
    assert "erDiagram" == lines[0]
    assert "    users {" in lines
    assert "        BIGINT telegram_user_id UK" in lines
    assert '    users ||--o{ messages : "sender_id"' in lines
    assert '    messages |o--o{ messages : "parent_id"' in lines
    text = run("schema", "--format", "text", cwd=tmp_path)
    assert "  sender_id: BIGINT NOT NULL -> users.id [FK]" in text.stdout.splitlines()
    assert not (tmp_path / "appdb.sqlite3").exists()
