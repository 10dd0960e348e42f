"""FastAPI glue for errors: `add_exception_handlers` maps appdb's exceptions to HTTP statuses.

Needs FastAPI (``pip install 'appdb[fastapi]'``); ``import appdb`` never imports this module.
Every response has one JSON shape, ``{"detail": "<message>", "error": "<ExceptionName>"}``:

=====================================================================  ======================
exception                                                              status
=====================================================================  ======================
`NotFoundError` (`UserNotFoundError`, `MessageNotFoundError`)          404
`AlreadyExistsError` (`UsernameTakenError`, ...)                       409
`InvalidInputError`                                                    422
`DatabaseUnavailableError` (`ConnectionLostError`, `PoolTimeoutError`  503 and ``Retry-After``
...) and `SchemaOutOfDateError`
=====================================================================  ======================

A 4xx carries appdb's message, which names the argument at fault but never repeats a password
or SQL. A 503 carries a fixed message: the real one (hosts, ports, revisions) is logged to the
``appdb`` logger for the operator, not shown to the client.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from appdb.exceptions import (
    AlreadyExistsError,
    AppDBError,
    DatabaseUnavailableError,
    InvalidInputError,
    NotFoundError,
    SchemaOutOfDateError,
)

__all__ = ["DEFAULT_RETRY_AFTER", "STATUS_CODES", "add_exception_handlers", "error_response"]

logger: logging.Logger = logging.getLogger("appdb")

DEFAULT_RETRY_AFTER = 5
"""Seconds a 503 response asks the client to wait (its ``Retry-After`` header)."""

STATUS_CODES: dict[type[AppDBError], int] = {
    NotFoundError: 404,
    AlreadyExistsError: 409,
    InvalidInputError: 422,
    DatabaseUnavailableError: 503,
    SchemaOutOfDateError: 503,
}
"""The status `add_exception_handlers` gives each exception (and its subclasses)."""

_UNAVAILABLE = {
    DatabaseUnavailableError: "the database is unavailable; retry later",
    SchemaOutOfDateError: "the service is being upgraded; retry later",
}


def error_response(error: AppDBError, *, retry_after: int = DEFAULT_RETRY_AFTER) -> JSONResponse:
    """The response `add_exception_handlers` sends for `error`, for handlers of a service's own.

    Args:
        error: An exception of a class in `STATUS_CODES` (or a subclass of one).
        retry_after: The ``Retry-After`` seconds of a 503.

    Returns:
        ``{"detail": ..., "error": <class name>}`` with the status from `STATUS_CODES`.

    Raises:
        TypeError: `error` is of no class `STATUS_CODES` maps.
    """
    for cls in type(error).__mro__:
        if cls in STATUS_CODES:
            status = STATUS_CODES[cls]
            break
    else:
        msg = f"{type(error).__name__} has no HTTP status in appdb.fastapi.STATUS_CODES"
        raise TypeError(msg)
    body = {"detail": str(error), "error": type(error).__name__}
    headers: dict[str, str] = {}
    fixed = next((text for cls, text in _UNAVAILABLE.items() if isinstance(error, cls)), None)
    if fixed is not None:
        body["detail"] = fixed
        headers["Retry-After"] = str(retry_after)
    return JSONResponse(body, status_code=status, headers=headers)


def add_exception_handlers(app: FastAPI, *, retry_after: int = DEFAULT_RETRY_AFTER) -> None:
    """Answer appdb's exceptions with their HTTP status instead of a 500.

    `NotFoundError` is 404, `AlreadyExistsError` 409, `InvalidInputError` 422,
    `DatabaseUnavailableError` (with `ConnectionLostError` and `PoolTimeoutError`) and
    `SchemaOutOfDateError` 503 with ``Retry-After``; subclasses follow their base. Other
    exceptions are left to FastAPI (a 500).

    Args:
        app: The application; handlers the app already has for these classes are replaced.
        retry_after: Seconds a 503 asks the client to wait before retrying.
    """

    async def handle(request: Request, error: Exception) -> JSONResponse:
        if not isinstance(error, AppDBError):  # pragma: no cover - registered for AppDBErrors
            raise error
        if isinstance(error, DatabaseUnavailableError | SchemaOutOfDateError):
            # appdb's messages hold no password; the client gets none of the infrastructure.
            logger.warning(
                "%s %s: %s: %s", request.method, request.url.path, type(error).__name__, error
            )
        return error_response(error, retry_after=retry_after)

    for cls in STATUS_CODES:
        app.add_exception_handler(cls, handle)
