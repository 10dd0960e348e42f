"""Who is connected, with which package versions: the tags in ``application_name``.

Every engine appdb builds names its process's package versions in ``application_name``
(``backend appdb/0.2.0 smartspace/1.4.0``), so that a breaking migration can see, in
``pg_stat_activity``, which connected sessions it would break.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from typing import TYPE_CHECKING

import sqlalchemy as sa
from packaging.version import InvalidVersion, Version

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from sqlalchemy.engine import Connection

__all__ = [
    "SERVICE_ENTRY_POINTS",
    "Client",
    "clients_below",
    "installed_versions",
    "parse_clients",
    "tag_application_name",
]

# application_name carries the package versions of the process: "<name> appdb/0.2.0 svc/1.0".
_TAG = re.compile(r"(?:^|\s)([a-z][a-z0-9_]*)/(\d[0-9A-Za-z.+!-]*)")
_APPLICATION_NAME_MAX = 63  # PostgreSQL's NAMEDATALEN - 1


SERVICE_ENTRY_POINTS = "appdb.migrations"


def installed_versions() -> tuple[tuple[str, str], ...]:
    """This process's chains and package versions: appdb's, then each installed service's.

    Read from package metadata (no service module is imported); a millisecond or so, paid
    when an engine is built and when a revision is recorded.

    Returns:
        ``(chain, version)`` pairs.
    """
    services = {
        entry_point.name: entry_point.dist.version
        for entry_point in importlib_metadata.entry_points(group=SERVICE_ENTRY_POINTS)
        if entry_point.dist is not None
    }
    appdb = ("appdb", importlib_metadata.version("appdb"))
    return (appdb, *sorted(services.items()))


def tag_application_name(name: str, versions: Sequence[tuple[str, str]]) -> str:
    """Add ``chain/version`` tags to an ``application_name``, within PostgreSQL's 63 bytes.

    The tags win over the name: a breaking migration needs them to see who is connected.

    Args:
        name: The configured ``DATABASE_APPLICATION_NAME``.
        versions: ``(chain, version)`` pairs, appdb's first.

    Returns:
        The tagged name.
    """
    tags = " ".join(f"{chain}/{version}" for chain, version in versions)
    room = _APPLICATION_NAME_MAX - len(tags.encode()) - 1
    head = name.encode()[: max(room, 0)].decode(errors="ignore").strip()
    return f"{head} {tags}" if head else tags[:_APPLICATION_NAME_MAX]


@dataclass(frozen=True)
class Client:
    """A session connected to the database, as pg_stat_activity shows it."""

    pid: int
    application_name: str
    host: str
    versions: dict[str, Version]


def parse_clients(rows: Iterable[tuple[int, str | None, str | None]]) -> list[Client]:
    """Turn ``(pid, application_name, client_addr)`` rows into clients with their versions.

    Args:
        rows: From pg_stat_activity.

    Returns:
        The sessions that carry at least one ``chain/version`` tag.
    """
    clients = []
    for pid, name, host in rows:
        versions = {}
        for chain, text in _TAG.findall(name or ""):
            try:
                versions[chain] = Version(text)
            except InvalidVersion:
                continue
        if versions:
            clients.append(Client(pid, name or "", host or "local socket", versions))
    return clients


def clients_below(connection: Connection, chain: str, floor: Version) -> list[Client]:
    """The other sessions on this database running `chain` at a version below `floor`.

    Only PostgreSQL can tell; on SQLite the list is empty.

    Args:
        connection: A connection to the database.
        chain: ``appdb`` or the service's name.
        floor: The version a breaking revision requires.

    Returns:
        The sessions a breaking revision would break.
    """
    if connection.dialect.name != "postgresql":
        return []
    rows = connection.execute(
        sa.text(
            "SELECT pid, application_name, host(client_addr) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    ).all()
    return [
        client
        for client in parse_clients((row[0], row[1], row[2]) for row in rows)
        if chain in client.versions and client.versions[chain] < floor
    ]
