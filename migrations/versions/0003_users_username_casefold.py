"""Usernames unique case-insensitively; usernames and emails NFKC-normalised.

Revision ID: 0003_users_username_casefold
Revises: 0002_messages
Create Date: 2026-12-02

``ann``, ``Ann`` and ``ANN`` were three accounts, and a full-width ``DOG@`` registered next
to ``dog@``. Existing usernames and email addresses are NFKC-normalised (full-width letters become
ASCII, as registration now does), then a unique index on ``lower(username)`` makes the database
refuse look-alikes from every writer, whatever its appdb version.

Rows that would clash after normalising are reported, all of them in one error, before anything
changes; the operator renames them and reruns.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from typing import Literal

import sqlalchemy as sa
from alembic import context, op

from appdb.exceptions import MigrationError

revision: str = "0003_users_username_casefold"
down_revision: str | Sequence[str] | None = "0002_messages"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# A tighter constraint: code built for 0002 that registers "Ann" next to "ann" is now refused
# (appdb 0.1.0's own create_user then raises ConcurrentUpdateError, not UsernameTakenError).
compatibility: Literal["additive", "breaking"] = "breaking"
# Ships in the same (unreleased) 0.1.0 as the baseline, so no released version is broken.
since: str = "0.1.0"
# squawk's require-concurrent-index-creation does not fit: the clash check and the index must
# be one transaction (a look-alike inserted between them would leave an INVALID index behind),
# and writes to users wait only while lower(username) is indexed, about a second per million
# rows, with the script's lock_timeout bounding the wait for the lock itself.
squawk_ignore: tuple[str, ...] = ("require-concurrent-index-creation",)

INDEX = "uq_users_username_lower"

_USERS = sa.table(
    "users", sa.column("id"), sa.column("username", sa.String), sa.column("email", sa.String)
)


def _username(value: str) -> str:
    return unicodedata.normalize("NFKC", value)


def _email(value: str) -> str:
    local, at, domain = value.rpartition("@")
    if not at:
        return value
    return f"{unicodedata.normalize('NFKC', local)}@{domain}".lower()


def _clashes(rows: Sequence[sa.Row[tuple[int, str | None, str | None]]]) -> list[str]:
    """Each group of rows that would share a username or an email once normalised."""
    by_username: defaultdict[str, list[str]] = defaultdict(list)
    by_email: defaultdict[str, list[str]] = defaultdict(list)
    for user_id, username, email in rows:
        if username is not None:
            by_username[_username(username).casefold()].append(f"id {user_id} {username!r}")
        if email is not None:
            # The address stays out of the message (it ends up in logs): ids only.
            by_email[_email(email)].append(f"id {user_id}")
    return [f"usernames {', '.join(group)}" for group in by_username.values() if len(group) > 1] + [
        f"emails of {', '.join(group)}" for group in by_email.values() if len(group) > 1
    ]


def upgrade() -> None:
    """Normalise usernames and emails, refusing clashes, then index lower(username) uniquely."""
    if context.is_offline_mode():
        # Rendered SQL cannot read the rows: the index alone, which fails (and the script's
        # transaction with it) if look-alikes exist. Normalising needs an online upgrade.
        op.create_index(INDEX, "users", [sa.text("lower(username)")], unique=True)
        return
    connection = op.get_bind()
    rows = connection.execute(sa.select(_USERS.c.id, _USERS.c.username, _USERS.c.email)).all()
    clashes = _clashes(rows)
    if clashes:
        msg = (
            f"{revision}: {len(clashes)} group(s) of users would share a username "
            f"(ignoring case and full-width forms) or an email address: {'; '.join(clashes)}; "
            "rename all but one in each group, then rerun (nothing was changed)"
        )
        raise MigrationError(msg)
    for user_id, username, email in rows:
        values = {}
        if username is not None and _username(username) != username:
            values["username"] = _username(username)
        if email is not None and _email(email) != email:
            values["email"] = _email(email)
        if values:
            connection.execute(sa.update(_USERS).where(_USERS.c.id == user_id).values(**values))
    op.create_index(INDEX, "users", [sa.text("lower(username)")], unique=True)


def downgrade() -> None:
    """Drop the index; normalised values stay (they were valid before too)."""
    op.drop_index(INDEX, table_name="users")
