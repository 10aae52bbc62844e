# ruff: noqa: RUF012
"""Admin of the cell product: administrations and QC results (written through the product
service), and read-only pages of harvests, batches and the chain of custody.

Who may see and write a page is the store's role matrix (as in the services): every role
sees them for its sites, administrations are written by coordinators and investigators
(``administer_product``), QC results by QA and data managers (``manage_product``). Thin: each
form's :meth:`~hepatrial.trials.admin.base.ReasonForm.check_rules` runs the
service's ``check_*`` (the record's one validator — for an administration, the dosing gate:
every unmet condition is shown); each ``save_model`` (add and change) calls the service that
writes. The lifecycle steps of a batch (receipt, manufacture, release with an e-signature,
dispatch, bedside receipt, quarantine, ...) are taken through the product service (the CLI
``hepatrial product ...`` and the eCRF); the admin shows them and never changes them, and a
custody event is never changed by anyone.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from hepatrial.trials.admin.base import REASON_FIELD, AuditedAdmin, ReasonForm
from hepatrial.trials.models import product as pm


class RoleAdmin(AuditedAdmin):
    """Who may see and write these pages follows the store's role matrix
    (:mod:`hepatrial.trials.services.permissions`), as the service it calls does: every role
    sees them (its sites' participants only), :attr:`write_action` writes them."""

    write_action: str | None = None

    def _role_may(self, request: HttpRequest, action: str | None) -> bool:
        from hepatrial.trials.services.permissions import allowed, role_of

        if action is None or not request.user.is_active:
            return False
        return allowed(action, role_of(request.user))

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self._role_may(request, "view")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._role_may(request, "view")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self._role_may(request, self.write_action)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self._role_may(request, self.write_action)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


_ADMIN_VALUES = ("route", "cells_total", "cells_per_kg", "volume_ml", "administered_at",
                 "operator", "dose_override_reason")


def field_value(form: forms.ModelForm, name: str) -> Any:
    """The cleaned value of a field, or the stored one for a field not on the form."""
    if name in form.cleaned_data:
        return form.cleaned_data[name]
    return getattr(form.instance, name, None)


class AdministrationForm(ReasonForm):
    """The dosing gate on add and on change: the batch and the label's chain-of-identity id
    as scanned, and the two patient identifiers checked at the bedside."""

    batch_id = forms.CharField(label="Batch id", max_length=60,
                               help_text="The batch received at the bedside for this participant.")
    scanned_coi = forms.CharField(label="Scanned chain-of-identity id", max_length=40,
                                  help_text="Scan the label (SITE-YYYYMMDD-NNN-XXXXX-C).")
    id_study_id = forms.CharField(label="Identifier checked: study id", max_length=40)
    id_year_of_birth = forms.CharField(label="Identifier checked: year of birth", max_length=4)

    first_entry_free = True
    rule_fields = {"identifiers": "id_study_id", "patient_identifiers": "id_study_id",
                   "coi_scanned": "scanned_coi", "batch_exists": "batch_id",
                   "batch_belongs": "batch_id", "batch_released": "batch_id",
                   "state": "batch_id", "within_shelf_life": "administered_at",
                   "transport_temperature": "batch_id", "route_allowed": "route",
                   "dose_in_range": "cells_total", "weight_recorded": "cells_total",
                   "participant_enrolled": "participant", "participant_eligible": "participant"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        a = self.instance
        if a.pk is not None:
            self.initial["batch_id"] = a.batch_id
            self.initial["scanned_coi"] = a.scanned_coi or ""
            ids = a.identifiers_checked or {}
            self.initial["id_study_id"] = ids.get("study_id", "")
            self.initial["id_year_of_birth"] = ids.get("year_of_birth", "")
            self.fields["batch_id"].disabled = True

    def identifiers(self) -> dict[str, str]:
        """The patient identifiers typed on the form."""
        d = self.cleaned_data
        return {"study_id": d.get("id_study_id", ""), "year_of_birth": d.get("id_year_of_birth",
                                                                              "")}

    def check_rules(self, data: dict[str, Any]) -> None:
        """``services.check_administration`` (the dosing gate) on the values to be written."""
        from hepatrial.trials import services

        p = field_value(self, "participant")
        if p is None:
            return
        services.check_administration(
            participant=p, batch_id=data.get("batch_id"), scanned_coi=data.get("scanned_coi"),
            identifiers=self.identifiers(),
            administration=self.instance if self.instance.pk is not None else None,
            **{k: field_value(self, k) for k in _ADMIN_VALUES},
        )


@admin.register(pm.Administration)
class AdministrationAdmin(RoleAdmin):
    form = AdministrationForm
    write_action = "administer_product"
    fields = ["participant", "batch_id", "scanned_coi", "id_study_id", "id_year_of_birth",
              "route", "cells_total", "cells_per_kg", "volume_ml", "administered_at",
              "operator", "dose_override_reason"]  # fmt: skip
    list_display = ["participant", "date", "route", "cells_total", "cells_per_kg", "batch_id"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["participant"] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Add: ``services.record_administration``; change: ``services.update_administration``
        (both: the dosing gate)."""
        from hepatrial.trials import services

        data = form.cleaned_data
        if change:
            changes = {k: data[k] for k in form.changed_data if k in _ADMIN_VALUES}
            if {"scanned_coi"} & set(form.changed_data):
                changes["scanned_coi"] = data["scanned_coi"]
            if {"id_study_id", "id_year_of_birth"} & set(form.changed_data):
                changes["identifiers"] = form.identifiers()
            if changes:
                stored = pm.Administration.objects.get(pk=obj.pk)
                services.update_administration(
                    stored, reason=data.get(REASON_FIELD) or None, user=request.user, **changes
                )
        else:
            new = services.record_administration(
                participant=obj.participant, batch_id=data["batch_id"],
                scanned_coi=data["scanned_coi"], identifiers=form.identifiers(),
                user=request.user, **{k: data.get(k) for k in _ADMIN_VALUES},
            )  # fmt: skip
            obj.pk = new.pk
        obj.refresh_from_db()


class QcResultForm(ReasonForm):
    """A QC result typed as entered (``result``: the text on the lab sheet), judged by the
    product service's QC rules."""

    batch_ref = forms.CharField(label="Batch id", max_length=60)
    result = forms.CharField(label="Result", max_length=100,
                             help_text="As on the lab report: a number in the test's unit, or "
                             "the qualitative result (e.g. negative, no growth).")

    first_entry_free = True
    rule_fields = {"batch": "batch_ref"}

    class Meta:
        model = pm.QcResult
        fields = ["test", "unit", "analyst", "tested_on", "method"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        q = self.instance
        if q.pk is not None:
            self.initial["batch_ref"] = q.batch_id and q.batch.batch_id
            self.initial["result"] = q.value_as_entered
            for name in ("batch_ref", "test"):  # not on the form of a read-only page
                if name in self.fields:
                    self.fields[name].disabled = True

    def check_rules(self, data: dict[str, Any]) -> None:
        """``services.check_qc_result`` on the values to be written."""
        from hepatrial.trials import services

        services.check_qc_result(
            data.get("batch_ref"), test=data.get("test"), result=data.get("result"),
            unit=data.get("unit") or None, analyst=data.get("analyst"),
            tested_on=data.get("tested_on"), method=data.get("method") or "",
        )


@admin.register(pm.QcResult)
class QcResultAdmin(RoleAdmin):
    form = QcResultForm
    write_action = "manage_product"
    fields = ["batch_ref", "test", "result", "unit", "analyst", "tested_on", "method"]
    list_display = ["batch", "test", "value_as_entered", "unit", "analyst", "tested_on", "source"]

    # the form's own fields, shown on the read-only page of a role that may not write
    @admin.display(description="Batch id")
    def batch_ref(self, obj: Any) -> str:
        return str(obj.batch.batch_id) if obj.batch_id else ""

    @admin.display(description="Result")
    def result(self, obj: Any) -> str:
        return str(obj.value_as_entered)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """Add and change: ``services.record_qc_result``."""
        from hepatrial.trials import services

        d = form.cleaned_data
        q = services.record_qc_result(
            d["batch_ref"], test=d["test"], result=d["result"], unit=d.get("unit") or None,
            analyst=d["analyst"], tested_on=d["tested_on"], method=d.get("method") or "",
            reason=d.get(REASON_FIELD) or None, user=request.user,
        )  # fmt: skip
        obj.pk = q.pk
        obj.refresh_from_db()


class ReadOnlyAdmin(RoleAdmin):
    """Shown, never written here (the lifecycle goes through the product service)."""


class CustodyInline(admin.TabularInline):
    model = pm.CustodyEvent
    fk_name = "batch"
    extra = 0
    can_delete = False
    fields = ["seq", "action", "from_state", "to_state", "at", "actor_name", "location",
              "temperature_c", "scanned_coi", "reason"]  # fmt: skip
    readonly_fields = fields

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        from hepatrial.trials.services.permissions import allowed, role_of

        return bool(request.user.is_active) and allowed("view", role_of(request.user))

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(pm.CellProductBatch)
class CellProductBatchAdmin(ReadOnlyAdmin):
    fields = ["batch_id", "participant", "coi_identifier", "state", "facility", "received_at",
              "formulated_at", "formulated_volume_ml", "released", "released_at",
              "release_date", "quarantined_from", "release_tests"]  # fmt: skip
    list_display = ["batch_id", "participant", "state", "released_at"]
    inlines = [CustodyInline]


@admin.register(pm.Harvest)
class HarvestAdmin(ReadOnlyAdmin):
    list_display = ["coi", "participant", "collected_at", "operator", "volume_ml"]


@admin.register(pm.CustodyEvent)
class CustodyEventAdmin(ReadOnlyAdmin):
    list_display = ["harvest", "seq", "action", "from_state", "to_state", "at", "actor_name"]
