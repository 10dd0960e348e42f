"""Keep password hashes out of SQLAlchemy's row logging.

Statement parameters are never logged (``hide_parameters``), but an application that sets the
``sqlalchemy.engine`` logger to DEBUG gets every fetched row logged, password hashes included.
"""

from __future__ import annotations

import logging
import re

__all__ = ["redact_engine_logs"]

_HASH = re.compile(r"\$argon2(?:id|i|d)\$[^'\"\s,)]*")
_ENGINE_LOGGER = "sqlalchemy.engine.Engine"


class _RedactPasswordHashes(logging.Filter):
    """Replace Argon2 hashes in a log record's text with ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        # Only records that pass the logger's level get here: at INFO (echo) that is
        # statements, whose parameters are hidden, so formatting each one costs little.
        message = record.getMessage()
        if "$argon2" in message:
            record.msg, record.args = _HASH.sub("***", message), ()
        return True


_filter = _RedactPasswordHashes()


def redact_engine_logs() -> None:
    """Install the filter on SQLAlchemy's engine logger (once; later calls do nothing)."""
    logging.getLogger(_ENGINE_LOGGER).addFilter(_filter)
