"""The rules of a clinical (bedside) assessment at a visit.

Every item is optional (None = not assessed, never "absent"). Rules (each problem names the
record, the field and the reason):

* ``ascites`` (Child-Pugh grade): a code of :data:`hepatrial.vocab.ASCITES`;
  ``encephalopathy``: a code of :data:`hepatrial.vocab.ENCEPHALOPATHY`; ``edema``: a code of
  :data:`hepatrial.vocab.EDEMA`;
* ``dialysis_last_week``, ``ascites_present``, ``hepatomegaly``, ``spider_angiomata``: true or
  false (``dialysis_last_week`` defaults to false);
* ``histologic_stage``: a whole number 1-4;
* ``weight_kg``: a number of kilograms with at most 2 decimals (the store keeps 0.01 kg; a
  value is never rounded silently) inside the plausible adult range :data:`WEIGHT_KG`,
  22.7-340.2 kg. Source: the implausible-weight limits (< 50 lb = 22.7 kg or > 750 lb =
  340.2 kg) of Chan & Raffa 2017 (US Veterans Health Administration electronic records),
  collected with the other published weight-cleaning rules in Evans et al., JMIR Med Inform
  2022;10(3):e30328. Participants of hepatrial's trials are adults (eligibility age >= 18), so a
  weight of 7 kg is a typing error (e.g. 70 kg, or lb for kg);
* the visit has been done (:func:`hepatrial.trials.validators.visit.visit_done_columns`).

Column-wise API for importers: :func:`clinical_columns`, :func:`weight_columns`. One-record
form (create and change): :func:`validate_clinical`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np

from hepatrial import vocab
from hepatrial.trials.validators._common import ColumnProblems, RuleViolation, is_empty
from hepatrial.trials.validators.visit import visit_done_columns

__all__ = ["CLINICAL_ITEMS", "WEIGHT_KG", "clinical_columns", "validate_clinical",
           "weight_columns"]

#: plausible adult body weight, kg, inclusive (see the module docstring for the source)
WEIGHT_KG: tuple[Decimal, Decimal] = (Decimal("22.7"), Decimal("340.2"))

#: every item of a clinical assessment and its kind
CLINICAL_ITEMS: dict[str, str] = {
    "ascites": "ascites",
    "encephalopathy": "encephalopathy",
    "dialysis_last_week": "bool",
    "weight_kg": "weight",
    "ascites_present": "bool",
    "hepatomegaly": "bool",
    "spider_angiomata": "bool",
    "edema": "edema",
    "histologic_stage": "stage",
}
_CODES = {
    "ascites": vocab.codes(vocab.ASCITES),
    "encephalopathy": vocab.codes(vocab.ENCEPHALOPATHY),
    "edema": vocab.codes(vocab.EDEMA),
}


def _decimal(v: Any) -> Decimal | None:
    if isinstance(v, bool | np.bool_) or v is None:
        return None
    text = repr(float(v)) if isinstance(v, float | np.floating) else str(v).strip()
    try:
        d = Decimal(text)
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def weight_columns(weight_kg: Any) -> tuple[np.ndarray, ColumnProblems]:
    """Column-wise weight rule; returns ``(Decimal or None per row, problems)`` (field
    ``weight_kg``; empty = not measured)."""
    vals = np.asarray(weight_kg, dtype=object).reshape(-1)
    problems = ColumnProblems(len(vals))
    out = np.full(len(vals), None, dtype=object)
    whys = np.full(len(vals), None, dtype=object)
    lo, hi = WEIGHT_KG
    for i, v in enumerate(vals):
        if is_empty(v):
            continue
        d = _decimal(v)
        if d is None:
            why = f"{v!r} is not a number (kg)"
        elif not lo <= d <= hi:
            why = (f"{v} kg is outside the plausible adult range {lo}-{hi} kg (Chan & Raffa "
                   "2017; wrong unit or a typing error?)")
        elif d != d.quantize(Decimal("0.01")):
            why = f"{v} kg has more than 2 decimals (weight is kept to 0.01 kg)"
        else:
            out[i] = d.quantize(Decimal("0.01"))
            continue
        whys[i] = why
    problems.add("weight_kg", np.not_equal(whys, None), whys)
    return out, problems


def clinical_columns(
    values: Mapping[str, Any],
    *,
    visit_date: Any = None,
    visit_status: Any = None,
    check_visit: bool = True,
) -> tuple[dict[str, np.ndarray], ColumnProblems]:
    """Column-wise clinical rules; ``values`` maps item names (:data:`CLINICAL_ITEMS`) to one
    value per row. Returns ``(typed items, problems)`` (fields: the item names, ``visit``)."""
    lens = {len(np.asarray(v, dtype=object).reshape(-1)) for v in values.values()}
    if visit_date is not None:
        lens.add(len(np.asarray(visit_date, dtype=object).reshape(-1)))
    n = max(lens) if lens else 0
    problems = ColumnProblems(n)
    typed: dict[str, np.ndarray] = {}
    for name, raw in values.items():
        kind = CLINICAL_ITEMS.get(name)
        if kind is None:
            problems.add(name, np.ones(n, dtype=bool), "unknown clinical item (known: "
                         f"{', '.join(CLINICAL_ITEMS)})")
            continue
        vals = np.broadcast_to(np.asarray(raw, dtype=object), (n,))
        out = np.full(n, None, dtype=object)
        whys = np.full(n, None, dtype=object)
        if kind == "weight":
            out, p = weight_columns(vals)
            problems.merge(p)
        for i, v in enumerate(vals):
            if kind == "weight" or is_empty(v):
                continue
            if kind == "bool":
                if isinstance(v, bool | np.bool_):
                    out[i] = bool(v)
                    continue
                why = f"{v!r} is not true/false"
            elif kind == "stage":
                if isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_) and (
                        1 <= int(v) <= 4):
                    out[i] = int(v)
                    continue
                why = f"{v!r} is not a stage 1-4"
            else:
                if isinstance(v, str) and v in _CODES[kind]:
                    out[i] = v
                    continue
                why = f"{v!r} is not one of {', '.join(_CODES[kind])}"
            whys[i] = why
        problems.add(name, np.not_equal(whys, None), whys)
        if name == "dialysis_last_week":
            out = np.where(np.equal(out, None), False, out)
        typed[name] = out
    if check_visit:
        problems.merge(visit_done_columns(
            np.broadcast_to(np.asarray(visit_date, dtype=object), (n,)),
            np.broadcast_to(np.asarray(visit_status, dtype=object), (n,)),
        ))
    return typed, problems


def validate_clinical(
    *,
    record: str,
    values: Mapping[str, Any],
    visit_date: Any,
    visit_status: str | None,
) -> dict[str, Any]:
    """One clinical assessment (create, or the whole record after a change); returns the typed
    items. Raises :class:`RuleViolation` naming ``record`` (``participant K01 visit D0
    clinical``)."""
    typed, problems = clinical_columns(
        {k: [v] for k, v in values.items()}, visit_date=[visit_date],
        visit_status=[visit_status],
    )
    if problems:
        raise RuleViolation(problems.problems(record))
    return {k: v[0] for k, v in typed.items()}
