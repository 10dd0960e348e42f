"""Test-only: add api_keys.label (nullable), an additive revision of a later smartspace.

Revision ID: smartspace_0003
Revises: smartspace_0002
"""

from __future__ import annotations

from typing import Literal

import sqlalchemy as sa
from alembic import op

revision: str = "smartspace_0003"
down_revision: str | None = "smartspace_0002"
branch_labels: str | None = None
depends_on: str | None = None
compatibility: Literal["additive", "breaking"] = "additive"
since: str = "__SINCE__"


def upgrade() -> None:
    """Add the column."""
    op.add_column("api_keys", sa.Column("label", sa.String(length=64), nullable=True))


def downgrade() -> None:
    """Drop the column."""
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("label")
