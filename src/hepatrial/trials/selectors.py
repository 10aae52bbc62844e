"""Read functions on the trial store (HackSoft "selectors"): the only ORM reader of the
exporter, the report's bundle, the demo and (later) the CDISC export.

They return plain Python values or pandas DataFrames (no model instances), in a deterministic
order (sorted in pandas, so the database's collation does not matter), with the column names of
docs/contracts.md (:mod:`hepatrial.vocab` holds the column tuples). Days are counted from day 0
(the enrolment date): ``actual_day = actual_date - enrolment_date`` in days.

Derived participant values are defined here once (docs/contracts.md §2):

* **age** (:func:`age_in_whole_years`): age at consent in whole years, ``consent year − year of
  birth`` (only the year of birth is stored); the date is the participant's first consent, or
  the screening date when no consent is recorded (participants loaded through an import map).
* **dose**: ``cells_total`` = total cells over all administrations, ``n_administrations`` their
  count, ``cells_per_kg`` and ``volume_ml`` summed the same way, ``route`` of the first.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import pandas as pd

from hepatrial.errors import StoreError
from hepatrial.trials.models import (
    Administration,
    AdverseEvent,
    ClinicalAssessment,
    Consent,
    LabResult,
    Participant,
    ProtocolDeviation,
    Site,
    TrialConfig,
    Visit,
)
from hepatrial.vocab import ADVERSE_EVENT_COLUMNS, DATASET_COLUMNS, PARTICIPANT_COLUMNS

__all__ = [
    "ADVERSE_EVENT_COLUMNS",
    "CLINICAL_ANALYTES",
    "MEASUREMENT_COLUMNS",
    "NO_ROUTE",
    "PARTICIPANT_COLUMNS",
    "PRODUCT_COLUMNS",
    "administrations_frame",
    "adverse_events_frame",
    "ae_details_frame",
    "ae_record_id",
    "age_in_whole_years",
    "api_participant",
    "api_participants",
    "api_queries",
    "api_visits",
    "clinical_frame",
    "clinical_measurements",
    "deviations_frame",
    "labs_frame",
    "measurements_frame",
    "participants_frame",
    "product_batch_ids",
    "product_record",
    "products_frame",
    "protocol_record",
    "sae_cases",
    "sae_form_record",
    "safety_data",
    "safety_labs_frame",
    "sites",
    "status_history_frame",
    "visits_frame",
]

#: the analysis dataset's columns (docs/contracts.md §1)
MEASUREMENT_COLUMNS: tuple[str, ...] = DATASET_COLUMNS
#: ``route`` of a participant who had no administration (docs/contracts.md §2)
NO_ROUTE = "NA"

_KEYS = ["participant_id", "site", "arm", "visit", "nominal_day", "actual_day"]


def _frame(rows: list[tuple], columns: list[str]) -> pd.DataFrame:
    if rows:
        return pd.DataFrame(rows, columns=columns)
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def _days(dates: pd.Series, day0: pd.Series) -> pd.Series:
    """Whole days from ``day0`` to ``dates`` (``Int64``; NA when either is missing)."""
    a = pd.to_datetime(dates.astype(object).where(dates.notna(), None))
    b = pd.to_datetime(day0.astype(object).where(day0.notna(), None))
    return (a - b).dt.days.astype("Int64")


def _sorted(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return df.sort_values(keys, kind="mergesort").reset_index(drop=True)


def _arm(values: pd.Series) -> pd.Series:
    """Arm code; empty text for a participant without an arm (not enrolled)."""
    return values.astype(object).where(values.notna(), "")


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


def age_in_whole_years(year_of_birth: int | None, on: _dt.date | None) -> int | None:
    """Age in whole years on the date ``on`` when only the year of birth is stored:
    ``on.year − year_of_birth`` (docs/contracts.md §2).

    This is the age the participant reaches in the calendar year of ``on``: the exact age lies
    strictly between ``age − 1`` and ``age + 1`` years, and the age in completed years is
    ``age`` (birthday on or before ``on`` in that year) or ``age − 1`` (birthday later).
    ``None`` when either input is missing.
    """
    if year_of_birth is None or on is None:
        return None
    return on.year - int(year_of_birth)


def _first_consents() -> dict[int, _dt.date]:
    first: dict[int, _dt.date] = {}
    for pid, d in Consent.objects.order_by("participant_id", "date", "pk").values_list(
        "participant_id", "date"
    ):
        first.setdefault(pid, d)
    return first


def _dose_by_participant() -> pd.DataFrame:
    """Per participant id: route of the first administration, count, and the sums of cells,
    cells/kg (NaN unless every administration has it) and volume."""
    adm = _frame(
        list(
            Administration.objects.order_by("participant_id", "date", "pk").values_list(
                "participant_id", "route", "cells_total", "cells_per_kg", "volume_ml"
            )
        ),
        ["pid", "route", "cells_total", "cells_per_kg", "volume_ml"],
    )
    cols = ["route", "n_administrations", "cells_total", "cells_per_kg", "volume_ml"]
    if adm.empty:
        return pd.DataFrame(columns=cols, index=pd.Index([], name="pid"))
    for c in ("cells_total", "cells_per_kg", "volume_ml"):
        adm[c] = pd.to_numeric(adm[c].astype(object), errors="raise").astype(float)
    g = adm.groupby("pid", sort=True)
    out = pd.DataFrame(
        {
            "route": g["route"].first(),
            "n_administrations": g.size().astype("int64"),
            "cells_total": g["cells_total"].sum(),
            "cells_per_kg": g["cells_per_kg"].sum().where(g["cells_per_kg"].count() == g.size()),
            "volume_ml": g["volume_ml"].sum(),
        }
    )
    return out[cols]


def participants_frame(site_codes: list[str] | None = None) -> pd.DataFrame:
    """One row per participant (docs/contracts.md §2, columns :data:`PARTICIPANT_COLUMNS`),
    sorted by participant_id.

    * ``age`` (``Int64``): age at consent in whole years, :func:`age_in_whole_years` of the year
      of birth and the first consent date (screening date when no consent is recorded).
    * ``n_administrations`` (int): administrations recorded (0 when none).
    * ``cells_total``, ``cells_per_kg``, ``volume_ml`` (float): sums over every administration
      (NaN when none; ``cells_per_kg`` NaN unless every administration has it).
    * ``route``: route of the first administration (by date), ``"NA"`` when none.
    * ``arm``: arm code, empty when not enrolled; ``status_date``/``enrolment_date``: datetime64
      (NaT when not enrolled).
    """
    qs = Participant.objects.order_by("study_id")
    if site_codes is not None:
        qs = qs.filter(site__code__in=site_codes)
    cols = ["pid", "participant_id", "site", "arm", "sex", "year_of_birth", "etiology", "status",
            "status_date", "status_reason", "enrolment_date", "screening_date"]  # fmt: skip
    ppl = _frame(
        list(
            qs.values_list(
                "id", "study_id", "site__code", "arm__code", "sex", "year_of_birth", "etiology",
                "status", "status_date", "status_reason", "enrolment_date", "screening_date",
            )
        ),
        cols,
    )  # fmt: skip
    consent = _first_consents()
    ppl["arm"] = _arm(ppl["arm"])
    ppl["age"] = pd.array(
        [
            age_in_whole_years(y, consent.get(pid, scr))
            for pid, y, scr in zip(ppl["pid"], ppl["year_of_birth"], ppl["screening_date"],
                                   strict=True)
        ],
        dtype="Int64",
    )  # fmt: skip
    dose = _dose_by_participant()
    ppl = ppl.join(dose, on="pid")
    ppl["route"] = ppl["route"].astype(object).where(ppl["route"].notna(), NO_ROUTE)
    ppl["n_administrations"] = ppl["n_administrations"].fillna(0).astype("int64")
    for c in ("cells_total", "cells_per_kg", "volume_ml"):
        ppl[c] = ppl[c].astype(float)
    for c in ("status_date", "enrolment_date"):
        ppl[c] = pd.to_datetime(ppl[c].astype(object).where(ppl[c].notna(), None))
    ppl = _sorted(ppl, ["participant_id"])
    return ppl.loc[:, list(PARTICIPANT_COLUMNS)]


def _visits(with_details: bool = True) -> pd.DataFrame:
    """Every visit with its keys (``vid`` = visit pk, :data:`_KEYS`) and, with
    ``with_details``, label, window, scheduled/actual dates and status; sorted by participant,
    nominal day, code."""
    details = ["label", "window_lower", "window_upper", "scheduled_date", "actual_date",
               "status"] if with_details else ["actual_date"]  # fmt: skip
    cols = ["vid", "participant_id", "site", "arm", "visit", "nominal_day", "day0", *details]
    df = _frame(
        list(
            Visit.objects.order_by().values_list(
                "id", "participant__study_id", "participant__site__code",
                "participant__arm__code", "code", "nominal_day", "participant__enrolment_date",
                *details,
            )
        ),
        cols,
    )  # fmt: skip
    df["arm"] = _arm(df["arm"])
    df["actual_day"] = _days(df["actual_date"], df["day0"])
    df["nominal_day"] = df["nominal_day"].astype("int64")
    return _sorted(df, ["participant_id", "nominal_day", "visit"])


def visits_frame() -> pd.DataFrame:
    """One row per visit: participant_id, site, arm, visit, label, nominal_day, window_lower,
    window_upper, scheduled_date, actual_date, actual_day, status; by participant, day, code."""
    df = _visits()
    return df[["participant_id", "site", "arm", "visit", "label", "nominal_day", "window_lower",
               "window_upper", "scheduled_date", "actual_date", "actual_day", "status"]]


def _with_visit_keys(rows: pd.DataFrame, keys: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """``rows`` (with ``vid``) joined to the visit keys :data:`_KEYS`, sorted by ``order``."""
    out = rows.merge(keys[["vid", *_KEYS]], on="vid", how="inner", validate="many_to_one")
    return _sorted(out, order)


_LAB_DETAILS = ["loinc", "value_as_entered", "unit_as_entered", "laboratory", "specimen_date"]


def _labs(keys: pd.DataFrame, *, details: bool) -> pd.DataFrame:
    extra = _LAB_DETAILS if details else []
    rows = _frame(
        list(
            LabResult.objects.order_by("pk").values_list(
                "visit_id", "analyte", "value", "unit", *extra
            )
        ),
        ["vid", "analyte", "value", "unit", *extra],
    )
    rows["value"] = rows["value"].astype(float)
    out = _with_visit_keys(rows, keys, ["participant_id", "nominal_day", "visit", "analyte"])
    return out[[*_KEYS, "analyte", "value", "unit", *extra]]


def labs_frame() -> pd.DataFrame:
    """Every lab result in canonical units, with the value/unit as entered and provenance.

    Columns: participant_id, site, arm, visit, nominal_day, actual_day, analyte, value, unit,
    loinc, value_as_entered, unit_as_entered, laboratory, specimen_date; sorted by
    participant_id, nominal_day, visit, analyte."""
    return _labs(_visits(with_details=False), details=True)


#: ClinicalAssessment fields of :func:`clinical_frame` besides the visit keys
CLINICAL_FIELDS = (
    "ascites", "encephalopathy", "dialysis_last_week", "weight_kg", "ascites_present",
    "hepatomegaly", "spider_angiomata", "edema", "histologic_stage",
)  # fmt: skip


def _clinical(keys: pd.DataFrame) -> pd.DataFrame:
    rows = _frame(
        list(
            ClinicalAssessment.objects.order_by("pk").values_list("visit_id", *CLINICAL_FIELDS)
        ),
        ["vid", *CLINICAL_FIELDS],
    )
    rows["dialysis_last_week"] = rows["dialysis_last_week"].map(bool).astype(bool)
    rows["weight_kg"] = pd.Series(
        [float(x) if x is not None else float("nan") for x in rows["weight_kg"]],
        index=rows.index, dtype=float,
    )  # fmt: skip
    out = _with_visit_keys(rows, keys, ["participant_id", "nominal_day", "visit"])
    return out[[*_KEYS, *CLINICAL_FIELDS]]


def clinical_frame() -> pd.DataFrame:
    """Clinical assessments: participant_id, site, arm, visit, nominal_day, actual_day, ascites,
    encephalopathy, dialysis_last_week (bool), weight_kg (float), ascites_present,
    hepatomegaly, spider_angiomata, edema, histologic_stage (None = not assessed); sorted by
    participant, day, visit."""
    return _clinical(_visits(with_details=False))


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
            raise StoreError(f"clinical {field}: no numeric code for {', '.join(bad)}")
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
    keys = _visits(with_details=False)
    return _measured(_labs(keys, details=False), _clinical(keys))


def _measured(labs: pd.DataFrame, clin: pd.DataFrame) -> pd.DataFrame:
    labs = labs[[*_KEYS, "analyte", "value", "unit"]]
    w = clin.loc[clin["weight_kg"].notna(), _KEYS]
    weight = w.assign(analyte="weight", value=clin.loc[w.index, "weight_kg"].astype(float),
                      unit="kg")
    signs = clinical_measurements(clin, _KEYS)
    parts = [df for df in (labs, weight, signs) if len(df)]
    out = pd.concat(parts, ignore_index=True) if parts else labs.iloc[0:0].copy()
    out["source"] = "measured"
    out = _sorted(out, ["participant_id", "nominal_day", "visit", "analyte"])
    out["actual_day"] = out["actual_day"].astype("Int64")
    out["nominal_day"] = out["nominal_day"].astype("int64")
    out["value"] = out["value"].astype(float)
    return out[list(MEASUREMENT_COLUMNS)]


def administrations_frame() -> pd.DataFrame:
    """Administrations: participant_id, date, day, route, cells_total, cells_per_kg, volume_ml,
    operator, batch_id; sorted by participant and date."""
    cols = ["participant_id", "date", "day0", "route", "cells_total", "cells_per_kg",
            "volume_ml", "operator", "batch_id"]  # fmt: skip
    df = _frame(
        list(
            Administration.objects.order_by("pk").values_list(
                "participant__study_id", "date", "participant__enrolment_date", "route",
                "cells_total", "cells_per_kg", "volume_ml", "operator", "batch_id",
            )
        ),
        cols,
    )  # fmt: skip
    df["day"] = _days(df["date"], df["day0"])
    for c in ("cells_total", "cells_per_kg", "volume_ml"):
        df[c] = pd.to_numeric(df[c].astype(object)).astype(float)
    df = _sorted(df, ["participant_id", "date"])
    return df[["participant_id", "date", "day", "route", "cells_total", "cells_per_kg",
               "volume_ml", "operator", "batch_id"]]  # fmt: skip


def adverse_events_frame() -> pd.DataFrame:
    """Adverse events (docs/contracts.md §3, columns :data:`ADVERSE_EVENT_COLUMNS`): days from
    day 0 (NA when not enrolled or not resolved); sorted by participant, onset day (NA last),
    term, then the order of entry."""
    cols = ["participant_id", "term", "grade", "serious", "related", "onset_date",
            "resolution_date", "outcome", "day0"]  # fmt: skip
    ae = _frame(
        list(
            AdverseEvent.objects.order_by("pk").values_list(
                "participant__study_id", "term", "grade", "serious", "relatedness",
                "onset_date", "resolution_date", "outcome", "participant__enrolment_date",
            )
        ),
        cols,
    )  # fmt: skip
    # ``related`` is the stored ``relatedness``: the higher of the relatedness to the cell
    # product and to a trial procedure (hepatrial.trials.validators.adverse_event)
    ae["onset_day"] = _days(ae["onset_date"], ae["day0"])
    ae["resolved_day"] = _days(ae["resolution_date"], ae["day0"])
    ae["grade"] = ae["grade"].astype("int64")
    ae["serious"] = ae["serious"].astype(bool)
    ae = ae.sort_values(["participant_id", "onset_day", "term"], kind="mergesort",
                        na_position="last").reset_index(drop=True)
    return ae.loc[:, list(ADVERSE_EVENT_COLUMNS)]


def deviations_frame() -> pd.DataFrame:
    """Protocol deviations: participant_id, visit, category, description, date, major,
    detected_by; sorted by participant, date, id."""
    cols = ["participant_id", "visit", "category", "description", "date", "major", "detected_by"]
    df = _frame(
        list(
            ProtocolDeviation.objects.order_by("pk").values_list(
                "participant__study_id", "visit__code", "category", "description", "date",
                "major", "detected_by",
            )
        ),
        cols,
    )  # fmt: skip
    df["visit"] = df["visit"].astype(object).where(df["visit"].notna(), pd.NA)
    df["major"] = df["major"].astype(bool)
    return _sorted(df, ["participant_id", "date"])


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


# ============================================================================ safety (issue 12)
#: analyte -> input column of :func:`hepatrial.scores.score_columns` (canonical units), the
#: same inputs the exporter derives the dataset's scores from (hepatrial.ingest.dataset)
_SCORE_INPUTS: dict[str, str] = {
    "bilirubin": "bilirubin_umol_l", "creatinine": "creatinine_umol_l", "albumin": "albumin_g_l",
    "inr": "inr", "sodium": "sodium_mmol_l", "ast": "ast_u_l", "alt": "alt_u_l",
    "platelets": "platelets_10e9_l",
}  # fmt: skip
_SAFETY_LAB_COLUMNS = ["participant_id", "visit", "nominal_day", "analyte", "value", "date"]
#: the adverse-event columns the stopping rules read: a change of one of them re-dates the
#: event's evidence (``recorded_at``), a change of any other (e.g. a resolution date) does not
_RULE_FIELDS = ("term", "grade", "serious", "relatedness", "relatedness_product",
                "relatedness_procedure", "procedure", "onset_date", "outcome", "meddra_code")


def ae_record_id(pk: int) -> str:
    """The id of an adverse event in the safety records and reports (``AE-<pk>``)."""
    return f"AE-{pk}"


def safety_labs_frame(analytes: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """The values of ``analytes`` at every visit, as the stopping-rule evaluator reads them:
    ``participant_id, visit, nominal_day, analyte, value, date`` (date = the visit's actual
    date), sorted by participant, day, visit, analyte.

    An analyte that is a lab is the stored value (canonical unit); any other is a score
    computed per visit by :func:`hepatrial.scores.score_columns` from that visit's labs, the
    participant's sex, age (at consent + actual day / 365.25) and dialysis, exactly as the
    analysis dataset derives it (``tests/store/test_safety_status.py`` compares them)."""
    wanted = list(dict.fromkeys(analytes))
    keys = _visits(with_details=False)
    labs = _labs(keys, details=False)
    dates = dict(zip(keys["participant_id"] + "\x00" + keys["visit"], keys["actual_date"],
                     strict=True))
    parts = [labs[labs["analyte"].isin(wanted)][["participant_id", "visit", "nominal_day",
                                                 "analyte", "value"]]]
    scores = [a for a in wanted if a not in set(labs["analyte"]) and a not in _SCORE_INPUTS]
    if scores and len(labs):
        parts.append(_visit_scores(labs, keys, scores))
    out = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(
        len(p) for p in parts) else pd.DataFrame(columns=_SAFETY_LAB_COLUMNS[:-1])
    out["date"] = [dates.get(f"{p}\x00{v}") for p, v in zip(out["participant_id"], out["visit"],
                                                             strict=True)]
    out = out[_SAFETY_LAB_COLUMNS]
    out["nominal_day"] = out["nominal_day"].astype("int64")
    out["value"] = out["value"].astype(float)
    return _sorted(out, ["participant_id", "nominal_day", "visit", "analyte"])


def _visit_scores(labs: pd.DataFrame, keys: pd.DataFrame, scores: list[str]) -> pd.DataFrame:
    import numpy as np

    from hepatrial.scores import score_columns

    k = ["participant_id", "visit"]
    inputs = labs[labs["analyte"].isin(_SCORE_INPUTS)]
    wide = inputs.pivot(index=k, columns="analyte", values="value").reset_index()
    wide = wide.merge(keys[[*k, "nominal_day", "actual_day"]].drop_duplicates(k), on=k)
    clin = _clinical(keys)[[*k, "dialysis_last_week"]].drop_duplicates(k)
    wide = wide.merge(clin, on=k, how="left")
    ppl = participants_frame()[["participant_id", "sex", "age"]]
    wide = wide.merge(ppl, on="participant_id", how="left")
    mapping: dict[str, Any] = {name: wide[code].to_numpy(dtype=float)
                               for code, name in _SCORE_INPUTS.items() if code in wide.columns}
    mapping["dialysis"] = wide["dialysis_last_week"].map(
        {True: "true", False: "false"}).fillna("false").to_numpy(dtype=object)
    days = pd.to_numeric(wide["actual_day"], errors="coerce").to_numpy(dtype=float)
    age = pd.to_numeric(wide["age"], errors="coerce").astype("Float64").to_numpy(
        dtype=float, na_value=np.nan)
    mapping["age"] = np.where(np.isfinite(days), age + days / 365.25, age)
    mapping["sex"] = wide["sex"].to_numpy(dtype=object)
    got = score_columns(mapping, errors="coerce")
    parts = []
    for name in scores:
        if name not in got:
            continue
        vals = np.asarray(got[name], dtype=float)
        ok = np.isfinite(vals)
        parts.append(pd.DataFrame({"participant_id": wide["participant_id"].to_numpy()[ok],
                                   "visit": wide["visit"].to_numpy()[ok],
                                   "nominal_day": wide["nominal_day"].to_numpy()[ok],
                                   "analyte": name, "value": vals[ok]}))
    if not parts:
        return pd.DataFrame(columns=["participant_id", "visit", "nominal_day", "analyte",
                                     "value"])
    return pd.concat(parts, ignore_index=True)


def _evidence_times() -> dict[int, _dt.datetime]:
    """Per adverse event: when the store learnt of its current state as the rules read it
    (the first history row of the latest run of rows equal on :data:`_RULE_FIELDS`)."""
    out: dict[int, _dt.datetime] = {}
    last: dict[int, tuple[Any, ...]] = {}
    for row in AdverseEvent.history.order_by("history_id").values(
            "id", "history_date", "history_type", *_RULE_FIELDS):
        key = tuple(row[f] for f in _RULE_FIELDS)
        if row["history_type"] == "-":
            out.pop(row["id"], None)
            last.pop(row["id"], None)
            continue
        if last.get(row["id"]) != key:
            out[row["id"]] = row["history_date"]
            last[row["id"]] = key
    return out


def safety_data(protocol: Any) -> Any:
    """Everything the stopping rules read, from the store, as
    :class:`hepatrial.protocol.safety.SafetyData` (the one source of ``hepatrial safety
    status``, the dosing gate and the DSMB report):

    * adverse events (id ``AE-<pk>``): CTCAE term, grade, serious, relatedness to the product
      and to a procedure, onset, outcome, procedure, ``recorded_at`` = when the store learnt of
      the state the rules read (:func:`_evidence_times`). An event stored before migration
      0005 has no separate relatedness to a procedure: its single relatedness is used for
      both (the conservative reading: the old judgement was about the treatment as a whole);
    * administrations (id ``ADM-<pk>``): date and route;
    * the lab values of the protocol's lab-rise rules (:func:`safety_labs_frame`);
    * DSMB decisions (id ``DSMB-<pk>``): rule, decision, reason, decided at
      (:func:`dsmb_decided_at`);
    * deaths: participants whose status is died, on their status date, recorded when the
      status became died (audit history).
    """
    from hepatrial.protocol import safety as ps
    from hepatrial.trials.models.safety import DSMBDecision

    plan = getattr(protocol, "safety", None)
    analytes = [r.analyte for r in (plan.stopping_rules if plan is not None else ())
                if isinstance(r, ps.LabRiseRule)]
    seen = _evidence_times()
    aes = []
    for a in AdverseEvent.objects.order_by("pk").values(
            "pk", "participant__study_id", "term", "grade", "serious", "relatedness",
            "relatedness_product", "relatedness_procedure", "onset_date", "outcome",
            "meddra_code", "procedure"):
        coded = a["meddra_code"] is not None
        aes.append(ps.AdverseEventRecord(
            id=ae_record_id(a["pk"]), participant_id=a["participant__study_id"],
            term=a["term"], grade=int(a["grade"]), serious=bool(a["serious"]),
            related_product=a["relatedness_product"] or a["relatedness"],
            related_procedure=a["relatedness_procedure"] or a["relatedness"],
            onset=a["onset_date"], outcome=a["outcome"],
            meddra_code=a["meddra_code"] if coded else None, procedure=a["procedure"],
            recorded_at=seen.get(a["pk"])))
    admins = [ps.Administration(f"ADM-{pk}", pid, d, r) for pk, pid, d, r in
              Administration.objects.order_by("pk").values_list(
                  "pk", "participant__study_id", "date", "route")]
    decisions = [ps.DsmbDecision(f"DSMB-{d.pk}", d.rule_id, dsmb_decided_at(d), d.decision,
                                 d.reason) for d in DSMBDecision.objects.order_by("pk").only(
                     "pk", "rule_id", "signed_at", "decision", "reason", "rule_status")]
    died = {pid: (sid, d) for pid, sid, d in Participant.objects.filter(
        status="died").values_list("pk", "study_id", "status_date")}
    became: dict[int, _dt.datetime] = {}
    if died:
        prev: dict[int, str] = {}
        for hid, st, when in Participant.history.filter(id__in=list(died)).order_by(
                "history_id").values_list("id", "status", "history_date"):
            if st == "died" and prev.get(hid) != "died":
                became[hid] = when
            prev[hid] = st
    deaths = [ps.Death(sid, d, became.get(pid)) for pid, (sid, d) in sorted(
        died.items(), key=lambda kv: kv[1][0])]
    labs = ps.SafetyData.from_frames(labs=safety_labs_frame(analytes)).labs if analytes else ()
    return ps.SafetyData(adverse_events=tuple(aes), administrations=tuple(admins), labs=labs,
                         decisions=tuple(decisions), deaths=tuple(deaths))


def dsmb_decided_at(d: Any) -> _dt.datetime:
    """When a DSMB decision was taken: the time it was dated when recorded
    (``rule_status["decided_at"]``, e.g. a sentinel review entered after the meeting), else
    when it was signed."""
    when = d.rule_status.get("decided_at") if isinstance(d.rule_status, dict) else None
    if isinstance(when, str):
        return _dt.datetime.fromisoformat(when)
    return d.signed_at


def ae_details_frame() -> pd.DataFrame:
    """Per adverse event: ``id`` (``AE-<pk>``), ``seriousness_criteria`` (list of ICH E2A
    codes, empty when none recorded) and ``resolution_date`` — the SAE listing's details
    (:func:`hepatrial.report.dsmb.build_dsmb`); sorted by id's pk."""
    rows = [(ae_record_id(pk), list(c or []), r) for pk, c, r in AdverseEvent.objects.order_by(
        "pk").values_list("pk", "seriousness_criteria", "resolution_date")]
    return _frame(rows, ["id", "seriousness_criteria", "resolution_date"])


