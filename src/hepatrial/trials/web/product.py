"""The cell product in the eCRF, vein to vein (issue 11): the batches of the user's sites, the
record of one batch, the entry of a QC (release-test) result and the certificate of analysis.

* **Products** (``products/``, any role, the user's sites only): every batch with its
  participant, site, lifecycle state, harvest date, whether it is released (and when) and
  whether it was administered (and on which day); ``?state=`` keeps the batches in one state
  of :class:`hepatrial.protocol.product_lifecycle.State`.
* **Batch** (``products/<batch_id>/``): everything :func:`hepatrial.trials.selectors.
  product_record` reads (the CLI's ``hepatrial product trace``): the harvest, the
  manufacturing steps with reagents and in-process controls (each judged against the
  protocol's control), every release test of the protocol's specification with its result as
  entered, unit, specification, verdict (:meth:`hepatrial.protocol.models.Product.
  release_assessment`, the rule of the release step: pass, fail, pending, missing or
  invalid, with the reason), analyst, method, date and source; the QA review (when the batch
  entered it) and each release with its e-signature (printed name, meaning, time, status
  recomputed by :func:`~hepatrial.trials.services.product.product_signature_status`), the
  verdict on every test at release and the conclusion; the chain of custody (every custody
  event in order: who, when, where, temperature, the scanned id, the reason, the transport
  readings); the administration; the **dosing gate's verdict** for the batch's participant
  now (:func:`gate_verdict`) and a link to the certificate of analysis.
* **QC result** (``products/<batch_id>/qc/``, ``manage_product`` on the participant's site:
  the permission the CLI ``hepatrial product qc``, the admin and the service check): the
  form writes only through :func:`hepatrial.trials.services.product.record_qc_result`, so
  every rule of :func:`hepatrial.trials.validators.product.validate_qc` applies unchanged
  (a test of the specification; a result of the test's kind - a number, a percentage within
  0-100, a text for a qualitative test - in the specification's unit, never converted; the
  analyst; a test date neither in the future nor before the harvest; the batch's state; a
  changed stored result needs a reason). A refused save writes nothing and shows the form
  again with every value as typed and each problem on its field (one of no form field above
  the form). ``?test=NAME`` loads a stored result to correct it.
* **Administration** (``products/<batch_id>/administer/``, ``administer_product`` on the
  participant's site: the permission of the CLI ``hepatrial product administer`` and of the
  service): the bedside entry - the scanned chain-of-identity id, the patient identifiers
  checked (``NAME=VALUE`` pairs, comma- or line-separated, as the CLI's ``--identifiers``: at
  least two, e.g. ``study_id=A1, year_of_birth=1960``), the route (a select of the
  protocol's routes), cells, volume (mL), the start of the infusion (ISO 8601 with its zone),
  the operator, optionally the dose in cells/kg (default: cells / the latest weight) and the
  reason for giving an out-of-range dose deliberately. The form writes only through
  :func:`hepatrial.trials.services.product.record_administration`, so the whole dosing gate
  (:data:`hepatrial.protocol.dosing.CONDITIONS`) and the administration's rules apply; a
  refusal writes nothing and shows the form again as typed with every unmet condition and its
  reason (``id="admin-unmet"``, in the service's order) and each value's problem on its
  field. The batch page links to it when the batch is received at the bedside, the user may
  administer and the casebook is not locked.
* The certificate of analysis is a report (``hepatrial product coa BATCH -o FILE``,
  :mod:`hepatrial.report.product`): the store's pages may not import the report layer, so the
  batch page names the command instead of serving the document.

Every request is checked on the server (:func:`~hepatrial.trials.web.access.ecrf_view`): a
role without the action gets 403, a batch of a site the user does not act on does not exist
(404). The QC form carries the version of the batch and its QC results it was loaded at
(:mod:`hepatrial.trials.services._concurrency`): a save after someone else changed either is
refused with HTTP 409, nothing written, and a message naming who changed what and when. A
casebook or trial lock refuses the entry (409, nothing written).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils import timezone

from hepatrial import errors
from hepatrial.protocol.dosing import CONDITIONS
from hepatrial.protocol.product_lifecycle import State
from hepatrial.trials import selectors, selectors_web, services
from hepatrial.trials.validators import RuleViolation
from hepatrial.trials.web.access import ecrf_view
from hepatrial.trials.web.common import FieldErrors, today

__all__ = [
    "BEDSIDE_CONDITIONS",
    "RECORD_CONDITIONS",
    "gate_verdict",
    "product_administer",
    "product_batch",
    "product_list",
    "product_qc",
    "urlpatterns",
]

#: the states a batch can be in, in the lifecycle's order (the list's filter)
STATES: tuple[str, ...] = tuple(s.value for s in State)
#: the fields of the QC form, named as the service's arguments (``reason``: of a correction)
QC_FIELDS: tuple[str, ...] = ("test", "result", "unit", "analyst", "tested_on", "method",
                              "reason")
#: the dosing gate's conditions that the bedside entry decides (the label scanned, the two
#: patient identifiers checked, the route and the dose): judged when the administration is
#: entered, not shown in the verdict of the records
BEDSIDE_CONDITIONS: tuple[str, ...] = ("coi_scanned", "patient_identifiers", "route_allowed",
                                       "dose_in_range")
#: what the verdict shows: every other condition of the gate, the batch's lifecycle state (an
#: administration needs the receipt at the bedside) and the time of administration against
#: the participant's enrolment and end of treatment - in this order
RECORD_CONDITIONS: tuple[str, ...] = (
    *(c for c in CONDITIONS if c not in BEDSIDE_CONDITIONS), "state", "administered_at")


def _product() -> Any:
    """The protocol's product (None when the protocol declares none)."""
    return getattr(services.active_protocol(), "product", None)


