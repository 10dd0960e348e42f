"""The version-skew fixtures: three real wheels of appdb in three venvs (see wheels.py)."""

from __future__ import annotations

import pytest

from wheels import Install, Versions, build_services, build_versions


@pytest.fixture(scope="session")
def versions(tmp_path_factory: pytest.TempPathFactory) -> Versions:
    """This appdb, a later additive release and a later breaking one, each installed."""
    names = ("current", "additive", "breaking")
    return build_versions({name: tmp_path_factory.mktemp(f"skew-{name}") for name in names})


@pytest.fixture(scope="session")
def smartspace(
    versions: Versions, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Install, Install]:
    """This appdb with smartspace 0.1.0, and with smartspace 0.1.1 (an additive revision)."""
    roots = {name: tmp_path_factory.mktemp(f"smartspace-{name}") for name in ("older", "newer")}
    return build_services(roots, versions.current.wheel)
