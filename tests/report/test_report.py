"""The whole report (HTML, Word, CSV) from DataFrame bundles (no database): content, no
internal identifiers in the text, determinism, self-containedness."""

from __future__ import annotations

import csv
import html as _html
import io
import json
import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from hepatrial.report import analyze, build_report, write_report
from hepatrial.report.format import fmt_ci, fmt_num
from hepatrial.report.tables import report_tables
from hepatrial.report.write import build_word
from tests.report.conftest import toy_bundle

#: what a reader must never see: analyte/score codes, hypothesis keys, rule names, dataframe
#: columns, Python literals, visit codes, ASCII units, a hyphen used as a minus sign
FORBIDDEN = [
    (r"\bmeld_[a-z0-9_]+", "analyte code"),
    (r"\w+@\w+", "hypothesis key"),
    (r"\b[a-z]+_[a-z0-9_]+\b", "snake_case identifier"),
    (r"\b(True|False|None|nan|NaN)\b", "Python literal"),
    (r"\b(D0|W\d+|SCR|UNS)\b", "visit code"),
    (r"umol|10\^", "ASCII unit"),
    (r"(^|[\s(\[,;:=])-\d", "hyphen as minus sign"),
]


def visible_text(html: str) -> str:
    """Text a reader sees: no style sheet, no tags, entities decoded."""
    html = re.sub(r"<style>.*?</style>", " ", html, flags=re.S)
    html = re.sub(r"<[^>]+>", " ", html)
    return _html.unescape(html)


def docx_text(data: bytes) -> str:
    """Paragraphs and table cells of a Word document."""
    import docx

    doc = docx.Document(io.BytesIO(data))
    parts = [p.text for p in doc.paragraphs]
    for t in doc.tables:
        for row in t.rows:
            parts.extend(c.text for c in row.cells)
    return "\n".join(parts)


def assert_no_identifiers(text: str) -> None:
    for pattern, what in FORBIDDEN:
        m = re.search(pattern, text, flags=re.M)
        assert m is None, f"{what} in the report: {text[max(0, m.start() - 60):m.end() + 60]!r}"


@pytest.fixture(scope="module")
def report() -> tuple:
    td = toy_bundle()
    res = analyze(td)
    return td, res, build_report(td, res, run_time="2026-01-01T00:00:00Z")


def test_report_contains_tables_figures_and_text(report: tuple) -> None:
    _, res, html = report
    for tid in ("table1", "outcomes", "ancova", "multiplicity", "lmm", "ae_overview",
                "ae_by_soc", "lab_shifts"):
        assert f'id="{tid}"' in html, tid
    assert html.count("<svg") >= 3  # flow, trajectories, waterfall
    assert "Table 1. Baseline characteristics" in html
    assert "cells, N = 4" in html and "control, N = 4" in html and "Overall, N = 8" in html
    assert "Assessed for eligibility n = 9" in html
    assert "Excluded (screen failure) n = 1" in html
    assert "ineligible: INC-AGE: 1" in html
    assert "withdrawn" in html and "moved away" in html
    assert "Cholangitis" in html
    assert "No adverse events were recorded" not in html
    assert "fixed sequence with ANCOVA of the change from baseline adjusted for baseline at " \
           "α = 0.05" in html
    # per arm: 3 outcomes x 2 visits x 2 arms = 12 comparisons, 3 or 4 pairs each
    assert "A Holm correction over all m = 12 comparisons could never reject" in html
    assert "the baseline-adjusted difference in MELD (control − cells)" in html
    assert "hepatrial " in html and "abc123" in html and res["dataset_sha256"] in html
    assert res["multiplicity"]["confirmatory"]["test"] == "ancova"


def test_results_sentence_uses_computed_numbers(report: tuple) -> None:
    td, res, html = report
    ds = td.dataset
    arm = td.participants.set_index("participant_id")["arm"]
    w = ds[ds.analyte == "meld_optn2002"].pivot(index="participant_id", columns="visit",
                                                 values="value")
    cells = w[w.index.map(arm) == "cells"]
    d = (cells["W12"] - cells["D0"]).dropna()
    assert len(d) == 3  # P07 (arm cells) withdrew before W12
    from scipy import stats

    ci = stats.ttest_1samp(d, 0.0).confidence_interval()
    expected = (f"In arm cells, MELD: mean change from baseline to week 12 "
                f"{fmt_num(d.mean(), 1)} (95% CI {fmt_ci(ci.low, ci.high, 1, ' to ')}")
    assert expected in html
    assert "in the 3 participants with values at both visits" in html
    an = next(r for r in res["ancova"] if r["outcome"] == "meld_optn2002" and r["visit"] == "W12")
    assert an["n_used"] == 7
    assert "5 adverse events occurred in 3 of 8 participants (38%); 1 participant had a " \
           "serious adverse event." in html


def test_outcome_table_counts_pairs(report: tuple) -> None:
    _, res, _ = report
    w12 = [r for r in res["paired"] if r["visit"] == "W12" and r["arm"] == "cells"]
    assert all(r["n_pairs"] == 3 and r["excluded_missing_visit"] == 1 for r in w12)
    w12c = [r for r in res["paired"] if r["visit"] == "W12" and r["arm"] == "control"]
    assert all(r["n_pairs"] == 4 and r["n_excluded"] == 0 for r in w12c)
    assert res["flow"]["screened"] == 9 and res["flow"]["enrolled"] == 8