def _batch(request: HttpRequest, batch_id: str) -> Any:
    """The batch of one of the user's sites, else 404."""
    b = selectors_web.product_batch_in(batch_id, request.access.site_ids)
    if b is None:
        raise Http404("no such batch")
    return b


def _utc(value: Any) -> str:
    """A time (aware datetime or ISO 8601 text) as ``YYYY-MM-DD HH:MM UTC`` ("" for None)."""
    if value is None or value == "":
        return ""
    t = _dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return f"{t.astimezone(_dt.UTC):%Y-%m-%d %H:%M} UTC"


def _num(value: Any) -> str:
    """A stored number as the pages show it (``92``, ``0.4``, ``4e+07``); text unchanged."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _label(code: str | None) -> str:
    return (code or "").replace("_", " ")


def _lock_text(p: Any) -> str:
    """Why the participant's product records cannot be written now ("" when they can)."""
    from hepatrial.trials.audit.locks import describe_lock

    lock = selectors_web.casebook_lock(p)
    return "" if lock is None else describe_lock(lock)


# ---------------------------------------------------------------------- the list
@ecrf_view("view")
def product_list(request: HttpRequest) -> HttpResponse:
    """The batches of the user's sites (``?state=``: one lifecycle state)."""
    access = request.access
    state = str(request.GET.get("state", "")).strip()
    problem = ""
    if state and state not in STATES:
        problem = (f"{state!r} is not a state of the product lifecycle "
                   f"({', '.join(STATES)})")
        rows: list[dict[str, Any]] = []
    else:
        rows = selectors_web.product_batches(access.site_ids, state=state or None)
    for r in rows:
        r["state_label"] = _label(r["state"]) or "(before the lifecycle)"
        r["released_text"] = _utc(r["released_at"]) if r["released_at"] else (
            "yes" if r["released"] else "")
    return render(request, "hepatrial/web/products.html", {
        "rows": rows, "state": state, "states": [(s, _label(s)) for s in STATES],
        "problem": problem})


