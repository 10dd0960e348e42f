"""DatabaseSettings: sources, URL normalisation, validation and secrecy."""

from __future__ import annotations

import ast
import asyncio
import inspect
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from appdb import (
    ConfigurationError,
    DatabaseSettings,
    create_async_engine,
    create_engine,
    get_settings,
)
from appdb import settings as settings_module
from appdb._redaction import hosts_of, where
from appdb.settings import DEFAULT_SQLITE_FILENAME, render_url

PASSWORD = "s3cr@t:p%ss"  # '@', ':' and '%' inside the password
SECRET = quote(PASSWORD, safe="")  # as it must appear in a URL


def test_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every DATABASE_* variable reaches its field."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db.internal:6432/app")
    monkeypatch.setenv("DATABASE_POOL_SIZE", "3")
    monkeypatch.setenv("DATABASE_MAX_OVERFLOW", "0")
    monkeypatch.setenv("DATABASE_POOL_TIMEOUT", "2.5")
    monkeypatch.setenv("DATABASE_POOL_RECYCLE", "60")
    monkeypatch.setenv("DATABASE_POOL_PRE_PING", "false")
    monkeypatch.setenv("DATABASE_ECHO", "true")
    monkeypatch.setenv("DATABASE_CONNECT_TIMEOUT", "4")
    monkeypatch.setenv("DATABASE_STATEMENT_TIMEOUT", "1500")
    monkeypatch.setenv("DATABASE_APPLICATION_NAME", "bot")
    settings = DatabaseSettings()
    assert "postgresql+psycopg://app@db.internal:6432/app" == str(settings.url)
    assert (3, 0, 2.5, 60, False, True, 4, 1500, "bot") == (
        settings.pool_size,
        settings.max_overflow,
        settings.pool_timeout,
        settings.pool_recycle,
        settings.pool_pre_ping,
        settings.echo,
        settings.connect_timeout,
        settings.statement_timeout,
        settings.application_name,
    )


def test_keyword_arguments_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Explicit keyword arguments override DATABASE_* variables."""
    monkeypatch.setenv("DATABASE_POOL_SIZE", "3")
    assert 7 == DatabaseSettings(pool_size=7).pool_size


def test_reads_dotenv_file(tmp_path: Path) -> None:
    """A .env file in the working directory is read (the fixtures chdir into tmp_path)."""
    (tmp_path / ".env").write_text("DATABASE_URL=postgres://u@h/d\nDATABASE_POOL_SIZE=9\n")
    settings = DatabaseSettings()
    assert ("postgresql+psycopg", 9) == (settings.database_url.drivername, settings.pool_size)


README = Path(__file__).resolve().parents[1] / "README.md"
_SETTINGS_ROW = re.compile(
    r"^\| `DATABASE_(?P<name>[A-Z_]+)` \| `(?P<default>[^`]*)` \|", re.MULTILINE
)


@pytest.mark.skipif(not README.exists(), reason="run from the source tree")
def test_defaults_are_the_documented_ones() -> None:
    """Every default the README's settings table gives is the one DatabaseSettings applies."""
    documented = {
        match["name"].lower(): match["default"]
        for match in _SETTINGS_ROW.finditer(README.read_text(encoding="utf-8"))
        if match["name"] != "URL"  # its default is a path relative to the working directory
    }
    assert {"pool_size", "max_overflow", "pool_pre_ping", "echo"} <= set(documented)
    defaults = DatabaseSettings(url="postgresql://h/d")
    for name, text in documented.items():
        fields: dict[str, Any] = {name: text}
        parsed = DatabaseSettings(url="postgresql://h/d", **fields)
        assert getattr(parsed, name) == getattr(defaults, name), name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgres://u:pw@h:5432/d", "postgresql+psycopg"),
        ("postgresql://u:pw@h/d", "postgresql+psycopg"),
        ("postgresql+psycopg://u:pw@h/d", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
        ("sqlite+aiosqlite:///x.db", "sqlite"),
        ("  postgres://h/d  ", "postgresql+psycopg"),
    ],
)
def test_url_normalised(raw: str, expected: str) -> None:
    """Common spellings become psycopg 3 (PostgreSQL) or pysqlite (SQLite)."""
    assert expected == DatabaseSettings(url=raw).database_url.drivername


