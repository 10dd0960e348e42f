"""Time `appdb-migrate upgrade` / `current` against `alembic upgrade head` / `alembic current`.

Both run the same bundled migrations as subprocesses (what a deploy step does), on fresh
PostgreSQL databases, in interleaved rounds so that machine noise hits both alike.

    APPDB_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        python benchmarks/bench_migrate.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ADMIN_URL = os.environ.get(
    "APPDB_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
).replace("postgresql://", "postgresql+psycopg://", 1)
ROUNDS = int(os.environ.get("APPDB_BENCH_ROUNDS", "7"))


def _timed(command: list[str], url: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    env["DATABASE_URL"] = url
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)  # noqa: S603
    return time.perf_counter() - started


def main() -> None:
    """Run the interleaved rounds and print medians, minimums and ratios."""
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    commands = {
        "appdb-migrate upgrade": [str(BIN / "appdb-migrate"), "upgrade"],
        "alembic upgrade head": [str(BIN / "alembic"), "upgrade", "head"],
        "appdb-migrate current": [str(BIN / "appdb-migrate"), "current"],
        "alembic current": [str(BIN / "alembic"), "current"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(ROUNDS):
        for tool in ("appdb-migrate", "alembic"):
            name = f"appdb_bench_{uuid.uuid4().hex[:8]}"
            with admin.connect() as connection:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
            url = sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
            try:
                upgrade = f"{tool} upgrade" if tool == "appdb-migrate" else "alembic upgrade head"
                times[upgrade].append(_timed(commands[upgrade], url))
                times[f"{tool} current"].append(_timed(commands[f"{tool} current"], url))
            finally:
                with admin.connect() as connection:
                    connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.dispose()
    print(
        f"{ROUNDS} interleaved rounds, fresh PostgreSQL database per upgrade, wall time per process"
    )
    print(f"{'command':<24}{'min ms':>10}{'median ms':>12}")
    for name, values in times.items():
        print(f"{name:<24}{min(values) * 1000:>10.0f}{statistics.median(values) * 1000:>12.0f}")
    for a, b in (
        ("appdb-migrate upgrade", "alembic upgrade head"),
        ("appdb-migrate current", "alembic current"),
    ):
        ratio = statistics.median(times[a]) / statistics.median(times[b])
        print(f"ratio {a} / {b}: {ratio:.2f}x (median)")


if __name__ == "__main__":
    main()
