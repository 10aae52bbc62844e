"""Benchmark the score engine on registry-sized data.

Prints rows/s for each score and for the whole set on N synthetic rows (default 10 million),
the ratio of ``meld(variant="optn2002")`` to a bare numpy expression of the same formula (the
floor we can reach), peak memory, and the time for ``hepatrial score`` on a CSV of
``--csv-rows`` rows (default 1 million).

Targets (issue #2): all scores on 10M rows < 5 s on one core; MELD within 2x of bare numpy;
the CLI scores a 1M-row CSV in < 10 s.

    uv run python benchmarks/bench_scores.py [--rows 10000000] [--csv-rows 1000000]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

# one core: numpy's element-wise kernels are single-threaded; pin BLAS/arrow pools as well
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from hepatrial import scores
from hepatrial.scores._core import coded
from hepatrial.scores.table import CATEGORIES


def synthetic(n: int, seed: int = 20090601) -> dict[str, Any]:
    """Plausible cirrhosis labs, conventional units, seeded."""
    rng = np.random.default_rng(seed)
    return {
        "bilirubin": rng.lognormal(np.log(2.0), 0.9, n),
        "creatinine": rng.lognormal(np.log(1.1), 0.5, n),
        "inr": rng.lognormal(np.log(1.5), 0.3, n),
        "sodium": rng.normal(134, 5, n),
        "albumin": rng.normal(3.0, 0.6, n).clip(1.0, 5.5),
        "sex": np.array(["F", "M"])[rng.integers(0, 2, n)],
        "age": rng.uniform(18, 80, n),
        "dialysis": rng.random(n) < 0.03,
        "ascites": np.array(["none", "slight", "moderate"])[rng.integers(0, 3, n)],
        "encephalopathy": np.array(["none", "grade_1_2", "grade_3_4"])[rng.integers(0, 3, n)],
        "ast": rng.lognormal(np.log(60), 0.6, n),
        "alt": rng.lognormal(np.log(45), 0.6, n),
        "platelets": rng.lognormal(np.log(110), 0.5, n),
    }


def timed(fn: Callable[[], Any], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bare_meld(b: np.ndarray, c: np.ndarray, i: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The OPTN MELD as the tersest numpy expression: no validation, no missing handling."""
    c = np.where(d, 4.0, np.clip(c, 1.0, 4.0))
    r = 9.57 * np.log(c) + 3.78 * np.log(np.maximum(b, 1.0)) + 11.2 * np.log(np.maximum(i, 1.0))
    return np.clip(np.floor(r + 6.43 + 0.5), 6, 40)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--csv-rows", type=int, default=1_000_000)
    args = ap.parse_args()
    # CLI on a CSV, first, so that the child's peak RSS is not inflated by this process's
    # arrays (a forked child counts the parent's pages until it execs)
    m = args.csv_rows
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.csv", Path(tmp) / "out.csv"
        step = 1_000_000
        for start in range(0, m, step):
            part = synthetic(min(step, m - start), seed=start)
            frame = {
                "bilirubin_umol_l": (part["bilirubin"] * 17.1).round(1),
                "creatinine_umol_l": (part["creatinine"] * 88.4).round(0),
                "albumin_g_l": (part["albumin"] * 10).round(0), "inr": part["inr"].round(2),
                "sodium_mmol_l": part["sodium"].round(0), "sex": part["sex"],
                "age": part["age"].round(0),
                "dialysis": np.where(part["dialysis"], "true", "false"),
                "ascites": part["ascites"], "encephalopathy": part["encephalopathy"],
                "ast_u_l": part["ast"].round(0), "alt_u_l": part["alt"].round(0),
                "ast_uln_u_l": np.full(len(part["inr"]), 40),
                "platelets_10e9_l": part["platelets"].round(0),
            }
            import pandas as pd

            pd.DataFrame(frame).to_csv(src, index=False, header=start == 0,
                                       mode="w" if start == 0 else "a")
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "hepatrial", "score", str(src), "-o", str(dst)],
                       check=True, capture_output=True)
        cli = time.perf_counter() - t
        child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"hepatrial score on a {m:,}-row CSV ({src.stat().st_size / 2**20:.0f} MiB): "
              f"{cli:.2f} s ({m / cli:,.0f} rows/s, including interpreter start-up), "
              f"peak RSS of the CLI process {child_rss:,.0f} MiB")

    n = args.rows
    x = synthetic(n)
    b, c, i, na, alb = x["bilirubin"], x["creatinine"], x["inr"], x["sodium"], x["albumin"]
    # categories are coded once at read time (the CLI dictionary-encodes each text column and
    # looks up only its distinct values); the kernels then take float codes
    dbool = x["dialysis"]
    text = {"sex": x["sex"], "dialysis": np.where(x["dialysis"], "true", "false"),
            "ascites": x["ascites"], "encephalopathy": x["encephalopathy"]}
    t = time.perf_counter()
    codes = {k: coded(v, CATEGORIES[k], k, "raise") for k, v in text.items()}
    coding = time.perf_counter() - t
    d = codes["dialysis"]
    x = {**x, **codes}
    cases: dict[str, Callable[[], Any]] = {
        "meld kamath2001": lambda: scores.meld(b, c, i, variant="kamath2001"),
        "meld continuous": lambda: scores.meld(b, c, i, dialysis=d, variant="continuous"),
        "meld optn2002": lambda: scores.meld(b, c, i, dialysis=d, variant="optn2002"),
        "meld_na kim2008": lambda: scores.meld_na(b, c, i, na, dialysis=d, variant="kim2008"),
        "meld_na optn2016": lambda: scores.meld_na(b, c, i, na, dialysis=d, variant="optn2016"),
        "meld3 optn2023": lambda: scores.meld3(
            b, c, i, na, alb, x["sex"], age_at_registration=x["age"], dialysis=d),
        "child_pugh": lambda: scores.child_pugh(
            b, alb, x["ascites"], x["encephalopathy"], inr=i),
        "albi": lambda: scores.albi(b, alb, units="conventional"),
        "fib4": lambda: scores.fib4(x["age"], x["ast"], x["alt"], x["platelets"]),
        "apri": lambda: scores.apri(x["ast"], x["platelets"], ast_uln=40.0),
        "meld_xi": lambda: scores.meld_xi(b, c, dialysis=d),
        "ukeld": lambda: scores.ukeld(b, c, i, na, units="conventional"),
    }
    print(f"hepatrial score engine, {n:,} synthetic rows, numpy {np.__version__}")
    print(f"{'score':<20}{'seconds':>10}{'rows/s':>16}")
    total = 0.0
    for name, fn in cases.items():
        s = timed(fn)
        total += s
        print(f"{name:<20}{s:>10.3f}{n / s:>16,.0f}")
    print(f"{'all scores (sum)':<20}{total:>10.3f}{n / total:>16,.0f}")
    print(f"(coding 4 text columns element-wise, without dictionary encoding: {coding:.3f} s)")

    # the whole table path (unit-named columns, SI input, coded categories) as the CLI uses it
    table_input = {
        "bilirubin_umol_l": b * 17.1, "creatinine_umol_l": c * 88.4, "albumin_g_l": alb * 10,
        "inr": i, "sodium_mmol_l": na, "age": x["age"], "ast_u_l": x["ast"],
        "alt_u_l": x["alt"], "ast_uln_u_l": np.full(n, 40.0), "platelets_10e9_l": x["platelets"],
    }
    table_input.update(codes)
    s = timed(lambda: scores.score_columns(table_input))
    tracemalloc.start()
    first = timed(lambda: scores.score_columns(table_input), repeat=1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{'score_columns (14)':<20}{s:>10.3f}{n / s:>16,.0f}   (best of 3; one run under "
          f"tracemalloc {first:.2f} s) peak traced memory {peak / 2**20:,.0f} MiB "
          f"({peak / n:.0f} B/row)")

    ours = timed(lambda: scores.meld(b, c, i, dialysis=d, variant="optn2002"))
    bare = timed(lambda: bare_meld(b, c, i, dbool))
    same = np.array_equal(scores.meld(b, c, i, dialysis=d, variant="optn2002"),
                          bare_meld(b, c, i, dbool))
    print(f"meld(optn2002) {ours:.3f} s vs bare numpy {bare:.3f} s: ratio {ours / bare:.2f} "
          f"(identical results: {same})")


    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {rss:,.0f} MiB")


if __name__ == "__main__":
    main()