def test_url_keeps_host_port_database_and_query() -> None:
    """Normalisation changes only the driver."""
    url = DatabaseSettings(url="postgres://u:pw@h:6543/d?sslmode=require").database_url
    assert ("u", "pw", "h", 6543, "d", "require") == (
        url.username,
        url.password,
        url.host,
        url.port,
        url.database,
        url.query["sslmode"],
    )


@pytest.mark.parametrize(
    "raw",
    [
        f"mysql://root:{SECRET}@h/d",
        f"postgresql+pg8000://root:{SECRET}@h/d",
        f"not a url {SECRET}",
        f"://root:{SECRET}@",
        f"postgresql://root:{PASSWORD}@h/d",
    ],
)
def test_bad_url_raises_configuration_error_without_password(raw: str) -> None:
    """A malformed or unsupported URL names DATABASE_URL and never shows the password."""
    with pytest.raises(ConfigurationError) as info:
        DatabaseSettings(url=raw)
    message = str(info.value)
    assert "DATABASE_URL" in message
    assert "s3cr" not in message
    assert "p%ss" not in message
    assert "p%25ss" not in message
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or "s3cr" not in str(info.value.__context__)


def test_bad_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same holds when the URL comes from the environment."""
    monkeypatch.setenv("DATABASE_URL", f"oracle://scott:{SECRET}@h/d")
    with pytest.raises(ConfigurationError, match="DATABASE_URL") as info:
        DatabaseSettings()
    assert "s3cr" not in str(info.value)


def test_configuration_error_is_value_error_and_appdb_error() -> None:
    """Callers can catch it as ValueError or as AppDBError."""
    with pytest.raises(ValueError, match="DATABASE_POOL_SIZE"):
        DatabaseSettings(url="sqlite://", pool_size=0)


@pytest.mark.parametrize(
    ("field", "value", "variable"),
    [
        ("pool_size", "many", "DATABASE_POOL_SIZE"),
        ("max_overflow", -1, "DATABASE_MAX_OVERFLOW"),
        ("pool_timeout", 0, "DATABASE_POOL_TIMEOUT"),
        ("statement_timeout", -5, "DATABASE_STATEMENT_TIMEOUT"),
        ("application_name", "x" * 64, "DATABASE_APPLICATION_NAME"),
    ],
)
def test_invalid_values_name_their_variable(field: str, value: Any, variable: str) -> None:
    """Each invalid value is reported with the variable to fix."""
    with pytest.raises(ConfigurationError, match=variable):
        DatabaseSettings(url="sqlite://", **{field: value})


def test_repr_and_str_hide_password() -> None:
    """Neither repr nor str nor a dump of the settings shows the password."""
    settings = DatabaseSettings(url=f"postgresql://app:{SECRET}@h/d")
    assert PASSWORD == settings.database_url.password
    for text in (
        repr(settings),
        str(settings),
        str(settings.model_dump()),
        settings.model_dump_json(),
    ):
        assert "s3cr" not in text
        assert "***" in text


def test_render_url_hides_password_even_when_unparsable() -> None:
    """render_url is safe on anything."""
    assert "postgresql://u:***@h/d" == render_url(f"postgresql://u:{SECRET}@h/d")
    assert "s3cr" not in render_url(f"::{SECRET}")


def test_unset_url_defaults_to_sqlite_in_working_directory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No DATABASE_URL means a SQLite file in the working directory and one warning line."""
    with caplog.at_level(logging.WARNING, logger="appdb"):
        settings = DatabaseSettings()
    assert str(tmp_path / DEFAULT_SQLITE_FILENAME) == settings.database_url.database
    assert settings.is_sqlite
    warnings = [record for record in caplog.records if record.name == "appdb"]
    assert 1 == len(warnings)
    assert "DATABASE_URL is not set" in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage()


def test_require_url_fails_fast_without_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production sets DATABASE_REQUIRE_URL; a missing URL is then a ConfigurationError."""
    monkeypatch.setenv("DATABASE_REQUIRE_URL", "1")
    with pytest.raises(ConfigurationError, match="DATABASE_URL is not set"):
        DatabaseSettings()


def test_require_url_accepts_explicit_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """With an explicit URL, requiring one is satisfied."""
    monkeypatch.setenv("DATABASE_REQUIRE_URL", "1")
    monkeypatch.setenv("DATABASE_URL", "postgresql://h/d")
    assert DatabaseSettings().is_postgresql


def test_get_settings_is_cached_and_resettable(monkeypatch: pytest.MonkeyPatch) -> None:
    """get_settings returns one object until its cache is cleared."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://h/first")
    first = get_settings()
    monkeypatch.setenv("DATABASE_URL", "postgresql://h/second")
    assert first is get_settings()
    get_settings.cache_clear()
    assert "second" == get_settings().database_url.database


