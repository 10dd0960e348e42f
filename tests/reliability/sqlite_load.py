"""Concurrent writers on one SQLite file: N processes x M threads, each op its own unit of work.

Run as a script, one writer process: ``python sqlite_load.py FILE SECONDS THREADS WAL`` prints
a JSON line (operations, errors by type, latencies). `run_load` starts the processes together
and sums their results; the tests and ``benchmarks/bench_sqlite.py`` both use it.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import URL

from appdb import DatabaseSettings, create_engine, metadata, session_scope
from appdb.messages import send_message
from appdb.session import SessionLocal
from appdb.users import touch_telegram_user


@dataclass
class LoadResult:
    """What all writer processes did."""

    operations: int = 0
    seconds: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Successful operations per second, all processes together.

        Approximately: the processes start a few milliseconds apart.
        """
        return self.operations / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        """A latency percentile in seconds."""
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def settings_for(path: Path, *, wal: bool) -> DatabaseSettings:
    """The settings every writer uses: the default busy timeout, WAL on or off."""
    return DatabaseSettings(url=URL.create("sqlite", database=str(path)), sqlite_wal=wal)


def _writer(seconds: float, threads: int, result: dict[str, object]) -> None:
    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    errors: dict[str, int] = {}
    messages: list[str] = []
    latencies: list[float] = []
    done = [0]

    def work() -> None:
        rng = random.Random()  # noqa: S311 - test data, not secrets
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                with session_scope() as session:
                    user = touch_telegram_user(session, rng.randint(1, 1000))
                    assert user.id is not None
                    send_message(session, sender_id=user.id, recipient_id=user.id, content="hi")
            except Exception as exc:  # noqa: BLE001 - counted, that is the measurement
                with lock:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    messages.append(str(exc)[:300])
                continue
            with lock:
                done[0] += 1
                latencies.append(time.perf_counter() - started)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    result.update(operations=done[0], errors=errors, messages=messages[:5], latencies=latencies)


def run_load(
    path: Path, *, wal: bool, processes: int = 2, threads: int = 4, seconds: float = 3.0
) -> LoadResult:
    """Create the schema, then run `processes` writer processes at once on the file."""
    engine = create_engine(settings_for(path, wal=wal))
    metadata.create_all(engine)
    engine.dispose()
    command = [sys.executable, __file__, str(path), str(seconds), str(threads), str(int(wal))]
    children = [
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(processes)
    ]
    total = LoadResult()
    for child in children:
        out, _ = child.communicate(timeout=seconds + 60)
        one = json.loads(out.strip().splitlines()[-1])
        total.operations += one["operations"]
        total.latencies += one["latencies"]
        total.messages += one["messages"]
        for name, count in one["errors"].items():
            total.errors[name] = total.errors.get(name, 0) + count
    total.seconds = seconds  # each writer works for `seconds`, after its own start-up
    return total


if __name__ == "__main__":
    file, duration, thread_count, use_wal = sys.argv[1:5]
    SessionLocal.configure(bind=create_engine(settings_for(Path(file), wal=use_wal == "1")))
    outcome: dict[str, object] = {}
    _writer(float(duration), int(thread_count), outcome)
    print(json.dumps(outcome))  # noqa: T201 - the parent reads it
