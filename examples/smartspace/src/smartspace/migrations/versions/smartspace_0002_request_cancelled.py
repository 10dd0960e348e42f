"""Requests can be cancelled: add 'cancelled' to requeststatus.

Revision ID: smartspace_0002
Revises: smartspace_0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import sqlalchemy as sa
from alembic import op

revision: str = "smartspace_0002"
down_revision: str | Sequence[str] | None = "smartspace_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None
# A new enum value: code that never writes it keeps working.
compatibility: Literal["additive", "breaking"] = "additive"
since: str = "0.1.0"

BEFORE = ("pending", "completed", "failed")
AFTER = (*BEFORE, "cancelled")


def _checked(values: tuple[str, ...]) -> sa.Enum:
    return sa.Enum(*values, name="requeststatus", create_constraint=True)


def upgrade() -> None:
    """PostgreSQL: ALTER TYPE ... ADD VALUE outside the transaction; SQLite: a wider CHECK."""
    if op.get_context().dialect.name == "postgresql":
        # ADD VALUE's new value cannot be used in the transaction that adds it, and older
        # servers refuse ADD VALUE inside a transaction at all: commit around it.
        with op.get_context().autocommit_block():
            op.execute("ALTER TYPE requeststatus ADD VALUE IF NOT EXISTS 'cancelled'")
        return
    with op.batch_alter_table("requests") as batch:
        batch.alter_column("status", existing_type=_checked(BEFORE), type_=_checked(AFTER))


def downgrade() -> None:
    """Cancelled requests become failed ones; the type is rebuilt without the value."""
    op.execute("UPDATE requests SET status = 'failed' WHERE status = 'cancelled'")
    if op.get_context().dialect.name == "postgresql":
        # PostgreSQL cannot drop an enum value: swap in a new type.
        op.execute("ALTER TYPE requeststatus RENAME TO requeststatus_old")
        op.execute("CREATE TYPE requeststatus AS ENUM ('pending', 'completed', 'failed')")
        op.execute(
            "ALTER TABLE requests ALTER COLUMN status TYPE requeststatus "
            "USING status::text::requeststatus"
        )
        op.execute("DROP TYPE requeststatus_old")
        return
    with op.batch_alter_table("requests") as batch:
        batch.alter_column("status", existing_type=_checked(AFTER), type_=_checked(BEFORE))
