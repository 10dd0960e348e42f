"""Fresh virtual environments, for the tests that install a built wheel and run it."""

from __future__ import annotations

import venv
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["new_venv"]


def new_venv(path: Path) -> Path:
    """Create a virtual environment with pip at `path` and return its ``bin`` directory.

    Its interpreter is a symlink, as ``python -m venv`` makes it on POSIX. A copied interpreter
    is open for writing while it is copied, and a process forked meanwhile by another thread
    (the skew fixtures build three venvs at once) holds that descriptor until it execs: running
    the copy then fails with ETXTBSY, "Text file busy".
    """
    venv.create(path, with_pip=True, symlinks=True)
    return path / "bin"
