"""Service-owned tables and migrations, registered through the ``appdb.migrations`` entry points.

A service declares its models on `appdb.metadata` (subclassing `AppDBModel`) and ships an
Alembic ``versions`` folder inside a package of its own, whose first revision has a branch
label and ``depends_on`` appdb's head. It registers that package in its ``pyproject.toml``::

    [project.entry-points."appdb.migrations"]
    smartspace = "smartspace.migrations"

`appdb-migrate` then imports the package (so the service's models join `appdb.metadata` for
``check`` and ``schema``) and adds its ``versions`` folder to Alembic's ``version_locations``.
"""

from __future__ import annotations

import importlib
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


def _load(entry_point: importlib_metadata.EntryPoint) -> ServiceMigrations:
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
        MigrationError: A registered package cannot be imported or has no ``versions`` folder.
    """
    found = importlib_metadata.entry_points(group=ENTRY_POINT_GROUP)
    # One distribution can be seen twice (an editable install and a build folder on sys.path).
    unique = {entry_point.name: entry_point for entry_point in found}
    return tuple(_load(unique[name]) for name in sorted(unique))
