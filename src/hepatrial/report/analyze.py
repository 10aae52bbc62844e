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
from hepatrial.analysis.multiplicity import NO_DATA
from hepatrial.analysis.safety import ae_by_soc_term
from hepatrial.protocol import analytes as _an

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
    """Scheduled visits in time order: every protocol visit from the baseline on — also one
    nobody has attended yet (an interim analysis shows it with n = 0 and its hypotheses as
    "not tested: no data") — and earlier visits (screening) only when they have data."""
    visits = td.protocol_summary.get("visits") or []
    present = set(td.dataset["visit"])
    if visits:
        order = [v["code"] for v in sorted(visits, key=lambda v: v["nominal_day"])]
        base = td.baseline_visit
        after = order[order.index(base):] if base in order else order
        return [v for v in order if v in present or v in after]
    days = td.dataset.groupby("visit")["nominal_day"].min().sort_values(kind="mergesort")
    return [v for v in days.index if v in present]


def visit_labels(td: Any) -> dict[str, str]:
    """Visit code -> the protocol's visit label (codes without a label are left out)."""
    return {str(v["code"]): str(v["label"]) for v in td.protocol_summary.get("visits") or []
            if v.get("label")}


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
            if o["analyte"] in _an.SCORES:  # name the variant: MELD (Kamath 2001, continuous)
                o["label"] = _an.SCORES[o["analyte"]].label
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
    pending = _not_yet_due(td, visits)
    for r in completeness.to_dict(orient="records"):
        rec = {k: r.get(k) for k in ("visit", "expected", "observed", "missing",
                                     "missing_died", "missing_transplanted",
                                     "missing_withdrawn", "missing_missed")}
        # a participant still in follow-up with nothing at this or any later visit has not
        # reached the visit yet (interim): not due, not missing
        k = pending.get(r["visit"], 0)
        rec["not_yet_due"] = k
        rec["expected"] = int(rec["expected"] or 0) - k
        rec["missing"] = int(rec["missing"] or 0) - k
        rec["missing_missed"] = int(rec["missing_missed"] or 0) - k
        per_visit.append(rec)
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


def _not_yet_due(td: Any, visits: list[str]) -> dict[str, int]:
    """Per visit: participants in follow-up (status ``enrolled``) without a value at that
    visit or any later one."""
    ppl = td.participants
    active = set(ppl.loc[ppl["status"].astype(str) == "enrolled", "participant_id"])
    if not active:
        return {}
    ds = td.dataset
    seen = ds[ds["value"].notna() & ds["participant_id"].isin(active)]
    rank = {v: i for i, v in enumerate(visits)}
    last = seen.assign(r=seen["visit"].map(rank)).groupby("participant_id")["r"].max()
    out: dict[str, int] = {}
    for v, i in rank.items():
        out[v] = int(sum(1 for p in active if not (last.get(p, -1) >= i)))
    return out


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


TEST_LABELS = {"t": "paired t test", "wilcoxon": "exact Wilcoxon signed-rank test",
               "ancova": "ANCOVA of the change from baseline, adjusted for baseline"}
P_COLUMN = {"t": "p_t", "wilcoxon": "p_wilcoxon"}


def _primary_test(plan: dict[str, Any]) -> tuple[str, list[str]]:
    """(primary test, sensitivity tests) from the plan; a plan summary without
    ``primary_test`` (hand-made bundles) takes the first listed test as primary."""
    tests = [str(t) for t in plan.get("tests") or ["t", "wilcoxon"]]
    primary = plan.get("primary_test") or (tests[0] if tests else "t")
    return str(primary), [t for t in tests if t != primary]


