"""The rules of a laboratory result (and of every lab value entered elsewhere, e.g. screening).

A lab value is entered with its unit. The analyte registry (:mod:`hepatrial.protocol.analytes`)
knows the analyte, the units it accepts and their factor to the canonical (SI) unit, and the
hard limits outside which a value is impossible - most often a unit mistake such as bilirubin
2.7 typed in mg/dL but labelled µmol/L. The registry's :func:`~hepatrial.protocol.analytes.
to_canonical_array` / :func:`~hepatrial.protocol.analytes.to_canonical` apply those limits: the
same limits for the lab form, the lab service, the importers and the screening labs.

Rules (each problem names the record, the field and the reason):

* ``analyte``: a registered analyte code;
* ``unit``: a unit the registry accepts for the analyte (``mg/dL`` for bilirubin is converted);
* ``value``: a finite number (text as entered, e.g. ``"2.30"``; not a boolean, not ``1,5``),
  inside the analyte's hard limits once converted;
* ``specimen_date``: an ISO date, not in the future;
* ``visit``: the visit has been done - it has an actual date and is neither missed nor not done
  (a result of a visit that did not happen cannot exist; record the visit first).

Column-wise API for importers (numpy arrays, pandas Series or lists, one element per row):
:func:`lab_value_columns` (analyte, value, unit → canonical values and problems) and
:func:`lab_columns` (all the rules above). :func:`validate_lab` is the one-record form used by
the services (create and change) and, through them, the admin.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np

from hepatrial.trials.validators._common import (
    Checker,
    ColumnProblems,
    RuleViolation,
    date_problems,
)
from hepatrial.trials.validators.visit import visit_done_columns

__all__ = ["LabValue", "lab_columns", "lab_value_columns", "validate_lab", "value_text"]


@dataclass(frozen=True)
class LabValue:
    """A lab value that passed every rule: as entered and in the canonical unit."""

    analyte: str
    value_as_entered: str
    unit_as_entered: str
    value: float
    unit: str
    loinc: str
    specimen_date: _dt.date | None


def value_text(value: Any) -> str | None:
    """The value as entered, as text (``2.30`` stays ``"2.30"``; a float keeps its repr), or
    None when it is not a plain number by :mod:`hepatrial.scores.numbers` (None, a boolean,
    ``"abc"``, ``"1,5"``, ``"4_6"``, non-ASCII digits, NaN, infinity, a list)."""
    from hepatrial.scores.numbers import number_problem

    if isinstance(value, Decimal):
        value = str(value)
    elif isinstance(value, np.floating):
        value = float(value)
    elif isinstance(value, np.integer):
        value = int(value)
    if number_problem(value) is not None:
        return None
    return repr(value) if isinstance(value, float) else str(value).strip()


def _numbers(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Floats of a column and the mask of values that are not plain numbers (one rule:
    :data:`hepatrial.scores.numbers.NUMBER_PATTERN`, checked column-wise with pyarrow)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from hepatrial.scores.numbers import NUMBER_PATTERN

    if values.dtype.kind in "iuf":
        nums = values.astype(float)
        return nums, ~np.isfinite(nums)
    n = len(values)
    nums = np.full(n, np.nan)
    if values.dtype.kind == "b" or n == 0:
        return nums, np.ones(n, dtype=bool)
    # every cell as text (numbers by str(), so 2.3 -> "2.3"; None/True/[1] never match)
    try:
        as_text = values.astype(str)
    except ValueError:  # a cell holding a sequence
        as_text = np.array([str(v) for v in values])
    text = pc.utf8_trim_whitespace(pa.array(as_text, type=pa.string()))
    ok = pc.match_substring_regex(text, NUMBER_PATTERN)
    idx = np.flatnonzero(ok.to_numpy(zero_copy_only=False))
    nums[idx] = pc.cast(pc.filter(text, ok), pa.float64()).to_numpy(zero_copy_only=False)
    return nums, ~np.isfinite(nums)


def _not_a_number(vals: np.ndarray) -> Any:
    from hepatrial.scores.numbers import number_problem

    def why(i: int) -> str:
        return number_problem(vals[i]) or f"{vals[i]!r} is not a number"

    return why


def lab_value_columns(
    analyte: Any, value: Any, unit: Any
) -> tuple[np.ndarray, np.ndarray, ColumnProblems]:
    """Column-wise: analyte known, unit accepted, value a number inside the hard limits.

    Args:
        analyte, value, unit: one element per row (arrays, Series, lists; ``analyte``/``unit``
            may be a single string for every row). Values may be text as entered or numbers.

    Returns:
        ``(canonical, canonical_unit, problems)``: the values in the canonical unit (NaN where a
        rule failed), the canonical unit per row and a :class:`ColumnProblems` with fields
        ``analyte``, ``unit``, ``value``.
    """
    from hepatrial.protocol import analytes

    vals = np.asarray(value, dtype=object).reshape(-1)
    n = len(vals)
    codes = np.broadcast_to(np.asarray(analyte, dtype=object), (n,))
    units = np.broadcast_to(np.asarray(unit, dtype=object), (n,))
    problems = ColumnProblems(n)
    nums, not_number = _numbers(vals)
    problems.add_each("value", not_number, _not_a_number(vals))
    canonical = np.full(n, np.nan)
    canon_unit = np.full(n, "", dtype=object)
    keys = np.array([f"{c}\x00{u}" for c, u in zip(codes, units, strict=True)], dtype=object)
    for key in dict.fromkeys(keys.tolist()):
        rows = keys == key
        code, u = key.split("\x00", 1)
        if code not in analytes.ANALYTES:
            known = ", ".join(sorted(analytes.ANALYTES))
            problems.add("analyte", rows, f"unknown analyte {code!r} (known: {known})")
            continue
        a = analytes.analyte(code)
        canon_unit[rows] = a.unit
        try:
            a.factor(u)
        except analytes.AnalyteError as exc:
            problems.add("unit", rows, str(exc))
            continue
        ok = rows & ~not_number
        if not ok.any():
            continue
        try:
            canonical[ok] = analytes.to_canonical_array(code, nums[ok], u)
        except analytes.RangeError:  # which ones: ask the registry value by value
            whys = np.full(n, None, dtype=object)
            for i in np.flatnonzero(ok):
                try:
                    canonical[i] = analytes.to_canonical(code, float(nums[i]), u)
                except analytes.RangeError as exc:
                    whys[i] = str(exc)
            problems.add("value", np.not_equal(whys, None), whys)
    return canonical, canon_unit, problems


def lab_columns(
    *,
    analyte: Any,
    value: Any,
    unit: Any,
    specimen_date: Any = None,
    visit_date: Any = None,
    visit_status: Any = None,
    check_visit: bool = True,
    today: _dt.date | None = None,
) -> tuple[np.ndarray, ColumnProblems]:
    """Every rule of a lab result, column-wise (see the module docstring).

    ``visit_date``/``visit_status`` are the facts of each row's visit (its actual date and
    status once the import has recorded the visits it brings); ``check_visit=False`` leaves the
    visit rule out (for lab values that belong to no visit, e.g. screening data).

    Returns ``(canonical values, problems)``; problem fields are ``analyte``, ``unit``,
    ``value``, ``specimen_date`` and ``visit``.
    """
    canonical, _units, problems = lab_value_columns(analyte, value, unit)
    n = problems.n
    if specimen_date is not None:
        date_problems(problems, "specimen_date", np.broadcast_to(
            np.asarray(specimen_date, dtype=object), (n,)), today_=today)
    if check_visit:
        problems.merge(visit_done_columns(
            np.broadcast_to(np.asarray(visit_date, dtype=object), (n,)),
            np.broadcast_to(np.asarray(visit_status, dtype=object), (n,)),
        ))
    return canonical, problems


def validate_lab(
    *,
    record: str,
    analyte: str,
    value: Any,
    unit: str,
    specimen_date: Any = None,
    visit_date: Any = None,
    visit_status: str | None = None,
    today: _dt.date | None = None,
) -> LabValue:
    """One lab result (create or change): every rule, all problems at once.

    ``specimen_date`` None means the visit's date (filled in by the service). Raises
    :class:`RuleViolation` naming ``record`` (e.g. ``participant K01 visit W1 lab bilirubin``).
    """
    from hepatrial.protocol import analytes
    from hepatrial.textrules import text_problem

    pre = Checker(record)
    if not isinstance(value, str | int | float | Decimal | np.number) or isinstance(
        value, bool | np.bool_
    ):
        pre.fail("value", f"{value!r} is not a number")
    for field_name, text, limit in (("analyte", analyte, 40), ("unit", unit, 30)):
        if not isinstance(text, str):
            pre.fail(field_name, f"{text!r} is not text")
        elif (why := text_problem(text, limit)) is not None:
            pre.fail(field_name, why)
    if isinstance(value, str) and (why := text_problem(value.strip(), 50)) is not None:
        pre.fail("value", why)
    pre.done()
    canonical, problems = lab_columns(
        analyte=[analyte], value=[value], unit=[unit], specimen_date=[specimen_date],
        visit_date=[visit_date], visit_status=[visit_status], today=today,
    )
    if problems:
        raise RuleViolation(problems.problems(record))
    a = analytes.analyte(analyte)
    text = value_text(value)
    assert text is not None  # the value rule passed
    spec = _first_date(specimen_date)
    return LabValue(analyte, text, str(unit).strip(), float(canonical[0]), a.unit, a.loinc, spec)


def _first_date(value: Any) -> _dt.date | None:
    from hepatrial.trials.validators._common import as_dates

    d, _bad = as_dates([value])
    return None if np.isnat(d[0]) else d[0].item()


def lab_records(participants: Sequence[str], visits: Sequence[str], analytes: Sequence[str]
                ) -> list[str]:
    """Record names ``participant P visit V lab A`` for column-wise problems."""
    return [f"participant {p} visit {v} lab {a}"
            for p, v, a in zip(participants, visits, analytes, strict=True)]
