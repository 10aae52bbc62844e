"""Assemble the analysis dataset (docs/contracts.md §1) from plain tables (no Django here).

The ORM side (:mod:`hepatrial.ingest.export`, through :mod:`hepatrial.trials.selectors`) reads the
store into four small frames and hands them
to :func:`assemble_dataset`, which adds the derived scores and fixes column order, types and sort
order so that the same store always gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from hepatrial.vocab import DATASET_COLUMNS

__all__ = [
    "DATASET_COLUMNS",
    "SCORE_INPUTS",
    "assemble_dataset",
    "derive_scores",
    "sort_dataset",
]

#: Canonical analyte code -> key of ``hepatrial.scores.score_columns`` (canonical units).
SCORE_INPUTS: dict[str, str] = {
    "bilirubin": "bilirubin_umol_l",
    "creatinine": "creatinine_umol_l",
    "albumin": "albumin_g_l",
    "inr": "inr",
    "sodium": "sodium_mmol_l",
    "ast": "ast_u_l",
    "alt": "alt_u_l",
    "platelets": "platelets_10e9_l",
}

#: Clinical-assessment columns passed to the score calculator when present.
CLINICAL_INPUTS: tuple[str, ...] = ("ascites", "encephalopathy", "dialysis")

SCORE_UNIT = "points"


def _score_columns() -> Callable[[Mapping[str, object]], Mapping[str, np.ndarray]]:
    from hepatrial.scores import score_columns

    def coerce(mapping: Mapping[str, object]) -> Mapping[str, np.ndarray]:
        # stored data passed validation; an input a score cannot take gives NaN, not a crash
        return score_columns(mapping, errors="coerce")

    return coerce


def derive_scores(
    measured: pd.DataFrame,
    visits: pd.DataFrame,
    participants: pd.DataFrame,
    clinical: pd.DataFrame | None = None,
    *,
    score_columns: Callable[[Mapping[str, object]], Mapping[str, np.ndarray]] | None = None,
) -> pd.DataFrame:
    """Compute every score per participant-visit from that visit's labs, clinical assessment and
    the participant's sex and age (age at enrolment + actual day / 365.25 when the visit was done).

    Returns long rows ``participant_id, visit, analyte, value, unit='points'`` for every finite
    numeric score output (categorical outputs such as a Child-Pugh class letter are left out; the
    numeric points are there). Scores whose inputs are missing are NaN and therefore absent.
    """
    key = ["participant_id", "visit"]
    if measured.empty:
        return pd.DataFrame(columns=[*key, "analyte", "value", "unit"])
    labs = measured[measured["analyte"].isin(SCORE_INPUTS)]
    wide = labs.pivot(index=key, columns="analyte", values="value")
    base = visits[[*key, "actual_day"]].drop_duplicates(key).set_index(key)
    wide = base.join(wide, how="inner") if not wide.empty else base.iloc[0:0]
    if wide.empty:
        return pd.DataFrame(columns=[*key, "analyte", "value", "unit"])
    wide = wide.reset_index()
    if clinical is not None and not clinical.empty:
        cols = [c for c in CLINICAL_INPUTS if c in clinical.columns]
        wide = wide.merge(clinical[[*key, *cols]].drop_duplicates(key), on=key, how="left")
    ppl = participants[["participant_id", "sex", "age"]]
    wide = wide.merge(ppl, on="participant_id", how="left")

    mapping: dict[str, object] = {}
    for code, name in SCORE_INPUTS.items():
        if code in wide.columns:
            mapping[name] = wide[code].to_numpy(dtype=float)
    for col in CLINICAL_INPUTS:
        if col in wide.columns:
            vals = wide[col].astype(object).where(wide[col].notna(), None)
            if col == "dialysis":  # unknown = not on dialysis (score_columns' absent-column rule)
                vals = vals.map({True: "true", False: "false", None: "false"})
            mapping[col] = vals.to_numpy(dtype=object)
    days = pd.to_numeric(wide["actual_day"], errors="coerce").to_numpy(dtype=float)
    age = pd.to_numeric(wide["age"], errors="coerce").astype("Float64").to_numpy(
        dtype=float, na_value=np.nan)
    mapping["age"] = np.where(np.isfinite(days), age + days / 365.25, age)
    mapping["sex"] = wide["sex"].to_numpy(dtype=object)

    fn = score_columns or _score_columns()
    out = fn(mapping)
    parts = []
    for name in sorted(out):
        arr = np.asarray(out[name])
        if arr.dtype.kind not in "fiub":
            continue
        vals = arr.astype(float)
        ok = np.isfinite(vals)
        if not ok.any():
            continue
        parts.append(pd.DataFrame({
            "participant_id": wide["participant_id"].to_numpy()[ok],
            "visit": wide["visit"].to_numpy()[ok],
            "analyte": name,
            "value": vals[ok],
            "unit": SCORE_UNIT,
        }))
    if not parts:
        return pd.DataFrame(columns=[*key, "analyte", "value", "unit"])
    return pd.concat(parts, ignore_index=True)


def sort_dataset(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort by participant_id, nominal_day, visit, analyte (stable) and fix column types."""
    frame = frame.loc[:, list(DATASET_COLUMNS)].copy()
    for col in ("participant_id", "site", "arm", "visit", "analyte", "unit", "source"):
        frame[col] = frame[col].astype(str)
    frame["nominal_day"] = pd.to_numeric(frame["nominal_day"]).astype("int64")
    frame["actual_day"] = pd.to_numeric(frame["actual_day"]).astype("Int64")
    frame["value"] = frame["value"].astype("float64")
    frame = frame.sort_values(["participant_id", "nominal_day", "visit", "analyte", "source"],
                              kind="mergesort")
    return frame.reset_index(drop=True)


def assemble_dataset(
    measured: pd.DataFrame,
    visits: pd.DataFrame,
    participants: pd.DataFrame,
    clinical: pd.DataFrame | None = None,
    *,
    derived: bool = True,
    score_columns: Callable[[Mapping[str, object]], Mapping[str, np.ndarray]] | None = None,
) -> pd.DataFrame:
    """Build the analysis dataset.

    Args:
        measured: ``participant_id, visit, analyte, value, unit`` in canonical units.
        visits: ``participant_id, visit, nominal_day, actual_day``.
        participants: ``participant_id, site, arm, sex, age``.
        clinical: optional ``participant_id, visit`` + ``ascites``/``encephalopathy``/``dialysis``.
        derived: add the derived score rows (``source = derived``).
    """
    key = ["participant_id", "visit"]
    m = measured[[*key, "analyte", "value", "unit"]].assign(source="measured")
    frames = [m]
    if derived:
        d = derive_scores(measured, visits, participants, clinical, score_columns=score_columns)
        frames.append(d.assign(source="derived"))
    long = pd.concat([f for f in frames if not f.empty] or [m], ignore_index=True)
    v = visits[[*key, "nominal_day", "actual_day"]].drop_duplicates(key)
    long = long.merge(v, on=key, how="left", validate="many_to_one")
    long = long.merge(participants[["participant_id", "site", "arm"]], on="participant_id",
                      how="left", validate="many_to_one")
    return sort_dataset(long)
