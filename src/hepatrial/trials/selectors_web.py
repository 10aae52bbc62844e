"""Read functions of the eCRF pages (the worklist, the site dashboard, the casebook, the CRF).

Kept apart from :mod:`hepatrial.trials.selectors` (the read path of the exporter, the report and
the analysis bundle): these return plain Python values for templates, scoped to the sites a
user may see (``site_ids``: :func:`hepatrial.trials.services.permissions.site_ids_of`), in a
stable order. They never write.

Definitions used by every page (one place):

* **visit state** (:func:`visit_state`): ``done`` (the visit has a date: in window, early or
  late), ``missed`` (missed or not done), and for a visit still scheduled ``not_due`` (today is
  before the window opens), ``due`` (today is inside the window, bounds inclusive) or
  ``overdue`` (the window has closed). The window is the one stored with the visit (day 0 +
  target day + lower/upper bound), as :meth:`hepatrial.protocol.models.Visit.contains` defines
  it.
* **due soon**: a visit not due yet whose window opens within :data:`DUE_SOON_DAYS` days.
* **items of a visit** (:func:`visit_items`): the visit's ``measurements`` in the protocol
  (lab analytes; ``weight`` is the clinical assessment's weight). An item is *present* when
  its value is stored, *not done* when the visit has a "not done" record for it (a protocol
  deviation whose description starts with :data:`NOT_DONE_PREFIX`, written by the CRF through
  ``services.record_deviation``), else *missing*. A done visit's forms are *complete* when no
  item is missing.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q, QuerySet

from hepatrial.trials.models import (
    ClinicalAssessment,
    Consent,
    EligibilityAssessment,
    LabResult,
    Lock,
    Participant,
    ProtocolDeviation,
    Signature,
    Site,
    Visit,
)

__all__ = [
    "DONE",
    "DUE_SOON_DAYS",
    "HISTORY_MODELS",
    "NOT_DONE_PREFIX",
    "VisitItems",
    "active_locks_by_visit",
    "deviations",
    "enrolment_by_month",
    "field_history",
    "meld_trajectory",
    "missing_items",
    "not_done_description",
    "not_done_items",
    "participants",
    "site_matrix",
    "valid_signatures",
    "visit_items",
    "visit_rows",
    "visit_state",
    "visit_window",
    "visits_to_sign",
    "worklist_visits",
]

#: visit statuses of a visit that took place
DONE = frozenset({"in_window", "early", "late"})
#: statuses of a visit that did not take place
NOT_DONE_STATUSES = frozenset({"missed", "not_done"})
#: a visit whose window opens within this many days is "due soon" on the worklist
DUE_SOON_DAYS = 14
#: description prefix of the deviation recording that an item of a visit was not done
NOT_DONE_PREFIX = "item not done: "
_NOT_DONE_RE = re.compile(r"^item not done: (?P<item>[a-z0-9_]+) - (?P<reason>.*)$", re.S)
#: clinical-assessment field a protocol measurement is stored in (others are lab analytes)
CLINICAL_MEASUREMENTS = {"weight": "weight_kg"}

#: models whose field history the casebook shows: model name -> (model, participant attname)
HISTORY_MODELS: dict[str, tuple[type, str]] = {
    "participant": (Participant, "id"),
    "consent": (Consent, "participant_id"),
    "eligibilityassessment": (EligibilityAssessment, "participant_id"),
    "visit": (Visit, "participant_id"),
    "labresult": (LabResult, "participant_id"),
    "clinicalassessment": (ClinicalAssessment, "participant_id"),
    "protocoldeviation": (ProtocolDeviation, "participant_id"),
}


# ---------------------------------------------------------------------- visit states
def visit_window(day0: _dt.date | None, nominal_day: int, lower: int, upper: int
                 ) -> tuple[_dt.date, _dt.date, _dt.date] | None:
    """``(earliest, target, latest)`` calendar dates of a visit window (None without day 0)."""
    if day0 is None:
        return None
    d = _dt.timedelta
    return (day0 + d(days=nominal_day + lower), day0 + d(days=nominal_day),
            day0 + d(days=nominal_day + upper))


def visit_state(status: str, window: tuple[_dt.date, _dt.date, _dt.date] | None,
                today: _dt.date) -> str:
    """``done`` / ``missed`` / ``not_due`` / ``due`` / ``overdue`` (see the module docstring)."""
    if status in DONE:
        return "done"
    if status in NOT_DONE_STATUSES:
        return "missed"
    if window is None:
        return "not_due"
    earliest, _target, latest = window
    if today < earliest:
        return "not_due"
    if today <= latest:
        return "due"
    return "overdue"


# ---------------------------------------------------------------------- participants
def participants(site_ids: Iterable[int], *, q: str = "", site_code: str = "",
                 status: str = "") -> list[dict[str, Any]]:
    """Participants of ``site_ids`` (optionally: study id containing ``q``, one site code, one
    status), by study id: ``{study_id, site, status, status_date, arm, enrolment_date}``."""
    qs = Participant.objects.filter(site_id__in=list(site_ids))
    if q.strip():
        qs = qs.filter(study_id__icontains=q.strip())
    if site_code.strip():
        qs = qs.filter(site__code=site_code.strip())
    if status.strip():
        qs = qs.filter(status=status.strip())
    rows = qs.order_by("study_id").values_list(
        "study_id", "site__code", "status", "status_date", "arm__code", "enrolment_date")
    keys = ("study_id", "site", "status", "status_date", "arm", "enrolment_date")
    return [dict(zip(keys, r, strict=True)) for r in rows]


# ---------------------------------------------------------------------- locks, signatures
def active_locks_by_visit(participant_ids: Iterable[int]) -> tuple[bool, set[int], set[int]]:
    """``(trial locked, locked participant ids, locked visit ids)`` of the active locks."""
    pids = set(participant_ids)
    rows = list(Lock.objects.filter(unlocked_at__isnull=True).filter(
        Q(level="trial") | Q(participant_id__in=pids)).values_list(
        "level", "participant_id", "visit_id"))  # one query for the three answers
    trial = any(lvl == "trial" for lvl, _p, _v in rows)
    rows = [r for r in rows if r[1] in pids]
    parts = {p for lvl, p, _v in rows if lvl == "participant"}
    visits = {v for lvl, _p, v in rows if lvl == "visit" and v is not None}
    return trial, parts, visits


def _ids(values: Iterable[Any]) -> Any:
    """A list of ids, or a queryset kept as is (a subquery: no id list sent to the database)."""
    return values if isinstance(values, QuerySet) else list(values)


def valid_signatures(participant_ids: Iterable[int]) -> dict[tuple[int, int | None], list[Any]]:
    """``{(participant id, visit id or None): [signature, ...]}`` of the signatures that are
    still valid (nothing they cover changed since; recomputed from the ledger).
    ``participant_ids``: ids, or a queryset of participant ids (a subquery)."""
    from hepatrial.trials.audit import signatures as _sig

    out: dict[tuple[int, int | None], list[Any]] = {}
    qs = Signature.objects.filter(participant_id__in=_ids(participant_ids)).select_related(
        "signer").order_by("signed_at", "pk")
    for s in qs:
        if _sig.status(s).valid:
            out.setdefault((s.participant_id, s.visit_id), []).append(s)
    return out


# ---------------------------------------------------------------------- items of a visit
def not_done_description(item: str, reason: str) -> str:
    """The deviation description recording that ``item`` of a visit was not done."""
    return f"{NOT_DONE_PREFIX}{item} - {reason.strip()}"


def not_done_items(visit_ids: Iterable[int]) -> dict[int, dict[str, dict[str, Any]]]:
    """``{visit id: {item: {reason, date, by, deviation_pk}}}`` of the items recorded as not
    done (the latest record of an item wins). ``visit_ids``: ids, or a queryset of visit ids
    (a subquery)."""
    out: dict[int, dict[str, dict[str, Any]]] = {}
    qs = ProtocolDeviation.objects.filter(
        visit_id__in=_ids(visit_ids), description__startswith=NOT_DONE_PREFIX
    ).order_by("pk").values_list("pk", "visit_id", "description", "date", "detected_by")
    for pk, vid, text, d, by in qs:
        m = _NOT_DONE_RE.match(text)
        if m:
            out.setdefault(vid, {})[m["item"]] = {"reason": m["reason"], "date": d, "by": by,
                                                   "deviation_pk": pk}
    return out


@dataclass
class VisitItems:
    """The protocol items of one visit and what is stored for each."""

    due: tuple[str, ...]
    labs: dict[str, Any] = field(default_factory=dict)
    clinical: Any = None
    not_done: dict[str, dict[str, Any]] = field(default_factory=dict)

    def present(self, item: str) -> bool:
        """True when the item's value is stored."""
        if item in CLINICAL_MEASUREMENTS:
            return self.clinical is not None and getattr(
                self.clinical, CLINICAL_MEASUREMENTS[item]) is not None
        return item in self.labs

    @property
    def missing(self) -> list[str]:
        """Due items neither stored nor recorded as not done, in protocol order."""
        return [i for i in self.due if not self.present(i) and i not in self.not_done]

    @property
    def n_present(self) -> int:
        """How many due items are stored."""
        return sum(self.present(i) for i in self.due)


