"""FastAPI glue: `get_db` and `get_async_db`, for ``Depends(...)`` and ``dependency_overrides``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from appdb.session import SessionLocal, async_session_local

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Generator

    from sqlmodel import Session
    from sqlmodel.ext.asyncio.session import AsyncSession

__all__ = ["get_async_db", "get_db"]


def get_db() -> Generator[Session, None, None]:
    """Yield one session per request; roll back if the request fails; always close.

    The route commits what it wants kept: ``db.commit()``. Use as ``Depends(get_db)``.

    Yields:
        A session from `SessionLocal`.
    """
    with SessionLocal() as session:
        try:
            yield session
        except BaseException:
            session.rollback()
            raise


async def get_async_db() -> AsyncGenerator[AsyncSession, None]:
    """Yield one async session per request; roll back if the request fails; always close.

    Yields:
        A session from `AsyncSessionLocal`.
    """
    async with async_session_local()() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
