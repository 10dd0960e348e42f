"""Beyond one box: throughput direct vs through PgBouncer, reads on the primary vs a replica.

One run builds everything on loopback and removes it afterwards: a throwaway PostgreSQL
primary (tests/pgserver.py) loaded with 10k users and 1M messages, its streaming replica
(``pg_basebackup``), and a PgBouncer in transaction mode in front of the primary
(tests/pgbouncer.py). It prints:

- sizing: rows, bytes per message row and per index entry (``pg_relation_size``,
  ``pg_indexes_size``, ``pg_total_relation_size``), for docs/scaling.md;
- throughput of 50 concurrent clients (threads, one session per operation) for
  ``touch_telegram_user`` and ``inbox`` pages, direct vs through PgBouncer, and inbox pages on
  the primary vs the replica through `RoutingSession`; interleaved rounds, median, ratios
  against "direct, pool 50" measured in the same run.

Run as root or as a user that may run PostgreSQL; needs ``pgbouncer`` (Debian package)::

    python benchmarks/bench_scaling.py

``APPDB_BENCH_SIZING_ONLY=1`` stops after the sizing. ``APPDB_BENCH_MESSAGES`` (default
1000000), ``APPDB_BENCH_CLIENTS`` (50),
``APPDB_BENCH_OPS`` (operations per client and round, 40) and ``APPDB_BENCH_ROUNDS`` (3)
trade time for steadier figures.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from appdb import DatabaseSettings, create_engine, migrate, session_scope
from appdb.messages import inbox
from appdb.routing import RoutingSession
from appdb.users import touch_telegram_user

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from pgbouncer import PgBouncer, find_pgbouncer
from pgserver import PostgresServer, find_bindir

MESSAGES = int(os.environ.get("APPDB_BENCH_MESSAGES", "1000000"))
CLIENTS = int(os.environ.get("APPDB_BENCH_CLIENTS", "50"))
OPS = int(os.environ.get("APPDB_BENCH_OPS", "40"))
ROUNDS = int(os.environ.get("APPDB_BENCH_ROUNDS", "3"))
USERS = 10_000
BOUNCER_SERVER_CONNECTIONS = 20
SERVER_CONF: dict[str, str | int] = {"shared_buffers": "'256MB'", "max_connections": 200}


# --- data and sizing ------------------------------------------------------------------------


def load(url: sa.URL) -> float:
    """USERS users and MESSAGES messages shaped like a bot's; returns the seconds it took."""
    started = time.perf_counter()
    statements = [
        f"""INSERT INTO users (telegram_user_id, telegram_username, first_name, language_code)
            SELECT i, 'user' || i, 'User ' || i, 'en' FROM generate_series(1, {USERS}) AS i""",
        # Texts of 20-99 characters (60 on average), 1 in 10 unread, half in a conversation,
        # 1 in 10 a reply to the message before it.
        f"""INSERT INTO messages (sender_id, recipient_id, content, is_read, conversation_id,
                                  parent_id)
            SELECT 1 + mod(i * 7919, {USERS}), 1 + mod(i * 104729, {USERS}),
                   left(repeat(md5(i::text), 4), 20 + mod(i, 80)::int),
                   mod(i, 10) <> 0,
                   CASE WHEN mod(i, 2) = 0 THEN 'conv-' || mod(i, 100000) END,
                   CASE WHEN mod(i, 10) = 5 THEN i - 1 END
            FROM generate_series(1::bigint, {MESSAGES}) AS i""",
    ]
    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.begin() as connection:
        # Valid by construction: skipping the per-row foreign key triggers saves minutes.
        connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
        for statement in statements:
            connection.exec_driver_sql(statement)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")
    engine.dispose()
    return time.perf_counter() - started


