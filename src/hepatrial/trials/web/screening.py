"""Screening and enrolment pages: the form generated from the protocol's eligibility inputs,
each criterion judged as the coordinator types, consent, enrol, status changes.

The live result (htmx posting to the evaluate endpoints) is the protocol's pure evaluation of
what is in the form - the same functions the store runs when it assesses
(:func:`hepatrial.trials.validators.eligibility.parse_screening`,
:func:`~hepatrial.trials.validators.eligibility.evaluation_data`,
:meth:`hepatrial.protocol.models.Protocol.screen`): nothing is stored until a button is
pressed, and every write goes through the services.

The participant's screening form carries the version of the participant it was loaded at
(optimistic concurrency, :mod:`hepatrial.trials.services._concurrency`): a save after someone
else changed the participant is refused with HTTP 409, nothing written, the current values
shown and a message naming who changed what and when.
"""

from __future__ import annotations

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
from hepatrial.trials.validators import RuleViolation
from hepatrial.trials.validators import eligibility as elig
from hepatrial.trials.validators._common import Problem
from hepatrial.trials.web.access import ecrf_view
from hepatrial.trials.web.common import (
    STATUS_ACTIONS,
    FieldErrors,
    parse_date,
    store_errors,
    today,
)

DEMOGRAPHICS = ("study_id", "site", "sex", "year_of_birth", "etiology", "screening_date")


@dataclass
class InputField:
    """One eligibility input as a form field (``sd-<name>``; a lab's unit ``sd-<name>-unit``)."""

    name: str
    kind: str
    label: str
    unit: str = ""
    units: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    value: str = ""
    unit_value: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def is_lab(self) -> bool:
        """A lab value entered with a unit chosen from the analyte registry."""
        return bool(self.units)


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def input_fields(proto: Any, values: Mapping[str, Any], errs: FieldErrors) -> list[InputField]:
    """The protocol's entered eligibility inputs as form fields, in protocol order, filled
    with ``values`` (``{name: value}`` with a lab as ``{"value", "unit"}``, the stored form)."""
    from hepatrial.protocol import analytes

    out = []
    for inp in proto.entered_inputs:
        f = InputField(inp.name, inp.kind, inp.label or inp.name, unit=inp.unit or "",
                       choices=tuple(inp.choices))
        v = values.get(inp.name)
        if inp.analyte is not None:
            a = analytes.analyte(inp.analyte)
            f.units = tuple(a.units)
            f.unit = a.unit
            if isinstance(v, Mapping):
                f.value, f.unit_value = _text(v.get("value")), _text(v.get("unit"))
            else:
                f.value = _text(v)
            f.unit_value = f.unit_value or a.unit
        else:
            f.value = _text(v)
        f.errors = list(errs.get(f"screening_data.{inp.name}", []))
        out.append(f)
    return out


def posted_screening(proto: Any, post: Mapping[str, Any]) -> dict[str, Any]:
    """The screening data in a posted form: ``{name: value}`` for every entered input given
    (a lab as ``{"value": text, "unit": unit}``, text exactly as typed); empty = not given."""
    out: dict[str, Any] = {}
    for inp in proto.entered_inputs:
        raw = str(post.get(f"sd-{inp.name}", "")).strip()
        if not raw:
            continue
        if inp.analyte is not None:
            out[inp.name] = {"value": raw, "unit": str(post.get(f"sd-{inp.name}-unit", ""))}
        else:
            out[inp.name] = raw
    return out


def _int(text: Any) -> int | None:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