def sae_cases(plan: Any, now: _dt.datetime, *, pks: list[int] | None = None
              ) -> list[dict[str, Any]]:  # fmt: skip
    """The SAE worklist: one entry per serious adverse event with every report it owes now
    (:func:`hepatrial.protocol.safety.sae_due_dates` on the store's records) and its status
    (``submitted``, ``late``, ``pending``, ``overdue``), oldest awareness first.

    SUSAR (ICH E2A III.A): serious, at least possibly related to the product in the
    investigator's or the sponsor's opinion (the higher counts: the sponsor cannot downgrade
    the investigator's causality), and unexpected — the sponsor's expectedness when assessed,
    else the reference safety information's. Fatal or life-threatening: grade 5, outcome
    fatal, or the criterion death or life-threatening. The sponsor became aware when the
    initial report was submitted (else with the site). The follow-ups stop after a final one.
    A serious event without an awareness time (stored before migration 0005) has no clock:
    ``reports`` is empty and ``problem`` says why. ``pks``: only these adverse events."""
    from hepatrial import vocab
    from hepatrial.protocol import safety as ps
    from hepatrial.trials.models.safety import SAEAssessment, SAEReport

    reps = SAEReport.objects.order_by("submitted_at", "pk")
    spons = SAEAssessment.objects.filter(assessor="sponsor").order_by("signed_at", "pk")
    qs = AdverseEvent.objects.filter(serious=True).select_related("participant").order_by("pk")
    if pks is not None:
        reps, spons = reps.filter(adverse_event_id__in=pks), spons.filter(
            adverse_event_id__in=pks)
        qs = qs.filter(pk__in=pks)
    reports: dict[int, list[Any]] = {}
    for r in reps:
        reports.setdefault(r.adverse_event_id, []).append(r)
    sponsor: dict[int, Any] = {}
    for a in spons:
        sponsor[a.adverse_event_id] = a
    out = []
    for ae in qs:
        mine = reports.get(ae.pk, [])
        sp = sponsor.get(ae.pk)
        rel = max((x for x in (ae.relatedness_product or ae.relatedness,
                               sp.relatedness_product if sp else None) if x),
                  key=vocab.codes(vocab.RELATEDNESS).index)
        expected = sp.expectedness if sp is not None and sp.expectedness else \
            ae.expectedness_product
        if expected is None and rel in vocab.RELATED_CODES and ae.ctcae_version and plan:
            expected = ps.expectedness(plan, ae.term, ae.grade, "product")
        susar = bool(expected) and ps.is_susar(True, rel, expected)
        crit = set(ae.seriousness_criteria or [])
        fatal_lt = ae.grade == 5 or ae.outcome == "fatal" or bool(
            crit & {"death", "life_threatening"})
        made: dict[str, _dt.datetime] = {}
        for r in mine:
            if r.kind == "follow_up":
                made["follow_up"] = r.submitted_at
            else:
                made.setdefault(r.kind, r.submitted_at)
        final = any(r.final for r in mine)
        case: dict[str, Any] = {
            "adverse_event": ae, "id": ae_record_id(ae.pk), "participant_id":
            ae.participant.study_id, "term": ae.label, "grade": ae.grade, "susar": susar,
            "fatal_or_life_threatening": fatal_lt, "expectedness": expected,
            "relatedness_product": rel, "final_follow_up": final, "submitted": mine,
            "reports": [], "problem": None}  # fmt: skip
        if ae.aware_at is None or plan is None:
            case["problem"] = ("no time of awareness recorded (stored before the SAE clocks): "
                               "enter it with hepatrial ae update") if plan is not None else \
                "the protocol has no [safety] section"
            out.append(case)
            continue
        first_initial = made.get("initial")
        dues = ps.sae_due_dates(plan.reporting, site_aware_at=ae.aware_at,
                                sponsor_aware_at=first_initial, susar=susar,
                                fatal_or_life_threatening=fatal_lt, reports=made,
                                resolved=final)
        for d in dues:
            sub = None if d.kind == "follow_up" else made.get(d.kind)
            case["reports"].append({"kind": d.kind, "deadline": d.deadline,
                                    "due_date": d.due_date, "basis": d.basis,
                                    "source": d.source, "submitted_at": sub,
                                    "status": d.status(sub, now), "due": d})
        out.append(case)
    out.sort(key=lambda c: (c["adverse_event"].aware_at or _dt.datetime.max.replace(
        tzinfo=_dt.UTC), c["adverse_event"].pk))
    return out


