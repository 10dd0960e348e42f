"""appdb's metadata registry, its naming convention and the columns every table shares."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import MetaData, func
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from appdb.models.types import UTCDateTime

__all__ = ["NAMING_CONVENTION", "AppDBModel", "TimestampMixin", "metadata", "utcnow"]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""How every index and constraint is named, so migrations and downgrades can refer to them."""

metadata: MetaData = MetaData(naming_convention=NAMING_CONVENTION)
"""The single registry of appdb's tables (and of any service table declared on `AppDBModel`)."""


class AppDBModel(SQLModel, registry=registry(metadata=metadata)):
    """Base class of appdb's table models: a registry of its own, apart from `SQLModel.metadata`.

    A service that adds tables referencing ``users.id`` subclasses this with ``table=True``.
    """


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


class TimestampMixin(SQLModel):
    """`created_at` and `updated_at`, kept in UTC.

    Both default to the database clock on insert; an ORM update sets `updated_at` from the
    application clock, with microseconds on every backend (SQLite's clock has whole seconds).
    """

    created_at: datetime | None = Field(
        default=None,
        sa_type=UTCDateTime,
        sa_column_kwargs={"server_default": func.now(), "nullable": False},
    )
    updated_at: datetime | None = Field(
        default=None,
        sa_type=UTCDateTime,
        sa_column_kwargs={"server_default": func.now(), "onupdate": utcnow, "nullable": False},
    )
