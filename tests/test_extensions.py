"""Service-owned tables and migrations registered through the ``appdb.migrations`` entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from appdb import DatabaseSettings, create_engine, metadata, migrate
from appdb.exceptions import MigrationError
from appdb.extensions import service_migrations

SCRIPT = str(Path(sys.executable).parent / "appdb-migrate")

MODELS = """
import sqlalchemy as sa

from appdb import metadata

notes = sa.Table(
    "svcdemo_notes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
              sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("pinned", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Index("idx_svcdemo_notes_user_id", "user_id"),
)
"""

FIRST = '''
"""Create svcdemo_notes.

Revision ID: svcdemo_0001
"""
import sqlalchemy as sa
from alembic import op

revision = "svcdemo_0001"
down_revision = None
branch_labels = ("svcdemo",)
depends_on = "0002_messages"


def upgrade():
    op.create_table(
        "svcdemo_notes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE",
                                name="fk_svcdemo_notes_user_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_svcdemo_notes"),
    )
    op.create_index("idx_svcdemo_notes_user_id", "svcdemo_notes", ["user_id"])


def downgrade():
    op.drop_index("idx_svcdemo_notes_user_id", table_name="svcdemo_notes")
    op.drop_table("svcdemo_notes")
'''

SECOND = '''
"""Pin notes.

Revision ID: svcdemo_0002
"""
import sqlalchemy as sa
from alembic import op

revision = "svcdemo_0002"
down_revision = "svcdemo_0001"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("svcdemo_notes") as batch:
        batch.add_column(sa.Column("pinned", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade():
    with op.batch_alter_table("svcdemo_notes") as batch:
        batch.drop_column("pinned")
'''


def write_service(root: Path, *, versions: bool = True, broken: bool = False) -> Path:
    """An installed service as importlib.metadata sees it: a package and its dist-info."""
    package = root / "svcdemo"
    (package / "migrations" / "versions").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(MODELS)
    body = "import no_such_module\n" if broken else "from svcdemo import models\n"
    (package / "migrations" / "__init__.py").write_text(body)
    if versions:
        (package / "migrations" / "versions" / "svcdemo_0001.py").write_text(FIRST)
        (package / "migrations" / "versions" / "svcdemo_0002.py").write_text(SECOND)
    else:
        (package / "migrations" / "versions").rmdir()
    dist_info = root / "svcdemo-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: svcdemo\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(
        "[appdb.migrations]\nsvcdemo = svcdemo.migrations\n"
    )
    return root


def _forget_service() -> None:
    for name in [name for name in sys.modules if name.split(".")[0] == "svcdemo"]:
        del sys.modules[name]
    if "svcdemo_notes" in metadata.tables:
        metadata.remove(metadata.tables["svcdemo_notes"])


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The svcdemo service is installed (on sys.path) for this test only."""
    root = write_service(tmp_path / "site")
    monkeypatch.syspath_prepend(str(root))
    yield root
    _forget_service()


def _tables(settings: DatabaseSettings) -> set[str]:
    engine = create_engine(settings)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_nothing_registered_keeps_one_head() -> None:
    """Without services appdb alone is migrated, as before."""
    assert () == service_migrations()
    assert ("0002_messages",) == migrate.heads()


def test_service_is_found_and_its_models_registered(service: Path) -> None:
    """The entry point names the package; importing it put the service's table on metadata."""
    (found,) = service_migrations()
    assert ("svcdemo", "svcdemo.migrations") == (found.name, found.package)
    assert service / "svcdemo" / "migrations" / "versions" == found.versions
    assert "svcdemo_notes" in metadata.tables
    assert {"0002_messages", "svcdemo_0002"} == set(migrate.heads())


def test_upgrade_applies_appdb_then_service(service: Path, settings: DatabaseSettings) -> None:
    """One upgrade runs appdb's revisions before the service revision that depends on them."""
    applied = [step.revision for step in migrate.upgrade(settings=settings)]
    assert ["0001_users", "0002_messages", "svcdemo_0001", "svcdemo_0002"] == applied
    assert {"users", "messages", "svcdemo_notes", "alembic_version"} == _tables(settings)
    # Alembic records the service's head alone: it implies appdb's through depends_on.
    assert ("svcdemo_0002",) == migrate.current(settings)
    assert "0002_messages, svcdemo_0002" == migrate.ensure_schema_current(settings)
    assert [] == migrate.check(settings)
    assert [] == migrate.upgrade(settings=settings)


def test_check_covers_service_tables(service: Path, settings: DatabaseSettings) -> None:
    """Drift in a service table is reported like drift in appdb's."""
    migrate.upgrade(settings=settings)
    engine = create_engine(settings)
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE svcdemo_notes ADD COLUMN colour VARCHAR(10)")
    engine.dispose()
    assert ["remove column svcdemo_notes.colour"] == migrate.check(settings)


def test_service_behind_is_out_of_date(service: Path, settings: DatabaseSettings) -> None:
    """With appdb at head but the service one revision behind: the start-up guard refuses."""
    migrate.upgrade(settings=settings)
    migrate.downgrade("svcdemo@-1", settings)
    assert ("svcdemo_0001",) == migrate.current(settings)
    with pytest.raises(migrate.SchemaOutOfDateError, match="run `appdb-migrate upgrade`"):
        migrate.ensure_schema_current(settings)


def test_downgrade_base_undoes_service_first(service: Path, settings: DatabaseSettings) -> None:
    """Down to base, the service's revisions go before the appdb tables they reference."""
    migrate.upgrade(settings=settings)
    undone = [step.revision for step in migrate.downgrade("base", settings)]
    assert ["svcdemo_0002", "svcdemo_0001", "0002_messages", "0001_users"] == undone
    assert {"alembic_version"} == _tables(settings)
    assert 4 == len(migrate.upgrade(settings=settings))


def test_service_branch_alone(service: Path, settings: DatabaseSettings) -> None:
    """Upgrading only the service's branch brings appdb's revisions it depends on."""
    applied = [step.revision for step in migrate.upgrade("svcdemo@svcdemo_0001", settings)]
    assert ["0001_users", "0002_messages", "svcdemo_0001"] == applied


def test_history_lists_both(service: Path) -> None:
    """History shows appdb's and the service's revisions, the service's branch labelled."""
    by_id = {revision.revision: revision for revision in migrate.history()}
    assert {"0001_users", "0002_messages", "svcdemo_0001", "svcdemo_0002"} == set(by_id)
    assert ("svcdemo",) == by_id["svcdemo_0001"].branch_labels
    assert by_id["svcdemo_0002"].is_head
    assert by_id["0002_messages"].is_head


def test_broken_service_is_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A registered package that fails to import is a MigrationError naming the service."""
    monkeypatch.syspath_prepend(str(write_service(tmp_path / "site", broken=True)))
    try:
        with pytest.raises(MigrationError, match=r"cannot load .*'svcdemo'.*no_such_module"):
            migrate.heads()
    finally:
        _forget_service()


def test_service_without_versions_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A registered package without a versions folder is a MigrationError."""
    monkeypatch.syspath_prepend(str(write_service(tmp_path / "site", versions=False)))
    try:
        with pytest.raises(MigrationError, match="'svcdemo' registers have no folder"):
            service_migrations()
    finally:
        _forget_service()


def _cli(*args: str, cwd: Path, site: Path) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    return subprocess.run(
        [SCRIPT, *args],
        cwd=cwd,
        env=environment | {"PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_upgrade_history_schema(service: Path, database_url: sa.URL, tmp_path: Path) -> None:
    """The CLI upgrades both, reports both heads, lists the branch and draws the service table."""
    url = ["--database-url", database_url.render_as_string(hide_password=False)]
    upgraded = _cli(*url, "upgrade", cwd=tmp_path, site=service)
    assert 0 == upgraded.returncode, upgraded.stderr
    assert "upgraded svcdemo_0002" in upgraded.stdout
    current = _cli(*url, "current", "--check", cwd=tmp_path, site=service)
    assert (0, "0002_messages, svcdemo_0002 (head): up to date\n") == (
        current.returncode,
        current.stdout,
    )
    assert 0 == _cli(*url, "check", cwd=tmp_path, site=service).returncode
    history = _cli("history", cwd=tmp_path, site=service).stdout.splitlines()
    assert "<base> -> svcdemo_0001 [svcdemo]: Create svcdemo_notes." in history
    schema = _cli("schema", cwd=tmp_path, site=service).stdout.splitlines()
    assert '    users ||--o{ svcdemo_notes : "user_id"' in schema
    broken = _cli("schema", cwd=tmp_path, site=tmp_path / "nowhere")
    assert "svcdemo_notes" not in broken.stdout


def test_cli_broken_service_exits_1(tmp_path: Path) -> None:
    """A broken registration is one line on stderr and exit code 1."""
    site = write_service(tmp_path / "site", broken=True)
    result = _cli("heads", cwd=tmp_path, site=site)
    assert 1 == result.returncode
    expected = (
        "appdb-migrate: error: cannot load the migrations that 'svcdemo' registers "
        "(svcdemo.migrations): ModuleNotFoundError: No module named 'no_such_module'"
    )
    assert [expected] == result.stderr.splitlines()


def test_offline_sql_covers_both(service: Path) -> None:
    """--sql renders the service's revisions after appdb's, and a branch's downgrade alone."""
    upgrade = migrate.offline_sql("heads")
    assert upgrade.index("CREATE TABLE users") < upgrade.index("CREATE TABLE svcdemo_notes")
    branch_down = migrate.offline_sql("svcdemo@base", downgrade=True)
    assert "DROP TABLE svcdemo_notes" in branch_down
    assert "DROP TABLE users" not in branch_down
    assert "DROP TABLE users" in migrate.offline_sql("base", downgrade=True)


def test_schema_draws_registered_tables(service: Path) -> None:
    """`appdb.schema` draws the registered services' tables by default."""
    from appdb import schema  # noqa: PLC0415

    assert "svcdemo_notes" in schema.render_text()


def test_service_migrations_missing_here(service: Path, settings: DatabaseSettings) -> None:
    """A process without the service's package cannot vouch for a database the service migrated.

    Alembic records the service's head alone, so such a process is told to install it.
    """
    migrate.upgrade(settings=settings)
    sys.path.remove(str(service))
    _forget_service()
    assert ("0002_messages",) == migrate.heads()
    with pytest.raises(migrate.SchemaOutOfDateError, match="install its package"):
        migrate.ensure_schema_current(settings)
