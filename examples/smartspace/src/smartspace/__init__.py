"""SmartSpace: a service's own tables, referencing appdb's ``users``, with migrations of its own."""

from smartspace.models import (
    AccountStatus,
    ApiKey,
    ApiKeyStatus,
    Budget,
    Payment,
    PaymentStatus,
    Policy,
    Request,
    RequestStatus,
    UserTier,
)

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
