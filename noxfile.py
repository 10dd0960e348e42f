"""Task runner: `nox -s tests`, `lint`, `typecheck`, `wheel`, `examples`."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "typecheck", "tests"]

POSTGRESQL_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _test_env() -> dict[str, str]:
    return {
        "APPDB_TEST_DATABASE_URL": os.environ.get("APPDB_TEST_DATABASE_URL", POSTGRESQL_ADMIN_URL)
    }


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite on SQLite and PostgreSQL."""
    session.install("-e", ".[tests]")
    session.run("pytest", *session.posargs, env=_test_env())


@nox.session
def migrations(session: nox.Session) -> None:
    """The migration suite: bundled revisions, appdb.migrate and the appdb-migrate CLI."""
    if session.venv_backend != "none":
        session.install("-e", ".[tests]")
    session.run(
        "pytest", "tests/test_migrations.py", "tests/test_cli.py", *session.posargs, env=_test_env()
    )


@nox.session
def reliability(session: nox.Session) -> None:
    """Faults on throwaway PostgreSQL servers, hostile input, secrets, least privilege."""
    if session.venv_backend != "none":
        session.install("-e", ".[tests]")
    session.run("pytest", "tests/reliability", *session.posargs, env=_test_env())


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff, lint and format."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Mypy --strict on src/."""
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session
def wheel(session: nox.Session) -> None:
    """Build the wheel, install it in this fresh venv and smoke-test it from outside the repo."""
    session.install("build")
    dist = Path(tempfile.mkdtemp())
    session.run("python", "-m", "build", "--wheel", "--outdir", str(dist))
    (built,) = dist.glob("appdb-*.whl")
    session.install(f"{built}[aiosqlite]")
    outside = tempfile.mkdtemp()
    session.chdir(outside)
    session.run(
        "python",
        "-c",
        "import appdb; from appdb import get_db, SessionLocal, User, Message; "
        "print(appdb.__version__)",
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks; they print figures and ratios against a baseline measured in the same run."""
    session.install("-e", ".[tests]")
    env = {"APPDB_BENCH_DATABASE_URL": _test_env()["APPDB_TEST_DATABASE_URL"]}
    for script in sorted(Path("benchmarks").glob("bench_*.py")):
        session.run("python", str(script), env=env)


EXAMPLES = ("backend", "bot", "smartspace")


@nox.session(venv_backend="none")
def examples(session: nox.Session) -> None:
    """Build appdb's wheel once; run each example's tests in its own venv on PostgreSQL and SQLite.

    ``nox -s examples -- bot`` runs one example.
    """
    dist = Path(tempfile.mkdtemp())
    session.run(sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), external=True)
    (built,) = dist.glob("appdb-*.whl")
    postgresql = _test_env()["APPDB_TEST_DATABASE_URL"]
    for name in session.posargs or EXAMPLES:
        project = Path("examples", name).resolve()
        venv = Path(tempfile.mkdtemp()) / f"example-{name}"
        session.run(sys.executable, "-m", "venv", str(venv), external=True)
        python = str(venv / "bin" / "python")
        session.run(python, "-m", "pip", "install", "--quiet", "--upgrade", "pip", external=True)
        # The example depends on "appdb": pip takes it from the wheel named beside it.
        session.run(
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            f"{built}[testing,aiosqlite]",
            f"{project}[test]",
            external=True,
        )
        with session.chdir(project):
            for database in (postgresql, "sqlite"):
                session.run(
                    python,
                    "-m",
                    "pytest",
                    "-p",
                    "no:cacheprovider",
                    env={"APPDB_TEST_DATABASE_URL": database},
                    external=True,
                )
