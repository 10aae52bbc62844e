"""``hepatrial demo`` end to end (own process: Django is configured once per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

CLI = [sys.executable, "-c", "from hepatrial.cli import app; app()"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HEPATRIAL_DATABASE_URL",
                                                             "DJANGO_SETTINGS_MODULE")}
    res = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    t0 = time.perf_counter()
    res = _run("demo", "--out", str(out))
    seconds = time.perf_counter() - t0
    assert "SYNTHETIC reconstruction, not patient data" in res.stdout
    assert "MELD variant reproducing the published MELD: kamath2001" in res.stdout
    assert "192 rows: 192 created" in res.stdout  # through `hepatrial import labs`
    print(f"demo end to end: {seconds:.1f} s")
    # a guard against a hang, not a speed test (about 55 s alone here; a loaded 2-core CI with
    # xdist takes more): speed is measured by benchmarks/
    assert seconds < 400
    return out


def test_demo_report_contains_the_reproduced_numbers(demo_dir: Path) -> None:
    html = (demo_dir / "kharaziha2009_synthetic_report.html").read_text(encoding="utf-8")
    assert "Synthetic reconstruction, not patient data" in html
    for text in ("MELD (Kamath 2001, continuous) decreased from 17.9 ± 5.6 to 10.7 ± 6.3 at "
                 "week 24",
                 "INR decreased from 1.9 ± 0.4 to 1.4 ± 0.5 at week 24",
                 "Creatinine decreased from 114 ± 35 µmol/L to 80 ± 18 µmol/L",
                 "Albumin increased from 30 ± 5 g/L to 33 ± 5 g/L",
                 "decreased from 46 ± 29 µmol/L to 41 ± 31 µmol/L",
                 "only by MELD (Kamath 2001, continuous)",
                 "No adverse events were recorded.",
                 "not published"):
        assert text in html, text
    assert html.count("<svg") >= 3


def test_demo_results_follow_the_published_pattern(demo_dir: Path) -> None:
    res = json.loads((demo_dir / "kharaziha2009_synthetic_results.json").read_text())
    assert res["demo"]["verification"]["failures"] == []
    conf = res["multiplicity"]["confirmatory"]  # the plan's primary test only
    assert conf["test"] == "t"
    status = {r["test"]: r["status"] for r in conf["hypotheses"]}
    assert status == {"meld_kamath2001@W24": "rejected", "inr@W24": "rejected",
                      "creatinine@W24": "rejected", "albumin@W24": "not rejected",
                      "bilirubin@W24": "not tested"}
    sens = res["multiplicity"]["sensitivity"]  # exact Wilcoxon: p-values, no decisions
    assert [s["test"] for s in sens] == ["wilcoxon"]
    assert [h["p"] < 0.05 for h in sens[0]["hypotheses"]] == [True, True, True, False, False]
    assert res["flow"]["treated"] == 8 and res["flow"]["completed"] == 8


def test_report_from_db_is_byte_identical_apart_from_run_time(demo_dir: Path,
                                                              tmp_path: Path) -> None:
    db = demo_dir / "kharaziha2009_synthetic.sqlite3"
    _run("report", "--db", str(db), "-o", str(tmp_path / "a"))
    _run("report", "--db", str(db), "-o", str(tmp_path / "b"))
    a = (tmp_path / "a" / "kharaziha2009_report.html").read_text(encoding="utf-8").splitlines()
    b = (tmp_path / "b" / "kharaziha2009_report.html").read_text(encoding="utf-8").splitlines()
    assert [x for x in a if 'class="runtime"' not in x] == \
           [x for x in b if 'class="runtime"' not in x]
    out = json.loads(_run("analyze", "--db", str(db), "--json", "--meld-variant",
                          "kamath2001").stdout)
    saved = json.loads((demo_dir / "kharaziha2009_synthetic_results.json").read_text())
    assert out["describe"] == saved["describe"]
    assert out["dataset_sha256"] == saved["dataset_sha256"]


def test_demo_writes_word_and_csv_beside_the_html(demo_dir: Path) -> None:
    stem = "kharaziha2009_synthetic_report"
    assert (demo_dir / f"{stem}.docx").read_bytes()[:2] == b"PK"
    for tid in ("table1", "outcomes", "multiplicity", "lmm", "ae_overview", "lab_shifts"):
        assert (demo_dir / f"{stem}_{tid}.csv").exists(), tid
    assert (demo_dir / f"{stem}_tables.csv").exists()


def test_interim_store_states_render(demo_dir: Path, tmp_path: Path) -> None:
    """`hepatrial analyze` and `hepatrial report` on the store cut at one participant at
    week 1 (data cut 2007-04-16) and with no follow-up at all (2007-04-09)."""
    db = demo_dir / "kharaziha2009_synthetic.sqlite3"
    for cut in ("2007-04-09", "2007-04-16"):
        out = json.loads(_run("analyze", "--db", str(db), "--json", "--data-cut", cut).stdout)
        assert len(out["flow"]["lost_reasons"]) == 0 and out["flow"]["enrolled"] == 1
        hyps = out["multiplicity"]["confirmatory"]["hypotheses"]
        assert [h["status"] for h in hyps] == ["not tested: no data"] * 5
        text = _run("analyze", "--db", str(db), "--data-cut", cut).stdout
        assert "not tested: no data" in text
        res = _run("report", "--db", str(db), "-o", str(tmp_path / cut), "--data-cut", cut)
        assert "Word version" in res.stdout
        html = (tmp_path / cut / "kharaziha2009_report.html").read_text(encoding="utf-8")
        assert "Not tested: no data" in html


def test_demo_product_lifecycle_from_real_records(demo_dir: Path) -> None:
    """Each synthetic patient's product is recorded vein to vein in the store (harvest, batch,
    QC within specification, QA release e-signed, dispatch, bedside receipt, infusion within
    the shelf life), and the report's cell-product table and methods come from these records."""
    db = demo_dir / "kharaziha2009_synthetic.sqlite3"
    html = (demo_dir / "kharaziha2009_synthetic_report.html").read_text(encoding="utf-8")
    assert "Cell product as given" in html and "Infusions, N = 8" in html
    assert "8 batches were given, all within specification" in html
    res = json.loads((demo_dir / "kharaziha2009_synthetic_results.json").read_text())
    ps = res["product"]
    assert (ps["n_given"], ps["n_exceptional"], ps["n_release_tests"]) == (8, 0, 14)
    assert ps["cells_total"]["n"] == 8 and ps["cells_per_kg"]["n"] == 8
    assert 12.0 < ps["vein_to_vein_days"]["min"] <= ps["vein_to_vein_days"]["max"] < 14.1
    recs = json.loads(_run("product", "trace", "KH01", "--db", str(db), "--json").stdout)
    assert [e["action"] for e in recs[0]["custody"]] == [
        "harvest", "receive", "start_manufacture", "complete_manufacture", "submit_for_review",
        "release", "dispatch", "receive_at_bedside", "administer"]
    assert recs[0]["releases"][0]["released_by"] == "Synthetic QA officer"
    assert recs[0]["timeline"]["vein_to_vein_hours"] < 14 * 24 + 2
    verify = _run("audit", "verify", "--db", str(db)).stdout
    assert "audit trail OK" in verify, verify


