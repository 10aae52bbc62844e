# ruff: noqa: RUF012
"""Admin of the safety records.

Adverse events: thin — the form's ``check_rules`` runs ``services.check_adverse_event`` (the
one validator; the base form shows every problem on its field); ``save_model`` calls
``record_adverse_event`` (add) or ``update_adverse_event`` (change), so the CTCAE coding, the
grade-5/death rule, the participant's death status, the stopping rules and the notifications
are the services'. The first entry of a value needs no reason for change; every later change
does. The CTCAE definition of the grade for the term, the MedDRA code, the SOC and the
expectedness are shown (read-only) once stored.

The signed records (SAE reports and assessments, DSMB decisions) need the signer's password:
they are made with the CLI (``hepatrial sae …``, ``hepatrial safety resume``) and only shown
here, as are the notifications, the stopping-rule states and the lab-derived proposals.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from hepatrial import vocab
from hepatrial.trials import models as m
from hepatrial.trials.admin.base import REASON_FIELD, AuditedAdmin, ReasonForm
from hepatrial.trials.admin.product import field_value
from hepatrial.trials.models import safety as sm

#: entered fields of the form (the validator's names)
_FIELDS = (
    "term", "specify", "grade", "serious", "seriousness_criteria", "relatedness_product",
    "relatedness_procedure", "procedure", "onset_date", "resolution_date", "outcome",
    "action_taken", "aware_local", "aware_time_zone",
)  # fmt: skip
_DERIVED = ("meddra_code", "soc", "grade_definition", "relatedness", "expectedness_product",
            "expectedness_procedure", "rsi_version", "aware_at")  # fmt: skip


class AdverseEventForm(ReasonForm):
    """Runs the adverse-event rules (CTCAE coding, grade 5 fatal and serious, dates, causality,
    seriousness, awareness) on add and change."""

    first_entry_free = True
    rule_fields = {"aware_at": "aware_local", "aware_fold": "aware_fold"}

    seriousness_criteria = forms.MultipleChoiceField(
        choices=vocab.SERIOUSNESS_CRITERIA, required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="ICH E2A: an event is serious exactly when it meets one of these.",
    )  # fmt: skip
    aware_local = forms.CharField(
        label="Site became aware", required=False, max_length=40,
        help_text="Date and time the site learnt of the event, YYYY-MM-DD HH:MM (wall clock in "
        "the time zone below; needed for a serious event: the 24-hour clock starts here).",
    )  # fmt: skip
    aware_time_zone = forms.CharField(
        label="Time zone", required=False, max_length=64,
        help_text="IANA time zone of the awareness time (empty: the trial's).",
    )  # fmt: skip
    aware_fold = forms.ChoiceField(
        label="Repeated hour", required=False, choices=[("", "-"), ("0", "first"),
                                                        ("1", "second")],
        help_text="Only for a time that happened twice when clocks went back.",
    )  # fmt: skip

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "term" in self.fields:
            self.fields["term"].help_text = (
                "CTCAE v5.0 term (e.g. Fever, Portal vein thrombosis) or '<SOC> - Other, "
                "specify' with the event's name in Specify; `hepatrial ae terms TEXT` lists "
                "them.")

    def values(self) -> dict[str, Any]:
        """The entered values as the service takes them."""
        out = {k: field_value(self, k) for k in _FIELDS}
        out["seriousness_criteria"] = list(out.get("seriousness_criteria") or [])
        out["aware_fold"] = self.cleaned_data.get("aware_fold") or None
        return out

    def check_rules(self, data: dict[str, Any]) -> None:
        """``services.check_adverse_event`` on the values to be written."""
        from hepatrial.trials.services import safety

        if field_value(self, "participant") is None:
            return
        stored = self.instance if self.instance.pk is not None else None
        safety.check_adverse_event(participant=field_value(self, "participant"),
                                   adverse_event=stored, **self.values())


@admin.register(m.AdverseEvent)
class AdverseEventAdmin(AuditedAdmin):
    write_action = "enter_data"  # as the services: the admin role (superuser) enters no data
    form = AdverseEventForm
    fields = ["participant", *_FIELDS, "aware_fold"]
    list_display = ["participant", "term", "grade", "serious", "relatedness_product",
                    "relatedness_procedure", "onset_date", "outcome"]  # fmt: skip
    list_filter = ["grade", "serious", "outcome"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["participant", *_DERIVED] if obj is not None else []

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = [f for f in super().get_fields(request, obj) if f not in _DERIVED]
        if obj is not None:
            fields = [*fields[:-1], *_DERIVED, fields[-1]]  # the reason stays last
        return fields

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Add: ``services.record_adverse_event``; change: ``services.update_adverse_event``."""
        from hepatrial.trials.services import safety

        values = form.values()
        if change:
            changed = set(form.changed_data)
            changes = {k: values[k] for k in _FIELDS if k in changed}
            if changed & {"aware_local", "aware_time_zone", "aware_fold"}:
                changes.update(aware_local=values["aware_local"],
                               aware_time_zone=values["aware_time_zone"],
                               aware_fold=values["aware_fold"])
            if changes:
                safety.update_adverse_event(obj.pk, reason=form.cleaned_data.get(
                    REASON_FIELD) or None, user=request.user, **changes)
        else:
            new = safety.record_adverse_event(participant=obj.participant, user=request.user,
                                              **values)
            obj.pk = new.pk
        obj.refresh_from_db()


class _ShownOnly(AuditedAdmin):
    """Read-only: these records are written by the services (signed ones need the password)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(sm.SAEReport)
class SAEReportAdmin(_ShownOnly):
    site_path = "adverse_event__participant__site"
    list_display = ["adverse_event", "kind", "submitted_at", "deadline", "on_time", "final",
                    "printed_name"]  # fmt: skip
    list_filter = ["kind", "on_time"]


@admin.register(sm.SAEAssessment)
class SAEAssessmentAdmin(_ShownOnly):
    site_path = "adverse_event__participant__site"
    list_display = ["adverse_event", "assessor", "relatedness_product", "relatedness_procedure",
                    "expectedness", "susar", "printed_name", "signed_at"]  # fmt: skip


@admin.register(sm.DSMBDecision)
class DSMBDecisionAdmin(_ShownOnly):
    site_path = None
    list_display = ["rule_id", "decision", "printed_name", "signed_at"]


@admin.register(sm.StoppingRuleState)
class StoppingRuleStateAdmin(_ShownOnly):
    site_path = None
    list_display = ["rule_id", "kind", "paused", "since", "resumed_by"]


@admin.register(sm.SafetyNotification)
class SafetyNotificationAdmin(_ShownOnly):
    site_path = None
    list_display = ["key", "event", "status", "sent_at", "subject"]
    list_filter = ["event", "status"]


@admin.register(sm.LabAEProposal)
class LabAEProposalAdmin(_ShownOnly):
    list_display = ["participant", "term", "grade", "baseline_grade", "visit_code", "status"]
    list_filter = ["status", "analyte"]
