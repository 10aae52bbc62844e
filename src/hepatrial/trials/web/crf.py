"""The visit CRF: the visit date, the lab panel of every analyte the protocol declares for the
visit (value and a unit from the analyte registry; hard limits refused by the store, values
outside the expected range saved only once confirmed), the clinical assessment, "not done"
with a reason per item, the derived scores shown as soon as their inputs are present (htmx),
save as draft or mark complete.

Every write goes through the services (so the validators, locks, signatures and the rule that
a first entry needs no reason but a change does all apply); a refused save writes nothing and
shows each problem on its field. A locked visit says so and shows no form.

Optimistic concurrency: the form carries the version of the visit's records it was loaded at
(:func:`hepatrial.trials.services._concurrency.visit_scopes`: the visit, its lab results,
clinical assessment and deviations). A save - or "missed" - after any of them changed (or one
was added) is refused with HTTP 409, nothing written, the current values shown and a message
naming who changed what and when. A POST without the version (not from the page) is not
checked.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from hepatrial import errors, vocab
from hepatrial.trials import selectors_web, services
from hepatrial.trials.web.access import ecrf_view
from hepatrial.trials.web.common import (
    LOCKED,
    FieldErrors,
    optional_module,
    parse_date,
    store_errors,
    today,
)
from hepatrial.trials.web.scores import canonical, live_scores

#: clinical items of the form: field -> (label, kind)
CLINICAL_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("ascites", "Ascites (Child-Pugh grade)", "ascites"),
    ("encephalopathy", "Hepatic encephalopathy", "encephalopathy"),
    ("dialysis_last_week", "Dialysis at least twice in the past week", "bool"),
    ("weight_kg", "Weight (kg)", "weight"),
    ("ascites_present", "Ascites present", "bool"),
    ("hepatomegaly", "Hepatomegaly", "bool"),
    ("spider_angiomata", "Spider angiomata", "bool"),
    ("edema", "Oedema", "edema"),
    ("histologic_stage", "Histologic stage (1-4)", "stage"),
)
_CHOICES = {"ascites": vocab.ASCITES, "encephalopathy": vocab.ENCEPHALOPATHY,
            "edema": vocab.EDEMA}
_CLINICAL_ITEM = selectors_web.CLINICAL_MEASUREMENTS  # protocol item -> clinical field


class _Refused(Exception):
    """Raised inside the save transaction to roll every write of a refused form back."""


@dataclass
class LabRow:
    """One analyte of the lab panel (form fields ``lab-<analyte>``, ``-unit``, ``-confirm``,
    ``-nd``, ``-nd-reason``)."""

    analyte: str
    label: str
    units: tuple[str, ...]
    unit: str
    expected: tuple[float, float]
    limits: tuple[float, float]
    due: bool
    value: str = ""
    unit_value: str = ""
    stored: Any = None
    not_done: dict[str, Any] | None = None
    nd_checked: bool = False
    nd_reason: str = ""
    confirm: bool = False
    flag: str = ""
    errors: list[str] = field(default_factory=list)
    nd_errors: list[str] = field(default_factory=list)
    needs_confirm: bool = False


def _panel(items: Any, post: Mapping[str, Any] | None) -> list[str]:
    """The analytes of the lab panel: those due at the visit (protocol order), then those
    stored, then those entered in the form among the optional ones (:func:`optional_analytes`),
    alphabetically."""
    due = [a for a in items.due if a not in _CLINICAL_ITEM]
    more = set(items.labs)
    if post is not None:
        more |= {a for a in optional_analytes(items) if str(post.get(f"lab-{a}", "")).strip()}
    return [*due, *sorted(more - set(due))]


def optional_analytes(items: Any) -> list[str]:
    """Registry analytes the protocol does not ask for at this visit and not stored (the form
    offers them, e.g. sodium for MELD-Na and MELD 3.0); weight is the clinical assessment's."""
    from hepatrial.protocol import analytes

    return [a for a in sorted(analytes.ANALYTES)
            if a not in items.due and a not in items.labs and a not in _CLINICAL_ITEM]