def sae_form_record(pk: int, protocol: Any, now: _dt.datetime | None = None) -> dict[str, Any]:
    """Everything the CIOMS-I-style form of adverse event ``pk`` shows, as plain values
    (:func:`hepatrial.report.sae_form.SaeForm.from_dict`): protocol, patient (study id, site,
    sex, year of birth, age at onset in whole years), the event (CTCAE coding, grade and its
    definition, dates, outcome, action, seriousness criteria, awareness), the suspect product
    (administrations), causality (investigator, sponsor), expectedness, SUSAR, the signed
    reports and the reports due now, and the ledger entry of the event as shown."""
    from hepatrial.trials.models import AuditLedger
    from hepatrial.trials.models.safety import SAEAssessment, SAEReport

    ae = AdverseEvent.objects.select_related("participant__site").get(pk=pk)
    p = ae.participant
    plan = getattr(protocol, "safety", None)
    now = now or _dt.datetime.now(_dt.UTC)
    case = next(iter(sae_cases(plan, now, pks=[pk])), None) if ae.serious else None
    adm = [{"date": d, "route": r, "cells_total": float(c), "cells_per_kg": None if k is None
            else float(k), "batch_id": b} for d, r, c, k, b in Administration.objects.filter(
        participant=p).order_by("date", "pk").values_list("date", "route", "cells_total",
                                                        "cells_per_kg", "batch_id")]
    sponsor = SAEAssessment.objects.filter(adverse_event=ae, assessor="sponsor").order_by(
        "signed_at", "pk").last()
    inv = SAEAssessment.objects.filter(adverse_event=ae, assessor="investigator").order_by(
        "signed_at", "pk").last()
    hl = AdverseEvent.history.model._meta.label_lower
    entry = AuditLedger.objects.filter(history_model=hl, object_pk=str(pk)).order_by(
        "-seq").values_list("seq", "chain_hash").first()

    def signed(x: Any) -> dict[str, Any]:
        return {"printed_name": x.printed_name, "role": x.signer_role, "meaning": x.meaning,
                "signed_at": x.signed_at}

    product = getattr(protocol, "product", None)
    return {
        "report_id": ae_record_id(pk),
        "protocol": {"name": protocol.name, "title": protocol.title,
                     "version": protocol.version, "registration": protocol.registration},
        "product": {"name": product.name if product is not None else "investigational product",
                    "administrations": adm},
        "patient": {"study_id": p.study_id, "site": p.site.code, "sex": p.sex,
                    "year_of_birth": p.year_of_birth, "age": age_in_whole_years(
                        p.year_of_birth, ae.onset_date), "etiology": p.etiology,
                    "status": p.status, "status_date": p.status_date},
        "event": {"term": ae.term, "specify": ae.specify, "label": ae.label,
                  "meddra_code": ae.meddra_code, "soc": ae.soc, "ctcae_version":
                  ae.ctcae_version, "grade": ae.grade, "grade_definition": ae.grade_definition,
                  "onset_date": ae.onset_date, "resolution_date": ae.resolution_date,
                  "outcome": ae.outcome, "action_taken": ae.action_taken,
                  "serious": ae.serious, "seriousness_criteria": list(
                      ae.seriousness_criteria or []), "aware_at": ae.aware_at,
                  "aware_local": ae.aware_local, "aware_time_zone": ae.aware_time_zone},
        "causality": {
            "investigator": {"relatedness_product": ae.relatedness_product or ae.relatedness,
                             "relatedness_procedure": ae.relatedness_procedure,
                             "procedure": ae.procedure,
                             "signed": signed(inv) if inv is not None else None},
            "sponsor": None if sponsor is None else {
                "relatedness_product": sponsor.relatedness_product,
                "relatedness_procedure": sponsor.relatedness_procedure,
                "procedure": sponsor.procedure, "expectedness": sponsor.expectedness,
                "comment": sponsor.comment, "signed": signed(sponsor)}},
        "expectedness": {"product": ae.expectedness_product,
                         "procedure": ae.expectedness_procedure, "rsi": ae.rsi_version},
        "susar": bool(case and case["susar"]),
        "reports": [{"kind": r.kind, "submitted_at": r.submitted_at, "deadline": r.deadline,
                     "on_time": r.on_time, "final": r.final, "narrative": r.narrative,
                     **signed(r)} for r in SAEReport.objects.filter(adverse_event=ae).order_by(
                         "submitted_at", "pk")],
        "due": [] if case is None else [
            {"kind": r["kind"], "due_date": r["due_date"], "deadline": r["deadline"],
             "status": r["status"], "basis": r["basis"]} for r in case["reports"]],
        "time_zone": plan.reporting.time_zone if plan is not None else "UTC",
        "ledger": {"seq": entry[0], "chain_hash": entry[1]} if entry else None,
    }


