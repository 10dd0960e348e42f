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
from appdb.compat import CONTRACT_TABLE, read_contract
from appdb.exceptions import MigrationError, SchemaOutOfDateError
from appdb.migrate.chains import appdb_chain, script_directory
from appdb.migrate.services import service_migrations

# appdb's own revisions, oldest first, and the newest: whatever they are now.
APPDB = [
    script.revision for script in reversed(list(script_directory(appdb_chain()).walk_revisions()))
]
HEAD = APPDB[-1]

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
branch_labels = None
depends_on = None


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


def write_service(
    root: Path, *, versions: bool = True, broken: bool = False, name: str = "svcdemo"
) -> Path:
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
        f"[appdb.migrations]\n{name} = svcdemo.migrations\n"
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
    assert (HEAD,) == migrate.heads()


def test_service_is_found_and_its_models_registered(service: Path) -> None:
    """The entry point names the package; importing it put the service's table on metadata."""
    (found,) = service_migrations()
    assert ("svcdemo", "svcdemo.migrations") == (found.name, found.package)
    assert service / "svcdemo" / "migrations" / "versions" == found.versions
    assert "svcdemo_notes" in metadata.tables
    assert (HEAD, "svcdemo_0002") == migrate.heads()


def test_upgrade_applies_appdb_then_service(service: Path, settings: DatabaseSettings) -> None:
    """On a fresh database appdb's chain goes first: the service's table references users."""
    applied = [step.revision for step in migrate.upgrade(settings=settings)]
    assert [*APPDB, "svcdemo_0001", "svcdemo_0002"] == applied
    tables = {"users", "messages", "svcdemo_notes", "alembic_version", "alembic_version_svcdemo"}
    tables.add(CONTRACT_TABLE)
    assert tables == _tables(settings)
    engine = create_engine(settings)
    try:
        (foreign_key,) = sa.inspect(engine).get_foreign_keys("svcdemo_notes")
        with engine.connect() as connection:
            appdb_rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version")
            assert [(HEAD,)] == [tuple(row) for row in appdb_rows]
            service_rows = connection.exec_driver_sql(
                "SELECT version_num FROM alembic_version_svcdemo"
            )
            assert [("svcdemo_0002",)] == [tuple(row) for row in service_rows]
    finally:
        engine.dispose()
    assert "users" == foreign_key["referred_table"]
    assert (HEAD, "svcdemo_0002") == migrate.current(settings)
    assert f"{HEAD}, svcdemo_0002" == migrate.ensure_schema_current(settings)
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


def test_check_ignores_service_not_installed(service: Path, settings: DatabaseSettings) -> None:
    """A service installed elsewhere: its table and version table are not drift here."""
    migrate.upgrade(settings=settings)
    sys.path.remove(str(service))
    _forget_service()
    assert [] == migrate.check(settings)
    engine = create_engine(settings)
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE users ADD COLUMN colour VARCHAR(10)")
    engine.dispose()
    assert ["remove column users.colour"] == migrate.check(settings)


def test_service_behind_is_out_of_date(service: Path, settings: DatabaseSettings) -> None:
    """With appdb at head but the service one revision behind: the start-up guard refuses."""
    migrate.upgrade(settings=settings)
    migrate.downgrade("svcdemo@-1", settings)
    assert (HEAD, "svcdemo_0001") == migrate.current(settings)
    assert not migrate.at_heads(migrate.current(settings))
    expected = (
        "service svcdemo is at svcdemo_0001 but its migrations end at svcdemo_0002: "
        "run `appdb-migrate upgrade`"
    )
    with pytest.raises(SchemaOutOfDateError) as raised:
        migrate.ensure_schema_current(settings)
    assert expected == str(raised.value)


def test_service_down_to_base_and_up_again(service: Path, settings: DatabaseSettings) -> None:
    """The service's chain goes down alone, leaving appdb's; the next upgrade brings it back."""
    migrate.upgrade(settings=settings)
    undone = [step.revision for step in migrate.downgrade("svcdemo@base", settings)]
    assert ["svcdemo_0002", "svcdemo_0001"] == undone
    assert {
        "users",
        "messages",
        "alembic_version",
        "alembic_version_svcdemo",
        CONTRACT_TABLE,
    } == _tables(settings)
    assert (HEAD,) == migrate.current(settings)
    applied = [step.revision for step in migrate.upgrade(settings=settings)]
    assert ["svcdemo_0001", "svcdemo_0002"] == applied
    assert [] == migrate.check(settings)


