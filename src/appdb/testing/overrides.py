"""FastAPI glue for tests: serve the test's session to the routes that depend on `get_db`.

Named ``overrides`` rather than ``fastapi`` so that it never reads as the real package; it
does not import FastAPI (the app is duck-typed: anything with ``dependency_overrides``).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from sqlmodel.ext.asyncio.session import AsyncSession

from appdb.dependencies import get_async_db, get_db

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from sqlmodel import Session

__all__ = ["override_get_db"]


@contextlib.contextmanager
def override_get_db(app: Any, session: Session | AsyncSession) -> Iterator[None]:
    """Serve `session` to every route that depends on `get_db` (or `get_async_db` if async).

    The route's ``db.commit()`` releases a savepoint of the test's transaction, so what it
    writes is visible to the test and gone after it. The previous override is restored.

    Args:
        app: The FastAPI application (anything with ``dependency_overrides``).
        session: ``appdb_session`` or ``appdb_async_session``.

    Yields:
        Nothing; the override holds inside the ``with`` block.
    """
    if isinstance(session, AsyncSession):
        asynchronous = session

        async def _async_db() -> AsyncIterator[AsyncSession]:
            yield asynchronous

        dependency: Any = get_async_db
        override: Any = _async_db
    else:
        synchronous = session

        def _db() -> Iterator[Session]:
            yield synchronous

        dependency, override = get_db, _db
    overrides: dict[Any, Any] = app.dependency_overrides
    missing = object()
    previous = overrides.get(dependency, missing)
    overrides[dependency] = override
    try:
        yield
    finally:
        if previous is missing:
            overrides.pop(dependency, None)
        else:
            overrides[dependency] = previous
