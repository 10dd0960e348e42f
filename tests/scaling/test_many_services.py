"""Many services on one server: each bot its own database, migrations and small pool.

Two databases on one throwaway server, each migrated by its own ``appdb-migrate`` process (at
the same moment), then both services under concurrent load while a monitor samples
``pg_stat_activity``: the server never sees more connections than the pools' configured sum.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from appdb import DatabaseSettings, create_engine, session_scope
from appdb.messages import inbox, send_message, unread_count
from appdb.migrate.chains import appdb_chain, script_directory
from appdb.users import touch_telegram_user
from pgserver import PostgresServer

SERVICES = ("bot_a", "bot_b")
POOL_SIZE, MAX_OVERFLOW = 2, 1
THREADS = 8  # per service, well above its pool
ROUNDS = 25

# The head of appdb's chain, whatever revision that is now.
HEAD = script_directory(appdb_chain()).get_current_head()


def _migrate(url: sa.URL) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": url.render_as_string(hide_password=False)}
    return subprocess.Popen(
        [sys.executable, "-m", "appdb", "upgrade"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_services_stay_within_their_pools(
    make_postgres_server: Callable[..., PostgresServer],
) -> None:
    """Two bots under load: connections per database and in total stay within the pool sizes."""
    server = make_postgres_server()
    urls = {name: server.create_database(name) for name in SERVICES}
    migrations = [_migrate(url) for url in urls.values()]
    for process in migrations:
        out, err = process.communicate(timeout=120)
        assert 0 == process.returncode, err
        assert f"database now at {HEAD}" in out

    engines = {
        name: create_engine(
            DatabaseSettings(
                url=url,
                pool_size=POOL_SIZE,
                max_overflow=MAX_OVERFLOW,
                pool_timeout=60,
                application_name=name,
            )
        )
        for name, url in urls.items()
    }
    peaks: dict[str, int] = dict.fromkeys(SERVICES, 0)
    peak_total = 0
    done = threading.Event()

    def monitor() -> None:
        nonlocal peak_total
        count = (
            "SELECT datname, count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND datname IN ('bot_a', 'bot_b') "
            "GROUP BY datname"
        )
        while not done.is_set():
            rows = dict(server.execute(count))
            for name in SERVICES:
                peaks[name] = max(peaks[name], rows.get(name, 0))
            peak_total = max(peak_total, sum(rows.values()))
            done.wait(0.005)

    def client(name: str, number: int) -> None:
        factory = sessionmaker(engines[name], class_=Session, autoflush=False)
        for round_ in range(ROUNDS):
            with session_scope(factory) as session:
                user = touch_telegram_user(session, 1 + number, first_name=name)
                send_message(session, sender_id=user.id, recipient_id=user.id, content=f"{round_}")
            with session_scope(factory) as session:
                inbox(session, 1, limit=20)
                unread_count(session, 1)

    watcher = threading.Thread(target=monitor)
    watcher.start()
    try:
        with ThreadPoolExecutor(THREADS * len(SERVICES)) as pool:
            futures = [
                pool.submit(client, name, number) for number in range(THREADS) for name in SERVICES
            ]
            for future in futures:
                future.result()
    finally:
        done.set()
        watcher.join()
        for engine in engines.values():
            engine.dispose()

    limit = POOL_SIZE + MAX_OVERFLOW
    assert all(2 <= peak <= limit for peak in peaks.values()), peaks
    assert peak_total <= limit * len(SERVICES)
    for name, url in urls.items():
        assert url.database is not None
        stored = server.execute("SELECT count(*) FROM messages", url.database)
        assert [(THREADS * ROUNDS,)] == stored, name
