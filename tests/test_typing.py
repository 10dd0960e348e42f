"""Type checkers see appdb's real API: tests/typing/api.py, and pyright's --verifytypes.

``tests/typing/api.py`` passes mypy and pyright strict; the public API's type completeness
(``pyright --verifytypes appdb``) loses no ground.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
API = REPO_ROOT / "tests" / "typing" / "api.py"
# Test files checked here with the API file (.ci/run and `nox -s typecheck` check all of tests/).
STRICT_TESTS = ("test_fastapi.py", "test_readme.py", "test_typing.py")
BIN = Path(sys.executable).parent

# Every public symbol has a known type: 100 % (0.811 before issue 15, 0.979 before appdb.aio's
# twins were written out and the loggers annotated).
SCORE_FLOOR = 1.0


def _pyright() -> str:
    found = shutil.which("pyright", path=str(BIN))
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("pyright is not installed (it is in appdb's tests extra)")
        pytest.skip("pyright is not installed: pip install -e '.[tests]'")
    return found


def _run_pyright(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # pyright finds the packages of the interpreter the active virtual environment names.
    env = {
        "PATH": f"{BIN}{os.pathsep}/usr/bin:/bin",
        "VIRTUAL_ENV": sys.prefix,
        "HOME": os.environ.get("HOME", str(Path.home())),
    }
    return subprocess.run(
        [_pyright(), *args], capture_output=True, text=True, check=False, cwd=cwd, env=env
    )


@pytest.mark.slow
def test_api_passes_mypy_strict() -> None:
    """The typos in tests/typing/api.py are errors and the rest is clean, under mypy --strict.

    The test files in `STRICT_TESTS` are checked strictly too.
    """
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(REPO_ROOT / "pyproject.toml"),
            str(API),
            *(str(REPO_ROOT / "tests" / name) for name in STRICT_TESTS),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
    )
    assert 0 == result.returncode, result.stdout + result.stderr


@pytest.mark.slow
def test_api_passes_pyright_strict() -> None:
    """The same file under pyright strict (``[tool.pyright]`` in pyproject.toml)."""
    result = _run_pyright("--project", str(REPO_ROOT / "pyproject.toml"), str(API), cwd=REPO_ROOT)
    assert 0 == result.returncode, result.stdout + result.stderr


@pytest.mark.slow
def test_verifytypes_completeness(tmp_path: Path) -> None:
    """``pyright --verifytypes appdb``: every public symbol's type is known (100 %)."""
    # From an empty directory, so pyright resolves appdb as installed, not as a local folder.
    result = _run_pyright(
        "--verifytypes", "appdb", "--ignoreexternal", "--outputjson", cwd=tmp_path
    )
    report = json.loads(result.stdout)["typeCompleteness"]
    incomplete = {symbol["name"] for symbol in report["symbols"] if symbol["diagnostics"]}
    assert set() == incomplete
    assert report["completenessScore"] >= SCORE_FLOOR
