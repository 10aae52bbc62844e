"""The SAE chain in the eCRF (issue 12): each step a record signed with the store's
e-signature, each due date visible.

* **Submit report** (``participants/<study_id>/adverse-events/<pk>/report/``, ``report_sae``:
  the investigator of the participant's site): the reports the serious adverse event owes now
  (:func:`hepatrial.trials.selectors.sae_cases`: kind, deadline in the trial's time zone,
  status, time left or overdue) and the form of the investigator's report the clock asks for
  next - the initial report (24 h after the site became aware) until it is made, then the
  follow-up (``final`` once the event is closed). The signer reads the meaning of the
  signature (21 CFR 11.50), chooses it and re-enters the password (11.200(a): a wrong one is
  refused and counted by the store, five in a row deactivate the account), as on the visit
  signature page (:mod:`hepatrial.trials.web.signing`).
* **Assess** (``.../adverse-events/<pk>/assess/``, ``assess_sae``: the sponsor): the
  sponsor's causality (product, procedure), expectedness against the reference safety
  information and rationale, signed likewise; the store decides SUSAR from it (serious,
  suspected of the product in the investigator's or the sponsor's opinion, unexpected) and
  the expedited SUSAR clock (7 or 15 days) appears on the event.

Every write is :func:`hepatrial.trials.services.safety.report_sae` /
:func:`~hepatrial.trials.services.safety.assess_sae`, so the store's rules
(:mod:`hepatrial.trials.validators.sae`), its permission and password checks apply as on the
CLI and the admin. A refused step writes no report or assessment (the store only counts a
wrong password) and shows the form again with every value as typed (never the password) and
each problem on the field it names (``submitted_at`` on the submission time; a problem of the
event itself above the form). An empty password or no meaning chosen is refused on the page
before the store is asked (not counted as a signing attempt, as on the signature page).

Role and site are checked on the server for every request (:class:`~hepatrial.trials.web.
access.Access`): a role without the action gets 403, another site's participant or another
participant's event 404.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils import timezone

from hepatrial import errors, vocab
from hepatrial.trials import selectors, selectors_web, services
from hepatrial.trials.selectors import ae_record_id
from hepatrial.trials.services import safety
from hepatrial.trials.validators import RuleViolation
from hepatrial.trials.web.access import ecrf_view
from hepatrial.trials.web.adverse_events import _reports
from hepatrial.trials.web.common import FieldErrors
from hepatrial.trials.web.safety_worklist import KIND_LABELS, OWED

__all__ = [
    "ASSESS_MEANINGS",
    "INVESTIGATOR_KINDS",
    "REPORT_MEANINGS",
    "sae_assess",
    "sae_report",
    "urlpatterns",
]

#: the reports of the chain the investigator makes (``report_sae``); the expedited SUSAR
#: reports are the sponsor's (``assess_sae``)
INVESTIGATOR_KINDS: tuple[str, ...] = ("initial", "follow_up")
#: the meanings an investigator may state when signing an SAE report (21 CFR 11.50(a)(3))
REPORT_MEANINGS: tuple[str, ...] = (
    "I submit this serious adverse event report to the sponsor",
    "I confirm this report is accurate and complete as recorded in the source documents",
)
#: the meanings the sponsor may state when signing the causality assessment
ASSESS_MEANINGS: tuple[str, ...] = (
    "I sign the sponsor's causality and expectedness assessment of this serious adverse "
    "event",
)
#: a problem the store names on a value the form enters under another name
REPORT_FIELD: dict[str, str] = {"submitted_at": "submitted"}
REPORT_FIELDS: frozenset[str] = frozenset(
    {"kind", "narrative", "submitted", "time_zone", "fold", "final", "meaning", "password"})
ASSESS_FIELDS: frozenset[str] = frozenset(
    {"relatedness_product", "relatedness_procedure", "procedure", "expectedness", "comment",
     "meaning", "password"})


def _plan() -> Any:
    """The protocol's safety plan (None when the protocol has none)."""
    return getattr(services.active_protocol(), "safety", None)


def _event(request: Any, study_id: str, pk: int, action: str) -> tuple[Any, Any]:
    """The participant (of the user's sites, else 404) and its adverse event ``pk`` (else
    404); ``action`` is required on the participant (403)."""
    access = request.access
    p = access.participant(study_id)
    access.require(action, p)
    ae = selectors_web.adverse_event_of(p, pk)
    if ae is None:
        raise Http404("no such adverse event")
    return p, ae


def _case(ae: Any, plan: Any, now: _dt.datetime) -> dict[str, Any] | None:
    """The SAE reporting case of a serious event now (None for a non-serious one)."""
    if not ae.serious:
        return None
    return next(iter(selectors.sae_cases(plan, now, pks=[ae.pk])), None)


