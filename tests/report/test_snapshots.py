"""Golden-file (snapshot) tests of the rendered tables.

Every table of the report is rendered as text (:func:`hepatrial.report.table.to_text`, a
Markdown pipe table with caption and footnotes) and compared with the committed file
``tests/report/snapshots/<case>/<table id>.md``; the CSV rendering of one table is pinned too.
To regenerate after an intended change::

    HEPATRIAL_UPDATE_SNAPSHOTS=1 uv run pytest tests/report/test_snapshots.py

then review ``git diff tests/report/snapshots`` and commit (see snapshots/README.md).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from hepatrial.report import analyze
from hepatrial.report.table import Table, to_csv, to_text
from hepatrial.report.tables import lmm_table, report_tables
from tests.report.conftest import toy_bundle, visit_dates

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = bool(os.environ.get("HEPATRIAL_UPDATE_SNAPSHOTS"))


def check(case: str, name: str, text: str) -> None:
    """Compare ``text`` with the snapshot ``case/name`` (write it when updating)."""
    path = SNAPSHOTS / case / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))
        return
    assert path.exists(), f"no snapshot {path}; run with HEPATRIAL_UPDATE_SNAPSHOTS=1"
    want = path.read_bytes().decode("utf-8")
    if want != text:
        diff = "".join(difflib.unified_diff(want.splitlines(True), text.splitlines(True),
                                            f"snapshot {case}/{name}", "rendered"))
        pytest.fail(f"table differs from its snapshot:\n{diff}")


def check_tables(case: str, tables: list[Table]) -> None:
    names = sorted(f"{t.id}.md" for t in tables)
    for t in tables:
        check(case, f"{t.id}.md", to_text(t))
    if not UPDATE:  # no stale snapshot of a table that is no longer rendered
        have = sorted(p.name for p in (SNAPSHOTS / case).glob("*.md"))
        assert have == names, f"{case}: snapshots {have} vs tables {names}"


def test_demo_tables(demo_bundle, demo_results) -> None:  # type: ignore[no-untyped-def]
    tables = report_tables(demo_bundle, demo_results)
    check_tables("demo", tables)
    outcomes = next(t for t in tables if t.id == "outcomes")
    check("demo", "outcomes.csv", to_csv(outcomes).decode("utf-8"))


@pytest.mark.parametrize(("case", "index"), [("interim_week1", 1), ("interim_week24", None)])
def test_interim_tables(demo_bundle, case: str, index: int | None) -> None:  # type: ignore[no-untyped-def]
    dates = visit_dates(demo_bundle)
    if index is None:  # the first data cut with a week-24 visit
        index = next(i for i, d in enumerate(dates)
                     if (demo_bundle.as_of(d).dataset["visit"] == "W24").any())
    state = demo_bundle.as_of(dates[index])
    res = analyze(state, meld_variant="kamath2001")
    check_tables(case, report_tables(state, res))


def test_randomised_trial_tables() -> None:
    td = toy_bundle(soc=True)
    res = analyze(td)
    check_tables("randomised", report_tables(td, res))


def test_mixed_model_without_small_sample_df(demo_results) -> None:  # type: ignore[no-untyped-def]
    """The table's fallback for a fit without df (Wald z), from fixed numbers."""
    res = {**demo_results, "lmm": [
        {"outcome": "meld_kamath2001", "converged": True, "singular": False,
         "fixed_effects": [
             {"term": "Intercept", "estimate": 17.867, "se": 1.937, "p": 2.9e-20,
              "ci_low": 14.07, "ci_high": 21.66},
             {"term": "visit[W24]", "estimate": -7.152, "se": 1.110, "p": 1.147e-10,
              "ci_low": -9.327, "ci_high": -4.978}]},
        {"outcome": "inr", "converged": False, "singular": True,
         "fixed_effects": [{"term": "visit[W24]", "estimate": -0.504, "se": 0.095,
                            "p": 1.1e-7, "ci_low": -0.69, "ci_high": -0.318}]},
        {"outcome": "albumin", "error": "no follow-up data"}]}
    t = lmm_table(res)
    assert t is not None
    check("lmm_fallback", "lmm.md", to_text(t))