def _due(proto: Any, code: str) -> tuple[str, ...]:
    try:
        return tuple(proto.visit(code).measurements)
    except KeyError:
        return ()


def visit_items(proto: Any, visits: Iterable[Visit]) -> dict[int, VisitItems]:
    """:class:`VisitItems` of each visit (one query per table)."""
    vs = list(visits)
    ids = [v.pk for v in vs]
    labs: dict[int, dict[str, Any]] = {}
    for lab in LabResult.objects.filter(visit_id__in=ids).order_by("analyte", "pk"):
        labs.setdefault(lab.visit_id, {})[lab.analyte] = lab
    clin = {c.visit_id: c for c in ClinicalAssessment.objects.filter(visit_id__in=ids)}
    nd = not_done_items(ids)
    return {v.pk: VisitItems(_due(proto, v.code), labs.get(v.pk, {}), clin.get(v.pk),
                             nd.get(v.pk, {})) for v in vs}


# ---------------------------------------------------------------------- casebook
def visit_rows(proto: Any, participant: Participant, today: _dt.date, *,
               locks: tuple[bool, set[int], set[int]] | None = None,
               signatures: dict[tuple[int, int | None], list[Any]] | None = None
               ) -> list[dict[str, Any]]:
    """The participant's visit schedule, in schedule order: each visit with its window dates
    (earliest/target/latest), actual date, status and state, its items, signatures and lock.
    ``locks`` (:func:`active_locks_by_visit`) and ``signatures`` (:func:`valid_signatures`)
    of the participant, when the caller has read them already."""
    visits = list(participant.visits.order_by("nominal_day", "code"))
    items = visit_items(proto, visits)
    trial_locked, locked_p, locked_v = (locks if locks is not None
                                        else active_locks_by_visit([participant.pk]))
    sigs = signatures if signatures is not None else valid_signatures([participant.pk])
    out = []
    for v in visits:
        window = visit_window(participant.enrolment_date, v.nominal_day, v.window_lower,
                              v.window_upper)
        state = visit_state(v.status, window, today)
        it = items[v.pk]
        out.append({
            "visit": v, "code": v.code, "label": v.label, "window": window,
            "actual_date": v.actual_date, "status": v.status, "state": state, "items": it,
            "complete": state == "done" and not it.missing,
            "signed": sigs.get((participant.pk, v.pk), []),
            "locked": trial_locked or participant.pk in locked_p or v.pk in locked_v,
        })
    return out


