"""Session factories (`SessionLocal`, `AsyncSessionLocal`) and unit-of-work scopes."""

from __future__ import annotations

from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from appdb.engine import get_async_engine, get_engine

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

__all__ = [
    "AsyncSessionLocal",
    "SessionLocal",
    "async_session_scope",
    "session_scope",
]


class _LazySessionmaker(sessionmaker[Session]):
    """A sessionmaker that binds to the default engine when it is first called, not when built."""

    def __call__(self, **local_kw: Any) -> Session:
        if local_kw.get("bind") is None and self.kw.get("bind") is None:
            local_kw["bind"] = get_engine()
        return super().__call__(**local_kw)


class _LazyAsyncSessionmaker(async_sessionmaker[AsyncSession]):
    """The asyncio twin of `_LazySessionmaker`."""

    def __call__(self, **local_kw: Any) -> AsyncSession:
        if local_kw.get("bind") is None and self.kw.get("bind") is None:
            local_kw["bind"] = get_async_engine()
        return super().__call__(**local_kw)


# SQLAlchemy 2 sessions never autocommit; autoflush is off so that nothing reaches the
# database before the caller asks for it.
SessionLocal: sessionmaker[Session] = _LazySessionmaker(class_=Session, autoflush=False)
"""Factory of SQLModel sessions, bound lazily to `get_engine()`; `configure(bind=...)` rebinds."""

# Async code cannot lazy-load attributes expired by a commit, so they are kept.
AsyncSessionLocal: async_sessionmaker[AsyncSession] = _LazyAsyncSessionmaker(
    class_=AsyncSession, autoflush=False, expire_on_commit=False
)
"""Factory of SQLModel async sessions, bound lazily to `get_async_engine()`."""


@contextmanager
def session_scope(factory: sessionmaker[Session] | None = None) -> Iterator[Session]:
    """Run a unit of work: commit if the block succeeds, roll back if it raises, always close.

    Args:
        factory: The session factory; `SessionLocal` when omitted.

    Yields:
        A session whose transaction the scope owns.
    """
    with (factory or SessionLocal)() as session:
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        session.commit()


@asynccontextmanager
async def async_session_scope(
    factory: async_sessionmaker[AsyncSession] | None = None,
) -> AsyncIterator[AsyncSession]:
    """Run an async unit of work: commit on success, roll back on error, always close.

    This is the bot's per-update pattern: ``async with async_session_scope() as session:``.

    Args:
        factory: The session factory; `AsyncSessionLocal` when omitted.

    Yields:
        An async session whose transaction the scope owns.
    """
    async with (factory or AsyncSessionLocal)() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()
