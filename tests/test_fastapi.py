"""`appdb.fastapi.add_exception_handlers`: appdb's errors become HTTP statuses, never a 500."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated

import pytest
import sqlalchemy as sa
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import URL
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from appdb import (
    AlreadyExistsError,
    AppDBError,
    ConnectionLostError,
    DatabaseSettings,
    DatabaseUnavailableError,
    InvalidInputError,
    NotFoundError,
    PoolTimeoutError,
    SchemaOutOfDateError,
    UserRead,
    aio,
    create_async_engine,
    create_engine,
    get_async_db,
    get_db,
    metadata,
)
from appdb.exceptions import StatementTimeoutError
from appdb.fastapi import DEFAULT_RETRY_AFTER, add_exception_handlers, error_response
from appdb.messages import inbox, send_message
from appdb.migrate import ensure_schema_current
from appdb.users import create_user

Db = Annotated[Session, Depends(get_db)]
PASSWORD = "pa:ss@w%rd-s3cret"


def make_app(engine: sa.Engine) -> FastAPI:
    """Routes that reach each error through real operations on `engine`'s database."""
    app = FastAPI()
    add_exception_handlers(app)

    def db() -> Iterator[Session]:
        with Session(engine) as session:
            yield session

    app.dependency_overrides[get_db] = db

    @app.post("/users/{username}", response_model=UserRead)
    def register(username: str, db: Db) -> object:
        user = create_user(
            db, username=username, email=f"{username}@example.com", password=PASSWORD
        )
        db.commit()
        return user

    @app.post("/messages/{sender_id}/{recipient_id}")
    def send(sender_id: int, recipient_id: int, db: Db) -> dict[str, int | None]:
        message = send_message(db, sender_id=sender_id, recipient_id=recipient_id, content="hi")
        db.commit()
        return {"id": message.id}

    @app.get("/inbox/{user_id}")
    def read_inbox(user_id: int, db: Db, limit: int = 20) -> list[int | None]:
        return [message.id for message in inbox(db, user_id, limit=limit)]

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"revision": ensure_schema_current(DatabaseSettings(url=engine.url))}

    @app.get("/boom/{kind}")
    def boom(kind: str) -> None:
        errors = {
            "lost": ConnectionLostError("connection to 10.0.0.7:5432 lost"),
            "statement": StatementTimeoutError("canceling statement due to statement timeout"),
        }
        raise errors[kind]

    return app


@pytest.fixture
def client(engine: sa.Engine) -> Iterator[TestClient]:
    with TestClient(make_app(engine), raise_server_exceptions=False) as client:
        yield client


def test_operation_errors_map_to_4xx(client: TestClient) -> None:
    """Unknown user 404, taken username 409, limit=600 422, each in the one JSON shape."""
    ann = client.post("/users/ann").json()
    assert "hashed_password" not in ann
    taken = client.post("/users/ann")
    assert (409, "UsernameTakenError") == (taken.status_code, taken.json()["error"])
    missing = client.post(f"/messages/{ann['id']}/999999")
    assert (404, "UserNotFoundError") == (missing.status_code, missing.json()["error"])
    too_many = client.get(f"/inbox/{ann['id']}", params={"limit": 600})
    assert (422, "InvalidInputError") == (too_many.status_code, too_many.json()["error"])
    for response in (taken, missing, too_many):
        assert ["detail", "error"] == sorted(response.json())
        assert "limit" in too_many.json()["detail"]
        assert "Retry-After" not in response.headers
        assert PASSWORD not in response.text
        assert "SELECT" not in response.text.upper()


@pytest.mark.anyio
async def test_async_routes_map_errors_too(settings: DatabaseSettings, engine: sa.Engine) -> None:
    """A route on `get_async_db` and `appdb.aio` gets the same statuses (here 422 and 404)."""
    async_engine = create_async_engine(settings)
    app = FastAPI()
    add_exception_handlers(app)

    async def db() -> AsyncIterator[AsyncSession]:
        async with AsyncSession(async_engine) as session:
            yield session

    app.dependency_overrides[get_async_db] = db

    @app.get("/inbox/{user_id}")
    async def read_inbox(
        user_id: int, db: Annotated[AsyncSession, Depends(get_async_db)], limit: int = 20
    ) -> list[int]:
        return [message.id for message in await aio.inbox(db, user_id, limit=limit)]

    @app.post("/messages/{recipient_id}")
    async def send(
        recipient_id: int, db: Annotated[AsyncSession, Depends(get_async_db)]
    ) -> dict[str, int]:
        message = await aio.send_message(db, sender_id=1, recipient_id=recipient_id, content="x")
        return {"id": message.id}

    with TestClient(app) as client:
        too_many = client.get("/inbox/1", params={"limit": 600})
        missing = client.post("/messages/424242")
    await async_engine.dispose()
    assert (422, "InvalidInputError") == (too_many.status_code, too_many.json()["error"])
    assert (404, "UserNotFoundError") == (missing.status_code, missing.json()["error"])