def _signature_problems(form: Mapping[str, Any], password: str, meanings: tuple[str, ...]
                        ) -> FieldErrors:  # fmt: skip
    """The page's own checks of a signature: a meaning of ``meanings`` and a password."""
    errs = FieldErrors()
    if form["meaning"] not in meanings:
        errs.add("meaning", "choose the meaning of your signature")
    if not password:
        errs.add("password", "enter your password to sign (it is checked again for every "
                             "signature)")
    return errs


def refusal(exc: Exception, fields: frozenset[str], rename: Mapping[str, str] | None = None
            ) -> FieldErrors:  # fmt: skip
    """The store's refusal of a signed step as :class:`FieldErrors`: each rule's problem on
    the form field it names (``rename`` maps a store field to the form's), a problem of no
    form field (e.g. the event is not serious) above the form with its record and field, a
    wrong password on the password, any other refusal above the form."""
    errs = FieldErrors()
    if isinstance(exc, RuleViolation):
        for p in exc.problems:
            name = (rename or {}).get(p.field, p.field)
            if name in fields:
                errs.add(name, p.reason)
            else:
                errs.add(None, str(p))
    elif isinstance(exc, errors.AuthenticationFailed):
        errs.add("password", str(exc))
    else:
        errs.add(None, str(exc))
    return errs


def _header(p: Any, ae: Any, plan: Any, now: _dt.datetime) -> dict[str, Any]:
    """What both pages show of the event: its record (CIOMS-I values), the reports it owes
    with their deadlines and those submitted, in the trial's time zone."""
    tz = plan.reporting.tz if plan is not None else _dt.UTC
    case = _case(ae, plan, now)
    return {"p": p, "ae": ae, "ae_id": ae_record_id(ae.pk), "case": case,
            "sae": _reports(case, now, tz), "time_zone": str(tz),
            "record": selectors.sae_form_record(ae.pk, services.active_protocol(), now=now)}


# ---------------------------------------------------------------------- the SAE report
def owed_kinds(case: Mapping[str, Any] | None) -> list[str]:
    """The investigator's reports the case owes now (pending or overdue), the one due first
    first: the first is the report the clock asks for next."""
    if case is None:
        return []
    owed = sorted((r for r in case["reports"]
                   if r["kind"] in INVESTIGATOR_KINDS and r["status"] in OWED),
                  key=lambda r: r["deadline"])
    return list(dict.fromkeys(r["kind"] for r in owed))


def posted_report(post: Mapping[str, Any]) -> dict[str, Any]:
    """The values of a posted report form as typed (text stripped, ``final`` a bool)."""
    form: dict[str, Any] = {k: str(post.get(k, "")).strip()
                            for k in ("kind", "submitted", "time_zone", "fold", "meaning")}
    form["narrative"] = str(post.get("narrative", "")).strip()
    form["final"] = bool(post.get("final"))
    return form


def _blank_report(kinds: list[str], plan: Any) -> dict[str, Any]:
    return {"kind": kinds[0] if kinds else "", "narrative": "", "submitted": "",
            "time_zone": plan.reporting.time_zone if plan is not None else "", "fold": "",
            "final": False, "meaning": REPORT_MEANINGS[0]}


def _report_context(request: HttpRequest, p: Any, ae: Any, form: Mapping[str, Any] | None,
                    errs: FieldErrors | None = None) -> dict[str, Any]:
    plan = _plan()
    now = timezone.now()
    ctx = _header(p, ae, plan, now)
    kinds = owed_kinds(ctx["case"])
    ctx.update({
        "kinds": [(k, KIND_LABELS.get(k, k), dict(vocab.SAE_REPORT_KIND)[k]) for k in kinds],
        "next_kind": KIND_LABELS.get(kinds[0], kinds[0]) if kinds else "",
        "form": form if form is not None else _blank_report(kinds, plan),
        "errors": errs or FieldErrors(), "meanings": REPORT_MEANINGS,
        "trial_time_zone": plan.reporting.time_zone if plan is not None else "",
    })
    return ctx


def _render_report(request: HttpRequest, ctx: dict[str, Any], status: int = 200
                   ) -> HttpResponse:  # fmt: skip
    return render(request, "hepatrial/web/sae_report.html", ctx, status=status)