def evaluate(proto: Any, data: Mapping[str, Any], *, sex: str, etiology: str,
             year_of_birth: Any, screening_date: Any, consented: bool
             ) -> tuple[bool | None, list[dict[str, Any]], FieldErrors]:
    """The protocol's verdict on screening data, criterion by criterion (pure: no write).

    Inputs that break a rule are left out of the evaluation (their criteria are undecided)
    and returned as field errors. Returns ``(eligible, rows, errors)``; each row is
    ``{id, text, kind, met, passes, value, reason}``."""
    errs = FieldErrors()
    yob, sd = _int(year_of_birth), parse_date(screening_date)
    typed: dict[str, Any] = {}
    try:
        typed = elig.parse_screening(proto, data, record="screening", year_of_birth=yob,
                                     screening_date=sd).typed
    except RuleViolation as exc:
        for p in exc.problems:
            errs.add(p.field, p.reason)
        bad = {p.field.removeprefix("screening_data.") for p in exc.problems}
        try:
            typed = elig.parse_screening(
                proto, {k: v for k, v in data.items() if k not in bad}, record="screening",
                year_of_birth=yob, screening_date=sd).typed
        except RuleViolation:
            typed = {}
    if yob is not None and sd is not None and sex and etiology:
        ev = elig.evaluation_data(proto, typed, sex=sex, etiology=etiology, year_of_birth=yob,
                                  screening_date=sd, consented=consented)
    else:  # demographics incomplete: what is known (the age criterion stays undecided)
        ev = {"informed_consent": bool(consented)}
        if sex:
            ev["sex"] = sex
        if etiology:
            ev["etiology"] = etiology
        if yob is not None and sd is not None:
            ev["age"] = elig.age_at_screening(yob, sd)
        ev.update(typed)
    result = proto.screen(ev)
    rows = [{"id": r.criterion_id, "text": c.text, "kind": r.kind, "met": r.met,
             "passes": r.passes, "value": r.value_used, "reason": r.reason}
            for c, r in zip(proto.eligibility, result.results, strict=True)]
    return result.eligible, rows, errs


def _criteria_context(proto: Any, post: Mapping[str, Any], participant: Any = None
                      ) -> dict[str, Any]:
    data = posted_screening(proto, post)
    if participant is not None:
        sex = post.get("sex", participant.sex)
        etiology = post.get("etiology", participant.etiology)
        yob = post.get("year_of_birth", participant.year_of_birth)
        sd = post.get("screening_date", participant.screening_date.isoformat())
        consented = selectors_web.has_consent(participant)
    else:
        sex, etiology = post.get("sex", ""), post.get("etiology", "")
        yob, sd = post.get("year_of_birth", ""), post.get("screening_date", "")
        consented = bool(str(post.get("consent_version", "")).strip()
                         and parse_date(post.get("consent_date")))
    eligible, rows, errs = evaluate(proto, data, sex=str(sex), etiology=str(etiology),
                                    year_of_birth=yob, screening_date=sd, consented=consented)
    return {"eligible": eligible, "criteria": rows, "input_errors": errs,
            "consented": consented}


# ---------------------------------------------------------------------- new screening
def _new_context(request: HttpRequest, proto: Any, post: Mapping[str, Any],
                 errs: FieldErrors) -> dict[str, Any]:
    access = request.access  # type: ignore[attr-defined]
    ctx = _criteria_context(proto, post)
    for name, msgs in ctx["input_errors"].items():
        for m in msgs:
            if m not in errs.get(name, []):
                errs.add(name, m)
    return {
        "proto": proto, "errors": errs, "post": post,
        "fields": input_fields(proto, posted_screening(proto, post), errs),
        "sites": [s for s in access.sites()],
        "sexes": vocab.SEX, "etiologies": [(e, e) for e in proto.etiologies],
        "today": today(), **ctx,
    }


