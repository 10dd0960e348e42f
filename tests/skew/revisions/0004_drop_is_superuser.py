"""Test-only: drop users.is_superuser, a breaking revision of a later appdb.

Revision ID: 0004_drop_is_superuser
Revises: 0003_users_nickname
"""

from __future__ import annotations

from typing import Literal

import sqlalchemy as sa
from alembic import op

revision: str = "0004_drop_is_superuser"
down_revision: str | None = "0003_users_nickname"
branch_labels: str | None = None
depends_on: str | None = None
compatibility: Literal["additive", "breaking"] = "breaking"
since: str = "__SINCE__"


def upgrade() -> None:
    """Drop the column: every appdb before this one selects it."""
    with op.batch_alter_table("users") as batch:
        batch.drop_column("is_superuser")


def downgrade() -> None:
    """Bring the column back."""
    op.add_column(
        "users",
        sa.Column("is_superuser", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
