"""The soak run shared by tests/reliability/test_soak.py and benchmarks/bench_soak.py.

Threads run a bot-like mix of appdb operations, each in its own unit of work, while the server
restarts in the middle; every successful send carries a unique token, so the stored messages can
be compared with the sends that returned success.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from appdb import AppDBError, DatabaseSettings, create_engine, session_scope
from appdb.messages import inbox, mark_read, send_message
from appdb.users import touch_telegram_user

OPERATIONS = ("touch", "send", "inbox", "mark_read")
WEIGHTS = (25, 35, 25, 15)
BACKOFF_SECONDS = 0.05  # a failed request waits a little before the next, as a service would


@dataclass
class Phase:
    """Operations finished in one phase of the run."""

    name: str
    seconds: float
    succeeded: int
    failed: int

    @property
    def ops_per_second(self) -> float:
        """Successful operations per second."""
        return self.succeeded / self.seconds if self.seconds > 0 else 0.0


@dataclass
class SoakResult:
    """What a soak run did and what the database holds afterwards."""

    operations: int
    phases: list[Phase]
    succeeded_sends: list[str]
    stored_contents: list[str]
    errors: Counter[str] = field(default_factory=Counter)
    foreign_errors: list[BaseException] = field(default_factory=list)
    restart_seconds: float = 0.0

    def report(self) -> str:
        """The figures as a few lines of text."""
        lines = [
            (
                f"{self.operations} operations, restart took {self.restart_seconds:.2f}s, "
                f"errors: {dict(self.errors) or 'none'}"
            ),
            (
                f"sends succeeded {len(self.succeeded_sends)}, messages stored "
                f"{len(self.stored_contents)}, distinct {len(set(self.stored_contents))}"
            ),
        ]
        lines.extend(
            f"{phase.name:>6}: {phase.ops_per_second:8.0f} ops/s ({phase.succeeded} ok, "
            f"{phase.failed} failed in {phase.seconds:.2f}s)"
            for phase in self.phases
        )
        return "\n".join(lines)


@dataclass
class _Worker:
    number: int
    user_ids: list[int]
    operations: int
    factory: sessionmaker[Session]
    finished: list[tuple[float, bool]] = field(default_factory=list)
    sends: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    foreign: list[BaseException] = field(default_factory=list)

    def run(self) -> None:
        chooser = random.Random(self.number)  # noqa: S311 - a reproducible mix
        me = self.user_ids[self.number]
        for number in range(self.operations):
            operation = chooser.choices(OPERATIONS, WEIGHTS)[0]
            token = f"soak-{self.number}-{number}"
            try:
                with session_scope(self.factory) as session:
                    if operation == "touch":
                        touch_telegram_user(session, 10_000 + self.number, first_name="soak")
                    elif operation == "send":
                        recipient = chooser.choice(self.user_ids)
                        send_message(session, sender_id=me, recipient_id=recipient, content=token)
                    elif operation == "inbox":
                        inbox(session, me, limit=20)
                    else:
                        mark_read(session, me)
            except AppDBError as exc:
                self.errors[type(exc).__name__] += 1
                self.finished.append((time.monotonic(), False))
                time.sleep(BACKOFF_SECONDS)
            except Exception as exc:  # noqa: BLE001 - a driver error leaking out is the finding
                self.foreign.append(exc)
                self.finished.append((time.monotonic(), False))
                time.sleep(BACKOFF_SECONDS)
            else:
                if operation == "send":
                    self.sends.append(token)
                self.finished.append((time.monotonic(), True))


def run_soak(
    settings: DatabaseSettings,
    restart: Callable[[], None],
    *,
    threads: int = 8,
    operations: int = 2000,
    settle_seconds: float = 1.0,
) -> SoakResult:
    """Run `threads` x `operations` mixed operations, calling `restart` halfway through.

    Args:
        settings: The database, which must hold appdb's (empty) tables.
        restart: Restarts the server; called once, when half the operations are done.
        threads: Concurrent workers, each with its own pooled connection.
        operations: Operations per worker.
        settle_seconds: How long after the restart still counts as "during" it.

    Returns:
        The per-phase figures, the errors, and the sent and stored message tokens.
    """
    engine = create_engine(settings)
    factory = sessionmaker(engine, class_=Session, autoflush=False)
    with session_scope(factory) as session:
        user_ids = [
            touch_telegram_user(session, 10_000 + number, first_name="soak").id
            for number in range(threads)
        ]
    workers = [
        _Worker(number, [int(user_id) for user_id in user_ids if user_id], operations, factory)
        for number in range(threads)
    ]
    running = [threading.Thread(target=worker.run) for worker in workers]
    started = time.monotonic()
    for thread in running:
        thread.start()
    half = threads * operations // 2
    while sum(len(worker.finished) for worker in workers) < half:
        time.sleep(0.005)
    restart_started = time.monotonic()
    restart()
    restart_ended = time.monotonic()
    for thread in running:
        thread.join()
    ended = time.monotonic()

    with engine.connect() as connection:
        stored = list(connection.execute(sa.text("SELECT content FROM messages")).scalars())
    engine.dispose()

    finished = [item for worker in workers for item in worker.finished]
    settled = restart_ended + settle_seconds
    bounds = [
        ("before", started, restart_started),
        ("during", restart_started, settled),
        ("after", settled, ended),
    ]
    phases = [
        Phase(
            name,
            max(high - low, 0.0),
            sum(ok for at, ok in finished if low <= at < high),
            sum(not ok for at, ok in finished if low <= at < high),
        )
        for name, low, high in bounds
    ]
    errors: Counter[str] = Counter()
    for worker in workers:
        errors.update(worker.errors)
    return SoakResult(
        operations=len(finished),
        phases=phases,
        succeeded_sends=sorted(token for worker in workers for token in worker.sends),
        stored_contents=sorted(stored),
        errors=errors,
        foreign_errors=[exc for worker in workers for exc in worker.foreign],
        restart_seconds=restart_ended - restart_started,
    )