@ecrf_view("enter_data")
def screen_new(request: HttpRequest) -> HttpResponse:
    """Screen a new participant: demographics, the protocol's eligibility inputs (each lab
    with its unit), an optional consent; the criteria are judged live. Saving registers the
    participant (``services.screen_participant``) and the consent (``record_consent``)."""
    access = request.access  # type: ignore[attr-defined]
    proto = services.active_protocol()
    errs = FieldErrors()
    if request.method == "POST":
        post = request.POST
        site = access.sites()
        codes = {s.code for s in site}
        site_code = str(post.get("site", "")).strip()
        if site_code not in codes:
            errs.add("site", f"{site_code or '(none)'!r} is not one of your sites "
                             f"({', '.join(sorted(codes)) or 'none'})")
        consent_version = str(post.get("consent_version", "")).strip()
        consent_date = str(post.get("consent_date", "")).strip()
        if bool(consent_version) != bool(consent_date):
            errs.add("consent_date" if consent_version else "consent_version",
                     "give both the consent version and its date (or neither)")
        if not errs:
            try:
                with transaction.atomic():
                    p = services.screen_participant(
                        study_id=post.get("study_id", ""), site=site_code,
                        sex=post.get("sex", ""), year_of_birth=post.get("year_of_birth", ""),
                        etiology=post.get("etiology", ""),
                        screening_date=post.get("screening_date", ""),
                        screening_data=posted_screening(proto, post), user=request.user)
                    if consent_version:
                        try:
                            services.record_consent(participant=p, version=consent_version,
                                                    date=consent_date, user=request.user)
                        except RuleViolation as exc:
                            raise RuleViolation([Problem(q.record, f"consent_{q.field}",
                                                         q.reason) for q in exc.problems]
                                                ) from None
            except (errors.StoreError, errors.PermissionDenied) as exc:
                errs = store_errors(exc)
            else:
                messages.success(request, f"Participant {p.study_id} screened.")
                return redirect("web:screening", study_id=p.study_id)
    else:
        post = {"screening_date": today().isoformat(), **request.GET.dict()}
        if len(access.sites()) == 1:
            post.setdefault("site", access.sites()[0].code)
    return render(request, "hepatrial/web/screen_new.html",
                  _new_context(request, proto, post, errs),
                  status=400 if errs else 200)


@require_POST
@ecrf_view("enter_data")
def screen_evaluate(request: HttpRequest) -> HttpResponse:
    """htmx: the criteria judged on the new-screening form as typed (nothing stored)."""
    proto = services.active_protocol()
    ctx = _criteria_context(proto, request.POST)
    return render(request, "hepatrial/web/_criteria.html", ctx)


# ---------------------------------------------------------------------- a participant
def _participant_context(request: HttpRequest, p: Any, proto: Any, *,
                         post: Mapping[str, Any] | None = None,
                         errs: FieldErrors | None = None,
                         enrol_reasons: list[str] | None = None) -> dict[str, Any]:
    access = request.access  # type: ignore[attr-defined]
    errs = errs if errs is not None else FieldErrors()
    values = posted_screening(proto, post) if post is not None else dict(p.screening_data or {})
    crit_post = post if post is not None else _stored_post(proto, p)
    ctx = _criteria_context(proto, crit_post, p)
    latest = selectors_web.latest_assessment(p)
    current = None
    if latest is not None:
        try:
            current = elig.assessment_is_current(latest.screening_data, _evaluation_now(p, proto))
        except RuleViolation:
            current = False
    return {
        "p": p, "proto": proto, "errors": errs, "post": post or {},
        "fields": input_fields(proto, values, errs),
        "sexes": vocab.SEX, "etiologies": [(e, e) for e in proto.etiologies],
        "consents": selectors_web.consents(p),
        "assessments": selectors_web.assessments(p),
        "latest": latest, "latest_current": current,
        "can_enter": access.may("enter_data", p), "readonly": not access.may("enter_data", p),
        "status_actions": STATUS_ACTIONS, "today": today(),
        "enrol_reasons": enrol_reasons or [], "versions": _versions(p, post), **ctx,
    }


def _versions(p: Any, post: Mapping[str, Any] | None) -> dict[str, str]:
    """The hidden version field: the participant's version the form was loaded with (kept
    when the form is shown again after a refusal)."""
    from hepatrial.trials.services._concurrency import VERSION_FIELD, form_version

    return {VERSION_FIELD: form_version(p, post)}


