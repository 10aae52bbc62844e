"""Visit schedule, visit dates, missed visits and protocol deviations.

Every write is judged by :mod:`hepatrial.trials.validators.visit` (create and change); the
window status is the protocol's classification (one implementation:
:meth:`hepatrial.protocol.models.Visit.classify`, via
:func:`~hepatrial.trials.validators.visit.window_status`).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from django.db import transaction
from django.utils import timezone

from hepatrial.trials.base import require_reason
from hepatrial.trials.models import (
    ClinicalAssessment,
    Participant,
    ProtocolDeviation,
    Visit,
    VisitStatus,
)
from hepatrial.trials.models.choices import DeviationCategory
from hepatrial.trials.services._common import (
    StoreError,
    _participant,
    _visit,
)
from hepatrial.trials.services._guard import _acting
from hepatrial.trials.services.protocol import active_protocol
from hepatrial.trials.validators import RuleViolation
from hepatrial.trials.validators._common import Problem, changes_needing_reason
from hepatrial.trials.validators.visit import (
    VisitDate,
    validate_deviation,
    validate_not_done,
    validate_visit_change,
    validate_visit_date,
    window_status,
)


def schedule_visits(*, participant: Participant | str, user: Any = None) -> list[Visit]:
    """Create the participant's protocol visits (scheduled date = day 0 + target day).

    Visits that already exist are left alone. Needs an enrolment date."""
    p = _participant(participant)
    if p.enrolment_date is None:
        raise StoreError(f"participant {p}: not enrolled (no day 0), cannot schedule visits")
    proto = active_protocol()
    user = _acting(user, p)
    existing = set(p.visits.values_list("code", flat=True))
    out = []
    with transaction.atomic():
        for v in proto.visits:
            if v.code in existing:
                continue
            visit = Visit(
                participant=p,
                code=v.code,
                label=v.label,
                nominal_day=v.target_day,
                window_lower=v.window_lower,
                window_upper=v.window_upper,
                scheduled_date=p.enrolment_date + _dt.timedelta(days=v.target_day),
            )
            visit.save(user=user)
            out.append(visit)
    return out


def _classify(visit: Visit, actual: _dt.date, day0: _dt.date) -> tuple[str, int]:
    """``(status, study day)`` of ``visit`` done on ``actual``: the protocol's window
    classification of the window stored with the visit."""
    day = (actual - day0).days
    return window_status(visit.nominal_day, visit.window_lower, visit.window_upper, day), day


def check_visit_date(
    *, participant: Participant | str, visit_code: Visit | str, actual_date: Any
) -> VisitDate:
    """Validate the actual date of a visit (first entry or change) without writing; returns the
    date, its study day and window status."""
    p = _participant(participant)
    v = _visit(p, visit_code)
    return validate_visit_date(
        record=f"participant {p} visit {v.code}", actual_date=actual_date,
        enrolment_date=p.enrolment_date, nominal_day=v.nominal_day,
        window_lower=v.window_lower, window_upper=v.window_upper,
    )


def record_visit(
    *,
    participant: Participant | str,
    visit_code: str,
    actual_date: Any,
    reason: str | None = None,
    user: Any = None,
) -> Visit:
    """Record that a visit took place on ``actual_date``; classify it against its window.

    Status becomes ``in_window``, ``early`` or ``late`` (window bounds inclusive, day counted
    from day 0). An early or late visit creates a ``visit_window`` :class:`ProtocolDeviation`
    in the same transaction, and an automatic query asking the site to confirm the date
    (:func:`hepatrial.trials.services.queries.raise_window_query`). Recording the first actual
    date of a scheduled visit is data entry (reason optional); changing an already recorded
    date needs ``reason``.
    """
    p = _participant(participant)
    v = _visit(p, visit_code)
    user = _acting(user, p)
    what = f"participant {p} visit {v.code}"
    checked = check_visit_date(participant=p, visit_code=v, actual_date=actual_date)
    actual, status, day = checked.actual_date, checked.status, checked.day
    if v.actual_date is not None or v.status in (VisitStatus.MISSED, VisitStatus.NOT_DONE):
        if v.actual_date == actual:
            return v
        was = v.actual_date or v.status
        why = require_reason(reason, f"changing the date of {what} (recorded {was})")
    else:
        why = reason.strip() if reason and reason.strip() else "visit recorded"
    with transaction.atomic():
        v.actual_date = actual
        v.status = status
        v.save(user=user, reason=why)
        if status != VisitStatus.IN_WINDOW:
            lo, hi = v.nominal_day + v.window_lower, v.nominal_day + v.window_upper
            ProtocolDeviation(
                participant=p,
                visit=v,
                category=DeviationCategory.VISIT_WINDOW,
                description=(
                    f"visit {v.code} on day {day} ({actual}) is {status}: "
                    f"window is day {lo} to {hi} (target {v.nominal_day})"
                ),
                date=actual,
                detected_by="system",
            ).save(user=user)
            _window_query(v)
    return v


def _window_query(visit: Visit) -> None:
    """Open the automatic query of a visit date outside its window (or note the new date on
    the open one)."""
    from hepatrial.trials.services.queries import raise_window_query

    raise_window_query(visit)


def mark_visit_not_done(
    *,
    participant: Participant | str,
    visit_code: str,
    status: str = VisitStatus.MISSED,
    reason: str,
    user: Any = None,
) -> Visit:
    """Mark a visit ``missed`` (creates a ``missed_visit`` deviation) or ``not_done``."""
    p = _participant(participant)
    v = _visit(p, visit_code)
    what = f"participant {p} visit {v.code}"
    n_results = v.labs.count() + ClinicalAssessment.objects.filter(visit=v).count()
    validate_not_done(record=what, status=status, n_results=n_results)
    why = require_reason(reason, f"marking {what} {status}")
    user = _acting(user, p)
    with transaction.atomic():
        v.status = status
        v.actual_date = None
        v.save(user=user, reason=why)
        if status == VisitStatus.MISSED:
            ProtocolDeviation(
                participant=p,
                visit=v,
                category=DeviationCategory.MISSED_VISIT,
                description=f"visit {v.code} missed: {why}",
                date=v.scheduled_date or timezone.now().date(),
                detected_by="system",
            ).save(user=user)
    return v


def check_visit_change(visit: Visit, changes: dict[str, Any]) -> dict[str, Any]:
    """Validate a correction of a visit's ``label``/``scheduled_date`` without writing."""
    return validate_visit_change(
        record=f"participant {visit.participant} visit {visit.code}", changes=changes)


