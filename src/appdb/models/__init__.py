"""appdb's models: import them from `appdb` itself.

A service declaring tables of its own on `metadata` builds them from `AppDBModel`,
`TimestampMixin`, `BigIntegerPK` and `UTCDateTime`, so they follow appdb's conventions.
"""

from typing import TYPE_CHECKING, Any

from appdb.models.base import NAMING_CONVENTION, AppDBModel, TimestampMixin, metadata
from appdb.models.message import Message
from appdb.models.types import BigIntegerPK, UTCDateTime
from appdb.models.user import User

if TYPE_CHECKING:
    from appdb.models.schemas import (
        MessageCreate,
        MessageRead,
        UserCreate,
        UserRead,
        UserUpdate,
    )

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

# The API schemas load on first access (PEP 562): a service that imports only the tables (its
# bot, its workers) does not build them.
_SCHEMAS = frozenset({"MessageCreate", "MessageRead", "UserCreate", "UserRead", "UserUpdate"})

if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        """The schemas of `appdb.models.schemas`, imported on first access."""
        if name in _SCHEMAS:
            from appdb.models import schemas  # noqa: PLC0415

            value = globals()[name] = getattr(schemas, name)
            return value
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)

    def __dir__() -> list[str]:
        """The module's names, the schemas not yet imported included."""
        return sorted({*globals(), *_SCHEMAS})