def _stored_post(proto: Any, p: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, v in (p.screening_data or {}).items():
        if isinstance(v, Mapping):
            out[f"sd-{name}"], out[f"sd-{name}-unit"] = _text(v.get("value")), _text(
                v.get("unit"))
        else:
            out[f"sd-{name}"] = _text(v)
    return out


def _evaluation_now(p: Any, proto: Any) -> dict[str, Any]:
    s = elig.parse_screening(proto, p.screening_data, record=f"participant {p}",
                             year_of_birth=p.year_of_birth, screening_date=p.screening_date)
    return elig.evaluation_data(proto, s.typed, sex=p.sex, etiology=p.etiology,
                                year_of_birth=p.year_of_birth, screening_date=p.screening_date,
                                consented=selectors_web.has_consent(p))


@ecrf_view("view")
def screening(request: HttpRequest, study_id: str) -> HttpResponse:
    """A participant's screening: demographics and screening data (corrections with a
    reason), the criteria judged live, consents, assessments, Enrol."""
    access = request.access  # type: ignore[attr-defined]
    if request.method == "POST":
        access.require("enter_data")
    p = access.participant(study_id)
    proto = services.active_protocol()
    if request.method == "POST":
        access.require("enter_data", p)
        post = request.POST
        changes: dict[str, Any] = {"screening_data": posted_screening(proto, post)}
        for name in ("sex", "year_of_birth", "etiology", "screening_date"):
            if name in post:
                changes[name] = post[name]
        from hepatrial.trials.services._concurrency import check_posted_version

        try:
            with transaction.atomic():
                check_posted_version(p, post)
                services.update_participant(p, reason=post.get("reason") or None,
                                            user=request.user, **changes)
        except errors.ConcurrentEditError as exc:
            p.refresh_from_db()
            errs = FieldErrors()
            errs.add(None, str(exc))
            return render(request, "hepatrial/web/screening.html",
                          _participant_context(request, p, proto, errs=errs), status=409)
        except (errors.StoreError, errors.PermissionDenied) as exc:
            p.refresh_from_db()
            return render(request, "hepatrial/web/screening.html",
                          _participant_context(request, p, proto, post=post,
                                               errs=store_errors(exc)), status=400)
        messages.success(request, f"Screening data of {p.study_id} saved.")
        return redirect("web:screening", study_id=p.study_id)
    return render(request, "hepatrial/web/screening.html",
                  _participant_context(request, p, proto))


@require_POST
@ecrf_view("enter_data")
def participant_evaluate(request: HttpRequest, study_id: str) -> HttpResponse:
    """htmx: the criteria judged on a participant's screening form as typed (no write)."""
    access = request.access  # type: ignore[attr-defined]
    p = access.participant(study_id)
    access.require("enter_data", p)
    proto = services.active_protocol()
    return render(request, "hepatrial/web/_criteria.html",
                  _criteria_context(proto, request.POST, p))


@require_POST
@ecrf_view("enter_data")
def consent(request: HttpRequest, study_id: str) -> HttpResponse:
    """Record an informed consent (version, date): ``services.record_consent``."""
    access = request.access  # type: ignore[attr-defined]
    p = access.participant(study_id)
    access.require("enter_data", p)
    try:
        with transaction.atomic():
            services.record_consent(participant=p, version=request.POST.get("version", ""),
                                    date=request.POST.get("date", ""), user=request.user)
    except (errors.StoreError, errors.PermissionDenied) as exc:
        errs = store_errors(exc, prefix="consent_")
        return render(request, "hepatrial/web/screening.html", _participant_context(
            request, p, services.active_protocol(), errs=errs), status=400)
    messages.success(request, f"Consent of {p.study_id} recorded.")
    return redirect("web:screening", study_id=p.study_id)


@require_POST
@ecrf_view("enter_data")
def assess(request: HttpRequest, study_id: str) -> HttpResponse:
    """Store an eligibility assessment now (``services.assess_eligibility``); an ineligible
    participant becomes screen-failed."""
    access = request.access  # type: ignore[attr-defined]
    p = access.participant(study_id)
    access.require("enter_data", p)
    try:
        with transaction.atomic():
            a = services.assess_eligibility(participant=p, assessed_on=today(),
                                            user=request.user)
    except (errors.StoreError, errors.PermissionDenied) as exc:
        return render(request, "hepatrial/web/screening.html", _participant_context(
            request, p, services.active_protocol(), errs=store_errors(exc)), status=400)
    verdict = {True: "eligible", False: "not eligible", None: "undecided"}[a.eligible]
    messages.success(request, f"Eligibility of {p.study_id} assessed: {verdict}.")
    return redirect("web:screening", study_id=p.study_id)


def enrolment_refusals(p: Any, proto: Any, enrolment_date: str) -> list[str]:
    """Every reason ``p`` cannot be enrolled on ``enrolment_date`` now (empty: it can), without
    writing: the criteria the protocol says are failed or undecided on the stored data, and
    the store's enrolment rules (``services.check_enrolment``) other than the assessment
    itself, which enrolment makes."""
    out: list[str] = []
    _eligible, rows, errs = evaluate(
        proto, p.screening_data or {}, sex=p.sex, etiology=p.etiology,
        year_of_birth=p.year_of_birth, screening_date=p.screening_date.isoformat(),
        consented=selectors_web.has_consent(p))
    out.extend(errs.all_messages())
    for r in rows:
        if r["passes"] is False:
            out.append(f"{r['id']} ({r['text']}): not met - {r['reason']}")
        elif r["passes"] is None:
            out.append(f"{r['id']} ({r['text']}): undecided - {r['reason']}")
    try:
        services.check_enrolment(participant=p, enrolment_date=enrolment_date)
    except RuleViolation as exc:
        out.extend(f"{q.field}: {q.reason}" for q in exc.problems if q.field != "eligibility")
    except errors.StoreError as exc:
        out.append(str(exc))
    return out


@require_POST
@ecrf_view("enter_data")
def enrol(request: HttpRequest, study_id: str) -> HttpResponse:
    """Enrol: either the participant is assessed (when no current assessment exists) and
    enrolled with its visits scheduled (``services.assess_eligibility`` +
    ``enrol_participant``, one transaction), or every reason it cannot be is listed and
    nothing is stored."""
    access = request.access  # type: ignore[attr-defined]
    p = access.participant(study_id)
    access.require("enter_data", p)
    proto = services.active_protocol()
    d0_text = str(request.POST.get("enrolment_date", "")).strip()
    reasons = enrolment_refusals(p, proto, d0_text)
    if not reasons:
        d0 = parse_date(d0_text)
        try:
            with transaction.atomic():
                latest = selectors_web.latest_assessment(p)
                fresh = latest is not None and latest.eligible is True and \
                    elig.assessment_is_current(latest.screening_data, _evaluation_now(p, proto))
                if not fresh:
                    on = d0 if d0 is not None and p.screening_date <= d0 <= today() else today()
                    services.assess_eligibility(participant=p, assessed_on=on,
                                                user=request.user)
                services.enrol_participant(participant=p, enrolment_date=d0_text,
                                           user=request.user)
        except RuleViolation as exc:
            reasons = [f"{q.field}: {q.reason}" for q in exc.problems]
        except (errors.StoreError, errors.PermissionDenied) as exc:
            reasons = [str(exc)]
    if reasons:
        p.refresh_from_db()
        return render(request, "hepatrial/web/screening.html", _participant_context(
            request, p, proto, enrol_reasons=reasons), status=400)
    messages.success(request, f"{p.study_id} enrolled on {d0_text}; visits scheduled.")
    return redirect("web:casebook", study_id=p.study_id)


@require_POST
@ecrf_view("enter_data")
def status(request: HttpRequest, study_id: str) -> HttpResponse:
    """Withdrawal, death, transplant or completion, with its date and reason
    (``services.change_status``)."""
    from hepatrial.trials.web.casebook import casebook_response

    access = request.access  # type: ignore[attr-defined]
    p = access.participant(study_id)
    access.require("enter_data", p)
    new = str(request.POST.get("status", ""))
    if new not in dict(STATUS_ACTIONS):
        errs = FieldErrors()
        errs.add("status", f"{new!r} is not one of {', '.join(dict(STATUS_ACTIONS))}")
        return casebook_response(request, p, status_errors=errs, status=400)
    try:
        with transaction.atomic():
            services.change_status(participant=p, status=new,
                                   date=request.POST.get("date", ""),
                                   reason=request.POST.get("reason", ""), user=request.user)
    except (errors.StoreError, errors.PermissionDenied) as exc:
        p.refresh_from_db()
        errs = store_errors(exc, fields={"status_date": "date"})
        return casebook_response(request, p, status_errors=errs, status=400)
    messages.success(request, f"{p.study_id}: status {new} recorded.")
    return redirect("web:casebook", study_id=p.study_id)