@ecrf_view("report_sae")
def sae_report(request: HttpRequest, study_id: str, pk: int) -> HttpResponse:
    """The SAE report the clock asks for next (GET: the reports owed and the form; POST:
    ``services.safety.report_sae`` signed with the password and the meaning chosen, or the
    form again with the problems and nothing written)."""
    p, ae = _event(request, study_id, pk, "report_sae")
    if request.method != "POST":
        return _render_report(request, _report_context(request, p, ae, None))
    form = posted_report(request.POST)
    password = str(request.POST.get("password", ""))
    errs = _signature_problems(form, password, REPORT_MEANINGS)
    if not errs:
        try:
            r = safety.report_sae(
                ae, kind=form["kind"], narrative=form["narrative"], user=request.user,
                password=password, submitted=form["submitted"].replace("T", " ", 1) or None,
                time_zone=form["time_zone"] or None, fold=form["fold"] or None,
                final=form["final"], meaning=form["meaning"])
        except errors.PermissionDenied as exc:
            raise PermissionDenied(str(exc)) from None
        except (errors.StoreError, errors.AuthenticationFailed,
                errors.AuditIntegrityError) as exc:
            errs = refusal(exc, REPORT_FIELDS, REPORT_FIELD)
        else:
            tz = _plan().reporting.tz if _plan() is not None else _dt.UTC
            due = "" if r.deadline is None else (
                f", due {r.deadline.astimezone(tz):%Y-%m-%d %H:%M} {tz}"
                f"{'' if r.on_time else ' (LATE)'}")
            messages.success(request, f"{KIND_LABELS.get(r.kind, r.kind)} of "
                             f"{ae_record_id(ae.pk)} signed by {r.printed_name} "
                             f"({r.meaning}) at {r.signed_at:%Y-%m-%d %H:%M} UTC{due}.")
            return redirect("web:adverse_events", study_id=p.study_id)
    return _render_report(request, _report_context(request, p, ae, form, errs), status=400)


# ---------------------------------------------------------------------- the assessment
ASSESS_TEXT = ("relatedness_product", "relatedness_procedure", "procedure", "expectedness",
               "comment", "meaning")


def posted_assessment(post: Mapping[str, Any]) -> dict[str, Any]:
    """The values of a posted assessment form as typed (text stripped)."""
    return {k: str(post.get(k, "")).strip() for k in ASSESS_TEXT}


def _assess_context(request: HttpRequest, p: Any, ae: Any, form: Mapping[str, Any] | None,
                    errs: FieldErrors | None = None) -> dict[str, Any]:
    plan = _plan()
    ctx = _header(p, ae, plan, timezone.now())
    blank = dict.fromkeys(ASSESS_TEXT, "")
    blank["meaning"] = ASSESS_MEANINGS[0]
    ctx.update({
        "form": form if form is not None else blank, "errors": errs or FieldErrors(),
        "meanings": ASSESS_MEANINGS, "relatedness": vocab.RELATEDNESS,
        "procedures": vocab.SAFETY_PROCEDURE, "expectedness": vocab.EXPECTEDNESS,
        "causality": ctx["record"]["causality"],
    })
    return ctx


def _render_assess(request: HttpRequest, ctx: dict[str, Any], status: int = 200
                   ) -> HttpResponse:  # fmt: skip
    return render(request, "hepatrial/web/sae_assess.html", ctx, status=status)


@ecrf_view("assess_sae")
def sae_assess(request: HttpRequest, study_id: str, pk: int) -> HttpResponse:
    """The sponsor's causality and expectedness assessment of an SAE (GET: the event, the
    investigator's causality, the form; POST: ``services.safety.assess_sae`` as the sponsor,
    signed, which decides SUSAR; or the form again with the problems, nothing written)."""
    p, ae = _event(request, study_id, pk, "assess_sae")
    if request.method != "POST":
        return _render_assess(request, _assess_context(request, p, ae, None))
    form = posted_assessment(request.POST)
    password = str(request.POST.get("password", ""))
    errs = _signature_problems(form, password, ASSESS_MEANINGS)
    if not errs:
        try:
            a = safety.assess_sae(
                ae, assessor="sponsor", relatedness_product=form["relatedness_product"],
                relatedness_procedure=form["relatedness_procedure"],
                procedure=form["procedure"] or None, expectedness=form["expectedness"] or None,
                comment=form["comment"], user=request.user, password=password,
                meaning=form["meaning"])
        except errors.PermissionDenied as exc:
            raise PermissionDenied(str(exc)) from None
        except (errors.StoreError, errors.AuthenticationFailed,
                errors.AuditIntegrityError) as exc:
            errs = refusal(exc, ASSESS_FIELDS)
        else:
            messages.success(
                request, f"Sponsor assessment of {ae_record_id(ae.pk)} signed by "
                f"{a.printed_name}: product {a.relatedness_product}, procedure "
                f"{a.relatedness_procedure}, expectedness {a.expectedness or '-'}; "
                f"{'SUSAR: the expedited report is due' if a.susar else 'not a SUSAR'}.")
            return redirect("web:adverse_events", study_id=p.study_id)
    return _render_assess(request, _assess_context(request, p, ae, form, errs), status=400)


P = "participants/<str:study_id>/adverse-events/<int:pk>/"

#: added to the ``web`` namespace by :mod:`hepatrial.trials.web.urls` (``EXTENSIONS``)
urlpatterns = [
    path(P + "report/", sae_report, name="sae_report"),
    path(P + "assess/", sae_assess, name="sae_assess"),
]
