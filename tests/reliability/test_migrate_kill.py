"""`appdb-migrate upgrade` killed with SIGKILL in the middle of a slow revision."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from chain_copy import HEAD, SLOW_REVISION, cli_on, copy_chain
from pgserver import PostgresServer

pytestmark = [pytest.mark.postgresql_only, pytest.mark.slow]

SCRIPT = str(Path(sys.executable).parent / "appdb-migrate")


def _wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def _finish(command: list[str], url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a migration command to completion, with no slow step."""
    return subprocess.run(
        command,
        env=_environment(url, 0),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _environment(url: str, slow_seconds: float) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    return environment | {"DATABASE_URL": url, "APPDB_TEST_SLOW_SECONDS": str(slow_seconds)}


def test_sigkill_mid_revision_leaves_previous_revision_and_no_lock(
    make_postgres_server: Callable[..., PostgresServer], tmp_path: Path
) -> None:
    """SIGKILL during a slow revision: lock released, database at the previous head, reruns complete."""
    # The server notices a vanished client within 200 ms even while a statement runs, instead of
    # when pg_sleep ends (recommended for production too, see the README).
    server = make_postgres_server(client_connection_check_interval="'200ms'")
    url = server.create_database("appdb").render_as_string(hide_password=False)
    chain = copy_chain(tmp_path, "0003_slow", SLOW_REVISION)

    migration = subprocess.Popen(
        cli_on(chain, "upgrade"),
        env=_environment(url, 120),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:

        def sleeping() -> bool:
            if migration.poll() is not None:
                pytest.fail(f"appdb-migrate exited early: {migration.communicate()}")
            return bool(
                server.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE state = 'active' "
                    "AND query LIKE 'SELECT pg_sleep(%'",
                    "appdb",
                )
            )

        _wait_for(sleeping, 60, "the slow revision to start")
        assert [(1,)] == server.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'", "appdb"
        )
        migration.send_signal(signal.SIGKILL)
        migration.wait(10)
    finally:
        if migration.poll() is None:
            migration.kill()
        migration.communicate()
    assert -signal.SIGKILL == migration.returncode

    _wait_for(
        lambda: not server.execute("SELECT 1 FROM pg_locks WHERE locktype = 'advisory'"),
        15,
        "the advisory lock to be released",
    )
    _wait_for(
        lambda: (
            not server.execute(
                "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(%'"
            )
        ),
        15,
        "the orphaned revision to be rolled back",
    )
    assert [(HEAD,)] == server.execute("SELECT version_num FROM alembic_version", "appdb")
    assert [(None,)] == server.execute("SELECT to_regclass('slow_marker')", "appdb")

    rerun = _finish([SCRIPT, "upgrade"], url, tmp_path)
    assert 0 == rerun.returncode, rerun.stderr
    assert f"nothing to do: database already at {HEAD}" in rerun.stdout

    slow_chain_rerun = _finish(cli_on(chain, "upgrade"), url, tmp_path)
    assert 0 == slow_chain_rerun.returncode, slow_chain_rerun.stderr
    assert "upgraded 0003_slow in " in slow_chain_rerun.stdout
    assert [("0003_slow",)] == server.execute("SELECT version_num FROM alembic_version", "appdb")
