"""The rules of screening data and of an eligibility assessment.

Screening data is typed by the protocol's eligibility inputs
(:class:`hepatrial.protocol.models.EligibilityInput`, ``[[eligibility_inputs]]`` in the TOML).
What a user enters (a form, the API, a CSV row) is parsed here, once, into

* the **stored** form kept in ``Participant.screening_data`` exactly as entered: booleans
  ``true``/``false``, lab values ``{"value": "2.7", "unit": "mg/dL"}`` (text as entered and the
  unit it was entered in), plain numbers, choice codes, ISO dates;
* the **typed** form the protocol evaluates (:meth:`Protocol.screen`): booleans, lab values in
  the canonical unit (converted by the analyte registry), numbers, codes, ``datetime.date``.

Rules (field ``screening_data.<input>``):

* every key is an input of the protocol, entered (not one the store derives: ``sex``,
  ``etiology``, ``informed_consent`` come from the participant and consent records; an exact
  ``age`` may be entered and must agree with the year of birth), given once;
* ``boolean``: ``true``/``false`` only - a JSON/Python boolean or the text ``true``/``false``
  (``"yes"``, ``1``, ``"y"`` are refused, so ``"hcc": "yes"`` can never pass an exclusion);
* ``number`` with an analyte: the value carries its unit - ``{"value": 2.7, "unit": "mg/dL"}``
  or a key named with the unit as ``hepatrial score`` columns are (``bilirubin_mg_dl``,
  ``bilirubin_umol_l``, ``creatinine_mg_dl``, ``inr``, ...); a bare number is refused unless the
  analyte is dimensionless (INR). The unit must be one the registry accepts and the value inside
  the registry's hard limits (:func:`hepatrial.trials.validators.lab.lab_value_columns`, the same
  rule as the lab form);
* plain ``number``: a finite number within the input's ``minimum``/``maximum``;
* ``choice``: one of the input's codes; ``date``: ISO ``YYYY-MM-DD``.

An eligibility assessment is made only by evaluating the protocol
(``services.assess_eligibility``) and never changes (the model's ``save`` refuses any other
write; every path saves through it). Its date is an ISO date, not in the future and not before
screening. Enrolment uses the latest assessment only while it
is current: made on the screening data the participant has now (:func:`assessment_is_current`).

Column-wise API for importers (``hepatrial import participants``): :func:`input_columns` (the
column names a protocol's entered inputs may have), :func:`screening_columns` (parse those
columns for every row at once), :func:`parse_input` (one input, column-wise). One-record form:
:func:`parse_screening`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hepatrial.trials.validators._common import (
    Checker,
    ColumnProblems,
    Problem,
    RuleViolation,
    as_dates,
    date_problems,
    is_empty,
)

__all__ = [
    "Screening",
    "age_at_screening",
    "assessment_is_current",
    "evaluation_data",
    "evaluation_json",
    "input_columns",
    "parse_input",
    "parse_screening",
    "screening_columns",
    "unit_suffix",
    "validate_assessed_on",
]

_TRUE, _FALSE = "true", "false"


@dataclass(frozen=True)
class Screening:
    """Screening data that passed the rules: as entered (``stored``) and typed (``typed``)."""

    stored: dict[str, Any]
    typed: dict[str, Any]


def unit_suffix(unit: str) -> str:
    """Column-name suffix of a unit, as ``hepatrial score`` names its columns:
    ``umol/L`` → ``umol_l``, ``mg/dL`` → ``mg_dl``, ``10^9/L`` → ``10e9_l``, ``U/L`` → ``u_l``."""
    from hepatrial.protocol.analytes import normalise_unit

    return normalise_unit(unit).replace("^", "e").replace("/", "_").replace(".", "_")


def input_columns(protocol: Any) -> dict[str, tuple[Any, str | None]]:
    """Every column (or screening-data key) name an entered input may be given under.

    ``{name: (input, unit)}``: a lab input is named with the unit it is entered in
    (``bilirubin_umol_l``, ``bilirubin_mg_dl``; a dimensionless analyte such as ``inr`` bare,
    unit ``1``); other inputs by their name (unit None). ``age`` (an exact age at screening) is
    included; the other derived inputs are not.
    """
    from hepatrial.protocol import analytes

    out: dict[str, tuple[Any, str | None]] = {}
    for inp in protocol.eligibility_inputs:
        if not inp.entered and inp.name != "age":
            continue
        if inp.analyte is None:
            out[inp.name] = (inp, None)
            continue
        a = analytes.analyte(inp.analyte)
        if a.unit == "1":
            out[inp.name] = (inp, "1")
            continue
        for u in a.units:
            out.setdefault(f"{inp.name}_{unit_suffix(u)}", (inp, u))
    return out


def parse_input(
    inp: Any, values: Any, units: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse one input column-wise.

    Args:
        inp: the protocol's :class:`~hepatrial.protocol.models.EligibilityInput`.
        values: one value per row (text as entered or typed values; empty = not given).
        units: for a lab input, the unit of each row (or one for all).

    Returns:
        ``(stored, typed, reasons)`` object arrays; ``reasons[i]`` is None when row ``i`` is
        good or not given (then ``stored``/``typed`` are None too).
    """
    vals = np.asarray(values, dtype=object).reshape(-1)
    n = len(vals)
    stored = np.full(n, None, dtype=object)
    typed = np.full(n, None, dtype=object)
    reasons = np.full(n, None, dtype=object)
    given = np.array([not is_empty(v) for v in vals], dtype=bool)
    if inp.kind == "number" and inp.analyte is not None:
        from hepatrial.trials.validators.lab import lab_value_columns, value_text

        u = np.broadcast_to(np.asarray(units, dtype=object), (n,))
        idx = np.flatnonzero(given)
        canon, _cu, problems = lab_value_columns(inp.analyte, vals[idx], u[idx])
        for k, i in enumerate(idx):
            why = [f"{f}: {col[k]}" if f != "value" else str(col[k])
                   for f, col in problems.reasons.items() if col[k] is not None]
            if why:
                reasons[i] = f"{'; '.join(why)} ({vals[i]!r} {u[i]})"
            else:
                stored[i] = {"value": value_text(vals[i]), "unit": str(u[i]).strip()}
                typed[i] = float(canon[k])
        return stored, typed, reasons
    for i in np.flatnonzero(given):
        v = vals[i]
        if inp.kind == "boolean":
            b = _boolean(v)
            if b is None:
                reasons[i] = f"{v!r} is not a boolean (true or false)"
            else:
                stored[i] = typed[i] = b
        elif inp.kind == "number":
            x = _number(v)
            if x is None:
                reasons[i] = f"{v!r} is not a number"
            elif inp.minimum is not None and x < inp.minimum:
                reasons[i] = f"{v!r} is below {inp.minimum:g} {inp.unit or ''}".rstrip()
            elif inp.maximum is not None and x > inp.maximum:
                reasons[i] = f"{v!r} is above {inp.maximum:g} {inp.unit or ''}".rstrip()
            else:
                stored[i] = typed[i] = x
        elif inp.kind == "choice":
            code = v.strip() if isinstance(v, str) else v
            if isinstance(code, str) and code in inp.choices:
                stored[i] = typed[i] = code
            else:
                reasons[i] = f"{v!r} is not one of {', '.join(inp.choices)}"
        else:  # date
            d, bad = as_dates([v])
            if bad[0]:
                reasons[i] = f"{v!r} is not a date (YYYY-MM-DD)"
            else:
                typed[i] = d[0].item()
                stored[i] = typed[i].isoformat()
    return stored, typed, reasons


