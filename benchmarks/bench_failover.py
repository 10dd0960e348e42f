"""Failover and switchover figures on a real pg_auto_failover formation, under write traffic.

Starts the formation of tests/ha (a monitor and three data nodes on free loopback ports, run as
the ``postgres`` OS user when started as root, ``number_sync_standbys = 1``, the monitor's
health checks shortened) and, per round: 20 threads with the primary killed (SIGKILL to the
postmaster and its keeper), 50 asyncio tasks with the primary killed, and 20 threads through a
planned ``pg_autoctl perform switchover``. Each worker alternates `touch_telegram_user` and
`send_message` through appdb with libpq's multi-host ``DATABASE_URL`` over all nodes. Prints,
per run: seconds from the fault to the first successful operation on the new primary, seconds
to the last failure, the errors (and errors per second over the outage), the sends acknowledged,
lost (acknowledged but not on the new primary), stored twice, and in doubt::

    python benchmarks/bench_failover.py

``APPDB_FAILOVER_ROUNDS`` (default 3) sets the number of rounds.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(TESTS), str(TESTS / "ha")]

from appdb import migrate  # noqa: E402 - after the path set-up above
from autofailover import (  # noqa: E402
    HA_DATABASE,
    HA_PASSWORD,
    HA_USER,
    Formation,
    find_pg_autoctl,
    ha_settings,
)
from pgserver import find_bindir  # noqa: E402
from traffic import Traffic, run_async, run_sync, stored_tokens  # noqa: E402


def _report(name: str, traffic: Traffic, formation: Formation) -> str:
    stored = Counter(stored_tokens(ha_settings(formation), traffic.prefix))
    acknowledged = traffic.successful_sends()
    lost = [token for token in acknowledged if token not in stored]
    twice = [token for token, count in stored.items() if count > 1]
    recovery = traffic.first_success_on(formation.wait_writable().port)
    outage = traffic.outage_seconds()
    failures = traffic.failures_after_fault()
    rate = len(failures) / outage if outage else 0.0
    return (
        f"{name:<22} first success after {recovery or float('nan'):5.2f}s, last failure at "
        f"{outage:5.2f}s, {len(failures):4d} errors ({rate:5.0f}/s) "
        f"{dict(traffic.error_counts) or '{}'}; sends acknowledged {len(acknowledged)}, lost "
        f"{len(lost)}, stored twice {len(twice)}, in doubt {len(traffic.in_doubt_sends())}"
    )


def _kill_primary(formation: Formation) -> Callable[[], object]:
    primary = formation.primary()
    return lambda: formation.kill(primary)


def main() -> None:
    """Run the rounds and print one line per run."""
    program, bindir = find_pg_autoctl(), find_bindir()
    if program is None or bindir is None:
        sys.exit("needs pg_autoctl (postgresql-15-auto-failover) and PostgreSQL's binaries")
    rounds = int(os.environ.get("APPDB_FAILOVER_ROUNDS", "3"))
    formation = Formation(program, bindir)
    try:
        formation.start()
        primary = formation.primary()
        primary.execute(f"CREATE ROLE {HA_USER} LOGIN PASSWORD '{HA_PASSWORD}'")
        primary.execute(f"CREATE DATABASE {HA_DATABASE} OWNER {HA_USER}")
        migrate.upgrade(settings=ha_settings(formation))
        for number in range(rounds):
            formation.heal()
            settings = ha_settings(formation, pool_size=20, max_overflow=0)
            traffic, engine = run_sync(
                settings, _kill_primary(formation), prefix=f"bench-kill-{number}"
            )
            engine.dispose()
            print(_report("kill, 20 threads", traffic, formation), flush=True)

            formation.heal()
            settings = ha_settings(formation, pool_size=50, max_overflow=0)
            traffic = asyncio.run(
                run_async(settings, _kill_primary(formation), prefix=f"bench-akill-{number}")
            )
            print(_report("kill, 50 tasks", traffic, formation), flush=True)

            formation.heal()
            settings = ha_settings(formation, pool_size=20, max_overflow=0)
            traffic, engine = run_sync(
                settings, formation.switchover, prefix=f"bench-switch-{number}"
            )
            engine.dispose()
            print(_report("switchover, 20 threads", traffic, formation), flush=True)
    finally:
        formation.stop()


if __name__ == "__main__":
    main()
