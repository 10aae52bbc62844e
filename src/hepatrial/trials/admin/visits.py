# ruff: noqa: RUF012
"""Admin of visits, lab results, clinical assessments and protocol deviations.

Thin: every add and change goes through :mod:`hepatrial.trials.services` (``record_visit``,
``update_visit``, ``record_lab``/``update_lab``, ``record_clinical``/``update_clinical``,
``record_deviation``/``update_deviation``); each form runs the same services' ``check_*``
first, so a refused value is shown on its field with the record, the field and the reason.
The first entry of a value (e.g. a visit's actual date) needs no reason for change; every later
change does.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from hepatrial.trials import models as m
from hepatrial.trials.admin.base import (
    REASON_FIELD,
    AuditedAdmin,
    ReasonForm,
)

_LAB_FIELDS = {"value_as_entered": "value", "unit_as_entered": "unit",
               "laboratory": "laboratory", "specimen_date": "specimen_date"}
_CLINICAL_FIELDS = ("ascites", "encephalopathy", "dialysis_last_week", "weight_kg",
                    "ascites_present", "hepatomegaly", "spider_angiomata", "edema",
                    "histologic_stage")


def _reason(form: Any) -> str | None:
    return (form.cleaned_data.get(REASON_FIELD) or "").strip() or None


class VisitForm(ReasonForm):
    """A visit's actual date (``services.check_visit_date``), label and scheduled date."""

    first_entry_free = True

    def reason_needed(self, data: dict[str, Any]) -> bool:
        if "actual_date" in self.changed_data and self.instance.status in ("missed", "not_done"):
            return True  # a visit marked not done: recording a date changes its status
        return super().reason_needed(data)

    def check_rules(self, data: dict[str, Any]) -> None:
        from hepatrial.trials.services import visits as svc
        from hepatrial.trials.validators import Problem, RuleViolation

        v = self.instance
        changed = self.changed_values(data)
        if "actual_date" in changed:
            if changed["actual_date"] is None:
                raise RuleViolation([Problem(
                    f"participant {v.participant} visit {v.code}", "actual_date",
                    "a recorded visit date cannot be cleared: correct it, or mark the visit "
                    "missed or not done")])
            svc.check_visit_date(participant=v.participant, visit_code=v.code,
                                 actual_date=changed["actual_date"])
        other = {k: x for k, x in changed.items() if k in ("label", "scheduled_date")}
        if other:
            svc.check_visit_change(v, other)


@admin.register(m.Visit)
class VisitAdmin(AuditedAdmin):
    write_action = "enter_data"
    form = VisitForm
    list_display = ["participant", "code", "nominal_day", "scheduled_date", "actual_date", "status"]
    list_filter = ["code", "status"]
    search_fields = ["participant__study_id"]
    readonly_fields = ["participant", "code", "nominal_day", "window_lower", "window_upper",
                       "status"]  # fmt: skip

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # visits are scheduled by enrolment

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """A new or corrected actual date goes through ``services.record_visit`` (window
        status, deviation); label and scheduled date through ``services.update_visit``."""
        from hepatrial.trials.services import visits as svc

        reason = _reason(form)
        fresh = m.Visit.objects.get(pk=obj.pk)
        if "actual_date" in form.changed_data:
            svc.record_visit(participant=fresh.participant, visit_code=fresh.code,
                             actual_date=obj.actual_date, reason=reason, user=request.user)
            fresh.refresh_from_db()
        other = {f: getattr(obj, f) for f in form.changed_data if f in ("label", "scheduled_date")}
        if other:
            svc.update_visit(fresh, reason=reason, user=request.user, **other)
        obj.refresh_from_db()


class LabResultForm(ReasonForm):
    """Lab values as ``services.check_lab`` judges them (unit, hard limits, visit done, ...)."""

    first_entry_free = True
    rule_fields = {"value": "value_as_entered", "unit": "unit_as_entered"}

    def check_rules(self, data: dict[str, Any]) -> None:
        from hepatrial.trials.services import measurements as svc

        lab = self.instance if self.instance.pk is not None else None
        if lab is None:
            if data.get("participant") is None or data.get("visit") is None:
                return
            svc.check_lab(
                participant=data["participant"], visit_code=data["visit"],
                analyte=data.get("analyte") or "", value=data.get("value_as_entered"),
                unit=data.get("unit_as_entered") or "", specimen_date=data.get("specimen_date"),
            )
            return
        fresh = m.LabResult.objects.get(pk=lab.pk)
        get = lambda f, cur: data[f] if f in self.changed_data else cur  # noqa: E731
        svc.check_lab(
            participant=fresh.participant, visit_code=fresh.visit, analyte=fresh.analyte,
            value=get("value_as_entered", fresh.value_as_entered),
            unit=get("unit_as_entered", fresh.unit_as_entered),
            specimen_date=get("specimen_date", fresh.specimen_date), lab=fresh,
        )


