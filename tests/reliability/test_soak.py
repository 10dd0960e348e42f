"""Soak: 8 threads x 2,000 mixed operations with a server restart in the middle."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from appdb import DatabaseSettings
from reliability_helpers import AppDBServer
from soak import run_soak

pytestmark = [pytest.mark.postgresql_only, pytest.mark.slow]


def test_soak_with_restart_stores_exactly_the_successful_sends(
    appdb_server: AppDBServer, record_property: Callable[[str, object], None]
) -> None:
    """After the run the stored messages are exactly the sends that returned success, once each."""
    settings = DatabaseSettings(
        url=appdb_server.url, pool_size=8, max_overflow=2, connect_timeout=2
    )
    result = run_soak(settings, lambda: appdb_server.server.restart(down_for=0.5))
    print(result.report())  # noqa: T201 - the figures the README quotes (pytest -s shows them)
    for phase in result.phases:
        record_property(f"ops_per_second_{phase.name}", round(phase.ops_per_second))

    assert 16_000 == result.operations
    assert [] == result.foreign_errors
    assert set(result.errors) <= {"ConnectionLostError", "DatabaseUnavailableError"}
    assert result.errors, "the restart must have failed some operations"
    assert result.succeeded_sends == result.stored_contents
    before, _during, after = result.phases
    assert 0 == after.failed
    assert before.succeeded > 0
    assert after.succeeded > 0
