# ruff: noqa: RUF012
"""Admin of sites, arms, memberships, the protocol, randomisation, the ledger, accounts (users,
the own password, groups) and django-axes' sign-in records (shown only)."""

from __future__ import annotations

import contextvars
import types
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

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the protocol is installed or amended, never deleted


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

    def history_form_view(
        self, request: HttpRequest, object_id: str, version_id: str, extra_context: Any = None
    ) -> Any:
        # as AuditedAdmin: simple_history's history-form page saves whatever is POSTed to it
        # (an account reverted to a past version, without a reason): refused for everybody
        if request.method not in ("GET", "HEAD"):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied("reverting an account to a past version is disabled")
        return super().history_form_view(request, object_id, version_id, extra_context)

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


# ------------------------------------------------------------------ the own password
from django.contrib.admin.forms import AdminPasswordChangeForm as _OwnPasswordForm  # noqa: E402


class OwnPasswordForm(_OwnPasswordForm):
    """The admin's "change password" page (the signed-in user's own password: old password,
    new one twice) with a required reason; saved by
    :func:`hepatrial.trials.services.accounts.change_password` (audited: "password changed")."""

    change_reason = forms.CharField(
        label="Reason for change",
        required=True,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Kept in the audit trail of your account.",
    )

    def save(self, commit: bool = True) -> Any:
        from hepatrial.trials.services.accounts import change_password

        return change_password(user_account=self.user,
                               password=self.cleaned_data["new_password1"],
                               reason=self.cleaned_data[REASON_FIELD], user=self.user)


def _password_change(site: admin.AdminSite, request: HttpRequest,
                     extra_context: Any = None) -> Any:
    """``AdminSite.password_change`` through the service: Django's own form saves the user
    row directly (a history row without a reason, not marked as a password change)."""
    from django.contrib.auth.views import PasswordChangeView
    from django.urls import reverse

    request.current_app = site.name
    return PasswordChangeView.as_view(
        form_class=OwnPasswordForm,
        success_url=reverse("admin:password_change_done", current_app=site.name),
        template_name="admin/password_change_with_reason.html",
        extra_context={**site.each_context(request), **(extra_context or {})},
    )(request)


_own_password_view = types.MethodType(_password_change, admin.site)
admin.site.password_change = _own_password_view


# ------------------------------------------------------------------ groups
from django.contrib.auth.admin import GroupAdmin as _BaseGroupAdmin  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402


class AuditedGroupForm(forms.ModelForm):
    """A group and its permissions, with a reason for every change (its members' grants
    change with it; the group's history rows keep the reason)."""

    change_reason = forms.CharField(
        label="Reason for change",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required when changing a saved group; kept in the audit trail.",
    )

    class Meta:
        model = Group
        fields = ["name", "permissions"]

    def clean(self) -> Any:
        data = super().clean()
        if self.instance.pk is not None and not (data.get(REASON_FIELD) or "").strip():
            self.add_error(REASON_FIELD, "A reason for change is required.")
        return data


class AuditedGroupAdmin(_BaseGroupAdmin):
    """Groups: a reason for every change and deletion (typed on the confirmation page), no
    bulk delete (it cannot carry per-row reasons)."""

    form = AuditedGroupForm
    delete_confirmation_template = "admin/trials/delete_confirmation.html"

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        obj._history_user = request.user
        reason = (form.cleaned_data.get(REASON_FIELD) or "").strip()
        # kept on the object for the history rows of its permissions (saved after it)
        obj._change_reason = reason if change else (reason or "group created")
        super().save_model(request, obj, form, change)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> Any:
        from django.contrib import messages
        from django.http import HttpResponseRedirect

        if request.method == "POST" and not request.POST.get(REASON_FIELD, "").strip():
            messages.error(request, "A reason is required to delete a group.")
            return HttpResponseRedirect(request.path)
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        obj._history_user = request.user
        obj._change_reason = request.POST.get(REASON_FIELD, "").strip()
        super().delete_model(request, obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


if admin.site.is_registered(Group):
    admin.site.unregister(Group)
admin.site.register(Group, AuditedGroupAdmin)


# ------------------------------------------------------------------ django-axes
from axes import admin as _axes_admin  # noqa: E402
from axes.models import AccessAttempt, AccessFailureLog, AccessLog  # noqa: E402


class _ShownSignIns:
    """django-axes' sign-in records, shown to superusers and never changed here: deleting an
    access attempt would lift a lockout without the audited ``unlock`` event (``hepatrial
    user unlock NAME``, :func:`~hepatrial.trials.services.accounts.unlock_account`), deleting
    a log entry would remove a sign-in record; no actions (axes' clean-up deletes too)."""

    actions = None

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AccessAttemptAdmin(_ShownSignIns, _axes_admin.AccessAttemptAdmin):
    pass


class AccessLogAdmin(_ShownSignIns, _axes_admin.AccessLogAdmin):
    pass


class AccessFailureLogAdmin(_ShownSignIns, _axes_admin.AccessFailureLogAdmin):
    pass


for _model, _admin in ((AccessAttempt, AccessAttemptAdmin), (AccessLog, AccessLogAdmin),
                       (AccessFailureLog, AccessFailureLogAdmin)):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, _admin)
