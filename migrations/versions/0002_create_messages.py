"""Create the messages table and the indexes its queries use.

Revision ID: 0002_messages
Revises: 0001_users
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import sqlalchemy as sa
from alembic import op

revision: str = "0002_messages"
down_revision: str | Sequence[str] | None = "0001_users"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# A new table: code built for 0001 alone keeps working.
compatibility: Literal["additive", "breaking"] = "additive"
since: str = "0.1.0"

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create messages, its foreign keys and its query indexes."""
    op.create_table(
        "messages",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("sender_id", sa.BigInteger(), nullable=False),
        sa.Column("recipient_id", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("is_read", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("parent_id", sa.BigInteger(), nullable=True),
        sa.Column("conversation_id", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sa.ForeignKeyConstraint(
            ["sender_id"],
            ["users.id"],
            name=op.f("fk_messages_sender_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["recipient_id"],
            ["users.id"],
            name=op.f("fk_messages_recipient_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["messages.id"],
            name=op.f("fk_messages_parent_id_messages"),
            ondelete="SET NULL",
        ),
        sa.CheckConstraint("length(trim(content)) > 0", name=op.f("ck_messages_content_not_empty")),
    )
    # A recipient's inbox, newest first, paged by id.
    op.create_index("ix_messages_recipient_id_id", "messages", ["recipient_id", "id"])
    # Unread counts and unread-only pages read only the (few) unread rows.
    op.create_index(
        "ix_messages_recipient_id_unread",
        "messages",
        ["recipient_id", "id"],
        postgresql_where=sa.text("NOT is_read"),
        sqlite_where=sa.text("is_read = 0"),
    )
    # A conversation's thread, paged by id.
    op.create_index("ix_messages_conversation_id_id", "messages", ["conversation_id", "id"])
    # Foreign keys: replies of a message, and cascades when a user is deleted.
    op.create_index("ix_messages_parent_id", "messages", ["parent_id"])
    op.create_index("ix_messages_sender_id", "messages", ["sender_id"])


def downgrade() -> None:
    """Drop messages and its indexes."""
    op.drop_index("ix_messages_sender_id", table_name="messages")
    op.drop_index("ix_messages_parent_id", table_name="messages")
    op.drop_index("ix_messages_conversation_id_id", table_name="messages")
    op.drop_index("ix_messages_recipient_id_unread", table_name="messages")
    op.drop_index("ix_messages_recipient_id_id", table_name="messages")
    op.drop_table("messages")
