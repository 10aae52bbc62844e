"""Adverse events in the eCRF (issue 12): a participant's adverse events, the form that
records one and the form that follows one up or corrects it.

* **Adverse events** (``participants/<study_id>/adverse-events/``, any role that sees the
  participant): every event of the participant by onset - record id, CTCAE term (SOC), grade
  (its CTCAE definition), onset, resolution, serious and the seriousness criteria, relatedness
  to the product and to a procedure, expectedness, outcome, action taken, when the site
  became aware - and for a serious event its SAE reports: each report it owes with its
  deadline in the trial's time zone, status (pending, overdue, submitted, late) and the time
  left or overdue, and the reports submitted, as
  :func:`hepatrial.trials.selectors.sae_cases` computes them now.
* **Record** (``.../adverse-events/new/``) and **edit** (``.../adverse-events/<pk>/``):
  ``enter_data`` on the participant's site (the permission the services, the admin and the
  CLI check for adverse events). Every write goes through
  :func:`hepatrial.trials.services.safety.record_adverse_event` /
  :func:`~hepatrial.trials.services.safety.update_adverse_event`, so every rule of
  :mod:`hepatrial.trials.validators.adverse_event` applies unchanged (a fatal event makes the
  participant died, as the service does). A refused save writes nothing and shows the form
  again with every value as typed and each problem on the field it names (the awareness
  time's problems, ``aware_at``, on the awareness field; a problem of no form field above the
  form). A change of a stored value needs a reason (the service's rule; filling an empty
  value does not).

A casebook or trial lock refuses every write (HTTP 409, nothing written; the forms are not
shown while it lasts). The edit form carries the version of the event it was loaded at
(:mod:`hepatrial.trials.services._concurrency`): a save after someone else changed the event
is refused with HTTP 409, nothing written, the current values shown and a message naming who
changed what and when.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils import timezone

from hepatrial import errors, vocab
from hepatrial.trials import selectors_web, services
from hepatrial.trials.selectors import ae_record_id
from hepatrial.trials.services import safety
from hepatrial.trials.validators import RuleViolation
from hepatrial.trials.web.access import ecrf_view
from hepatrial.trials.web.common import FieldErrors, today
from hepatrial.trials.web.safety_worklist import KIND_LABELS, OWED, span

__all__ = ["adverse_event_edit", "adverse_event_list", "adverse_event_new", "urlpatterns"]

#: text fields of the form, named as the service's arguments
TEXT_FIELDS: tuple[str, ...] = (
    "term", "specify", "grade", "onset_date", "resolution_date", "outcome",
    "relatedness_product", "relatedness_procedure", "procedure", "action_taken",
)  # fmt: skip
#: the awareness time: wall clock, time zone, which of a repeated hour
AWARE_FIELDS: tuple[str, ...] = ("aware_local", "aware_time_zone", "aware_fold")
#: every field of the form (with the ``serious`` box and the ``seriousness_criteria`` boxes)
FORM_FIELDS: frozenset[str] = frozenset(
    {*TEXT_FIELDS, *AWARE_FIELDS, "serious", "seriousness_criteria", "reason"})
#: a problem of a value the form does not enter is shown on the field that sets it
PROBLEM_FIELD: dict[str, str] = {"aware_at": "aware_local", "meddra_code": "term"}


def _plan() -> Any:
    """The protocol's safety plan (None when the protocol has none)."""
    return getattr(services.active_protocol(), "safety", None)


def _trial_zone(plan: Any) -> Any:
    return plan.reporting.tz if plan is not None else _dt.UTC


def _lock_text(p: Any) -> str:
    """Why the participant's adverse events cannot be written now ("" when they can)."""
    from hepatrial.trials.audit.locks import describe_lock

    lock = selectors_web.casebook_lock(p)
    return "" if lock is None else describe_lock(lock)


# ---------------------------------------------------------------------- the form's values
def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, _dt.date):
        return value.isoformat()
    return str(value)


