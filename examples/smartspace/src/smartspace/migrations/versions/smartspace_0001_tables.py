"""SmartSpace tables: api_keys, budgets, policies, payments, requests.

Revision ID: smartspace_0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "smartspace_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
# A chain of its own (version table alembic_version_smartspace): appdb-migrate runs appdb's
# chain first, so users exists when this runs, and depends_on cannot name appdb's revisions.
depends_on: str | Sequence[str] | None = None
# The first revision of the chain.
compatibility: Literal["additive", "breaking"] = "breaking"
since: str = "0.1.0"

BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

ENUMS = {
    "accountstatus": ("active", "suspended", "closed"),
    "usertier": ("free", "pro", "enterprise"),
    "apikeystatus": ("active", "revoked", "expired"),
    "paymentstatus": ("pending", "succeeded", "failed", "refunded"),
    "requeststatus": ("pending", "completed", "failed"),
}


def enum(name: str) -> sa.types.TypeEngine[str]:
    """A native type made once in `upgrade`; on SQLite a string with a CHECK constraint."""
    return sa.Enum(*ENUMS[name], name=name, create_constraint=True).with_variant(
        postgresql.ENUM(*ENUMS[name], name=name, create_type=False), "postgresql"
    )


def timestamps() -> list[sa.Column[object]]:
    """created_at and updated_at, as appdb's tables have them."""
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
    ]


def user_fk(table: str) -> sa.ForeignKeyConstraint:
    """The table's reference to appdb's users: a user's rows go with the user."""
    return sa.ForeignKeyConstraint(
        ["user_id"], ["users.id"], name=op.f(f"fk_{table}_user_id_users"), ondelete="CASCADE"
    )


def upgrade() -> None:
    """Create the enum types (PostgreSQL), then the tables."""
    if op.get_context().dialect.name == "postgresql":
        for name, values in ENUMS.items():
            # Tables share types (usertier), so they are made here once, not by create_table.
            postgresql.ENUM(*values, name=name).create(op.get_bind(), checkfirst=False)
    op.create_table(
        "api_keys",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=128), nullable=False),
        sa.Column("status", enum("apikeystatus"), nullable=False),
        sa.Column("scopes", JSON, nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        *timestamps(),
        user_fk("api_keys"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )
    op.create_index("idx_api_keys_key_hash", "api_keys", ["key_hash"], unique=True)
    op.create_index("idx_api_keys_user_id", "api_keys", ["user_id"])
    op.create_table(
        "budgets",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("tier", enum("usertier"), nullable=False),
        sa.Column("account_status", enum("accountstatus"), nullable=False),
        sa.Column("monthly_limit_cents", sa.Integer(), nullable=False),
        sa.Column("spent_cents", sa.Integer(), nullable=False),
        sa.Column("alerts", JSON, nullable=False),
        *timestamps(),
        user_fk("budgets"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_budgets")),
        sa.UniqueConstraint("user_id", name=op.f("uq_budgets_user_id")),
    )
    op.create_table(
        "policies",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("tier", enum("usertier"), nullable=True),
        sa.Column("requests_per_minute", sa.Integer(), nullable=False),
        sa.Column("rules", JSON, nullable=False),
        *timestamps(),
        user_fk("policies"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_policies")),
    )
    op.create_table(
        "payments",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", enum("paymentstatus"), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("provider_ref", sa.String(length=128), nullable=True),
        sa.Column("details", JSON, nullable=False),
        *timestamps(),
        user_fk("payments"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("provider_ref", name=op.f("uq_payments_provider_ref")),
    )
    op.create_table(
        "requests",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("api_key_id", sa.BigInteger(), nullable=True),
        sa.Column("endpoint", sa.String(length=200), nullable=False),
        sa.Column("status", enum("requeststatus"), nullable=False),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("cost_cents", sa.Integer(), nullable=False),
        sa.Column("request_meta", JSON, nullable=False),
        *timestamps(),
        user_fk("requests"),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_requests_api_key_id_api_keys"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_requests")),
    )
    op.create_index("idx_requests_user_id_created_at", "requests", ["user_id", "created_at"])


def downgrade() -> None:
    """Drop the tables, then their enum types, so the next upgrade can create them again."""
    op.drop_index("idx_requests_user_id_created_at", table_name="requests")
    op.drop_table("requests")
    op.drop_table("payments")
    op.drop_table("policies")
    op.drop_table("budgets")
    op.drop_index("idx_api_keys_user_id", table_name="api_keys")
    op.drop_index("idx_api_keys_key_hash", table_name="api_keys")
    op.drop_table("api_keys")
    if op.get_context().dialect.name == "postgresql":
        for name in ENUMS:
            postgresql.ENUM(name=name).drop(op.get_bind(), checkfirst=False)
