"""Soak throughput before, during and after a PostgreSQL restart, against a run without one.

Starts two throwaway PostgreSQL servers (``initdb`` + ``pg_ctl`` in temporary directories, run
as the ``postgres`` OS user when started as root; binaries from ``APPDB_PG_BINDIR`` or
``/usr/lib/postgresql/*/bin``). On each, 8 threads run 2,000 mixed operations each (touch 25 %,
send 35 %, inbox 25 %, mark_read 15 %), every one its own unit of work through appdb's engine
(pool pre-ping on, the default). The baseline run calls a no-op halfway; the other restarts the
server there (fast shutdown, 0.5 s down). Prints successful operations per second in each phase
("during" = from the restart until 1 s after the server is back), the errors, and whether the
stored messages are exactly the successful sends::

    python benchmarks/bench_soak.py

``APPDB_SOAK_THREADS`` and ``APPDB_SOAK_OPS`` (per thread) change the load.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(TESTS), str(TESTS / "reliability")]

from appdb import DatabaseSettings  # noqa: E402 - after the path set-up above
from pgserver import PostgresServer, find_bindir  # noqa: E402
from reliability_helpers import with_schema  # noqa: E402
from soak import SoakResult, run_soak  # noqa: E402


def _soak(bindir: Path, *, restart: bool, threads: int, operations: int) -> SoakResult:
    server = PostgresServer.init(bindir).start()
    try:
        database = with_schema(server)
        settings = DatabaseSettings(
            url=database.url, pool_size=threads, max_overflow=2, connect_timeout=2
        )

        def restart_server() -> None:
            if restart:
                server.restart(down_for=0.5)

        return run_soak(settings, restart_server, threads=threads, operations=operations)
    finally:
        server.destroy()


def main() -> int:
    """Run the baseline and the restart soak; print figures and ratios."""
    bindir = find_bindir()
    if bindir is None:
        print("no PostgreSQL server binaries: set APPDB_PG_BINDIR", file=sys.stderr)
        return 1
    threads = int(os.environ.get("APPDB_SOAK_THREADS", "8"))
    operations = int(os.environ.get("APPDB_SOAK_OPS", "2000"))
    print(f"soak: {threads} threads x {operations} operations, PostgreSQL from {bindir}")
    baseline = _soak(bindir, restart=False, threads=threads, operations=operations)
    restarted = _soak(bindir, restart=True, threads=threads, operations=operations)
    for name, result in (("no restart (baseline)", baseline), ("restart halfway", restarted)):
        print(f"\n== {name}\n{result.report()}")
        exact = result.succeeded_sends == result.stored_contents
        leaked = len(result.foreign_errors)
        print(f"stored == succeeded sends: {exact}; driver errors leaked: {leaked}")
    print("\nops/s vs baseline, same phase:")
    for ours, base in zip(restarted.phases, baseline.phases, strict=True):
        ratio = ours.ops_per_second / base.ops_per_second if base.ops_per_second else 0.0
        print(
            f"{ours.name:>6}: {ours.ops_per_second:6.0f} vs {base.ops_per_second:6.0f} "
            f"= {ratio:.2f}x"
        )
    ok = all(
        result.succeeded_sends == result.stored_contents and not result.foreign_errors
        for result in (baseline, restarted)
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