# ============================================================================ REST API (issue 10)
# Readers of the REST API (hepatrial.trials.api): plain dicts, stable order, and always scoped
# to the sites the caller may see (``site_ids``, from services.permissions.site_ids_of): an
# object of another site is never returned, so the API answers 404 for it as for one that does
# not exist (issue 10: no leak of existence).
_API_PARTICIPANT_FIELDS = ("pk", "study_id", "site__code", "arm__code", "sex", "year_of_birth",
                           "etiology", "status", "status_date", "status_reason",
                           "screening_date", "enrolment_date")  # fmt: skip


def _api_participant_row(row: dict[str, Any], first_consent: _dt.date | None) -> dict[str, Any]:
    return {
        "study_id": row["study_id"], "site": row["site__code"], "arm": row["arm__code"],
        "sex": row["sex"], "year_of_birth": row["year_of_birth"], "etiology": row["etiology"],
        "age": age_in_whole_years(row["year_of_birth"], first_consent or row["screening_date"]),
        "status": row["status"], "status_date": row["status_date"],
        "status_reason": row["status_reason"], "screening_date": row["screening_date"],
        "enrolment_date": row["enrolment_date"],
    }  # fmt: skip


def api_participants(
    site_ids: set[int] | frozenset[int], *, site: str | None = None, status: str | None = None,
    limit: int | None = None, offset: int = 0,
) -> tuple[int, list[dict[str, Any]]]:
    """``(total, page)``: the participants of the sites ``site_ids`` (optionally one site code
    and one status), by study id; each ``{study_id, site, arm, sex, year_of_birth, etiology,
    age, status, status_date, status_reason, screening_date, enrolment_date}`` (``age`` as in
    docs/contracts.md §2, ``arm`` None when not enrolled)."""
    qs = Participant.objects.filter(site_id__in=sorted(site_ids)).order_by("study_id")
    if site is not None:
        qs = qs.filter(site__code=site)
    if status is not None:
        qs = qs.filter(status=status)
    total = qs.count()
    rows = list(qs.values(*_API_PARTICIPANT_FIELDS)[offset:None if limit is None else
                                                     offset + limit])
    first: dict[int, _dt.date] = {}
    for pid, d in Consent.objects.filter(participant_id__in=[r["pk"] for r in rows]).order_by(
            "participant_id", "date", "pk").values_list("participant_id", "date"):
        first.setdefault(pid, d)
    return total, [_api_participant_row(r, first.get(r["pk"])) for r in rows]


