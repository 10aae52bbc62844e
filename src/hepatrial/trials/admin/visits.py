# ruff: noqa: RUF012
"""Admin of visits, lab results, clinical assessments and protocol deviations."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from hepatrial.trials import models as m
from hepatrial.trials.admin.base import (
    REASON_FIELD,
    AuditedAdmin,
    ReasonForm,
)


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
    list_display = [
        "participant",
        "visit",
        "ascites",
        "encephalopathy",
        "weight_kg",
        "edema",
        "histologic_stage",
    ]


@admin.register(m.ProtocolDeviation)
class ProtocolDeviationAdmin(AuditedAdmin):
    list_display = ["participant", "visit", "category", "date", "major", "detected_by"]
    list_filter = ["category", "major"]
    readonly_fields = ["detected_by"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            obj.detected_by = request.user.get_username()
        super().save_model(request, obj, form, change)
