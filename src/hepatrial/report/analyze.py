"""Run the protocol's analysis plan on a :class:`~hepatrial.analysis.TrialData` bundle.

:func:`analyze` returns plain, JSON-serialisable results (``hepatrial analyze --json``) that
:func:`hepatrial.report.build_report` renders. No Django here: the input is the bundle of
docs/contracts.md §4.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import pandas as pd

from hepatrial import analysis as an

__all__ = ["REFERENCE_RANGES", "analyze", "dataset_hash", "jsonable"]

#: Reference ranges used for CTCAE grading when the store holds none (assumed adult values,
#: SI units). They are printed in the report.
REFERENCE_RANGES = {
    "bilirubin": {"uln": 21.0, "unit": "umol/L", "term": "Blood bilirubin increased"},
    "creatinine": {"uln": 106.0, "unit": "umol/L", "term": "Creatinine increased"},
    "inr": {"uln": 1.2, "unit": "1", "term": "INR increased"},
    "albumin": {"lln": 35.0, "unit": "g/L", "term": "Hypoalbuminemia"},
}
SIGNIFICANCE = 0.05
LMM_ALL_MAX = 300  # above this many participants the LMM is fitted for the primary outcome only
EXACT_MAX_PAIRS = 50  # the Holm/exact-test feasibility note is computed up to this many pairs


def jsonable(x: Any) -> Any:
    """Convert numpy / pandas values (NaN → None) recursively to JSON-ready Python."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if isinstance(x, pd.DataFrame):
        return [jsonable(r) for r in x.to_dict(orient="records")]
    if isinstance(x, np.bool_ | bool):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating | float):
        f = float(x)
        return None if math.isnan(f) or math.isinf(f) else f
    if x is pd.NA or x is pd.NaT:
        return None
    if isinstance(x, pd.Timestamp):
        return x.date().isoformat()
    return x


def dataset_hash(dataset: pd.DataFrame) -> str:
    """SHA-256 of the analysis dataset serialised as CSV (the bytes of ``export dataset``)."""
    data = dataset.to_csv(index=False, lineterminator="\n").encode()
    return hashlib.sha256(data).hexdigest()


def _visit_order(td: Any) -> list[str]:
    visits = td.protocol_summary.get("visits") or []
    if visits:
        order = [v["code"] for v in sorted(visits, key=lambda v: v["nominal_day"])]
    else:
        days = td.dataset.groupby("visit")["nominal_day"].min().sort_values(kind="mergesort")
        order = list(days.index)
    present = set(td.dataset["visit"])
    return [v for v in order if v in present]


def _outcomes(td: Any, meld_variant: str | None) -> list[dict[str, Any]]:
    outs = td.protocol_summary.get("outcomes")
    if not outs:
        outs = [{"analyte": a, "label": a, "unit": u, "reported_unit": u}
                for a, u in td.dataset.groupby("analyte")["unit"].first().items()]
    result = []
    for o in outs:
        o = dict(o)
        if meld_variant and str(o["analyte"]).startswith("meld_") and \
                not str(o["analyte"]).startswith(("meld_na", "meld3")):
            o["protocol_analyte"] = o["analyte"]
            o["analyte"] = f"meld_{meld_variant}"
            o["label"] = f"MELD ({meld_variant})"
        result.append(o)
    return result


def _flow(td: Any, visits: list[str], completeness: pd.DataFrame) -> dict[str, Any]:
    p = td.participants
    status = p["status"].astype(str)
    screen_failed = p[status == "screen_failed"]
    enrolled = p[~status.isin(["screened", "screen_failed"])]
    treated_mask = enrolled["cells_total"].notna() if "cells_total" in enrolled else \
        pd.Series(True, index=enrolled.index)
    reasons = (screen_failed["status_reason"].fillna("not stated").astype(str)
               .value_counts().sort_index())
    lost = enrolled[enrolled["status"].isin(["withdrawn", "died", "transplanted"])]
    per_visit = []
    for r in completeness.to_dict(orient="records"):
        per_visit.append({k: r.get(k) for k in ("visit", "expected", "observed", "missing",
                                                 "missing_died", "missing_transplanted",
                                                 "missing_withdrawn", "missing_missed")})
    return {
        "screened": len(p),
        "screen_failed": len(screen_failed),
        "screen_fail_reasons": {str(k): int(v) for k, v in reasons.items()},
        "still_screening": int((status == "screened").sum()),
        "enrolled": len(enrolled),
        "treated": int(treated_mask.sum()),
        "not_treated": int((~treated_mask).sum()),
        "visits": per_visit,
        "lost": {str(k): int(v) for k, v in lost["status"].value_counts().sort_index().items()},
        "lost_reasons": sorted(f"{r.participant_id}: {r.status} ({r.status_reason})"
                               for r in lost.itertuples()),
        "completed": int((enrolled["status"] == "completed").sum()),
    }


