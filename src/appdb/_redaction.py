"""The one home of secret hiding: URLs, error text, log records.

Every path that renders a database URL, quotes a driver's error message, or lets SQLAlchemy
log rows goes through here, so a password is hidden in every form it can take: as written in
the URL, percent-encoded, or given as ``?password=`` in the query string. A second copy of
this logic elsewhere is a bug waiting (copies drift; one forgets the percent-encoded form).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING
from urllib.parse import quote, quote_plus

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.engine import Engine

__all__ = [
    "MASK",
    "describe_error",
    "hosts_of",
    "redact_engine_logs",
    "redact_logs_of",
    "render_url",
    "scrub",
    "secrets_of",
    "where",
]

MASK = "***"
"""What a hidden secret is replaced with."""

_QUERY_SECRETS = ("password",)


def secrets_of(url: URL | None) -> tuple[str, ...]:
    """Every spelling of the secrets `url` carries, longest first, ready for `scrub`.

    Args:
        url: A parsed URL, or ``None``.

    Returns:
        The password (from the userinfo or ``?password=``), raw and percent-encoded.
    """
    if url is None:
        return ()
    raw: set[str] = set()
    if url.password:
        raw.add(str(url.password))
    for name in _QUERY_SECRETS:
        value = url.query.get(name)
        values = (value,) if isinstance(value, str) else tuple(value or ())
        raw.update(str(item) for item in values if item)
    forms = {
        form for secret in raw for form in (secret, quote(secret, safe=""), quote_plus(secret))
    }
    return tuple(sorted(forms, key=len, reverse=True))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret in `text` with ``***``.

    Args:
        text: Any message: a driver's error, a rendered statement, a log line.
        secrets: What `secrets_of` returned (or plain strings).

    Returns:
        The text without the secrets.
    """
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text


def render_url(url: URL | str) -> str:
    """Render a database URL for humans: the password, in the userinfo or the query, is ``***``.

    Args:
        url: A URL object, or a string that may not even parse.

    Returns:
        The URL as text, safe to print or log.
    """
    if not isinstance(url, URL):
        try:
            url = make_url(url)
        except (ArgumentError, ValueError):
            return "<unparsable URL>"
    hidden = {name: MASK for name in _QUERY_SECRETS if name in url.query}
    shown = url.update_query_dict(hidden) if hidden else url
    text = shown.render_as_string(hide_password=True)
    base, mark, query = text.partition("?")
    # ?host=h1:5432,h2 reads better than h1%3A5432%2Ch2; neither character can hide a secret.
    query = query.replace("%3A", ":").replace("%2C", ",")
    return scrub(f"{base}{mark}{query}", secrets_of(url))


def _values(url: URL, name: str) -> list[str]:
    """A query parameter's values, repeated (``?host=a&host=b``) or comma-separated, in order."""
    value = url.query.get(name)
    given = (value,) if isinstance(value, str) else tuple(value or ())
    return [item.strip() for text in given for item in str(text).split(",") if item.strip()]


def hosts_of(url: URL) -> tuple[str, ...]:
    """Every ``host:port`` a PostgreSQL URL names, in the order libpq tries them.

    Both of SQLAlchemy's multi-host spellings count: ``?host=h1:5432&host=h2:5432`` and
    ``?host=h1,h2&port=5432,5433``; a URL without ``?host=`` names its one host.

    Args:
        url: A PostgreSQL URL.

    Returns:
        ``host:port`` strings (port 5432 where none is given).
    """
    hosts = _values(url, "host")
    if not hosts:
        return (f"{url.host or 'localhost'}:{url.port or 5432}",)
    ports = _values(url, "port")
    default = ports[0] if len(ports) == 1 else str(url.port or 5432)
    named = []
    for index, host in enumerate(hosts):
        if ":" in host and not host.startswith("/") and not host.endswith("]"):
            named.append(host)
        else:
            port = ports[index] if len(ports) == len(hosts) else default
            named.append(f"{host}:{port}")
    return tuple(named)


def where(url: URL) -> str:
    """Name the database for humans without credentials: ``host:port``, or the SQLite file.

    Args:
        url: The engine's URL.

    Returns:
        ``host:port`` for a server (every one of them, comma-separated, for a multi-host
        URL), the file name (or ``:memory:``) for SQLite.
    """
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    return ",".join(hosts_of(url))


def describe_error(error: BaseException, url: URL | None = None) -> str:
    """One line about a failure: the driver's first line, spaces collapsed, secrets hidden.

    SQLAlchemy's wrapper text (the SQL and its "Background on this error" link) is left out:
    for a `sqlalchemy.exc.DBAPIError` the driver's own exception is described.

    Args:
        error: The exception.
        url: The URL whose secrets must not appear.

    Returns:
        A single line, safe to print or log.
    """
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines() or [type(original).__name__]
    line = " ".join(lines[0].split()).split(" (Background on this error")[0]
    return scrub(line, secrets_of(url))


_HASH = re.compile(r"\$argon2(?:id|i|d)\$[^'\"\s,)]*")


class _RedactPasswordHashes(logging.Filter):
    """Replace Argon2 hashes in a log record's text with ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Only records that pass the logger's level get here: at INFO (echo) that is
        # statements, whose parameters are hidden, so formatting each one costs little.
        message = record.getMessage()
        if "$argon2" in message:
            record.msg, record.args = _HASH.sub(MASK, message), ()
        return True


_filter = _RedactPasswordHashes()
_ENGINE_LOGGER = "sqlalchemy.engine.Engine"


def redact_engine_logs() -> None:
    """Keep password hashes out of SQLAlchemy's row logging (installed once).

    Statement parameters are never logged (``hide_parameters``), but an application that sets
    the ``sqlalchemy.engine`` logger to DEBUG gets every fetched row logged, hashes included.
    """
    logging.getLogger(_ENGINE_LOGGER).addFilter(_filter)


def redact_logs_of(engine: Engine) -> None:
    """Keep password hashes out of the rows logged by this engine's own logger.

    An engine made with ``logging_name=...`` logs to ``sqlalchemy.engine.Engine.<name>``, and
    a filter on a parent logger never sees a child logger's records, so the filter goes on the
    logger each engine really logs to.

    Args:
        engine: A sync engine, or an async engine's ``sync_engine``.
    """
    logger = getattr(engine.logger, "logger", engine.logger)  # echo wraps it in InstanceLogger
    if isinstance(logger, logging.Logger) and _filter not in logger.filters:
        logger.addFilter(_filter)