@pytest.mark.parametrize(
    "raw",
    [
        "postgresql://r1.internal/app, postgres://r2.internal:5433/app",
        '["postgresql://r1.internal/app", "postgres://r2.internal:5433/app"]',
    ],
)
def test_replica_urls_from_the_environment(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    """DATABASE_REPLICA_URLS takes a comma-separated or a JSON list, normalised like DATABASE_URL."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://primary.internal/app")
    monkeypatch.setenv("DATABASE_REPLICA_URLS", raw)
    settings = DatabaseSettings()
    assert [
        "postgresql+psycopg://r1.internal/app",
        "postgresql+psycopg://r2.internal:5433/app",
    ] == [str(url) for url in settings.replica_urls]


def test_scaling_defaults() -> None:
    """No pooler, no migration URL, no replicas: appdb behaves as on one server."""
    settings = DatabaseSettings(url="postgresql://h/d")
    assert ("none", None, ()) == (settings.pooler, settings.migration_url, settings.replica_urls)
    assert not settings.uses_transaction_pooler
    assert settings.database_url == settings.for_migrations().database_url


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"url": "sqlite://", "pooler": "pgbouncer"},
            "DATABASE_POOLER=pgbouncer needs a PostgreSQL",
        ),
        ({"url": "postgresql://h/d", "pooler": "odyssey"}, "DATABASE_POOLER: Input should be"),
        (
            {"url": "sqlite://", "replica_urls": "postgresql://r/d"},
            "REPLICA_URLS needs a PostgreSQL",
        ),
        ({"url": "postgresql://h/d", "replica_urls": "mysql://r/d"}, "DATABASE_REPLICA_URLS"),
        ({"url": "postgresql://h/d", "replica_urls": "[not json"}, "DATABASE_REPLICA_URLS"),
        (
            {"url": "postgresql://h/d", "migration_url": "sqlite://"},
            "MIGRATION_URL must be a postgresql",
        ),
        (
            {"url": "postgresql://h/d", "replica_retry_interval": 0},
            "DATABASE_REPLICA_RETRY_INTERVAL",
        ),
    ],
)
def test_scaling_settings_are_validated(fields: dict[str, Any], message: str) -> None:
    """Scaling settings that cannot work are refused, naming the variable."""
    with pytest.raises(ConfigurationError, match=message):
        DatabaseSettings(**fields)


def test_replica_and_migration_urls_hide_passwords() -> None:
    """Replica and migration URLs never show their password either, nor do their errors."""
    settings = DatabaseSettings(
        url="postgresql://app@pgbouncer/d",
        migration_url=f"postgresql://owner:{SECRET}@primary/d",
        replica_urls=f"postgresql://ro:{SECRET}@replica/d",
    )
    for text in (repr(settings), str(settings.model_dump()), settings.model_dump_json()):
        assert "s3cr" not in text
    with pytest.raises(ConfigurationError) as error:
        DatabaseSettings(url="postgresql://h/d", replica_urls=f"mysql://ro:{SECRET}@replica/d")
    assert "s3cr" not in str(error.value)


def test_for_migrations_uses_the_migration_url() -> None:
    """Migrations connect to DATABASE_MIGRATION_URL directly: no pooler, no replicas."""
    settings = DatabaseSettings(
        url="postgresql://app@pgbouncer:6432/d",
        pooler="pgbouncer",
        migration_url="postgresql://owner@primary:5432/d",
        replica_urls="postgresql://replica/d",
    )
    migration = settings.for_migrations()
    assert "postgresql+psycopg://owner@primary:5432/d" == str(migration.database_url)
    assert ("none", ()) == (migration.pooler, migration.replica_urls)


def test_for_migrations_drops_the_statement_timeout() -> None:
    """The service's statement_timeout is for requests; migrations run without one."""
    settings = DatabaseSettings(url="postgresql://app@db/d", statement_timeout=5000)
    assert (5000, None) == (settings.statement_timeout, settings.for_migrations().statement_timeout)


def test_for_migrations_refuses_the_pooler_alone() -> None:
    """Behind a transaction pooler with no migration URL, only reads may use DATABASE_URL."""
    settings = DatabaseSettings(url="postgresql://app@pgbouncer:6432/d", pooler="pgbouncer")
    with pytest.raises(ConfigurationError, match="set DATABASE_MIGRATION_URL to a direct"):
        settings.for_migrations()
    reads = settings.for_migrations(session_level=False)
    assert (settings.database_url, "pgbouncer") == (reads.database_url, reads.pooler)


def test_pool_timeout_fails_before_common_gateway_timeouts() -> None:
    """The default pool wait (10 s) ends before a 30 s gateway (ALB, Cloud Run, Heroku) gives up."""
    settings = DatabaseSettings(url="postgresql://h/d")
    assert 10.0 == settings.pool_timeout
    assert settings.pool_timeout + settings.connect_timeout < 30


def test_client_deadline_defaults() -> None:
    """A frozen server is bounded by default: a client timeout, keepalives and tcp_user_timeout."""
    settings = DatabaseSettings(url="postgresql://h/d")
    assert (20.0, 20_000, 10, 3, 3) == (
        settings.client_timeout,
        settings.tcp_user_timeout,
        settings.keepalives_idle,
        settings.keepalives_interval,
        settings.keepalives_count,
    )


@pytest.mark.parametrize("query", ["s3cr%40et", "s3cret"], ids=["percent-encoded", "raw"])
def test_query_password_moves_into_the_password_field(query: str) -> None:
    """``?password=`` becomes the URL's password, which every rendering hides."""
    settings = DatabaseSettings(url=f"postgresql://u@h/db?password={query}&sslmode=disable")
    url = settings.database_url
    assert ({"sslmode": "disable"}, query.replace("%40", "@")) == (dict(url.query), url.password)
    for text in (repr(settings), str(url), repr(url), settings.model_dump_json()):
        assert "s3cr" not in text


MULTI_HOST_QUERY = "host=h1:5432&host=h2:5433"


@pytest.mark.parametrize(
    "raw",
    [
        f"postgresql://bot:{SECRET}@h1:5432,h2:5433/app",
        f"postgres://bot:{SECRET}@h1,h2:5433/app",
        f"postgresql://bot:{SECRET}@/app?{MULTI_HOST_QUERY}",
        f"postgresql+psycopg://bot:{SECRET}@/app?host=h1,h2&port=5432,5433",
    ],
)
def test_multi_host_url_forms_parse_to_every_host_read_write(raw: str) -> None:
    """The libpq comma form and both query forms name both hosts and default to read-write."""
    url = DatabaseSettings(url=raw).database_url
    assert "postgresql+psycopg" == url.drivername
    assert ("h1:5432", "h2:5433") == hosts_of(url)
    assert "h1:5432,h2:5433" == where(url)
    assert "read-write" == url.query["target_session_attrs"]
    assert PASSWORD == url.password


def test_libpq_multi_host_url_keeps_its_query_and_database() -> None:
    """The comma form's own query string survives the rewrite to SQLAlchemy's form."""
    url = DatabaseSettings(url="postgresql://bot@h1,h2/app?sslmode=require").database_url
    assert ("app", "require") == (url.database, url.query["sslmode"])
    expected = (
        "postgresql+psycopg://bot@/app?host=h1:5432&host=h2:5432&sslmode=require"
        "&target_session_attrs=read-write"
    )
    assert expected == render_url(url)


def test_multi_host_url_renders_without_the_password() -> None:
    """Rendering, repr and the model dump of a multi-host URL hide the password."""
    settings = DatabaseSettings(url=f"postgresql://bot:{SECRET}@h1:5432,h2:5433/app")
    shown = render_url(settings.database_url)
    expected = (
        "postgresql+psycopg://bot:***@/app?host=h1:5432&host=h2:5433"
        "&target_session_attrs=read-write"
    )
    assert expected == shown
    for text in (shown, repr(settings), str(settings.model_dump())):
        assert PASSWORD not in text
        assert SECRET not in text


def test_explicit_target_session_attrs_is_kept() -> None:
    """A URL that sets target_session_attrs keeps it; a single host gets no default."""
    url = DatabaseSettings(url="postgresql://bot@h1,h2/app?target_session_attrs=primary").url
    assert url is not None
    assert "primary" == url.query["target_session_attrs"]
    single = DatabaseSettings(url="postgresql://bot@h1/app").database_url
    assert "target_session_attrs" not in single.query


def test_migration_url_accepts_multi_host() -> None:
    """DATABASE_MIGRATION_URL takes the comma form too and must reach the primary."""
    settings = DatabaseSettings(
        url="postgresql://bot@h1,h2/app", migration_url="postgresql://owner@h1:5432,h2:5432/app"
    )
    url = settings.for_migrations().database_url
    assert ("owner", ("h1:5432", "h2:5432")) == (url.username, hosts_of(url))
    assert "read-write" == url.query["target_session_attrs"]


def test_replica_urls_split_around_multi_host_urls() -> None:
    """In DATABASE_REPLICA_URLS a comma starts a new URL only before a scheme."""
    settings = DatabaseSettings(
        url="postgresql://bot@h1/app",
        replica_urls="postgresql://bot@r1:5432,r2:5432/app, postgresql://bot@r3/app,",
    )
    first, second = settings.replica_urls
    assert ("r1:5432", "r2:5432") == hosts_of(first)
    assert "prefer-standby" == first.query["target_session_attrs"]
    assert ("r3:5432",) == hosts_of(second)
    assert "target_session_attrs" not in second.query


def test_replica_url_may_ask_for_any_server() -> None:
    """A replica URL may use target_session_attrs=any (or standby)."""
    settings = DatabaseSettings(
        url="postgresql://bot@h1/app",
        replica_urls=["postgresql://bot@r1,r2/app?target_session_attrs=any"],
    )
    assert "any" == settings.replica_urls[0].query["target_session_attrs"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            f"postgresql://bot:{SECRET}@h1,h2/app?target_session_attrs=standby",
            "DATABASE_URL: has target_session_attrs=standby, which may connect to a standby",
        ),
        (
            f"postgresql://bot:{SECRET}@h1,h2/app?target_session_attrs=nearest",
            "DATABASE_URL: has an invalid target_session_attrs (expected one of any,",
        ),
        (
            f"postgresql://bot:{SECRET}@h1,h2/app?host=h3",
            "DATABASE_URL: names hosts both before the path and in ?host=",
        ),
        (
            f"postgresql://bot:{SECRET}@h1,,h2/app",
            "DATABASE_URL: has an empty host in its comma-separated host list",
        ),
        (
            f"postgresql://bot:{SECRET}@h1/app?host=h2",
            "DATABASE_URL: names a host both before the path and in ?host=",
        ),
    ],
)
def test_bad_multi_host_urls_are_refused_without_the_password(raw: str, expected: str) -> None:
    """A malformed multi-host URL is a ConfigurationError naming the problem, not the password."""
    with pytest.raises(ConfigurationError) as caught:
        DatabaseSettings(url=raw)
    assert expected in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert SECRET not in str(caught.value)


