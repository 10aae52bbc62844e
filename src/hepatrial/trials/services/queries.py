"""The query workflow: raise, answer, close, re-open data queries; the automatic queries; the
selectors of the pages (open queries per user, site, participant, visit; open counts by age).

The rules are :mod:`hepatrial.trials.validators.query` (one place, pure); who may act is the
role matrix (:mod:`hepatrial.trials.services.permissions`: ``raise_query`` for monitors and
data managers, ``answer_query`` for the site's coordinators and investigators). Every step is
one transaction under the ledger lock: the :class:`~hepatrial.trials.models.Query` row changes
with a reason (its history shows each transition, who and when) and a
:class:`~hepatrial.trials.models.QueryMessage` is added to the thread, both chained into the
audit ledger.

Automatic queries are raised by the ``system`` account in the transaction of the write that
calls for them:

* ``soft_range`` — a lab value outside the analyte's expected range, confirmed at entry
  (:func:`hepatrial.trials.services.measurements.record_lab` / ``update_lab`` with
  ``confirmed_out_of_range=True``);
* ``visit_window`` — a visit date outside its protocol window
  (:func:`hepatrial.trials.services.visits.record_visit`);
* ``missing_item`` — a required item of the visit (the protocol's ``measurements``) neither
  entered nor recorded as not done when the visit form is marked complete
  (:func:`raise_auto_queries` with ``completing=True``).

An automatic query is raised once per target: while a query of the same origin on the same
record and field is not closed, a new trigger adds a note to its thread instead (e.g. "value
changed to 800 µmol/L, confirmed again").
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.db import models, transaction
from django.utils import timezone

from hepatrial.errors import NotFoundError, PermissionDenied
from hepatrial.trials.audit import locks as _locks
from hepatrial.trials.audit.actors import system_user
from hepatrial.trials.audit.chain import lock_ledger
from hepatrial.trials.models import (
    ClinicalAssessment,
    LabResult,
    Participant,
    Query,
    QueryMessage,
    Visit,
)
from hepatrial.trials.services._common import _participant, _visit
from hepatrial.trials.services.accounts import acting_user
from hepatrial.trials.services.permissions import (
    ALL_SITES_ROLES,
    allowed,
    require_permission,
    role_of,
    site_ids_of,
)
from hepatrial.trials.validators import RuleViolation
from hepatrial.trials.validators._common import Problem
from hepatrial.trials.validators.query import check_query_step, validate_query_text

__all__ = [
    "AGE_BUCKETS",
    "OPEN_STATUSES",
    "QueryTarget",
    "addressed_to",
    "age_days",
    "answer_query",
    "close_query",
    "current_value",
    "may_see",
    "open_counts",
    "open_counts_by_age",
    "queries",
    "query_target",
    "raise_auto_queries",
    "raise_query",
    "raise_soft_range_query",
    "raise_window_query",
    "refuse_unless_seen",
    "reopen_query",
    "target_record",
    "waiting_for",
]

#: statuses of a query that is not closed ("open" in every count: waiting for someone)
OPEN_STATUSES = ("open", "answered")
#: age buckets of the open-query counts: (label, lowest age in days, highest or None)
AGE_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("0-7 days", 0, 7),
    ("8-14 days", 8, 14),
    ("15-30 days", 15, 30),
    ("over 30 days", 31, None),
)
#: protocol measurements stored in the clinical assessment: item -> field
_CLINICAL_MEASUREMENTS = {"weight": "weight_kg"}
_LAB = "trials.labresult"
_CLINICAL = "trials.clinicalassessment"


# ---------------------------------------------------------------------- targets
@dataclass(frozen=True)
class QueryTarget:
    """The record and field a query is about, resolved and checked."""

    model_label: str
    object_pk: str
    field_name: str
    item: str
    visit: Visit | None
    value: str

    @property
    def label(self) -> str:
        """What people read: ``W1 lab bilirubin``, ``W1 visit actual_date``, ..."""
        kind = self.model_label.split(".", 1)[1]
        where = f"{self.visit.code} " if self.visit is not None else ""
        if kind == "labresult":
            return f"{where}lab {self.item}"
        if kind == "clinicalassessment":
            return f"{where}clinical {self.item or self.field_name}"
        return f"{where}{kind} {self.field_name}"


def _queryable() -> dict[str, type[models.Model]]:
    """Models a query may name: the participant's data (models a casebook lock covers)."""
    out = {}
    for m in _locks.locked_models():
        scope = _locks.scope_of(m)
        if scope is not None and scope.participant is not None:
            out[m._meta.label_lower] = m
    return out


