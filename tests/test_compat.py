"""Schema contracts: each revision's declaration, the version policy, tagged application names."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory
from packaging.version import Version
from sqlmodel import Session, func, select

import appdb
from appdb import DatabaseSettings, Message, SchemaMismatchError, create_engine, migrate
from appdb.clients import parse_clients, tag_application_name
from appdb.compat import (
    CONTRACT_TABLE,
    RevisionContract,
    contract_of,
    floor_of,
    read_contract,
    version_policy_problems,
)
from appdb.exceptions import MigrationError
from appdb.migrate import alembic_config
from appdb.migrate.chains import appdb_chain, script_directory
from appdb.users import get_user_by_username

# The head of appdb's chain, whatever revision that is now.
HEAD = script_directory(appdb_chain()).get_current_head()


REPO = Path(__file__).resolve().parent.parent
SMARTSPACE_VERSIONS = REPO / "examples/smartspace/src/smartspace/migrations/versions"
SMARTSPACE_VERSION = Version("0.1.0")


def _script_directory(versions: Path | None = None) -> ScriptDirectory:
    config = alembic_config()
    if versions is not None:
        config = Config()
        config.set_main_option("script_location", str(REPO / "migrations"))
        config.set_main_option("path_separator", "newline")
        config.set_main_option("version_locations", str(versions))
    return ScriptDirectory.from_config(config)


def _oldest_first(script_directory: ScriptDirectory) -> list[RevisionContract]:
    scripts = list(script_directory.walk_revisions())
    return [contract_of(script) for script in reversed(scripts)]


@pytest.mark.parametrize(
    ("versions", "package_version"),
    [(None, Version(appdb.__version__)), (SMARTSPACE_VERSIONS, SMARTSPACE_VERSION)],
    ids=["appdb", "smartspace"],
)
def test_every_revision_declares_and_follows_the_version_policy(
    versions: Path | None, package_version: Version
) -> None:
    """Each shipped revision says additive or breaking and since when; the policy holds."""
    contracts = _oldest_first(_script_directory(versions))
    assert contracts
    assert [] == version_policy_problems(contracts, package_version)


def test_a_revision_without_declaration_is_refused(tmp_path: Path) -> None:
    """A revision file that declares nothing cannot be read as a contract."""
    (tmp_path / "0001_x.py").write_text(
        'revision = "0001_x"\ndown_revision = None\nbranch_labels = None\ndepends_on = None\n'
        "def upgrade() -> None: ...\ndef downgrade() -> None: ...\n"
    )
    (script,) = _script_directory(tmp_path).walk_revisions()
    with pytest.raises(MigrationError, match=r"0001_x .* must declare compatibility"):
        contract_of(script)


def test_the_template_makes_new_revisions_declare(tmp_path: Path) -> None:
    """A revision generated from script.py.mako fails until its author fills both in."""
    template = (REPO / "migrations/script.py.mako").read_text()
    assert 'compatibility: Literal["additive", "breaking"] = "DECLARE ME"' in template
    assert 'since: str = "DECLARE ME"' in template


def _contract(revision: str, compatibility: str, since: str) -> RevisionContract:
    return RevisionContract(revision, compatibility, Version(since))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("chain", "package", "problem"),
    [
        ([("1", "breaking", "0.1.0"), ("2", "additive", "0.1.1")], "0.1.1", None),
        ([("1", "breaking", "0.1.0"), ("2", "breaking", "0.2.0")], "0.2.0", None),
        ([("1", "breaking", "0.1.0"), ("2", "breaking", "0.1.1")], "0.1.1", "minor"),
        ([("1", "breaking", "1.2.0"), ("2", "breaking", "1.3.0")], "1.3.0", "major"),
        ([("1", "breaking", "1.2.0"), ("2", "breaking", "2.0.0")], "2.0.0", None),
        ([("1", "breaking", "0.2.0"), ("2", "breaking", "0.2.0")], "0.2.0", None),
        ([("1", "breaking", "0.2.0"), ("2", "additive", "0.1.0")], "0.2.0", "older"),
        ([("1", "breaking", "0.1.0"), ("2", "breaking", "0.2.0")], "0.1.5", "package is"),
    ],
)
def test_version_policy(
    chain: list[tuple[str, str, str]], package: str, problem: str | None
) -> None:
    """Breaking needs a major bump (minor before 1.0), additive any; the package is newest."""
    problems = version_policy_problems([_contract(*item) for item in chain], Version(package))
    if problem is None:
        assert [] == problems
    else:
        assert 1 == len(problems)
        assert problem in problems[0]


def test_floor_is_the_newest_breaking_revision() -> None:
    """Appdb's chain: 0001 and 0003 are breaking, both since 0.1.0, so 0.1.0 serves every one."""
    script_directory = _script_directory()
    assert Version("0.1.0") == floor_of(script_directory, ["0002_messages"])
    assert Version("0.1.0") == floor_of(script_directory, ["0001_users"])
    assert Version("0.1.0") == floor_of(script_directory, ["0003_users_username_casefold"])


