"""The rules of an informed consent record (ICH E6(R2) 4.8.8: signed and dated before the
participant takes part).

Rules (each problem names the record, the field and the reason):

* ``version``: the consent document's version, not empty, at most 50 characters;
* ``date``: the date signed, an ISO date, not in the future, not before the participant's year
  of birth.

Column-wise API for importers: :func:`consent_columns`. One-record form (create and change):
:func:`validate_consent`.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np

from hepatrial.trials.validators._common import (
    ColumnProblems,
    RuleViolation,
    date_problems,
    is_empty,
)

__all__ = ["VERSION_MAX", "consent_columns", "validate_consent"]

VERSION_MAX = 50


def consent_columns(
    *,
    version: Any,
    date: Any,
    year_of_birth: Any = None,
    today: _dt.date | None = None,
) -> tuple[np.ndarray, ColumnProblems]:
    """Column-wise consent rules; returns ``(dates as datetime64[D], problems)`` with fields
    ``version`` and ``date``."""
    versions = np.asarray(version, dtype=object).reshape(-1)
    n = len(versions)
    problems = ColumnProblems(n)
    text = np.array(["" if is_empty(v) else str(v).strip() for v in versions], dtype=object)
    problems.add("version", text == "", "missing (the version of the consent document signed)")
    problems.add_each("version", np.array([len(t) > VERSION_MAX for t in text], dtype=bool),
                      lambda i: f"{len(text[i])} characters (at most {VERSION_MAX})")
    dates = date_problems(problems, "date", np.broadcast_to(np.asarray(date, dtype=object), (n,)),
                          required=True, today_=today)
    if year_of_birth is not None:
        yob = np.broadcast_to(np.asarray(year_of_birth, dtype=object), (n,))
        years = np.where(np.isnat(dates), 0, dates.astype("datetime64[Y]").astype(int) + 1970)
        early = np.array([not is_empty(b) and y and y < int(b) for b, y in zip(yob, years,
                                                                              strict=True)])
        problems.add_each("date", early, lambda i: (
            f"{dates[i]} is before the year of birth {yob[i]}"))
    return dates, problems


def validate_consent(
    *,
    record: str,
    version: Any,
    date: Any,
    year_of_birth: int | None = None,
    today: _dt.date | None = None,
) -> tuple[str, _dt.date]:
    """One consent (create or change); returns ``(version, date)`` or raises
    :class:`RuleViolation` naming ``record`` (e.g. ``participant K01 consent``)."""
    dates, problems = consent_columns(version=[version], date=[date],
                                      year_of_birth=[year_of_birth], today=today)
    if problems:
        raise RuleViolation(problems.problems(record))
    return str(version).strip(), dates[0].item()
