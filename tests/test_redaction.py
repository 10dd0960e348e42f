"""appdb._redaction, the one home of secret hiding, and the paths that go through it.

A password may be written raw, percent-encoded or as ``?password=`` in the query; each form
must be hidden everywhere. Engine reprs and an unreachable server's error are covered in
tests/test_engine.py, settings reprs in tests/test_settings.py, a real server's logs and
tracebacks in tests/reliability/test_secrets.py; the paths below are the others.
"""

from __future__ import annotations

import logging
from urllib.parse import quote, quote_plus

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from appdb import DatabaseSettings, DatabaseUnavailableError, create_engine
from appdb._redaction import MASK, describe_error, render_url, scrub, secrets_of
from appdb.routing import RoutingSession

PASSWORD = "Sx9@Q%w:pLm-Kr"
ENCODED = quote(PASSWORD, safe="")
FORMS = (PASSWORD, ENCODED, quote_plus(PASSWORD))
IN_USERINFO = f"postgresql+psycopg://app:{ENCODED}@127.0.0.1:1/d"
IN_QUERY = f"postgresql+psycopg://app@127.0.0.1:1/d?password={ENCODED}"


def assert_hidden(text: str) -> None:
    """No spelling of the password is in `text`."""
    for form in FORMS:
        assert form not in text


@pytest.mark.parametrize("url", [IN_USERINFO, IN_QUERY], ids=["userinfo", "query"])
def test_secrets_of_lists_every_form(url: str) -> None:
    """The raw and both percent-encoded spellings, longest first."""
    found = secrets_of(make_url(url))
    assert set(FORMS) == set(found)
    assert sorted(found, key=len, reverse=True) == list(found)


@pytest.mark.parametrize("url", [IN_USERINFO, IN_QUERY], ids=["userinfo", "query"])
@pytest.mark.parametrize("parsed", [True, False], ids=["URL", "str"])
def test_render_url_hides_the_password(url: str, parsed: bool) -> None:  # noqa: FBT001
    """The password becomes ``***`` whether in the userinfo or the query, from a URL or text."""
    rendered = render_url(make_url(url) if parsed else url)
    assert_hidden(rendered)
    assert MASK in rendered.replace(quote(MASK), MASK)
    assert "127.0.0.1:1/d" in rendered


def test_render_url_of_garbage_says_so() -> None:
    """Text that is no URL at all is not echoed back."""
    assert "<unparsable URL>" == render_url(f"::{ENCODED}::")


@pytest.mark.parametrize("url", [IN_USERINFO, IN_QUERY], ids=["userinfo", "query"])
def test_scrub_and_describe_error_remove_every_form(url: str) -> None:
    """A driver message quoting the password in any spelling comes out without it."""
    message = f'connection to "{PASSWORD}" failed; dsn password={ENCODED} or {quote_plus(PASSWORD)}'
    scrubbed = scrub(message, secrets_of(make_url(url)))
    assert_hidden(scrubbed)
    assert 3 == scrubbed.count(MASK)
    described = describe_error(RuntimeError(message + "\nsecond line"), make_url(url))
    assert_hidden(described)
    assert "\n" not in described


def test_describe_error_describes_the_driver_error() -> None:
    """For a SQLAlchemy DBAPIError the driver's own message is described, not the SQL."""
    wrapped = sa.exc.OperationalError(f"SELECT '{PASSWORD}'", {}, RuntimeError(f"bad {ENCODED}"))
    described = describe_error(wrapped, make_url(IN_USERINFO))
    assert "bad ***" == described


def test_settings_repr_with_query_password() -> None:
    """``?password=`` in DATABASE_URL is hidden in the settings' repr and dumps too."""
    settings = DatabaseSettings(url=IN_QUERY, replica_urls=[IN_QUERY], migration_url=IN_QUERY)
    assert PASSWORD == settings.database_url.password  # libpq reads ?password= the same way
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert_hidden(text)


def test_unreachable_server_error_with_query_password() -> None:
    """A closed port's DatabaseUnavailableError names host and port, never a ``?password=``."""
    engine = create_engine(DatabaseSettings(url=IN_QUERY, connect_timeout=1))
    with pytest.raises(DatabaseUnavailableError, match=r"127\.0\.0\.1:1\b") as info:
        engine.connect()
    assert_hidden(str(info.value))
    assert_hidden(repr(engine))
    engine.dispose()


@pytest.mark.parametrize("url", [IN_USERINFO, IN_QUERY], ids=["userinfo", "query"])
def test_replica_warning_hides_the_password(url: str, caplog: pytest.LogCaptureFixture) -> None:
    """An unreachable replica is logged with its URL and reason, and without its password."""
    primary = create_engine(DatabaseSettings(url="sqlite://"))
    replica = create_engine(DatabaseSettings(url=url, connect_timeout=1))
    with (
        caplog.at_level(logging.WARNING, logger="appdb"),
        RoutingSession(primary, replicas=[replica]) as session,
    ):
        assert 1 == session.scalar(sa.select(sa.literal(1)))
    (record,) = [record for record in caplog.records if "read replica" in record.getMessage()]
    logged = record.getMessage()
    assert "127.0.0.1:1/d" in logged
    assert_hidden(logged)
    primary.dispose()
    replica.dispose()
