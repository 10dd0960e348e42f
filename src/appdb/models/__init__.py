"""appdb's models: import them from `appdb` itself."""

from appdb.models.base import NAMING_CONVENTION, AppDBModel, metadata
from appdb.models.message import Message
from appdb.models.schemas import (
    MessageCreate,
    MessageRead,
    UserCreate,
    UserRead,
    UserUpdate,
)
from appdb.models.user import User

__all__ = [
    "NAMING_CONVENTION",
    "AppDBModel",
    "Message",
    "MessageCreate",
    "MessageRead",
    "User",
    "UserCreate",
    "UserRead",
    "UserUpdate",
    "metadata",
]