def _hypotheses(seq: list[tuple[str, str]], rows: dict[tuple[str, str], dict[str, Any]],
                p_col: str, alpha: float, *, n_col: str = "n_pairs") -> list[dict[str, Any]]:
    """Fixed-sequence decisions; a hypothesis whose p cannot be computed (no pairs, one pair,
    no variation) is "not tested: no data" and stops the sequence."""
    tests: list[tuple[str, float | None]] = []
    for a, v in seq:
        r = rows.get((a, v))
        p = None if r is None else r.get(p_col)
        ok = p is not None and not (isinstance(p, float) and math.isnan(p))
        tests.append((f"{a}@{v}", float(p) if ok and p is not None else None))
    fs = an.fixed_sequence(tests, alpha=alpha)
    out = []
    for (a, v), rec in zip(seq, fs.to_dict(orient="records"), strict=True):
        r = rows.get((a, v)) or {}
        rec.update(analyte=a, visit=v, n=int(r.get(n_col) or 0))
        if rec["status"] == NO_DATA:
            rec["reason"] = ("no pairs" if not rec["n"] else
                             f"{rec['n']} pair(s), p not computable")
        out.append(rec)
    return out


def _fit_lmms(outcomes: list[dict[str, Any]], out_ds: pd.DataFrame, baseline: str,
              visits: list[str], per_arm: bool) -> list[dict[str, Any]]:
    """The plan's supportive mixed model per outcome (every outcome, any trial size). A model
    that cannot be fitted (an interim with one participant, no follow-up yet) is reported
    with the reason, never raised."""
    out: list[dict[str, Any]] = []
    for o in outcomes:
        sub = out_ds[(out_ds["analyte"] == o["analyte"]) & out_ds["value"].notna()]
        if sub["visit"].nunique() < 2:
            out.append({"outcome": o["analyte"], "error": "no follow-up data"})
            continue
        if sub["participant_id"].nunique() < 2:
            out.append({"outcome": o["analyte"], "error": "fewer than 2 participants"})
            continue
        try:
            fit = an.fit_lmm(sub, "participant_id", "visit", "value",
                             time_type="categorical", time_reference=baseline,
                             time_order=visits, random="intercept",
                             group="arm" if per_arm else None)
        except (ValueError, ArithmeticError, RuntimeError, np.linalg.LinAlgError) as exc:
            out.append({"outcome": o["analyte"], "error": str(exc)})
            continue
        d = fit.to_dict()
        fe = [{"term": str(k), **v} for k, v in d.pop("fixed_effects").items()]
        d.pop("optimizer_trials", None)
        out.append({"outcome": o["analyte"], **d, "fixed_effects": fe})
    return out


