"""``Authorization: Bearer TOKEN`` for the REST API (RFC 6750 §2.1).

The token is checked by :func:`hepatrial.trials.services.tokens.authenticate` (unknown,
expired and revoked tokens, deactivated accounts and accounts without a role are refused: 401);
the request then acts as the token's account, with its role and sites, like every other path.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer

__all__ = ["BearerToken"]


class BearerToken(HttpBearer):
    """A bearer token made by ``hepatrial user token NAME``."""

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        """The token's account (``request.auth``); a refusal raises ``AuthenticationFailed``."""
        from hepatrial.trials.services import tokens

        return tokens.authenticate(token)
