"""Migrations and locks: a blocked DDL never stalls traffic, and the migration lock cannot be lost.

Each test runs the real `appdb-migrate` on a copy of appdb's migrations with one test revision on
top of the head, against a throwaway PostgreSQL server.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from chain_copy import HEAD, cli_on, copy_chain, revision_on_head
from pgserver import PostgresServer

pytestmark = [pytest.mark.postgresql_only, pytest.mark.slow]

SCRIPT = str(Path(sys.executable).parent / "appdb-migrate")
PROBE = "9001_probe"

# ALTER TABLE needs ACCESS EXCLUSIVE on users; then the transaction stays open for
# APPDB_TEST_SLOW_SECONDS, so a test can act while the revision runs.
PROBE_REVISION = revision_on_head(
    PROBE,
    "A test revision: a column on users (ACCESS EXCLUSIVE), then an optional pause.",
    """
    def upgrade() -> None:
        op.execute("ALTER TABLE users ADD COLUMN probe integer")
        seconds = float(os.environ.get("APPDB_TEST_SLOW_SECONDS", "0"))
        if seconds:
            op.execute(f"SELECT pg_sleep({seconds})")


    def downgrade() -> None:
        op.execute("ALTER TABLE users DROP COLUMN probe")
    """,
)


def _environment(url: str, **settings: object) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    extra = {name.upper(): str(value) for name, value in settings.items()}
    return environment | {"DATABASE_URL": url} | extra


def _upgrade(chain: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cli_on(chain, "upgrade"),
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(chain: Path, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_on(chain, "upgrade"),
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def _version(server: PostgresServer) -> list[tuple[object, ...]]:
    return server.execute("SELECT version_num FROM alembic_version", "appdb")


def _has_probe_column(server: PostgresServer) -> bool:
    return bool(
        server.execute(
            "SELECT 1 FROM information_schema.columns "
            "WHERE table_name = 'users' AND column_name = 'probe'",
            "appdb",
        )
    )


def _at_head(server: PostgresServer, tmp_path: Path) -> str:
    url = server.create_database("appdb").render_as_string(hide_password=False)
    done = subprocess.run(
        [SCRIPT, "upgrade"],
        env=_environment(url),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == done.returncode, done.stderr
    return url


class _Inserter(threading.Thread):
    """Plain INSERTs on users, one after another, each one's latency recorded."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.latencies: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as connection:
            n = 1_000
            while not self.stop.is_set():
                n += 1
                started = time.perf_counter()
                connection.execute("INSERT INTO users (telegram_user_id) VALUES (%s)", (n,))
                self.latencies.append(time.perf_counter() - started)
                time.sleep(0.01)


def test_blocked_ddl_never_stalls_inserts_and_names_the_blockers(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """A row lock on users, three concurrent upgrades: INSERTs wait one short attempt at most.

    Each deployer waits its turn on the advisory lock, retries the DDL until the overall
    deadline, then exits 1 naming the revision, the table and the blocking session.
    """
    url = _at_head(postgres_server, tmp_path)
    chain = copy_chain(tmp_path, PROBE, PROBE_REVISION)
    dsn = postgres_server.dsn("appdb")
    with psycopg.connect(dsn) as holder:
        holder.execute("SET application_name = 'long-report'")
        holder.execute("INSERT INTO users (telegram_user_id) VALUES (1)")
        holder.commit()
        holder.execute("SELECT id FROM users WHERE telegram_user_id = 1 FOR UPDATE")
        holder_pid = holder.info.backend_pid
        inserter = _Inserter(dsn)
        inserter.start()
        time.sleep(0.3)
        env = _environment(url, DATABASE_DDL_LOCK_TIMEOUT=2500)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=3) as pool:
            results = list(pool.map(lambda _: _finish(chain, env, tmp_path), range(3)))
        elapsed = time.perf_counter() - started
        inserter.stop.set()
        inserter.join(10)
    worst = max(inserter.latencies)
    print(  # noqa: T201 - the README's figure
        f"\nblocked migration, 3 deployers, {elapsed:.1f}s: {len(inserter.latencies)} INSERTs, "
        f"max stall {worst * 1000:.0f} ms"
    )
    assert [1, 1, 1] == [result.returncode for result in results], [r.stderr for r in results]
    for result in results:
        line = result.stderr.strip()
        assert 1 == len(line.splitlines()), line
        assert PROBE in line
        assert "users" in line
        assert f"pid {holder_pid}" in line
        assert "'long-report'" in line
        assert "transaction open" in line
    # Every INSERT behind a waiting ALTER TABLE waited one short attempt, not the deadline.
    assert worst < 1.0, worst
    assert len(inserter.latencies) > 50
    assert [(HEAD,)] == _version(postgres_server)

    done = _finish(chain, env, tmp_path)
    assert 0 == done.returncode, done.stderr
    assert [(PROBE,)] == _version(postgres_server)