# ---------------------------------------------------------------------- the dosing gate
def gate_verdict(b: Any, p: Any, product: Any, now: _dt.datetime, operator: str
                 ) -> dict[str, Any]:
    """The dosing gate's verdict on giving batch ``b`` to its participant ``p`` at ``now``,
    as far as the records decide it: ``{allowed, unmet: [{condition, reason}], bedside}``.

    Runs :func:`hepatrial.trials.services.product.check_administration` - the service that
    gathers the gate's facts from the store (batch state and release, shelf life from the
    formulation, the transport readings, the participant's status, eligibility and latest
    weight, the stopping rules' pause at ``now``) and runs the pure gate
    :func:`hepatrial.protocol.dosing.check_administration` - with the bedside entry as it
    would be made right (the batch's own chain-of-identity id, the two identifiers on the
    participant's record, the protocol's first route, its minimum dose: a positive dose makes
    the gate check that a per-kg dose has a weight). The conditions of that entry
    (:data:`BEDSIDE_CONDITIONS`) and the values' own problems are left out: they are judged
    when the administration is entered. Nothing is written."""
    from hepatrial.trials.services.product import patient_identifiers

    bedside = [_label(c) for c in BEDSIDE_CONDITIONS]
    if product is None:
        return {"allowed": False, "bedside": bedside, "unmet": [
            {"condition": "protocol", "reason": "the protocol declares no product: nothing "
                                                "may be administered"}]}
    coi = b.harvest.coi if b.harvest_id else (b.coi_identifier or "")
    problems: list[Any] = []
    try:
        services.check_administration(
            participant=p, batch_id=b.batch_id, scanned_coi=coi,
            identifiers=patient_identifiers(p), route=product.routes[0],
            cells_total=product.cells_min, volume_ml=product.volume_ml, administered_at=now,
            operator=operator)
    except RuleViolation as exc:
        problems = list(exc.problems)
    order = {c: i for i, c in enumerate(RECORD_CONDITIONS)}
    unmet = sorted(({"condition": x.field, "reason": x.reason} for x in problems
                    if x.field in order), key=lambda u: order[u["condition"]])
    return {"allowed": not unmet, "unmet": unmet, "bedside": bedside}


# ---------------------------------------------------------------------- the batch
def _qc_rows(b: Any, product: Any, weight: float | None, volume: float | None
             ) -> list[dict[str, Any]]:
    """Every test of the release specification with its stored result and its verdict, then
    any stored result of a test the specification no longer has."""
    stored = {q.test: q for q in selectors_web.product_qc_results(b)}
    rows: list[dict[str, Any]] = []
    spec = product.release_spec if product is not None else ()
    verdicts = {a.name: a for a in product.release_assessment(
        {k: q.value for k, q in stored.items()}, weight_kg=weight, volume_ml=volume)
    } if product is not None else {}
    for t in spec:
        q = stored.pop(t.name, None)
        a = verdicts[t.name]
        rows.append({
            "test": t.name, "q": q, "result": q.value_as_entered if q else "",
            "unit": (q.unit if q else t.unit) or "", "spec": t.full_criterion,
            "outcome": a.outcome, "reason": a.reason,
            "tone": {"pass": "ok", "pending": "warn"}.get(a.outcome, "bad"),
            "method": (q.method if q and q.method else t.method),
            "method_from_spec": not (q and q.method),
        })
    for name, q in sorted(stored.items()):
        rows.append({"test": name, "q": q, "result": q.value_as_entered, "unit": q.unit,
                     "spec": "", "outcome": "not judged", "tone": "warn",
                     "reason": "not a test of the protocol's release specification",
                     "method": q.method, "method_from_spec": False})
    return rows


def _steps(rec: Mapping[str, Any], product: Any) -> list[dict[str, Any]]:
    """The manufacturing steps as performed, each in-process control judged against the
    protocol's control of that step."""
    out = []
    for s in rec["steps"]:
        step = product.step(s["step"]) if product is not None else None
        controls = []
        for name, c in sorted(s["controls"].items()):
            ctl = step.control(name) if step is not None else None
            outcome, reason = ctl.assess(c["value"]) if ctl is not None else (
                "not judged", "not a control of the protocol's step")
            controls.append({"name": name, "as_entered": c["as_entered"], "unit": c["unit"],
                             "criterion": ctl.criterion if ctl is not None else "",
                             "outcome": outcome, "reason": reason,
                             "tone": "ok" if outcome == "pass" else "bad"})
        out.append({"step": s["step"], "label": step.label if step is not None else "",
                    "started": _utc(s["started_at"]), "completed": _utc(s["completed_at"]),
                    "operator": s["operator"], "notes": s["notes"],
                    "reagents": [f"{r.get('name', '')} lot {r.get('lot', '')}".strip()
                                 for r in s["reagents"] or []],
                    "controls": controls})
    return out


