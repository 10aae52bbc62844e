"""Base of the thin Django admin of the trial store.

* every change form has a required **reason for change** (stored as the history change reason);
  a delete needs a reason too (typed on the confirmation page); bulk delete is disabled;
* a coordinator (non-superuser) sees only participants — and their visits, labs, ... — of the
  sites they are a member of (:class:`~hepatrial.trials.models.SiteMembership`); superusers
  see everything;
* history pages come from django-simple-history (``SimpleHistoryAdmin``); reverting is off;
* **optimistic concurrency**: every change form carries the version it was loaded at (a hidden
  field, the record's latest history id: :mod:`hepatrial.trials.services._concurrency`). A save
  of a record that changed since is refused, whatever fields either user touched: nothing is
  written, the page is shown again (HTTP 409) with the current values and an error naming who
  changed what and when ("... was changed by dm at 2026-12-02 10:41:07 UTC (grade: 1 -> 3)
  since you loaded this form. Nothing was saved: reload the page ..."). The check runs inside
  the admin's transaction with the record's row locked, so of two saves of one version exactly
  one passes. Without it, the second save would write back the values it was loaded with
  (also of fields its user never touched: the admin compares the POST with the record as
  stored *now*). A POST without the field (a hand-made request, not the page) is not checked;
* the randomisation list and the audit ledger are visible to superusers only (concealment).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponseRedirect
from simple_history.admin import SimpleHistoryAdmin

from hepatrial.trials import models as m

REASON_FIELD = "change_reason"
#: hidden field of every change form: the version the form was loaded at
VERSION_FIELD = "loaded_version"


class VersionField(forms.CharField):
    """The loaded version (hidden); never part of ``changed_data``."""

    widget = forms.HiddenInput

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("label", "Loaded version")
        super().__init__(**kwargs)

    def has_changed(self, initial: Any, data: Any) -> bool:
        return False


def user_site_ids(user: Any) -> list[int]:
    """Ids of the sites a user may see: every site for superusers and the all-sites roles
    (data manager, auditor, admin), else their memberships (services.permissions)."""
    from hepatrial.trials.services.permissions import site_ids_of

    if user.is_superuser:
        return list(m.Site.objects.values_list("pk", flat=True))
    return sorted(site_ids_of(user))


class ReasonForm(forms.ModelForm):
    """Model form that asks for a reason for change when editing a saved record.

    Subclasses may set :attr:`first_entry_free` (the first entry of a value - the field was
    empty - is data entry and needs no reason; every later change does) and implement
    :meth:`check_rules` to run the service's validation (``services.check_*``, no writes) so
    that every problem of a :class:`~hepatrial.trials.validators.RuleViolation` is shown as
    an error on its field (:attr:`rule_fields` maps a validator's field names to form fields).
    """

    change_reason = forms.CharField(
        label="Reason for change",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Required when changing a saved record; kept in the audit trail.",
    )

    loaded_version = VersionField()

    #: the first entry of a value needs no reason (only changes of stored values do)
    first_entry_free: bool = False
    #: validator field name -> form field name (problems on other fields go to the form top)
    rule_fields: dict[str, str] = {}  # noqa: RUF012

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None and not self.is_bound:
            from hepatrial.trials.services._concurrency import version_of

            self.fields[VERSION_FIELD].initial = version_of(self.instance)

    def check_version(self) -> None:
        """Refuse (:class:`~hepatrial.errors.ConcurrentEditError`, raised out of the form's
        validation so that the admin shows the current record) a change of a record saved by
        someone else since this form was loaded; a POST without the version is not checked."""
        if self.instance.pk is not None:
            from hepatrial.trials.services._concurrency import check_posted_version

            check_posted_version(self.instance, self.data, key=self.add_prefix(VERSION_FIELD))

    def clean(self) -> dict[str, Any]:
        self.check_version()  # first: the rules below judge the record as stored now
        data = super().clean()
        participant, visit = data.get("participant"), data.get("visit")
        if participant is not None and visit is not None and visit.participant_id != participant.pk:
            self.add_error("visit", f"visit {visit} belongs to another participant")
        if self.instance.pk is not None and self.has_changed() and self.reason_needed(data):
            if not (data.get(REASON_FIELD) or "").strip():
                self.add_error(REASON_FIELD, "A reason for change is required.")
        if not self.errors:
            from hepatrial.errors import StoreError
            from hepatrial.trials.validators import RuleViolation

            try:
                self.check_rules(data)
            except RuleViolation as exc:
                self.add_rule_violation(exc)
            except StoreError as exc:
                self.add_error(None, str(exc))
        return data

    def changed_values(self, data: dict[str, Any]) -> dict[str, Any]:
        """The new values of the changed fields (without the reason)."""
        return {f: data.get(f) for f in self.changed_data
                if f not in (REASON_FIELD, VERSION_FIELD) and f in data}

    def reason_needed(self, data: dict[str, Any]) -> bool:
        """Whether this edit changes a stored value (so needs a reason for change)."""
        changed = self.changed_values(data)
        if not self.first_entry_free:
            return bool(changed)
        from hepatrial.trials.validators._common import changes_needing_reason

        old = {f: self.initial.get(f) for f in changed}
        return bool(changes_needing_reason(old, changed))

    def check_rules(self, data: dict[str, Any]) -> None:
        """Validate the values to be written through the service (no writes); raise
        :class:`~hepatrial.trials.validators.RuleViolation`. Default: nothing to check."""

    def add_rule_violation(self, exc: Any) -> None:
        """Show each problem of a RuleViolation on its form field (record, field and reason)."""
        for p in exc.problems:
            name = self.rule_fields.get(p.field, p.field)
            base = name.split(".", 1)[0]
            target = name if name in self.fields else base if base in self.fields else None
            self.add_error(target, str(p))


class AuditedAdmin(SimpleHistoryAdmin):
    """Admin base: reason for change on edit and delete, site-restricted querysets."""

    form = ReasonForm
    #: path from the model to its Site, for per-site filtering (None: not site-scoped)
    site_path: str | None = "participant__site"
    delete_confirmation_template = "admin/trials/delete_confirmation.html"

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = [f for f in super().get_fields(request, obj)
                  if f not in (REASON_FIELD, VERSION_FIELD)]
        if obj is not None:
            if VERSION_FIELD in self.form.base_fields and self.has_change_permission(
                    request, obj):
                fields.append(VERSION_FIELD)  # hidden; before the reason, which stays last
            fields.append(REASON_FIELD)
        return fields

    #: the action of the role matrix (services.permissions) that adding or changing a record
    #: on this page needs; None: Django's model permissions only. A role that may not do it
    #: gets the page read-only (superusers included: the admin role enters no trial data).
    write_action: str | None = None

    def _may_write(self, request: HttpRequest) -> bool:
        if self.write_action is None:
            return True
        from hepatrial.trials.services.permissions import allowed, role_of

        return allowed(self.write_action, role_of(request.user))

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return bool(super().has_add_permission(request, *args)) and self._may_write(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(super().has_change_permission(request, obj)) and self._may_write(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(super().has_delete_permission(request, obj)) and self._may_write(request)

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        """A write the role matrix refuses (e.g. another site's participant) is a 403, not
        a server error. A save based on an out-of-date version (:meth:`ReasonForm.
        check_version`, raised inside the admin's transaction, so nothing is written) shows
        the page again as a GET would - the current values and version - with the error, as
        HTTP 409."""
        from django.core.exceptions import PermissionDenied as DjangoPermissionDenied

        from hepatrial.errors import ConcurrentEditError, PermissionDenied

        try:
            return super().changeform_view(request, *args, **kwargs)
        except PermissionDenied as exc:
            raise DjangoPermissionDenied(str(exc)) from None
        except ConcurrentEditError as exc:
            messages.error(request, str(exc))
            request.method = "GET"
            response = super().changeform_view(request, *args, **kwargs)
            response.status_code = 409
            return response

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
        """The confirmation page carries the version too: deleting a record changed since the
        page was loaded is refused like a stale change (HTTP 409, the page shown again)."""
        from hepatrial.errors import ConcurrentEditError

        if request.method == "POST" and not request.POST.get(REASON_FIELD, "").strip():
            messages.error(request, "A reason is required to delete a record.")
            return HttpResponseRedirect(request.path)
        request._hepatrial_reason = request.POST.get(REASON_FIELD, "").strip()  # type: ignore[attr-defined]
        try:
            return super().delete_view(request, object_id, extra_context)
        except ConcurrentEditError as exc:
            from django.http import QueryDict

            messages.error(request, str(exc))
            request.method, request.POST = "GET", QueryDict()  # the page, not a deletion
        response = super().delete_view(request, object_id, extra_context)  # current version
        response.status_code = 409
        return response

    def render_delete_form(self, request: HttpRequest, context: dict[str, Any]) -> Any:
        obj = context.get("object")
        if obj is not None and getattr(obj, "pk", None) is not None:
            from hepatrial.trials.services._concurrency import version_of

            context.setdefault(VERSION_FIELD, version_of(obj))
        return super().render_delete_form(request, context)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        from hepatrial.trials.services._concurrency import check_posted_version

        # inside the admin's transaction: refused before anything is deleted
        check_posted_version(obj, request.POST)
        obj.delete(reason=getattr(request, "_hepatrial_reason", ""), user=request.user)

    def history_form_view(
        self, request: HttpRequest, object_id: str, version_id: str, extra_context: Any = None
    ) -> Any:
        # Reverting is off: simple_history's history-form page saves whatever is POSTed to it
        # (SIMPLE_HISTORY_REVERT_DISABLED only hides the button), so a POST is refused for
        # everybody; changes go through the change form and its service.
        if request.method not in ("GET", "HEAD"):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied("reverting to a past version is disabled")
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