def check_deviation(
    *, participant: Participant | str, category: Any, description: Any, date: Any
) -> tuple[str, str, _dt.date]:
    """Validate a protocol deviation (new, or the record after a change) without writing."""
    p = _participant(participant)
    return validate_deviation(record=f"participant {p} deviation", category=category,
                              description=description, date=date)


def update_visit(
    visit: Visit, *, reason: str | None = None, user: Any = None, **changes: Any
) -> Visit:
    """Correct a visit's ``label`` or ``scheduled_date`` (a reason is needed unless the value
    was empty: the first entry of a value is data entry).

    Use :func:`record_visit` for the date a visit was done."""
    what = f"participant {visit.participant} visit {visit.code}"
    new = validate_visit_change(record=what, changes=changes)
    old = {k: getattr(visit, k) for k in new}
    changed = {k: v for k, v in new.items() if old[k] != v}
    if not changed:
        return visit
    needing = changes_needing_reason(old, changed)
    why = (require_reason(reason, f"changing {what} ({', '.join(needing)})") if needing
           else (reason or "").strip() or f"data entry: {', '.join(sorted(changed))} entered")
    for k, v in changed.items():
        setattr(visit, k, v)
    visit.save(user=_acting(user, visit.participant), reason=why)
    return visit


def record_deviation(
    *,
    participant: Participant | str,
    category: str,
    description: str,
    date: Any,
    visit_code: str | None = None,
    major: bool = False,
    user: Any = None,
) -> ProtocolDeviation:
    """Record a protocol deviation found by a person (``detected_by`` = their username)."""
    p = _participant(participant)
    u = _acting(user, p)
    visit = _visit(p, visit_code) if visit_code else None
    category, description, d = validate_deviation(
        record=f"participant {p} deviation", category=category, description=description,
        date=date)
    dev = ProtocolDeviation(
        participant=p,
        visit=visit,
        category=category,
        description=description,
        date=d,
        major=bool(major),
        detected_by=u.get_username(),
    )
    dev.save(user=u)
    return dev


def update_deviation(
    deviation: ProtocolDeviation, *, reason: str, user: Any = None, **changes: Any
) -> ProtocolDeviation:
    """Correct a deviation's ``category``, ``description``, ``date`` or ``major`` (a reason is
    always needed: a deviation is never empty)."""
    what = f"participant {deviation.participant} deviation"
    bad = sorted(set(changes) - {"category", "description", "date", "major"})
    if bad:
        raise RuleViolation([Problem(what, k, "cannot be changed here (allowed: category, "
                                     "description, date, major)") for k in bad])
    category, description, d = validate_deviation(
        record=what, category=changes.get("category", deviation.category),
        description=changes.get("description", deviation.description),
        date=changes.get("date", deviation.date))
    major = bool(changes.get("major", deviation.major))
    new = {"category": category, "description": description, "date": d, "major": major}
    if all(getattr(deviation, k) == v for k, v in new.items()):
        return deviation
    why = require_reason(reason, f"changing {what}")
    for k, v in new.items():
        setattr(deviation, k, v)
    deviation.save(user=_acting(user, deviation.participant), reason=why)
    return deviation