def test_appdb_downgrade_refused_while_service_is_up(
    service: Path, settings: DatabaseSettings
) -> None:
    """The appdb chain stays put while a service's tables reference it: down the service first."""
    migrate.upgrade(settings=settings)
    for refused in (
        lambda: migrate.downgrade("base", settings),
        lambda: migrate.stamp("base", settings),
    ):
        with pytest.raises(MigrationError) as raised:
            refused()
        assert (
            "'base' addresses appdb's own chain, but service(s) svcdemo still have tables "
            "referencing appdb's: take them down first (svcdemo@base)"
        ) == str(raised.value)
    assert (HEAD, "svcdemo_0002") == migrate.current(settings)
    migrate.downgrade("svcdemo@base", settings)
    undone = [step.revision for step in migrate.downgrade("base", settings)]
    assert APPDB[::-1] == undone
    assert {"alembic_version", "alembic_version_svcdemo"} == _tables(settings)
    assert len(APPDB) + 2 == len(migrate.upgrade(settings=settings))


def test_service_branch_alone(service: Path, settings: DatabaseSettings) -> None:
    """Upgrading only the service's chain brings appdb's to its head first."""
    applied = [step.revision for step in migrate.upgrade("svcdemo@svcdemo_0001", settings)]
    assert [*APPDB, "svcdemo_0001"] == applied
    assert ["svcdemo_0002"] == [step.revision for step in migrate.upgrade("svcdemo@+1", settings)]


def test_stamp_addresses_chains(service: Path, settings: DatabaseSettings) -> None:
    """``heads`` stamps every chain, ``svcdemo@...`` the service's alone."""
    migrate.stamp("heads", settings, force=True)  # an empty database: stamping needs force
    assert (HEAD, "svcdemo_0002") == migrate.current(settings)
    migrate.stamp("svcdemo@base", settings)
    assert (HEAD,) == migrate.current(settings)
    assert {"alembic_version", "alembic_version_svcdemo", CONTRACT_TABLE} == _tables(settings)


def test_unknown_service_target(service: Path, settings: DatabaseSettings) -> None:
    """A target naming a service not installed here is refused before anything runs."""
    expected = "'nosuch@head': no service 'nosuch' is installed here (installed: svcdemo)"
    with pytest.raises(MigrationError) as raised:
        migrate.upgrade("nosuch@head", settings)
    assert expected == str(raised.value)
    assert set() == _tables(settings)


def test_history_lists_both(service: Path) -> None:
    """History shows appdb's and the service's revisions, the service's labelled."""
    by_id = {revision.revision: revision for revision in migrate.history()}
    assert {*APPDB, "svcdemo_0001", "svcdemo_0002"} == set(by_id)
    assert ("svcdemo", "svcdemo") == (by_id["svcdemo_0001"].service, by_id["svcdemo_0002"].service)
    assert by_id["0001_users"].service is None
    assert by_id["svcdemo_0002"].is_head
    assert by_id[HEAD].is_head


def test_alembic_config_for_a_service(service: Path, settings: DatabaseSettings) -> None:
    """``alembic_config(service=...)`` is the service's chain alone, with its version table."""
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    config = migrate.alembic_config(settings, service="svcdemo")
    assert "alembic_version_svcdemo" == config.attributes["version_table"]
    script = ScriptDirectory.from_config(config)
    assert {"svcdemo_0001", "svcdemo_0002"} == {item.revision for item in script.walk_revisions()}
    with pytest.raises(MigrationError, match="no service 'nosuch' is installed here"):
        migrate.alembic_config(settings, service="nosuch")


def test_service_name_must_be_an_identifier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name becomes a table name: anything else than a lowercase identifier is refused."""
    monkeypatch.syspath_prepend(str(write_service(tmp_path / "site", name="smart-space")))
    try:
        with pytest.raises(MigrationError, match=r"'smart-space' is not a valid service name"):
            migrate.heads()
    finally:
        _forget_service()


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
    assert (0, f"{HEAD}, svcdemo_0002 (head): up to date\n") == (
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
    """--sql renders the service's chain after appdb's, and a service's downgrade alone."""
    upgrade = migrate.offline_sql("heads")
    assert upgrade.index("CREATE TABLE users") < upgrade.index("CREATE TABLE svcdemo_notes")
    assert "INSERT INTO alembic_version_svcdemo (version_num) VALUES ('svcdemo_0001')" in upgrade
    branch_down = migrate.offline_sql("svcdemo@base", downgrade=True)
    assert "DROP TABLE svcdemo_notes" in branch_down
    assert "DROP TABLE users" not in branch_down
    appdb_down = migrate.offline_sql("base", downgrade=True)
    assert "DROP TABLE users" in appdb_down
    assert "svcdemo" not in appdb_down


def test_schema_draws_registered_tables(service: Path) -> None:
    """`appdb.diagram` draws the registered services' tables by default."""
    from appdb import diagram  # noqa: PLC0415

    assert "svcdemo_notes" in diagram.render_text()


