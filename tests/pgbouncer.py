"""Throwaway PgBouncer processes in front of a test PostgreSQL server, for the pooler tests.

Each `PgBouncer` writes its own ini, auth file and log into a temporary directory and runs
``pgbouncer`` in the foreground on a free loopback port, so it never touches (or depends on)
the system service the Debian package may have started on 6432. PgBouncer refuses to run as
root, so when the tests run as root it runs as the ``postgres`` OS user, like `pgserver`.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Self

import psycopg
from sqlalchemy.engine import URL

from pgserver import _as_server_user, _hand_over, free_port

_START_TIMEOUT = 30


def find_pgbouncer() -> Path | None:
    """The ``pgbouncer`` binary: on PATH, else where Debian installs it."""
    found = shutil.which("pgbouncer")
    if found:
        return Path(found)
    debian = Path("/usr/sbin/pgbouncer")
    return debian if debian.is_file() else None


class PgBouncer:
    """One PgBouncer in front of ``upstream_host:upstream_port``, every database passed through."""

    def __init__(
        self,
        binary: Path,
        upstream_host: str,
        upstream_port: int,
        *,
        pool_mode: str = "transaction",
        pool_size: int = 5,
        max_client_conn: int = 200,
        password: str | None = None,
        **extra: str | int,
    ) -> None:
        """Prepare the configuration; `start` runs it.

        Clients log in without a password (``auth_type = trust``) as ``postgres``; PgBouncer
        logs in to the server with `password`, if the server asks for one.
        """
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="appdb-pgbouncer-"))
        _hand_over(self.root)
        self.logfile = self.root / "pgbouncer.log"
        self.process: subprocess.Popen[bytes] | None = None
        auth_file = self.root / "users.txt"
        auth_file.write_text(f'"postgres" "{password or ""}"\n')
        auth_file.chmod(0o600)
        settings: dict[str, str | int] = {
            "listen_addr": self.host,
            "listen_port": self.port,
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": str(auth_file),
            "admin_users": "postgres",
            "pool_mode": pool_mode,
            "default_pool_size": pool_size,
            "max_client_conn": max_client_conn,
            "logfile": str(self.logfile),
            "pidfile": str(self.root / "pgbouncer.pid"),
            "server_check_delay": 0,
            **extra,
        }
        lines = [
            "[databases]",
            f"* = host={upstream_host} port={upstream_port}",
            "[pgbouncer]",
            *(f"{name} = {value}" for name, value in settings.items()),
        ]
        self.ini = self.root / "pgbouncer.ini"
        self.ini.write_text("\n".join(lines) + "\n")
        for path in (auth_file, self.ini):
            _hand_over(path)

    def __repr__(self) -> str:
        """Where PgBouncer listens."""
        return f"<PgBouncer {self.host}:{self.port}>"

    def start(self) -> Self:
        """Run PgBouncer and wait until it accepts connections."""
        options: dict[str, Any] = _as_server_user()
        self.process = subprocess.Popen(
            [str(self.binary), "-q", str(self.ini)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.root,
            **options,
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 1):
                return self
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = self.logfile.read_text() if self.logfile.exists() else ""
                msg = f"pgbouncer did not start on port {self.port}:\n{log[-2000:]}"
                raise RuntimeError(msg)
            time.sleep(0.05)

    def url(self, database: str = "postgres", user: str = "postgres") -> URL:
        """A SQLAlchemy URL (psycopg 3) for a database behind this PgBouncer."""
        return URL.create(
            "postgresql+psycopg", username=user, host=self.host, port=self.port, database=database
        )

    def show(self, what: str) -> list[dict[str, Any]]:
        """Rows of an admin console ``SHOW`` command (``POOLS``, ``SERVERS``, ...)."""
        dsn = f"host={self.host} port={self.port} user=postgres dbname=pgbouncer"
        # The admin console speaks only the simple query protocol, which ClientCursor uses.
        with (
            psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn,
            psycopg.ClientCursor(conn) as cursor,
        ):
            cursor.execute(f"SHOW {what}".encode())
            names = [column.name for column in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def stop(self) -> None:
        """Stop PgBouncer and delete its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)