def _lab_grades(td: Any, baseline: str, visits: list[str]) -> pd.DataFrame:
    from hepatrial.scores.ctcae import ctcae_grade

    ds = td.dataset[td.dataset["visit"].isin(visits)]
    rows = []
    for analyte, ref in REFERENCE_RANGES.items():
        sub = ds[(ds["analyte"] == analyte) & ds["value"].notna()]
        if sub.empty:
            continue
        base = sub[sub["visit"] == baseline].set_index("participant_id")["value"]
        b = sub["participant_id"].map(base).to_numpy(dtype=float)
        kw: dict[str, Any] = {"unit": ref["unit"]} if analyte == "albumin" else {}
        if "uln" in ref:
            kw["uln"] = ref["uln"]
        if "lln" in ref:
            kw["lln"] = ref["lln"]
        if analyte in ("bilirubin", "creatinine"):
            kw["baseline"] = np.where(np.isnan(b), np.nan, b)
        g = np.asarray(ctcae_grade(ref["term"], sub["value"].to_numpy(dtype=float),
                                   errors="coerce", **kw), dtype=float)
        rows.append(pd.DataFrame({"participant_id": sub["participant_id"].to_numpy(),
                                  "visit": sub["visit"].to_numpy(), "term": ref["term"],
                                  "grade": g}))
    if not rows:
        return pd.DataFrame(columns=["participant_id", "visit", "term", "grade"])
    return pd.concat(rows, ignore_index=True)


