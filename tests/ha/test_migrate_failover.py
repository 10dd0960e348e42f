"""`appdb-migrate upgrade` running while the primary dies, on pg_auto_failover.

The migration uses the multi-host URL over every node. The primary is killed in the middle of
a slow revision: the command ends with one readable line and exit code 1, the new primary holds
the previous revision and no trace of the interrupted one, and a rerun there completes.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from autofailover import HA_PASSWORD, HA_USER, Formation
from chain_copy import HEAD, SLOW_REVISION, cli_on, copy_chain

pytestmark = [pytest.mark.postgresql_only, pytest.mark.slow]

DATABASE = "appdb_ha_migrate"


def _environment(url: str, slow_seconds: float) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    return environment | {
        "DATABASE_URL": url,
        "DATABASE_CONNECT_TIMEOUT": "2",
        "APPDB_TEST_SLOW_SECONDS": str(slow_seconds),
    }


def test_upgrade_interrupted_by_failover_fails_cleanly_and_reruns(
    formation: Formation, tmp_path: Path
) -> None:
    """Primary killed mid-revision: exit 1, one line, previous revision on the new primary, rerun ok."""
    primary = formation.primary()
    primary.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    primary.execute(f"CREATE DATABASE {DATABASE} OWNER {HA_USER}")
    url = formation.url_text(HA_USER, HA_PASSWORD, DATABASE)
    chain = copy_chain(tmp_path, "0003_slow", SLOW_REVISION)
    command = cli_on(chain, "upgrade")

    migration = subprocess.Popen(
        command,
        env=_environment(url, 120),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        sleeping = "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(%'"
        while not primary.execute(sleeping, DATABASE):
            assert migration.poll() is None, migration.communicate()
            assert time.monotonic() < deadline, "the slow revision did not start"
            time.sleep(0.05)
        killed_at = time.monotonic()
        formation.kill(primary)
        _, stderr = migration.communicate(timeout=60)
    finally:
        if migration.poll() is None:
            migration.kill()
            migration.communicate()
    failed_after = time.monotonic() - killed_at
    assert 1 == migration.returncode
    lines = stderr.strip().splitlines()
    assert 1 == len(lines), stderr
    assert lines[0].startswith("appdb-migrate: error: cannot upgrade"), stderr
    assert "127.0.0.1:" in lines[0]
    assert HA_PASSWORD not in stderr
    assert failed_after < 30

    new_primary = formation.wait_writable()
    assert new_primary is not primary
    assert [(HEAD,)] == new_primary.execute("SELECT version_num FROM alembic_version", DATABASE)
    assert [(None,)] == new_primary.execute("SELECT to_regclass('slow_marker')", DATABASE)
    assert [] == new_primary.execute("SELECT 1 FROM pg_locks WHERE locktype = 'advisory'")

    rerun = subprocess.run(
        command,
        env=_environment(url, 0),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == rerun.returncode, rerun.stderr
    assert "upgraded 0003_slow in " in rerun.stdout
    assert [("0003_slow",)] == new_primary.execute(
        "SELECT version_num FROM alembic_version", DATABASE
    )