def _lab_rows(proto: Any, visit: Any, items: Any, post: Mapping[str, Any] | None,
              errs: FieldErrors, confirm_needed: set[str]) -> list[LabRow]:
    from hepatrial.protocol import analytes

    due = [a for a in items.due if a not in _CLINICAL_ITEM]
    rows = []
    for code in _panel(items, post):
        a = analytes.analyte(code)
        lab = items.labs.get(code)
        r = LabRow(code, a.label, tuple(a.units), a.unit, a.expected, a.limits, code in due,
                   stored=lab, not_done=items.not_done.get(code))
        if post is not None:
            r.value = str(post.get(f"lab-{code}", "")).strip()
            r.unit_value = str(post.get(f"lab-{code}-unit", "")) or a.unit
            r.nd_checked = bool(post.get(f"lab-{code}-nd"))
            r.nd_reason = str(post.get(f"lab-{code}-nd-reason", ""))
            r.confirm = bool(post.get(f"lab-{code}-confirm"))
        elif lab is not None:
            r.value, r.unit_value = lab.value_as_entered, lab.unit_as_entered
        else:
            r.unit_value = a.unit
        c = canonical(code, r.value, r.unit_value) if r.value else None
        if c is not None:
            lo, hi = a.expected
            r.flag = "low" if c < lo else "high" if c > hi else "ok"
        r.errors = [*errs.get(f"lab-{code}", []), *errs.get(f"lab-{code}-unit", [])]
        r.nd_errors = list(errs.get(f"lab-{code}-nd-reason", []))
        r.needs_confirm = code in confirm_needed
        rows.append(r)
    return rows


def _lab_rows_for(codes: list[str], items: Any, post: Mapping[str, Any] | None,
                  errs: FieldErrors) -> list[LabRow]:
    """Empty rows of optional analytes (collapsed under "another test")."""
    from hepatrial.protocol import analytes

    out = []
    for code in codes:
        a = analytes.analyte(code)
        r = LabRow(code, a.label, tuple(a.units), a.unit, a.expected, a.limits, False,
                   unit_value=a.unit)
        out.append(r)
    return out


def _clinical_rows(assessment: Any, post: Mapping[str, Any] | None, errs: FieldErrors,
                   items: Any) -> list[dict[str, Any]]:
    out = []
    for name, label, kind in CLINICAL_FIELDS:
        if post is not None:
            value = str(post.get(f"cl-{name}", ""))
        else:
            stored = getattr(assessment, name) if assessment is not None else None
            if kind == "bool":
                value = "" if stored is None else ("true" if stored else "false")
                if name == "dialysis_last_week" and assessment is None:
                    value = ""
            else:
                value = "" if stored is None else str(stored)
        item = next((i for i, f in _CLINICAL_ITEM.items() if f == name), None)
        out.append({
            "name": name, "label": label, "kind": kind, "value": value,
            "choices": _CHOICES.get(kind, ()), "errors": errs.get(f"cl-{name}", []),
            "due": item is not None and item in items.due,
            "optional": name in services.CLINICAL_SIGNS,
            "pk": assessment.pk if assessment is not None else None,
            "item": item, "not_done": items.not_done.get(item) if item else None,
            "nd_checked": bool(post.get(f"cl-{name}-nd")) if post is not None else False,
            "nd_reason": str(post.get(f"cl-{name}-nd-reason", "")) if post is not None else "",
            "nd_errors": errs.get(f"cl-{name}-nd-reason", []),
        })
    return out


def _age_at_visit(p: Any, actual: _dt.date | None) -> float | None:
    from hepatrial.trials.selectors import age_in_whole_years

    given = selectors_web.consents(p)
    age = age_in_whole_years(p.year_of_birth, given[0].date if given else p.screening_date)
    if age is None:
        return None
    if actual is not None and p.enrolment_date is not None:
        return age + (actual - p.enrolment_date).days / 365.25
    return float(age)


def _scores_context(p: Any, visit: Any, post: Mapping[str, Any] | None) -> dict[str, Any]:
    """The derived scores of the values in the form (``post``) or stored for the visit."""
    labs: dict[str, float | None] = {}
    if post is not None:
        for key in ("bilirubin", "creatinine", "inr", "albumin", "sodium"):
            raw = str(post.get(f"lab-{key}", "")).strip()
            if raw:
                labs[key] = canonical(key, raw, str(post.get(f"lab-{key}-unit", "")))
        clin = {n: str(post.get(f"cl-{n}", "")) for n in
                ("ascites", "encephalopathy", "dialysis_last_week")}
        actual = parse_date(post.get("actual_date")) or visit.actual_date
    else:
        stored, c = selectors_web.visit_values(visit)
        labs.update(stored)
        clin = {"ascites": (c.ascites or "") if c else "",
                "encephalopathy": (c.encephalopathy or "") if c else "",
                "dialysis_last_week": "true" if c and c.dialysis_last_week else ""}
        actual = visit.actual_date
    rows = live_scores(
        {k: v for k, v in labs.items() if v is not None}, sex=p.sex,
        age=_age_at_visit(p, actual), dialysis=clin["dialysis_last_week"] == "true",
        ascites=clin["ascites"] or None, encephalopathy=clin["encephalopathy"] or None)
    bad = sorted(k for k, v in labs.items() if v is None)
    return {"scores": rows, "unusable": bad}