def _label(model: str) -> str:
    text = str(model or "").strip().lower()
    return text if "." in text else f"trials.{text}"


def _value_text(obj: models.Model, field: str) -> str:
    if isinstance(obj, LabResult) and field in ("value_as_entered", "value"):
        return f"{obj.value_as_entered} {obj.unit_as_entered}"
    v = getattr(obj, field)
    if v is None:
        return ""
    return str(getattr(v, "pk", v))[:200]


def query_target(
    participant: Participant | str,
    *,
    model: str,
    object_pk: Any = None,
    field: str,
    item: str = "",
    visit_code: str | None = None,
) -> QueryTarget:
    """Resolve and check the target of a query (the record must belong to ``participant``;
    ``object_pk`` empty: a required lab or clinical item of ``visit_code`` never entered).

    Raises :class:`RuleViolation` naming ``model``, ``object_pk``, ``field`` or ``item``."""
    p = _participant(participant)
    record = f"participant {p} query"
    label = _label(model)
    models_ = _queryable()
    m = models_.get(label)
    if m is None:
        known = ", ".join(sorted(k.split(".", 1)[1] for k in models_))
        raise RuleViolation([Problem(record, "model", f"{model!r} cannot be queried (known: "
                                     f"{known})")])
    fname = str(field or "").strip()
    names = {f.attname: f for f in m._meta.concrete_fields if not f.primary_key}
    names.update({f.name: f for f in m._meta.concrete_fields if not f.primary_key})
    if fname not in names:
        raise RuleViolation([Problem(record, "field", f"{label} has no field {fname!r}")])
    fname = names[fname].attname
    pk_text = "" if object_pk in (None, "") else str(object_pk).strip()
    item = str(item or "").strip()
    if not pk_text:
        return _missing_target(p, record, label, fname, item, visit_code)
    obj = m._base_manager.filter(pk=pk_text).first() if pk_text.isdigit() else None
    scope = _locks.scope_of(m)
    assert scope is not None and scope.participant is not None
    owner = None if obj is None else (obj.pk if scope.participant == "pk"
                                      else getattr(obj, scope.participant))
    if obj is None or owner != p.pk:
        raise RuleViolation([Problem(record, "object_pk",
                                     f"participant {p} has no {label} {pk_text}")])
    visit = None
    if scope.visit is not None:
        vid = obj.pk if scope.visit == "pk" else getattr(obj, scope.visit)
        visit = Visit.objects.filter(pk=vid).first() if vid is not None else None
    if visit_code and (visit is None or visit.code != visit_code):
        raise RuleViolation([Problem(record, "visit", f"{label} {pk_text} is not a record of "
                                     f"visit {visit_code}")])
    if not item:
        if isinstance(obj, LabResult):
            item = obj.analyte
        elif isinstance(obj, ClinicalAssessment):
            item = fname
    return QueryTarget(label, pk_text, fname, item, visit, _value_text(obj, fname))


def _missing_target(p: Participant, record: str, label: str, fname: str, item: str,
                    visit_code: str | None) -> QueryTarget:
    """The target of a required item never entered (a lab analyte or a clinical item)."""
    from hepatrial.protocol import analytes

    if not visit_code:
        raise RuleViolation([Problem(record, "object_pk", "is required (a query on an item "
                                     "never entered names its visit)")])
    v = _visit(p, visit_code)
    if label == _LAB:
        if item not in analytes.ANALYTES:
            raise RuleViolation([Problem(record, "item", f"{item!r} is not an analyte")])
        if LabResult.objects.filter(visit=v, analyte=item).exists():
            raise RuleViolation([Problem(record, "object_pk", f"{item} is entered for visit "
                                         f"{v.code}: name the lab result")])
        return QueryTarget(label, "", "value_as_entered", item, v, "")
    if label == _CLINICAL:
        c = ClinicalAssessment.objects.filter(visit=v).first()
        if c is not None and getattr(c, fname) is not None:
            raise RuleViolation([Problem(record, "object_pk", f"{fname} is entered for visit "
                                         f"{v.code}: name the clinical assessment")])
        return QueryTarget(label, str(c.pk) if c is not None else "", fname,
                           item or fname, v, "")
    raise RuleViolation([Problem(record, "object_pk", f"is required for {label}")])


