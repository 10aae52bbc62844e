"""The benchmark's synthetic randomised trial runs through analysis and report (small n)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from hepatrial.report import analyze, build_report

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_analysis.py"


def test_benchmark_trial_small() -> None:
    spec = importlib.util.spec_from_file_location("bench_analysis", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    td = mod.synthetic_trial(60, seed=2)
    assert td.dataset["analyte"].nunique() == 6
    res = analyze(td)
    assert set(res["arms"]) == {"cells", "control"}
    assert len(res["ancova"]) == 6 * 6  # 6 outcomes x 6 post-baseline visits
    assert res["lmm"] and all("error" not in m for m in res["lmm"])
    html = build_report(td, res, run_time="t")
    assert 'id="ancova"' in html and "Adverse events by system organ class and term" in html
