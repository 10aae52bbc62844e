"""Read functions on the trial store (HackSoft "selectors") for the exporter, CLI and reports.

They return plain Python values or pandas DataFrames (no model instances), in a deterministic
order, with the column names of docs/contracts.md. Days are counted from day 0 (the
enrolment date): ``actual_day = actual_date - enrolment_date`` in days.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import pandas as pd

from hepatrial.trials.models import (
    Administration,
    AdverseEvent,
    ClinicalAssessment,
    LabResult,
    Participant,
    ProtocolDeviation,
    Site,
    TrialConfig,
    Visit,
)

__all__ = [
    "ADVERSE_EVENT_COLUMNS",
    "MEASUREMENT_COLUMNS",
    "PARTICIPANT_COLUMNS",
    "administrations_frame",
    "adverse_events_frame",
    "clinical_frame",
    "deviations_frame",
    "labs_frame",
    "measurements_frame",
    "participants_frame",
    "protocol_record",
    "sites",
    "status_history_frame",
    "visits_frame",
]

PARTICIPANT_COLUMNS = [
    "participant_id", "site", "arm", "sex", "age", "etiology", "status", "status_date",
    "status_reason", "enrolment_date", "route", "cells_total", "cells_per_kg", "volume_ml",
]  # fmt: skip
ADVERSE_EVENT_COLUMNS = [
    "participant_id", "term", "grade", "serious", "related", "onset_day", "resolved_day",
    "outcome",
]  # fmt: skip
MEASUREMENT_COLUMNS = [
    "participant_id", "site", "arm", "visit", "nominal_day", "actual_day", "analyte", "value",
    "unit", "source",
]  # fmt: skip


def _days(d: _dt.date | None, day0: _dt.date | None) -> Any:
    if d is None or day0 is None:
        return pd.NA
    return (d - day0).days


def _arm(p: Participant) -> Any:
    return p.arm.code if p.arm_id else pd.NA


def protocol_record() -> dict[str, Any] | None:
    """The stored protocol: ``{name, version, content_hash, design, loaded_at, toml_text}``."""
    cfg = TrialConfig.objects.order_by("pk").first()
    if cfg is None:
        return None
    return {
        "name": cfg.name,
        "version": cfg.version,
        "content_hash": cfg.content_hash,
        "design": cfg.design,
        "loaded_at": cfg.loaded_at,
        "toml_text": cfg.toml_text,
    }


def sites() -> list[dict[str, Any]]:
    """Sites as ``{code, name, active}``, by code."""
    return list(Site.objects.order_by("code").values("code", "name", "active"))


def _age(p: Participant) -> Any:
    """Age in years at enrolment (or screening), from the year of birth taken as 1 July."""
    ref = p.enrolment_date or p.screening_date
    if ref is None:
        return float("nan")
    return round((ref - _dt.date(p.year_of_birth, 7, 1)).days / 365.25, 2)


def participants_frame(site_codes: list[str] | None = None) -> pd.DataFrame:
    """One row per participant (docs/contracts.md §2), sorted by participant_id.

    ``age`` is years at enrolment (screening date if not enrolled) with the birthday taken as
    1 July of the year of birth (only the year is stored). ``route``/``cells_total``/
    ``cells_per_kg``/``volume_ml`` are from the first administration (NA when none).
    """
    qs = Participant.objects.select_related("site", "arm").order_by("study_id")
    if site_codes is not None:
        qs = qs.filter(site__code__in=site_codes)
    first_admin: dict[int, Administration] = {}
    for a in Administration.objects.order_by("participant_id", "date", "pk"):
        first_admin.setdefault(a.participant_id, a)
    rows = []
    for p in qs:
        a = first_admin.get(p.pk)
        rows.append(
            {
                "participant_id": p.study_id,
                "site": p.site.code,
                "arm": _arm(p),
                "sex": p.sex,
                "age": _age(p),
                "etiology": p.etiology,
                "status": p.status,
                "status_date": p.status_date,
                "status_reason": p.status_reason,
                "enrolment_date": p.enrolment_date if p.enrolment_date else pd.NaT,
                "route": a.route if a else pd.NA,
                "cells_total": float(a.cells_total) if a else float("nan"),
                "cells_per_kg": float(a.cells_per_kg) if a and a.cells_per_kg else float("nan"),
                "volume_ml": float(a.volume_ml) if a else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=PARTICIPANT_COLUMNS)


def visits_frame() -> pd.DataFrame:
    """One row per visit: participant_id, site, arm, visit, label, nominal_day, window_lower,
    window_upper, scheduled_date, actual_date, actual_day, status; by participant, day, code."""
    rows = []
    qs = Visit.objects.select_related("participant__site", "participant__arm").order_by(
        "participant__study_id", "nominal_day", "code"
    )
    for v in qs:
        p = v.participant
        rows.append(
            {
                "participant_id": p.study_id,
                "site": p.site.code,
                "arm": _arm(p),
                "visit": v.code,
                "label": v.label,
                "nominal_day": v.nominal_day,
                "window_lower": v.window_lower,
                "window_upper": v.window_upper,
                "scheduled_date": v.scheduled_date,
                "actual_date": v.actual_date,
                "actual_day": _days(v.actual_date, p.enrolment_date),
                "status": v.status,
            }
        )
    cols = [
        "participant_id", "site", "arm", "visit", "label", "nominal_day", "window_lower",
        "window_upper", "scheduled_date", "actual_date", "actual_day", "status",
    ]  # fmt: skip
    df = pd.DataFrame(rows, columns=cols)
    df["actual_day"] = df["actual_day"].astype("Int64")
    return df


def labs_frame() -> pd.DataFrame:
    """Every lab result in canonical units, with the value/unit as entered and provenance.

    Columns: participant_id, site, arm, visit, nominal_day, actual_day, analyte, value, unit,
    loinc, value_as_entered, unit_as_entered, laboratory, specimen_date; sorted by
    participant_id, nominal_day, visit, analyte."""
    rows = []
    qs = LabResult.objects.select_related(
        "participant__site", "participant__arm", "visit"
    ).order_by("participant__study_id", "visit__nominal_day", "visit__code", "analyte")
    for lab in qs:
        p, v = lab.participant, lab.visit
        rows.append(
            {
                "participant_id": p.study_id,
                "site": p.site.code,
                "arm": _arm(p),
                "visit": v.code,
                "nominal_day": v.nominal_day,
                "actual_day": _days(v.actual_date, p.enrolment_date),
                "analyte": lab.analyte,
                "value": float(lab.value),
                "unit": lab.unit,
                "loinc": lab.loinc,
                "value_as_entered": lab.value_as_entered,
                "unit_as_entered": lab.unit_as_entered,
                "laboratory": lab.laboratory,
                "specimen_date": lab.specimen_date,
            }
        )
    cols = [*MEASUREMENT_COLUMNS[:-1], "loinc", "value_as_entered", "unit_as_entered",
            "laboratory", "specimen_date"]  # fmt: skip
    df = pd.DataFrame(rows, columns=cols)
    df["actual_day"] = df["actual_day"].astype("Int64")
    return df


def clinical_frame() -> pd.DataFrame:
    """Clinical assessments: participant_id, site, arm, visit, nominal_day, actual_day, ascites,
    encephalopathy, dialysis_last_week, weight_kg (float), ascites_present, hepatomegaly,
    spider_angiomata, edema, histologic_stage (None = not assessed); sorted by participant,
    day, visit."""
    rows = []
    qs = ClinicalAssessment.objects.select_related(
        "participant__site", "participant__arm", "visit"
    ).order_by("participant__study_id", "visit__nominal_day", "visit__code")
    for c in qs:
        p, v = c.participant, c.visit
        rows.append(
            {
                "participant_id": p.study_id,
                "site": p.site.code,
                "arm": _arm(p),
                "visit": v.code,
                "nominal_day": v.nominal_day,
                "actual_day": _days(v.actual_date, p.enrolment_date),
                "ascites": c.ascites,
                "encephalopathy": c.encephalopathy,
                "dialysis_last_week": bool(c.dialysis_last_week),
                "weight_kg": float(c.weight_kg) if c.weight_kg is not None else float("nan"),
                "ascites_present": c.ascites_present,
                "hepatomegaly": c.hepatomegaly,
                "spider_angiomata": c.spider_angiomata,
                "edema": c.edema,
                "histologic_stage": c.histologic_stage,
            }
        )
    cols = [
        "participant_id", "site", "arm", "visit", "nominal_day", "actual_day", "ascites",
        "encephalopathy", "dialysis_last_week", "weight_kg", "ascites_present", "hepatomegaly",
        "spider_angiomata", "edema", "histologic_stage",
    ]  # fmt: skip
    df = pd.DataFrame(rows, columns=cols)
    df["actual_day"] = df["actual_day"].astype("Int64")
    return df


#: Optional clinical items exported as ``measured`` rows of the analysis dataset (unit ``1``):
#: ClinicalAssessment field -> (analyte code, numeric value of each stored value; None = the
#: stored integer itself). Edema keeps the Mayo PBC coding 0 / 0.5 / 1 (survival::pbc).
CLINICAL_ANALYTES: dict[str, tuple[str, dict[Any, float] | None]] = {
    "ascites_present": ("ascites", {False: 0.0, True: 1.0}),
    "hepatomegaly": ("hepatomegaly", {False: 0.0, True: 1.0}),
    "spider_angiomata": ("spiders", {False: 0.0, True: 1.0}),
    "edema": ("edema", {"none": 0.0, "untreated_or_resolved": 0.5, "despite_diuretics": 1.0}),
    "histologic_stage": ("histologic_stage", None),
}
CLINICAL_UNIT = "1"


def clinical_measurements(clin: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Long rows ``*keys, analyte, value, unit`` for every assessed item of
    :data:`CLINICAL_ANALYTES` in a frame of clinical assessments (one column per field)."""
    parts = []
    for field, (code, values) in CLINICAL_ANALYTES.items():
        if field not in clin.columns:
            continue
        col = clin[field]
        has = col.notna().to_numpy()
        if not has.any():
            continue
        raw = col[has]
        num = raw.map(values) if values is not None else raw
        if num.isna().any():  # a value without a number would be dropped silently
            bad = sorted(set(map(str, raw[num.isna()])))
            raise ValueError(f"clinical {field}: no numeric code for {', '.join(bad)}")
        part = clin.loc[has, keys].copy()
        part["analyte"] = code
        part["value"] = num.astype(float).to_numpy()
        part["unit"] = CLINICAL_UNIT
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=[*keys, "analyte", "value", "unit"])
    return pd.concat(parts, ignore_index=True)