def api_participant(study_id: str, site_ids: set[int] | frozenset[int]) -> dict[str, Any] | None:
    """One participant as :func:`api_participants` gives it, or None when there is none with
    that study id at the sites ``site_ids``."""
    row = (Participant.objects.filter(study_id=study_id, site_id__in=sorted(site_ids))
           .values(*_API_PARTICIPANT_FIELDS).first())
    if row is None:
        return None
    first = (Consent.objects.filter(participant_id=row["pk"]).order_by("date", "pk")
             .values_list("date", flat=True).first())
    return _api_participant_row(row, first)


def api_visits(study_id: str, site_ids: set[int] | frozenset[int]) -> list[dict[str, Any]] | None:
    """The visits of a participant of the sites ``site_ids`` (None when there is no such
    participant there), by nominal day and code; each ``{code, label, nominal_day,
    window_lower, window_upper, earliest_date, target_date, latest_date, actual_date,
    actual_day, status, labs}`` with the window dates ``target + window_lower`` and ``target +
    window_upper`` (``window_lower`` ≤ 0; None before enrolment) and the visit's lab results
    ``{analyte, value_as_entered, unit_as_entered, value, unit, loinc, laboratory,
    specimen_date}`` by analyte (the value as entered, and in the canonical unit)."""
    p = (Participant.objects.filter(study_id=study_id, site_id__in=sorted(site_ids))
         .values("pk", "enrolment_date").first())
    if p is None:
        return None
    labs: dict[int, list[dict[str, Any]]] = {}
    for lab in LabResult.objects.filter(participant_id=p["pk"]).order_by("analyte", "pk").values(
            "visit_id", "analyte", "value_as_entered", "unit_as_entered", "value", "unit",
            "loinc", "laboratory", "specimen_date"):
        labs.setdefault(lab.pop("visit_id"), []).append(lab)
    out = []
    day0 = p["enrolment_date"]
    for v in Visit.objects.filter(participant_id=p["pk"]).order_by("nominal_day", "code").values(
            "pk", "code", "label", "nominal_day", "window_lower", "window_upper",
            "scheduled_date", "actual_date", "status"):
        target = v["scheduled_date"]
        out.append({
            "code": v["code"], "label": v["label"], "nominal_day": v["nominal_day"],
            "window_lower": v["window_lower"], "window_upper": v["window_upper"],
            "earliest_date": None if target is None else
            target + _dt.timedelta(days=v["window_lower"]),
            "target_date": target,
            "latest_date": None if target is None else
            target + _dt.timedelta(days=v["window_upper"]),
            "actual_date": v["actual_date"],
            "actual_day": None if v["actual_date"] is None or day0 is None else
            (v["actual_date"] - day0).days,
            "status": v["status"], "labs": labs.get(v["pk"], []),
        })  # fmt: skip
    return out


