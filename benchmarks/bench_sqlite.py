"""SQLite under concurrent writers: throughput with the default WAL and with a rollback journal.

2 processes x 4 threads on one SQLite file for 5 s each run; every operation is its own unit of
work (`touch_telegram_user` + `send_message` + commit) with the default busy timeout (5 s).
Prints, for ``DATABASE_SQLITE_WAL=false`` (rollback journal, ``synchronous=FULL``) and for the
default (WAL, ``synchronous=NORMAL``), successful operations per second, errors and latency
percentiles, then the ratio::

    python benchmarks/bench_sqlite.py

``APPDB_SQLITE_SECONDS``, ``APPDB_SQLITE_PROCESSES`` and ``APPDB_SQLITE_THREADS`` change the load.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(TESTS), str(TESTS / "reliability")]

from sqlite_load import LoadResult, run_load  # noqa: E402 - after the path set-up above


def _run(*, wal: bool, processes: int, threads: int, seconds: float) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="appdb-bench-sqlite-") as directory:
        path = Path(directory) / "bench.sqlite3"
        return run_load(path, wal=wal, processes=processes, threads=threads, seconds=seconds)


def main() -> None:
    """Run both journal modes and print the comparison."""
    seconds = float(os.environ.get("APPDB_SQLITE_SECONDS", "5"))
    processes = int(os.environ.get("APPDB_SQLITE_PROCESSES", "2"))
    threads = int(os.environ.get("APPDB_SQLITE_THREADS", "4"))
    print(f"{processes} processes x {threads} threads, {seconds:g} s per run")
    results = {}
    for label, wal in (("rollback journal", False), ("WAL (default)", True)):
        result = _run(wal=wal, processes=processes, threads=threads, seconds=seconds)
        results[label] = result
        p50, p99 = (result.percentile(fraction) * 1000 for fraction in (0.5, 0.99))
        print(
            f"{label:>17}: {result.throughput:7.1f} ops/s, errors {result.errors or 0}, "
            f"p50 {p50:.0f} ms, p99 {p99:.0f} ms"
        )
    before, after = results["rollback journal"], results["WAL (default)"]
    ratio = after.throughput / before.throughput if before.throughput else float("inf")
    print(f"WAL / rollback journal throughput: {ratio:.2f}x")


if __name__ == "__main__":
    main()
