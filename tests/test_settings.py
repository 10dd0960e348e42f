"""DatabaseSettings: sources, URL normalisation, validation and secrecy."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote

import pytest

from appdb import ConfigurationError, DatabaseSettings, get_settings
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


def test_defaults() -> None:
    """Pre-ping is on by default and pools are modest."""
    settings = DatabaseSettings(url="postgresql://h/d")
    assert (True, 5, 10, False) == (
        settings.pool_pre_ping,
        settings.pool_size,
        settings.max_overflow,
        settings.echo,
    )


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
        f"postgresql+psycopg2://root:{SECRET}@h/d",
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
def test_invalid_values_name_their_variable(field: str, value: object, variable: str) -> None:
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
def test_scaling_settings_are_validated(fields: dict, message: str) -> None:
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