# ---------------------------------------------------------------------- the cell product
#: columns of :func:`products_frame`
PRODUCT_COLUMNS: tuple[str, ...] = (
    "participant_id", "batch_id", "coi", "state", "route", "collected_at", "released_at",
    "exceptional_release", "administered_at", "cells_total", "cells_per_kg", "volume_ml",
    "viability_pct", "vein_to_vein_days",
)  # fmt: skip


def products_frame() -> pd.DataFrame:
    """One row per cell-product batch made from a harvest (the product lifecycle), sorted by
    participant, collection time and batch id: :data:`PRODUCT_COLUMNS`.

    * ``collected_at``, ``released_at``, ``administered_at``: UTC timestamps (NaT when not
      reached); ``exceptional_release``: the batch's last release was exceptional;
    * ``route``, ``cells_total``, ``cells_per_kg``, ``volume_ml``: of the batch's
      administration (NaN/empty when not given);
    * ``viability_pct``: the batch's release-test result ``viability`` (NaN when none);
    * ``vein_to_vein_days``: days from the collection of the starting material to the start
      of the infusion (``(administered_at - collected_at)`` in days, unrounded; NaN when not
      given) — the vein-to-vein time.
    """
    from hepatrial.trials.models.product import (
        BatchRelease,
        CellProductBatch,
        QcResult,
    )

    batches = list(
        CellProductBatch.objects.filter(harvest__isnull=False).order_by("pk").values_list(
            "pk", "participant__study_id", "batch_id", "harvest__coi", "state",
            "harvest__collected_at", "released_at",
        )
    )
    adm = {
        b: row
        for b, *row in Administration.objects.order_by("pk").values_list(
            "batch_id", "route", "administered_at", "cells_total", "cells_per_kg", "volume_ml"
        )
    }
    viab = dict(QcResult.objects.filter(test="viability").values_list("batch_id", "value"))
    exc: dict[int, bool] = {}
    for bpk, e in BatchRelease.objects.order_by("released_at", "pk").values_list(
        "batch_id", "exceptional"
    ):
        exc[bpk] = bool(e)
    rows = []
    for pk, pid, bid, coi, state, collected, released in batches:
        route, given, cells, per_kg, vol = adm.get(bid, (None, None, None, None, None))
        v = viab.get(pk)
        rows.append((pid, bid, coi, state or "", route or "", collected, released,
                     exc.get(pk, False), given, cells, per_kg, vol,
                     float(v) if isinstance(v, int | float) else None))
    df = _frame(rows, list(PRODUCT_COLUMNS[:-1]))
    for c in ("collected_at", "released_at", "administered_at"):
        df[c] = pd.to_datetime(df[c], utc=True)
    for c in ("cells_total", "cells_per_kg", "volume_ml", "viability_pct"):
        df[c] = pd.to_numeric(df[c].astype(object)).astype(float)
    df["exceptional_release"] = df["exceptional_release"].astype(bool)
    df["vein_to_vein_days"] = (
        (df["administered_at"] - df["collected_at"]).dt.total_seconds() / 86400.0
    ).astype(float)
    df = _sorted(df, ["participant_id", "collected_at", "batch_id"])
    return df[list(PRODUCT_COLUMNS)]