_MELD_LABS = ("bilirubin", "creatinine", "inr")


def meld_trajectory(participant: Participant, variant: str, *,
                    visit_rows: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The participant's MELD (``variant``: ``kamath2001``, ``optn2002``, ...) at each visit
    with bilirubin, creatinine and INR stored: ``[{visit, day, value}]`` by study day.

    Computed with :func:`hepatrial.scores.score_columns` from the stored canonical values
    (dialysis from the visit's clinical assessment), as the analysis dataset derives it.
    ``visit_rows``: the participant's :func:`visit_rows`, whose labs and clinical assessments
    are used instead of reading them again."""
    rows: dict[int, dict[str, Any]] = {}
    if visit_rows is not None:
        visits = {}
        dialysis = {}
        for r in visit_rows:
            v, it = r["visit"], r["items"]
            got = {a: it.labs[a].value for a in _MELD_LABS if a in it.labs}
            if got:
                rows[v.pk], visits[v.pk] = got, v
                if it.clinical is not None:
                    dialysis[v.pk] = it.clinical.dialysis_last_week
        return _trajectory(participant, variant, rows, visits, dialysis)
    for vid, analyte, value in LabResult.objects.filter(
            participant=participant, analyte__in=_MELD_LABS
    ).values_list("visit_id", "analyte", "value"):
        rows.setdefault(vid, {})[analyte] = value
    visits = {v.pk: v for v in Visit.objects.filter(pk__in=list(rows))}
    dialysis = dict(ClinicalAssessment.objects.filter(visit_id__in=list(rows)).values_list(
        "visit_id", "dialysis_last_week"))
    return _trajectory(participant, variant, rows, visits, dialysis)


def _trajectory(participant: Participant, variant: str, rows: dict[int, dict[str, Any]],
                visits: dict[int, Any], dialysis: dict[int, Any]) -> list[dict[str, Any]]:
    """The MELD trajectory of :func:`meld_trajectory` from ``{visit id: {analyte: value}}``,
    the visits by id and their dialysis flags."""
    import numpy as np

    from hepatrial.scores import score_columns

    code = f"meld_{variant}"
    keep = sorted((vid for vid, r in rows.items() if len(r) == 3),
                  key=lambda vid: (visits[vid].nominal_day, visits[vid].code))
    if not keep:
        return []
    got = score_columns({
        "bilirubin_umol_l": np.array([rows[v]["bilirubin"] for v in keep], dtype=float),
        "creatinine_umol_l": np.array([rows[v]["creatinine"] for v in keep], dtype=float),
        "inr": np.array([rows[v]["inr"] for v in keep], dtype=float),
        "dialysis": np.array(["true" if dialysis.get(v) else "false" for v in keep],
                             dtype=object),
    }, errors="coerce")
    values = got.get(code)
    if values is None:
        return []
    out = []
    for vid, val in zip(keep, np.asarray(values, dtype=float), strict=True):
        v = visits[vid]
        if not np.isfinite(val):
            continue
        day = (v.actual_date - participant.enrolment_date).days if (
            v.actual_date and participant.enrolment_date) else v.nominal_day
        out.append({"visit": v.code, "day": day, "value": float(val)})
    return out


def field_history(model_name: str, pk: int, field_name: str) -> list[dict[str, Any]]:
    """Every value a field of one record has had, oldest first: ``{when, who, action, old,
    new, reason}`` for the creation and for each change of that field (from the audit
    history; a deletion is listed too)."""
    model, _att = HISTORY_MODELS[model_name]
    f = model._meta.get_field(field_name)
    att = f.attname
    hist = model.history.model  # type: ignore[attr-defined]
    out: list[dict[str, Any]] = []
    prev: Any = None
    first = True
    for h in hist._base_manager.filter(id=pk).select_related("history_user").order_by(
            "history_id"):
        value = getattr(h, att)
        if h.history_type == "+" or first:
            action, show = "created", True
        elif h.history_type == "-":
            action, show = "deleted", True
        else:
            action, show = "changed", value != prev
        if show:
            out.append({
                "when": h.history_date,
                "who": h.history_user.get_username() if h.history_user_id else "",
                "action": action, "old": None if action == "created" else prev, "new": value,
                "reason": h.history_change_reason or "",
            })
        prev, first = value, False
    return out


# ---------------------------------------------------------------------- site dashboard
def enrolment_by_month(site_ids: Iterable[int]) -> list[dict[str, Any]]:
    """Enrolments per calendar month of day 0 with the running total: ``[{month: 'YYYY-MM',
    n, cumulative}]``, every month from the first to the last enrolment (months without one
    have n = 0)."""
    dates = sorted(Participant.objects.filter(
        site_id__in=list(site_ids), enrolment_date__isnull=False
    ).values_list("enrolment_date", flat=True))
    if not dates:
        return []
    counts: dict[tuple[int, int], int] = {}
    for d in dates:
        counts[(d.year, d.month)] = counts.get((d.year, d.month), 0) + 1
    y, m = dates[0].year, dates[0].month
    end = (dates[-1].year, dates[-1].month)
    out, total = [], 0
    while (y, m) <= end:
        n = counts.get((y, m), 0)
        total += n
        out.append({"month": f"{y:04d}-{m:02d}", "n": n, "cumulative": total})
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def site_matrix(proto: Any, site: Site, today: _dt.date) -> dict[str, Any]:
    """Participants × protocol visits of one site: ``{visits: [codes], rows: [{participant,
    cells: {code: {state, status, date, signed, locked, visit_id, participant_id}}}]}``;
    participants by study id, visits in protocol order. A participant without the visit
    (not enrolled) has no cell."""
    codes = list(proto.visit_codes)
    ppl = list(Participant.objects.filter(site=site).order_by("study_id"))
    pids = [p.pk for p in ppl]
    day0 = {p.pk: p.enrolment_date for p in ppl}
    visits = list(Visit.objects.filter(participant_id__in=pids).order_by(
        "participant_id", "nominal_day", "code").values_list(
        "pk", "participant_id", "code", "nominal_day", "window_lower", "window_upper",
        "status", "actual_date"))
    trial_locked, locked_p, locked_v = active_locks_by_visit(pids)
    sigs = valid_signatures(pids)
    by_p: dict[int, dict[str, dict[str, Any]]] = {}
    for vid, pid, code, nominal, lo, hi, status, actual in visits:
        window = visit_window(day0[pid], nominal, lo, hi)
        by_p.setdefault(pid, {})[code] = {
            "state": visit_state(status, window, today), "status": status,
            "date": actual or (window[1] if window else None),
            "signed": bool(sigs.get((pid, vid))),
            "locked": trial_locked or pid in locked_p or vid in locked_v,
            "visit_id": vid, "participant_id": pid,
        }
        if code not in codes:
            codes.append(code)
    rows = [{"participant": p, "cells": by_p.get(p.pk, {})} for p in ppl]
    return {"visits": codes, "rows": rows}


def deviations(site_ids: Iterable[int], participant: Participant | None = None
               ) -> list[dict[str, Any]]:
    """Protocol deviations of ``site_ids`` (or of one participant), newest first:
    ``{pk, participant, visit, category, description, date, major, detected_by}``."""
    qs = ProtocolDeviation.objects.filter(participant__site_id__in=list(site_ids))
    if participant is not None:
        qs = qs.filter(participant=participant)
    rows = qs.order_by("-date", "-pk").values_list(
        "pk", "participant__study_id", "visit__code", "category", "description", "date",
        "major", "detected_by")
    keys = ("pk", "participant", "visit", "category", "description", "date", "major",
            "detected_by")
    return [dict(zip(keys, r, strict=True)) for r in rows]


# ---------------------------------------------------------------------- worklist
def missing_items(proto: Any, visits: Iterable[tuple[int, str]], *,
                  within: QuerySet | None = None) -> dict[int, list[str]]:
    """``{visit id: [item, ...]}`` of the due items neither stored nor recorded as not done,
    for ``(visit id, visit code)`` pairs (the :attr:`VisitItems.missing` rule, read with three
    queries and no model instances, for many visits at once). ``within``: a queryset of the
    ids of (at least) those visits, read as a subquery instead of a list of ids (thousands of
    visits of a site)."""
    vs = list(visits)
    ids = within if within is not None else [vid for vid, _c in vs]
    labs: dict[int, set[str]] = {}
    for vid, analyte in LabResult.objects.filter(visit_id__in=ids).values_list("visit_id",
                                                                               "analyte"):
        labs.setdefault(vid, set()).add(analyte)
    weighed = set(ClinicalAssessment.objects.filter(
        visit_id__in=ids, weight_kg__isnull=False).values_list("visit_id", flat=True))
    nd = not_done_items(ids)
    out = {}
    for vid, code in vs:
        have = set(labs.get(vid, ())) | set(nd.get(vid, {}))
        if vid in weighed:
            have.add("weight")
        out[vid] = [i for i in _due(proto, code) if i not in have]
    return out


def worklist_visits(proto: Any, site_ids: Iterable[int], today: _dt.date
                    ) -> dict[str, list[dict[str, Any]]]:
    """Visits needing work at the sites: ``{overdue, due, due_soon, incomplete}``.

    ``overdue``/``due``/``due_soon``: visits still scheduled, by the window's latest /
    earliest date (participants enrolled or completed: not withdrawn, died or transplanted);
    ``incomplete``: visits done with items missing (``missing`` lists them). Each row:
    ``{participant, site, visit, label, window, state, missing}``."""
    active = ("enrolled", "completed")
    scope = Visit.objects.filter(participant__site_id__in=list(site_ids),
                                 participant__status__in=active)
    rows = list(scope.order_by("participant__study_id", "nominal_day", "code").values_list(
        "pk", "code", "label", "nominal_day", "window_lower", "window_upper", "status",
        "participant__study_id", "participant__site__code", "participant__enrolment_date"))
    out: dict[str, list[dict[str, Any]]] = {"overdue": [], "due": [], "due_soon": [],
                                            "incomplete": []}
    missing = missing_items(proto, [(r[0], r[1]) for r in rows if r[6] in DONE],
                            within=scope.filter(status__in=DONE).values("pk"))
    soon = today + _dt.timedelta(days=DUE_SOON_DAYS)
    for vid, code, label, nominal, lo, hi, status, study_id, site, day0 in rows:
        window = visit_window(day0, nominal, lo, hi)
        state = visit_state(status, window, today)
        row = {"participant": study_id, "site": site, "visit": code, "label": label,
               "window": window, "state": state, "missing": []}
        if state == "overdue":
            out["overdue"].append(row)
        elif state == "due":
            out["due"].append(row)
        elif state == "not_due" and window is not None and window[0] <= soon:
            out["due_soon"].append(row)
        elif state == "done" and missing.get(vid):
            row["missing"] = missing[vid]
            out["incomplete"].append(row)
    out["overdue"].sort(key=lambda r: (r["window"][2], r["participant"], r["visit"]))
    out["due"].sort(key=lambda r: (r["window"][2], r["participant"], r["visit"]))
    out["due_soon"].sort(key=lambda r: (r["window"][0], r["participant"], r["visit"]))
    return out


# ---------------------------------------------------------------------- scoped lookups
def sites_in(site_ids: Iterable[int]) -> list[Site]:
    """The sites among ``site_ids``, by code."""
    return list(Site.objects.filter(pk__in=list(site_ids)).order_by("code"))


def site_in(code: str, site_ids: Iterable[int]) -> Site | None:
    """The site ``code`` if it is among ``site_ids`` (None otherwise: it does not exist for
    the user)."""
    return Site.objects.filter(code=code, pk__in=list(site_ids)).first()


def participant_in(study_id: str, site_ids: Iterable[int]) -> Participant | None:
    """Participant ``study_id`` if its site is among ``site_ids`` (else None)."""
    return Participant.objects.select_related("site", "arm").filter(
        study_id=study_id, site_id__in=list(site_ids)).first()


def visit_of(participant: Participant, code: str) -> Visit | None:
    """The participant's visit ``code`` (None when it has none)."""
    return Visit.objects.filter(participant=participant, code=code).first()


def site_counts(sites: Iterable[Site]) -> list[dict[str, Any]]:
    """``[{site, n, enrolled}]``: participants and enrolled participants per site."""
    return [{"site": s, "n": Participant.objects.filter(site=s).count(),
             "enrolled": Participant.objects.filter(site=s, enrolment_date__isnull=False).count()}
            for s in sites]


# ---------------------------------------------------------------------- a participant
def consents(participant: Participant) -> list[Consent]:
    """The participant's consents, oldest first."""
    return list(Consent.objects.filter(participant=participant).order_by("date", "pk"))


def has_consent(participant: Participant) -> bool:
    """True when a consent is recorded (the protocol's derived ``informed_consent``)."""
    return Consent.objects.filter(participant=participant).exists()


def assessments(participant: Participant) -> list[EligibilityAssessment]:
    """The participant's eligibility assessments, latest first."""
    return list(EligibilityAssessment.objects.filter(participant=participant).order_by(
        "-assessed_on", "-pk"))


def latest_assessment(participant: Participant) -> EligibilityAssessment | None:
    """The latest eligibility assessment (the one enrolment uses)."""
    return EligibilityAssessment.objects.filter(participant=participant).order_by(
        "-assessed_on", "-pk").first()


def history_owner(model_name: str, pk: int) -> int | None:
    """The participant id a record of :data:`HISTORY_MODELS` belongs (or belonged) to, from
    its audit history (None when there is no such record)."""
    model, att = HISTORY_MODELS[model_name]
    hist = model.history.model  # type: ignore[attr-defined]
    owner = hist._base_manager.filter(id=pk).values_list(att, flat=True).first()
    return None if owner is None else int(owner)


# ---------------------------------------------------------------------- a visit
def visit_values(visit: Visit) -> tuple[dict[str, float], ClinicalAssessment | None]:
    """The visit's lab values in the canonical unit (``{analyte: value}``) and its clinical
    assessment."""
    labs = dict(LabResult.objects.filter(visit=visit).values_list("analyte", "value"))
    return labs, ClinicalAssessment.objects.filter(visit=visit).first()


def visits_to_sign(site_ids: Iterable[int]) -> list[dict[str, Any]]:
    """Visits that took place at the sites and have no valid signature, by participant and
    schedule: ``{participant, visit, label, actual_date}`` (the signatures read once for the
    sites, the visits as plain values)."""
    ids = list(site_ids)
    signed = valid_signatures(Participant.objects.filter(site_id__in=ids).values("pk"))
    rows = Visit.objects.filter(participant__site_id__in=ids, status__in=DONE).order_by(
        "participant__study_id", "nominal_day", "code").values_list(
        "pk", "participant_id", "participant__study_id", "code", "label", "actual_date")
    return [{"participant": sid, "visit": code, "label": label, "actual_date": actual}
            for vid, pid, sid, code, label, actual in rows if not signed.get((pid, vid))]


def visits_with_sdv_marks(visit_ids: Iterable[int]) -> set[int]:
    """Ids of the visits with at least one source-verification mark (when the store has
    the SDV model)."""
    from django.apps import apps

    try:
        mark = apps.get_model("trials", "SourceVerification")
    except LookupError:
        return set()
    return set(mark.objects.filter(visit_id__in=list(visit_ids)).values_list("visit_id",
                                                                          flat=True))


# ---------------------------------------------------------------------- safety worklist
def sae_clocks(plan: Any, site_ids: Iterable[int], now: _dt.datetime) -> list[dict[str, Any]]:
    """The serious adverse events of the sites' participants with the reports they owe and
    their clocks, as :func:`hepatrial.trials.selectors.sae_cases` computes them (``plan``:
    the protocol's safety plan; oldest awareness first). Four queries whatever the number
    of events (their ids, then the cases' three)."""
    from hepatrial.trials import selectors
    from hepatrial.trials.models import AdverseEvent

    pks = list(AdverseEvent.objects.filter(serious=True, participant__site_id__in=list(
        site_ids)).values_list("pk", flat=True))
    return selectors.sae_cases(plan, now, pks=pks) if pks else []


def batches_awaiting_release(site_ids: Iterable[int]) -> list[dict[str, Any]]:
    """The cell-product batches of the sites' participants waiting for the QA release: in
    QA review (submitted with every release test resulted) and not released. Plain values
    ``{pk, batch_id, participant, site, in_review_since, formulated_at}`` (the time the
    batch last entered QA review, from its chain of custody), longest waiting first; one
    query."""
    from django.db.models import OuterRef, Subquery

    from hepatrial.protocol.product_lifecycle import State
    from hepatrial.trials.models.product import CellProductBatch, CustodyEvent

    since = CustodyEvent.objects.filter(batch=OuterRef("pk"), to_state=State.QA_REVIEW.value
                                        ).order_by("-seq").values("at")[:1]
    rows = (CellProductBatch.objects
            .filter(state=State.QA_REVIEW.value, released=False,
                    participant__site_id__in=list(site_ids))
            .annotate(in_review_since=Subquery(since))
            .order_by("in_review_since", "batch_id")
            .values_list("pk", "batch_id", "participant__study_id", "participant__site__code",
                         "in_review_since", "formulated_at"))
    return [{"pk": pk, "batch_id": bid, "participant": sid, "site": site,
             "in_review_since": entered, "formulated_at": formulated}
            for pk, bid, sid, site, entered, formulated in rows]


# ---------------------------------------------------------------------- adverse events
def _adverse_event_model() -> Any:
    from hepatrial.trials.models import AdverseEvent

    return AdverseEvent


#: the adverse events' field history is shown like the other casebook records'
HISTORY_MODELS["adverseevent"] = (_adverse_event_model(), "participant_id")


def adverse_events(participant: Participant, plan: Any, now: _dt.datetime
                   ) -> list[dict[str, Any]]:
    """Every adverse event of the participant, by onset (then record id): ``{ae, id, case}``
    with ``id`` the record id (``AE-12``) and ``case`` the SAE reporting case of a serious
    event as :func:`hepatrial.trials.selectors.sae_cases` computes it at ``now`` (the reports
    it owes with their clocks and status, those submitted, SUSAR), None for a non-serious
    one. ``plan``: the protocol's safety plan. Four queries whatever the number of events."""
    from hepatrial.trials import selectors

    events = list(_adverse_event_model().objects.filter(participant=participant)
                  .order_by("onset_date", "pk"))
    serious = [ae.pk for ae in events if ae.serious]
    cases = {c["adverse_event"].pk: c
             for c in selectors.sae_cases(plan, now, pks=serious)} if serious else {}
    return [{"ae": ae, "id": selectors.ae_record_id(ae.pk), "case": cases.get(ae.pk)}
            for ae in events]


def adverse_event_of(participant: Participant, pk: int) -> Any:
    """The participant's adverse event ``pk`` (None when it has no such event: another
    participant's event does not exist under this one)."""
    return _adverse_event_model().objects.select_related("participant", "participant__site"
                                                         ).filter(participant=participant,
                                                                  pk=pk).first()


def casebook_lock(participant: Participant) -> Lock | None:
    """The active lock that covers the participant's records outside visits (its casebook
    lock or the trial lock; an adverse event is such a record), as the store finds it
    (:func:`hepatrial.trials.audit.locks.active_lock`); None when they can be written."""
    from hepatrial.trials.audit.locks import active_lock

    return active_lock([participant.pk])


# ---------------------------------------------------------------------- cell product (issue 11)
def _product_models() -> Any:
    from hepatrial.trials.models import product

    return product


#: a QC result's field history is shown like the other casebook records' (its value as entered)
HISTORY_MODELS["qcresult"] = (_product_models().QcResult, "participant_id")


def product_batches(site_ids: Iterable[int], *, state: str | None = None
                    ) -> list[dict[str, Any]]:
    """The cell-product batches of the sites' participants (optionally in one lifecycle
    ``state``), by site, participant, harvest time and batch id: plain values ``{batch_id,
    participant, site, state, harvested_on, released, released_at, administered_on}``
    (``harvested_on`` the harvest's collection date, None for a batch registered before the
    lifecycle; ``administered_on`` the date of the batch's first administration, None when
    it was not given). One query."""
    from django.db.models import Min

    m = _product_models()
    qs = m.CellProductBatch.objects.filter(participant__site_id__in=list(site_ids))
    if state is not None:
        qs = qs.filter(state=state)
    rows = (qs.annotate(administered_on=Min("administrations__date"))
            .order_by("participant__site__code", "participant__study_id",
                      "harvest__collected_at", "batch_id")
            .values_list("batch_id", "participant__study_id", "participant__site__code",
                         "state", "harvest__collection_date", "released", "released_at",
                         "administered_on"))
    return [{"batch_id": bid, "participant": sid, "site": code, "state": st,
             "harvested_on": harvested, "released": released, "released_at": released_at,
             "administered_on": given}
            for bid, sid, code, st, harvested, released, released_at, given in rows]


def product_batch_in(batch_id: str, site_ids: Iterable[int]) -> Any:
    """The batch ``batch_id`` when its participant is of one of the sites (None otherwise:
    another site's batch does not exist for the user)."""
    return (_product_models().CellProductBatch.objects
            .select_related("participant", "participant__site", "harvest")
            .filter(batch_id=batch_id, participant__site_id__in=list(site_ids)).first())


def product_qc_results(batch: Any) -> list[Any]:
    """The batch's QC (release-test) results as stored, by test."""
    return list(_product_models().QcResult.objects.filter(batch=batch).order_by("test"))


def product_signatures(batch: Any) -> dict[int, Any]:
    """The batch's product e-signatures by primary key."""
    return {s.pk: s for s in _product_models().ProductSignature.objects.filter(batch=batch)}


def latest_weight(participant: Participant) -> tuple[float, _dt.date] | None:
    """The participant's latest weight recorded at a visit that took place: ``(kg, visit
    date)``, None when none is recorded."""
    c = (ClinicalAssessment.objects.filter(participant=participant, weight_kg__isnull=False,
                                           visit__actual_date__isnull=False)
         .select_related("visit").order_by("-visit__actual_date", "-pk").first())
    return None if c is None else (float(c.weight_kg), c.visit.actual_date)
