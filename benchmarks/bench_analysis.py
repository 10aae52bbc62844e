"""Benchmark: full analysis + HTML report of synthetic trials of 2,000 and 5,000 participants x
7 visits x 6 outcomes, every outcome's mixed model with Kenward-Roger df (targets: < 60 s,
< 2 GB peak each), and the demo end to end (target < 15 s).

Run: ``uv run python benchmarks/bench_analysis.py [--participants N [N ...]] [--no-demo]``.
Synthetic data, not patient data.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

VISITS = [("D0", 0), ("W1", 7), ("W2", 14), ("W4", 28), ("W8", 56), ("W12", 84), ("W24", 168)]
LABS = {"inr": ("1", 1.8, 0.4, 2), "creatinine": ("umol/L", 110, 35, 0),
        "albumin": ("g/L", 30, 5, 0), "bilirubin": ("umol/L", 45, 25, 0),
        "sodium": ("mmol/L", 134, 4, 0)}
COLS = ["participant_id", "site", "arm", "visit", "nominal_day", "actual_day", "analyte",
        "value", "unit", "source"]


def synthetic_trial(n: int = 2000, seed: int = 1) -> object:
    """A randomised two-arm trial bundle (TrialData) with dropout, deaths and AEs."""
    from hepatrial.analysis import TrialData
    from hepatrial.scores import meld

    rng = np.random.default_rng(seed)
    ids = np.array([f"P{i:05d}" for i in range(n)])
    arm = np.where(rng.random(n) < 0.5, "cells", "control")
    # dropout: last attended visit index
    last = np.minimum(len(VISITS) - 1, rng.geometric(0.04, n))
    status = np.where(last < len(VISITS) - 1, rng.choice(["died", "withdrawn", "transplanted"],
                                                         n), "completed")
    sev = rng.standard_normal(n)
    frames = []
    for k, (v, day) in enumerate(VISITS):
        keep = last >= k
        eff = np.where(arm == "cells", 1.0, 0.0) * (1 - np.exp(-day / 40))
        vals = {}
        for a, (unit, m, s, dec) in LABS.items():
            sign = 1 if a == "albumin" or a == "sodium" else -1
            x = m + s * (0.7 * sev * -sign + 0.7 * rng.standard_normal(n)) + sign * 0.3 * s * eff
            x = np.clip(x, {"inr": 0.8, "sodium": 120}.get(a, 5), None).round(dec)
            vals[a] = x
            frames.append(pd.DataFrame({"participant_id": ids[keep], "visit": v,
                                        "nominal_day": day, "analyte": a, "value": x[keep],
                                        "unit": unit, "source": "measured", "arm": arm[keep]}))
        mv = np.asarray(meld(vals["bilirubin"], vals["creatinine"], vals["inr"],
                             variant="continuous", units="si"))
        frames.append(pd.DataFrame({"participant_id": ids[keep], "visit": v, "nominal_day": day,
                                    "analyte": "meld_continuous", "value": mv[keep],
                                    "unit": "points", "source": "derived", "arm": arm[keep]}))
    ds = pd.concat(frames, ignore_index=True)
    ds["site"] = "S01"
    ds["actual_day"] = ds["nominal_day"]
    ds = ds[COLS].sort_values(["participant_id", "nominal_day", "visit", "analyte"],
                              kind="mergesort").reset_index(drop=True)
    ppl = pd.DataFrame({
        "participant_id": ids, "site": "S01", "arm": arm, "sex": rng.choice(["F", "M"], n),
        "age": rng.normal(55, 10, n).round(1),
        "etiology": rng.choice(["HBV", "HCV", "alcohol", "MASLD", "cryptogenic"], n),
        "status": status, "status_date": pd.Timestamp("2025-01-01"),
        "status_reason": np.where(status == "completed", "", "synthetic"),
        "enrolment_date": pd.Timestamp("2024-01-01"),
        "route": rng.choice(["peripheral_vein", "portal_vein"], n),
        "cells_total": rng.integers(30, 51, n) * 1e6, "cells_per_kg": np.nan, "volume_ml": 10.0})
    n_ae = n // 2
    ae = pd.DataFrame({
        "participant_id": rng.choice(ids, n_ae),
        "term": rng.choice(["Fever", "Abdominal pain", "Ascites", "Hepatic encephalopathy"], n_ae),
        "grade": rng.integers(1, 5, n_ae), "serious": rng.random(n_ae) < 0.2,
        "related": rng.choice(["not_related", "unlikely", "possible", "probable"], n_ae),
        "onset_day": rng.integers(0, 168, n_ae), "resolved_day": pd.NA, "outcome": "recovered"})
    outcomes = [{"analyte": "meld_continuous", "label": "MELD", "unit": "points",
                 "reported_unit": "points"}]
    outcomes += [{"analyte": a, "label": a.capitalize(), "unit": u, "reported_unit": u}
                 for a, (u, *_r) in LABS.items()]
    ps = {"name": "bench", "title": "Synthetic benchmark trial (not patient data)",
          "version": "1", "registration": "NA", "reference": "synthetic", "content_hash": "NA",
          "design": "randomised", "baseline_visit": "D0",
          "visits": [{"code": v, "nominal_day": d} for v, d in VISITS], "outcomes": outcomes,
          "analysis": {"meld_variant": "continuous", "tests": ["t", "wilcoxon"],
                       "wilcoxon_method": "exact", "multiplicity": "fixed_sequence",
                       "sequence": [{"analyte": o["analyte"], "visit": "W24"} for o in outcomes],
                       "alpha": 0.05, "mixed_model": {"time": "visit"}},
          "primary_endpoint": {"analyte": "meld_continuous", "visit": "W24"}}
    return TrialData(ds, ppl, ae, ps)


def peak_mb() -> float:
    """Peak resident memory of this process (MB; Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(n: int) -> None:
    """Analysis + report of one synthetic trial of ``n`` participants, in this process."""
    from hepatrial.report import analyze, build_report

    t0 = time.perf_counter()
    td = synthetic_trial(n)
    t1 = time.perf_counter()
    res = analyze(td)
    t2 = time.perf_counter()
    html = build_report(td, res)
    t3 = time.perf_counter()
    lmms = res.get("lmm") or []
    fitted = [m for m in lmms if "error" not in m]
    kr = [m for m in fitted if m.get("ddf_method") == "kenward-roger"]
    print(f"synthetic trial: {n} participants x {len(VISITS)} visits x 6 "
          f"outcomes = {len(td.dataset)} rows (generated in {t1 - t0:.1f} s)")
    print(f"mixed models: {len(fitted)} of {len(lmms)} outcomes fitted, {len(kr)} with "
          f"Kenward-Roger df, {sum(bool(m.get('converged')) for m in fitted)} converged")
    print(f"analysis: {t2 - t1:.1f} s; report: {t3 - t2:.1f} s ({len(html) / 1e6:.1f} MB HTML)")
    print(f"analysis + report: {t3 - t1:.1f} s (target < 60 s); peak memory {peak_mb():.0f} MB "
          "(target < 2048 MB)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--participants", type=int, nargs="+", default=[2000, 5000])
    ap.add_argument("--no-demo", action="store_true")
    args = ap.parse_args()
    if len(args.participants) == 1:
        run_one(args.participants[0])
    else:  # one process per size: each peak memory is its own
        for n in args.participants:
            subprocess.run([sys.executable, __file__, "--participants", str(n), "--no-demo"],
                           check=True)
    if not args.no_demo:
        with tempfile.TemporaryDirectory() as tmp:
            env = {k: v for k, v in os.environ.items() if k != "HEPATRIAL_DATABASE_URL"}
            t4 = time.perf_counter()
            subprocess.run([sys.executable, "-c", "from hepatrial.cli import app; app()",
                            "demo", "--out", str(Path(tmp) / "demo")], check=True, env=env,
                           capture_output=True)
            print(f"demo end to end (new process, incl. start-up): "
                  f"{time.perf_counter() - t4:.1f} s (target < 15 s)")


if __name__ == "__main__":
    main()