def _iso(t: Any) -> str | None:
    return None if t is None else t.astimezone(_dt.UTC).isoformat()


def product_record(batch_id: str) -> dict[str, Any] | None:
    """Everything stored about one batch, as plain values (times ISO 8601 UTC): its harvest,
    participant (study id, year of birth, site), the manufacturing steps with their reagents
    and in-process controls, the QC results as entered, the releases with their signatures,
    the chain of custody (every event in order) and the administration with its
    observations. None when no batch has this id."""
    from hepatrial.trials.models.product import (
        BatchRelease,
        CellProductBatch,
        CustodyEvent,
        InProcessControlResult,
        ManufacturingStep,
        PostInfusionObservation,
        QcResult,
    )

    b = (CellProductBatch.objects.select_related("participant", "participant__site", "harvest",
                                                 "harvest__site")
         .filter(batch_id=batch_id).first())
    if b is None:
        return None
    p, h = b.participant, b.harvest
    controls: dict[int, dict[str, Any]] = {}
    for r in InProcessControlResult.objects.filter(batch=b).order_by("control"):
        controls.setdefault(r.step_id, {})[r.control] = {
            "value": r.value, "as_entered": r.value_as_entered, "unit": r.unit}
    steps = [{"step": s.step, "started_at": _iso(s.started_at),
              "completed_at": _iso(s.completed_at), "operator": s.operator,
              "reagents": s.reagents, "controls": controls.get(s.pk, {}), "notes": s.notes}
             for s in ManufacturingStep.objects.filter(batch=b).order_by("started_at", "pk")]
    qc = [{"test": q.test, "value": q.value, "as_entered": q.value_as_entered, "unit": q.unit,
           "analyst": q.analyst, "tested_on": q.tested_on.isoformat(), "method": q.method,
           "source": q.source}
          for q in QcResult.objects.filter(batch=b).order_by("test")]
    releases = []
    for r in BatchRelease.objects.filter(batch=b).select_related(
            "qa_signature", "investigator_signature", "deviation").order_by("released_at", "pk"):
        inv = r.investigator_signature
        releases.append({
            "released_at": _iso(r.released_at), "exceptional": r.exceptional,
            "conclusion": r.conclusion, "assessment": r.assessment,
            "weight_kg": None if r.weight_kg is None else float(r.weight_kg),
            "released_by": r.qa_signature.printed_name, "meaning": r.qa_signature.meaning,
            "signature_pk": r.qa_signature.pk, "signed_at": _iso(r.qa_signature.signed_at),
            "justification": r.justification,
            "investigator": inv.printed_name if inv is not None else "",
            "deviation": r.deviation.description if r.deviation is not None else "",
        })  # fmt: skip
    events = [{"seq": e.seq, "action": e.action, "from_state": e.from_state,
               "to_state": e.to_state, "at": _iso(e.at), "actor": e.actor_name,
               "location": e.location, "temperature_c": e.temperature_c,
               "scanned_coi": e.scanned_coi, "reason": e.reason, "details": e.details}
              for e in (CustodyEvent.objects.filter(harvest=h).order_by("seq")
                        if h is not None else CustodyEvent.objects.none())]
    a = Administration.objects.filter(batch=b).order_by("pk").first()
    administration = None
    if a is not None:
        obs = [{"minute": o.minute, "observed_at": _iso(o.observed_at),
                "heart_rate": o.heart_rate, "systolic_bp": o.systolic_bp,
                "diastolic_bp": o.diastolic_bp, "respiratory_rate": o.respiratory_rate,
                "temperature_c": None if o.temperature_c is None else float(o.temperature_c),
                "spo2": o.spo2, "reaction": o.reaction,
                "reaction_description": o.reaction_description,
                "adverse_event": o.adverse_event_id}
               for o in PostInfusionObservation.objects.filter(administration=a)
               .order_by("minute")]  # fmt: skip
        administration = {
            "administered_at": _iso(a.administered_at), "date": a.date.isoformat(),
            "route": a.route, "cells_total": a.cells_total, "cells_per_kg": a.cells_per_kg,
            "volume_ml": float(a.volume_ml), "operator": a.operator,
            "scanned_coi": a.scanned_coi, "identifiers_checked": a.identifiers_checked,
            "observations": obs,
        }  # fmt: skip
    return {
        "batch_id": b.batch_id, "state": b.state, "coi": h.coi if h else b.coi_identifier,
        "participant": p.study_id, "year_of_birth": p.year_of_birth, "site": p.site.code,
        "facility": b.facility or "", "received_at": _iso(b.received_at),
        "formulated_at": _iso(b.formulated_at),
        "formulated_volume_ml": (None if b.formulated_volume_ml is None
                                 else float(b.formulated_volume_ml)),
        "released_at": _iso(b.released_at),
        "harvest": None if h is None else {
            "coi": h.coi, "site": h.site.code, "collected_at": _iso(h.collected_at),
            "operator": h.operator, "volume_ml": float(h.volume_ml),
            "anticoagulant_lot": h.anticoagulant_lot, "container": h.container,
            "transport": h.transport, "collection_site": h.collection_site,
        },
        "steps": steps, "qc": qc, "releases": releases, "custody": events,
        "administration": administration,
    }  # fmt: skip


