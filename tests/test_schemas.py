"""The API schemas validate input before it reaches the database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from appdb import MessageCreate, User, UserCreate, UserRead, UserUpdate
from appdb.models.types import BIGINT_MAX
from appdb.models.user import UserLimits

GOOD = {"username": "ann_1", "email": "Ann@Example.IO", "password": "correct horse"}


def test_user_create_normalises_email() -> None:
    """Emails are stored lower-cased, so Ann@x.io and ann@x.io are one address."""
    assert "ann@example.io" == UserCreate(**GOOD).email


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("email", "a@b"),
        ("username", "ab"),
        ("username", "x" * (UserLimits.USERNAME + 1)),
        ("username", "has space"),
        ("username", "robert'); DROP TABLE users;--"),
        ("password", "short"),
        ("password", "nul\x00in password"),
        ("full_name", "x" * (UserLimits.FULL_NAME + 1)),
        ("bio", "x" * (UserLimits.BIO + 1)),
    ],
)
def test_user_create_rejects(field: str, value: str) -> None:
    """Malformed or over-long fields fail validation, naming the field."""
    with pytest.raises(ValidationError, match=field):
        UserCreate(**(GOOD | {field: value}))


def test_password_not_in_repr() -> None:
    """A plain password never shows up in a repr."""
    assert "correct horse" not in repr(UserCreate(**GOOD))
    assert "new password!" not in repr(UserUpdate(password="new password!"))


def test_user_update_is_partial() -> None:
    """Only the fields given are set."""
    assert {"bio"} == UserUpdate(bio="hi").model_fields_set


def test_user_read_has_no_password_hash() -> None:
    """UserRead drops hashed_password even when the row has one."""
    user = User(
        id=1,
        username="ann",
        hashed_password="$argon2id$secret",
        created_at=datetime(2030, 1, 1, tzinfo=UTC),
        updated_at=datetime(2030, 1, 1, tzinfo=UTC),
    )
    read = UserRead.model_validate(user)
    assert "hashed_password" not in UserRead.model_fields
    assert "$argon2id$secret" not in read.model_dump_json()
    assert "ann" == read.display_name


@pytest.mark.parametrize("content", ["", " \n\t ", "x" * 4097, "a\x00b"])
def test_message_content_rejected(content: str) -> None:
    """Empty, blank, over-long or NUL-containing content is refused."""
    with pytest.raises(ValidationError, match="content"):
        MessageCreate(recipient_id=1, content=content)


@pytest.mark.parametrize("recipient_id", [0, -1, BIGINT_MAX + 1])
def test_message_ids_in_range(recipient_id: int) -> None:
    """Ids are positive 64-bit integers."""
    with pytest.raises(ValidationError, match="recipient_id"):
        MessageCreate(recipient_id=recipient_id, content="hi")


def test_message_create_keeps_content_verbatim() -> None:
    """Content is stored as written (no stripping), up to 4096 characters."""
    content = "  hi\n" + "x" * 4091
    assert content == MessageCreate(recipient_id=1, content=content).content


def test_email_is_described_to_openapi_as_pydantic_emailstr_is() -> None:
    """The lazily loaded email check keeps EmailStr's JSON schema: a string, format email, bounded."""
    expected = {"type": "string", "format": "email", "maxLength": UserLimits.EMAIL}
    assert expected | {"title": "Email"} == UserCreate.model_json_schema()["properties"]["email"]
    update = UserUpdate.model_json_schema()["properties"]["email"]
    assert [expected, {"type": "null"}] == update["anyOf"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("ann@", "There must be something after the @-sign"),
        ("a" * 330 + "@example.io", "too long"),
        ("ann\x00@example.io", "invalid characters"),
    ],
)
def test_email_errors_are_email_validators_own(value: str, reason: str) -> None:
    """A bad address fails with email-validator's explanation, as with pydantic's EmailStr."""
    with pytest.raises(ValidationError, match=reason) as caught:
        UserCreate(**(GOOD | {"email": value}))
    assert [("email",)] == [error["loc"] for error in caught.value.errors()]