def test_demo_doses_respect_the_sentinel_rule(demo_dir: Path) -> None:
    """The demo follows its own protocol (SR-SENTINEL): day 0s at least 14 days apart, a
    signed DSMB review dated between each dose and the next (7 reviews for 8 participants),
    and no interval deviation in the safety status."""
    db = demo_dir / "kharaziha2009_synthetic.sqlite3"
    j = json.loads(_run("safety", "status", "--json", "--db", str(db)).stdout)
    sentinel = next(r for r in j["rules"] if r["rule_id"] == "SR-SENTINEL")
    assert sentinel["details"]["interval_deviations"] == []
    assert sentinel["details"]["participants_dosed"] == 8
    assert (j["pausing_rules"], j["dosing_allowed"]) == ([], True)
    ppl = (demo_dir / "kharaziha2009_synthetic_participants.csv").read_text().splitlines()
    head = ppl[0].split(",")
    day0 = [row.split(",")[head.index("enrolment_date")] for row in ppl[1:]]
    assert day0 == ["2007-04-09", "2007-05-07", "2007-05-21", "2007-08-10", "2007-08-31",
                    "2007-10-14", "2007-11-25", "2007-12-19"]
    code = ("import sys, json; from hepatrial.trials import setup; setup(sys.argv[1]); "
            "from hepatrial.trials import selectors as s; from hepatrial.trials.services "
            "import protocol as p; d = s.safety_data(p.active_protocol()); print(json.dumps("
            "[[x.rule_id, x.decision, x.decided_at.isoformat()] for x in d.decisions]))")
    env = {k: v for k, v in os.environ.items() if k not in ("HEPATRIAL_DATABASE_URL",
                                                             "DJANGO_SETTINGS_MODULE")}
    res = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1]) == [
        ["SR-SENTINEL", "resume", f"{d}T12:00:00+00:00"] for d in (
            "2007-05-06", "2007-05-20", "2007-08-09", "2007-08-30", "2007-10-13",
            "2007-11-24", "2007-12-18")]