def test_losing_the_lock_connection_rolls_the_revision_back(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """The lock's connection killed server-side mid-revision: that revision rolls back, exit 1.

    The message says the lock was lost and the revision rolled back; a rerun applies it.
    """
    url = _at_head(postgres_server, tmp_path)
    chain = copy_chain(tmp_path, PROBE, PROBE_REVISION)
    migration = _upgrade(chain, _environment(url, APPDB_TEST_SLOW_SECONDS=3), tmp_path)
    try:

        def sleeping() -> bool:
            if migration.poll() is not None:
                pytest.fail(f"appdb-migrate exited early: {migration.communicate()}")
            return bool(
                postgres_server.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(%'", "appdb"
                )
            )

        _wait_for(sleeping, 60, "the slow revision to start")
        killed = postgres_server.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'", "appdb"
        )
        assert [(True,)] == killed
        _, stderr = migration.communicate(timeout=60)
    finally:
        if migration.poll() is None:
            migration.kill()
            migration.communicate()
    assert 1 == migration.returncode, stderr
    assert 1 == len(stderr.strip().splitlines()), stderr
    assert "migration lock" in stderr
    assert f"{PROBE} was rolled back" in stderr
    assert [(HEAD,)] == _version(postgres_server)
    assert not _has_probe_column(postgres_server)

    rerun = _finish(chain, _environment(url), tmp_path)
    assert 0 == rerun.returncode, rerun.stderr
    assert [(PROBE,)] == _version(postgres_server)


def test_losing_the_lock_watchers_connection_changes_nothing(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """The connection that watches for blocking sessions killed mid-revision: no traceback.

    It only gathers names for a DDLLockTimeoutError; the revision completes, exit 0, and
    stderr stays empty (a primary dying under it printed a thread's traceback before).
    """
    url = _at_head(postgres_server, tmp_path)
    chain = copy_chain(tmp_path, PROBE, PROBE_REVISION)
    migration = _upgrade(chain, _environment(url, APPDB_TEST_SLOW_SECONDS=3), tmp_path)
    watching = (
        "SELECT pid FROM pg_stat_activity "
        "WHERE query LIKE '%pg_blocking_pids%' AND pid <> pg_backend_pid()"
    )
    try:

        def watched() -> bool:
            if migration.poll() is not None:
                pytest.fail(f"appdb-migrate exited early: {migration.communicate()}")
            return bool(postgres_server.execute(watching, "appdb"))

        _wait_for(watched, 60, "the lock watcher to poll")
        killed = postgres_server.execute(
            f"SELECT pg_terminate_backend(pid) FROM ({watching}) AS watcher",  # noqa: S608
            "appdb",
        )
        assert [(True,)] == killed
        stdout, stderr = migration.communicate(timeout=60)
    finally:
        if migration.poll() is None:
            migration.kill()
            migration.communicate()
    assert (0, "") == (migration.returncode, stderr)
    assert f"upgraded {PROBE} in " in stdout
    assert [(PROBE,)] == _version(postgres_server)


def test_rerun_right_after_sigkill_succeeds(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """SIGKILL mid-revision on a server with default settings, rerun at once: it applies the revision.

    The killed migrator's backend notices its client is gone and stops, so its locks go too.
    """
    url = _at_head(postgres_server, tmp_path)
    chain = copy_chain(tmp_path, PROBE, PROBE_REVISION)
    migration = _upgrade(chain, _environment(url, APPDB_TEST_SLOW_SECONDS=120), tmp_path)
    try:

        def sleeping() -> bool:
            if migration.poll() is not None:
                pytest.fail(f"appdb-migrate exited early: {migration.communicate()}")
            return bool(
                postgres_server.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(%'", "appdb"
                )
            )

        _wait_for(sleeping, 60, "the slow revision to start")
        migration.send_signal(signal.SIGKILL)
        migration.wait(10)
    finally:
        if migration.poll() is None:
            migration.kill()
        migration.communicate()
    started = time.perf_counter()
    rerun = _finish(chain, _environment(url, DATABASE_DDL_LOCK_TIMEOUT=5000), tmp_path)
    elapsed = time.perf_counter() - started
    print(f"\nrerun after SIGKILL: exit {rerun.returncode} in {elapsed:.1f}s")  # noqa: T201 - README
    assert 0 == rerun.returncode, rerun.stderr
    assert [(PROBE,)] == _version(postgres_server)
    assert not postgres_server.execute(
        "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(%'", "appdb"
    )


def test_the_lock_survives_a_server_idle_session_timeout(
    make_postgres_server: Callable[..., PostgresServer], tmp_path: Path
) -> None:
    """A server with idle_session_timeout shorter than a revision: the idle lock session lives on."""
    server = make_postgres_server(idle_session_timeout="'1s'")
    url = _at_head(server, tmp_path)
    chain = copy_chain(tmp_path, PROBE, PROBE_REVISION)
    done = _finish(chain, _environment(url, APPDB_TEST_SLOW_SECONDS=2.5), tmp_path)
    assert 0 == done.returncode, done.stderr
    assert f"upgraded {PROBE} in " in done.stdout
    assert [(PROBE,)] == _version(server)