def _boolean(v: Any) -> bool | None:
    if isinstance(v, bool | np.bool_):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in (_TRUE, _FALSE):
        return v.strip().lower() == _TRUE
    return None


def _number(v: Any) -> int | float | None:
    if isinstance(v, bool | np.bool_) or v is None:
        return None
    if isinstance(v, int | np.integer):
        return int(v)
    try:
        x = float(v.strip() if isinstance(v, str) else v)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(x):
        return None
    return int(x) if isinstance(v, str) and x.is_integer() and "." not in v else x


def age_at_screening(year_of_birth: int, screening_date: _dt.date) -> int:
    """Age in whole years at screening from the year of birth (the only part stored):
    screening year − year of birth. An exact age ``a`` agrees with it when
    ``age_at_screening − 1 ≤ a < age_at_screening + 1`` (birthday not yet / already passed)."""
    return int(screening_date.year) - int(year_of_birth)


def _age_problem(age: float, year_of_birth: Any, screening_date: Any) -> str | None:
    if is_empty(year_of_birth) or is_empty(screening_date):
        return None
    years = age_at_screening(int(year_of_birth), screening_date)
    if not years - 1 <= age < years + 1:
        return (f"{age:g} years disagrees with the year of birth {year_of_birth} "
                f"({years - 1}-{years} years at screening on {screening_date})")
    return None