def sizing(url: sa.URL) -> None:
    """Print table, index and per-row sizes of users and messages."""
    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.connect() as connection:
        for table in ("messages", "users"):
            rows, heap, indexes, total, tuple_bytes, content = connection.execute(
                sa.text(
                    f"""SELECT count(*), pg_relation_size('{table}'), pg_indexes_size('{table}'),
                               pg_total_relation_size('{table}'), avg(pg_column_size(t.*)),
                               {"avg(octet_length(content))" if table == "messages" else "0"}
                        FROM {table} AS t"""
                )
            ).one()
            print(
                f"{table}: {rows} rows, heap {heap / 2**20:.1f} MiB ({heap / rows:.0f} B/row, "
                f"tuple {tuple_bytes:.0f} B, content {content:.0f} B), indexes "
                f"{indexes / 2**20:.1f} MiB ({indexes / rows:.0f} B/row), total "
                f"{total / 2**20:.1f} MiB ({total / rows:.0f} B/row)"
            )
            per_index = connection.execute(
                sa.text(
                    "SELECT indexrelname, pg_relation_size(indexrelid) FROM pg_stat_user_indexes "
                    "WHERE relname = :table ORDER BY 2 DESC"
                ),
                {"table": table},
            )
            for name, size in per_index:
                print(f"  {name}: {size / 2**20:.1f} MiB ({size / rows:.1f} B/row)")
    # What partial indexes would save on the columns that are mostly NULL (docs/scaling.md).
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        rows = connection.exec_driver_sql("SELECT count(*) FROM messages").scalar_one()
        for column, key in (("conversation_id", "conversation_id, id"), ("parent_id", "parent_id")):
            sizes = []
            # Both built fresh, so the comparison is not skewed by the page splits of the load.
            for where in ("", f" WHERE {column} IS NOT NULL"):
                connection.exec_driver_sql(f"CREATE INDEX bench_index ON messages ({key}){where}")
                sizes.append(
                    connection.exec_driver_sql(
                        "SELECT pg_relation_size('bench_index')"
                    ).scalar_one()
                )
                connection.exec_driver_sql("DROP INDEX bench_index")
            full, partial = (f"{size / 2**20:.1f} MiB ({size / rows:.1f} B/row)" for size in sizes)
            print(f"  ({key}) freshly built: {full}; WHERE {column} IS NOT NULL: {partial}")
    engine.dispose()


# --- throughput -----------------------------------------------------------------------------

Operation = Callable[[Session, int], None]


def touch(session: Session, n: int) -> None:
    """The bot's per-update upsert of an existing user."""
    touch_telegram_user(session, 1 + n % USERS, first_name="User", language_code="en")


def inbox_page(session: Session, n: int) -> None:
    """A page of 50 of a user's inbox (about 100 messages each)."""
    inbox(session, 1 + (n * 7) % USERS, limit=50)


def throughput(factory: Callable[[], Session], operation: Operation) -> float:
    """Operations per second of CLIENTS threads, each running OPS operations, one session each."""
    barrier = threading.Barrier(CLIENTS + 1)

    def client(number: int) -> None:
        barrier.wait()
        for k in range(OPS):
            with session_scope(factory) as session:  # type: ignore[arg-type]
                operation(session, number * OPS + k)

    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(client, number) for number in range(CLIENTS)]
        barrier.wait()
        started = time.perf_counter()
        for future in futures:
            future.result()
    return CLIENTS * OPS / (time.perf_counter() - started)


