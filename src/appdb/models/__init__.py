"""appdb's models: import them from `appdb` itself.

A service declaring tables of its own on `metadata` builds them from `AppDBModel`,
`TimestampMixin`, `BigIntegerPK` and `UTCDateTime`, so they follow appdb's conventions.
"""

from appdb.models.base import NAMING_CONVENTION, AppDBModel, TimestampMixin, metadata
from appdb.models.message import Message
from appdb.models.schemas import (
    MessageCreate,
    MessageRead,
    UserCreate,
    UserRead,
    UserUpdate,
)
from appdb.models.types import BigIntegerPK, UTCDateTime
from appdb.models.user import User

__all__ = [
    "NAMING_CONVENTION",
    "AppDBModel",
    "BigIntegerPK",
    "Message",
    "MessageCreate",
    "MessageRead",
    "TimestampMixin",
    "UTCDateTime",
    "User",
    "UserCreate",
    "UserRead",
    "UserUpdate",
    "metadata",
]