def test_schema_out_of_date_is_503(settings: DatabaseSettings) -> None:
    """The start-up guard's error (here: tables made without migrations) is a 503 to retry."""
    engine = create_engine(settings)
    metadata.create_all(engine)
    try:
        with TestClient(make_app(engine), raise_server_exceptions=False) as client:
            response = client.get("/health")
    finally:
        engine.dispose()
    assert 503 == response.status_code
    assert str(DEFAULT_RETRY_AFTER) == response.headers["Retry-After"]
    assert {
        "detail": "the service is being upgraded; retry later",
        "error": "SchemaOutOfDateError",
    } == response.json()


def test_unreachable_database_is_503_without_secrets(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A database that cannot be reached is 503 + Retry-After; the client sees no host or password."""
    if backend == "postgresql":
        url = URL.create(
            "postgresql", username="app", password=PASSWORD, host="127.0.0.1", port=1, database="x"
        )
    else:
        url = URL.create("sqlite", database=str(tmp_path / "missing-dir" / "db.sqlite3"))
    engine = create_engine(DatabaseSettings(url=url, connect_timeout=2))
    app = make_app(engine)
    add_exception_handlers(app, retry_after=30)
    with caplog.at_level(logging.WARNING, "appdb"), TestClient(app) as client:
        response = client.post("/users/ann")
    engine.dispose()
    assert (503, "30") == (response.status_code, response.headers["Retry-After"])
    assert "DatabaseUnavailableError" == response.json()["error"]
    assert "the database is unavailable; retry later" == response.json()["detail"]
    assert "127.0.0.1" not in response.text
    assert "missing-dir" not in response.text
    assert PASSWORD not in caplog.text
    assert "POST /users/ann: DatabaseUnavailableError" in caplog.text


@pytest.mark.postgresql_only
def test_pool_timeout_is_503(postgresql_admin_url: URL) -> None:
    """Every pooled connection checked out: the request gets a 503, not a hang or a 500."""
    # PostgreSQL only by nature: appdb sizes no pool for SQLite.
    settings = DatabaseSettings(
        url=postgresql_admin_url, pool_size=1, max_overflow=0, pool_timeout=0.2
    )
    engine = create_engine(settings)
    with engine.connect(), TestClient(make_app(engine)) as client:
        response = client.get("/inbox/1")
    engine.dispose()
    assert (503, "PoolTimeoutError") == (response.status_code, response.json()["error"])
    assert "Retry-After" in response.headers


def test_subclasses_follow_their_base_and_others_stay_500(client: TestClient) -> None:
    """ConnectionLostError is 503 like its base; an error appdb does not map is FastAPI's 500."""
    lost = client.get("/boom/lost")
    assert (503, "ConnectionLostError") == (lost.status_code, lost.json()["error"])
    assert "10.0.0.7" not in lost.text
    assert 500 == client.get("/boom/statement").status_code


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (NotFoundError("no such row"), 404),
        (AlreadyExistsError("taken"), 409),
        (InvalidInputError("limit must be 1 to 500"), 422),
        (DatabaseUnavailableError("down"), 503),
        (ConnectionLostError("lost"), 503),
        (PoolTimeoutError("busy"), 503),
        (SchemaOutOfDateError("behind"), 503),
    ],
)
def test_error_response_table(error: AppDBError, status: int) -> None:
    """`error_response` is what the handlers send, for a service's own handlers too."""
    response = error_response(error)
    assert status == response.status_code
    assert (status == 503) == ("retry-after" in response.headers)


def test_error_response_refuses_unmapped_errors() -> None:
    """An appdb error with no status is a TypeError, not a silent 200."""
    with pytest.raises(TypeError, match="StatementTimeoutError"):
        error_response(StatementTimeoutError("x"))