# ---------------------------------------------------------------------- steps
def _lock_level(p: Participant, visit: Visit | None) -> str | None:
    lock = _locks.active_lock([p.pk], [visit.pk] if visit is not None else [])
    return None if lock is None else str(lock.level)


def _is_system(user: Any) -> bool:
    return role_of(user) == "system"


def _message(q: Query, step: str, author: Any, text: str, at: _dt.datetime) -> QueryMessage:
    msg = QueryMessage(query=q, step=step, author=author, at=at, text=text)
    msg.save(user=author)
    return msg


def _create(p: Participant, target: QueryTarget, *, origin: str, text: str, user: Any
            ) -> Query:
    """Write a new query and its first message (caller holds the ledger lock)."""
    now = timezone.now()
    q = Query(participant=p, visit=target.visit, model_label=target.model_label,
              object_pk=target.object_pk, field_name=target.field_name, item=target.item,
              origin=origin, text=text, value_at_raise=target.value, status="open",
              raised_by=user, raised_at=now)
    q.save(user=user)
    _message(q, "raised", user, text, now)
    return q


def raise_query(
    *,
    participant: Participant | str,
    model: str,
    field: str,
    text: str,
    object_pk: Any = None,
    item: str = "",
    visit_code: str | None = None,
    user: Any,
) -> Query:
    """A monitor or a data manager raises a query on one field of one record of
    ``participant`` (``raise_query``; a named person). ``model`` is a model name or label
    (``labresult``, ``trials.visit``, ...), ``field`` one of its fields; without
    ``object_pk``, a lab analyte (``item``) or clinical item of ``visit_code`` never entered.

    Refused (RuleViolation) on a locked record or under a trial lock."""
    acting = acting_user(user)
    p = _participant(participant)
    require_permission(acting, "raise_query", p)
    record = f"participant {p} query"
    if _is_system(acting):
        raise RuleViolation([Problem(record, "", "a query is raised by a named person (the "
                                     "system account raises the automatic queries only)")])
    problems: list[Problem] = []
    try:
        question = validate_query_text(record, "text", text)
    except RuleViolation as exc:
        problems.extend(exc.problems)
    try:
        target = query_target(p, model=model, object_pk=object_pk, field=field, item=item,
                              visit_code=visit_code)
    except RuleViolation as exc:
        problems.extend(exc.problems)
    if problems:
        raise RuleViolation(problems)
    with transaction.atomic():
        lock_ledger()
        check_query_step(record=f"participant {p} {target.label} query", step="raise",
                         status="", origin="manual", is_raiser=True, may_raise=True,
                         may_answer=False, named_person=True,
                         lock=_lock_level(p, target.visit))
        return _create(p, target, origin="manual", text=question, user=acting)


def _step(query: Query | int, step: str, text: Any, user: Any, *, required: bool) -> Query:
    acting = acting_user(user)
    q = query if isinstance(query, Query) else Query.objects.filter(pk=query).first()
    if q is None:
        raise NotFoundError(f"query {query} does not exist")
    p = q.participant
    require_permission(acting, "answer_query" if step == "answer" else "raise_query", p)
    record = f"participant {p} query {q.pk}"
    body = validate_query_text(record, "text", text, required=required)
    with transaction.atomic():
        lock_ledger()
        q = Query.objects.select_for_update().get(pk=q.pk)
        role = role_of(acting)
        new = check_query_step(
            record=record, step=step, status=q.status, origin=q.origin,
            is_raiser=q.raised_by_id == acting.pk,
            may_raise=allowed("raise_query", role), may_answer=allowed("answer_query", role),
            named_person=not _is_system(acting), lock=_lock_level(p, q.visit),
        )
        now = timezone.now()
        q.status = new
        if new == "closed":
            q.closed_by, q.closed_at = acting, now
        else:
            q.closed_by, q.closed_at = None, None
        done = {"answer": "answered", "close": "closed", "reopen": "reopened"}[step]
        q.save(user=acting, reason=f"query {done}" + (f": {body}" if body else ""))
        _message(q, done, acting, body, now)
    return q


