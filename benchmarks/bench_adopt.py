"""Time `appdb.migrate.adopt()` on the backend's layout: 100k users and 1M messages by default.

The baseline, measured in the same run on the same rows, is the floor of any adoption: one
transaction that copies both tables into fresh tables with the same indexes
(``CREATE TABLE ... (LIKE ... INCLUDING ALL)`` and ``INSERT ... SELECT``), then rolls back.
adopt does that copy plus the plan's checks, the baseline revisions, the conversions (naive
timestamps, lower-cased emails, replies), appdb's constraints and indexes, the count and drift
verifications.

    APPDB_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        python benchmarks/bench_adopt.py
"""

from __future__ import annotations

import os
import re
import statistics
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from appdb import DatabaseSettings
from appdb.migrate.adopt import adopt, plan

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get(
    "APPDB_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
).replace("postgresql://", "postgresql+psycopg://", 1)
USERS = int(os.environ.get("APPDB_BENCH_USERS", "100000"))
MESSAGES = int(os.environ.get("APPDB_BENCH_MESSAGES", "1000000"))
ROUNDS = int(os.environ.get("APPDB_BENCH_ROUNDS", "1"))
BCRYPT = "$2b$12$" + "a" * 53  # a bcrypt-shaped hash: copied as is, never verified here


def _backend_ddl() -> list[str]:
    text = (ROOT / "docs" / "adopting.md").read_text()
    [body] = re.findall(r"```sql backend postgresql\n(.*?)```", text, re.DOTALL)
    return [part.strip() for part in body.split(";") if part.strip()]


def _seed(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for statement in _backend_ddl():
            connection.exec_driver_sql(statement)
        connection.exec_driver_sql(
            "INSERT INTO users (username, email, hashed_password, full_name, created_at) "
            f"SELECT 'user' || g, 'User' || g || '@Example.com', '{BCRYPT}', 'Full Name ' || g, "
            "now()::timestamp - g * interval '1 minute' "
            f"FROM generate_series(1, {USERS}) AS g"
        )
        connection.exec_driver_sql(
            "INSERT INTO messages (sender_id, recipient_id, content, is_read, parent_id, "
            "conversation_id, created_at, updated_at) "
            f"SELECT 1 + mod(g, {USERS}), 1 + mod(g * 7, {USERS}), 'message number ' || g, "
            "mod(g, 3) = 0, "
            "CASE WHEN g > 1 AND mod(g, 5) = 0 THEN g - 1 END, 'c-' || mod(g, 1000), "
            "now()::timestamp, CASE WHEN mod(g, 2) = 0 THEN now()::timestamp END "
            f"FROM generate_series(1, {MESSAGES}) AS g"
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()


def _plain_copy(url: str) -> float:
    engine = sa.create_engine(url)
    started = time.perf_counter()
    with engine.connect() as connection:
        for table in ("users", "messages"):
            connection.exec_driver_sql(f"CREATE TABLE copy_{table} (LIKE {table} INCLUDING ALL)")
            connection.exec_driver_sql(f"INSERT INTO copy_{table} SELECT * FROM {table}")
        connection.rollback()
    engine.dispose()
    return time.perf_counter() - started


def main() -> None:
    """Seed, time the plain copy and the adoption, interleaved per round; print the figures."""
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    times: dict[str, list[float]] = {"plain copy (floor)": [], "adopt --plan": [], "adopt": []}
    for _ in range(ROUNDS):
        name = f"appdb_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
        try:
            started = time.perf_counter()
            _seed(url)
            print(
                f"seeded {USERS} users, {MESSAGES} messages in {time.perf_counter() - started:.1f}s"
            )
            times["plain copy (floor)"].append(_plain_copy(url))
            settings = DatabaseSettings(url=url)
            started = time.perf_counter()
            found = plan(settings)
            times["adopt --plan"].append(time.perf_counter() - started)
            assert found.ready, found.lines()  # noqa: S101
            started = time.perf_counter()
            adopt(settings)
            times["adopt"].append(time.perf_counter() - started)
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.dispose()
    floor = statistics.median(times["plain copy (floor)"])
    print(f"\n{USERS} users, {MESSAGES} messages, {ROUNDS} round(s)")
    print(f"{'step':<22} {'min s':>8} {'median s':>9} {'x floor':>8}")
    for step, values in times.items():
        median = statistics.median(values)
        print(f"{step:<22} {min(values):>8.2f} {median:>9.2f} {median / floor:>8.2f}")


if __name__ == "__main__":
    main()