def main() -> None:  # noqa: C901, PLR0915 - one scenario, told in order
    """Build the servers, load, measure, print, clean up."""
    bindir, binary = find_bindir(), find_pgbouncer()
    if bindir is None or binary is None:
        sys.exit("needs PostgreSQL server binaries and pgbouncer (apt-get install pgbouncer)")
    print(f"# appdb scaling benchmark, {platform.python_version()}, {os.cpu_count()} CPUs")
    servers: list[PostgresServer] = []
    bouncer: PgBouncer | None = None
    engines: list[sa.Engine] = []
    try:
        primary = PostgresServer.init(bindir, **SERVER_CONF).start()
        servers.append(primary)
        url = primary.create_database("appdb_bench")
        migrate.upgrade(settings=DatabaseSettings(url=url))
        seconds = load(url)
        print(f"loaded {USERS} users and {MESSAGES} messages in {seconds:.1f}s")
        sizing(url)
        if os.environ.get("APPDB_BENCH_SIZING_ONLY"):
            return

        replica = PostgresServer.replica_of(primary, **SERVER_CONF).start()
        servers.append(replica)
        bouncer = PgBouncer(
            binary,
            primary.host,
            primary.port,
            pool_size=BOUNCER_SERVER_CONNECTIONS,
            max_client_conn=CLIENTS * 4,
        ).start()

        def engine(target: sa.URL, pool: int, **fields: Any) -> sa.Engine:
            settings = DatabaseSettings(url=target, pool_size=pool, max_overflow=0, **fields)
            built = create_engine(settings, pool_timeout=120)
            engines.append(built)
            return built

        pooled = bouncer.url("appdb_bench")
        direct_50 = engine(url, CLIENTS)
        direct_20 = engine(url, BOUNCER_SERVER_CONNECTIONS)
        bounced = engine(pooled, CLIENTS, pooler="pgbouncer")
        bounced_null = create_engine(
            DatabaseSettings(url=pooled, pooler="pgbouncer"), poolclass=NullPool
        )
        engines.append(bounced_null)
        on_replica = engine(replica.url("appdb_bench"), CLIENTS)

        def plain(bind: sa.Engine) -> Callable[[], Session]:
            return sessionmaker(bind, class_=Session, autoflush=False)

        def routing() -> Session:
            return RoutingSession(bind=direct_50, replicas=[on_replica], autoflush=False)

        variants: dict[str, tuple[Callable[[], Session], Operation]] = {
            f"touch, direct, pool {CLIENTS}": (plain(direct_50), touch),
            "touch, direct, pool 20": (plain(direct_20), touch),
            f"touch, PgBouncer ({BOUNCER_SERVER_CONNECTIONS} server conns), pool {CLIENTS}": (
                plain(bounced),
                touch,
            ),
            "touch, PgBouncer, NullPool": (plain(bounced_null), touch),
            f"inbox, direct, pool {CLIENTS}": (plain(direct_50), inbox_page),
            "inbox, direct, pool 20": (plain(direct_20), inbox_page),
            f"inbox, PgBouncer ({BOUNCER_SERVER_CONNECTIONS} server conns), pool {CLIENTS}": (
                plain(bounced),
                inbox_page,
            ),
            "inbox, PgBouncer, NullPool": (plain(bounced_null), inbox_page),
            "inbox, replica via RoutingSession": (routing, inbox_page),
        }
        for factory, operation in variants.values():  # warm pools and caches
            throughput(factory, operation)
        results: dict[str, list[float]] = {name: [] for name in variants}
        names = list(variants)
        for round_ in range(ROUNDS):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                results[name].append(throughput(*variants[name]))
        print(
            f"\n{CLIENTS} clients x {OPS} operations, {ROUNDS} interleaved rounds "
            "(operations per second)"
        )
        print(f"| variant | median /s | best /s | x direct pool {CLIENTS} (median) |")
        print("| --- | ---: | ---: | ---: |")
        for name, figures in results.items():
            baseline = statistics.median(results[name.split(",")[0] + f", direct, pool {CLIENTS}"])
            median = statistics.median(figures)
            print(f"| {name} | {median:.0f} | {max(figures):.0f} | {median / baseline:.2f} |")
        pools = [row for row in bouncer.show("POOLS") if row["database"] == "appdb_bench"]
        print(f"\nPgBouncer pool after the run: {pools}")
    finally:
        for built in engines:
            built.dispose()
        if bouncer is not None:
            bouncer.stop()
        for server in reversed(servers):
            server.destroy()


if __name__ == "__main__":
    main()