def test_no_internal_identifiers_in_html_and_word(report: tuple, demo_bundle,  # type: ignore[no-untyped-def]
                                                  demo_results) -> None:
    td, res, html = report
    assert_no_identifiers(visible_text(html))
    demo_html = build_report(demo_bundle, demo_results, run_time="t")
    text = visible_text(demo_html)
    assert_no_identifiers(text)
    assert "MELD (Kamath 2001, continuous) decreased from 17.9 ± 5.6 to 10.7 ± 6.3 at " \
           "week 24" in text
    assert "Creatinine decreased from 114 ± 35 µmol/L to 80 ± 18 µmol/L" in text
    for data in (build_word(td, res, report_tables(td, res), run_time="t"),
                 build_word(demo_bundle, demo_results,
                            report_tables(demo_bundle, demo_results), run_time="t")):
        assert_no_identifiers(docx_text(data))


def test_forbidden_patterns_catch_what_they_should() -> None:
    for bad in ("meld_kamath2001@W24", "fixed_sequence", "n_events", "True", "W24",
                "1.2 umol/L", "change -7.0"):
        with pytest.raises(AssertionError):
            assert_no_identifiers(bad)
    assert_no_identifiers("MELD (UNOS/OPTN 2002-2016, integer) −7.0 (−14.0, −0.0053)")


def test_byte_identical_apart_from_run_time() -> None:
    td = toy_bundle()
    a = build_report(td, analyze(td))
    td2 = toy_bundle()
    b = build_report(td2, analyze(td2), run_time="another time")
    la = [x for x in a.splitlines() if 'class="runtime"' not in x]
    lb = [x for x in b.splitlines() if 'class="runtime"' not in x]
    assert la == lb
    assert a != b
    assert sum('class="runtime"' in x for x in a.splitlines()) == 1


def test_write_report_html_word_csv(tmp_path: Path, demo_bundle, demo_results) -> None:  # type: ignore[no-untyped-def]
    files = write_report(demo_bundle, demo_results, tmp_path / "a", "demo_report",
                         run_time="2026-01-01T00:00:00Z")
    assert files["html"].name == "demo_report.html" and files["docx"].name == "demo_report.docx"
    tabs = report_tables(demo_bundle, demo_results)
    for t in tabs:
        p = files[t.id]
        assert p.name == f"demo_report_{t.id}.csv"
        raw = p.read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: spreadsheets read µ, × and −
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
        assert rows[0][0] == t.stub and len(rows) == len(t.rows) + 1
        assert all(len(r) == len(t.columns) + 1 for r in rows)
    out = pd.read_csv(files["outcomes"], encoding="utf-8-sig")
    week2 = out[out.iloc[:, 0].str.strip() == "Week 2"]
    assert "−7.0 (−14.0, −0.0053)" in set(week2.iloc[:, 3])
    index = list(csv.reader(io.StringIO(files["tables"].read_text(encoding="utf-8-sig"))))
    assert index[1][:3] == ["Table 1", "Baseline characteristics", "demo_report_table1.csv"]
    assert len(index) == len(tabs) + 1
    # same data, same run time: same bytes for every file, the Word document included
    again = write_report(demo_bundle, demo_results, tmp_path / "b", "demo_report",
                         run_time="2026-01-01T00:00:00Z")
    for k, p in files.items():
        assert p.read_bytes() == again[k].read_bytes(), k


def test_word_document_content_and_run_time(demo_bundle, demo_results) -> None:  # type: ignore[no-untyped-def]
    import docx

    tabs = report_tables(demo_bundle, demo_results)
    a = build_word(demo_bundle, demo_results, tabs, run_time="2026-01-01T00:00:00Z")
    b = build_word(demo_bundle, demo_results, tabs, run_time="2027-12-31T23:59:59Z")
    doc = docx.Document(io.BytesIO(a))
    text = [p.text for p in doc.paragraphs]
    for t in tabs:
        assert t.caption in text
    assert len(doc.tables) == len(tabs)
    t2 = doc.tables[[t.id for t in tabs].index("outcomes")]
    assert t2.rows[0].cells[0].text == "Outcome and visit"
    cells = {c.text for row in t2.rows for c in row.cells}
    assert "−7.0 (−14.0, −0.0053)" in cells and "0.0499" in cells
    assert len(doc.inline_shapes) == 3  # flow, trajectories, waterfall
    assert "Run time: 2026-01-01T00:00:00Z" in text
    assert doc.core_properties.created is None and doc.core_properties.modified is None
    za, zb = zipfile.ZipFile(io.BytesIO(a)), zipfile.ZipFile(io.BytesIO(b))
    assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in za.infolist())
    diff = [n for n in za.namelist() if za.read(n) != zb.read(n)]
    assert diff == ["word/document.xml"]
    da = za.read("word/document.xml").decode().replace("2026-01-01T00:00:00Z",
                                                         "2027-12-31T23:59:59Z")
    assert da == zb.read("word/document.xml").decode()


def test_self_contained() -> None:
    td = toy_bundle(with_ae=False)
    html = build_report(td, analyze(td), run_time="t")
    assert "<script" not in html and "<link" not in html
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)
    assert "@import" not in html and "url(http" not in html
    assert "No adverse events were recorded." in html


def test_analyze_json_serialisable() -> None:
    td = toy_bundle()
    text = json.dumps(analyze(td), allow_nan=False, sort_keys=True)
    out = json.loads(text)
    assert out["plan"]["meld_variant"] == "optn2002"
    assert out["plan"]["primary_test"] == "t" and out["plan"]["sensitivity_tests"] == ["wilcoxon"]