def measurements_frame() -> pd.DataFrame:
    """Measured values in the long analysis layout (docs/contracts.md §1, ``source=measured``).

    Lab results plus clinical weight (analyte ``weight``, unit ``kg``) and the assessed items of
    :data:`CLINICAL_ANALYTES` (unit ``1``); scores are added by the exporter. Sorted by
    participant_id, nominal_day, visit, analyte.
    """
    labs = labs_frame()[MEASUREMENT_COLUMNS[:-1]]
    clin = clinical_frame()
    w = clin[clin["weight_kg"].notna()]
    weight = pd.DataFrame(
        {
            "participant_id": w["participant_id"],
            "site": w["site"],
            "arm": w["arm"],
            "visit": w["visit"],
            "nominal_day": w["nominal_day"],
            "actual_day": w["actual_day"],
            "analyte": "weight",
            "value": w["weight_kg"].astype(float),
            "unit": "kg",
        }
    )
    signs = clinical_measurements(
        clin, ["participant_id", "site", "arm", "visit", "nominal_day", "actual_day"]
    )
    parts = [df for df in (labs, weight, signs) if len(df)]
    out = pd.concat(parts, ignore_index=True) if parts else labs.iloc[0:0].copy()
    out["source"] = "measured"
    out = out.sort_values(
        ["participant_id", "nominal_day", "visit", "analyte"], kind="mergesort"
    ).reset_index(drop=True)
    out["actual_day"] = out["actual_day"].astype("Int64")
    out["nominal_day"] = out["nominal_day"].astype(int)
    return out[MEASUREMENT_COLUMNS]


