# ruff: noqa: RUF012
"""The protocol the store runs on, sites, arms and site memberships."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from hepatrial.trials.audit.base import AuditedModel
from hepatrial.trials.audit.locks import LockScope
from hepatrial.trials.models.choices import Role


class TrialConfig(AuditedModel):
    """The protocol the store runs on (one row; a new version replaces it with a reason)."""

    lock_scope = LockScope()

    name = models.CharField(max_length=100)
    version = models.CharField(max_length=50)
    content_hash = models.CharField(max_length=64)
    toml_text = models.TextField()
    design = models.CharField(max_length=50, blank=True)
    loaded_at = models.DateTimeField()

    class Meta(AuditedModel.Meta):
        verbose_name = "trial configuration"

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"


class Site(AuditedModel):
    """A recruiting site (centre)."""

    lock_scope = None

    code = models.CharField(max_length=30, unique=True)
    name = models.CharField(max_length=200, blank=True)
    active = models.BooleanField(default=True)

    class Meta(AuditedModel.Meta):
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class Arm(AuditedModel):
    """A treatment arm of the protocol (``single`` for single-arm protocols)."""

    lock_scope = LockScope()

    code = models.CharField(max_length=30, unique=True)
    label = models.CharField(max_length=200, blank=True)

    class Meta(AuditedModel.Meta):
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class SiteMembership(AuditedModel):
    """A user's access to one site (a coordinator sees only their sites' participants)."""

    lock_scope = None

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="site_memberships"
    )
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="memberships")
    role = models.CharField(max_length=30, default="coordinator")

    class Meta(AuditedModel.Meta):
        constraints = [models.UniqueConstraint(fields=["user", "site"], name="uniq_membership")]

    def __str__(self) -> str:
        return f"{self.user} @ {self.site}"


class UserProfile(AuditedModel):
    """A user's role in the trial and printed name (the name an e-signature shows).

    Site access is :class:`SiteMembership`; the role says what the user may do
    (:data:`hepatrial.vocab.ROLES`; the permission matrix is in
    :mod:`hepatrial.trials.services.accounts`). ``failed_signatures`` counts consecutive wrong
    passwords given to sign; at 5 the account is deactivated (21 CFR 11.300(d)).
    """

    lock_scope = None

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="trial_profile"
    )
    role = models.CharField(max_length=30, choices=Role.choices)
    printed_name = models.CharField(max_length=200, blank=True)
    failed_signatures = models.PositiveSmallIntegerField(default=0)

    class Meta(AuditedModel.Meta):
        ordering = ["user__username"]

    def __str__(self) -> str:
        return f"{self.user} ({self.role})"
