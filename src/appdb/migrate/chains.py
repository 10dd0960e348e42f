"""The chains of revisions: appdb's own and each installed service's, and how Alembic finds them.

Each chain has a version table of its own (``alembic_version`` for appdb's,
``alembic_version_<service>`` for a service's). The migrations ship inside the wheel
(``appdb/migrations``) and are found as a package resource, so no ``alembic.ini`` or working
directory is involved.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from appdb.exceptions import MigrationError
from appdb.migrate.errors import translated_errors
from appdb.migrate.services import service_migrations
from appdb.settings import DatabaseSettings, get_settings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.engine import Connection

__all__ = [
    "APPDB_VERSION_TABLE",
    "SERVICE_VERSION_TABLE",
    "Chain",
    "alembic_config",
    "all_chains",
    "appdb_chain",
    "chain_config",
    "read_versions",
    "script_directory",
    "script_location",
    "serverless_settings",
    "service_chain",
    "service_chains",
    "split_target",
]

APPDB_VERSION_TABLE = "alembic_version"
"""The version table of appdb's own chain."""
SERVICE_VERSION_TABLE = "alembic_version_{}"
"""The version table of a service's chain, to format with the service's name."""


@dataclass(frozen=True)
class Chain:
    """One line of revisions with a version table of its own: appdb's, or one service's."""

    service: str | None
    """The service's name; None for appdb's own chain."""
    version_table: str
    versions: str
    """The folder of the chain's revision files."""

    @property
    def label(self) -> str:
        """The chain's name for humans: the service's, or ``appdb``."""
        return self.service or "appdb"


def script_location() -> str:
    """Where appdb's migrations are: the wheel's package resource, or the live checkout.

    Returns:
        ``appdb:migrations``, or the checkout's ``migrations`` folder.

    Raises:
        MigrationError: The installation carries no migrations.
    """
    if resources.files("appdb").joinpath("migrations", "env.py").is_file():
        return "appdb:migrations"
    # An editable install or a source checkout: read the live files, never a stale copy.
    checkout = Path(__file__).resolve().parents[3] / "migrations"
    if (checkout / "env.py").is_file():
        return str(checkout)
    msg = "appdb's migrations are missing from this installation (reinstall appdb)"
    raise MigrationError(msg)


def _versions_folder(location: str) -> str:
    if location == "appdb:migrations":
        return str(resources.files("appdb").joinpath("migrations", "versions"))
    return str(Path(location) / "versions")


def appdb_chain() -> Chain:
    """Return appdb's own chain, recorded in ``alembic_version``."""
    return Chain(None, APPDB_VERSION_TABLE, _versions_folder(script_location()))


def service_chains() -> tuple[Chain, ...]:
    """Return the installed services' chains, in name order: the order they are upgraded in."""
    return tuple(
        Chain(found.name, SERVICE_VERSION_TABLE.format(found.name), str(found.versions))
        for found in service_migrations()
    )


def all_chains() -> tuple[Chain, ...]:
    """Return appdb's chain, then each installed service's."""
    return (appdb_chain(), *service_chains())


def service_chain(name: str, context: str = "") -> Chain:
    """Return the chain of the installed service `name`.

    Args:
        name: The service's name.
        context: Put in front of the error message.

    Returns:
        The service's chain.

    Raises:
        MigrationError: No such service is installed.
    """
    chains = {chain.service: chain for chain in service_chains()}
    if name not in chains:
        installed = ", ".join(str(service) for service in chains) or "none"
        msg = f"{context}no service {name!r} is installed here (installed: {installed})"
        raise MigrationError(msg)
    return chains[name]


def split_target(revision: str) -> tuple[Chain, str]:
    """Split a target: ``service@target`` addresses that service's chain, any other appdb's.

    Args:
        revision: What the user typed (``heads``, ``+1``, ``smartspace@head``).

    Returns:
        The chain, and the target within it.

    Raises:
        MigrationError: The service is not installed.
    """
    name, at, target = revision.partition("@")
    if not at:
        return appdb_chain(), revision
    return service_chain(name, f"{revision!r}: "), target


def chain_config(
    chain: Chain,
    settings: DatabaseSettings,
    *,
    connection: Connection | None = None,
    stdout: TextIO | None = None,
) -> Config:
    """Build the Alembic configuration that moves `chain` on the database of `settings`.

    Args:
        chain: appdb's chain or a service's.
        settings: The database, passed to ``env.py``.
        connection: Run on this connection instead of opening one.
        stdout: Where Alembic writes its output; discarded when omitted.

    Returns:
        A configuration needing no ``alembic.ini``.
    """
    config = Config(stdout=stdout or io.StringIO())
    config.set_main_option("script_location", script_location())
    if chain.service is not None:
        # appdb's env.py and script.py.mako, the service's revisions alone.
        config.set_main_option("path_separator", "newline")
        # ConfigParser interpolates '%': a folder name may contain one.
        config.set_main_option("version_locations", chain.versions.replace("%", "%%"))
    config.attributes["version_table"] = chain.version_table
    config.attributes["appdb_settings"] = settings
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def alembic_config(
    settings: DatabaseSettings | None = None,
    *,
    connection: Connection | None = None,
    stdout: TextIO | None = None,
    service: str | None = None,
) -> Config:
    """Build the Alembic configuration for appdb's bundled migrations, or a service's.

    Tools such as pytest-alembic, and services that run Alembic themselves, can use it as is.

    Args:
        settings: The database to migrate; `get_settings()` when omitted. Migrations run
            on its `DatabaseSettings.for_migrations` URL unless `connection` is given.
        connection: Run migrations on this connection (inside the caller's transaction)
            instead of opening one.
        stdout: Where Alembic writes its output (offline SQL, history).
        service: A registered service's name: its revisions and its version table
            (``alembic_version_<service>``) instead of appdb's.

    Returns:
        A configuration needing no ``alembic.ini``.

    Raises:
        MigrationError: No such service is installed.
    """
    chain = appdb_chain() if service is None else service_chain(service)
    return chain_config(chain, settings or get_settings(), connection=connection, stdout=stdout)


def read_versions(connection: Connection, chains: Sequence[Chain]) -> list[tuple[str, ...]]:
    """Read each chain's recorded revisions from its version table.

    Args:
        connection: A connection to the database.
        chains: The chains to read.

    Returns:
        One tuple of revision ids per chain; empty for a version table that does not exist.
    """
    return [
        tuple(
            MigrationContext.configure(
                connection, opts={"version_table": chain.version_table}
            ).get_current_heads()
        )
        for chain in chains
    ]


def serverless_settings(url: str) -> DatabaseSettings:
    """Settings for work that needs no server, whatever the environment says about one.

    Args:
        url: A URL naming the dialect; nothing connects to it.

    Returns:
        Settings with no pooler, migration URL or replicas.
    """
    return DatabaseSettings(url=url, pooler="none", migration_url=None, replica_urls=())


def script_directory(chain: Chain) -> ScriptDirectory:
    """Read `chain`'s revision files, with no database.

    Args:
        chain: appdb's chain or a service's.

    Returns:
        Alembic's view of the chain's revisions.

    Raises:
        MigrationError: The revision files are inconsistent.
    """
    settings = serverless_settings("sqlite://")
    with translated_errors(settings, f"read {chain.label}'s revisions"):
        return ScriptDirectory.from_config(chain_config(chain, settings))
