"""The rules of a participant (screening record): identity, demographics, screening data.

Rules (each problem names the record, the field and the reason):

* ``study_id``: a pseudonymous id, not empty, at most 40 characters;
* ``site``: one of the store's sites (when the service passes them);
* ``sex``: a code of :data:`hepatrial.vocab.SEX`; ``etiology``: a code of
  :data:`hepatrial.vocab.ETIOLOGY`;
* ``year_of_birth``: a whole year, from 1900, not after the screening year and not in the
  future;
* ``screening_date``: an ISO date, not in the future, not after enrolment (day 0);
* ``screening_data``: typed by the protocol's eligibility inputs
  (:func:`hepatrial.trials.validators.eligibility.parse_screening`).

Column-wise API for importers: :func:`participant_columns` (every rule but the screening
data; :func:`hepatrial.trials.validators.eligibility.screening_columns` parses those).
One-record form (create and change): :func:`validate_participant`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

from hepatrial import vocab
from hepatrial.trials.validators._common import (
    ColumnProblems,
    RuleViolation,
    date_problems,
    is_empty,
)
from hepatrial.trials.validators._common import (
    today as _today,
)
from hepatrial.trials.validators.eligibility import Screening, parse_screening

__all__ = ["FIRST_YEAR_OF_BIRTH", "participant_columns", "validate_participant"]

#: earliest year of birth accepted (a participant born before 1900 is a typing error)
FIRST_YEAR_OF_BIRTH = 1900
STUDY_ID_MAX = 40


def _year(v: Any) -> int | None:
    if isinstance(v, bool | np.bool_) or is_empty(v):
        return None
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, float | np.floating):
        return int(v) if float(v).is_integer() else None
    text = str(v).strip()
    return int(text) if text.isdigit() else None


def participant_columns(
    *,
    study_id: Any,
    sex: Any,
    year_of_birth: Any,
    etiology: Any,
    screening_date: Any,
    site: Any = None,
    known_sites: Collection[str] | None = None,
    enrolment_date: Any = None,
    today: _dt.date | None = None,
) -> tuple[dict[str, np.ndarray], ColumnProblems]:
    """Column-wise participant rules (one element per row; see the module docstring).

    Returns ``(typed, problems)``: ``typed`` has ``study_id`` (stripped text),
    ``year_of_birth`` (int or None) and ``screening_date`` (``datetime64[D]``).
    """
    ids = np.asarray(study_id, dtype=object).reshape(-1)
    n = len(ids)
    col = lambda v: np.broadcast_to(np.asarray(v, dtype=object), (n,))  # noqa: E731
    problems = ColumnProblems(n)
    text = np.array(["" if is_empty(x) else str(x).strip() for x in ids], dtype=object)
    problems.add("study_id", text == "", "missing (a pseudonymous study id is required)")
    long = np.array([len(t) > STUDY_ID_MAX for t in text], dtype=bool)
    problems.add_each("study_id", long, lambda i: (
        f"{text[i]!r} has {len(text[i])} characters (at most {STUDY_ID_MAX})"))
    if known_sites is not None:
        sites = col(site)
        bad = ~np.isin(sites.astype(str), list(known_sites))
        problems.add_each("site", bad, lambda i: (
            f"{sites[i]!r} is not a site of the trial (sites: "
            f"{', '.join(sorted(known_sites)) or 'none'})"))
    for name, values, pairs in (("sex", col(sex), vocab.SEX),
                                ("etiology", col(etiology), vocab.ETIOLOGY)):
        allowed = vocab.codes(pairs)
        bad = ~np.isin(values.astype(str), allowed) | np.array([v is None for v in values])
        problems.add_each(name, bad, lambda i, v=values, a=allowed: (
            f"{v[i]!r} is not one of {', '.join(a)}"))
    t = today or _today()
    sdate = date_problems(problems, "screening_date", col(screening_date), required=True,
                          today_=t)
    if enrolment_date is not None:
        from hepatrial.trials.validators._common import as_dates

        day0, _b = as_dates(col(enrolment_date))
        after = ~np.isnat(sdate) & ~np.isnat(day0) & (sdate > day0)
        problems.add_each("screening_date", after, lambda i: (
            f"{sdate[i]} is after enrolment (day 0 = {day0[i]})"))
    yob_in = col(year_of_birth)
    yob = np.array([_year(v) for v in yob_in], dtype=object)
    problems.add_each("year_of_birth", np.equal(yob, None), lambda i: (
        f"{yob_in[i]!r} is not a year" if not is_empty(yob_in[i]) else
        "missing (a year of birth is required)"))
    have = np.not_equal(yob, None)
    y = np.where(have, yob, 0).astype(int)
    problems.add_each("year_of_birth", have & (y < FIRST_YEAR_OF_BIRTH), lambda i: (
        f"{y[i]} is before {FIRST_YEAR_OF_BIRTH}"))
    problems.add_each("year_of_birth", have & (y > t.year), lambda i: (
        f"{y[i]} is in the future (this is {t.year})"))
    syear = np.where(np.isnat(sdate), 9999, sdate.astype("datetime64[Y]").astype(int) + 1970)
    problems.add_each("year_of_birth", have & (y > syear) & (y <= t.year), lambda i: (
        f"{y[i]} is after the screening date {sdate[i]}"))
    return {"study_id": text, "year_of_birth": yob, "screening_date": sdate}, problems


def validate_participant(
    values: Mapping[str, Any],
    *,
    record: str,
    protocol: Any,
    known_sites: Collection[str] | None = None,
    enrolment_date: _dt.date | None = None,
    today: _dt.date | None = None,
    check_screening: bool = True,
) -> dict[str, Any]:
    """One participant (the whole record after a create or change): every rule at once.

    ``values``: ``study_id``, ``site`` (code), ``sex``, ``year_of_birth``, ``etiology``,
    ``screening_date``, ``screening_data`` (as entered). Returns the typed values
    (``year_of_birth`` int, ``screening_date`` date, ``screening_data`` the stored form,
    ``screening_typed`` the typed form). Raises :class:`RuleViolation` naming ``record``.
    ``check_screening=False`` (a change touching neither the screening data nor the year of
    birth or screening date they are checked against) keeps the stored screening data as it is.
    """
    typed, problems = participant_columns(
        study_id=[values.get("study_id")], sex=[values.get("sex")],
        year_of_birth=[values.get("year_of_birth")], etiology=[values.get("etiology")],
        screening_date=[values.get("screening_date")], site=[values.get("site")],
        known_sites=known_sites, enrolment_date=[enrolment_date], today=today,
    )
    found = problems.problems(record)
    sdate = None if np.isnat(typed["screening_date"][0]) else typed["screening_date"][0].item()
    screening = Screening(dict(values.get("screening_data") or {}), {})
    try:
        if check_screening:
            screening = parse_screening(
                protocol, values.get("screening_data"), record=record,
                year_of_birth=typed["year_of_birth"][0], screening_date=sdate,
            )
    except RuleViolation as exc:
        found.extend(exc.problems)
    if found:
        raise RuleViolation(found)
    return {
        "study_id": typed["study_id"][0],
        "site": values.get("site"),
        "sex": values.get("sex"),
        "year_of_birth": int(typed["year_of_birth"][0]),
        "etiology": values.get("etiology"),
        "screening_date": sdate,
        "screening_data": screening.stored,
        "screening_typed": screening.typed,
    }