def posted_form(post: Mapping[str, Any]) -> dict[str, Any]:
    """The values of a posted form, exactly as typed (text stripped; ``serious`` a bool,
    ``seriousness_criteria`` the ticked codes)."""
    form: dict[str, Any] = {k: str(post.get(k, "")).strip()
                            for k in (*TEXT_FIELDS, *AWARE_FIELDS, "reason")}
    form["serious"] = bool(post.get("serious"))
    getlist = getattr(post, "getlist", None)
    crit = getlist("seriousness_criteria") if getlist else post.get("seriousness_criteria", [])
    form["seriousness_criteria"] = [str(c) for c in ([crit] if isinstance(crit, str) else crit)]
    return form


def stored_form(ae: Any) -> dict[str, Any]:
    """The form of a stored event (its values as the form shows them)."""
    form = {k: _text(getattr(ae, k)) for k in TEXT_FIELDS}
    form["aware_local"] = (ae.aware_local or "").replace(" ", "T", 1)
    form["aware_time_zone"] = ae.aware_time_zone or ""
    form["aware_fold"] = ""
    form["reason"] = ""
    form["serious"] = bool(ae.serious)
    form["seriousness_criteria"] = list(ae.seriousness_criteria or [])
    return form


def _blank_form(plan: Any) -> dict[str, Any]:
    form: dict[str, Any] = dict.fromkeys((*TEXT_FIELDS, *AWARE_FIELDS, "reason"), "")
    form["aware_time_zone"] = plan.reporting.time_zone if plan is not None else ""
    form.update(serious=False, seriousness_criteria=[])
    return form


def _values(form: Mapping[str, Any]) -> dict[str, Any]:
    """The service's arguments of a form, but the awareness time (empty text: None)."""
    out: dict[str, Any] = {k: form[k] or None for k in TEXT_FIELDS}
    out["serious"] = form["serious"]
    out["seriousness_criteria"] = list(form["seriousness_criteria"])
    return out


def _aware(form: Mapping[str, Any]) -> dict[str, Any]:
    return {k: form[k] or None for k in AWARE_FIELDS}


def _aware_key(form: Mapping[str, Any]) -> tuple[str, str, str]:
    return (str(form["aware_local"]).replace("T", " ", 1), str(form["aware_time_zone"]),
            str(form["aware_fold"]))


def store_problems(exc: Exception) -> tuple[FieldErrors, int]:
    """``(errors by form field, HTTP status)`` of a refused write: each rule's problem on its
    field (:data:`PROBLEM_FIELD`; one of no form field above the form, naming its field), a
    missing reason on the reason, a lock (409) or another refusal above the form (400)."""
    errs = FieldErrors()
    if isinstance(exc, RuleViolation):
        for p in exc.problems:
            name = PROBLEM_FIELD.get(p.field, p.field)
            if name in FORM_FIELDS:
                errs.add(name, p.reason)
            else:
                errs.add(None, str(p))
        return errs, 400
    if isinstance(exc, errors.RecordLocked):
        errs.add(None, f"Locked: {exc}. Nothing was saved.")
        return errs, 409
    if isinstance(exc, errors.ChangeReasonRequired):
        errs.add("reason", str(exc))
        return errs, 400
    errs.add(None, str(exc))
    return errs, 400


# ---------------------------------------------------------------------- the list
def _reports(case: dict[str, Any] | None, now: _dt.datetime, tz: Any) -> dict[str, Any] | None:
    """The SAE reports of a serious event as the page shows them."""
    if case is None:
        return None
    owed = []
    for r in case["reports"]:
        left = r["deadline"] - now
        when = ""
        if r["status"] in OWED:
            when = f"overdue by {span(left)}" if r["status"] == "overdue" else \
                f"{span(left)} left"
        owed.append({
            "kind": KIND_LABELS.get(r["kind"], r["kind"].replace("_", " ")),
            "status": r["status"], "basis": r["basis"], "when": when,
            "deadline": f"{r['deadline'].astimezone(tz):%Y-%m-%d %H:%M} {tz}",
            "tone": {"overdue": "bad", "pending": "warn", "late": "warn"}.get(r["status"], "ok"),
        })
    submitted = [{"kind": KIND_LABELS.get(s.kind, s.kind.replace("_", " ")),
                  "at": f"{s.submitted_at.astimezone(tz):%Y-%m-%d %H:%M} {tz}",
                  "on_time": s.on_time, "final": s.final, "by": s.printed_name}
                 for s in case["submitted"]]
    return {"owed": owed, "submitted": submitted, "susar": case["susar"],
            "fatal_or_life_threatening": case["fatal_or_life_threatening"],
            "problem": case["problem"]}


