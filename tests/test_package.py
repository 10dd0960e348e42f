"""The package as users see it: its public API, import-time behaviour and the installed wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

import appdb

PUBLIC_API = {
    "AlreadyExistsError",
    "AppDBError",
    "AppDBModel",
    "AsyncSessionLocal",
    "ConfigurationError",
    "ConnectionLostError",
    "DatabaseSettings",
    "DatabaseUnavailableError",
    "EmailTakenError",
    "InvalidInputError",
    "Message",
    "MessageCreate",
    "MessageNotFoundError",
    "MessageRead",
    "MigrationError",
    "MigrationLockTimeoutError",
    "NotFoundError",
    "PoolTimeoutError",
    "SchemaOutOfDateError",
    "SessionLocal",
    "StatementTimeoutError",
    "TelegramIdTakenError",
    "User",
    "UserCreate",
    "UserNotFoundError",
    "UserRead",
    "UserUpdate",
    "UsernameTakenError",
    "__version__",
    "async_session_scope",
    "create_async_engine",
    "create_engine",
    "get_async_db",
    "get_async_engine",
    "get_db",
    "get_engine",
    "get_settings",
    "metadata",
    "reset_engines",
    "session_scope",
    "use_primary",
}


def test_public_api_is_curated_and_sorted() -> None:
    """__all__ lists exactly the public names, sorted, and each exists."""
    assert PUBLIC_API == set(appdb.__all__)
    assert sorted(appdb.__all__) == appdb.__all__
    for name in appdb.__all__:
        assert hasattr(appdb, name), name


def test_version_comes_from_metadata() -> None:
    """The version lives in pyproject.toml only."""
    assert version("appdb") == appdb.__version__


def test_import_has_no_side_effects(tmp_path: Path) -> None:
    """Importing appdb reads no settings, connects nowhere and imports neither alembic nor fastapi."""
    code = (
        "import sys, appdb\n"
        "from appdb import engine, settings\n"
        "assert engine._engine is None and engine._async_engine is None\n"
        "assert settings.get_settings.cache_info().currsize == 0\n"
        "print(sorted(m for m in ('alembic', 'fastapi', 'psycopg') if m in sys.modules))\n"
    )
    env = os.environ | {"DATABASE_URL": "not a url at all", "DATABASE_REQUIRE_URL": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    assert "[]" == result.stdout.strip()
    assert "" == result.stderr


@pytest.mark.slow
def test_wheel_contents(installed_wheel) -> None:
    """The wheel ships py.typed and the models, and no tests."""
    names = zipfile.ZipFile(installed_wheel.wheel).namelist()
    assert "appdb/py.typed" in names
    assert "appdb/models/user.py" in names
    assert not [name for name in names if name.startswith("tests/")]


@pytest.mark.slow
def test_installed_wheel_imports_from_outside_repo(installed_wheel, tmp_path: Path) -> None:
    """In a fresh venv, from a directory outside the repo, the API imports and works on SQLite."""
    code = (
        "import appdb, pathlib\n"
        "from appdb import get_db, SessionLocal, User, Message, metadata, get_engine\n"
        "assert 'site-packages' in appdb.__file__, appdb.__file__\n"
        "metadata.create_all(get_engine())\n"
        "with SessionLocal() as s:\n"
        "    s.add(User(username='wheel')); s.commit()\n"
        "print(appdb.__version__, pathlib.Path('appdb.sqlite3').exists())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "PYTHON"))}
    result = subprocess.run(
        [str(installed_wheel.bin / "python"), "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert 0 == result.returncode, result.stderr
    assert f"{appdb.__version__} True" == result.stdout.strip()
