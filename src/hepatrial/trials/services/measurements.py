"""Laboratory results and clinical assessments."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from hepatrial.trials.base import require_reason
from hepatrial.trials.models import (
    Ascites,
    ClinicalAssessment,
    Edema,
    Encephalopathy,
    LabResult,
    Participant,
)
from hepatrial.trials.services._common import (
    StoreError,
    _apply_changes,
    _choice,
    _opt_date,
    _participant,
    _user,
    _visit,
)


def _to_text(value: Any, what: str) -> str:
    if value is None or isinstance(value, bool):
        raise StoreError(f"{what}: value {value!r} is not a number")
    if isinstance(value, float):
        text = repr(float(value))  # also numpy floats (their repr names the type)
    else:
        text = str(value).strip()
    try:
        Decimal(text)
    except InvalidOperation:
        raise StoreError(f"{what}: value {value!r} is not a number") from None
    return text


def canonical_lab(
    analyte: str, value: Any, unit: str, what: str
) -> tuple[str, str, float, str, str]:
    """``(value_text, unit, canonical value, canonical unit, LOINC)`` via the analyte registry.

    Raises :class:`StoreError` naming analyte, unit and value for an unknown analyte or unit
    or a value outside the analyte's plausible range.
    """
    from hepatrial.protocol import analytes

    text = _to_text(value, f"{what} {analyte}")
    try:
        a = analytes.analyte(analyte)
        canon = analytes.to_canonical(analyte, float(Decimal(text)), str(unit))
    except (analytes.AnalyteError, KeyError) as exc:
        raise StoreError(
            f"{what}: analyte {analyte!r} value {text} unit {unit!r} refused: {exc}"
        ) from None
    return text, str(unit).strip(), float(canon), a.unit, a.loinc


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
) -> LabResult:
    """Record a lab value: kept as entered (text) and converted to the analyte's canonical unit.

    One value per (visit, analyte); a second one is refused (use :func:`update_lab`).
    """
    p = _participant(participant)
    v = _visit(p, visit_code)
    what = f"participant {p} visit {v.code}"
    text, unit, canon, canon_unit, loinc = canonical_lab(analyte, value, unit, what)
    if LabResult.objects.filter(visit=v, analyte=analyte).exists():
        raise StoreError(f"{what}: {analyte} already recorded (use update_lab with a reason)")
    lab = LabResult(
        participant=p,
        visit=v,
        analyte=analyte,
        loinc=loinc,
        value_as_entered=text,
        unit_as_entered=unit,
        value=canon,
        unit=canon_unit,
        laboratory=str(laboratory or ""),
        specimen_date=_opt_date(specimen_date, f"{what} {analyte} specimen_date") or v.actual_date,
    )
    lab.save(user=_user(user))
    return lab


def update_lab(lab: LabResult, *, reason: str, user: Any = None, **changes: Any) -> LabResult:
    """Correct a lab result (``value``, ``unit``, ``laboratory``, ``specimen_date``).

    A new value or unit is re-converted to the canonical unit."""
    reason = require_reason(reason, f"changing lab result {lab}")
    what = f"participant {lab.participant} visit {lab.visit.code}"
    allowed = {"value", "unit", "laboratory", "specimen_date"}
    bad = set(changes) - allowed
    if bad:
        raise StoreError(f"{what} {lab.analyte}: fields {sorted(bad)} cannot be changed")
    if "value" in changes or "unit" in changes:
        text, unit, canon, canon_unit, _ = canonical_lab(
            lab.analyte,
            changes.get("value", lab.value_as_entered),
            changes.get("unit", lab.unit_as_entered),
            what,
        )
        lab.value_as_entered, lab.unit_as_entered, lab.value, lab.unit = (
            text,
            unit,
            canon,
            canon_unit,
        )
    if "laboratory" in changes:
        lab.laboratory = str(changes["laboratory"])
    if "specimen_date" in changes:
        lab.specimen_date = _opt_date(changes["specimen_date"], f"{what} specimen_date")
    lab.save(user=_user(user), reason=reason)
    return lab


def _weight(value: Any, what: str) -> Decimal | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        w = Decimal(str(value).strip())
    except InvalidOperation:
        raise StoreError(f"{what} weight_kg: {value!r} is not a number") from None
    if not Decimal("20") <= w <= Decimal("300"):
        raise StoreError(f"{what} weight_kg: {value} kg is outside 20-300 kg")
    return w.quantize(Decimal("0.01"))


#: optional clinical items beyond the Child-Pugh ones: field -> kind
CLINICAL_SIGNS: dict[str, str] = {
    "ascites_present": "bool",
    "hepatomegaly": "bool",
    "spider_angiomata": "bool",
    "edema": "edema",
    "histologic_stage": "stage",
}


def _optional_choice(value: Any, choices: type, what: str) -> str | None:
    """None (not assessed) or one of ``choices``."""
    return None if value is None else _choice(value, choices, what)


def _clinical_sign(name: str, value: Any, what: str) -> Any:
    """Check one optional clinical sign (None = not assessed)."""
    if value is None:
        return None
    kind = CLINICAL_SIGNS[name]
    if kind == "bool":
        if not isinstance(value, bool):
            raise StoreError(f"{what} {name}: {value!r} is not true/false")
        return value
    if kind == "edema":
        return _choice(value, Edema, f"{what} edema")
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4:
        raise StoreError(f"{what} {name}: {value!r} is not a stage 1-4")
    return value


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
    """Record the bedside assessment of a visit (one per visit).

    ``ascites`` (Child-Pugh grade) and ``encephalopathy`` may be None (not assessed). Further
    optional items as keywords: ``ascites_present``, ``hepatomegaly``, ``spider_angiomata``
    (bool), ``edema`` (none / untreated_or_resolved / despite_diuretics), ``histologic_stage``
    (1-4).
    """
    p = _participant(participant)
    v = _visit(p, visit_code)
    what = f"participant {p} visit {v.code}"
    unknown = sorted(set(signs) - set(CLINICAL_SIGNS))
    if unknown:
        raise StoreError(f"{what}: unknown clinical item(s) {', '.join(unknown)}")
    if ClinicalAssessment.objects.filter(visit=v).exists():
        raise StoreError(f"{what}: clinical assessment already recorded (use update_clinical)")
    c = ClinicalAssessment(
        participant=p,
        visit=v,
        ascites=_optional_choice(ascites, Ascites, f"{what} ascites"),
        encephalopathy=_optional_choice(encephalopathy, Encephalopathy, f"{what} encephalopathy"),
        dialysis_last_week=bool(dialysis_last_week),
        weight_kg=_weight(weight_kg, what),
        **{k: _clinical_sign(k, val, what) for k, val in signs.items()},
    )
    c.save(user=_user(user))
    return c


def update_clinical(
    assessment: ClinicalAssessment, *, reason: str, user: Any = None, **changes: Any
) -> ClinicalAssessment:
    """Correct a clinical assessment (ascites, encephalopathy, dialysis_last_week, weight_kg and
    the optional items of :data:`CLINICAL_SIGNS`; None = not assessed)."""
    reason = require_reason(reason, f"changing {assessment}")
    what = str(assessment.visit)
    if "ascites" in changes:
        _optional_choice(changes["ascites"], Ascites, f"{what} ascites")
    if "encephalopathy" in changes:
        _optional_choice(changes["encephalopathy"], Encephalopathy, f"{what} encephalopathy")
    if "weight_kg" in changes:
        changes["weight_kg"] = _weight(changes["weight_kg"], what)
    for k in set(changes) & set(CLINICAL_SIGNS):
        changes[k] = _clinical_sign(k, changes[k], what)
    allowed = {"ascites", "encephalopathy", "dialysis_last_week", "weight_kg", *CLINICAL_SIGNS}
    if _apply_changes(assessment, changes, allowed, what):
        assessment.save(user=_user(user), reason=reason)
    return assessment
