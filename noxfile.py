"""Task runner: `nox -s tests`, `lint`, `typecheck`, `wheel`, `examples`, `release`, `index`."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "typecheck", "tests"]

POSTGRESQL_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
VERSION = tomllib.loads(Path("pyproject.toml").read_text())["project"]["version"]


# (directory, MYPYPATH) of each mypy --strict run over the tests; .ci/run runs the same.
TEST_TYPECHECK_DIRECTORIES = [
    ("tests", "src:tests"),
    *(
        (f"tests/{name}", f"src:tests/{name}:tests")
        for name in ("reliability", "scaling", "ha", "skew")
    ),
]


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
    """Mypy --strict on src/ and tests/; mypy and pyright strict on the API and README blocks."""
    session.install("-e", ".[dev]")
    session.run("mypy")
    # The tests, one run per directory: each has its own conftest.py, and its tests import
    # helpers by bare name (its own directory first on MYPYPATH, then tests/ for pgserver etc.).
    for directory, path in TEST_TYPECHECK_DIRECTORIES:
        files = sorted(str(file) for file in Path(directory).glob("*.py"))
        session.run("mypy", "--strict", *files, env={"MYPYPATH": path})
    # Also in the default pytest run; here for a quick look without databases.
    session.run(
        "pytest",
        "tests/test_typing.py",
        "tests/test_readme.py",
        "-k",
        "mypy or pyright or verifytypes",
    )


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
    # advanced-alchemy is a peer bench_hotpath.py measures appdb against, never a dependency.
    session.install("-e", ".[tests]", "advanced-alchemy")
    env = {"APPDB_BENCH_DATABASE_URL": _test_env()["APPDB_TEST_DATABASE_URL"]}
    for script in sorted(Path("benchmarks").glob("bench_*.py")):
        session.run("python", str(script), env=env)


EXAMPLES = ("backend", "bot", "smartspace")

# The fast subset: the top-level suite on SQLite, without the tests marked slow. No server of any
# kind is needed or started (no PostgreSQL, PgBouncer or pg_auto_failover, no wheel builds).
QUICK = (
    "tests",
    "--ignore=tests/reliability",
    "--ignore=tests/scaling",
    "--ignore=tests/ha",
    "--ignore=tests/skew",
    "-m",
    "not slow and not postgresql_only",
    "-k",
    "not postgresql",
    "-p",
    "no:cacheprovider",
)
# With the floors, the same on PostgreSQL where the drivers' floors matter: engines, sessions,
# async, the direct execution on psycopg's and asyncpg's connections (it leans on SQLAlchemy's
# private error handling) and migrations (psycopg, asyncpg, SQLAlchemy, Alembic).
FLOORS_POSTGRESQL = (
    "tests/test_engine.py",
    "tests/test_session.py",
    "tests/test_aio.py",
    "tests/test_direct.py",
    "tests/test_migrations.py",
    "-k",
    "postgresql",
    "-p",
    "no:cacheprovider",
)


@nox.session
def quick(session: nox.Session) -> None:
    """The fast subset (under 2 minutes): SQLite only, nothing slow, no server started."""
    if session.venv_backend != "none":
        session.install("-e", ".[tests]")
    session.run("pytest", "-q", *QUICK, *session.posargs, env={"APPDB_TEST_DATABASE_URL": None})


@nox.session(venv_backend="none")
def examples(session: nox.Session) -> None:
    """Run each example's tests in its own venv, on PostgreSQL and SQLite, on appdb's wheel.

    ``nox -s examples -- bot`` runs one example. The wheel is the one `$APPDB_DIST` holds, or
    is built once for this nox run.
    """
    built = _wheel(_dist(session))
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


def _python(session: nox.Session) -> str:
    """The session's Python: its venv's, or (``--no-venv``, ``venv_backend="none"``) nox's own."""
    return str(Path(session.bin) / "python") if session.venv_backend != "none" else sys.executable


