"""Read the trial store into the tables of docs/contracts.md (§1 dataset, §2 participants,
§3 adverse events, §4 bundle) and write the dataset deterministically.

All functions take ``db`` (SQLite path; ``HEPATRIAL_DATABASE_URL`` wins) and configure Django
themselves; with ``db=None`` an already configured store (e.g. under pytest-django) is used.
Rows come out in a fixed order, so the same store always gives byte-identical files.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hepatrial.ingest.dataset import DATASET_COLUMNS, assemble_dataset, sort_dataset
from hepatrial.protocol.models import UNSCHEDULED

__all__ = [
    "AE_COLUMNS",
    "PARTICIPANT_COLUMNS",
    "adverse_events",
    "dataset",
    "participants",
    "trial_data",
    "write_dataset",
]

PARTICIPANT_COLUMNS: tuple[str, ...] = (
    "participant_id", "site", "arm", "sex", "age", "etiology", "status", "status_date",
    "status_reason", "enrolment_date", "route", "cells_total", "cells_per_kg", "volume_ml",
)
AE_COLUMNS: tuple[str, ...] = (
    "participant_id", "term", "grade", "serious", "related", "onset_day", "resolved_day",
    "outcome",
)
UNSCHEDULED_PREFIX = "UNS-D"


def _setup(db: str | Path | None) -> None:
    from django.conf import settings

    if db is None and settings.configured:
        from django.apps import apps

        if apps.ready:
            return
    from hepatrial.trials import setup

    setup(db)


def _frame(rows: list[tuple], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(
        {c: pd.Series(dtype=object) for c in columns})


def _read_tables() -> dict[str, pd.DataFrame]:
    from hepatrial.trials.models import ClinicalAssessment, LabResult, Participant, Visit
    from hepatrial.trials.selectors import CLINICAL_ANALYTES, clinical_measurements

    ppl = _frame(list(Participant.objects.order_by("study_id").values_list(
        "study_id", "site__code", "arm__code", "sex", "year_of_birth", "screening_data",
        "enrolment_date", "screening_date")),
        ["participant_id", "site", "arm", "sex", "year_of_birth", "screening_data",
         "enrolment_date", "screening_date"])
    ppl["arm"] = ppl["arm"].fillna("")
    ppl["age"] = [_age(r) for r in ppl.itertuples(index=False)]
    visits = _frame(list(Visit.objects.order_by("participant__study_id", "nominal_day", "code")
                         .values_list("participant__study_id", "code", "nominal_day",
                                      "actual_date", "participant__enrolment_date")),
                    ["participant_id", "visit", "nominal_day", "actual_date", "day0"])
    visits["actual_day"] = pd.array(
        [(a - d).days if a is not None and d is not None else pd.NA
         for a, d in zip(visits["actual_date"], visits["day0"], strict=True)], dtype="Int64")
    labs = _frame(list(LabResult.objects.order_by().values_list(
        "participant__study_id", "visit__code", "analyte", "value", "unit")),
        ["participant_id", "visit", "analyte", "value", "unit"])
    signs = list(CLINICAL_ANALYTES)
    clin = _frame(list(ClinicalAssessment.objects.order_by().values_list(
        "participant__study_id", "visit__code", "ascites", "encephalopathy",
        "dialysis_last_week", "weight_kg", *signs)),
        ["participant_id", "visit", "ascites", "encephalopathy", "dialysis", "weight_kg",
         *signs])
    weight = clin.loc[clin["weight_kg"].notna(), ["participant_id", "visit", "weight_kg"]]
    if not weight.empty:
        weight = weight.assign(analyte="weight", value=weight["weight_kg"].astype(float),
                               unit="kg").drop(columns="weight_kg")
        labs = pd.concat([labs, weight], ignore_index=True)
    measured = clinical_measurements(clin, ["participant_id", "visit"])
    if not measured.empty:
        labs = pd.concat([labs, measured], ignore_index=True)
    labs["value"] = labs["value"].astype(float)
    return {"participants": ppl, "visits": visits, "labs": labs, "clinical": clin}


def _age(r: Any) -> float:
    """Exact age stored at import (``screening_data['age']``), else whole years from the year of
    birth to the enrolment (or screening) year."""
    data = r.screening_data or {}
    if isinstance(data, dict) and data.get("age") is not None:
        try:
            return float(data["age"])
        except (TypeError, ValueError):
            pass
    ref = r.enrolment_date or r.screening_date
    if r.year_of_birth is None or ref is None:
        return float("nan")
    return float(ref.year - int(r.year_of_birth))


def _display_visits(frame: pd.DataFrame) -> pd.DataFrame:
    """Stored unscheduled codes ``UNS-D<day>`` are shown as the protocol's ``UNS``."""
    is_uns = frame["visit"].str.startswith(UNSCHEDULED_PREFIX)
    if is_uns.any():
        frame = frame.copy()
        frame.loc[is_uns, "visit"] = UNSCHEDULED
        frame = sort_dataset(frame)
    return frame