def product_batch_ids(key: str) -> list[str]:
    """The batch ids a trace of ``key`` covers: the batch itself when ``key`` is a batch id,
    else every batch of the participant ``key`` (by collection time); empty when neither."""
    from hepatrial.trials.models.product import CellProductBatch

    if CellProductBatch.objects.filter(batch_id=key).exists():
        return [key]
    return list(CellProductBatch.objects.filter(participant__study_id=key)
                .order_by("harvest__collected_at", "batch_id").values_list("batch_id", flat=True))


def api_queries(
    site_ids: set[int] | frozenset[int], *, status: str | None = "open",
    participant: str | None = None, limit: int | None = None, offset: int = 0,
) -> tuple[int, list[dict[str, Any]]]:
    """``(total, page)``: the data queries of participants of the sites ``site_ids`` (one
    ``status``, default ``open``; None: every status), optionally of one participant, oldest
    first; each ``{id, participant, site, visit, record, object_id, field, item, origin,
    status, text, value_at_raise, raised_by, raised_at, closed_by, closed_at, messages}`` with
    the thread ``messages`` ``[{step, author, at, text}]`` in order."""
    from hepatrial.trials.models.queries import Query, QueryMessage

    qs = Query.objects.filter(participant__site_id__in=sorted(site_ids))
    if status is not None:
        qs = qs.filter(status=status)
    if participant is not None:
        qs = qs.filter(participant__study_id=participant)
    qs = qs.order_by("raised_at", "pk")
    total = qs.count()
    rows = list(qs.values(
        "pk", "participant__study_id", "participant__site__code", "visit__code", "model_label",
        "object_pk", "field_name", "item", "origin", "status", "text", "value_at_raise",
        "raised_by__username", "raised_at", "closed_by__username", "closed_at",
    )[offset:None if limit is None else offset + limit])
    thread: dict[int, list[dict[str, Any]]] = {}
    for m in QueryMessage.objects.filter(query_id__in=[r["pk"] for r in rows]).order_by(
            "at", "pk").values("query_id", "step", "author__username", "at", "text"):
        thread.setdefault(m["query_id"], []).append(
            {"step": m["step"], "author": m["author__username"], "at": m["at"],
             "text": m["text"]})
    return total, [{
        "id": r["pk"], "participant": r["participant__study_id"],
        "site": r["participant__site__code"], "visit": r["visit__code"],
        "record": r["model_label"], "object_id": r["object_pk"], "field": r["field_name"],
        "item": r["item"], "origin": r["origin"], "status": r["status"], "text": r["text"],
        "value_at_raise": r["value_at_raise"], "raised_by": r["raised_by__username"],
        "raised_at": r["raised_at"], "closed_by": r["closed_by__username"],
        "closed_at": r["closed_at"], "messages": thread.get(r["pk"], []),
    } for r in rows]  # fmt: skip