def screening_columns(
    protocol: Any,
    columns: Mapping[str, Any],
    *,
    year_of_birth: Any = None,
    screening_date: Any = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], ColumnProblems]:
    """Parse the screening columns of an import file, every row at once.

    Args:
        protocol: the store's protocol.
        columns: column name → values (one per row); every name must be one of
            :func:`input_columns` (a lab input in one unit column per row: a row giving both
            ``bilirubin_umol_l`` and ``bilirubin_mg_dl`` is refused).
        year_of_birth, screening_date: per row, to check an entered exact ``age``.

    Returns:
        ``(stored, typed, problems)``: per row the stored and typed screening data (inputs not
        given are absent), and the problems with the column name as field.
    """
    return _parse_columns(protocol, input_columns(protocol), columns, year_of_birth,
                          screening_date)


def _parse_columns(
    protocol: Any,
    known: Mapping[str, tuple[Any, str | None]],
    columns: Mapping[str, Any],
    year_of_birth: Any,
    screening_date: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], ColumnProblems]:
    lens = {len(np.asarray(v, dtype=object).reshape(-1)) for v in columns.values()}
    n = lens.pop() if lens else 0
    problems = ColumnProblems(n)
    stored: list[dict[str, Any]] = [{} for _ in range(n)]
    typed: list[dict[str, Any]] = [{} for _ in range(n)]
    given_by: dict[str, np.ndarray] = {}
    for col, values in columns.items():
        if col not in known:
            problems.add(col, np.ones(n, dtype=bool), _unknown_key(protocol, col))
            continue
        inp, unit = known[col]
        s, t, why = parse_input(inp, values, unit)
        problems.add(col, np.not_equal(why, None), why)
        given = np.not_equal(s, None)
        if inp.name in given_by:
            twice = given & given_by[inp.name]
            problems.add(col, twice, f"{inp.name} is given in two columns; keep one")
            given_by[inp.name] |= given
        else:
            given_by[inp.name] = given.copy()
        if inp.name == "age":
            yob = np.broadcast_to(np.asarray(year_of_birth, dtype=object), (n,))
            sd, _bad = as_dates(np.broadcast_to(np.asarray(screening_date, dtype=object), (n,)))
            age_why = np.full(n, None, dtype=object)
            for i in np.flatnonzero(given):
                age_why[i] = _age_problem(float(t[i]), yob[i], _d(sd[i]))
            problems.add(col, np.not_equal(age_why, None), age_why)
        for i in np.flatnonzero(given):
            stored[i][inp.name] = s[i]
            typed[i][inp.name] = t[i]
    return stored, typed, problems


def _d(v: np.datetime64) -> _dt.date | None:
    return None if np.isnat(v) else v.item()


def _unknown_key(protocol: Any, key: str) -> str:
    from hepatrial.protocol.models import DERIVED_INPUTS

    if key in DERIVED_INPUTS:
        src = DERIVED_INPUTS[key][0]
        return (f"{key} is not entered as screening data: the store takes it from the {src} "
                "record")
    names = ", ".join(input_columns(protocol)) or "none"
    return f"{key!r} is not an eligibility input of protocol {protocol.name} (inputs: {names})"