def dataset(db: str | Path | None = None, *, derived: bool = True) -> pd.DataFrame:
    """The analysis dataset (contracts.md §1): measured rows in canonical units (lab results,
    weight, and the assessed clinical items of
    :data:`hepatrial.trials.selectors.CLINICAL_ANALYTES` - ``ascites``, ``hepatomegaly``,
    ``spiders``, ``edema``, ``histologic_stage``, unit ``1``) plus, with
    ``derived``, every score :func:`hepatrial.scores.score_columns` can compute per visit from
    that visit's labs, clinical assessment and the participant's sex and age
    (``source = derived``, unit ``points``)."""
    _setup(db)
    t = _read_tables()
    out = assemble_dataset(t["labs"], t["visits"], t["participants"], t["clinical"],
                           derived=derived)
    return _display_visits(out)


def participants(db: str | Path | None = None) -> pd.DataFrame:
    """Participants table (contracts.md §2), one row per participant, sorted by id.

    ``route`` is the route of the first administration; ``cells_total``, ``cells_per_kg`` and
    ``volume_ml`` are summed over the participant's administrations (NA when none).
    """
    _setup(db)
    from hepatrial.trials.models import Administration, Participant

    rows = list(Participant.objects.order_by("study_id").values_list(
        "study_id", "site__code", "arm__code", "sex", "year_of_birth", "screening_data",
        "etiology", "status", "status_date", "status_reason", "enrolment_date",
        "screening_date"))
    cols = ["participant_id", "site", "arm", "sex", "year_of_birth", "screening_data",
            "etiology", "status", "status_date", "status_reason", "enrolment_date",
            "screening_date"]
    ppl = _frame(rows, cols)
    ppl["arm"] = ppl["arm"].fillna("")
    ppl["age"] = pd.Series([_age(r) for r in ppl.itertuples(index=False)], dtype=float)
    adm = _frame(list(Administration.objects.order_by("participant__study_id", "date", "pk")
                      .values_list("participant__study_id", "route", "cells_total",
                                   "cells_per_kg", "volume_ml")),
                 ["participant_id", "route", "cells_total", "cells_per_kg", "volume_ml"])
    if not adm.empty:
        adm["volume_ml"] = adm["volume_ml"].astype(float)
        adm["cells_per_kg"] = adm["cells_per_kg"].astype(float)
        agg = adm.groupby("participant_id", sort=True).agg(
            route=("route", "first"), cells_total=("cells_total", "sum"),
            cells_per_kg=("cells_per_kg", lambda s: s.sum() if s.notna().all() else np.nan),
            volume_ml=("volume_ml", "sum")).reset_index()
        ppl = ppl.merge(agg, on="participant_id", how="left")
    else:
        for c in ("route", "cells_total", "cells_per_kg", "volume_ml"):
            ppl[c] = np.nan
    ppl["route"] = ppl["route"].astype(object).where(ppl["route"].notna(), "NA")
    for c in ("cells_total", "cells_per_kg", "volume_ml"):
        ppl[c] = ppl[c].astype(float)
    for c in ("status_date", "enrolment_date"):
        ppl[c] = pd.to_datetime(ppl[c])
    return ppl.loc[:, list(PARTICIPANT_COLUMNS)].reset_index(drop=True)


def adverse_events(db: str | Path | None = None) -> pd.DataFrame:
    """Adverse events (contracts.md §3), sorted by participant, onset day, term.

    ``onset_day``/``resolved_day`` are days from the participant's day 0 (NA when not enrolled
    or not resolved); ``related`` is the relatedness category.
    """
    _setup(db)
    from hepatrial.trials.models import AdverseEvent

    rows = list(AdverseEvent.objects.order_by("participant__study_id", "onset_date", "pk")
                .values_list("participant__study_id", "term", "grade", "serious", "relatedness",
                             "onset_date", "resolution_date", "outcome",
                             "participant__enrolment_date"))
    ae = _frame(rows, ["participant_id", "term", "grade", "serious", "related", "onset_date",
                       "resolution_date", "outcome", "day0"])

    def days(dates: pd.Series) -> pd.Series:
        return pd.array([(d - z).days if d is not None and z is not None and not pd.isna(d)
                         else pd.NA for d, z in zip(dates, ae["day0"], strict=True)],
                        dtype="Int64")

    ae["onset_day"] = days(ae["onset_date"])
    ae["resolved_day"] = days(ae["resolution_date"])
    ae["grade"] = ae["grade"].astype("int64")
    ae["serious"] = ae["serious"].astype(bool)
    ae = ae.sort_values(["participant_id", "onset_day", "term"], kind="mergesort",
                        na_position="last")
    return ae.loc[:, list(AE_COLUMNS)].reset_index(drop=True)


def trial_data(db: str | Path | None = None, *, derived: bool = True) -> Any:
    """The analysis bundle (contracts.md §4): ``hepatrial.analysis.TrialData(dataset,
    participants, adverse_events, protocol_summary)`` built from the store."""
    _setup(db)
    from hepatrial.analysis import TrialData
    from hepatrial.trials.services import active_protocol

    return TrialData(dataset(derived=derived), participants(), adverse_events(),
                     active_protocol().summary_dict())


def write_dataset(path: str | Path, db: str | Path | None = None, *,
                  derived: bool = True) -> pd.DataFrame:
    """Write :func:`dataset` to ``path`` (``.csv`` or ``.parquet``), atomically and
    deterministically (same store → same bytes). Returns the frame written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"{path}: output must end in .csv or .parquet")
    frame = dataset(db, derived=derived)
    assert tuple(frame.columns) == DATASET_COLUMNS
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent or Path("."))
    os.close(fd)
    try:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False, lineterminator="\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return frame
