# ruff: noqa: RUF012
"""Thin Django admin for the trial store.

* every change form has a required **reason for change** (stored as the history change reason);
  a delete needs a reason too (typed on the confirmation page); bulk delete is disabled;
* a coordinator (non-superuser) sees only participants — and their visits, labs, ... — of the
  sites they are a member of (:class:`~hepatrial.trials.models.SiteMembership`); superusers
  see everything;
* history pages come from django-simple-history (``SimpleHistoryAdmin``); reverting is off;
* the randomisation list and the audit ledger are visible to superusers only (concealment).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from simple_history.admin import SimpleHistoryAdmin

from hepatrial.trials import models as m

REASON_FIELD = "change_reason"


def user_site_ids(user: Any) -> list[int]:
    """Ids of the sites a user may see (all for superusers)."""
    if user.is_superuser:
        return list(m.Site.objects.values_list("pk", flat=True))
    return list(m.SiteMembership.objects.filter(user=user).values_list("site_id", flat=True))


class ReasonForm(forms.ModelForm):
    """Model form that asks for a reason for change when editing a saved record."""

    change_reason = forms.CharField(
        label="Reason for change",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required when changing a saved record; kept in the audit trail.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        participant, visit = data.get("participant"), data.get("visit")
        if participant is not None and visit is not None and visit.participant_id != participant.pk:
            self.add_error("visit", f"visit {visit} belongs to another participant")
        if self.instance.pk is not None and self.has_changed():
            if not (data.get(REASON_FIELD) or "").strip():
                self.add_error(REASON_FIELD, "A reason for change is required.")
        return data


class AuditedAdmin(SimpleHistoryAdmin):
    """Admin base: reason for change on edit and delete, site-restricted querysets."""

    form = ReasonForm
    #: path from the model to its Site, for per-site filtering (None: not site-scoped)
    site_path: str | None = "participant__site"
    delete_confirmation_template = "admin/trials/delete_confirmation.html"

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = [f for f in super().get_fields(request, obj) if f != REASON_FIELD]
        if obj is not None:
            fields.append(REASON_FIELD)
        return fields

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # a bulk delete cannot carry per-row reasons
        return actions

    def get_queryset(self, request: HttpRequest) -> Any:
        qs = super().get_queryset(request)
        if request.user.is_superuser or self.site_path is None:
            return qs
        return qs.filter(**{f"{self.site_path}__in": user_site_ids(request.user)})

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if not request.user.is_superuser:
            sites = user_site_ids(request.user)
            if db_field.related_model is m.Participant:
                kwargs["queryset"] = m.Participant.objects.filter(site__in=sites)
            elif db_field.related_model is m.Visit:
                kwargs["queryset"] = m.Visit.objects.filter(participant__site__in=sites)
            elif db_field.related_model is m.Site:
                kwargs["queryset"] = m.Site.objects.filter(pk__in=sites)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        obj._history_user = request.user
        if change:
            obj._change_reason = form.cleaned_data.get(REASON_FIELD, "").strip()
            if not form.has_changed():
                return
        super().save_model(request, obj, form, change)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> Any:
        if request.method == "POST" and not request.POST.get(REASON_FIELD, "").strip():
            messages.error(request, "A reason is required to delete a record.")
            return HttpResponseRedirect(request.path)
        request._hepatrial_reason = request.POST.get(REASON_FIELD, "").strip()  # type: ignore[attr-defined]
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        obj.delete(reason=getattr(request, "_hepatrial_reason", ""), user=request.user)

    def history_form_view(
        self, request: HttpRequest, object_id: str, version_id: str, extra_context: Any = None
    ) -> Any:
        # simple_history looks the version up without get_queryset: check the site here
        if (
            not request.user.is_superuser
            and not self.get_queryset(request).filter(pk=object_id).exists()
        ):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        return super().history_form_view(request, object_id, version_id, extra_context)

    def history_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> Any:
        # only objects the user may see (get_object goes through get_queryset)
        if self.get_object(request, object_id) is None and not request.user.is_superuser:
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        return super().history_view(request, object_id, extra_context)


@admin.register(m.Participant)
class ParticipantAdmin(AuditedAdmin):
    site_path = "site"
    list_display = ["study_id", "site", "arm", "sex", "etiology", "status", "enrolment_date"]
    list_filter = ["site", "status", "etiology"]
    search_fields = ["study_id"]
    readonly_fields = ["arm", "enrolment_date", "status", "status_date", "status_reason"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:  # a new participant is screened on its screening date
            obj.status = m.ParticipantStatus.SCREENED
            obj.status_date = obj.screening_date
            obj.status_reason = "screened"
        super().save_model(request, obj, form, change)


@admin.register(m.Visit)
class VisitAdmin(AuditedAdmin):
    list_display = ["participant", "code", "nominal_day", "scheduled_date", "actual_date", "status"]
    list_filter = ["code", "status"]
    search_fields = ["participant__study_id"]
    readonly_fields = ["participant", "code", "nominal_day", "window_lower", "window_upper",
                       "status"]  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # visits are scheduled by enrolment

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """A new actual date goes through ``services.record_visit`` (window status, deviation)."""
        from hepatrial.trials import services

        if change and "actual_date" in form.changed_data and obj.actual_date is not None:
            reason = form.cleaned_data.get(REASON_FIELD, "").strip()
            new_date = obj.actual_date
            fresh = m.Visit.objects.get(pk=obj.pk)
            services.record_visit(
                participant=fresh.participant,
                visit_code=fresh.code,
                actual_date=new_date,
                reason=reason,
                user=request.user,
            )
            other = [f for f in form.changed_data if f not in ("actual_date", REASON_FIELD)]
            if other:
                fresh.refresh_from_db()
                for f in other:
                    setattr(fresh, f, getattr(obj, f))
                fresh.save(reason=reason, user=request.user)
            obj.refresh_from_db()
            return
        super().save_model(request, obj, form, change)


class LabResultForm(ReasonForm):
    """Refuses unknown units and implausible values with the registry's message."""

    def clean(self) -> dict[str, Any]:
        from hepatrial.trials import services

        data = super().clean()
        analyte = data.get("analyte") or self.instance.analyte
        value, unit = data.get("value_as_entered"), data.get("unit_as_entered")
        if analyte and value is not None and unit is not None:
            try:
                services.canonical_lab(analyte, value, unit, "lab result")
            except services.StoreError as exc:
                raise forms.ValidationError(str(exc)) from None
        return data