def analyze(td: Any, *, meld_variant: str | None = None,
            mixed_model: bool = True) -> dict[str, Any]:
    """Descriptive statistics, paired tests vs baseline, the multiplicity rule, visit
    completeness, participant flow, Table-1 data and safety for a TrialData bundle.

    ``meld_variant`` overrides the protocol's MELD variant for the outcome analyses (the
    protocol's MELD is then kept as a supportive row in ``meld_variants``). With more than one
    arm, descriptive statistics and paired tests are per arm (column ``arm``) and the arms are
    compared by ANCOVA on the change from baseline adjusted for baseline (``ancova``).
    ``mixed_model``: fit the protocol's supportive linear mixed model (visit as a categorical
    fixed effect, random intercept; arm x visit for randomised trials) when the plan has one.
    """
    td.validate()
    ps = td.protocol_summary or {}
    plan = ps.get("analysis", {}) or {}
    baseline = td.baseline_visit
    visits = _visit_order(td)
    post = visits[visits.index(baseline) + 1:] if baseline in visits else []
    variant = meld_variant or plan.get("meld_variant") or ps.get("meld_variant")
    outcomes = _outcomes(td, meld_variant)
    codes = [o["analyte"] for o in outcomes]
    ds = td.dataset
    out_ds = ds[ds["analyte"].isin(codes) & ds["visit"].isin(visits)]
    arms = sorted(out_ds["arm"].dropna().astype(str).unique())
    per_arm = len(arms) > 1
    wmethod = plan.get("wilcoxon_method", "exact")
    descs, paireds = [], []
    for arm_code in (arms if per_arm else [None]):
        sub = out_ds if arm_code is None else out_ds[out_ds["arm"] == arm_code]
        if sub.empty:
            continue
        d = an.describe(sub, by="analyte", baseline=baseline, visits=visits)
        pv = an.paired_vs_baseline(sub, baseline=baseline, by="analyte", visits=visits,
                                   wilcoxon=wmethod)
        if arm_code is not None:
            d.insert(0, "arm", arm_code)
            pv.insert(0, "arm", arm_code)
        descs.append(d)
        paireds.append(pv)
    desc = pd.concat(descs, ignore_index=True) if descs else pd.DataFrame()
    paired = pd.concat(paireds, ignore_index=True) if paireds else pd.DataFrame()
    ancova = pd.DataFrame()
    if per_arm and not out_ds.empty:
        ancova = an.ancova_by_visit(out_ds, baseline=baseline, by="analyte", visits=visits)
    lmm: list[dict[str, Any]] = []
    if plan.get("mixed_model") and not out_ds.empty and mixed_model:
        lmm_outcomes = outcomes
        lmm_kw: dict[str, Any] = {}
        if out_ds["participant_id"].nunique() > LMM_ALL_MAX:  # statsmodels: ~15 s per fit
            lmm_kw["optimizers"] = ("bfgs", "lbfgs")  # two optimizers cross-check each other
            pe = (ps.get("primary_endpoint") or {}).get("analyte")
            lmm_outcomes = [o for o in outcomes if o.get("protocol_analyte", o["analyte"]) == pe
                            or o["analyte"] == pe] or outcomes[:1]
        for o in lmm_outcomes:
            sub = out_ds[out_ds["analyte"] == o["analyte"]]
            if sub["visit"].nunique() < 2:
                continue
            try:
                fit = an.fit_lmm(sub, "participant_id", "visit", "value",
                                 time_type="categorical", time_reference=baseline,
                                 time_order=visits, random="intercept",
                                 group="arm" if per_arm else None, **lmm_kw)
                fe = fit.fixed_effects.reset_index().rename(columns={"index": "term"})
                fe.columns = ["term", *fe.columns[1:]]
                lmm.append({"outcome": o["analyte"], "converged": fit.converged,
                            "n_obs": fit.n_obs, "n_groups": fit.n_groups, "model": fit.model,
                            "fixed_effects": jsonable(fe)})
            except an.AnalysisInputError as exc:
                lmm.append({"outcome": o["analyte"], "error": str(exc)})
    alpha = float(plan.get("alpha", SIGNIFICANCE))
    seq = []
    for s in plan.get("sequence", []):
        a = s["analyte"]
        if meld_variant and a.startswith("meld_") and not a.startswith(("meld_na", "meld3")):
            a = f"meld_{meld_variant}"
        seq.append((a, s["visit"]))
    multiplicity: dict[str, Any] = {"rule": plan.get("multiplicity", "none"), "alpha": alpha,
                                    "sequence": [f"{a}@{v}" for a, v in seq], "by_test": {}}
    if not paired.empty and not per_arm:
        idx = paired.set_index(["outcome", "visit"])
        for test, col in (("t", "p_t"), ("wilcoxon", "p_wilcoxon")):
            pv = [(f"{a}@{v}", float(idx.loc[(a, v), col]) if (a, v) in idx.index
                   else float("nan")) for a, v in seq]
            if pv:
                multiplicity["by_test"][test] = jsonable(an.fixed_sequence(pv, alpha=alpha))
    if not paired.empty:
        n_pairs = int(paired["n_pairs"].min()) if len(paired) else 0
        m_all = len(paired)
        if 0 < n_pairs <= EXACT_MAX_PAIRS:  # only small samples can hit the exact-test floor
            multiplicity["holm_all"] = jsonable(an.exact_test_feasibility(n_pairs, m_all,
                                                                           alpha=alpha))
            multiplicity["holm_all"]["m_tests"] = m_all
            multiplicity["holm_all"]["n_pairs"] = n_pairs
    if per_arm and not ancova.empty:
        # first non-reference arm (two-arm trials: the only comparison)
        first = ancova.drop_duplicates(["outcome", "visit"], keep="first")
        pmap = {(r.outcome, r.visit): float(r.p) for r in first.itertuples()}
        pv = [(f"{a}@{v}", pmap.get((a, v), float("nan"))) for a, v in seq]
        if pv:
            multiplicity["by_test"]["ancova"] = jsonable(an.fixed_sequence(pv, alpha=alpha))
    # unscheduled visits (code UNS: a second visit in a window, kept by the importer) have no
    # nominal visit to be compared at; they are counted here and left out of per-visit tables
    unscheduled = ds[~ds["visit"].isin(visits)]
    unscheduled_summary = {
        "visits": int(unscheduled[["participant_id", "actual_day"]].drop_duplicates().shape[0]),
        "participants": int(unscheduled["participant_id"].nunique()),
        "measurements": len(unscheduled),
        "codes": sorted(str(v) for v in unscheduled["visit"].unique()),
    }
    completeness = an.visit_completeness(ds[ds["visit"].isin(visits)], td.participants,
                                         visits=visits)
    meld_rows = []
    for a in sorted(x for x in ds["analyte"].unique() if str(x).startswith("meld_")
                    and not str(x).startswith(("meld_na", "meld3"))):
        sub = ds[(ds["analyte"] == a) & ds["visit"].isin([baseline, *post[-1:]])]
        for v, g in sub.groupby("visit", sort=False):
            x = g["value"].dropna().to_numpy(dtype=float)
            meld_rows.append({"analyte": a, "visit": v, "n": int(x.size),
                              "mean": float(x.mean()) if x.size else None,
                              "sd": float(x.std(ddof=1)) if x.size > 1 else None})
    grades = _lab_grades(td, baseline, visits)
    shifts = an.lab_shift_table(grades, baseline=baseline, visits=visits) \
        if not grades.empty else pd.DataFrame()
    ae = td.adverse_events
    enrolled = td.participants[~td.participants["status"].isin(["screened", "screen_failed"])]
    ae_sum = an.ae_summary(ae, participants=td.participants) if len(ae) else pd.DataFrame()
    ae_ov = an.ae_overview(ae, participants=td.participants)
    return jsonable({
        "protocol": {k: ps.get(k) for k in ("name", "title", "version", "registration",
                                            "reference", "content_hash", "design")},
        "plan": {"meld_variant": variant, "protocol_meld_variant": plan.get("meld_variant"),
                 "tests": plan.get("tests", ["t", "wilcoxon"]), "wilcoxon_method": wmethod,
                 "multiplicity": plan.get("multiplicity"), "alpha": alpha,
                 "primary_endpoint": ps.get("primary_endpoint")},
        "baseline_visit": baseline,
        "visits": visits,
        "unscheduled": unscheduled_summary,
        "post_baseline_visits": post,
        "outcomes": outcomes,
        "describe": desc,
        "paired": paired,
        "arms": arms,
        "ancova": ancova,
        "lmm": lmm,
        "multiplicity": multiplicity,
        "completeness": completeness,
        "flow": _flow(td, visits, completeness),
        "meld_variants": meld_rows,
        "safety": {"n_events": len(ae), "n_participants": len(enrolled),
                   "overview": ae_ov, "summary": ae_sum, "shifts": shifts,
                   "reference_ranges": REFERENCE_RANGES},
        "dataset_sha256": dataset_hash(td.dataset),
    })
