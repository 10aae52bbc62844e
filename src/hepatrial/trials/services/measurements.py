"""Laboratory results and clinical assessments.

Every write is judged by :mod:`hepatrial.trials.validators.lab` /
:mod:`~hepatrial.trials.validators.clinical` on create and on change (the whole record after the
change); the ``check_*`` functions run the same validation without writing (the admin forms use
them). A result needs a visit that has been done.

A lab value outside the analyte's expected (soft) range is saved only when the caller confirms
it was checked against the source (``confirmed_out_of_range=True``; the rule is
:func:`hepatrial.trials.validators.query.soft_range_problem`); the confirmed value opens an
automatic query (:func:`hepatrial.trials.services.queries.raise_soft_range_query`) in the same
transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction

from hepatrial.trials.audit.unit import remembered
from hepatrial.trials.base import require_reason
from hepatrial.trials.models import (
    ClinicalAssessment,
    LabResult,
    Participant,
    Visit,
)
from hepatrial.trials.services._common import (
    StoreError,
    _participant,
    _visit,
)
from hepatrial.trials.services._guard import _acting
from hepatrial.trials.validators import RuleViolation
from hepatrial.trials.validators._common import Problem, changes_needing_reason
from hepatrial.trials.validators.clinical import CLINICAL_ITEMS, validate_clinical
from hepatrial.trials.validators.lab import LabValue, lab_value_columns, validate_lab
from hepatrial.trials.validators.query import soft_range_problem


def canonical_lab(
    analyte: str, value: Any, unit: str, what: str
) -> tuple[str, str, float, str, str]:
    """``(value_text, unit, canonical value, canonical unit, LOINC)`` via the analyte registry.

    Raises :class:`StoreError` naming analyte, unit and value for an unknown analyte or unit
    or a value outside the analyte's plausible range (the lab rule of
    :func:`hepatrial.trials.validators.lab.lab_value_columns`).
    """
    from hepatrial.protocol import analytes
    from hepatrial.trials.validators.lab import value_text

    _canon, _units, problems = lab_value_columns([analyte], [value], [unit])
    if problems:
        raise RuleViolation(problems.problems(f"{what} lab {analyte}"))
    a = analytes.analyte(analyte)
    text = value_text(value)
    assert text is not None
    return text, str(unit).strip(), float(_canon[0]), a.unit, a.loinc


def _reason_for(old: Mapping[str, Any], new: Mapping[str, Any], reason: str | None,
                what: str) -> str | None:
    """None when nothing changes; else the reason (required when a stored value changes; the
    first entry of an empty value is data entry)."""
    changed = {k: v for k, v in new.items() if old.get(k) != v}
    if not changed:
        return None
    needing = changes_needing_reason(old, changed)
    if needing:
        return require_reason(reason, f"changing {what} ({', '.join(needing)})")
    return (reason or "").strip() or f"data entry: {', '.join(sorted(changed))} entered"


def _stored_visit(p: Participant, visit_code: Any) -> Visit:
    """The visit's facts as stored now (not as the caller's instance says): read again for
    each record, or inside a unit of work (:mod:`hepatrial.trials.audit.unit`, e.g. one eCRF
    save) once until the unit writes a visit. Read-only: the instance may be shared."""
    pk = _visit(p, visit_code).pk
    return remembered((Visit,), ("visit", pk), lambda: Visit.objects.get(pk=pk))


def _lab_record(p: Any, v: Visit, analyte: str) -> str:
    return f"participant {p} visit {v.code} lab {analyte}"


def check_lab(
    *,
    participant: Participant | str,
    visit_code: Any,
    analyte: str,
    value: Any,
    unit: str,
    specimen_date: Any = None,
    lab: LabResult | None = None,
    confirmed_out_of_range: bool = False,
) -> LabValue:
    """Validate a lab result (new, or with ``lab`` the record after a change) without writing.

    An empty ``specimen_date`` is the visit's date. A new value (or a changed value or unit)
    outside the analyte's expected range needs ``confirmed_out_of_range``. Returns the checked
    value."""
    p = _participant(participant)
    v = _stored_visit(p, visit_code)
    record = _lab_record(p, v, analyte)
    problems: list[Problem] = []
    if lab is None and LabResult.objects.filter(visit=v, analyte=analyte).exists():
        problems.append(Problem(record, "analyte", "already recorded for this visit (correct "
                                "it with update_lab and a reason)"))
    try:
        checked = validate_lab(
            record=record, analyte=analyte, value=value, unit=unit,
            specimen_date=specimen_date if specimen_date not in (None, "") else v.actual_date,
            visit_date=v.actual_date, visit_status=v.status,
        )
    except RuleViolation as exc:
        problems.extend(exc.problems)
    soft = _soft_range(record, analyte, value, unit, lab, confirmed_out_of_range)
    if soft is not None:
        problems.append(soft)
    if problems:
        raise RuleViolation(problems)
    return checked


def _soft_range(record: str, analyte: str, value: Any, unit: str, lab: LabResult | None,
                confirmed: bool) -> Problem | None:
    """The soft-range problem of a new or changed value (None for an unchanged value, or one
    that breaks a lab rule: those problems are reported instead)."""
    from hepatrial.protocol import analytes
    from hepatrial.trials.validators.lab import value_text

    canonical, _units, bad = lab_value_columns([analyte], [value], [unit])
    text = value_text(value)
    if bad or text is None:
        return None
    u = str(unit).strip()
    if lab is not None and (lab.value_as_entered, lab.unit_as_entered) == (text, u):
        return None
    a = analytes.analyte(analyte)
    return soft_range_problem(
        record=record, analyte=analyte, value_text=text, unit=u, canonical=float(canonical[0]),
        canonical_unit=a.unit, expected=a.expected, confirmed=confirmed)


def record_lab(
    *,
    participant: Participant | str,
    visit_code: str,
    analyte: str,
    value: Any,
    unit: str,
    laboratory: str = "",
    specimen_date: Any = None,
    user: Any = None,
    confirmed_out_of_range: bool = False,
) -> LabResult:
    """Record a lab value: kept as entered (text) and converted to the analyte's canonical unit.

    One value per (visit, analyte); a second one is refused (use :func:`update_lab`). The visit
    must have been done; the specimen date defaults to the visit's date. A value outside the
    expected range is refused unless ``confirmed_out_of_range`` (checked against the source);
    a confirmed one is stored and opens a query.
    """
    p = _participant(participant)
    v = _visit(p, visit_code)
    c = check_lab(participant=p, visit_code=v, analyte=analyte, value=value, unit=unit,
                  specimen_date=specimen_date, confirmed_out_of_range=confirmed_out_of_range)
    lab = LabResult(
        participant=p,
        visit=v,
        analyte=analyte,
        loinc=c.loinc,
        value_as_entered=c.value_as_entered,
        unit_as_entered=c.unit_as_entered,
        value=c.value,
        unit=c.unit,
        laboratory=str(laboratory or ""),
        specimen_date=c.specimen_date,
    )
    with transaction.atomic():
        acting = _acting(user, lab.participant)
        lab.save(user=acting)
        _soft_range_query(lab, acting)
    return lab


def _soft_range_query(lab: LabResult, user: Any) -> None:
    """Open the automatic query of a saved value outside the expected range."""
    from hepatrial.trials.services.queries import raise_soft_range_query

    raise_soft_range_query(lab=lab, user=user)


def update_lab(
    lab: LabResult, *, reason: str | None = None, user: Any = None,
    confirmed_out_of_range: bool = False, **changes: Any
) -> LabResult:
    """Correct a lab result (``value``, ``unit``, ``laboratory``, ``specimen_date``).

    The whole result is validated again and a new value or unit is re-converted to the
    canonical unit. A reason is needed unless only empty fields are filled (data entry). A new
    value outside the expected range needs ``confirmed_out_of_range`` and opens a query (or
    adds a note to the open one)."""
    what = _lab_record(lab.participant, lab.visit, lab.analyte)
    allowed = {"value", "unit", "laboratory", "specimen_date"}
    bad = sorted(set(changes) - allowed)
    if bad:
        raise RuleViolation([Problem(what, k, "cannot be changed (allowed: "
                                     f"{', '.join(sorted(allowed))})") for k in bad])
    c = check_lab(
        participant=lab.participant, visit_code=lab.visit, analyte=lab.analyte,
        value=changes.get("value", lab.value_as_entered),
        unit=changes.get("unit", lab.unit_as_entered),
        specimen_date=changes.get("specimen_date", lab.specimen_date), lab=lab,
        confirmed_out_of_range=confirmed_out_of_range,
    )
    old = {"value_as_entered": lab.value_as_entered, "unit_as_entered": lab.unit_as_entered,
           "laboratory": lab.laboratory, "specimen_date": lab.specimen_date}
    new = {"value_as_entered": c.value_as_entered, "unit_as_entered": c.unit_as_entered,
           "laboratory": str(changes.get("laboratory", lab.laboratory) or ""),
           "specimen_date": c.specimen_date}
    why = _reason_for(old, new, reason, what)
    if why is None:
        return lab
    lab.value_as_entered, lab.unit_as_entered = c.value_as_entered, c.unit_as_entered
    lab.value, lab.unit = c.value, c.unit
    lab.laboratory, lab.specimen_date = new["laboratory"], new["specimen_date"]
    with transaction.atomic():
        acting = _acting(user, lab.participant)
        lab.save(user=acting, reason=why)
        if (old["value_as_entered"], old["unit_as_entered"]) != (c.value_as_entered,
                                                                 c.unit_as_entered):
            _soft_range_query(lab, acting)
    return lab


#: optional clinical items beyond the Child-Pugh ones: field -> kind
CLINICAL_SIGNS: dict[str, str] = {
    "ascites_present": "bool",
    "hepatomegaly": "bool",
    "spider_angiomata": "bool",
    "edema": "edema",
    "histologic_stage": "stage",
}


def _clinical_values(c: ClinicalAssessment) -> dict[str, Any]:
    return {k: getattr(c, k) for k in CLINICAL_ITEMS}


def check_clinical(
    *,
    participant: Participant | str,
    visit_code: Any,
    values: Mapping[str, Any],
    assessment: ClinicalAssessment | None = None,
) -> dict[str, Any]:
    """Validate a clinical assessment (new, or with ``assessment`` the record after a change)
    without writing; returns the typed items."""
    p = _participant(participant)
    v = _stored_visit(p, visit_code)
    record = f"participant {p} visit {v.code} clinical"
    problems: list[Problem] = []
    if assessment is None and ClinicalAssessment.objects.filter(visit=v).exists():
        problems.append(Problem(record, "visit", "a clinical assessment is already recorded "
                                "for this visit (correct it with update_clinical)"))
    try:
        typed = validate_clinical(record=record, values=values, visit_date=v.actual_date,
                                  visit_status=v.status)
    except RuleViolation as exc:
        problems.extend(exc.problems)
    if problems:
        raise RuleViolation(problems)
    return typed


def record_clinical(
    *,
    participant: Participant | str,
    visit_code: str,
    ascites: str | None = None,
    encephalopathy: str | None = None,
    dialysis_last_week: bool = False,
    weight_kg: Any = None,
    user: Any = None,
    **signs: Any,
) -> ClinicalAssessment:
    """Record the bedside assessment of a visit (one per visit; the visit must have been done).

    ``ascites`` (Child-Pugh grade) and ``encephalopathy`` may be None (not assessed). Further
    optional items as keywords: ``ascites_present``, ``hepatomegaly``, ``spider_angiomata``
    (bool), ``edema`` (none / untreated_or_resolved / despite_diuretics), ``histologic_stage``
    (1-4). ``weight_kg`` must be a plausible adult weight (22.7-340.2 kg, see
    :data:`hepatrial.trials.validators.clinical.WEIGHT_KG`).
    """
    p = _participant(participant)
    v = _visit(p, visit_code)
    values = {"ascites": ascites, "encephalopathy": encephalopathy,
              "dialysis_last_week": dialysis_last_week, "weight_kg": weight_kg, **signs}
    typed = check_clinical(participant=p, visit_code=v, values=values)
    c = ClinicalAssessment(participant=p, visit=v, **typed)
    c.save(user=_acting(user, c.participant))
    return c


def update_clinical(
    assessment: ClinicalAssessment, *, reason: str | None = None, user: Any = None,
    **changes: Any,
) -> ClinicalAssessment:
    """Correct a clinical assessment (ascites, encephalopathy, dialysis_last_week, weight_kg and
    the optional items of :data:`CLINICAL_SIGNS`; None = not assessed). The whole record is
    validated again; a reason is needed unless only items not assessed before are filled."""
    values = {**_clinical_values(assessment), **changes}
    typed = check_clinical(participant=assessment.participant, visit_code=assessment.visit,
                           values=values, assessment=assessment)
    old = _clinical_values(assessment)
    changed = {k: typed[k] for k in old if old[k] != typed[k]}
    if not changed:
        return assessment
    if old["dialysis_last_week"] is False:
        old["dialysis_last_week"] = None  # the default, not an entry
    why = _reason_for(old, changed, reason, str(assessment))
    for k, val in typed.items():
        setattr(assessment, k, val)
    assessment.save(user=_acting(user, assessment.participant), reason=why)
    return assessment


__all__ = [
    "CLINICAL_SIGNS",
    "StoreError",
    "canonical_lab",
    "check_clinical",
    "check_lab",
    "record_clinical",
    "record_lab",
    "update_clinical",
    "update_lab",
]