def answer_query(query: Query | int, *, text: str, user: Any) -> Query:
    """The site (``answer_query``: a coordinator or investigator of the participant's site)
    answers an open or answered query; the query becomes ``answered`` (waiting for its
    raiser). A correction of the data itself goes through the data services (with its
    reason), the answer says what was done."""
    return _step(query, "answer", text, user, required=True)


def close_query(query: Query | int, *, user: Any, text: str = "") -> Query:
    """The raiser (an automatic query: a monitor or data manager of the site) closes an open
    or answered query, with an optional note."""
    return _step(query, "close", text, user, required=False)


def reopen_query(query: Query | int, *, text: str, user: Any) -> Query:
    """The raiser (automatic query: a monitor or data manager of the site) re-opens an
    answered or closed query, saying what is still wrong; it is open again (the site's)."""
    return _step(query, "reopen", text, user, required=True)


# ---------------------------------------------------------------------- automatic queries
def _auto(p: Participant, target: QueryTarget, origin: str, text: str, note: str
          ) -> Query | None:
    """Raise an automatic query on ``target`` unless one of the same origin is not closed
    (then add ``note`` to its thread when the value changed). Returns the new query."""
    system = system_user()
    with transaction.atomic():
        lock_ledger()
        existing = Query.objects.filter(
            participant=p, model_label=target.model_label, object_pk=target.object_pk,
            field_name=target.field_name, item=target.item, origin=origin,
            status__in=OPEN_STATUSES).order_by("pk").first()
        if existing is not None:
            last = existing.messages.order_by("-at", "-pk").values_list(
                "text", flat=True).first()
            if note and existing.value_at_raise != target.value and last != note:
                _message(existing, "note", system, note, timezone.now())
            return None
        return _create(p, target, origin=origin, text=text, user=system)


def raise_soft_range_query(*, lab: LabResult, flag: str | None = None, user: Any = None,
                           confirmed: bool = True) -> Query | None:
    """The automatic query of a lab value outside the analyte's expected range that
    ``user`` confirmed at entry (``confirmed=False``: found by :func:`raise_auto_queries`,
    e.g. a value loaded by an import). None when the value is inside the range, or a query on
    it is still open (then a note is added when the value changed). Called by the lab
    services; calling it again for the same value does nothing."""
    from hepatrial.protocol import analytes

    a = analytes.analyte(lab.analyte)
    flag = flag or analytes.range_flag(lab.analyte, lab.value)
    if flag not in ("low", "high"):
        return None
    who = acting_user(user).get_username()
    lo, hi = a.expected
    shown = f"{lab.value_as_entered} {lab.unit_as_entered}"
    if lab.unit_as_entered != a.unit:
        shown += f" = {lab.value:g} {a.unit}"
    how = f"confirmed at entry by {who}" if confirmed else "found by the automatic checks"
    text = (f"{lab.visit.code} {a.label}: {shown} is {flag}er than expected "
            f"({lo:g}-{hi:g} {a.unit}); {how}. Please check it against the source document "
            "and answer.")
    note = f"value changed to {shown}, " + (f"confirmed by {who}" if confirmed else
                                            "found by the automatic checks")
    target = QueryTarget(_LAB, str(lab.pk), "value_as_entered", lab.analyte, lab.visit,
                         f"{lab.value_as_entered} {lab.unit_as_entered}")
    return _auto(lab.participant, target, "soft_range", text, note)