def test_unknown_keywords_are_refused_naming_the_field() -> None:
    """A typo such as ``pool_sise=2`` is a ConfigurationError naming it, not the default."""
    with pytest.raises(ConfigurationError) as caught:
        # The misspelt keywords are the point of the test.
        DatabaseSettings(url="postgresql://app:hunter2@db/app", pool_sise=2, statment_timeout=100)  # type: ignore[call-arg]

    message = str(caught.value)
    assert "'pool_sise' is not a setting (did you mean pool_size?)" in message
    assert "'statment_timeout' is not a setting (did you mean statement_timeout?)" in message
    assert "hunter2" not in message
    assert caught.value.__context__ is None


def test_unknown_environment_variables_are_still_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Other DATABASE_* variables of a deployment (here in .env too) are not appdb's business."""
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", "/run/secrets/db")
    Path(".env").write_text("DATABASE_HOST_ALIAS=db\nDATABASE_POOL_SIZE=3\n", encoding="utf-8")
    assert 3 == DatabaseSettings(url="sqlite:///x.sqlite3").pool_size


def test_pydantic_settings_keywords_still_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    """``_env_file=None`` (pydantic-settings' own keyword) is not taken for a typo."""
    Path(".env").write_text("DATABASE_POOL_SIZE=3\n", encoding="utf-8")
    # _env_file is pydantic-settings' keyword, kept out of the typed signature on purpose.
    assert 5 == DatabaseSettings(url="sqlite:///x.sqlite3", _env_file=None).pool_size  # type: ignore[call-arg]


