"""Shared bundles for the report tests: the demo cohort (synthetic), a toy randomised trial
with adverse events, and the demo cohort walked through time (interim data cuts)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hepatrial.analysis import TrialData

VISITS = [("D0", 0), ("W4", 28), ("W12", 84)]
COLS = ["participant_id", "site", "arm", "visit", "nominal_day", "actual_day", "analyte",
        "value", "unit", "source"]
AE_COLS = ["participant_id", "term", "grade", "serious", "related", "onset_day",
           "resolved_day", "outcome"]


def toy_bundle(with_ae: bool = True, soc: bool = False) -> TrialData:
    """8 participants in two arms (P07 withdrew before W12) and a screen failure; three AEs
    (with a ``soc`` column when ``soc``)."""
    rng = np.random.default_rng(3)
    ppl = []
    rows = []
    for i in range(1, 9):
        pid = f"P{i:02d}"
        arm = "cells" if i % 2 else "control"
        status = "completed"
        reason = ""
        if i == 7:
            status, reason = "withdrawn", "moved away"
        ppl.append({"participant_id": pid, "site": "S01", "arm": arm, "sex": "MF"[i % 2],
                    "age": 40.0 + 3 * i, "etiology": ["HBV", "alcohol", "HCV"][i % 3],
                    "status": status, "status_date": pd.Timestamp("2024-06-01"),
                    "status_reason": reason, "enrolment_date": pd.Timestamp("2024-01-01"),
                    "route": "peripheral_vein", "cells_total": 4e7, "cells_per_kg": np.nan,
                    "volume_ml": 10.0})
        for v, day in VISITS:
            if i == 7 and v == "W12":
                continue
            drop = {"W4": 2.0, "W12": 4.0}.get(v, 0.0) if arm == "cells" else 0.0
            meld = 18 + rng.normal(0, 2) - drop
            vals = {"meld_optn2002": round(meld), "inr": round(1.8 + rng.normal(0, .2), 2),
                    "albumin": round(30 + rng.normal(0, 3)),
                    "bilirubin": round(40 + rng.normal(0, 10)),
                    "creatinine": round(100 + rng.normal(0, 20))}
            units = {"meld_optn2002": "points", "inr": "1", "albumin": "g/L",
                     "bilirubin": "umol/L", "creatinine": "umol/L"}
            for a, x in vals.items():
                rows.append([pid, "S01", arm, v, day, day, a, float(x), units[a],
                             "derived" if a.startswith("meld") else "measured"])
    ppl.append({"participant_id": "P09", "site": "S01", "arm": "", "sex": "F", "age": 70.0,
                "etiology": "HBV", "status": "screen_failed",
                "status_date": pd.Timestamp("2024-01-01"), "status_reason": "ineligible: INC-AGE",
                "enrolment_date": pd.NaT, "route": "NA", "cells_total": np.nan,
                "cells_per_kg": np.nan, "volume_ml": np.nan})
    ds = pd.DataFrame(rows, columns=COLS)
    ae = pd.DataFrame([["P01", "Fever", 1, False, "possible", 1, 3, "recovered"],
                       ["P01", "Fever", 2, False, "probable", 5, 6, "recovered"],
                       ["P03", "Abdominal pain", 2, False, "unlikely", 2, 5, "recovered"],
                       ["P03", "Cholangitis", 3, True, "not_related", 40, 50, "recovered"],
                       ["P05", "Fever", 1, False, "possible", 2, 2, "recovered"]],
                      columns=AE_COLS) if with_ae else pd.DataFrame(columns=AE_COLS)
    if soc and with_ae:
        ae["soc"] = ["General disorders and administration site conditions"] * 2 + [
            "Gastrointestinal disorders", "Hepatobiliary disorders", None]
    ps = {"name": "toy", "title": "Toy randomised trial", "version": "0.1", "registration": "NA",
          "reference": "none", "content_hash": "abc123", "design": "randomised",
          "baseline_visit": "D0",
          "arms": [{"code": "cells", "label": "cells"}, {"code": "control", "label": "control"}],
          "visits": [{"code": v, "nominal_day": d} for v, d in VISITS],
          "outcomes": [{"analyte": "meld_optn2002", "label": "MELD", "unit": "points",
                        "reported_unit": "points"},
                       {"analyte": "inr", "label": "INR", "unit": "1", "reported_unit": "1"},
                       {"analyte": "albumin", "label": "Albumin", "unit": "g/L",
                        "reported_unit": "g/L"}],
          "analysis": {"meld_variant": "optn2002", "tests": ["t", "wilcoxon"],
                       "primary_test": "t", "wilcoxon_method": "exact",
                       "multiplicity": "fixed_sequence",
                       "sequence": [{"analyte": "meld_optn2002", "visit": "W12"},
                                    {"analyte": "inr", "visit": "W12"}], "alpha": 0.05,
                       "mixed_model": {"time": "visit"}}}
    return TrialData(ds, pd.DataFrame(ppl), ae, ps)


@pytest.fixture(scope="session")
def demo_cohort():  # type: ignore[no-untyped-def]
    """The demo's synthetic reconstruction (with the MELD-variant feasibility)."""
    from hepatrial.demo import cohort

    c = cohort.reconstruct()
    c.feasibility = cohort.meld_variant_feasibility(cohort.cohort_meld(c.labs))
    return c


@pytest.fixture(scope="session")
def demo_bundle(demo_cohort) -> TrialData:  # type: ignore[no-untyped-def]
    """The demo cohort as the report's input bundle, from its data frames (no database)."""
    from hepatrial.demo import pipeline

    return pipeline.bundle_without_store(demo_cohort)


@pytest.fixture(scope="session")
def demo_results(demo_cohort, demo_bundle) -> dict:  # type: ignore[no-untyped-def]
    """analyze() of the demo bundle plus the demo section, as the demo writes it."""
    from hepatrial.demo import pipeline
    from hepatrial.report import analyze

    res = analyze(demo_bundle, meld_variant=demo_cohort.meld_variant)
    res["demo"] = pipeline.demo_section(demo_cohort)
    return res


def visit_dates(td: TrialData) -> list[pd.Timestamp]:
    """Calendar dates of every visit of the bundle, in order (one interim state each)."""
    enrol = dict(zip(td.participants["participant_id"],
                     pd.to_datetime(td.participants["enrolment_date"]), strict=True))
    ds = td.dataset
    when = ds["participant_id"].map(enrol) + pd.to_timedelta(ds["actual_day"], unit="D")
    return sorted(set(when))
