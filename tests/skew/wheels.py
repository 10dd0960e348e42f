"""Real wheels of appdb at three versions, each in its own venv, for version-skew tests.

- ``current``: this checkout, as users install it.
- ``additive``: a later patch release whose only change is revision 0003 (a nullable column).
- ``breaking``: a later minor release with 0003 and 0004, which drops ``users.is_superuser``
  (every earlier appdb selects it), and models without that column.

The later versions are test fixtures, never shipped: copies of this tree with the revisions in
``revisions/`` and a bumped version. Each wheel is built once per run; the three builds and
installs run side by side.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

import appdb
from appdb.migrate.chains import appdb_chain, script_directory
from venvs import new_venv

SKEW = Path(__file__).resolve().parent
REPO = SKEW.parent.parent
CURRENT = Version(appdb.__version__)
ADDITIVE = Version(f"{CURRENT.major}.{CURRENT.minor}.{CURRENT.micro + 1}")
BREAKING = Version(f"{CURRENT.major}.{CURRENT.minor + 1}.0")
HEAD = script_directory(appdb_chain()).get_current_head()
"""The head of this checkout's chain, which the later versions' revisions build on."""


@dataclass(frozen=True)
class Install:
    """One version of appdb installed in its own venv."""

    version: Version
    bin: Path
    wheel: Path
    """The appdb wheel installed here."""

    def migrate(
        self, *args: str, url: str, cwd: Path, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """Run this version's ``appdb-migrate`` on `url`."""
        return subprocess.run(
            [str(self.bin / "appdb-migrate"), *args],
            cwd=cwd,
            env=_env(url),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def python(
        self, code: str, *, url: str, cwd: Path, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """Run `code` with this version's Python."""
        return subprocess.run(
            [str(self.bin / "python"), "-c", code],
            cwd=cwd,
            env=_env(url),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def popen(self, code: str, *, url: str, cwd: Path) -> subprocess.Popen[str]:
        """Start `code` with this version's Python, in the background."""
        return subprocess.Popen(
            [str(self.bin / "python"), "-c", code],
            cwd=cwd,
            env=_env(url),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def _env(url: str) -> dict[str, str]:
    # Nothing of this checkout may leak in: each venv imports its own wheel.
    keep = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("DATABASE_") and name != "PYTHONPATH"
    }
    return keep | {"DATABASE_URL": url, "PYTHONDONTWRITEBYTECODE": "1"}


def _later_tree(
    root: Path, version: Version, revisions: list[str], *, drop_superuser: bool
) -> Path:
    assert HEAD is not None
    tree = root / "tree"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("src", "migrations"):
        shutil.copytree(REPO / folder, tree / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, tree / name)
    pyproject = tree / "pyproject.toml"
    pyproject.write_text(
        re.sub(
            r'^version = ".*"$',
            f'version = "{version}"',
            pyproject.read_text(),
            count=1,
            flags=re.MULTILINE,
        )
    )
    for name in revisions:
        text = (SKEW / "revisions" / name).read_text().replace("__SINCE__", str(version))
        (tree / "migrations" / "versions" / name).write_text(text.replace("__HEAD__", HEAD))
    model = tree / "src/appdb/models/user.py"
    text = model.read_text()
    bio = "    bio: str | None = Field(default=None, sa_type=Text)\n"
    text = text.replace(
        bio, bio + "    nickname: str | None = Field(default=None, max_length=64)\n"
    )
    if drop_superuser:
        text = re.sub(r"^    is_superuser: bool = .*\n", "", text, flags=re.MULTILINE)
        schemas = tree / "src/appdb/models/schemas.py"
        schemas.write_text(schemas.read_text().replace("    is_superuser: bool\n", ""))
    model.write_text(text)
    return tree


def _prebuilt(tree: Path, version: Version) -> Path | None:
    """This checkout's wheel when ``$APPDB_DIST`` holds it (.ci/run builds it once for all)."""
    given = os.environ.get("APPDB_DIST")
    if tree != REPO or not given:
        return None
    return next(Path(given).glob(f"appdb-{version}-*.whl"), None)


def _install(root: Path, tree: Path, version: Version) -> Install:
    wheel = _prebuilt(tree, version)
    if wheel is None:
        dist = root / "dist"
        subprocess.run(
            [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(tree)],
            check=True,
            capture_output=True,
        )
        (wheel,) = dist.glob("appdb-*.whl")
    bin_dir = new_venv(root / "venv")
    subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
    )
    return Install(version, bin_dir, wheel)


@dataclass(frozen=True)
class Versions:
    """The three installs."""

    current: Install
    additive: Install
    breaking: Install


def build_versions(roots: dict[str, Path]) -> Versions:
    """Build and install the three versions, side by side, under `roots` (by name)."""
    trees = {
        "current": REPO,
        "additive": _later_tree(
            roots["additive"], ADDITIVE, ["0003_users_nickname.py"], drop_superuser=False
        ),
        "breaking": _later_tree(
            roots["breaking"],
            BREAKING,
            ["0003_users_nickname.py", "0004_drop_is_superuser.py"],
            drop_superuser=True,
        ),
    }
    wanted = {"current": CURRENT, "additive": ADDITIVE, "breaking": BREAKING}
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {
            name: pool.submit(_install, roots[name], trees[name], wanted[name]) for name in roots
        }
        installs = {name: future.result() for name, future in futures.items()}
    return Versions(**installs)


SMARTSPACE = REPO / "examples" / "smartspace"
SMARTSPACE_CURRENT = Version("0.1.0")
SMARTSPACE_ADDITIVE = Version("0.1.1")


def _smartspace_wheel(root: Path, version: Version) -> Path:
    tree = root / "smartspace"
    shutil.copytree(SMARTSPACE, tree, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    pyproject = tree / "pyproject.toml"
    pyproject.write_text(
        re.sub(
            r'^version = ".*"$',
            f'version = "{version}"',
            pyproject.read_text(),
            count=1,
            flags=re.MULTILINE,
        )
    )
    if version != SMARTSPACE_CURRENT:
        name = "smartspace_0003_api_key_label.py"
        text = (SKEW / "revisions" / name).read_text().replace("__SINCE__", str(version))
        (tree / "src/smartspace/migrations/versions" / name).write_text(text)
    dist = root / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(tree)],
        check=True,
        capture_output=True,
    )
    (wheel,) = dist.glob("smartspace-*.whl")
    return wheel


def _install_service(root: Path, appdb_wheel: Path, version: Version) -> Install:
    service = _smartspace_wheel(root, version)
    bin_dir = new_venv(root / "venv")
    subprocess.run(
        [
            str(bin_dir / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            str(appdb_wheel),
            str(service),
        ],
        check=True,
        capture_output=True,
    )
    return Install(version, bin_dir, appdb_wheel)


def build_services(roots: dict[str, Path], appdb_wheel: Path) -> tuple[Install, Install]:
    """This appdb with smartspace 0.1.0, and with a later smartspace 0.1.1 (one additive revision)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        older = pool.submit(_install_service, roots["older"], appdb_wheel, SMARTSPACE_CURRENT)
        newer = pool.submit(_install_service, roots["newer"], appdb_wheel, SMARTSPACE_ADDITIVE)
        return older.result(), newer.result()