def test_typed_signature_lists_exactly_the_fields() -> None:
    """The keyword-only __init__ type checkers see names every field, and nothing else."""
    tree = ast.parse(inspect.getsource(settings_module))
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DatabaseSettings"]
    (stub,) = [
        f
        for n in cls.body
        if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"
        for f in n.body
        if isinstance(f, ast.FunctionDef) and f.name == "__init__"
    ]
    assert [] == stub.args.args[1:]  # keyword-only
    assert list(DatabaseSettings.model_fields) == [arg.arg for arg in stub.args.kwonlyargs]
    defaults = {
        arg.arg: ast.literal_eval(default)
        for arg, default in zip(stub.args.kwonlyargs, stub.args.kw_defaults, strict=True)
        if default is not None
    }
    for name, field in DatabaseSettings.model_fields.items():
        assert field.default == defaults[name], name


@pytest.mark.parametrize(
    ("driver", "query"),
    [
        pytest.param("psycopg2", "sslmode=require", id="psycopg2, what older services use"),
        pytest.param("asyncpg", "ssl=true", id="asyncpg, the bot's; ssl= becomes sslmode="),
    ],
)
def test_other_driver_url_is_read_as_psycopg_with_one_info_line(
    driver: str, query: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A psycopg2 or asyncpg URL serves sync and async through psycopg 3; one INFO line says so."""
    raw = f"postgresql+{driver}://app:{SECRET}@db:5432/app?{query}"
    with caplog.at_level(logging.DEBUG, "appdb"):
        settings = DatabaseSettings(url=raw)
    url = settings.database_url
    assert ("postgresql+psycopg", "db", "app", PASSWORD) == (
        url.drivername,
        url.host,
        url.database,
        url.password,
    )
    assert {"sslmode": "require"} == dict(url.query)
    records = [r for r in caplog.records if driver in r.getMessage()]
    assert [logging.INFO] == [r.levelno for r in records]
    assert "psycopg 3" in records[0].getMessage()
    assert SECRET not in caplog.text
    assert PASSWORD not in caplog.text


def test_psycopg2_multi_host_and_replica_urls() -> None:
    """The psycopg2 spelling works in every URL setting, multi-host included."""
    settings = DatabaseSettings(
        url="postgresql+psycopg2://app@h1:5432,h2:5433/app",
        replica_urls="postgresql+psycopg2://app@r1/app",
        migration_url="postgresql+psycopg2://owner@h1/app",
    )
    assert ["h1:5432", "h2:5433"] == list(hosts_of(settings.database_url))
    assert "postgresql+psycopg" == settings.replica_urls[0].drivername
    assert "postgresql+psycopg" == settings.for_migrations().database_url.drivername


def test_asyncpg_multi_host_url_keeps_its_hosts_and_ssl_mode() -> None:
    """The bot's multi-host asyncpg URL keeps every host; ssl=verify-full becomes sslmode=."""
    multi = DatabaseSettings(url="postgresql+asyncpg://bot@h1:5432,h2:5433/app?ssl=verify-full")
    assert ["h1:5432", "h2:5433"] == list(hosts_of(multi.database_url))
    assert "verify-full" == multi.database_url.query["sslmode"]


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("prepared_statement_cache_size=0", "asyncpg-only options (prepared_statement_cache_size)"),
        ("ssl=require&sslmode=require", "gives ssl more than once"),
    ],
)
def test_asyncpg_url_options_libpq_cannot_read_are_refused(query: str, problem: str) -> None:
    """An asyncpg option without a libpq meaning is a ConfigurationError, not a connect error."""
    with pytest.raises(ConfigurationError) as caught:
        DatabaseSettings(url=f"postgresql+asyncpg://bot:{SECRET}@db/app?{query}")
    assert problem in str(caught.value)
    assert SECRET not in str(caught.value)


@pytest.mark.postgresql_only
def test_asyncpg_url_connects_sync_and_async(postgresql_admin_url: URL) -> None:
    """Both engines made from an asyncpg spelling of the test server's URL answer."""
    raw = postgresql_admin_url.set(drivername="postgresql+asyncpg").render_as_string(
        hide_password=False
    )
    settings = DatabaseSettings(url=raw, pool_size=1)
    engine = create_engine(settings)
    try:
        with engine.connect() as connection:
            assert 1 == connection.scalar(sa.text("SELECT 1"))
    finally:
        engine.dispose()

    async def probe() -> int | None:
        async_engine = create_async_engine(settings)
        try:
            async with async_engine.connect() as connection:
                value: int | None = await connection.scalar(sa.text("SELECT 1"))
                return value

        finally:
            await async_engine.dispose()

    assert 1 == asyncio.run(probe())
