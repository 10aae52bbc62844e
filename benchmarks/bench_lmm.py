"""Benchmark: hepatrial's linear mixed models against lme4, side by side on the same data.

Models: pbcseq ``log(bili) ~ year + (year | id)`` and ``albumin ~ year + (year | id)``, and
the report's visit model ``value ~ visit * arm + (1 | participant_id)`` for MELD and albumin of
the 2,000- and 5,000-participant synthetic trials of benchmarks/bench_analysis.py.

Prints, per model, hepatrial's CPU time (median of 5 fits, in this process: the fit with Wald
tests as lme4's ``lmer`` call, and the whole fit with Kenward-Roger df), lme4's CPU time (median
of 7 ``lmer`` calls, measured once by benchmarks/r/bench_lmm.R and committed in
benchmarks/r/lme4_times.json), the ratio (target <= 5) and the largest relative difference of
the estimates (fixed effects, theta, sigma, REML logLik).

Run: ``uv run python benchmarks/bench_lmm.py`` (``--export DIR`` writes the datasets and
models.json for the R script instead).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

VISITS = ["D0", "W1", "W2", "W4", "W8", "W12", "W24"]


def models() -> list[dict[str, Any]]:
    """name, data, fit_lmm keywords, lme4 formula."""
    from bench_analysis import synthetic_trial

    from hepatrial import data as hdata

    pbc = pd.read_csv(hdata.path("pbcseq"))
    pbc["year"] = pbc["day"] / 365.25
    out: list[dict[str, Any]] = [
        {"name": "pbcseq_logbili_slope", "data": pbc[["id", "year", "bili"]],
         "kw": {"subject": "id", "time": "year", "outcome": "bili", "log": True,
                "random": "slope"},
         "formula": "log(bili) ~ year + (year | id)"},
        {"name": "pbcseq_albumin_slope", "data": pbc[["id", "year", "albumin"]],
         "kw": {"subject": "id", "time": "year", "outcome": "albumin", "random": "slope"},
         "formula": "albumin ~ year + (year | id)"},
    ]
    for n in (2000, 5000):
        ds = synthetic_trial(n).dataset  # type: ignore[attr-defined]
        for analyte in ("meld_continuous", "albumin"):
            sub = ds.loc[ds["analyte"] == analyte, ["participant_id", "visit", "arm", "value"]]
            out.append({
                "name": f"trial{n}_{analyte}_visit_arm", "data": sub.reset_index(drop=True),
                "kw": {"subject": "participant_id", "time": "visit", "outcome": "value",
                       "time_type": "categorical", "time_reference": "D0", "group": "arm",
                       "time_order": VISITS},
                "formula": "value ~ visit * arm + (1 | participant_id)",
                "levels": {"visit": VISITS, "arm": ["cells", "control"]}})
    return out


def r_name(term: str) -> str:
    """hepatrial's term name as lme4 spells it (visit[W1]:arm[control] -> visitW1:armcontrol)."""
    if term == "Intercept":
        return "(Intercept)"
    return term.replace("[", "").replace("]", "")


def export(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    spec = []
    for m in models():
        csv = f"{m['name']}.csv"
        m["data"].to_csv(directory / csv, index=False)
        spec.append({"name": m["name"], "csv": csv, "formula": m["formula"],
                     **({"levels": m["levels"]} if "levels" in m else {})})
    (directory / "models.json").write_text(json.dumps(spec, indent=2))
    print(f"wrote {len(spec)} datasets and models.json to {directory}")


def cpu(fn: Any, reps: int) -> tuple[float, Any]:
    times = []
    res = None
    for _ in range(reps):
        t0 = time.process_time()
        res = fn()
        times.append(time.process_time() - t0)
    return statistics.median(times), res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--export", type=Path, default=None)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    if args.export is not None:
        export(args.export)
        return
    from hepatrial.analysis import fit_lmm

    ref = json.loads((HERE / "r" / "lme4_times.json").read_text())
    print(f"lme4 {ref['versions']['lme4']} ({ref['versions']['R']}); hepatrial median of "
          f"{args.reps} fits, CPU seconds")
    hdr = (f"{'model':<34}{'n obs':>7}{'lme4':>8}{'fit':>8}{'ratio':>7}{'fit+KR':>8}"
           f"{'ratio':>7}  {'max rel diff':>12}  converged singular")
    print(hdr)
    worst_ratio = 0.0
    for m in models():
        r = ref[m["name"]]
        fit_lmm(m["data"], **m["kw"], ddf="wald")  # warm-up (imports, caches)
        t_fit, res = cpu(lambda m=m: fit_lmm(m["data"], **m["kw"], ddf="wald"), args.reps)
        t_kr, _ = cpu(lambda m=m: fit_lmm(m["data"], **m["kw"]), args.reps)
        diffs = []
        for term, est in res.params.items():
            want = r["fixef"][r_name(str(term))]
            diffs.append(abs(est - want) / max(abs(want), 1e-12))
        th = np.asarray(res.theta)
        rt = np.asarray(r["theta"], dtype=float)
        diffs.append(float(np.max(np.abs(th - rt)) / np.max(np.abs(rt))))  # relative to |theta|
        sigma = float(np.sqrt(res.residual_variance))
        diffs.append(abs(sigma - r["sigma"]) / r["sigma"])
        diffs.append(abs(res.loglik - r["loglik"]) / abs(r["loglik"]))
        ratio, ratio_kr = t_fit / r["cpu_s"], t_kr / r["cpu_s"]
        worst_ratio = max(worst_ratio, ratio)
        print(f"{m['name']:<34}{res.n_obs:>7}{r['cpu_s']:>8.3f}{t_fit:>8.3f}{ratio:>7.1f}"
              f"{t_kr:>8.3f}{ratio_kr:>7.1f}  {max(diffs):>12.2e}  {res.converged!s:>9} "
              f"{res.singular!s:>8}  (logLik {res.loglik:.7f}, lme4 {r['loglik']:.7f})")
    print(f"worst fit / lme4 CPU ratio: {worst_ratio:.1f} (target <= 5)")


if __name__ == "__main__":
    main()