def raise_window_query(visit: Visit) -> Query | None:
    """The automatic query of a visit done outside its protocol window (status ``early`` or
    ``late``); None when in window or already queried (a note is added when the date
    changed)."""
    if visit.status not in ("early", "late") or visit.actual_date is None:
        return None
    p = visit.participant
    day = (visit.actual_date - p.enrolment_date).days if p.enrolment_date else None
    lo, hi = visit.nominal_day + visit.window_lower, visit.nominal_day + visit.window_upper
    text = (f"{visit.code} done on {visit.actual_date} (day {day}) is {visit.status}: the "
            f"window is day {lo} to {hi} (target {visit.nominal_day}). Please confirm the date "
            "against the source document.")
    target = QueryTarget("trials.visit", str(visit.pk), "actual_date", "", visit,
                         str(visit.actual_date))
    return _auto(p, target, "visit_window", text,
                 f"date changed to {visit.actual_date} (day {day}), still {visit.status}")


def _missing_items(visit: Visit) -> list[str]:
    from hepatrial.trials import selectors_web
    from hepatrial.trials.services.protocol import active_protocol

    return list(selectors_web.visit_items(active_protocol(), [visit])[visit.pk].missing)


def raise_auto_queries(
    *,
    participant: Participant | str,
    visit_code: str,
    completing: bool = False,
    user: Any = None,
) -> list[Query]:
    """Run every automatic check of one visit and raise the queries that are not raised yet;
    returns the new ones (in order: window, values, missing items).

    * the visit date outside its window;
    * each stored lab value outside the expected range with no query on it yet (e.g. loaded
      by an import);
    * with ``completing`` (the visit form is marked complete): each required item of the
      visit neither entered nor recorded as not done.

    ``user`` is who marked the form complete (named in the query text)."""
    from hepatrial.protocol import analytes

    p = _participant(participant)
    v = _visit(p, visit_code)
    out: list[Query] = []
    with transaction.atomic():
        q = raise_window_query(v)
        if q is not None:
            out.append(q)
        for lab in LabResult.objects.filter(visit=v).order_by("analyte", "pk"):
            if analytes.range_flag(lab.analyte, lab.value) == "ok":
                continue
            if Query.objects.filter(model_label=_LAB, object_pk=str(lab.pk),
                                    origin="soft_range",
                                    value_at_raise=f"{lab.value_as_entered} "
                                                   f"{lab.unit_as_entered}").exists():
                continue
            q = raise_soft_range_query(lab=lab, user=system_user(), confirmed=False)
            if q is not None:
                out.append(q)
        if completing and v.status in ("in_window", "early", "late"):
            who = acting_user(user).get_username()
            for item in _missing_items(v):
                out.extend(_raise_missing(p, v, item, who))
    return out


def _raise_missing(p: Participant, v: Visit, item: str, who: str) -> list[Query]:
    if item in _CLINICAL_MEASUREMENTS:
        field = _CLINICAL_MEASUREMENTS[item]
        c = ClinicalAssessment.objects.filter(visit=v).first()
        target = QueryTarget(_CLINICAL, str(c.pk) if c else "", field, item, v, "")
    else:
        target = QueryTarget(_LAB, "", "value_as_entered", item, v, "")
    text = (f"{v.code}: {item} is required at this visit and was neither entered nor "
            f"recorded as not done when {who} marked the form complete. Please enter it, or "
            "record it as not done with the reason.")
    q = _auto(p, target, "missing_item", text, "")
    return [q] if q is not None else []


# ---------------------------------------------------------------------- selectors
def queries(
    *,
    site_ids: Iterable[int] | None = None,
    participant: Participant | str | None = None,
    visit: Visit | None = None,
    status: str | Iterable[str] | None = None,
) -> models.QuerySet:
    """Queries (of these sites / this participant / this visit; ``status`` one or several),
    oldest first."""
    qs = Query.objects.select_related("participant", "participant__site", "visit",
                                      "raised_by", "closed_by")
    if site_ids is not None:
        qs = qs.filter(participant__site_id__in=list(site_ids))
    if participant is not None:
        qs = qs.filter(participant=_participant(participant))
    if visit is not None:
        qs = qs.filter(visit=visit)
    if status is not None:
        qs = qs.filter(status__in=[status] if isinstance(status, str) else list(status))
    return qs.order_by("raised_at", "pk")


