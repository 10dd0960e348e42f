"""get_db and get_async_db inside a real FastAPI app."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, cast

import pytest
import sqlalchemy as sa
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from appdb import AsyncSessionLocal, SessionLocal, User, create_async_engine, get_async_db, get_db
from appdb.settings import DatabaseSettings


def _count_users(engine: sa.Engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(User)).one()


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/users/{name}")
    def create(name: str, db: Annotated[Session, Depends(get_db)]) -> dict[str, int | None]:
        user = User(username=name)
        db.add(user)
        db.commit()
        db.refresh(user)
        return {"id": user.id}

    @app.post("/fail/{name}")
    def fail(name: str, db: Annotated[Session, Depends(get_db)]) -> None:
        db.add(User(username=name))
        db.flush()
        msg = "handler failed after flushing"
        raise RuntimeError(msg)

    @app.post("/async/users/{name}")
    async def create_async(
        name: str, db: Annotated[AsyncSession, Depends(get_async_db)]
    ) -> dict[str, int | None]:
        user = User(username=name)
        db.add(user)
        await db.commit()
        return {"id": user.id}

    @app.post("/async/fail/{name}")
    async def fail_async(name: str, db: Annotated[AsyncSession, Depends(get_async_db)]) -> None:
        db.add(User(username=name))
        await db.flush()
        msg = "async handler failed after flushing"
        raise RuntimeError(msg)

    return app


def test_get_db_commits_what_route_commits_and_closes(engine: sa.Engine) -> None:
    """A committed route persists, and the connection is back in the pool afterwards."""
    SessionLocal.configure(bind=engine)
    with TestClient(_app()) as client:
        response = client.post("/users/ann")
    assert 200 == response.status_code
    assert 1 == _count_users(engine)
    assert 0 == cast("sa.QueuePool", engine.pool).checkedout()


def test_get_db_rolls_back_on_error_and_closes(engine: sa.Engine) -> None:
    """A failing route's flushed work is rolled back and its connection returned."""
    SessionLocal.configure(bind=engine)
    with TestClient(_app(), raise_server_exceptions=False) as client:
        response = client.post("/fail/bob")
    assert 500 == response.status_code
    assert 0 == _count_users(engine)
    assert 0 == cast("sa.QueuePool", engine.pool).checkedout()


def test_get_db_can_be_overridden(engine: sa.Engine) -> None:
    """dependency_overrides replaces get_db, the usual way tests inject a session."""
    app = _app()

    def override() -> Iterator[Session]:
        with Session(engine) as session:
            yield session

    app.dependency_overrides[get_db] = override
    with TestClient(app) as client:
        assert 200 == client.post("/users/carol").status_code
    assert 1 == _count_users(engine)


def test_get_async_db_commits_and_rolls_back(engine: sa.Engine, settings: DatabaseSettings) -> None:
    """The async dependency commits what the route commits and rolls back a failing route."""
    async_engine = create_async_engine(settings)
    AsyncSessionLocal.configure(bind=async_engine)
    with TestClient(_app(), raise_server_exceptions=False) as client:
        assert 200 == client.post("/async/users/dora").status_code
        assert 500 == client.post("/async/fail/erin").status_code
        checked_out = cast("sa.QueuePool", async_engine.sync_engine.pool).checkedout()
        assert client.portal is not None
        client.portal.call(async_engine.dispose)
    assert 0 == checked_out
    with Session(engine) as session:
        assert ["dora"] == list(session.exec(select(User.username)).all())


@pytest.mark.parametrize("dependency", [get_db, get_async_db])
def test_dependencies_are_generators(dependency: Callable[..., object]) -> None:
    """Both are plain (async) generator functions, as FastAPI's Depends expects."""
    import inspect  # noqa: PLC0415

    assert inspect.isgeneratorfunction(dependency) or inspect.isasyncgenfunction(dependency)
