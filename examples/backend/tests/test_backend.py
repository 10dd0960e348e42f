"""Register, log in, send, page the inbox, count and mark unread messages; the start-up guard."""

from __future__ import annotations

import pytest
from backend.app import create_app
from fastapi.testclient import TestClient
from sqlalchemy.engine import URL

from appdb import DatabaseSettings, SchemaOutOfDateError, migrate, reset_engines
from conftest import login, register


def test_register_and_log_in(client: TestClient) -> None:
    """A new account comes back without its password hash; its login gives a token."""
    user = register(client, "ann")
    assert ("ann", "ann@example.com") == (user["username"], user["email"])
    assert "hashed_password" not in user
    assert "correct horse" not in str(user)
    assert "Authorization" in login(client, "ann@example.com")
    wrong = client.post("/login", json={"login": "ann", "password": "wrong horse"})
    assert 401 == wrong.status_code


def test_taken_username_and_bad_input(client: TestClient) -> None:
    """A taken username is 409; a malformed email is 422 and the password is not echoed."""
    register(client, "ann")
    taken = client.post(
        "/register", json={"username": "ann", "email": "x@example.com", "password": "long enough"}
    )
    assert 409 == taken.status_code
    bad = client.post(
        "/register", json={"username": "bob", "email": "not-an-email", "password": "s3cret-horse"}
    )
    assert 422 == bad.status_code
    assert "email" in bad.json()["detail"]
    assert "s3cret-horse" not in bad.text


def test_inbox_pages_with_a_cursor(client: TestClient) -> None:
    """Five messages come back newest first in pages of two, then the cursor ends."""
    register(client, "ann")
    register(client, "bob")
    ann = login(client, "ann")
    sent = [
        client.post("/messages", headers=ann, json={"to": "bob", "content": f"hi {n}"}).json()["id"]
        for n in range(5)
    ]
    bob = login(client, "bob")
    seen, before_id = [], None
    while True:
        params = {"limit": 2} | ({"before_id": before_id} if before_id else {})
        page = client.get("/inbox", headers=bob, params=params).json()
        seen.append([message["id"] for message in page["messages"]])
        before_id = page["next_before_id"]
        if before_id is None:
            break
    assert [sent[4:2:-1], sent[2:0:-1], sent[:1]] == seen


def test_retried_send_with_an_idempotency_key_is_stored_once(client: TestClient) -> None:
    """The same Idempotency-Key twice: one message; the key for another text: 409."""
    register(client, "ann")
    register(client, "bob")
    ann = login(client, "ann") | {"Idempotency-Key": "b6f1e2"}
    body = {"to": "bob", "content": "once"}
    first, again = (client.post("/messages", headers=ann, json=body) for _ in range(2))
    reused = client.post("/messages", headers=ann, json={"to": "bob", "content": "other"})
    assert (201, 201, first.json()["id"]) == (
        first.status_code,
        again.status_code,
        again.json()["id"],
    )
    assert (409, "IdempotencyKeyReusedError") == (reused.status_code, reused.json()["error"])
    page = client.get("/inbox", headers=login(client, "bob")).json()
    assert ["once"] == [message["content"] for message in page["messages"]]


def test_unread_count_and_mark_read(client: TestClient) -> None:
    """Unread messages are counted; marking some, then all, brings the count to zero."""
    register(client, "ann")
    register(client, "bob")
    ann = login(client, "ann")
    ids = [
        client.post("/messages", headers=ann, json={"to": "bob", "content": "ping"}).json()["id"]
        for _ in range(3)
    ]
    bob = login(client, "bob")
    assert {"unread": 3} == client.get("/inbox/unread-count", headers=bob).json()
    assert {"marked": 1} == client.post(
        "/inbox/read", headers=bob, json={"message_ids": ids[:1]}
    ).json()
    assert {"marked": 0} == client.post("/inbox/read", headers=ann, json={}).json()
    assert {"unread": 2} == client.get("/inbox/unread-count", headers=bob).json()
    assert {"marked": 2} == client.post("/inbox/read", headers=bob, json={}).json()
    assert {"unread": 0} == client.get("/inbox/unread-count", headers=bob).json()


def test_needs_login_and_a_known_recipient(client: TestClient) -> None:
    """No token is 401; an unknown recipient is 404; an empty message is 422."""
    assert 401 == client.get("/inbox").status_code
    assert 401 == client.get("/inbox", headers={"Authorization": "Bearer 1.forged"}).status_code
    register(client, "ann")
    ann = login(client, "ann")
    assert (
        404
        == client.post("/messages", headers=ann, json={"to": "nobody", "content": "x"}).status_code
    )
    assert (
        422
        == client.post("/messages", headers=ann, json={"to": "ann", "content": "  "}).status_code
    )


def test_each_test_starts_empty(client: TestClient) -> None:
    """What earlier tests committed through the routes is gone."""
    register(client, "ann")  # would be 409 if test_register_and_log_in had left ann behind


def test_start_up_guard(appdb_empty_database_url: URL, monkeypatch: pytest.MonkeyPatch) -> None:
    """The app refuses to start on an unmigrated database and starts once it is migrated."""
    monkeypatch.setenv(
        "DATABASE_URL", appdb_empty_database_url.render_as_string(hide_password=False)
    )
    reset_engines()
    try:
        with (
            pytest.raises(SchemaOutOfDateError, match="run `appdb-migrate upgrade`"),
            TestClient(create_app()),
        ):
            pass
        migrate.upgrade(settings=DatabaseSettings())
        with TestClient(create_app()) as client:
            assert 401 == client.get("/inbox").status_code
    finally:
        reset_engines()


def test_appdb_errors_map_to_http(client: TestClient, tmp_path) -> None:
    """A reply to no message is 404; an unreachable database is 503 with Retry-After."""
    from backend.auth import issue_token
    from sqlmodel import Session

    from appdb import create_engine, get_db

    register(client, "ann")
    ann = login(client, "ann")
    orphan = client.post(
        "/messages", headers=ann, json={"to": "ann", "content": "x", "parent_id": 9}
    )
    assert (404, "MessageNotFoundError") == (orphan.status_code, orphan.json()["error"])

    app = create_app(check_schema=False)
    gone = DatabaseSettings(url=URL.create("sqlite", database=str(tmp_path / "no" / "db.sqlite3")))
    engine = create_engine(gone)

    def unreachable():
        with Session(engine) as session:
            yield session

    app.dependency_overrides[get_db] = unreachable
    with TestClient(app) as down:
        response = down.get("/inbox", headers={"Authorization": f"Bearer {issue_token(1)}"})
    engine.dispose()
    assert 503 == response.status_code
    assert "Retry-After" in response.headers
    assert "DatabaseUnavailableError" == response.json()["error"]
