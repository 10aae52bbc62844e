# ruff: noqa: RUF012
"""Admin of participants, consent and eligibility assessments.

Thin: every add and change goes through :mod:`hepatrial.trials.services.participants`
(``screen_participant``/``update_participant``, ``record_consent``/``update_consent``,
``assess_eligibility``); the forms run the same services' ``check_*`` first, so a refused value
is shown on its field with the record, the field and the reason. Screening data is typed by the
protocol's eligibility inputs (booleans true/false, labs ``{"value": .., "unit": ..}``). An
eligibility assessment is only made by evaluating the protocol and is never edited.
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

_PARTICIPANT_FIELDS = ("site", "sex", "year_of_birth", "etiology", "screening_date",
                       "screening_data")


def _reason(form: Any) -> str:
    return (form.cleaned_data.get(REASON_FIELD) or "").strip()


def screening_help() -> str:
    """What the screening-data box takes: the protocol's entered eligibility inputs by kind."""
    from hepatrial.errors import StoreError
    from hepatrial.trials.services.protocol import active_protocol

    try:
        proto = active_protocol()
    except StoreError:  # no protocol installed yet: the service will say so on save
        return ""
    parts = []
    for i in proto.entered_inputs:
        if i.kind == "number" and i.analyte is not None:
            parts.append(f'"{i.name}": {{"value": …, "unit": "{i.unit}"}}')
        elif i.kind == "boolean":
            parts.append(f'"{i.name}": true/false')
        elif i.kind == "choice":
            parts.append(f'"{i.name}": one of {", ".join(i.choices)}')
        elif i.kind == "date":
            parts.append(f'"{i.name}": "YYYY-MM-DD"')
        else:
            parts.append(f'"{i.name}": number ({i.unit})')
    return ("JSON object of the protocol's eligibility inputs (labs with their unit, any unit "
            "the analyte registry accepts): " + "; ".join(parts))


class ParticipantForm(ReasonForm):
    """Screening record: validated as ``services.check_participant(_change)`` does."""

    first_entry_free = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "screening_data" in self.fields:
            self.fields["screening_data"].help_text = screening_help()

    def check_rules(self, data: dict[str, Any]) -> None:
        from hepatrial.trials.services import participants as svc

        if self.instance.pk is None:
            svc.check_participant(
                study_id=data.get("study_id") or "",
                screening_data=data.get("screening_data") or {},
                **{k: data.get(k) for k in _PARTICIPANT_FIELDS if k != "screening_data"},
            )
        else:
            changes = {k: v for k, v in self.changed_values(data).items()
                       if k in _PARTICIPANT_FIELDS}
            fresh = m.Participant.objects.get(pk=self.instance.pk)
            svc.check_participant_change(fresh, changes)


@admin.register(m.Participant)
class ParticipantAdmin(AuditedAdmin):
    write_action = "enter_data"
    form = ParticipantForm
    site_path = "site"
    list_display = ["study_id", "site", "arm", "sex", "etiology", "status", "enrolment_date"]
    list_filter = ["site", "status", "etiology"]
    search_fields = ["study_id"]
    readonly_fields = ["arm", "enrolment_date", "status", "status_date", "status_reason"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        ro = list(super().get_readonly_fields(request, obj))
        return [*ro, "study_id"] if obj is not None else ro

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """A new participant is screened by ``services.screen_participant``; a correction goes
        through ``services.update_participant``."""
        from hepatrial.trials.services import participants as svc

        if not change:
            new = svc.screen_participant(
                study_id=obj.study_id, site=obj.site, sex=obj.sex,
                year_of_birth=obj.year_of_birth, etiology=obj.etiology,
                screening_date=obj.screening_date, screening_data=obj.screening_data or {},
                user=request.user,
            )
            obj.pk = new.pk
            obj.refresh_from_db()
            return
        changes = {k: getattr(obj, k) for k in form.changed_data if k in _PARTICIPANT_FIELDS}
        if changes:
            fresh = m.Participant.objects.get(pk=obj.pk)
            svc.update_participant(fresh, reason=_reason(form) or None, user=request.user,
                                   **changes)
        obj.refresh_from_db()


class ConsentForm(ReasonForm):
    """Consent: validated as ``services.check_consent`` does."""

    first_entry_free = True

    def check_rules(self, data: dict[str, Any]) -> None:
        from hepatrial.trials.services import participants as svc

        participant = data.get("participant") or self.instance.participant
        svc.check_consent(participant=participant, version=data.get("version"),
                          date=data.get("date"))


@admin.register(m.Consent)
class ConsentAdmin(AuditedAdmin):
    write_action = "enter_data"
    form = ConsentForm
    list_display = ["participant", "version", "date"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        ro = list(super().get_readonly_fields(request, obj))
        return [*ro, "participant"] if obj is not None else ro

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """``services.record_consent`` (add) / ``services.update_consent`` (change)."""
        from hepatrial.trials.services import participants as svc

        if not change:
            new = svc.record_consent(participant=obj.participant, version=obj.version,
                                     date=obj.date, user=request.user)
            obj.pk = new.pk
        else:
            fresh = m.Consent.objects.get(pk=obj.pk)
            changes = {k: getattr(obj, k) for k in form.changed_data if k in ("version", "date")}
            svc.update_consent(fresh, reason=_reason(form) or None, user=request.user,
                               **changes)
        obj.refresh_from_db()


class EligibilityAssessmentForm(ReasonForm):
    """Adding an assessment = evaluating the protocol on the participant's screening data
    (``services.assess_eligibility``); only the participant and the date are asked."""

    class Meta:
        model = m.EligibilityAssessment
        fields = ["participant", "assessed_on"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "assessed_on" in self.fields:
            self.fields["assessed_on"].required = False
            self.fields["assessed_on"].help_text = "empty: the screening date"

    def check_rules(self, data: dict[str, Any]) -> None:
        from hepatrial.trials.services import participants as svc

        if data.get("participant") is not None:
            svc.check_eligibility(participant=data["participant"],
                                  assessed_on=data.get("assessed_on"))


@admin.register(m.EligibilityAssessment)
class EligibilityAssessmentAdmin(AuditedAdmin):
    write_action = "enter_data"
    form = EligibilityAssessmentForm
    list_display = ["participant", "assessed_on", "eligible", "protocol_version"]
    readonly_fields = ["eligible", "criteria", "screening_data", "protocol_version"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return ["participant", "assessed_on"]
        return ["participant", "assessed_on", *self.readonly_fields]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # an assessment is never edited nor re-filed (assess again instead)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Evaluate the protocol: ``services.assess_eligibility``."""
        from hepatrial.trials.services import participants as svc

        if change:  # not offered (view only); the model refuses any change
            obj.save(user=request.user, reason=_reason(form) or "admin change")
        new = svc.assess_eligibility(participant=obj.participant, assessed_on=obj.assessed_on,
                                     user=request.user)
        obj.pk = new.pk
        obj.refresh_from_db()