def test_application_name_carries_versions_within_63_bytes() -> None:
    """The tags survive; the configured name is shortened to make room."""
    versions = [("appdb", "0.2.0"), ("smartspace", "1.10.3")]
    assert "backend appdb/0.2.0 smartspace/1.10.3" == tag_application_name("backend", versions)
    long = tag_application_name("x" * 63, versions)
    assert 63 == len(long.encode())
    assert long.endswith(" appdb/0.2.0 smartspace/1.10.3")


def test_clients_are_parsed_from_application_names() -> None:
    """Sessions without tags are not appdb's; tagged ones carry each chain's version."""
    rows = [
        (10, "backend appdb/0.1.0", "10.0.0.7"),
        (11, "psql", None),
        (12, "bot appdb/0.2.0 smartspace/1.0.0", None),
    ]
    clients = parse_clients(rows)
    assert [10, 12] == [client.pid for client in clients]
    assert {"appdb": Version("0.1.0")} == clients[0].versions
    assert Version("1.0.0") == clients[1].versions["smartspace"]
    assert "local socket" == clients[1].host


def test_upgrade_records_the_contract_in_step(settings: DatabaseSettings) -> None:
    """Each chain's row names its revision, the floor and the writer; base removes the table."""
    migrate.upgrade(settings=settings)
    engine = create_engine(settings)
    try:
        with engine.connect() as connection:
            contract = read_contract(connection, "appdb")
    finally:
        engine.dispose()
    assert contract is not None
    assert (HEAD, Version("0.1.0"), Version(appdb.__version__)) == (
        contract.revision,
        contract.min_version,
        contract.written_by,
    )
    migrate.downgrade("base", settings)
    engine = create_engine(settings)
    try:
        assert not sa.inspect(engine).has_table(CONTRACT_TABLE)
    finally:
        engine.dispose()


def test_offline_sql_records_the_contract() -> None:
    """SQL piped to psql keeps the record too."""
    sql = migrate.offline_sql("heads")
    assert f"CREATE TABLE IF NOT EXISTS {CONTRACT_TABLE}" in sql
    assert f"INSERT INTO {CONTRACT_TABLE}" in sql
    assert "'0002_messages', '0.1.0'" in sql


FOREIGN = (
    "CREATE TABLE users (id INTEGER PRIMARY KEY, telegram_id BIGINT NOT NULL, name VARCHAR(255))",
    "CREATE TABLE messages (id INTEGER PRIMARY KEY, body TEXT)",
)


def test_stamp_refuses_tables_that_are_not_appdbs(settings: DatabaseSettings) -> None:
    """No false green: stamp lists the differences; forced, the guard still sees them."""
    engine = create_engine(settings)
    with engine.begin() as connection:
        for statement in FOREIGN:
            connection.exec_driver_sql(statement)
    engine.dispose()
    with pytest.raises(MigrationError) as refused:
        migrate.stamp("head", settings)
    message = str(refused.value)
    assert "do not match head" in message
    assert "users lacks column(s) bio, created_at, email" in message
    assert "users has unexpected column(s) name, telegram_id" in message
    assert () == migrate.current(settings)
    migrate.stamp("head", settings, force=True)
    with pytest.raises(
        SchemaMismatchError, match=r"users lacks column\(s\) bio, created_at, email"
    ):
        migrate.ensure_schema_current(settings)
    differences = migrate.check(settings)
    assert any("users.email" in line for line in differences)


def test_guard_sees_a_missing_column_despite_the_version(settings: DatabaseSettings) -> None:
    """At head by the record, but a column is gone: SchemaMismatchError, one catalog query."""
    migrate.upgrade(settings=settings)
    assert HEAD == migrate.ensure_schema_current(settings)
    engine = create_engine(settings)
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE users DROP COLUMN bio")
    engine.dispose()
    with pytest.raises(SchemaMismatchError, match=r"users lacks column\(s\) bio"):
        migrate.ensure_schema_current(settings)


def test_a_query_that_meets_a_dropped_column_raises_schema_mismatch(
    settings: DatabaseSettings,
) -> None:
    """What a running older service sees after a breaking migration: our error, not the driver's."""
    migrate.upgrade(settings=settings)
    engine = create_engine(settings)
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE users DROP COLUMN is_superuser")
    with Session(engine) as session:
        with pytest.raises(SchemaMismatchError, match="is_superuser") as raised:
            get_user_by_username(session, "ann")
        assert "newer appdb's breaking migration" in str(raised.value)
        session.rollback()
        assert 0 == session.exec(select(func.count()).select_from(Message)).one()
    engine.dispose()


def test_every_changelog_release_states_its_schema_effect() -> None:
    """Each release section (and Unreleased) says what it does to the schema, first thing."""
    sections = (REPO / "CHANGELOG.md").read_text().split("\n## [")[1:]
    assert sections
    for section in sections:
        title, _, body = section.partition("\n")
        first = next(line for line in body.splitlines() if line.strip())
        assert first.startswith("Schema: "), f"## [{title} says nothing about the schema"
