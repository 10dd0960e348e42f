"""A throwaway pg_auto_failover formation: a monitor and three data nodes on loopback ports.

Every node is a ``pg_autoctl ... --run`` process (Debian's ``postgresql-15-auto-failover``) in
its own temporary directory, run as the ``postgres`` OS user when the tests run as root, with
its own process group so that `Formation.kill` can take a node down as a crashed machine would:
SIGKILL to the postmaster named in ``postmaster.pid`` and to the node's ``pg_autoctl`` keeper
(which would otherwise restart the postmaster in place, and no failover would happen).

The formation keeps ``number_sync_standbys = 1``: every commit waits until one standby has
flushed it. pg_auto_failover refuses that setting with fewer than two standbys ("At least 2
standby nodes are required"), hence three data nodes. The monitor's health checks are
shortened so that a dead primary is noticed in about two seconds instead of twenty.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy.engine import URL

from appdb import DatabaseSettings
from pgserver import _as_server_user, _hand_over, free_port

# A password with '@', '%' and ':'; the nodes trust loopback, so it is only there to be hidden.
HA_PASSWORD = "Ha@pw%3A:Zq7"
HA_USER = "appdb_ha"
HA_DATABASE = "appdb_ha"

MONITOR_SETTINGS = {
    # Defaults: 5 s period and timeout, 2 retries 2 s apart, unhealthy after 20 s, 30 s demote.
    "pgautofailover.health_check_period": 500,
    "pgautofailover.health_check_timeout": 1000,
    "pgautofailover.health_check_max_retries": 1,
    "pgautofailover.health_check_retry_delay": 200,
    "pgautofailover.node_considered_unhealthy_timeout": 1500,
    "pgautofailover.primary_demote_timeout": 1000,
}
_WAIT = 120.0


def find_pg_autoctl() -> Path | None:
    """The ``pg_autoctl`` program: ``$APPDB_PG_AUTOCTL``, else PATH, else Debian's /usr/bin."""
    for candidate in (
        os.environ.get("APPDB_PG_AUTOCTL"),
        shutil.which("pg_autoctl"),
        "/usr/bin/pg_autoctl",
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@dataclass
class Node:
    """One data node of the formation."""

    name: str
    port: int
    pgdata: Path
    keeper: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"

    @property
    def address(self) -> str:
        """``host:port``, as libpq's host list spells it."""
        return f"{self.host}:{self.port}"

    def dsn(self, database: str = "postgres") -> str:
        """A libpq connection string for the superuser on this node only."""
        return f"host={self.host} port={self.port} user=postgres dbname={database}"

    def execute(self, sql: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement as the superuser in autocommit mode; return its rows."""
        with psycopg.connect(self.dsn(database), autocommit=True, connect_timeout=3) as conn:
            cursor = conn.execute(sql.encode())
            return list(cursor.fetchall()) if cursor.description else []

    @property
    def alive(self) -> bool:
        """Whether the node's keeper process still runs."""
        return self.keeper is not None and self.keeper.poll() is None


@dataclass
class Formation:
    """A pg_auto_failover monitor and its data nodes, all under one temporary directory."""

    program: Path
    bindir: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="appdb-ha-")))
    monitor_port: int = field(default_factory=free_port)
    nodes: list[Node] = field(default_factory=list)
    monitor: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        """Hand the directory to the server user, who must be able to write it."""
        _hand_over(self.root)

    # -- processes ------------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        # pg_autoctl keeps its configuration and state under the XDG directories: keep them
        # inside the formation's directory, away from the postgres user's home.
        return {
            "PATH": f"{self.bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.root),
            "XDG_CONFIG_HOME": str(self.root / "config"),
            "XDG_DATA_HOME": str(self.root / "share"),
            "XDG_RUNTIME_DIR": str(self.root / "run"),
            "PG_AUTOCTL_DEBUG": "0",
            "LANG": "C.UTF-8",
        }

    def _spawn(self, log_name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"{log_name}.log").open("ab")
        try:
            return subprocess.Popen(
                [str(self.program), *args],
                cwd=self.root,
                env=self._environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **_as_server_user(),
            )
        finally:
            log.close()

    def autoctl(self, *args: str, timeout: float = _WAIT) -> subprocess.CompletedProcess[str]:
        """Run a one-off ``pg_autoctl`` command against the monitor; raise on failure."""
        result = subprocess.run(
            [str(self.program), *args],
            cwd=self.root,
            env=self._environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **_as_server_user(),
        )
        if result.returncode != 0:
            msg = f"pg_autoctl {' '.join(args)} failed: {result.stderr[-2000:]}"
            raise RuntimeError(msg)
        return result

    @property
    def monitor_pgdata(self) -> Path:
        """The monitor's data directory."""
        return self.root / "monitor"

    @property
    def monitor_uri(self) -> str:
        """The URI data nodes register with."""
        return (
            f"postgres://autoctl_node@127.0.0.1:{self.monitor_port}/pg_auto_failover"
            "?sslmode=disable"
        )

    def monitor_sql(self, sql: str) -> list[tuple[Any, ...]]:
        """Run a statement in the monitor's ``pg_auto_failover`` database."""
        dsn = f"host=127.0.0.1 port={self.monitor_port} user=postgres dbname=pg_auto_failover"
        with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
            cursor = conn.execute(sql.encode())
            return list(cursor.fetchall()) if cursor.description else []

    def start(self, data_nodes: int = 3) -> Formation:
        """Start the monitor and `data_nodes` nodes; return when they form a synchronous group."""
        self.monitor = self._spawn(
            "monitor",
            *("create", "monitor", "--pgdata", str(self.monitor_pgdata)),
            *("--pgport", str(self.monitor_port), "--pgctl", str(self.bindir / "pg_ctl")),
            *("--auth", "trust", "--no-ssl", "--hostname", "127.0.0.1", "--run"),
        )
        self._wait(lambda: self.monitor_sql("SELECT 1 FROM pgautofailover.formation"), "monitor")
        for name, value in MONITOR_SETTINGS.items():
            self.monitor_sql(f"ALTER SYSTEM SET {name} = {value}")
        self.monitor_sql("SELECT pg_reload_conf()")
        for number in range(1, data_nodes + 1):
            node = Node(f"node{number}", free_port(), self.root / f"node{number}")
            self.nodes.append(node)
            self._create(node)
            # The first node must be the primary before standbys can clone it.
            expected = "single" if number == 1 else "secondary"
            self._wait(lambda node=node, s=expected: self.state(node) == (s, s), node.name)
        self._wait(self.healthy, "every node primary or secondary")
        self.monitor_sql("SELECT pgautofailover.set_formation_number_sync_standbys('default', 1)")
        self.wait_healthy()
        return self

    def _create(self, node: Node) -> None:
        node.keeper = self._spawn(
            node.name,
            *("create", "postgres", "--pgdata", str(node.pgdata), "--pgport", str(node.port)),
            *("--pgctl", str(self.bindir / "pg_ctl"), "--name", node.name),
            *("--listen", node.host, "--hostname", node.host, "--monitor", self.monitor_uri),
            *("--auth", "trust", "--no-ssl", "--run"),
        )

    def stop(self) -> None:
        """Stop every process of the formation and delete its directory."""
        keepers = [node.keeper for node in self.nodes if node.keeper is not None]
        for process in [*keepers, self.monitor]:
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in [*keepers, self.monitor]:
            if process is None:
                continue
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)

    # -- state ----------------------------------------------------------------------------

    def states(self) -> dict[str, tuple[str, str]]:
        """Each node's (reported, assigned) state, as the monitor sees it."""
        rows = self.monitor_sql(
            "SELECT nodename, reportedstate, goalstate FROM pgautofailover.node"
        )
        return {str(name): (str(reported), str(goal)) for name, reported, goal in rows}

    def state(self, node: Node) -> tuple[str, str] | None:
        """One node's (reported, assigned) state."""
        return self.states().get(node.name)

    def healthy(self) -> bool:
        """One primary, every other node a secondary, all settled and running."""
        states = self.states()
        settled = [reported for reported, goal in states.values() if reported == goal]
        return (
            len(states) == len(self.nodes)
            and len(settled) == len(self.nodes)
            and sorted(settled) == ["primary"] + ["secondary"] * (len(self.nodes) - 1)
            and all(node.alive for node in self.nodes)
        )

    def wait_healthy(self, timeout: float = _WAIT) -> None:
        """Block until the formation is healthy and the primary replicates synchronously."""
        self._wait(self.healthy, "a healthy formation", timeout)
        self._wait(
            lambda: (
                self.primary().execute("SHOW synchronous_standby_names")[0][0].startswith("ANY 1")
            ),
            "synchronous replication on the primary",
            timeout,
        )

    def primary(self, timeout: float = 30.0) -> Node:
        """The node the monitor has settled as primary, waiting up to `timeout` s for one.

        Under load the monitor's shortened health checks can start a transition just after the
        formation looked healthy (a primary ``draining``); asking for the primary waits it out.
        """
        found: list[Node] = []

        def settled() -> bool:
            states = self.states()
            found[:] = [n for n in self.nodes if states.get(n.name) == ("primary", "primary")]
            return bool(found)

        self._wait(settled, "a settled primary", timeout)
        return found[0]

    def standbys(self) -> list[Node]:
        """The nodes that are not the primary."""
        primary = self.primary()
        return [node for node in self.nodes if node is not primary]

    def writable(self, node: Node) -> bool:
        """Whether `node` accepts writes now, as libpq's ``target_session_attrs=read-write`` checks.

        A promoted node is out of recovery before it takes writes: pg_auto_failover keeps
        ``default_transaction_read_only`` on until the monitor lets it be the primary.
        """
        query = (
            "SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off'"
        )
        try:
            return node.execute(query)[0][0] is True
        except psycopg.Error:
            return False

    def wait_writable(self, timeout: float = _WAIT) -> Node:
        """Block until some live node accepts writes (a new primary after a failover); return it."""
        found: list[Node] = []

        def writable() -> bool:
            found[:] = [node for node in self.nodes if node.alive and self.writable(node)]
            return bool(found)

        self._wait(writable, "a writable primary", timeout)
        return found[0]

    def wait_replayed(self, node: Node, timeout: float = _WAIT) -> None:
        """Block until standby `node` has replayed everything the primary has written so far."""
        (lsn,) = self.primary().execute("SELECT pg_current_wal_lsn()::text")[0]
        query = f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"
        self._wait(lambda: node.execute(query)[0][0], f"{node.name} to replay {lsn}", timeout)

    def _wait(self, condition: Any, what: str, timeout: float = _WAIT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if condition():
                    return
            except (psycopg.Error, RuntimeError, OSError):
                pass
            if time.monotonic() > deadline:
                logs = "\n".join(
                    f"-- {log.name}\n{log.read_text(errors='replace')[-1500:]}"
                    for log in sorted(self.root.glob("*.log"))
                )
                msg = f"timed out after {timeout}s waiting for {what}\n{logs}"
                raise TimeoutError(msg)
            time.sleep(0.1)

    # -- faults ---------------------------------------------------------------------------

    def kill(self, node: Node) -> int:
        """Crash `node`: SIGKILL its postmaster (from ``postmaster.pid``) and its keeper.

        Returns:
            The postmaster's pid.
        """
        postmaster = int((node.pgdata / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGKILL)
        if node.keeper is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.keeper.pid, signal.SIGKILL)
            node.keeper.wait(10)
            # The backends share the keeper's process group: wait until all of them are gone,
            # as they would be on a dead machine, so no pooled connection still gets answers.
            self._wait(
                lambda: not _group_alive(node.keeper), f"{node.name}'s processes to exit", 10
            )
        return postmaster

    def rejoin(self, node: Node) -> None:
        """Restart a killed node's keeper; it rewinds and follows the new primary."""
        node.keeper = self._spawn(node.name, "run", "--pgdata", str(node.pgdata))
        self.wait_healthy()

    def heal(self) -> None:
        """Bring every killed node back and wait for a formation that stays healthy."""
        for node in self.nodes:
            if not node.alive:
                node.keeper = self._spawn(node.name, "run", "--pgdata", str(node.pgdata))
        self.wait_healthy()
        # A rejoined node's keeper may still report transitions after a first healthy look.
        self._wait(self._stays_healthy, "a formation that stays healthy for 2 s")

    def _stays_healthy(self, seconds: float = 2.0) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.healthy():
                return False
            time.sleep(0.2)
        return True

    def switchover(self) -> None:
        """A planned switchover (``pg_autoctl perform switchover``), returning when it is done."""
        self.autoctl("perform", "switchover", "--monitor", self.monitor_uri, "--wait", "60")

    def promote(self, node: Node) -> None:
        """Make `node` the primary (``pg_autoctl perform promotion``), a planned switchover."""
        self.autoctl(
            "perform",
            "promotion",
            "--monitor",
            self.monitor_uri,
            "--name",
            node.name,
            "--wait",
            "60",
        )

    # -- URLs -----------------------------------------------------------------------------

    def url_text(self, user: str, password: str | None, database: str) -> str:
        """Libpq's multi-host URL over every data node, as a service puts it in DATABASE_URL."""
        secret = f":{_quote(password)}" if password else ""
        hosts = ",".join(node.address for node in self.nodes)
        return f"postgresql://{user}{secret}@{hosts}/{database}"

    def node_url(self, node: Node, user: str, password: str | None, database: str) -> URL:
        """A single-host URL to one node."""
        return URL.create(
            "postgresql+psycopg",
            username=user,
            password=password,
            host=node.host,
            port=node.port,
            database=database,
        )


def _group_alive(process: subprocess.Popen[bytes] | None) -> bool:
    """Whether any process is left in the process group `process` led."""
    if process is None:
        return False
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    return True


def _quote(text: str | None) -> str:
    from urllib.parse import quote  # noqa: PLC0415 - only URLs with a password need it

    return quote(text or "", safe="")


def ha_url(formation: Formation) -> str:
    """The service's DATABASE_URL: libpq's multi-host form over every node, with a password."""
    return formation.url_text(HA_USER, HA_PASSWORD, HA_DATABASE)


def ha_settings(formation: Formation, **values: Any) -> DatabaseSettings:
    """Settings as a service on the formation would use them (extra fields as keywords)."""
    defaults: dict[str, Any] = {
        "url": ha_url(formation),
        "connect_timeout": 2,
        "application_name": "appdb-ha-test",
    }
    return DatabaseSettings(**(defaults | values))
