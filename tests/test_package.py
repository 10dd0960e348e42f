"""The package as users see it: its public API, import-time behaviour and the installed wheel."""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import appdb
from appdb import exceptions

if TYPE_CHECKING:
    from conftest import InstalledWheel

README = Path(__file__).resolve().parents[1] / "README.md"


def test_public_api_is_sorted_unique_and_importable() -> None:
    """__all__ is sorted without duplicates, and every name in it exists on the package."""
    assert sorted(set(appdb.__all__)) == appdb.__all__
    assert [] == [name for name in appdb.__all__ if not hasattr(appdb, name)]


def test_star_import_gives_exactly_the_public_api() -> None:
    """``from appdb import *`` binds the names of __all__ and nothing else."""
    namespace: dict[str, object] = {}
    exec("from appdb import *", namespace)  # noqa: S102 - a fixed statement
    assert set(appdb.__all__) == set(namespace) - {"__builtins__"}


def test_public_classes_and_callables_have_docstrings() -> None:
    """Every exported class and function says what it is for."""
    undocumented = [
        name
        for name in appdb.__all__
        if inspect.isclass(getattr(appdb, name)) or inspect.isfunction(getattr(appdb, name))
        if not (inspect.getdoc(getattr(appdb, name)) or "").strip()
    ]
    assert [] == undocumented


def test_every_exception_is_exported_and_an_appdb_error() -> None:
    """Each exception class appdb defines is in appdb.__all__ and derives from AppDBError."""
    defined = {
        name
        for name, value in vars(exceptions).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == exceptions.__name__
    }
    assert defined == set(exceptions.__all__)
    assert [] == sorted(defined - set(appdb.__all__))
    assert [] == [
        name for name in defined if not issubclass(getattr(appdb, name), appdb.AppDBError)
    ]


@pytest.mark.skipif(not README.exists(), reason="run from the source tree")
def test_readme_lists_the_public_api() -> None:
    """The README's Public API section names every entry of __all__; its error table every exception."""
    readme = README.read_text(encoding="utf-8")
    section = readme.split("\n## Public API\n", 1)[1].split("\n## ", 1)[0]
    errors = readme.split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    assert [] == [name for name in appdb.__all__ if f"`{name}`" not in section]
    assert [] == [name for name in exceptions.__all__ if f"| `{name}` |" not in errors]


def test_version_comes_from_metadata() -> None:
    """The version lives in pyproject.toml only."""
    assert version("appdb") == appdb.__version__


def test_import_has_no_side_effects(tmp_path: Path) -> None:
    """Importing appdb reads no settings, connects nowhere and imports neither alembic nor fastapi."""
    code = (
        "import sys, appdb\n"
        "from appdb import engine, settings\n"
        "assert not any(lazy.built for lazy in (engine._engine, engine._async_engine))\n"
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


def _fresh_interpreter(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert 0 == result.returncode, result.stderr
    return result.stdout


def test_public_names_load_their_modules_on_first_use() -> None:
    """``import appdb`` loads no SQLAlchemy or pydantic; each name brings only what it needs."""
    orm = ["sqlalchemy", "sqlmodel"]
    code = (
        "import sys\n"
        "seen = lambda: sorted(m for m in WATCHED if m in sys.modules)\n"
        "WATCHED = ('sqlalchemy', 'pydantic', 'sqlmodel', 'pydantic_settings',"
        " 'email_validator', 'appdb.settings', 'appdb.users', 'appdb.models.schemas')\n"
        "import appdb; print(seen())\n"
        "from appdb import get_db, SessionLocal, User, Message; print(seen())\n"
        "from appdb import UserCreate; UserCreate(username='ann', email='a@b.io',"
        " password='x' * 8); print(seen())\n"
        "SessionLocal().close(); print(seen())\n"
    )
    assert [
        "[]",
        "['pydantic', 'sqlalchemy', 'sqlmodel']",
        "['appdb.models.schemas', 'email_validator', 'pydantic', 'sqlalchemy', 'sqlmodel']",
        str(
            [
                "appdb.models.schemas",
                "appdb.settings",
                "email_validator",
                "pydantic",
                "pydantic_settings",
                *orm,
            ]
        ),
    ] == _fresh_interpreter(code).splitlines()


def test_every_public_name_resolves_in_a_fresh_interpreter() -> None:
    """Each name of __all__ resolves on first access to its module's object, and dir() lists it."""
    code = (
        "import importlib, appdb\n"
        "missing = [n for n in appdb.__all__ if n not in dir(appdb)]\n"
        "for name in appdb.__all__:\n"
        "    value = getattr(appdb, name)\n"
        "    module = getattr(value, '__module__', None)\n"
        "    if module and module.startswith('appdb.') and hasattr(value, '__qualname__'):\n"
        "        assert getattr(importlib.import_module(module), value.__qualname__) is value, name\n"
        "print(missing, appdb.metadata is appdb.User.metadata, appdb.get_engine.__module__)\n"
    )
    assert "[] True appdb.engine" == _fresh_interpreter(code).strip()


def test_the_models_package_loads_its_schemas_on_first_use() -> None:
    """`appdb.models` lists and resolves every name of its __all__, the lazy schemas included."""
    code = (
        "import sys, appdb.models as models\n"
        "loaded = 'appdb.models.schemas' in sys.modules\n"
        "missing = [n for n in models.__all__ if n not in dir(models)]\n"
        "from appdb.models import UserCreate\n"
        "from appdb.models.schemas import UserCreate as defined\n"
        "print(loaded, missing, UserCreate is defined, UserCreate is models.UserCreate)\n"
        "try:\n"
        "    models.NoSuchName\n"
        "except AttributeError as error:\n"
        "    print(error)\n"
    )
    assert [
        "False [] True True",
        "module 'appdb.models' has no attribute 'NoSuchName'",
    ] == _fresh_interpreter(code).splitlines()


@pytest.mark.slow
def test_wheel_contents(installed_wheel: InstalledWheel) -> None:
    """The wheel ships py.typed and the models, and no tests."""
    names = zipfile.ZipFile(installed_wheel.wheel).namelist()
    assert "appdb/py.typed" in names
    assert "appdb/models/user.py" in names
    assert not [name for name in names if name.startswith("tests/")]


@pytest.mark.slow
def test_installed_wheel_imports_from_outside_repo(
    installed_wheel: InstalledWheel, tmp_path: Path
) -> None:
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


def test_import_leaves_the_asyncio_extension_for_first_use() -> None:
    """``import appdb`` loads neither SQLAlchemy's asyncio extension nor psycopg (PEP 562)."""
    code = (
        "import sys, appdb; "
        "print(sorted(m for m in ('sqlalchemy.ext.asyncio', 'psycopg') if m in sys.modules)); "
        "appdb.AsyncSessionLocal; print('sqlalchemy.ext.asyncio' in sys.modules)"
    )
    assert "[]\nTrue\n" == _fresh_interpreter(code)


@pytest.mark.slow
def test_wheel_description_has_no_dead_links(installed_wheel: InstalledWheel) -> None:
    """The project page's text (the README) has no link relative to the repository."""
    with zipfile.ZipFile(installed_wheel.wheel) as wheel:
        (name,) = [name for name in wheel.namelist() if name.endswith(".dist-info/METADATA")]
        metadata = wheel.read(name).decode()
    _, _, description = metadata.partition("\n\n")
    assert "Description-Content-Type: text/markdown" in metadata
    assert description.startswith("# appdb")
    assert "appdb-migrate upgrade" in description
    assert [] == re.findall(r"\]\((?!https?://)[^)]*\)", description)
    assert "`docs/deploying.md` (in the sdist)" in description