def parse_screening(
    protocol: Any,
    data: Mapping[str, Any] | None,
    *,
    record: str,
    year_of_birth: Any = None,
    screening_date: Any = None,
) -> Screening:
    """Parse one participant's screening data (create or change); all problems at once.

    ``data`` keys are input names - a lab input as ``{"value": v, "unit": u}`` (or a bare
    number for a dimensionless analyte) - or the column names of :func:`input_columns`
    (``bilirubin_mg_dl: 2.7``). Stored data (as entered) is keyed by input name.
    Raises :class:`RuleViolation` with fields ``screening_data.<key>``.
    """
    c = Checker(record)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        c.fail("screening_data", f"{type(data).__name__} is not a mapping of input → value")
        c.done()
    known = input_columns(protocol)
    names = {i.name: i for i in protocol.eligibility_inputs}
    columns: dict[str, list[Any]] = {}
    field_of: dict[str, str] = {}
    for key, value in data.items():
        key = str(key)
        inp = names.get(key)
        if is_empty(value) and (inp is not None or key in known):
            continue  # an input not given (empty) is not screening data
        lab = inp is not None and inp.analyte is not None and inp.entered
        if lab and isinstance(value, Mapping) and set(value) == {"value", "unit"}:
            # {"value": v, "unit": u} under the input's name
            col = f"{key}\x00{value['unit']}"
            columns[col] = [value["value"]]
            field_of[col] = key
            known[col] = (inp, str(value["unit"]))
            continue
        if lab and key not in known:
            from hepatrial.protocol import analytes

            units = " or ".join(k for k, (i, _u) in input_columns(protocol).items()
                                if i.name == key)
            c.fail(f"screening_data.{key}", f"{value!r}: a lab value is entered with its unit, "
                   f"as {{\"value\": {value!r}, \"unit\": \"{analytes.analyte(key).unit}\"}} "
                   f"or under {units}")
            continue
        columns[key] = [value]
        field_of[key] = key
    stored, typed, problems = _parse_columns(
        protocol, known, columns, [year_of_birth], [screening_date])
    for p in problems.problems(record):
        c.problems.append(Problem(p.record, f"screening_data.{field_of.get(p.field, p.field)}",
                                  p.reason))
    c.done()
    return Screening(stored[0] if stored else {}, typed[0] if typed else {})


def evaluation_data(
    protocol: Any,
    typed: Mapping[str, Any],
    *,
    sex: str,
    etiology: str,
    year_of_birth: int,
    screening_date: _dt.date,
    consented: bool,
) -> dict[str, Any]:
    """The mapping the protocol evaluates: the typed screening data plus the inputs the store
    derives - ``age`` (an entered exact age, else :func:`age_at_screening`), ``sex``,
    ``etiology`` (the participant) and ``informed_consent`` (a consent is recorded)."""
    out: dict[str, Any] = {
        "sex": sex,
        "etiology": etiology,
        "age": age_at_screening(year_of_birth, screening_date),
        "informed_consent": bool(consented),
    }
    out.update(typed)
    return {k: out[k] for k in sorted(out)}


def validate_assessed_on(
    *, record: str, assessed_on: Any, screening_date: _dt.date, today: _dt.date | None = None
) -> _dt.date:
    """The date of an eligibility assessment: ISO, not in the future, not before screening."""
    p = ColumnProblems(1)
    d = date_problems(p, "assessed_on", [assessed_on], required=True, today_=today)
    if not np.isnat(d[0]) and d[0].item() < screening_date:
        p.add("assessed_on", [True], f"{d[0]} is before screening ({screening_date})")
    if p:
        raise RuleViolation(p.problems(record))
    return d[0].item()


def assessment_is_current(assessed: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """True when an assessment was made on the screening data the participant has now
    (its stored ``screening_data`` equals :func:`evaluation_data` of today's records)."""
    return evaluation_json(assessed) == evaluation_json(current)


def evaluation_json(d: Mapping[str, Any]) -> dict[str, Any]:
    """Evaluation data as stored in an assessment (dates as ISO text, keys sorted)."""
    return {str(k): (v.isoformat() if isinstance(v, _dt.date) else v)
            for k, v in sorted(d.items())}


def assessment_records(study_ids: Sequence[str]) -> list[str]:
    """Record names ``participant P eligibility`` for column-wise problems."""
    return [f"participant {s} eligibility" for s in study_ids]