def _dist(session: nox.Session) -> Path:
    """The sdist and wheel of this checkout, built once per CI run.

    `$APPDB_DIST` names a folder that already holds them (``.ci/run`` builds there first, and
    tests/skew reuses it); otherwise they are built now (the wheel from the sdist, which proves
    the sdist complete) and `$APPDB_DIST` is set for the later sessions of this nox run.
    """
    given = os.environ.get("APPDB_DIST")
    if given and list(Path(given).glob(f"appdb-{VERSION}-*.whl")):
        return Path(given)
    if session.venv_backend != "none":
        session.install("build")
    dist = Path(tempfile.mkdtemp(prefix="appdb-dist-"))
    session.run(_python(session), "-m", "build", "--outdir", str(dist), external=True)
    os.environ["APPDB_DIST"] = str(dist)
    return dist


def _wheel(dist: Path) -> Path:
    (wheel,) = dist.glob(f"appdb-{VERSION}-*.whl")
    return wheel


def _check_and_upload(session: nox.Session, dist: Path, *, upload: bool) -> None:
    files = [str(dist / f"appdb-{VERSION}.tar.gz"), str(_wheel(dist))]
    python = _python(session)
    session.run(python, "-m", "twine", "check", "--strict", *files, external=True)
    session.run(python, "-m", "check_wheel_contents", str(_wheel(dist)), external=True)
    if not upload:
        return
    if not (os.environ.get("TWINE_REPOSITORY_URL") or os.environ.get("TWINE_REPOSITORY")):
        # twine's default is the public PyPI, where "appdb" is somebody else's name to take.
        session.error(
            "set TWINE_REPOSITORY_URL (or TWINE_REPOSITORY, a ~/.pypirc section) to the private "
            "index; nothing is uploaded to the public PyPI"
        )
    session.run(python, "-m", "twine", "upload", "--non-interactive", *files, external=True)


