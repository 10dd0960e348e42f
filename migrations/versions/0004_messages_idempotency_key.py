"""Idempotent sends: an optional key per message, unique per sender.

Revision ID: 0004_messages_idempotency_key
Revises: 0003_users_username_casefold
Create Date: 2026-12-02

A client that retries `send_message` after a `ConnectionLostError` at commit cannot know whether
the first attempt was stored (after a crash most such "in doubt" commits were). With the same
``idempotency_key`` the retry returns the stored message instead of storing a second one.

The column is nullable and the unique index covers only rows that have a key, so code built for
the earlier revisions (which never sets it) keeps inserting and reading messages unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import sqlalchemy as sa
from alembic import op

revision: str = "0004_messages_idempotency_key"
down_revision: str | Sequence[str] | None = "0003_users_username_casefold"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# A new nullable column and an index over rows that set it: older code never sets it, and no
# row it writes can clash.
compatibility: Literal["additive", "breaking"] = "additive"
since: str = "0.1.0"
# squawk's require-concurrent-index-creation does not fit: the index is partial over a column
# that is NULL in every existing row, so building it is one scan of messages with no entries to
# sort (0.4 s for a million rows on a loaded 2-core machine, writes to messages waiting that
# long), and
# CONCURRENTLY cannot run inside the revision's transaction, which keeps the column and its
# index together (a failed concurrent build leaves an INVALID index behind to clean up).
squawk_ignore: tuple[str, ...] = ("require-concurrent-index-creation",)

INDEX = "uq_messages_sender_id_idempotency_key"
KEY_LENGTH = 64
_HAS_KEY = sa.text("idempotency_key IS NOT NULL")


def upgrade() -> None:
    """Add the nullable key column and its partial unique index (sender_id, key)."""
    op.add_column(
        "messages", sa.Column("idempotency_key", sa.String(length=KEY_LENGTH), nullable=True)
    )
    op.create_index(
        INDEX,
        "messages",
        ["sender_id", "idempotency_key"],
        unique=True,
        postgresql_where=_HAS_KEY,
        sqlite_where=_HAS_KEY,
    )


def downgrade() -> None:
    """Drop the index and the column (the keys are lost; the messages stay)."""
    op.drop_index(INDEX, table_name="messages")
    op.drop_column("messages", "idempotency_key")