def test_process_without_the_service(
    service: Path, database_url: sa.URL, settings: DatabaseSettings, tmp_path: Path
) -> None:
    """A process that does not install the service (the bot) is not coupled to it.

    The service's revisions are in its own version table, which such a process never reads.
    """
    migrate.upgrade(settings=settings)
    url = ["--database-url", database_url.render_as_string(hide_password=False)]
    elsewhere = tmp_path / "nowhere"
    upgraded = _cli(*url, "upgrade", cwd=tmp_path, site=elsewhere)
    assert (0, f"nothing to do: database already at {HEAD}\n") == (
        upgraded.returncode,
        upgraded.stdout,
    ), upgraded.stderr
    checked = _cli(*url, "current", "--check", cwd=tmp_path, site=elsewhere)
    assert (0, f"{HEAD} (head): up to date\n") == (checked.returncode, checked.stdout)
    assert 0 == _cli(*url, "check", cwd=tmp_path, site=elsewhere).returncode

    sys.path.remove(str(service))
    _forget_service()
    assert (HEAD,) == migrate.heads()
    assert (HEAD,) == migrate.current(settings)
    assert HEAD == migrate.ensure_schema_current(settings)
    # appdb's chain cannot go down under the service's tables, installed here or not.
    with pytest.raises(MigrationError, match=r"service\(s\) svcdemo still have tables"):
        migrate.downgrade("-1", settings)


def test_cli_appdb_downgrade_refused(service: Path, database_url: sa.URL, tmp_path: Path) -> None:
    """One line and exit 1; the database is left as it was."""
    url = ["--database-url", database_url.render_as_string(hide_password=False)]
    assert 0 == _cli(*url, "upgrade", cwd=tmp_path, site=service).returncode
    refused = _cli(*url, "downgrade", "-1", cwd=tmp_path, site=service)
    expected = (
        "appdb-migrate: error: '-1' addresses appdb's own chain, but service(s) svcdemo still "
        "have tables referencing appdb's: take them down first (svcdemo@base)"
    )
    assert (1, [expected]) == (refused.returncode, refused.stderr.splitlines())
    current = _cli(*url, "current", cwd=tmp_path, site=service)
    assert f"{HEAD}, svcdemo_0002 (head)\n" == current.stdout
    down = _cli(*url, "downgrade", "svcdemo@base", cwd=tmp_path, site=service)
    assert 0 == down.returncode, down.stderr
    assert "downgraded svcdemo_0001" in down.stdout


def _pretend_newer_service(settings: DatabaseSettings, min_version: str) -> None:
    """What a newer svcdemo (0.2) leaves behind: a revision unknown here, and its contract."""
    engine = create_engine(settings)
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "UPDATE alembic_version_svcdemo SET version_num = 'svcdemo_0003'"
        )
        connection.execute(
            sa.text(
                "UPDATE appdb_schema_contract SET revision = 'svcdemo_0003', "
                "min_version = :floor, written_by = '0.2' WHERE chain = 'svcdemo'"
            ),
            {"floor": min_version},
        )
    engine.dispose()


def test_service_chain_records_its_contract(service: Path, settings: DatabaseSettings) -> None:
    """A service's chain gets its own row; undeclared revisions count as breaking in 0.1."""
    migrate.upgrade(settings=settings)
    engine = create_engine(settings)
    try:
        with engine.connect() as connection:
            contract = read_contract(connection, "svcdemo")
    finally:
        engine.dispose()
    assert contract is not None
    assert ("svcdemo_0002", "0.1", "0.1") == (
        contract.revision,
        str(contract.min_version),
        str(contract.written_by),
    )


def test_older_service_on_a_compatible_newer_service_chain(
    service: Path, settings: DatabaseSettings
) -> None:
    """Svcdemo 0.1 serves a schema a newer svcdemo migrated, when the contract says so."""
    migrate.upgrade(settings=settings)
    _pretend_newer_service(settings, min_version="0.1")
    assert f"{HEAD}, svcdemo_0003" == migrate.ensure_schema_current(settings)
    (found,) = migrate.ahead(settings)
    assert ("svcdemo", True) == (found.chain, found.compatible)
    assert [] == migrate.upgrade(settings=settings)
    with pytest.raises(MigrationError, match=r"run it with svcdemo >= 0.2"):
        migrate.downgrade("svcdemo@base", settings)


def test_older_service_on_an_incompatible_newer_service_chain(
    service: Path, settings: DatabaseSettings
) -> None:
    """Below the recorded floor: the guard and upgrade name the version needed."""
    migrate.upgrade(settings=settings)
    _pretend_newer_service(settings, min_version="0.2")
    with pytest.raises(SchemaOutOfDateError, match=r"needs svcdemo >= 0.2; this svcdemo 0.1"):
        migrate.ensure_schema_current(settings)
    with pytest.raises(MigrationError, match=r"needs svcdemo >= 0.2"):
        migrate.upgrade(settings=settings)
