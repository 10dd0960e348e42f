"""Test-only: add users.nickname (nullable), an additive revision of a later appdb.

Revision ID: 0003_users_nickname
Revises: __HEAD__
"""

from __future__ import annotations

from typing import Literal

import sqlalchemy as sa
from alembic import op

revision: str = "0003_users_nickname"
down_revision: str | None = "__HEAD__"
branch_labels: str | None = None
depends_on: str | None = None
compatibility: Literal["additive", "breaking"] = "additive"
since: str = "__SINCE__"


def upgrade() -> None:
    """Add the column."""
    op.add_column("users", sa.Column("nickname", sa.String(length=64), nullable=True))


def downgrade() -> None:
    """Drop the column."""
    with op.batch_alter_table("users") as batch:
        batch.drop_column("nickname")