def _details(d: Mapping[str, Any] | None) -> tuple[list[str], str]:
    """``(transport readings as text, the other details as text)`` of a custody event."""
    d = dict(d or {})
    readings = [f"{_utc(at)} {_num(c)} °C" for at, c in d.pop("readings", [])]
    rest = "; ".join(f"{_label(k)}: {v if not isinstance(v, list) else ', '.join(map(str, v))}"
                     for k, v in sorted(d.items()) if v not in (None, "", []))
    return readings, rest


def _custody(rec: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for e in rec["custody"]:
        readings, details = _details(e["details"])
        out.append({"seq": e["seq"], "at": _utc(e["at"]), "action": _label(e["action"]),
                    "from": _label(e["from_state"]), "to": _label(e["to_state"]),
                    "actor": e["actor"], "location": e["location"],
                    "temperature": "" if e["temperature_c"] is None
                    else f"{_num(e['temperature_c'])} °C",
                    "scanned": e["scanned_coi"], "reason": e["reason"],
                    "readings": readings, "details": details})
    return out


def _releases(b: Any, rec: Mapping[str, Any]) -> list[dict[str, Any]]:
    from hepatrial.trials.services.product import product_signature_status

    sigs = selectors_web.product_signatures(b)
    out = []
    for r in rec["releases"]:
        sig = sigs.get(r["signature_pk"])
        out.append({**r, "at": _utc(r["released_at"]), "signed": _utc(r["signed_at"]),
                    "status": product_signature_status(sig) if sig is not None else "",
                    "weight": "" if r["weight_kg"] is None else f"{r['weight_kg']:g} kg",
                    "assessment": [{**a, "tone": {"pass": "ok", "pending": "warn"}.get(
                        a["outcome"], "bad"), "result": _num(a.get("result"))}
                        for a in r["assessment"]]})
    return out


def _weight(b: Any, p: Any, rec: Mapping[str, Any]) -> tuple[float | None, str]:
    """The weight the release tests are judged with: the one recorded at the latest release,
    else the participant's latest weight; and where it comes from, as text."""
    if rec["releases"] and rec["releases"][-1]["weight_kg"] is not None:
        kg = float(rec["releases"][-1]["weight_kg"])
        return kg, f"{kg:g} kg, recorded with the release"
    w = selectors_web.latest_weight(p)
    if w is None:
        return None, "no weight recorded"
    return w[0], f"{w[0]:g} kg, the latest weight (visit of {w[1]})"


@ecrf_view("view")
def product_batch(request: HttpRequest, batch_id: str) -> HttpResponse:
    """The record of one batch, vein to vein, with the dosing gate's verdict now."""
    access = request.access
    b = _batch(request, batch_id)
    p = b.participant
    product = _product()
    rec = selectors.product_record(b.batch_id)
    if rec is None:  # removed since it was looked up: it does not exist
        raise Http404("no such batch")
    weight, weight_text = _weight(b, p, rec)
    now = timezone.now()
    expiry = (product.expiry(b.formulated_at)
              if product is not None and b.formulated_at is not None else None)
    review = [e for e in rec["custody"] if e["to_state"] == State.QA_REVIEW.value]
    locked = _lock_text(p)
    ctx = {
        "b": b, "p": p, "rec": rec, "state": _label(b.state) or "(before the lifecycle)",
        "harvest": rec["harvest"], "harvest_at": _utc((rec["harvest"] or {}).get(
            "collected_at")),
        "received": _utc(rec["received_at"]), "formulated": _utc(rec["formulated_at"]),
        "volume": _num(rec["formulated_volume_ml"]), "expiry": _utc(expiry),
        "expired": expiry is not None and expiry <= now, "released": _utc(rec["released_at"]),
        "steps": _steps(rec, product),
        "qc": _qc_rows(b, product, weight, rec["formulated_volume_ml"]),
        "weight_text": weight_text, "in_review_since": _utc(review[-1]["at"]) if review
        else "", "releases": _releases(b, rec), "custody": _custody(rec),
        "administration": rec["administration"],
        "administered": _utc((rec["administration"] or {}).get("administered_at")),
        "gate": gate_verdict(b, p, product, now, request.user.get_username()),
        "now": _utc(now), "locked": locked,
        "can_enter_qc": access.may("manage_product", p) and not locked,
        "can_administer": (b.state == State.RECEIVED_AT_BEDSIDE.value and not locked
                           and access.may("administer_product", p)),
    }
    return render(request, "hepatrial/web/product.html", ctx)


# ---------------------------------------------------------------------- QC entry
def qc_scopes(b: Any) -> list[Any]:
    """The version scopes of the QC form: the batch (its state, release) and its QC results
    (a result added or changed by someone else since the form was loaded)."""
    from hepatrial.trials.models.product import QcResult
    from hepatrial.trials.services._concurrency import Scope, record_scopes

    return [*record_scopes(b), Scope(QcResult, (("batch_id", b.pk),),
                                     lambda: f"the QC results of batch {b.batch_id}")]


def posted_form(post: Mapping[str, Any]) -> dict[str, str]:
    """The values of a posted QC form, exactly as typed (stripped)."""
    return {k: str(post.get(k, "")).strip() for k in QC_FIELDS}


def stored_form(q: Any) -> dict[str, str]:
    """The form of a stored QC result (to correct it)."""
    return {"test": q.test, "result": q.value_as_entered, "unit": q.unit or "",
            "analyst": q.analyst, "tested_on": q.tested_on.isoformat(), "method": q.method,
            "reason": ""}


def qc_problems(exc: Exception) -> tuple[FieldErrors, int]:
    """``(errors by form field, HTTP status)`` of a refused QC entry: each rule's problem on
    its field (one of no form field - the batch's state, the source - above the form, as
    the store words it), a missing reason on the reason, a lock (409) or another refusal
    above the form (400)."""
    errs = FieldErrors()
    if isinstance(exc, RuleViolation):
        for p in exc.problems:
            if p.field in QC_FIELDS:
                errs.add(p.field, p.reason)
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


def _qc_context(b: Any, form: Mapping[str, str], *,
                errs: FieldErrors | None = None, version: str = "") -> dict[str, Any]:
    from hepatrial.trials.services._concurrency import VERSION_FIELD

    product = _product()
    spec = list(product.release_spec) if product is not None else []
    stored = {q.test: q for q in selectors_web.product_qc_results(b)}
    tests = [{"name": t.name, "unit": t.unit, "spec": t.full_criterion, "method": t.method,
              "stored": stored.get(t.name)} for t in spec]
    typed_test = form.get("test", "")
    return {
        "b": b, "p": b.participant, "form": form, "errors": errs or FieldErrors(),
        "tests": tests, "unknown_test": typed_test if typed_test and typed_test not in {
            t.name for t in spec} else "",
        "current": stored.get(typed_test), "version_field": VERSION_FIELD,
        "version": version, "locked": _lock_text(b.participant), "today": today(),
        "state": _label(b.state) or "(before the lifecycle)",
    }


def _render_qc(request: HttpRequest, ctx: dict[str, Any], status: int = 200) -> HttpResponse:
    return render(request, "hepatrial/web/product_qc.html", ctx, status=status)


@ecrf_view("manage_product")
def product_qc(request: HttpRequest, batch_id: str) -> HttpResponse:
    """Enter (or correct) a QC result of the batch (GET: the form, ``?test=`` a stored
    result loaded; POST: ``services.record_qc_result`` after the version check, or the form
    again with the problems)."""
    from hepatrial.trials.audit.chain import lock_ledger
    from hepatrial.trials.services._concurrency import (
        check_posted_version,
        form_version,
        version_of,
    )

    b = _batch(request, batch_id)
    request.access.require("manage_product", b.participant)
    scopes = qc_scopes(b)
    if request.method != "POST":
        test = str(request.GET.get("test", "")).strip()
        q = next((x for x in selectors_web.product_qc_results(b) if x.test == test), None)
        form = stored_form(q) if q is not None else {**dict.fromkeys(QC_FIELDS, ""),
                                                     "test": test}
        return _render_qc(request, _qc_context(b, form,
                                               version=form_version(scopes)))
    post = request.POST
    form = posted_form(post)
    loaded = form_version(scopes, post)
    if _lock_text(b.participant):
        errs = FieldErrors()
        errs.add(None, f"Locked: {_lock_text(b.participant)}; unlock it with a reason first. "
                       "Nothing was saved.")
        return _render_qc(request, _qc_context(b, form, errs=errs, version=loaded),
                          status=409)
    try:
        with transaction.atomic():
            lock_ledger()  # the store's lock order: the ledger, then the batch row
            check_posted_version(b, post, scopes=scopes)
            was = version_of(scopes)
            q = services.record_qc_result(
                b.batch_id, test=form["test"], result=form["result"],
                unit=form["unit"] or None, analyst=form["analyst"],
                tested_on=form["tested_on"] or None, method=form["method"],
                reason=form["reason"] or None, user=request.user)
            written = version_of(scopes) != was
    except errors.ConcurrentEditError as exc:
        errs = FieldErrors()
        errs.add(None, str(exc))
        now = next((x for x in selectors_web.product_qc_results(b)
                    if x.test == form["test"]), None)
        shown = stored_form(now) if now is not None else form
        return _render_qc(request, _qc_context(b, shown, errs=errs,
                                               version=form_version(qc_scopes(b))),
                          status=409)
    except errors.PermissionDenied as exc:
        raise PermissionDenied(str(exc)) from None
    except errors.StoreError as exc:
        errs, status = qc_problems(exc)
        return _render_qc(request, _qc_context(b, form, errs=errs, version=loaded),
                          status=status)
    said = f"batch {b.batch_id}: {q.test} = {q.value_as_entered} {q.unit}".rstrip()
    if written:
        messages.success(request, f"{said} saved (analyst {q.analyst}, tested on "
                                  f"{q.tested_on}).")
    else:
        messages.info(request, f"{said}: nothing changed, nothing saved.")
    return redirect("web:product", batch_id=b.batch_id)


# ---------------------------------------------------------------------- administration
#: the fields of the administration form, named as the service's arguments (``identifiers``:
#: the ``NAME=VALUE`` text as typed)
ADMIN_FIELDS: tuple[str, ...] = ("scanned_coi", "identifiers", "route", "cells_total",
                                 "volume_ml", "administered_at", "operator", "cells_per_kg",
                                 "dose_override_reason")
#: the problems of the gate and the lifecycle listed as unmet conditions (not on a field)
GATE_FIELDS: frozenset[str] = frozenset({*CONDITIONS, "state"})


def parse_identifiers(text: str) -> tuple[dict[str, str], list[str]]:
    """``(identifiers, problems)`` of the typed patient identifiers: ``NAME=VALUE`` pairs
    separated by commas or new lines, as the CLI's ``--identifiers`` parses them."""
    ids: dict[str, str] = {}
    problems: list[str] = []
    for part in re.split(r"[,\n]", text):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            problems.append(f"{part!r} is not NAME=VALUE (e.g. study_id=A1)")
            continue
        k, v = part.split("=", 1)
        ids[k.strip()] = v.strip()
    return ids, problems


def admin_problems(exc: Exception) -> tuple[list[dict[str, str]], FieldErrors, int]:
    """``(unmet conditions, errors by form field, HTTP status)`` of a refused
    administration: every unmet condition of the dosing gate (and the batch's lifecycle
    ``state``) with its reason, in the service's order; each value's problem on its field
    (an identifier's on ``identifiers``); anything else above the form; a lock 409."""
    unmet: list[dict[str, str]] = []
    errs = FieldErrors()
    if isinstance(exc, RuleViolation):
        for p in exc.problems:
            name = p.field.split(".", 1)[0]
            if p.field in GATE_FIELDS:
                unmet.append({"condition": p.field, "reason": p.reason})
            elif name in ADMIN_FIELDS:
                errs.add(name, p.reason if name == p.field else f"{p.field}: {p.reason}")
            else:
                errs.add(None, str(p))
        return unmet, errs, 400
    if isinstance(exc, errors.RecordLocked):
        errs.add(None, f"Locked: {exc}. Nothing was saved.")
        return unmet, errs, 409
    from hepatrial.trials.services.product import ProductStepRefused

    if isinstance(exc, ProductStepRefused):
        unmet.extend({"condition": u.condition, "reason": u.reason} for u in exc.unmet)
        return unmet, errs, 400
    errs.add(None, str(exc))
    return unmet, errs, 400


def _admin_context(b: Any, form: Mapping[str, str], *, unmet: list[dict[str, str]] | None = None,
                   errs: FieldErrors | None = None) -> dict[str, Any]:
    product = _product()
    routes = list(product.routes) if product is not None else []
    typed = form.get("route", "")
    return {
        "b": b, "p": b.participant, "form": form, "errors": errs or FieldErrors(),
        "unmet": unmet or [], "routes": routes,
        "unknown_route": typed if typed and typed not in routes else "",
        "locked": _lock_text(b.participant), "state": _label(b.state) or
        "(before the lifecycle)",
        "dose": "" if product is None else
        f"{product.cells_min:g}-{product.cells_max:g} {product.dose_unit}",
    }


def _render_admin(request: HttpRequest, ctx: dict[str, Any], status: int = 200
                  ) -> HttpResponse:
    return render(request, "hepatrial/web/product_administer.html", ctx, status=status)


@ecrf_view("administer_product")
def product_administer(request: HttpRequest, batch_id: str) -> HttpResponse:
    """Record the administration of the batch at the bedside (GET: the form; POST:
    ``services.record_administration``, or the form again with every unmet condition)."""
    b = _batch(request, batch_id)
    p = b.participant
    request.access.require("administer_product", p)
    if request.method != "POST":
        form = {**dict.fromkeys(ADMIN_FIELDS, ""),
                "administered_at": f"{timezone.now().astimezone(_dt.UTC):%Y-%m-%dT%H:%M}Z"}
        return _render_admin(request, _admin_context(b, form))
    form = {k: str(request.POST.get(k, "")).strip() for k in ADMIN_FIELDS}
    if _lock_text(p):
        errs = FieldErrors()
        errs.add(None, f"Locked: {_lock_text(p)}; unlock it with a reason first. "
                       "Nothing was saved.")
        return _render_admin(request, _admin_context(b, form, errs=errs), status=409)
    ids, bad = parse_identifiers(form["identifiers"])
    values = {
        "participant": p, "batch_id": b.batch_id, "scanned_coi": form["scanned_coi"],
        "identifiers": ids, "route": form["route"], "cells_total": form["cells_total"],
        "volume_ml": form["volume_ml"], "administered_at": form["administered_at"],
        "operator": form["operator"], "cells_per_kg": form["cells_per_kg"] or None,
        "dose_override_reason": form["dose_override_reason"],
    }
    a = None
    unmet: list[dict[str, str]] = []
    errs, status = FieldErrors(), 400
    try:
        if bad:  # not written: the gate is still judged, to name every unmet condition
            services.check_administration(**values)
        else:
            a = services.record_administration(**values, user=request.user)
    except errors.PermissionDenied as exc:
        raise PermissionDenied(str(exc)) from None
    except errors.StoreError as exc:
        unmet, errs, status = admin_problems(exc)
    for m in bad:
        errs.add("identifiers", m)
    if a is None:
        return _render_admin(request, _admin_context(b, form, unmet=unmet, errs=errs),
                             status=status)
    per = f", {a.cells_per_kg:.4g} cells/kg" if a.cells_per_kg else ""
    messages.success(request, f"batch {b.batch_id} administered to {p.study_id}: "
                              f"{a.cells_total:.4g} cells{per} by {a.route} at "
                              f"{_utc(a.administered_at)} (operator {a.operator}).")
    return redirect("web:product", batch_id=b.batch_id)


P = "products/<str:batch_id>/"

#: added to the ``web`` namespace by :mod:`hepatrial.trials.web.urls` (``EXTENSIONS``)
urlpatterns = [
    path("products/", product_list, name="products"),
    path(P, product_batch, name="product"),
    path(P + "qc/", product_qc, name="product_qc"),
    path(P + "administer/", product_administer, name="product_administer"),
]