@admin.register(m.LabResult)
class LabResultAdmin(AuditedAdmin):
    form = LabResultForm
    list_display = ["participant", "visit", "analyte", "value_as_entered", "unit_as_entered",
                    "value", "unit"]  # fmt: skip
    list_filter = ["analyte"]
    search_fields = ["participant__study_id"]
    readonly_fields = ["value", "unit", "loinc"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Values go through the services so they are converted to the canonical unit."""
        from hepatrial.trials import services

        if not change:
            new = services.record_lab(
                participant=obj.participant,
                visit_code=obj.visit,
                analyte=obj.analyte,
                value=obj.value_as_entered,
                unit=obj.unit_as_entered,
                laboratory=obj.laboratory,
                specimen_date=obj.specimen_date,
                user=request.user,
            )
            obj.pk = new.pk
            obj.refresh_from_db()
            return
        if not form.has_changed():
            return
        fresh = m.LabResult.objects.get(pk=obj.pk)
        changes: dict[str, Any] = {}
        if {"value_as_entered", "unit_as_entered"} & set(form.changed_data):
            changes["value"] = obj.value_as_entered
            changes["unit"] = obj.unit_as_entered
        if "laboratory" in form.changed_data:
            changes["laboratory"] = obj.laboratory
        if "specimen_date" in form.changed_data:
            changes["specimen_date"] = obj.specimen_date
        services.update_lab(
            fresh,
            reason=form.cleaned_data.get(REASON_FIELD, ""),
            user=request.user,
            **changes,
        )
        obj.refresh_from_db()

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        ro = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            ro += ["participant", "visit", "analyte"]
        return ro


@admin.register(m.ClinicalAssessment)
class ClinicalAssessmentAdmin(AuditedAdmin):
    list_display = ["participant", "visit", "ascites", "encephalopathy", "weight_kg", "edema",
                    "histologic_stage"]


@admin.register(m.Consent)
class ConsentAdmin(AuditedAdmin):
    list_display = ["participant", "version", "date"]


@admin.register(m.EligibilityAssessment)
class EligibilityAssessmentAdmin(AuditedAdmin):
    list_display = ["participant", "assessed_on", "eligible", "protocol_version"]
    readonly_fields = ["eligible", "criteria", "screening_data", "protocol_version"]


@admin.register(m.ProtocolDeviation)
class ProtocolDeviationAdmin(AuditedAdmin):
    list_display = ["participant", "visit", "category", "date", "major", "detected_by"]
    list_filter = ["category", "major"]
    readonly_fields = ["detected_by"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            obj.detected_by = request.user.get_username()
        super().save_model(request, obj, form, change)


class AdministrationForm(ReasonForm):
    """Checks route, dose and chain of identity like ``services.record_administration``."""

    def clean(self) -> dict[str, Any]:
        from hepatrial.trials import services

        data = super().clean()
        needed = ("participant", "route", "cells_total", "date", "batch_id")
        if self.instance.pk is None and all(data.get(k) is not None for k in needed):
            try:
                services.check_administration(**{k: data[k] for k in needed})
            except services.StoreError as exc:
                raise forms.ValidationError(str(exc)) from None
        return data


@admin.register(m.Administration)
class AdministrationAdmin(AuditedAdmin):
    form = AdministrationForm
    list_display = ["participant", "date", "route", "cells_total", "cells_per_kg", "batch_id"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """A new administration goes through the service (route, dose, chain of identity)."""
        from hepatrial.trials import services

        if change:
            return super().save_model(request, obj, form, change)
        new = services.record_administration(
            participant=obj.participant,
            route=obj.route,
            cells_total=obj.cells_total,
            volume_ml=obj.volume_ml,
            date=obj.date,
            operator=obj.operator,
            batch_id=obj.batch_id,
            cells_per_kg=obj.cells_per_kg,
            user=request.user,
        )
        obj.pk = new.pk
        obj.refresh_from_db()
        return None


@admin.register(m.AdverseEvent)
class AdverseEventAdmin(AuditedAdmin):
    list_display = ["participant", "term", "grade", "serious", "relatedness", "onset_date"]
    list_filter = ["grade", "serious", "relatedness"]


@admin.register(m.CellProductBatch)
class CellProductBatchAdmin(AuditedAdmin):
    list_display = ["batch_id", "participant", "released", "release_date"]


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


class SuperuserOnly(AuditedAdmin):
    """Visible to superusers only."""

    site_path = None

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)


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
    21 CFR 11.100: identities are never reused)."""

    form = AuditedUserChangeForm
    fieldsets = (*_BaseUserAdmin.fieldsets, ("Audit", {"fields": ("change_reason",)}))

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
