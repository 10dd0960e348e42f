"""Error translation for every migration operation: Alembic and driver errors become appdb's.

Messages quote the driver's reason through `appdb._redaction`, so no password appears in them.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from alembic.util.exc import CommandError
from sqlalchemy import exc as sa_exc

from appdb._redaction import describe_error, where
from appdb.exceptions import AppDBError, DatabaseUnavailableError, MigrationError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from appdb.settings import DatabaseSettings

__all__ = ["translated_errors"]

# SQLSTATE class 08, "connection exception": the connection failed or broke.
_CONNECTION_EXCEPTION_CLASS = "08"


def _is_connection_problem(error: sa_exc.OperationalError) -> bool:
    """Whether the database could not be reached, as opposed to refusing a statement.

    SQLAlchemy invalidated the connection, or the driver reports SQLSTATE class 08.
    """
    sqlstate = getattr(error.orig, "sqlstate", None)
    return error.connection_invalidated or (
        isinstance(sqlstate, str) and sqlstate.startswith(_CONNECTION_EXCEPTION_CLASS)
    )


@contextlib.contextmanager
def translated_errors(settings: DatabaseSettings, action: str) -> Iterator[None]:
    """Turn Alembic and driver errors raised inside the block into appdb exceptions.

    Args:
        settings: The database the block works on (named in messages, its password hidden).
        action: What the block does, for the messages: ``cannot <action>: ...``.

    Yields:
        Nothing; the block runs inside.

    Raises:
        DatabaseUnavailableError: The database could not be reached.
        MigrationError: Alembic or the database refused the operation.
    """
    url = settings.database_url
    try:
        yield
    except DatabaseUnavailableError as exc:
        # Raised by the engine, naming host and port; say which operation it stopped.
        msg = f"cannot {action}: {exc}"
        raise type(exc)(msg) from exc
    except AppDBError:
        raise
    except sa_exc.OperationalError as exc:
        reason = describe_error(exc, url)
        if _is_connection_problem(exc):
            msg = f"cannot {action}: database at {where(url)} unavailable: {reason}"
            raise DatabaseUnavailableError(msg) from None
        msg = f"cannot {action}: {reason}"
        raise MigrationError(msg) from exc
    except (CommandError, sa_exc.SQLAlchemyError) as exc:
        msg = f"cannot {action}: {describe_error(exc, url)}"
        raise MigrationError(msg) from exc
