"""A primary failover and a planned switchover under write traffic, on pg_auto_failover.

20 threads (sync) and 50 asyncio tasks run touches and sends through appdb with libpq's
multi-host `DATABASE_URL` over all three nodes (``target_session_attrs=read-write``, appdb's
default) while the primary is killed with SIGKILL or switched over. With synchronous
replication no send that returned success may be missing on the new primary, and none may be
stored twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from appdb import ConnectionLostError, DatabaseUnavailableError
from autofailover import HA_PASSWORD, Formation, ha_settings
from traffic import Traffic, run_async, run_sync, stored_tokens

pytestmark = [pytest.mark.postgresql_only, pytest.mark.slow]

# Generous bounds for a shared 2-core machine; the measured figures are in docs/scaling.md.
FAILOVER_BOUND_SECONDS = 30.0
SWITCHOVER_BOUND_SECONDS = 30.0


def _check_errors(traffic: Traffic) -> None:
    """Only appdb's "try again" errors, each one readable line without the password.

    `ReadOnlyTransactionError` is one of them (a `DatabaseUnavailableError`): a connection made
    to the old primary while pg_auto_failover restarts and demotes it refuses the write, and
    the connection is discarded.
    """
    allowed = (ConnectionLostError, DatabaseUnavailableError)
    foreign = [error for error in traffic.errors if not isinstance(error, allowed)]
    assert [] == foreign
    for error in traffic.errors:
        text = str(error)
        assert "\n" not in text
        assert HA_PASSWORD not in text
        assert "Ha%40pw" not in text
        assert "127.0.0.1:" in text


def _check_writes(traffic: Traffic, formation: Formation) -> None:
    """Every acknowledged send is on the new primary, once; nothing else but in-doubt commits."""
    stored = stored_tokens(ha_settings(formation), traffic.prefix)
    counts = Counter(stored)
    acknowledged = traffic.successful_sends()
    assert acknowledged, "no send succeeded at all"
    assert [] == [token for token in acknowledged if token not in counts]
    assert [] == [token for token, count in counts.items() if count > 1]
    unexplained = set(counts) - set(acknowledged) - traffic.in_doubt_sends()
    assert set() == unexplained


def _kill_primary(formation: Formation) -> Callable[[], object]:
    primary = formation.primary()
    return lambda: formation.kill(primary)


def test_sync_traffic_survives_killing_the_primary(formation: Formation) -> None:
    """SIGKILL of the primary: 20 threads recover on the new primary, same engine, no write lost."""
    old = formation.primary()
    traffic, engine = run_sync(
        ha_settings(formation, pool_size=20, max_overflow=0),
        _kill_primary(formation),
        prefix="sync-kill",
        threads=20,
    )
    try:
        new = formation.wait_writable()
        assert new is not old
        recovery = traffic.first_success_on(new.port)
        assert recovery is not None
        assert recovery < FAILOVER_BOUND_SECONDS
        assert traffic.workers_recovered(20)
        assert traffic.errors, "killing the primary went unnoticed: was traffic running?"
        _check_errors(traffic)
        # The pool recovered in place: the same engine reaches the new primary.
        with engine.connect() as connection:
            port = connection.execute(sa.text("SELECT inet_server_port()")).scalar_one()
            in_recovery = connection.execute(sa.text("SELECT pg_is_in_recovery()")).scalar_one()
        assert (False, True) == (in_recovery, port != old.port)
    finally:
        engine.dispose()
    _check_writes(traffic, formation)


@pytest.mark.anyio
async def test_async_traffic_survives_killing_the_primary(formation: Formation) -> None:
    """SIGKILL of the primary: 50 asyncio tasks recover on one async engine, no write lost."""
    old = formation.primary()
    traffic = await run_async(
        ha_settings(formation, pool_size=50, max_overflow=0),
        _kill_primary(formation),
        prefix="async-kill",
        tasks=50,
    )
    new = formation.wait_writable()
    assert new is not old
    recovery = traffic.first_success_on(new.port)
    assert recovery is not None
    assert recovery < FAILOVER_BOUND_SECONDS
    assert traffic.workers_recovered(50)
    assert traffic.errors
    _check_errors(traffic)
    _check_writes(traffic, formation)


def test_planned_switchover_costs_less(formation: Formation) -> None:
    """A switchover under 20 threads: the same guarantees, and a short outage."""
    old = formation.primary()
    traffic, engine = run_sync(
        ha_settings(formation, pool_size=20, max_overflow=0),
        formation.switchover,
        prefix="switchover",
        threads=20,
    )
    try:
        new = formation.primary()
        assert new is not old
        recovery = traffic.first_success_on(new.port)
        assert recovery is not None
        assert recovery < SWITCHOVER_BOUND_SECONDS
        assert traffic.workers_recovered(20)
        _check_errors(traffic)
        with engine.connect() as connection:
            port = connection.execute(sa.text("SELECT inet_server_port()")).scalar_one()
        assert port != old.port
    finally:
        engine.dispose()
    _check_writes(traffic, formation)