def analyze(td: Any, *, meld_variant: str | None = None,
            mixed_model: bool = True) -> dict[str, Any]:
    """Descriptive statistics, paired tests vs baseline, the multiplicity rule, visit
    completeness, participant flow, Table-1 data and safety for a TrialData bundle.

    ``meld_variant`` overrides the protocol's MELD variant for the outcome analyses (the
    protocol's MELD is then kept as a supportive row in ``meld_variants``). With more than one
    arm, descriptive statistics and paired tests are per arm (column ``arm``) and the arms are
    compared by ANCOVA on the change from baseline adjusted for baseline (``ancova``).
    ``mixed_model``: fit the protocol's supportive linear mixed model (visit as a categorical
    fixed effect, random intercept; arm x visit for randomised trials) when the plan has one,
    for every outcome.

    Interim-safe: any store state — one participant at week 1, no follow-up at all — gives
    results; a hypothesis without data is ``"not tested: no data"`` and stops the fixed
    sequence. The confirmatory family uses only the plan's ``primary_test`` (ANCOVA between
    arms for a randomised trial); the other paired test is reported as a sensitivity
    analysis (``multiplicity["sensitivity"]``), without decisions.
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
    protocol_arms = [str(a["code"]) for a in ps.get("arms") or []]
    data_arms = sorted(out_ds["arm"].dropna().astype(str).unique())
    per_arm = len(protocol_arms) > 1 or len(data_arms) > 1
    arms = ([a for a in protocol_arms if a in data_arms] + [a for a in data_arms
                                                           if a not in protocol_arms]
            if per_arm else data_arms)
    arm_labels = {str(a["code"]): str(a.get("label") or a["code"]) for a in ps.get("arms") or []}
    wmethod = plan.get("wilcoxon_method", "exact")
    primary, sensitivity = _primary_test(plan)
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
    if per_arm and not out_ds.empty and out_ds["arm"].nunique() > 1:
        ancova = an.ancova_by_visit(out_ds, baseline=baseline, by="analyte", visits=visits)
    lmm: list[dict[str, Any]] = []
    if plan.get("mixed_model") and not out_ds.empty and mixed_model:
        lmm = _fit_lmms(outcomes, out_ds, baseline, visits, per_arm)
    alpha = float(plan.get("alpha", SIGNIFICANCE))
    seq = []
    for s in plan.get("sequence", []):
        a = s["analyte"]
        if meld_variant and a.startswith("meld_") and not a.startswith(("meld_na", "meld3")):
            a = f"meld_{meld_variant}"
        seq.append((a, s["visit"]))
    multiplicity: dict[str, Any] = {
        "rule": plan.get("multiplicity", "none"), "alpha": alpha,
        "sequence": [{"hypothesis": f"{a}@{v}", "analyte": a, "visit": v} for a, v in seq],
        "confirmatory": None, "sensitivity": []}
    prows: dict[tuple[str, str], dict[str, Any]] = {}
    if not paired.empty and not per_arm:
        prows = {(r["outcome"], r["visit"]): r for r in paired.to_dict(orient="records")}
    if seq and not per_arm and primary in P_COLUMN:
        multiplicity["confirmatory"] = {
            "test": primary, "test_label": TEST_LABELS[primary],
            "hypotheses": _hypotheses(seq, prows, P_COLUMN[primary], alpha)}
        for t in sensitivity:
            if t not in P_COLUMN:
                continue
            recs = []
            for a, v in seq:
                r = prows.get((a, v)) or {}
                rec = {"hypothesis": f"{a}@{v}", "analyte": a, "visit": v,
                       "n": int(r.get("n_pairs") or 0), "p": r.get(P_COLUMN[t])}
                for k in ("hl_estimate", "hl_ci_low", "hl_ci_high", "hl_ci_level"):
                    if k in r:
                        rec[k] = r[k]
                recs.append(rec)
            multiplicity["sensitivity"].append(
                {"test": t, "test_label": TEST_LABELS[t], "hypotheses": recs})
    if seq and per_arm:
        arows: dict[tuple[str, str], dict[str, Any]] = {}
        if not ancova.empty:
            # first non-reference arm (two-arm trials: the only comparison)
            first = ancova.drop_duplicates(["outcome", "visit"], keep="first")
            arows = {(r["outcome"], r["visit"]): r for r in first.to_dict(orient="records")}
        multiplicity["confirmatory"] = {
            "test": "ancova", "test_label": TEST_LABELS["ancova"],
            "hypotheses": _hypotheses(seq, arows, "p", alpha, n_col="n_used")}
    with_data = paired[paired["n_pairs"] > 0] if not paired.empty else paired
    if not with_data.empty:
        n_pairs = int(with_data["n_pairs"].min())
        m_all = len(paired)
        if 0 < n_pairs <= EXACT_MAX_PAIRS:  # only small samples can hit the exact-test floor
            multiplicity["holm_all"] = jsonable(an.exact_test_feasibility(n_pairs, m_all,
                                                                           alpha=alpha))
            multiplicity["holm_all"]["m_tests"] = m_all
            multiplicity["holm_all"]["n_pairs"] = n_pairs
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
                    and not str(x).startswith(("meld_na", "meld3", "meld_xi"))):
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
    ae_tab = ae_by_soc_term(ae, participants=td.participants) if len(ae) else pd.DataFrame()
    return jsonable({
        "protocol": {k: ps.get(k) for k in ("name", "title", "version", "registration",
                                            "reference", "content_hash", "design")},
        "plan": {"meld_variant": variant, "protocol_meld_variant": plan.get("meld_variant"),
                 "tests": plan.get("tests", ["t", "wilcoxon"]), "primary_test": primary,
                 "sensitivity_tests": sensitivity, "wilcoxon_method": wmethod,
                 "multiplicity": plan.get("multiplicity"), "alpha": alpha,
                 "mixed_model": plan.get("mixed_model"),
                 "primary_endpoint": ps.get("primary_endpoint")},
        "baseline_visit": baseline,
        "visits": visits,
        "visit_labels": visit_labels(td),
        "unscheduled": unscheduled_summary,
        "post_baseline_visits": post,
        "outcomes": outcomes,
        "describe": desc,
        "paired": paired,
        "arms": arms,
        "arm_labels": arm_labels,
        "ancova": ancova,
        "lmm": lmm,
        "multiplicity": multiplicity,
        "completeness": completeness,
        "flow": _flow(td, visits, completeness),
        "meld_variants": meld_rows,
        "safety": {"n_events": len(ae), "n_participants": len(enrolled),
                   "overview": ae_ov, "summary": ae_sum, "by_soc_term": ae_tab,
                   "soc_coded": "soc" in ae.columns, "shifts": shifts,
                   "baseline_grading": _baseline_grading(td, baseline),
                   "reference_ranges": REFERENCE_RANGES},
        "dataset_sha256": dataset_hash(td.dataset),
        "product": product_summary(td),
    })


def product_summary(td: Any) -> dict[str, Any] | None:
    """The cell product as given, from the bundle's product frame (``td.products``: one row
    per batch, ``hepatrial.trials.selectors.products_frame``): the batches given and their
    cells (total and per kg of the latest weight), viability at release, vein-to-vein days
    (harvest to the start of infusion), releases within specification and exceptional ones,
    and the protocol's release specification (number of tests, dose range, shelf life). None
    when the bundle has no product frame or no batch was given."""
    prod = getattr(td, "products", None)
    if prod is None or not len(prod):
        return None
    given = prod[prod["administered_at"].notna()]
    if not len(given):
        return None

    def stats(x: pd.Series) -> dict[str, Any]:
        v = pd.to_numeric(x, errors="coerce").dropna().to_numpy(dtype=float)
        return {"n": int(v.size), "mean": float(v.mean()) if v.size else None,
                "sd": float(v.std(ddof=1)) if v.size > 1 else None,
                "median": float(np.median(v)) if v.size else None,
                "min": float(v.min()) if v.size else None,
                "max": float(v.max()) if v.size else None}

    spec = ((td.protocol_summary or {}).get("product") or {})
    return {
        "n_batches": len(prod), "n_given": len(given),
        "n_participants": int(given["participant_id"].nunique()),
        "cells_total": stats(given["cells_total"]), "cells_per_kg": stats(given["cells_per_kg"]),
        "viability_pct": stats(given["viability_pct"]),
        "vein_to_vein_days": stats(given["vein_to_vein_days"]),
        "n_exceptional": int(given["exceptional_release"].astype(bool).sum()),
        "n_release_tests": len(spec.get("release_spec") or []),
        "dose": {k: spec.get(k) for k in ("cells_min", "cells_max", "dose_basis", "volume_ml")},
        "shelf_life_hours": spec.get("shelf_life_hours"),
        "name": spec.get("name"),
    }


def _baseline_grading(td: Any, baseline: str) -> dict[str, Any]:
    """Per graded lab: participants with a baseline value, how many above the ULN, the
    baseline mean — for the footnote on CTCAE's relative-to-baseline rule."""
    ds = td.dataset
    out: dict[str, Any] = {}
    for analyte, ref in REFERENCE_RANGES.items():
        x = ds[(ds["analyte"] == analyte) & (ds["visit"] == baseline)]["value"].dropna()
        x = x.to_numpy(dtype=float)
        rec: dict[str, Any] = {"term": ref["term"], "n": int(x.size),
                               "mean": float(x.mean()) if x.size else None}
        if "uln" in ref:
            rec["above_uln"] = int((x > ref["uln"]).sum())
        if "lln" in ref:
            rec["below_lln"] = int((x < ref["lln"]).sum())
        out[analyte] = rec
    return out