def addressed_to(user: Any, *, site_ids: Iterable[int] | None = None) -> list[Query]:
    """The queries waiting for ``user``, oldest first: for the site (coordinator,
    investigator) the open ones of its sites; for a monitor or a data manager the answered
    ones it raised, and the answered automatic ones of its sites. Empty for other roles."""
    role = role_of(user)
    if role is None or role == "system":
        return []
    ids = set(site_ids_of(user)) if site_ids is None else set(site_ids)
    if allowed("answer_query", role):
        return list(queries(site_ids=ids, status="open"))
    if allowed("raise_query", role):
        qs = queries(site_ids=ids, status="answered")
        return list(qs.filter(models.Q(raised_by=user) | ~models.Q(origin="manual")))
    return []


def waiting_for(q: Query) -> str:
    """Whom an open query waits for, in words."""
    if q.status == "open":
        return "the site"
    if q.status == "answered":
        if q.origin == "manual":
            return q.raised_by.get_username()
        return "a monitor or data manager"
    return "nobody (closed)"


def age_days(q: Query, on: _dt.date) -> int:
    """Days since the query was raised (UTC date), on ``on``."""
    return (on - q.raised_at.astimezone(_dt.UTC).date()).days


def open_counts_by_age(site_ids: Iterable[int], on: _dt.date) -> list[dict[str, Any]]:
    """Queries not closed at these sites by age on ``on``: ``[{bucket, lowest, highest, n,
    open, answered}]`` in :data:`AGE_BUCKETS` order (every bucket, zeros included)."""
    rows: list[dict[str, Any]] = [
        {"bucket": b, "lowest": lo, "highest": hi, "n": 0, "open": 0, "answered": 0}
        for b, lo, hi in AGE_BUCKETS]
    for status, raised in Query.objects.filter(
            participant__site_id__in=list(site_ids), status__in=OPEN_STATUSES
    ).values_list("status", "raised_at"):
        age = (on - raised.astimezone(_dt.UTC).date()).days
        for r in rows:
            if age >= r["lowest"] and (r["highest"] is None or age <= r["highest"]):
                r["n"] += 1
                r[status] += 1
                break
        else:  # raised "after" on (a clock ahead of on): youngest bucket
            rows[0]["n"] += 1
            rows[0][status] += 1
    return rows


def open_counts(participant_ids: Iterable[int]) -> dict[tuple[int, int | None], int]:
    """``{(participant id, visit id or None): number of queries not closed}``."""
    out: dict[tuple[int, int | None], int] = {}
    for row in Query.objects.filter(participant_id__in=list(participant_ids),
                                    status__in=OPEN_STATUSES).values(
            "participant_id", "visit_id").annotate(n=models.Count("pk")):
        out[(row["participant_id"], row["visit_id"])] = int(row["n"])
    return out


def target_record(q: Query) -> Any:
    """The queried record now (None for an item never entered, or a deleted record)."""
    if not q.object_pk:
        return None
    try:
        model = apps.get_model(q.model_label)
    except LookupError:
        return None
    return model._base_manager.filter(pk=q.object_pk).first()


def current_value(q: Query) -> str:
    """The queried field's value now, as text (empty when not entered)."""
    obj = target_record(q)
    if obj is None:
        if q.model_label == _LAB and q.visit_id:
            lab = LabResult.objects.filter(visit_id=q.visit_id, analyte=q.item).first()
            return _value_text(lab, "value_as_entered") if lab is not None else ""
        return ""
    return _value_text(obj, q.field_name)


def may_see(user: Any, q: Query) -> bool:
    """True when ``user`` acts on the query's participant's site."""
    role = role_of(user)
    if role is None:
        return False
    if role == "system" or role in ALL_SITES_ROLES:
        return True
    return q.participant.site_id in site_ids_of(user)


def refuse_unless_seen(user: Any, q: Query) -> None:
    """PermissionDenied unless ``user`` acts on the query's site."""
    if not may_see(user, q):
        raise PermissionDenied(f"query {q.pk}: not a query of your sites")
