"""Bearer tokens: ``<user id>.<HMAC of it>``, signed with ``BACKEND_SECRET_KEY``.

Enough for an example; a real service would use expiring tokens or sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

_bearer = HTTPBearer(auto_error=False)
# Without a configured key every process start invalidates the tokens, which is safe.
_SECRET = os.environ.get("BACKEND_SECRET_KEY", secrets.token_hex(32)).encode()


def _signature(user_id: int) -> str:
    return hmac.new(_SECRET, str(user_id).encode(), hashlib.sha256).hexdigest()


def issue_token(user_id: int) -> str:
    """A token that proves `user_id` logged in."""
    return f"{user_id}.{_signature(user_id)}"


def current_user_id(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> int:
    """The authenticated user's id, or 401."""
    if credentials is not None:
        user_id, _, signature = credentials.credentials.partition(".")
        if user_id.isdigit() and hmac.compare_digest(signature, _signature(int(user_id))):
            return int(user_id)
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, "not logged in")
