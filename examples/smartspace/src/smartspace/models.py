"""SmartSpace's tables, declared on `appdb.metadata` so that they may reference ``users.id``.

On PostgreSQL the status and tier columns are native enum types; on SQLite they are strings
with a CHECK constraint. JSON columns are JSONB on PostgreSQL.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import Field

from appdb.models import AppDBModel, BigIntegerPK, TimestampMixin, UTCDateTime

__all__ = [
    "AccountStatus",
    "ApiKey",
    "ApiKeyStatus",
    "Budget",
    "Payment",
    "PaymentStatus",
    "Policy",
    "Request",
    "RequestStatus",
    "UserTier",
]


class AccountStatus(enum.StrEnum):
    """Whether a user may spend."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    CLOSED = "closed"


class UserTier(enum.StrEnum):
    """The plan a user is on."""

    FREE = "free"
    PRO = "pro"
    ENTERPRISE = "enterprise"


class ApiKeyStatus(enum.StrEnum):
    """An API key's life cycle."""

    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


class PaymentStatus(enum.StrEnum):
    """A payment's life cycle."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUNDED = "refunded"


class RequestStatus(enum.StrEnum):
    """An API request's outcome (``cancelled`` arrived in revision smartspace_0002)."""

    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


def _enum(values: type[enum.StrEnum], name: str) -> sa.Enum:
    # The database stores the values ("active"), not the member names ("ACTIVE").
    return sa.Enum(
        values,
        name=name,
        values_callable=lambda members: [member.value for member in members],
        create_constraint=True,
        validate_strings=True,
    )


JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _user_id(*, nullable: bool = False) -> Any:
    return Field(
        default=None if nullable else ...,
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=nullable
        ),
    )


class ApiKey(AppDBModel, TimestampMixin, table=True):
    """A user's API key; only its hash is stored."""

    __tablename__ = "api_keys"
    __table_args__ = (
        sa.Index("idx_api_keys_key_hash", "key_hash", unique=True),
        sa.Index("idx_api_keys_user_id", "user_id"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntegerPK)
    user_id: int = _user_id()
    name: str = Field(max_length=100)
    key_prefix: str = Field(max_length=16)
    key_hash: str = Field(max_length=128)
    status: ApiKeyStatus = Field(
        default=ApiKeyStatus.ACTIVE,
        sa_column=sa.Column(_enum(ApiKeyStatus, "apikeystatus"), nullable=False),
    )
    scopes: list[str] = Field(default_factory=list, sa_column=sa.Column(JSON, nullable=False))
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Budget(AppDBModel, TimestampMixin, table=True):
    """A user's plan, account status and monthly spending limit."""

    __tablename__ = "budgets"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntegerPK)
    user_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger,
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        )
    )
    tier: UserTier = Field(
        default=UserTier.FREE, sa_column=sa.Column(_enum(UserTier, "usertier"), nullable=False)
    )
    account_status: AccountStatus = Field(
        default=AccountStatus.ACTIVE,
        sa_column=sa.Column(_enum(AccountStatus, "accountstatus"), nullable=False),
    )
    monthly_limit_cents: int = Field(default=0, ge=0)
    spent_cents: int = Field(default=0, ge=0)
    alerts: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(JSON, nullable=False))


class Policy(AppDBModel, TimestampMixin, table=True):
    """Rate limits and rules for a tier, or for one user when `user_id` is set."""

    __tablename__ = "policies"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntegerPK)
    user_id: int | None = _user_id(nullable=True)
    name: str = Field(max_length=100)
    tier: UserTier | None = Field(
        default=None, sa_column=sa.Column(_enum(UserTier, "usertier"), nullable=True)
    )
    requests_per_minute: int = Field(default=60, ge=0)
    rules: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(JSON, nullable=False))


class Payment(AppDBModel, TimestampMixin, table=True):
    """Money a user paid (or tried to)."""

    __tablename__ = "payments"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntegerPK)
    user_id: int = _user_id()
    amount_cents: int = Field(sa_type=sa.BigInteger)
    currency: str = Field(max_length=3)
    status: PaymentStatus = Field(
        default=PaymentStatus.PENDING,
        sa_column=sa.Column(_enum(PaymentStatus, "paymentstatus"), nullable=False),
    )
    provider: str = Field(max_length=32)
    provider_ref: str | None = Field(default=None, max_length=128, unique=True)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(JSON, nullable=False))


class Request(AppDBModel, TimestampMixin, table=True):
    """One API request a user made, what it cost and how it ended."""

    __tablename__ = "requests"
    __table_args__ = (sa.Index("idx_requests_user_id_created_at", "user_id", "created_at"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntegerPK)
    user_id: int = _user_id()
    api_key_id: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("api_keys.id", ondelete="SET NULL"), nullable=True
        ),
    )
    endpoint: str = Field(max_length=200)
    status: RequestStatus = Field(
        default=RequestStatus.PENDING,
        sa_column=sa.Column(_enum(RequestStatus, "requeststatus"), nullable=False),
    )
    tokens_in: int = Field(default=0, ge=0)
    tokens_out: int = Field(default=0, ge=0)
    cost_cents: int = Field(default=0, ge=0)
    request_meta: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column(JSON, nullable=False)
    )