def administrations_frame() -> pd.DataFrame:
    """Administrations: participant_id, date, day, route, cells_total, cells_per_kg, volume_ml,
    operator, batch_id; sorted by participant and date."""
    rows = []
    for a in Administration.objects.select_related("participant").order_by(
        "participant__study_id", "date", "pk"
    ):
        rows.append(
            {
                "participant_id": a.participant.study_id,
                "date": a.date,
                "day": _days(a.date, a.participant.enrolment_date),
                "route": a.route,
                "cells_total": float(a.cells_total),
                "cells_per_kg": float(a.cells_per_kg) if a.cells_per_kg else float("nan"),
                "volume_ml": float(a.volume_ml),
                "operator": a.operator,
                "batch_id": a.batch_id,
            }
        )
    cols = ["participant_id", "date", "day", "route", "cells_total", "cells_per_kg",
            "volume_ml", "operator", "batch_id"]  # fmt: skip
    df = pd.DataFrame(rows, columns=cols)
    df["day"] = df["day"].astype("Int64")
    return df


def adverse_events_frame() -> pd.DataFrame:
    """Adverse events (docs/contracts.md §3); days from day 0; sorted by participant, onset."""
    rows = []
    for e in AdverseEvent.objects.select_related("participant").order_by(
        "participant__study_id", "onset_date", "pk"
    ):
        day0 = e.participant.enrolment_date
        rows.append(
            {
                "participant_id": e.participant.study_id,
                "term": e.term,
                "grade": int(e.grade),
                "serious": bool(e.serious),
                "related": e.relatedness,
                "onset_day": _days(e.onset_date, day0),
                "resolved_day": _days(e.resolution_date, day0),
                "outcome": e.outcome,
            }
        )
    df = pd.DataFrame(rows, columns=ADVERSE_EVENT_COLUMNS)
    df["onset_day"] = df["onset_day"].astype("Int64")
    df["resolved_day"] = df["resolved_day"].astype("Int64")
    return df


