# ruff: noqa: RUF012
"""Sign-in attempts, lockouts and unlocks: audited, ledgered records (21 CFR 11.300(d))."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from hepatrial.trials.audit.base import AuditedModel

#: what a :class:`LoginEvent` records
LOGIN_EVENT_KINDS: tuple[tuple[str, str], ...] = (
    ("success", "signed in"),
    ("failure", "sign-in refused"),
    ("lockout", "locked out"),
    ("unlock", "lockout reset"),
)


class LoginEvent(AuditedModel):
    """One sign-in attempt (success or failure), lockout or unlock.

    ``username`` is the name as given (control characters escaped as ``\\xNN``), ``account``
    the account it names when there is one, ``at`` the time (UTC), ``source`` the client's
    address as django-axes determines it (empty for the command line), ``detail`` what
    happened. Written by :func:`hepatrial.trials.services.accounts.record_login_event` (the
    sign-in signals) and ``unlock_account``; never changed.
    """

    lock_scope = None

    kind = models.CharField(max_length=10, choices=LOGIN_EVENT_KINDS)
    username = models.TextField()
    account = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="login_events",
    )
    at = models.DateTimeField()
    source = models.CharField(max_length=100, blank=True, default="")
    detail = models.TextField(blank=True, default="")

    class Meta(AuditedModel.Meta):
        ordering = ["at", "pk"]
        indexes = [models.Index(fields=["username", "at"], name="loginevent_user_at")]

    def __str__(self) -> str:
        return f"{self.kind} {self.username} {self.at:%Y-%m-%d %H:%M:%S}"
