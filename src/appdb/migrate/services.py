"""The registry of service chains: service-owned tables and migrations, from entry points.

A service declares its models on `appdb.metadata` (subclassing `AppDBModel`) and ships an
Alembic ``versions`` folder inside a package of its own (a chain of its own, whose first
revision has ``down_revision = None``). It registers that package in its ``pyproject.toml``::

    [project.entry-points."appdb.migrations"]
    smartspace = "smartspace.migrations"

`appdb-migrate` then imports the package (so the service's models join `appdb.metadata` for
``check`` and ``schema``) and runs the service's chain after appdb's, recording it in a version
table of its own, ``alembic_version_<name>``: processes that do not install the service see only
appdb's ``alembic_version`` and are not affected by the service's revisions.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from importlib import resources
from pathlib import Path

from appdb.exceptions import MigrationError

__all__ = ["ENTRY_POINT_GROUP", "ServiceMigrations", "service_migrations"]

ENTRY_POINT_GROUP = "appdb.migrations"
"""The entry point group a service registers its migrations package in."""


@dataclass(frozen=True)
class ServiceMigrations:
    """A service's migrations registered with appdb."""

    name: str
    """The entry point's name (the service)."""
    package: str
    """The imported package that holds the ``versions`` folder."""
    versions: Path
    """The folder of the service's Alembic revisions."""


# The name becomes part of a table name (alembic_version_<name>) and of targets (<name>@head):
# PostgreSQL's identifiers hold 63 characters, 16 of them taken by the prefix.
_SERVICE_NAME = re.compile(r"[a-z][a-z0-9_]{0,46}")


def _load(entry_point: importlib_metadata.EntryPoint) -> ServiceMigrations:
    if not _SERVICE_NAME.fullmatch(entry_point.name):
        msg = (
            f"the {ENTRY_POINT_GROUP} entry point {entry_point.name!r} is not a valid service "
            "name: lowercase letters, digits and underscores, starting with a letter, "
            "at most 47 characters (it names the table alembic_version_<name>)"
        )
        raise MigrationError(msg)
    package = entry_point.value.strip()
    try:
        # Importing the package runs its (and its parents') imports: that registers the models.
        importlib.import_module(package)
        versions = Path(str(resources.files(package).joinpath("versions")))
    except Exception as exc:  # any import failure is the service's: one line, not a traceback
        msg = (
            f"cannot load the migrations that {entry_point.name!r} registers ({package}): "
            f"{type(exc).__name__}: {exc}"
        )
        raise MigrationError(msg) from exc
    if not versions.is_dir():
        msg = f"the migrations that {entry_point.name!r} registers have no folder {versions}"
        raise MigrationError(msg)
    return ServiceMigrations(name=entry_point.name, package=package, versions=versions)


def service_migrations() -> tuple[ServiceMigrations, ...]:
    """Import every installed service's migrations package, sorted by service name.

    Returns:
        The registered services; empty when none is installed.

    Raises:
        MigrationError: A registered package cannot be imported or has no ``versions`` folder,
            or its entry point's name is not a valid service name.
    """
    found = importlib_metadata.entry_points(group=ENTRY_POINT_GROUP)
    # One distribution can be seen twice (an editable install and a build folder on sys.path).
    unique = {entry_point.name: entry_point for entry_point in found}
    return tuple(_load(unique[name]) for name in sorted(unique))
