"""The exceptions appdb raises: one family rooted at `AppDBError`."""

from __future__ import annotations

__all__ = [
    "AppDBError",
    "ConfigurationError",
]


class AppDBError(Exception):
    """Base class of every error appdb raises on purpose."""


class ConfigurationError(AppDBError, ValueError):
    """The settings are invalid or incomplete (bad `DATABASE_URL`, a pool size below one, ...).

    Messages name the environment variable at fault and never contain a password.
    """
