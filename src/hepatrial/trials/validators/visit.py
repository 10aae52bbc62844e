"""The rules of a visit: its actual date, its window status, not done, and its deviations.

Rules (each problem names the record, the field and the reason):

* ``actual_date``: an ISO date, not in the future; the participant is enrolled (has a day 0);
  not before day 0 unless the visit is a screening visit (target day before day 0);
* window status: the protocol's classification, one implementation
  (:meth:`hepatrial.protocol.models.Visit.classify`: ``in_window`` when target + lower ≤ day ≤
  target + upper, bounds inclusive, else ``early``/``late``) applied to the window stored with
  the visit when it was scheduled;
* a visit with results (labs, a clinical assessment) cannot be marked missed or not done;
* a visit is *done* when it has an actual date and is neither missed nor not done: only a done
  visit can have results (:func:`visit_done_columns`, used by the lab and clinical rules);
* ``label`` at most 100 characters, ``scheduled_date`` an ISO date;
* a protocol deviation has a known category, a description and a date not in the future.

Column-wise API for importers: :func:`visit_date_columns`, :func:`window_status_columns`,
:func:`visit_done_columns`. One-record forms: :func:`validate_visit_date`,
:func:`validate_not_done`, :func:`validate_visit_change`, :func:`validate_deviation`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from hepatrial import vocab
from hepatrial.trials.validators._common import (
    Checker,
    ColumnProblems,
    RuleViolation,
    as_dates,
    date_problems,
    is_empty,
)

__all__ = [
    "NOT_DONE",
    "VisitDate",
    "validate_deviation",
    "validate_not_done",
    "validate_visit_change",
    "validate_visit_date",
    "visit_date_columns",
    "visit_done_columns",
    "window_status",
    "window_status_columns",
]

#: visit statuses of a visit that did not take place
NOT_DONE: tuple[str, ...] = ("missed", "not_done")


@dataclass(frozen=True)
class VisitDate:
    """A visit date that passed the rules: the date, its study day and window status."""

    actual_date: _dt.date
    day: int
    status: str


@lru_cache(maxsize=4096)
def window_status(nominal_day: int, window_lower: int, window_upper: int, actual_day: int) -> str:
    """``in_window``, ``early`` or ``late``: the protocol's classification
    (:meth:`hepatrial.protocol.models.Visit.classify`) for a visit window stored in the store."""
    from hepatrial.protocol.models import Visit

    v = Visit.model_construct(
        code="V", label="", target_day=int(nominal_day), window_lower=int(window_lower),
        window_upper=int(window_upper), source="derived",
    )
    return v.classify(int(actual_day))


def window_status_columns(
    nominal_day: Any, window_lower: Any, window_upper: Any, actual_day: Any
) -> np.ndarray:
    """Column-wise :func:`window_status` (object array; None where ``actual_day`` is missing)."""
    days = np.asarray(actual_day, dtype=object).reshape(-1)
    n = len(days)
    nom = np.broadcast_to(np.asarray(nominal_day, dtype=object), (n,))
    lo = np.broadcast_to(np.asarray(window_lower, dtype=object), (n,))
    hi = np.broadcast_to(np.asarray(window_upper, dtype=object), (n,))
    out = np.full(n, None, dtype=object)
    for i in range(n):
        if not is_empty(days[i]):
            out[i] = window_status(int(nom[i]), int(lo[i]), int(hi[i]), int(days[i]))
    return out


def visit_done_columns(visit_date: Any, visit_status: Any) -> ColumnProblems:
    """Column-wise: each row's visit has been done (field ``visit``).

    A visit is done when it has an actual date and its status is not missed / not done.
    """
    dates, _bad = as_dates(visit_date)
    status = np.broadcast_to(np.asarray(visit_status, dtype=object), dates.shape)
    problems = ColumnProblems(len(dates))
    not_done = np.isin(status.astype(str), NOT_DONE)
    problems.add_each("visit", not_done, lambda i: (
        f"the visit is {str(status[i]).replace('_', ' ')}: a visit that did not take place "
        "has no results"))
    problems.add("visit", np.isnat(dates) & ~not_done,
                 "the visit has not been done yet (no actual date): record the visit first")
    return problems


def visit_date_columns(
    *,
    actual_date: Any,
    enrolment_date: Any,
    nominal_day: Any,
    today: _dt.date | None = None,
) -> tuple[np.ndarray, ColumnProblems]:
    """Column-wise: the actual date of each visit (field ``actual_date``).

    Returns ``(dates as datetime64[D], problems)``.
    """
    problems = ColumnProblems(len(np.asarray(actual_date, dtype=object).reshape(-1)))
    n = problems.n
    dates = date_problems(problems, "actual_date", actual_date, required=True, today_=today)
    day0, _bad = as_dates(np.broadcast_to(np.asarray(enrolment_date, dtype=object), (n,)))
    nominal = np.broadcast_to(np.asarray(nominal_day, dtype=object), (n,)).astype(float)
    problems.add("actual_date", np.isnat(day0),
                 "the participant is not enrolled (no day 0): visits follow enrolment")
    before = ~np.isnat(dates) & ~np.isnat(day0) & (dates < day0) & (nominal >= 0)
    problems.add_each("actual_date", before, lambda i: (
        f"{dates[i]} is before enrolment (day 0 = {day0[i]}); only a screening visit "
        "(before day 0) can be"))
    return dates, problems


def validate_visit_date(
    *,
    record: str,
    actual_date: Any,
    enrolment_date: _dt.date | None,
    nominal_day: int,
    window_lower: int,
    window_upper: int,
    today: _dt.date | None = None,
) -> VisitDate:
    """The actual date of one visit (first entry or change): rules and window status."""
    dates, problems = visit_date_columns(
        actual_date=[actual_date], enrolment_date=[enrolment_date], nominal_day=[nominal_day],
        today=today,
    )
    if problems:
        raise RuleViolation(problems.problems(record))
    d = dates[0].item()
    assert enrolment_date is not None
    day = (d - enrolment_date).days
    return VisitDate(d, day, window_status(nominal_day, window_lower, window_upper, day))


def validate_not_done(*, record: str, status: str, n_results: int) -> None:
    """Marking a visit missed / not done: a known status, and no results recorded for it."""
    c = Checker(record)
    c.check(status in NOT_DONE, "status", f"{status!r} is not one of {', '.join(NOT_DONE)}")
    c.check(n_results == 0, "status", f"the visit has {n_results} result(s) (labs or clinical "
            "assessment): a visit with results took place; correct its date instead")
    c.done()


def validate_visit_change(*, record: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    """A correction of a visit's ``label`` or ``scheduled_date``; returns the typed changes."""
    c = Checker(record)
    out: dict[str, Any] = {}
    for name, value in changes.items():
        if name == "label":
            text = "" if value is None else str(value).strip()
            if c.check(len(text) <= 100, "label", f"{len(text)} characters (at most 100)"):
                out[name] = text
        elif name == "scheduled_date":
            p = ColumnProblems(1)
            d = date_problems(p, "scheduled_date", [value], required=True, not_future=False)
            c.problems.extend(p.problems(record))
            if not p:
                out[name] = d[0].item()
        else:
            c.fail(name, "cannot be changed here (allowed: label, scheduled_date; the date a "
                   "visit was done is recorded with record_visit)")
    c.done()
    return out


def validate_deviation(
    *,
    record: str,
    category: Any,
    description: Any,
    date: Any,
    today: _dt.date | None = None,
) -> tuple[str, str, _dt.date]:
    """A protocol deviation: category, description and date; returns them typed."""
    c = Checker(record)
    cats = vocab.codes(vocab.DEVIATION_CATEGORY)
    c.check(category in cats, "category", f"{category!r} is not one of {', '.join(cats)}")
    text = "" if description is None else str(description).strip()
    c.check(bool(text), "description", "missing (say what happened)")
    p = ColumnProblems(1)
    d = date_problems(p, "date", [date], required=True, today_=today)
    c.problems.extend(p.problems(record))
    c.done()
    return str(category), text, d[0].item()
