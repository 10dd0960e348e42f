"""Throwaway PostgreSQL servers that tests may restart, kill and replicate without touching the shared one.

Each server is an `initdb` cluster in its own temporary directory, listening on a free loopback port. PostgreSQL refuses
to run as root, so when the tests run as root every server command runs as the ``postgres`` OS user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, NoReturn, Self

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

SERVER_USER = "postgres"
_START_TIMEOUT = 60


def find_bindir() -> Path | None:
    """The directory holding `initdb` and `pg_ctl`: ``$APPDB_PG_BINDIR``, else the newest Debian install, else PATH."""
    candidates: list[Path] = []
    if explicit := os.environ.get("APPDB_PG_BINDIR"):
        candidates.append(Path(explicit))

    def version(path: Path) -> int:
        match = re.search(r"/(\d+)/bin$", str(path))
        return int(match.group(1)) if match else 0

    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True))
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).parent)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    return None


def unavailable(tests: str, reason: str) -> NoReturn:
    """Stop a test that lacks a program or server: a failure in CI (``CI`` set), a visible skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the {tests} tests: {reason}")
    pytest.skip(f"{tests} tests skipped: {reason}")


def create_database(admin_url: URL, prefix: str = "appdb_test", template: str | None = None) -> URL:
    """Create a database with a unique name on the admin URL's server; return its URL.

    Empty, or a copy of the database named `template` (which nothing may be connected to).
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with engine.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"{copy}')
    return admin_url.set(database=name)


def drop_database(admin_url: URL, url: URL) -> None:
    """Drop a database made by `create_database`, whoever is still connected."""
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with engine.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user() -> dict[str, Any]:
    """`subprocess` arguments that drop root to the ``postgres`` user; nothing when not root."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(SERVER_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _hand_over(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SERVER_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


class PostgresServer:
    """One throwaway PostgreSQL cluster: `init` it (or `replica_of` another), then `start`, `restart`, `crash`, `stop`."""

    def __init__(self, bindir: Path, root: Path, port: int) -> None:
        """Wrap a cluster whose data directory is ``root/data``; use `init` or `replica_of` to create one."""
        self.bindir = bindir
        self.root = root
        self.port = port
        self.host = "127.0.0.1"
        self.datadir = root / "data"
        self.logfile = root / "server.log"

    def __repr__(self) -> str:
        """Where the server listens and keeps its data."""
        return f"<PostgresServer {self.host}:{self.port} {self.datadir}>"

    @classmethod
    def _make_root(cls) -> Path:
        # Under /tmp, not pytest's tmp_path: that one is private to root and the server user could not enter it.
        root = Path(tempfile.mkdtemp(prefix="appdb-pg-"))
        _hand_over(root)
        return root

    @classmethod
    def init(cls, bindir: Path, **conf: str | int) -> Self:
        """Create a new cluster (trust auth on loopback, fsync off) with extra ``postgresql.conf`` settings."""
        server = cls(bindir, cls._make_root(), free_port())
        server._run(
            "initdb",
            "-D",
            str(server.datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        server._configure(conf)
        return server

    @classmethod
    def replica_of(cls, primary: PostgresServer, **conf: str | int) -> Self:
        """A streaming hot-standby replica of a running `primary`, made with ``pg_basebackup -R``."""
        server = cls(primary.bindir, cls._make_root(), free_port())
        server._run(
            "pg_basebackup",
            *("-h", primary.host, "-p", str(primary.port), "-U", "postgres"),
            *("-D", str(server.datadir), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync"),
        )
        server._configure({"hot_standby": "on", **conf})
        return server

    def _configure(self, conf: dict[str, str | int]) -> None:
        settings: dict[str, str | int] = {
            "listen_addresses": "'127.0.0.1'",
            "port": self.port,
            "unix_socket_directories": f"'{self.root}'",
            "fsync": "off",
            "max_connections": 100,
            "shared_buffers": "'32MB'",
            "logging_collector": "off",
            **conf,
        }
        # The last line wins in postgresql.conf, so appending overrides whatever a base backup copied.
        with (self.datadir / "postgresql.conf").open("a") as config:
            config.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def _run(
        self, program: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bindir / program), *args],
            check=check,
            capture_output=True,
            text=True,
            cwd=self.root,
            timeout=_START_TIMEOUT * 2,
            **_as_server_user(),
        )

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run(
            "pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), *args, check=check
        )

    def start(self) -> Self:
        """Start the server and wait until it accepts connections."""
        result = self._pg_ctl("start", "-w", "-t", str(_START_TIMEOUT), check=False)
        if result.returncode != 0:
            log = self.logfile.read_text() if self.logfile.exists() else ""
            msg = f"pg_ctl start failed on port {self.port}: {result.stderr.strip()}\n{log[-2000:]}"
            raise RuntimeError(msg)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = _START_TIMEOUT) -> None:
        """Block until a connection succeeds (a started server may still be recovering)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` disconnects clients cleanly, ``immediate`` is a crash (recovery on next start)."""
        self._pg_ctl("stop", "-w", "-m", mode, check=False)

    def crash(self) -> None:
        """Stop without a shutdown checkpoint, as a crash would; the next `start` runs crash recovery."""
        self.stop("immediate")

    def restart(self, mode: str = "fast", down_for: float = 0.0) -> None:
        """Stop, optionally stay down for `down_for` seconds, and start again."""
        self.stop(mode)
        if down_for:
            time.sleep(down_for)
        self.start()

    @property
    def running(self) -> bool:
        """Whether the postmaster is up."""
        return self._pg_ctl("status", check=False).returncode == 0

    def url(
        self, database: str = "postgres", user: str = "postgres", password: str | None = None
    ) -> URL:
        """A SQLAlchemy URL (psycopg 3) for a database on this server."""
        return URL.create(
            "postgresql+psycopg",
            username=user,
            password=password,
            host=self.host,
            port=self.port,
            database=database,
        )

    def dsn(self, database: str = "postgres") -> str:
        """A libpq connection string for the superuser."""
        return f"host={self.host} port={self.port} user=postgres dbname={database}"

    def execute(self, sql: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement as the superuser in autocommit mode; return its rows (empty when it has none)."""
        with psycopg.connect(self.dsn(database), autocommit=True, connect_timeout=5) as conn:
            cursor = conn.execute(sql.encode())
            return list(cursor.fetchall()) if cursor.description else []

    def create_database(self, name: str) -> URL:
        """Create a database and return its URL."""
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def destroy(self) -> None:
        """Stop the server (if running) and delete its directory."""
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