def _list_context(request: HttpRequest, p: Any) -> dict[str, Any]:
    access = request.access  # type: ignore[attr-defined]
    plan = _plan()
    now = timezone.now()
    tz = _trial_zone(plan)
    labels = {"outcome": dict(vocab.AE_OUTCOME), "action": dict(vocab.AE_ACTION),
              "procedure": dict(vocab.SAFETY_PROCEDURE)}
    rows = []
    for r in selectors_web.adverse_events(p, plan, now):
        ae = r["ae"]
        rows.append({
            "ae": ae, "id": r["id"], "criteria": list(ae.seriousness_criteria or []),
            "outcome": labels["outcome"].get(ae.outcome, ae.outcome),
            "action": labels["action"].get(ae.action_taken or "", ae.action_taken or ""),
            "procedure": labels["procedure"].get(ae.procedure or "", ae.procedure or ""),
            "aware": (f"{ae.aware_local} {ae.aware_time_zone or ''}".strip()
                      if ae.aware_local else (f"{ae.aware_at:%Y-%m-%d %H:%M} UTC"
                                              if ae.aware_at else "")),
            "sae": _reports(r["case"], now, tz),
        })
    locked = _lock_text(p)
    return {"p": p, "rows": rows, "locked": locked,
            "can_enter": access.may("enter_data", p) and not locked, "time_zone": str(tz),
            # the SAE chain's signed steps (web/sae.py): the server checks again
            "can_report": access.may("report_sae", p), "can_assess": access.may("assess_sae", p)}


@ecrf_view("view")
def adverse_event_list(request: HttpRequest, study_id: str) -> HttpResponse:
    """A participant's adverse events with the SAE reports of the serious ones."""
    p = request.access.participant(study_id)  # type: ignore[attr-defined]
    return render(request, "hepatrial/web/adverse_events.html", _list_context(request, p))


# ---------------------------------------------------------------------- the forms
def _form_context(request: HttpRequest, p: Any, form: Mapping[str, Any], *,
                  ae: Any = None, errs: FieldErrors | None = None,
                  version: str = "") -> dict[str, Any]:
    from hepatrial.protocol import ctcae_terms

    plan = _plan()
    locked = _lock_text(p)
    return {
        "p": p, "ae": ae, "ae_id": None if ae is None else ae_record_id(ae.pk),
        "form": form, "errors": errs or FieldErrors(), "locked": locked,
        "version_field": _version_field(), "version": version,
        "terms": [t.term for t in ctcae_terms.all_terms()],
        "grades": sorted(ctcae_terms.GRADE_LABELS.items()),
        "outcomes": vocab.AE_OUTCOME, "actions": vocab.AE_ACTION,
        "relatedness": vocab.RELATEDNESS, "procedures": vocab.SAFETY_PROCEDURE,
        "criteria": vocab.SERIOUSNESS_CRITERIA, "today": today(),
        "trial_time_zone": plan.reporting.time_zone if plan is not None else "",
    }


def _version_field() -> str:
    from hepatrial.trials.services._concurrency import VERSION_FIELD

    return VERSION_FIELD


def _render_form(request: HttpRequest, ctx: dict[str, Any], status: int = 200) -> HttpResponse:
    return render(request, "hepatrial/web/adverse_event_form.html", ctx, status=status)


def _locked_response(request: HttpRequest, p: Any, form: Mapping[str, Any], *, ae: Any = None,
                     version: str = "") -> HttpResponse:
    errs = FieldErrors()
    errs.add(None, f"Locked: {_lock_text(p)}; unlock it with a reason first. Nothing was "
                   "saved.")
    return _render_form(request, _form_context(request, p, form, ae=ae, errs=errs,
                                               version=version), status=409)


def _require_enter(request: HttpRequest, p: Any) -> None:
    request.access.require("enter_data", p)  # type: ignore[attr-defined]