@nox.session
def release(session: nox.Session) -> None:
    """Build the sdist and wheel once, check them, upload them to the index twine is given.

    The index comes from twine's usual settings: `TWINE_REPOSITORY_URL`, or `TWINE_REPOSITORY`
    naming a ~/.pypirc section, with `TWINE_USERNAME` / `TWINE_PASSWORD`. ``nox -s release --
    --no-upload`` only builds and checks.
    """
    if session.venv_backend != "none":
        session.install("build", "twine", "check-wheel-contents")
    _check_and_upload(session, _dist(session), upload="--no-upload" not in session.posargs)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _local_index(session: nox.Session, packages: Path, fallback: str) -> Iterator[str]:
    """A pypiserver on a free loopback port; yields its URL (uploads need no password)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (packages.parent / "pypiserver.log").open("w")
    # Names it does not hold are redirected to `fallback`, as a company index proxies PyPI;
    # the names it holds (appdb) are never looked up anywhere else.
    server = subprocess.Popen(  # noqa: S603
        [
            _python(session),
            "-m",
            "pypiserver",
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--authenticate",
            ".",
            "--passwords",
            ".",
            "--fallback-url",
            fallback,
            str(packages),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):  # noqa: S310
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    session.error(f"pypiserver did not start: {log.name}")
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def _isolated_pip_env(index: str) -> dict[str, str | None]:
    """Environment for pip that sees `index` alone: no pip.conf, find-links or extra indexes."""
    env: dict[str, str | None] = {
        name: None for name in os.environ if name.startswith(("PIP_", "VIRTUAL_ENV", "PYTHON"))
    }
    return env | {
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": f"{index}/simple/",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }


@nox.session
def index(session: nox.Session) -> None:
    """Publish to a local package index and install from it as a service repo would.

    Starts pypiserver on loopback, runs the release upload into it, then in a fresh venv outside
    the repo installs ``appdb==<version>`` with ``--index-url`` only, runs ``appdb-migrate
    upgrade`` on SQLite and PostgreSQL, and runs the backend example's tests on both. The
    index serves appdb and redirects every other name to `$APPDB_INDEX_FALLBACK_URL` (PyPI's
    simple index unless set), as a company index proxies PyPI.
    """
    if session.venv_backend != "none":
        session.install("build", "twine", "check-wheel-contents", "pypiserver")
    dist = _dist(session)
    work = Path(tempfile.mkdtemp(prefix="appdb-index-"))
    packages = work / "packages"
    packages.mkdir()
    fallback = os.environ.get("APPDB_INDEX_FALLBACK_URL", "https://pypi.org/simple/")
    with _local_index(session, packages, fallback) as url:
        upload_env = {
            "TWINE_REPOSITORY_URL": f"{url}/",
            "TWINE_USERNAME": "ci",
            # The local index takes uploads from anyone; twine still wants a password.
            "TWINE_PASSWORD": "unused",
        }
        with _patched_environ(upload_env):
            _check_and_upload(session, dist, upload=True)
        venv = work / "venv"
        session.run(sys.executable, "-m", "venv", str(venv), external=True)
        python = str(venv / "bin" / "python")
        report = work / "install-report.json"
        _install_from(session, python, url, "--report", str(report), f"appdb=={VERSION}")
        (appdb,) = (
            item
            for item in json.loads(report.read_text())["install"]
            if item["metadata"]["name"] == "appdb"
        )
        if not appdb["download_info"]["url"].startswith(url):
            session.error(f"appdb came from {appdb['download_info']['url']}, not the local index")
        service = work / "backend"
        shutil.copytree(
            Path("examples/backend"), service, ignore=shutil.ignore_patterns("__pycache__")
        )
        _install_from(session, python, url, f"{service}[test]")
        # What the README's snippets need to run and type-check (test_readme.py): the tests
        # extra, from the same index, and mypy, in a venv of their own (pytest-alembic, in
        # that extra, is no part of a service's test run).
        readme_venv = work / "readme-venv"
        session.run(sys.executable, "-m", "venv", str(readme_venv), external=True)
        readme_python = str(readme_venv / "bin" / "python")
        _install_from(session, readme_python, url, f"appdb[tests]=={VERSION}", "mypy")
    readme = _readme_check(work)
    postgresql = _test_env()["APPDB_TEST_DATABASE_URL"]
    database = f"appdb_index_{os.getpid()}"
    _admin_sql(session, python, postgresql, f'CREATE DATABASE "{database}"')
    try:
        target = postgresql.rsplit("/", 1)[0] + f"/{database}"
        for url_ in (f"sqlite:///{work}/service.sqlite3", target):
            with session.chdir(work):
                session.run(
                    str(venv / "bin" / "appdb-migrate"),
                    "upgrade",
                    env={"DATABASE_URL": url_},
                    external=True,
                )
                session.run(
                    str(venv / "bin" / "appdb-migrate"),
                    "current",
                    "--check",
                    env={"DATABASE_URL": url_},
                    external=True,
                )
        with session.chdir(service):
            for test_database in (postgresql, "sqlite"):
                session.run(
                    python,
                    "-m",
                    "pytest",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    env={"APPDB_TEST_DATABASE_URL": test_database},
                    external=True,
                )
        # Every README snippet, unchanged, against the appdb installed from the index (SQLite
        # and PostgreSQL), the backend and bot ones driven with requests and updates, and
        # type-checked by mypy and pyright against the installed package.
        with session.chdir(readme):
            session.run(
                readme_python,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/test_readme.py",
                env=_test_env(),
                external=True,
            )
    finally:
        _admin_sql(session, python, postgresql, f'DROP DATABASE IF EXISTS "{database}"')
    shutil.rmtree(work, ignore_errors=True)


def _install_from(session: nox.Session, python: str, index: str, *arguments: str) -> None:
    """``pip install`` into the venv of *python* from the local index *index* only."""
    session.run(
        python,
        *("-m", "pip", "install", "--quiet", "--index-url", f"{index}/simple/", *arguments),
        env=_isolated_pip_env(index),
        external=True,
    )


def _readme_check(work: Path) -> Path:
    """A directory outside the repo with the README, its test and nothing of appdb's source."""
    readme = work / "readme"
    (readme / "tests").mkdir(parents=True)
    for name in ("test_readme.py", "conftest.py", "pgserver.py", "venvs.py"):
        shutil.copy(Path("tests", name), readme / "tests" / name)
    for name in ("README.md", "pyproject.toml"):
        shutil.copy(name, readme / name)
    # The test snippet imports the backend example (`from backend.app import create_app`).
    shutil.copytree(
        Path("examples/backend/src"),
        readme / "examples" / "backend" / "src",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return readme


def _admin_sql(session: nox.Session, python: str, admin_url: str, statement: str) -> None:
    code = (
        "import sys, psycopg\n"
        "with psycopg.connect(sys.argv[1], autocommit=True) as c: c.execute(sys.argv[2])"
    )
    session.run(python, "-c", code, admin_url, statement, external=True, silent=True)


@contextlib.contextmanager
def _patched_environ(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@nox.session
def docs(session: nox.Session) -> None:
    """Build the API docs site into site/, in strict mode: a broken link or reference fails.

    mkdocs-material with mkdocstrings (the docstrings of the public modules); the README is the
    quickstart page. ``nox -s docs -- serve`` previews it.
    """
    if session.venv_backend != "none":
        session.install("-e", ".[docs]")
    env = {"NO_MKDOCS_2_WARNING": "1"}
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", "--strict", *session.posargs[1:], env=env)
    else:
        session.run("mkdocs", "build", "--strict", "--clean", *session.posargs, env=env)


def _floors() -> list[str]:
    """``name==X`` for each runtime dependency pyproject declares ``name>=X``.

    pip has no lowest-version resolution; pinning every floor as a constraint is the same for
    our direct dependencies (what they pull in themselves resolves as usual).
    """
    from packaging.requirements import Requirement  # noqa: PLC0415 (nox's own dependency)

    pins = []
    for line in tomllib.loads(Path("pyproject.toml").read_text())["project"]["dependencies"]:
        requirement = Requirement(line)
        floors = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if not floors:
            msg = f"{line!r} declares no >= floor"
            raise ValueError(msg)
        pins.append(f"{requirement.name}=={floors[0]}")
        if requirement.name == "psycopg" and "binary" in requirement.extras:
            pins.append(f"psycopg-binary=={floors[0]}")
    return pins


@nox.session
def floors(session: nox.Session) -> None:
    """The quick subset on the lowest versions pyproject declares for the runtime dependencies.

    Proves the ``>=`` floors true: a feature that needs a newer release fails here.
    """
    pins = _floors()
    constraints = Path(session.create_tmp()) / "floors.txt"
    constraints.write_text("\n".join(pins) + "\n")
    session.install("-c", str(constraints), "-e", ".[tests]")
    # The constraints are what pip installed: show it, and fail if a pin was not honoured.
    from packaging.utils import canonicalize_name  # noqa: PLC0415
    from packaging.version import Version  # noqa: PLC0415

    listed = session.run("python", "-m", "pip", "list", "--format=json", silent=True)
    frozen = {
        canonicalize_name(item["name"]): Version(item["version"])
        for item in json.loads(str(listed))
    }
    missing = [
        pin
        for pin in pins
        if frozen.get(canonicalize_name(pin.partition("==")[0])) != Version(pin.partition("==")[2])
    ]
    if missing:
        session.error(f"not installed at their floors: {missing}")
    session.log("floors: " + ", ".join(pins))
    session.run("pytest", "-q", *QUICK, *session.posargs, env={"APPDB_TEST_DATABASE_URL": None})
    session.run("pytest", "-q", *FLOORS_POSTGRESQL, *session.posargs, env=_test_env())
