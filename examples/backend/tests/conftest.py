"""The backend's routes against the appdb plugin's migrated database, one rolled-back test each."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from backend.app import create_app
from fastapi.testclient import TestClient

from appdb.testing import override_get_db


@pytest.fixture
def client(appdb_session) -> Iterator[TestClient]:
    """A client whose requests use the test's session (what routes commit is undone after)."""
    app = create_app(check_schema=False)
    with override_get_db(app, appdb_session), TestClient(app) as client:
        yield client


def register(client: TestClient, username: str, password: str = "correct horse") -> dict:
    response = client.post(
        "/register",
        json={"username": username, "email": f"{username}@example.com", "password": password},
    )
    assert 201 == response.status_code, response.text
    return response.json()


def login(client: TestClient, username: str, password: str = "correct horse") -> dict[str, str]:
    response = client.post("/login", json={"login": username, "password": password})
    assert 200 == response.status_code, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}