@ecrf_view("enter_data")
def adverse_event_new(request: HttpRequest, study_id: str) -> HttpResponse:
    """Record an adverse event of the participant (GET: the empty form; POST: save with
    ``services.safety.record_adverse_event``, or the form again with the problems)."""
    p = request.access.participant(study_id)  # type: ignore[attr-defined]
    _require_enter(request, p)
    if request.method != "POST":
        return _render_form(request, _form_context(request, p, _blank_form(_plan())))
    form = posted_form(request.POST)
    if _lock_text(p):
        return _locked_response(request, p, form)
    try:
        with transaction.atomic():
            ae = safety.record_adverse_event(participant=p, **_values(form), **_aware(form),
                                             user=request.user)
    except errors.PermissionDenied as exc:
        raise PermissionDenied(str(exc)) from None
    except errors.StoreError as exc:
        errs, status = store_problems(exc)
        return _render_form(request, _form_context(request, p, form, errs=errs), status=status)
    p.refresh_from_db()
    died = f" {p.study_id} is recorded as died on {p.status_date}." if (
        ae.outcome == "fatal" and p.status == "died") else ""
    messages.success(request, f"{ae_record_id(ae.pk)} {ae.label} grade "
                              f"{ae.grade} recorded for {p.study_id}.{died}")
    return redirect("web:adverse_events", study_id=p.study_id)


def _changes(ae: Any, form: Mapping[str, Any]) -> dict[str, Any]:
    """The service's arguments of an edit form: every entered value, and the awareness time
    only when it is not the one the form showed (the stored wall clock and zone)."""
    changes = _values(form)
    if _aware_key(form) != _aware_key(stored_form(ae)):
        changes.update(_aware(form))
    return changes


@ecrf_view("enter_data")
def adverse_event_edit(request: HttpRequest, study_id: str, pk: int) -> HttpResponse:
    """Follow up or correct an adverse event of the participant (GET: the form with the
    stored values; POST: ``services.safety.update_adverse_event`` with the reason, after the
    version check, or the form again with the problems)."""
    from hepatrial.trials.services._concurrency import (
        check_posted_version,
        form_version,
        version_of,
    )

    p = request.access.participant(study_id)  # type: ignore[attr-defined]
    _require_enter(request, p)
    ae = selectors_web.adverse_event_of(p, pk)
    if ae is None:
        raise Http404("no such adverse event")
    if request.method != "POST":
        return _render_form(request, _form_context(request, p, stored_form(ae), ae=ae,
                                                   version=form_version(ae)))
    post = request.POST
    form = posted_form(post)
    loaded = form_version(ae, post)
    if _lock_text(p):
        return _locked_response(request, p, form, ae=ae, version=loaded)
    try:
        with transaction.atomic():
            check_posted_version(ae, post)
            was = version_of(ae)
            saved = safety.update_adverse_event(ae, reason=form["reason"] or None,
                                                user=request.user, **_changes(ae, form))
            written = version_of(saved) != was
    except errors.ConcurrentEditError as exc:
        now = selectors_web.adverse_event_of(p, pk)
        errs = FieldErrors()
        errs.add(None, str(exc))
        return _render_form(request, _form_context(request, p, stored_form(now), ae=now,
                                                   errs=errs, version=form_version(now)),
                            status=409)
    except errors.PermissionDenied as exc:
        raise PermissionDenied(str(exc)) from None
    except errors.StoreError as exc:
        errs, status = store_problems(exc)
        return _render_form(request, _form_context(request, p, form, ae=ae, errs=errs,
                                                   version=loaded), status=status)
    label = f"{ae_record_id(saved.pk)} {saved.label} grade {saved.grade}"
    if not written:
        messages.info(request, f"{label}: nothing changed, nothing saved.")
    else:
        p.refresh_from_db()
        died = f" {p.study_id} is recorded as died on {p.status_date}." if (
            saved.outcome == "fatal" and p.status == "died") else ""
        messages.success(request, f"{label} saved for {p.study_id}.{died}")
    return redirect("web:adverse_events", study_id=p.study_id)


P = "participants/<str:study_id>/adverse-events/"

#: added to the ``web`` namespace by :mod:`hepatrial.trials.web.urls` (``EXTENSIONS``)
urlpatterns = [
    path(P, adverse_event_list, name="adverse_events"),
    path(P + "new/", adverse_event_new, name="adverse_event_new"),
    path(P + "<int:pk>/", adverse_event_edit, name="adverse_event_edit"),
]