def _versions(visit: Any, post: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The hidden version field of the form: the version of the visit's records it shows
    (optimistic locking; :func:`check_visit_version` refuses a save based on an older one).
    A form shown again after a refusal keeps the version it was loaded with."""
    from hepatrial.trials.services._concurrency import VERSION_FIELD, form_version, visit_scopes

    return {VERSION_FIELD: form_version(visit_scopes(visit), post)}


def check_visit_version(visit: Any, post: Mapping[str, Any]) -> None:
    """Raise :class:`~hepatrial.errors.ConcurrentEditError` when the visit's records changed
    since the form in ``post`` was loaded (call inside the transaction that writes)."""
    from hepatrial.trials.services._concurrency import check_posted_version, visit_scopes

    check_posted_version(visit, post, scopes=visit_scopes(visit))


def _locked(p: Any, visit: Any) -> bool:
    """Whether an active lock covers the visit (its own, the casebook's or the trial's)."""
    trial_locked, locked_p, locked_v = selectors_web.active_locks_by_visit([p.pk])
    return trial_locked or p.pk in locked_p or visit.pk in locked_v


def crf_context(request: HttpRequest, p: Any, visit: Any, *,
                post: Mapping[str, Any] | None = None, errs: FieldErrors | None = None,
                confirm_needed: set[str] | None = None) -> dict[str, Any]:
    """Everything the CRF page shows of one visit."""
    access = request.access  # type: ignore[attr-defined]
    proto = services.active_protocol()
    errs = errs if errs is not None else FieldErrors()
    items = selectors_web.visit_items(proto, [visit])[visit.pk]
    window = selectors_web.visit_window(p.enrolment_date, visit.nominal_day,
                                        visit.window_lower, visit.window_upper)
    locked = _locked(p, visit)
    sigs = selectors_web.valid_signatures([p.pk]).get((p.pk, visit.pk), [])
    try:
        pv = proto.visit(visit.code)
        procedures = list(pv.procedures)
    except KeyError:
        procedures = []
    queries = optional_module("queries")
    open_queries = []
    if queries is not None:
        for q in queries.queries(visit=visit, status=queries.OPEN_STATUSES):
            open_queries.append({"item": q.item or q.field_name, "text": q.text,
                                 "status": q.status, "origin": q.origin,
                                 "waiting_for": queries.waiting_for(q), "pk": q.pk,
                                 "lab": q.model_label == "trials.labresult" and (
                                     q.item or next((a for a, lab in items.labs.items()
                                                     if str(lab.pk) == q.object_pk), ""))})
    return {
        "open_queries": open_queries,
        "queried_labs": {q["lab"] for q in open_queries if q["lab"]},
        "p": p, "v": visit, "window": window, "state": selectors_web.visit_state(
            visit.status, window, today()),
        "items": items, "procedures": procedures,
        "labs": _lab_rows(proto, visit, items, post, errs, confirm_needed or set()),
        "optional_labs": _lab_rows_for(
            [a for a in optional_analytes(items) if not str((post or {}).get(
                f"lab-{a}", "")).strip()], items, post, errs),
        "clinical": _clinical_rows(items.clinical, post, errs, items),
        "errors": errs, "post": post or {},
        "actual_date": (post or {}).get("actual_date", visit.actual_date.isoformat()
                                        if visit.actual_date else ""),
        "locked": locked, "signatures": sigs,
        "can_enter": access.may("enter_data", p) and not locked,
        "versions": _versions(visit, post), "today": today(),
        "complete": visit.status in selectors_web.DONE and not items.missing,
        **_scores_context(p, visit, post),
    }


def _clinical_value(kind: str, raw: str) -> Any:
    raw = raw.strip()
    if kind == "bool":
        return {"true": True, "false": False}.get(raw, None if raw == "" else raw)
    return raw or None


def _owned(items: Any, p: Any, visit: Any) -> Any:
    """``items`` with the participant and visit of its stored lab results and clinical
    assessment set to ``p`` and ``visit`` (loaded by this request), so that correcting them
    does not read both again per record. A record whose stored owner is another participant
    or visit is left as it is (the services then read and judge its own)."""
    for record in (*items.labs.values(), items.clinical):
        if record is None:
            continue
        if record.participant_id == p.pk:
            record.participant = p
        if record.visit_id == visit.pk:
            record.visit = visit
    return items


def _save(request: HttpRequest, p: Any, visit: Any, post: Mapping[str, Any]
          ) -> tuple[FieldErrors, set[str], list[Any]]:
    """Every write of a posted CRF, in one transaction that is rolled back when any part is
    refused. Returns ``(errors, analytes needing confirmation, confirmed soft-range labs)``.

    The services get the participant and visit this request loaded (instances, not codes),
    so that each record does not look them up again, and the writes run as one unit of work
    (``services.unit_of_work``: the ledger locked once, the reads of every write's lock,
    permission and visit checks shared)."""

    user = request.user
    proto = services.active_protocol()
    action = post.get("action", "draft")
    reason = str(post.get("reason", "")).strip() or None
    errs = FieldErrors()
    confirm: set[str] = set()
    confirmed: list[Any] = []

    def attempt(fn: Any, *, prefix: str = "", fields: dict[str, str] | None = None) -> Any:
        try:
            with transaction.atomic():
                return fn()
        except (errors.StoreError, errors.PermissionDenied) as exc:
            e = store_errors(exc, prefix=prefix, fields=fields)
            for k, msgs in e.items():
                for m in msgs:
                    errs.add(k, m)
            errs.general.extend(e.general)
            return None

    try:
        with transaction.atomic(), services.unit_of_work():  # the ledger locked once
            check_visit_version(visit, post)  # ConcurrentEditError: nothing written
            # the visit date first: results need a visit that took place
            actual = str(post.get("actual_date", "")).strip()
            current = visit.actual_date.isoformat() if visit.actual_date else ""
            if actual and actual != current:
                attempt(lambda: services.record_visit(
                    participant=p, visit_code=visit, actual_date=actual, reason=reason,
                    user=user), fields={"actual_date": "actual_date", "reason": "reason"})
                visit.refresh_from_db()
            elif not actual and current:
                errs.add("actual_date", "the visit date cannot be removed here (a visit that "
                                        "did not take place is marked missed)")
            items = _owned(selectors_web.visit_items(proto, [visit])[visit.pk], p, visit)
            for code in _panel(items, post):
                value = str(post.get(f"lab-{code}", "")).strip()
                unit = str(post.get(f"lab-{code}-unit", "")).strip()
                nd = bool(post.get(f"lab-{code}-nd"))
                nd_reason = str(post.get(f"lab-{code}-nd-reason", "")).strip()
                lab = items.labs.get(code)
                f = {"value": f"lab-{code}", "unit": f"lab-{code}-unit",
                     "specimen_date": f"lab-{code}", "visit": "", "analyte": f"lab-{code}",
                     "reason": "reason"}
                if nd:
                    _not_done(attempt, errs, p, visit, items, code, value or None, nd_reason,
                              f"lab-{code}", user)
                    continue
                if not value:
                    if lab is not None:
                        errs.add(f"lab-{code}", "a stored value cannot be removed: correct it "
                                 "(with a reason), or record the item as not done")
                    continue
                changed = lab is None or (value, unit) != (lab.value_as_entered,
                                                           lab.unit_as_entered)
                c = canonical(code, value, unit)
                soft = _soft_range(code, value, unit, c) if changed and c is not None else None
                ok = bool(post.get(f"lab-{code}-confirm"))
                if soft is not None and not ok:
                    confirm.add(code)
                    errs.add(f"lab-{code}", soft)
                    continue
                kw = _confirmed_kw(soft is not None and ok)
                if lab is None:
                    saved = attempt(lambda code=code, value=value, unit=unit, kw=kw:
                                    services.record_lab(participant=p, visit_code=visit,
                                                        analyte=code, value=value, unit=unit,
                                                        user=user, **kw), fields=f)
                else:
                    saved = attempt(lambda lab=lab, value=value, unit=unit, kw=kw:
                                    services.update_lab(lab, value=value, unit=unit,
                                                        reason=reason, user=user, **kw),
                                    fields=f)
                if saved is not None and soft is not None:
                    confirmed.append(saved)
            _save_clinical(attempt, errs, p, visit, items, post, reason, user)
            if errs or confirm:
                raise _Refused
            if action == "complete":
                visit.refresh_from_db()
                now = selectors_web.visit_items(proto, [visit])[visit.pk]
                if visit.status not in selectors_web.DONE:
                    errs.add("actual_date", "a visit is marked complete once it has a date")
                    raise _Refused
                queries = optional_module("queries")
                if now.missing and queries is None:
                    for item in now.missing:
                        key = f"lab-{item}" if item not in _CLINICAL_ITEM else \
                            f"cl-{_CLINICAL_ITEM[item]}"
                        errs.add(key, "missing: enter the value or record it as not done "
                                      "with a reason")
                    errs.general.append("Not marked complete: " + ", ".join(now.missing)
                                        + " missing; nothing was saved.")
                    raise _Refused
                if queries is not None:
                    queries.raise_auto_queries(participant=p, visit_code=visit.code,
                                               completing=True, user=user)
    except _Refused:
        pass
    return errs, confirm, confirmed


def _not_done(attempt: Any, errs: FieldErrors, p: Any, visit: Any, items: Any, item: str,
              value: Any, reason: str, key: str, user: Any) -> None:
    """Record that ``item`` was not done, with the reason (a protocol deviation of the
    visit, ``services.record_deviation``)."""
    if value is not None:
        errs.add(key, "give a value or mark the item not done, not both")
        return
    if not reason:
        errs.add(f"{key}-nd-reason", "say why the item was not done")
        return
    old = items.not_done.get(item)
    if old is not None and old["reason"] == reason:
        return
    on = visit.actual_date or visit.scheduled_date or today()
    attempt(lambda: services.record_deviation(
        participant=p, category="other", visit_code=visit, date=min(on, today()),
        description=selectors_web.not_done_description(item, reason), user=user),
        fields={"description": f"{key}-nd-reason", "date": f"{key}-nd-reason"})


def _save_clinical(attempt: Any, errs: FieldErrors, p: Any, visit: Any, items: Any,
                   post: Mapping[str, Any], reason: str | None, user: Any) -> None:
    values: dict[str, Any] = {}
    given = False
    for name, _label, kind in CLINICAL_FIELDS:
        raw = str(post.get(f"cl-{name}", ""))
        item = next((i for i, f in _CLINICAL_ITEM.items() if f == name), None)
        if item is not None and post.get(f"cl-{name}-nd"):
            _not_done(attempt, errs, p, visit, items, item, raw.strip() or None,
                      str(post.get(f"cl-{name}-nd-reason", "")).strip(), f"cl-{name}", user)
            values[name] = None
            continue
        values[name] = _clinical_value(kind, raw)
        given = given or values[name] is not None
    f = {name: f"cl-{name}" for name, _l, _k in CLINICAL_FIELDS}
    f.update({"visit": "", "reason": "reason"})
    a = items.clinical
    if a is None:
        if not given:
            return
        values["dialysis_last_week"] = bool(values["dialysis_last_week"])
        attempt(lambda: services.record_clinical(participant=p, visit_code=visit,
                                                 user=user, **values), fields=f)
    else:
        if values["dialysis_last_week"] is None:
            values["dialysis_last_week"] = a.dialysis_last_week
        attempt(lambda: services.update_clinical(a, reason=reason, user=user, **values),
                fields=f)


def _soft_range(code: str, value: str, unit: str, c: float) -> str | None:
    """Why a new value outside the analyte's expected (soft) range needs confirming (None
    inside the range): the store's rule (:func:`hepatrial.trials.validators.query.
    soft_range_problem`) decides, in the words of this page."""
    from hepatrial.protocol import analytes

    a = analytes.analyte(code)
    try:
        from hepatrial.trials.validators.query import soft_range_problem
    except ImportError:  # the query workflow not installed: the registry's expected range
        lo, hi = a.expected
        outside = not lo <= c <= hi
    else:
        outside = soft_range_problem(
            record="", analyte=code, value_text=value, unit=unit, canonical=c,
            canonical_unit=a.unit, expected=a.expected, confirmed=False) is not None
    if not outside:
        return None
    lo, hi = a.expected
    side = "lower" if c < lo else "higher"
    shown = f"{value} {unit}" + ("" if unit == a.unit else f" = {c:g} {a.unit}")
    query = "; a confirmed value opens a query" if optional_module("queries") else ""
    return (f"{shown} is {side} than expected ({lo:g}-{hi:g} {a.unit}): check it against the "
            f"source and confirm to save{query}")


def _confirmed_kw(confirmed: bool) -> dict[str, Any]:
    """``confirmed_out_of_range=True`` for a confirmed value, when the lab services take it."""
    import inspect

    if confirmed and "confirmed_out_of_range" in inspect.signature(
            services.record_lab).parameters:
        return {"confirmed_out_of_range": True}
    return {}


@ecrf_view("view")
def visit_crf(request: HttpRequest, study_id: str, code: str) -> HttpResponse:
    """A visit's CRF (GET: show; POST: save as draft or mark complete)."""
    access = request.access  # type: ignore[attr-defined]
    if request.method == "POST":
        access.require("enter_data")
    p = access.participant(study_id)
    visit = access.visit(p, code)
    if request.method != "POST":
        return render(request, "hepatrial/web/crf.html", crf_context(request, p, visit))
    access.require("enter_data", p)
    if _locked(p, visit):  # the page's context is built only for the page shown
        errs = FieldErrors()
        errs.add(None, "This visit is locked: nothing can be changed until a data manager "
                       "unlocks it (with a reason).")
        return render(request, "hepatrial/web/crf.html",
                      crf_context(request, p, visit, errs=errs), status=409)
    try:
        errs, confirm, confirmed = _save(request, p, visit, request.POST)
    except errors.ConcurrentEditError as exc:
        return _conflict(request, p, visit, exc)
    if errs or confirm:
        visit.refresh_from_db()
        locked = any(m.startswith(LOCKED) for m in errs.general)
        return render(request, "hepatrial/web/crf.html", crf_context(
            request, p, visit, post=request.POST, errs=errs, confirm_needed=confirm),
            status=409 if locked else 400)
    notes = [f"{lab.analyte} confirmed outside the expected range" + (
        " (a query is opened)" if optional_module("queries") else "") for lab in confirmed]
    what = "saved"
    if request.POST.get("action") == "complete":
        what = "marked complete"
        proto = services.active_protocol()
        missing = selectors_web.visit_items(proto, [visit])[visit.pk].missing
        if missing:
            notes.append(f"{', '.join(missing)} missing: a query is opened on each")
    messages.success(request, f"{p.study_id} {visit.code} {what}."
                     + (" " + "; ".join(notes) + "." if notes else ""))
    return redirect("web:visit", study_id=p.study_id, code=visit.code)


def _conflict(request: HttpRequest, p: Any, visit: Any, exc: Exception) -> HttpResponse:
    """HTTP 409: the CRF as stored now (current values and version) with the message."""
    visit.refresh_from_db()
    errs = FieldErrors()
    errs.add(None, str(exc))
    return render(request, "hepatrial/web/crf.html", crf_context(request, p, visit, errs=errs),
                  status=409)


@require_POST
@ecrf_view("view")
def visit_scores(request: HttpRequest, study_id: str, code: str) -> HttpResponse:
    """htmx: the derived scores of the values in the CRF as typed (nothing stored)."""
    access = request.access  # type: ignore[attr-defined]
    p = access.participant(study_id)
    visit = access.visit(p, code)
    return render(request, "hepatrial/web/_scores.html", _scores_context(p, visit, request.POST))


@require_POST
@ecrf_view("enter_data")
def visit_missed(request: HttpRequest, study_id: str, code: str) -> HttpResponse:
    """Mark a visit missed (or not done) with the reason (``services.mark_visit_not_done``;
    a missed visit records a deviation)."""
    access = request.access  # type: ignore[attr-defined]
    p = access.participant(study_id)
    visit = access.visit(p, code)
    access.require("enter_data", p)
    st = request.POST.get("status", "missed")
    try:
        with transaction.atomic():
            check_visit_version(visit, request.POST)
            services.mark_visit_not_done(participant=p, visit_code=visit.code, status=st,
                                         reason=request.POST.get("reason", ""),
                                         user=request.user)
    except errors.ConcurrentEditError as exc:
        return _conflict(request, p, visit, exc)
    except (errors.StoreError, errors.PermissionDenied) as exc:
        errs = store_errors(exc, fields={"status": "missed", "reason": "missed-reason"})
        if isinstance(exc, errors.ChangeReasonRequired):
            errs = FieldErrors()
            errs.add("missed-reason", str(exc))
        visit.refresh_from_db()
        return render(request, "hepatrial/web/crf.html",
                      crf_context(request, p, visit, errs=errs), status=400)
    messages.success(request, f"{p.study_id} {visit.code} marked {st}.")
    return redirect("web:visit", study_id=p.study_id, code=visit.code)

