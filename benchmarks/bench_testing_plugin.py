"""Per-test overhead of the `appdb.testing` session fixture against per-test database set-ups.

Each variant is a real pytest run (a subprocess) of tests that do one query; pytest's own
set-up and teardown durations of every test are recorded, which is exactly the fixture's cost:

- ``appdb_session``: the plugin (database migrated once per run, a savepoint-isolated session
  in a rolled-back transaction per test);
- create/drop database per test: ``CREATE DATABASE``, the real migration chain, a session,
  ``DROP DATABASE`` (the isolation the plugin replaces);
- create_all/drop_all per test: appdb's tables made from the models and dropped again on one
  database (faster, but not the migrated schema).

Rounds are interleaved so machine noise hits every variant alike; medians are compared.

    APPDB_BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \
        python benchmarks/bench_testing_plugin.py
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ADMIN_URL = os.environ.get(
    "APPDB_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ROUNDS = int(os.environ.get("APPDB_BENCH_ROUNDS", "5"))
TESTS = {"appdb_session": 200, "create/drop database": 10, "create_all/drop_all": 40}

CONFTEST = """
import json, os, uuid

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from appdb import DatabaseSettings, create_engine, metadata, migrate

ADMIN = DatabaseSettings(url=os.environ["APPDB_TEST_DATABASE_URL"]).database_url


def _admin(sql):
    engine = sa.create_engine(ADMIN, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with engine.connect() as connection:
        connection.exec_driver_sql(sql)
    engine.dispose()


@pytest.fixture
def fresh_database_session():
    name = f"appdb_bench_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    settings = DatabaseSettings(url=ADMIN.set(database=name))
    try:
        migrate.upgrade(settings=settings)
        engine = create_engine(settings)
        with Session(engine) as session:
            yield session
        engine.dispose()
    finally:
        _admin(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def shared_engine():
    name = f"appdb_bench_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    engine = create_engine(DatabaseSettings(url=ADMIN.set(database=name)))
    yield engine
    engine.dispose()
    _admin(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def create_all_session(shared_engine):
    metadata.create_all(shared_engine)
    with Session(shared_engine) as session:
        yield session
    metadata.drop_all(shared_engine)


def pytest_runtest_logreport(report):
    if report.when in ("setup", "teardown"):
        with open(os.environ["BENCH_OUT"], "a") as out:
            out.write(json.dumps([report.nodeid, report.when, report.duration]) + "\\n")
"""

TEST = """
import pytest
import sqlalchemy as sa


@pytest.mark.parametrize("n", range({count}))
def test_one_query(n, {fixture}):
    assert 1 == {fixture}.execute(sa.text("SELECT 1")).scalar_one()
"""

FIXTURES = {
    "appdb_session": "appdb_session",
    "create/drop database": "fresh_database_session",
    "create_all/drop_all": "create_all_session",
}


def _run(directory: Path, variant: str) -> list[float]:
    """Run one variant's tests; return each test's set-up + teardown seconds."""
    out = directory / "durations.jsonl"
    out.unlink(missing_ok=True)
    (directory / "test_bench.py").write_text(
        TEST.format(count=TESTS[variant], fixture=FIXTURES[variant])
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    env |= {"APPDB_TEST_DATABASE_URL": ADMIN_URL, "BENCH_OUT": str(out)}
    subprocess.run(  # noqa: S603 - this interpreter's pytest
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(directory)],
        cwd=directory,
        env=env,
        check=True,
        capture_output=True,
    )
    per_test: dict[str, float] = {}
    for line in out.read_text().splitlines():
        nodeid, _when, seconds = json.loads(line)
        per_test[nodeid] = per_test.get(nodeid, 0.0) + seconds
    return list(per_test.values())


def main() -> None:
    """Run the interleaved rounds and print per-test medians and ratios."""
    directory = Path(tempfile.mkdtemp())
    (directory / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    times: dict[str, list[float]] = {variant: [] for variant in TESTS}
    for _ in range(ROUNDS):
        for variant in TESTS:
            times[variant].extend(_run(directory, variant))
    print(
        f"{ROUNDS} interleaved rounds; per-test set-up + teardown in pytest, PostgreSQL; "
        f"tests per round: {', '.join(f'{k} {v}' for k, v in TESTS.items())}"
    )
    print(f"{'fixture':<24}{'tests':>7}{'min ms':>10}{'median ms':>12}{'p90 ms':>10}")
    for variant, values in times.items():
        p90 = statistics.quantiles(values, n=10)[-1]
        print(
            f"{variant:<24}{len(values):>7}{min(values) * 1000:>10.2f}"
            f"{statistics.median(values) * 1000:>12.2f}{p90 * 1000:>10.2f}"
        )
    plugin = statistics.median(times["appdb_session"])
    for baseline in ("create/drop database", "create_all/drop_all"):
        ratio = statistics.median(times[baseline]) / plugin
        print(f"ratio {baseline} / appdb_session: {ratio:.0f}x (median)")


if __name__ == "__main__":
    main()
