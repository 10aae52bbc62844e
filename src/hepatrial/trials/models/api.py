# ruff: noqa: RUF012
"""API tokens of the REST API (``/api/v1/``): audited, stored hashed, revocable."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from hepatrial.trials.audit.base import AuditedModel


class ApiToken(AuditedModel):
    """A bearer token of one account for the REST API (``Authorization: Bearer TOKEN``).

    The token itself is shown once when it is made (``hepatrial user token NAME``) and never
    stored: ``digest`` is its SHA-256 (hex), so a copy of the database gives no usable token
    (a token is 256 random bits, so a fast hash is enough: there is nothing to guess, unlike a
    password). ``hint`` is the token's first characters, to tell tokens apart in a list.
    A token acts as its account, with the account's role and sites, until ``expires_at`` or its
    revocation (``revoked_at``, ``revoked_by``, ``revoke_reason``). Made and revoked only by
    :mod:`hepatrial.trials.services.tokens`; every change has a history row and a ledger entry
    (who, when, why). No lock covers it (``lock_scope = None``): accounts are not trial data.
    """

    lock_scope = None

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_tokens"
    )
    digest = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the token (hex)")
    hint = models.CharField(max_length=16, help_text="the token's first characters")
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_tokens_made"
    )
    reason = models.TextField(blank=True, default="")
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="api_tokens_revoked",
    )
    revoke_reason = models.TextField(blank=True, default="")

    class Meta(AuditedModel.Meta):
        ordering = ["user", "created_at", "pk"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"API token {self.pk} of {self.user} ({self.hint}…)"
