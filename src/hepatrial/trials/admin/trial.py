# ruff: noqa: RUF012
"""Admin of sites, arms, memberships, the protocol, randomisation, the ledger, accounts."""

from __future__ import annotations

import contextvars
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from hepatrial.trials import models as m
from hepatrial.trials.admin.base import (
    REASON_FIELD,
    AuditedAdmin,
    SuperuserOnly,
    user_site_ids,
)


@admin.register(m.Site)
class SiteAdmin(AuditedAdmin):
    site_path = "pk"
    list_display = ["code", "name", "active"]

    def get_queryset(self, request: HttpRequest) -> Any:
        qs = super(AuditedAdmin, self).get_queryset(request)
        if request.user.is_superuser:
            return qs
        return qs.filter(pk__in=user_site_ids(request.user))


@admin.register(m.Arm)
class ArmAdmin(AuditedAdmin):
    site_path = None
    list_display = ["code", "label"]


@admin.register(m.SiteMembership)
class SiteMembershipAdmin(SuperuserOnly):
    list_display = ["user", "site", "role"]


@admin.register(m.TrialConfig)
class TrialConfigAdmin(SuperuserOnly):
    list_display = ["name", "version", "content_hash", "loaded_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # `hepatrial init` loads protocols

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(m.RandomisationEntry)
class RandomisationEntryAdmin(SuperuserOnly):
    list_display = ["site", "sequence", "participant", "allocated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(m.AuditLedger)
class AuditLedgerAdmin(admin.ModelAdmin):
    list_display = ["seq", "history_model", "history_pk", "object_pk", "history_type",
                    "chain_hash", "recorded_at"]  # fmt: skip

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# ------------------------------------------------------------------------ user accounts
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.admin import UserAdmin as _BaseUserAdmin  # noqa: E402
from django.contrib.auth.forms import AdminPasswordChangeForm as _PasswordForm  # noqa: E402
from django.contrib.auth.forms import UserChangeForm as _BaseUserChangeForm  # noqa: E402


class AuditedUserChangeForm(_BaseUserChangeForm):
    """User change form with a required reason for change (account changes are audited)."""

    change_reason = forms.CharField(
        label="Reason for change",
        required=True,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Kept in the audit trail of the account.",
    )


class AuditedUserAdmin(SimpleHistoryAdmin, _BaseUserAdmin):
    """Accounts: a reason for every change, history view, and no deletion (deactivate instead,
    21 CFR 11.100: identities are never reused). The password page asks for a reason and
    writes through :func:`hepatrial.trials.services.accounts.change_password` (audited)."""

    form = AuditedUserChangeForm
    fieldsets = (*_BaseUserAdmin.fieldsets, ("Audit", {"fields": ("change_reason",)}))

    #: the account acting on the password page (set per request, read by its form)
    actor: contextvars.ContextVar[Any] = contextvars.ContextVar("hepatrial_password_actor")

    class PasswordForm(_PasswordForm):
        """The admin's password page with a required reason; saved by the service."""

        change_reason = forms.CharField(
            label="Reason for change",
            required=True,
            widget=forms.Textarea(attrs={"rows": 2}),
            help_text="Kept in the audit trail of the account.",
        )

        def clean(self) -> Any:
            from hepatrial.errors import PermissionDenied as Refused
            from hepatrial.trials.services.accounts import require_permission

            data = super().clean()
            acting = AuditedUserAdmin.actor.get(None)
            if acting is None or acting.pk != self.user.pk:
                try:
                    require_permission(acting, "manage_accounts")
                except Refused as exc:
                    raise forms.ValidationError(str(exc)) from None
            return data

        def save(self, commit: bool = True) -> Any:
            from hepatrial.trials.services.accounts import change_password

            usable = self.cleaned_data.get("set_usable_password", True)
            return change_password(
                user_account=self.user,
                password=self.cleaned_data["password1"] if usable else None,
                reason=self.cleaned_data[REASON_FIELD],
                user=AuditedUserAdmin.actor.get(None),
            )

    change_password_form = PasswordForm
    change_user_password_template = "admin/auth/user/change_password_with_reason.html"

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> Any:
        """Django's password page; the form knows who is acting (for the service)."""
        token = self.actor.set(request.user)
        try:
            return super().user_change_password(request, id, form_url)
        finally:
            self.actor.reset(token)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        obj._history_user = request.user
        obj._change_reason = (
            form.cleaned_data.get(REASON_FIELD, "").strip() if change else "account created"
        )
        super().save_model(request, obj, form, change)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


_User = get_user_model()
if admin.site.is_registered(_User):
    admin.site.unregister(_User)
admin.site.register(_User, AuditedUserAdmin)
