"""A copy of appdb's migrations with one test revision on top, and the real CLI run on it.

The migration-safety suites (tests/reliability, tests/ha) start ``appdb-migrate`` as a process on
such a copy, so that a revision can hold its transaction open while a test kills the command,
the server or the primary.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path

from appdb.migrate.chains import appdb_chain, script_directory

REPO_ROOT = Path(__file__).resolve().parents[1]
# The head of appdb's chain, whatever revision that is now.
HEAD = script_directory(appdb_chain()).get_current_head()


def revision_on_head(revision: str, summary: str, functions: str) -> str:
    """The text of an additive revision file *revision* on top of HEAD, with *functions*."""
    header = f'''"""{summary}

Revision ID: {revision}
Revises: {HEAD}
"""

import os

from alembic import op

revision = "{revision}"
down_revision = "{HEAD}"
branch_labels = None
depends_on = None
compatibility = "additive"
since = "0.1.0"

'''
    return header + textwrap.dedent(functions)


# A revision that creates a marker table, then sleeps inside its transaction.
SLOW_REVISION = revision_on_head(
    "0003_slow",
    "A test revision that holds its transaction open for APPDB_TEST_SLOW_SECONDS.",
    """
    def upgrade() -> None:
        op.execute("CREATE TABLE slow_marker (id integer)")
        op.execute(f"SELECT pg_sleep({float(os.environ['APPDB_TEST_SLOW_SECONDS'])})")


    def downgrade() -> None:
        op.execute("DROP TABLE slow_marker")
    """,
)

# The real CLI, with appdb's migrations swapped for the copy named by the first argument.
_RUN_ON_COPY = textwrap.dedent(
    """
    import sys
    import appdb.migrate.chains
    location = sys.argv.pop(1)
    appdb.migrate.chains.script_location = lambda: location
    from appdb.cli import run
    run()
    """
)


def copy_chain(directory: Path, name: str, revision: str) -> Path:
    """Copy appdb's migrations into *directory*/migrations and add *revision* as *name*.py."""
    chain = directory / "migrations"
    shutil.copytree(REPO_ROOT / "migrations", chain)
    (chain / "versions" / f"{name}.py").write_text(revision)
    return chain


def cli_on(chain: Path, *arguments: str) -> list[str]:
    """The command line that runs ``appdb-migrate *arguments`` on *chain*."""
    return [sys.executable, "-c", _RUN_ON_COPY, str(chain), *arguments]
