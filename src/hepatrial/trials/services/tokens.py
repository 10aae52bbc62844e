"""Tokens of the REST API: made, listed, revoked and checked here, and nowhere else.

A token is ``hpt_`` + 43 characters of ``secrets.token_urlsafe(32)`` (256 random bits). It is
shown once (:func:`create_token` returns it; ``hepatrial user token NAME`` prints it as its last
word) and never stored: the store keeps its SHA-256 (:func:`token_digest`) in an
:class:`~hepatrial.trials.models.ApiToken`, so a copy of the database holds no usable token.
A fast hash suffices because the token is random (OWASP Authentication Cheat Sheet: secrets
of high entropy need no slow password hash; slow hashes are for passwords people choose).

Making and revoking a token are audited writes (the token row's history and ledger entry: who,
when, why) and need ``manage_accounts`` (admin; the system account of the command line), as
every account change does (21 CFR 11.10(d),(g); 11.300(b): tokens are checked and withdrawn).
A token expires (default :data:`DEFAULT_DAYS` days, at most :data:`MAX_DAYS`): 11.300(b) asks
that identification codes be periodically checked, recalled or revised.

A token acts as its account: :func:`authenticate` returns the account, which then has its role
and sites like on every other path (:mod:`.permissions`). A deactivated account, an expired or
revoked token or an account without a role is refused
(:class:`~hepatrial.errors.AuthenticationFailed`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import secrets
from typing import Any

from django.db import transaction
from django.utils import timezone

from hepatrial.errors import AuthenticationFailed, NotFoundError, StoreError
from hepatrial.trials.audit.base import require_reason
from hepatrial.trials.models import ApiToken
from hepatrial.trials.services.accounts import account as _account
from hepatrial.trials.services.accounts import acting_user
from hepatrial.trials.services.permissions import require_permission, role_of

__all__ = [
    "DEFAULT_DAYS",
    "MAX_DAYS",
    "PREFIX",
    "authenticate",
    "create_token",
    "list_tokens",
    "revoke_token",
    "token_digest",
    "token_status",
]

#: every token starts with this (secret scanners and people recognise it)
PREFIX = "hpt_"
#: days a token is valid unless ``days`` says otherwise
DEFAULT_DAYS = 90
#: the longest validity a token can have
MAX_DAYS = 3650
_HINT = 10  # characters of the token kept to tell tokens apart (prefix + 6 random)


def token_digest(token: str) -> str:
    """SHA-256 (hex) of the token text, the only form in which the store keeps it."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_status(token: ApiToken, now: _dt.datetime | None = None) -> str:
    """``revoked``, ``expired`` or ``active`` at ``now`` (default: the current time)."""
    now = now or timezone.now()
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at <= now:
        return "expired"
    return "active"


def create_token(
    *, account: Any, days: int = DEFAULT_DAYS, reason: str = "", user: Any = None
) -> tuple[ApiToken, str]:
    """Make a token for ``account`` (an account or its username) valid for ``days`` days.

    Returns ``(row, token)``: the token text is returned only here, once. Needs
    ``manage_accounts``. Refused for a deactivated account, the system account and an account
    without a role (it could do nothing). Audited: the row's history says who made it and why.
    """
    acting = acting_user(user)
    require_permission(acting, "manage_accounts")
    holder = _account(account)
    name = holder.get_username()
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise StoreError(f"API token for {name!r}: expiry {days!r} is not a whole number of "
                         f"days from 1 to {MAX_DAYS}")
    role = role_of(holder)
    if role == "system":
        raise StoreError("API token: the system account cannot hold a token (make one for a "
                         "named account)")
    if not holder.is_active:
        raise StoreError(f"API token for {name!r}: the account is deactivated")
    if role is None:
        raise StoreError(f"API token for {name!r}: the account has no role in the trial")
    text = PREFIX + secrets.token_urlsafe(32)
    now = timezone.now()
    why = str(reason or "").strip()
    row = ApiToken(
        user=holder,
        digest=token_digest(text),
        hint=text[:_HINT],
        created_at=now,
        created_by=acting,
        reason=why,
        expires_at=now + _dt.timedelta(days=days),
    )
    with transaction.atomic():
        row.save(user=acting, reason=f"API token created for {name} ({role}), valid {days} "
                 f"days" + (f": {why}" if why else ""))
    return row, text


def list_tokens(account: Any) -> list[ApiToken]:
    """The tokens of ``account`` (an account or its username), oldest first."""
    holder = _account(account)
    return list(ApiToken.objects.filter(user=holder).order_by("created_at", "pk"))


def revoke_token(*, account: Any, token_id: int, reason: str, user: Any = None) -> ApiToken:
    """Revoke token ``token_id`` of ``account`` with a reason (needs ``manage_accounts``).

    Refused (:class:`NotFoundError`) for a token id that is not one of the account's, and
    (:class:`StoreError`) for a token already revoked. Audited: the change of the row keeps
    who revoked it, when and why."""
    acting = acting_user(user)
    require_permission(acting, "manage_accounts")
    holder = _account(account)
    name = holder.get_username()
    why = require_reason(reason, f"revoking API token {token_id} of {name}")
    with transaction.atomic():
        row = ApiToken.objects.select_for_update().filter(pk=token_id, user=holder).first()
        if row is None:
            known = ", ".join(str(t.pk) for t in list_tokens(holder)) or "none"
            raise NotFoundError(f"API token {token_id} is not one of {name}'s tokens "
                                f"(their tokens: {known})")
        if row.revoked_at is not None:
            raise StoreError(f"API token {token_id} of {name} was already revoked on "
                             f"{row.revoked_at:%Y-%m-%d %H:%M:%S} UTC")
        row.revoked_at = timezone.now()
        row.revoked_by = acting
        row.revoke_reason = why
        row.save(user=acting, reason=f"API token revoked: {why}")
    return row


def authenticate(token: str) -> Any:
    """The account a bearer token acts as; :class:`AuthenticationFailed` says why not
    (unknown, expired or revoked token; deactivated account or account without a role)."""
    text = str(token or "").strip()
    if not text.startswith(PREFIX) or len(text) > 200:
        raise AuthenticationFailed("not an API token (tokens start with hpt_; make one with "
                                   "hepatrial user token NAME)")
    row = (ApiToken.objects.select_related("user", "user__trial_profile")
           .filter(digest=token_digest(text)).first())
    if row is None:
        raise AuthenticationFailed("unknown API token")
    status = token_status(row)
    if status == "revoked":
        raise AuthenticationFailed(f"API token {row.pk} was revoked")
    if status == "expired":
        raise AuthenticationFailed(
            f"API token {row.pk} expired on {row.expires_at:%Y-%m-%d %H:%M:%S} UTC")
    holder = row.user
    if not holder.is_active:
        raise AuthenticationFailed(f"the account of API token {row.pk} is deactivated")
    if role_of(holder) in (None, "system"):
        raise AuthenticationFailed(f"the account of API token {row.pk} has no role in the trial")
    return holder