@admin.register(m.LabResult)
class LabResultAdmin(AuditedAdmin):
    write_action = "enter_data"
    form = LabResultForm
    list_display = ["participant", "visit", "analyte", "value_as_entered", "unit_as_entered",
                    "value", "unit"]  # fmt: skip
    list_filter = ["analyte"]
    search_fields = ["participant__study_id"]
    readonly_fields = ["value", "unit", "loinc"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Values go through the services so they are converted to the canonical unit."""
        from hepatrial.trials.services import measurements as svc

        if not change:
            new = svc.record_lab(
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
        changes = {_LAB_FIELDS[f]: getattr(obj, f) for f in form.changed_data if f in _LAB_FIELDS}
        if changes:
            fresh = m.LabResult.objects.get(pk=obj.pk)
            svc.update_lab(fresh, reason=_reason(form), user=request.user, **changes)
        obj.refresh_from_db()

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        ro = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            ro += ["participant", "visit", "analyte"]
        return ro


class ClinicalAssessmentForm(ReasonForm):
    """Bedside items as ``services.check_clinical`` judges them (weight range, visit done)."""

    first_entry_free = True

    def check_rules(self, data: dict[str, Any]) -> None:
        from hepatrial.trials.services import measurements as svc

        values = {k: data.get(k) for k in _CLINICAL_FIELDS if k in self.fields}
        if self.instance.pk is None:
            if data.get("participant") is None or data.get("visit") is None:
                return
            svc.check_clinical(participant=data["participant"], visit_code=data["visit"],
                               values=values)
            return
        fresh = m.ClinicalAssessment.objects.get(pk=self.instance.pk)
        svc.check_clinical(participant=fresh.participant, visit_code=fresh.visit,
                           values=values, assessment=fresh)


@admin.register(m.ClinicalAssessment)
class ClinicalAssessmentAdmin(AuditedAdmin):
    write_action = "enter_data"
    form = ClinicalAssessmentForm
    list_display = [
        "participant",
        "visit",
        "ascites",
        "encephalopathy",
        "weight_kg",
        "edema",
        "histologic_stage",
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        ro = list(super().get_readonly_fields(request, obj))
        return [*ro, "participant", "visit"] if obj is not None else ro

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """``services.record_clinical`` (add) / ``services.update_clinical`` (change)."""
        from hepatrial.trials.services import measurements as svc

        values = {k: getattr(obj, k) for k in _CLINICAL_FIELDS}
        if not change:
            new = svc.record_clinical(participant=obj.participant, visit_code=obj.visit,
                                      user=request.user, **values)
            obj.pk = new.pk
        else:
            changes = {k: values[k] for k in form.changed_data if k in _CLINICAL_FIELDS}
            if changes:
                fresh = m.ClinicalAssessment.objects.get(pk=obj.pk)
                svc.update_clinical(fresh, reason=_reason(form), user=request.user, **changes)
        obj.refresh_from_db()


class ProtocolDeviationForm(ReasonForm):
    """A deviation as ``services.check_deviation`` judges it."""

    def check_rules(self, data: dict[str, Any]) -> None:
        from hepatrial.trials.services import visits as svc

        participant = data.get("participant") or getattr(self.instance, "participant", None)
        if participant is None:
            return
        svc.check_deviation(participant=participant, category=data.get("category"),
                            description=data.get("description"), date=data.get("date"))


@admin.register(m.ProtocolDeviation)
class ProtocolDeviationAdmin(AuditedAdmin):
    write_action = "enter_data"
    form = ProtocolDeviationForm
    list_display = ["participant", "visit", "category", "date", "major", "detected_by"]
    list_filter = ["category", "major"]
    readonly_fields = ["detected_by"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        ro = list(super().get_readonly_fields(request, obj))
        return [*ro, "participant", "visit"] if obj is not None else ro

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """``services.record_deviation`` (add; detected by the user) / ``update_deviation``."""
        from hepatrial.trials.services import visits as svc

        if not change:
            new = svc.record_deviation(
                participant=obj.participant, category=obj.category,
                description=obj.description, date=obj.date,
                visit_code=obj.visit.code if obj.visit_id else None, major=obj.major,
                user=request.user,
            )
            obj.pk = new.pk
        else:
            changes = {k: getattr(obj, k) for k in form.changed_data
                       if k in ("category", "description", "date", "major")}
            if changes:
                fresh = m.ProtocolDeviation.objects.get(pk=obj.pk)
                svc.update_deviation(fresh, reason=_reason(form) or "", user=request.user,
                                     **changes)
        obj.refresh_from_db()