def deviations_frame() -> pd.DataFrame:
    """Protocol deviations: participant_id, visit, category, description, date, major,
    detected_by; sorted by participant, date, id."""
    rows = []
    for d in ProtocolDeviation.objects.select_related("participant", "visit").order_by(
        "participant__study_id", "date", "pk"
    ):
        rows.append(
            {
                "participant_id": d.participant.study_id,
                "visit": d.visit.code if d.visit_id else pd.NA,
                "category": d.category,
                "description": d.description,
                "date": d.date,
                "major": bool(d.major),
                "detected_by": d.detected_by,
            }
        )
    cols = ["participant_id", "visit", "category", "description", "date", "major", "detected_by"]
    return pd.DataFrame(rows, columns=cols)


def status_history_frame() -> pd.DataFrame:
    """Every status a participant has had (from the audit history): participant_id, status,
    status_date, status_reason, recorded_at; sorted by participant and time recorded."""
    rows = []
    last: dict[int, tuple[str, Any]] = {}
    for h in Participant.history.order_by("history_id"):
        key = (h.status, h.status_date)
        if last.get(h.id) == key or h.history_type == "-":
            continue
        last[h.id] = key
        rows.append(
            {
                "participant_id": h.study_id,
                "status": h.status,
                "status_date": h.status_date,
                "status_reason": h.status_reason,
                "recorded_at": h.history_date,
            }
        )
    cols = ["participant_id", "status", "status_date", "status_reason", "recorded_at"]
    df = pd.DataFrame(rows, columns=cols)
    return df.sort_values(["participant_id", "recorded_at"], kind="mergesort").reset_index(
        drop=True
    )
