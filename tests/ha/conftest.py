"""Fixtures for the high-availability tests: one pg_auto_failover formation for the session.

Starting a monitor and three data nodes takes half a minute, so they are started once and every
test leaves the formation as it found it: `formation` heals killed nodes and waits for one
primary with two synchronous-capable secondaries before each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from appdb import migrate
from autofailover import HA_DATABASE, HA_PASSWORD, HA_USER, Formation, find_pg_autoctl, ha_settings
from pgserver import unavailable


@pytest.fixture(scope="session")
def started_formation(postgresql_bindir: Path) -> Iterator[Formation]:
    """A monitor and three data nodes with appdb's schema in `HA_DATABASE`, owned by `HA_USER`."""
    program = find_pg_autoctl()
    if program is None:
        unavailable(
            "high-availability",
            "pg_autoctl is not installed (apt-get install postgresql-15-auto-failover)",
        )
    formation = Formation(program, postgresql_bindir)
    try:
        formation.start()
        primary = formation.primary()
        primary.execute(f"CREATE ROLE {HA_USER} LOGIN PASSWORD '{HA_PASSWORD}'")
        primary.execute(f"CREATE DATABASE {HA_DATABASE} OWNER {HA_USER}")
        migrate.upgrade(settings=ha_settings(formation))
        yield formation
    finally:
        formation.stop()


@pytest.fixture
def formation(started_formation: Formation) -> Formation:
    """The session's formation, healthy: every node up, one primary, synchronous replication."""
    started_formation.heal()
    return started_formation
