"""The report's cell-product table and methods sentence, from a bundle's product frame
(``TrialData.products``, the store's ``selectors.products_frame``), and its data cut."""

from __future__ import annotations

import math

import pandas as pd

from hepatrial.analysis import TrialData
from hepatrial.report import analyze
from hepatrial.report.html import build_report, product_sentence
from hepatrial.report.table import to_text
from hepatrial.report.tables import product_table, report_tables
from tests.report.conftest import toy_bundle

UTC = "UTC"


def _products() -> pd.DataFrame:
    t = lambda s: pd.Timestamp(s, tz=UTC)  # noqa: E731
    return pd.DataFrame({
        "participant_id": ["P01", "P02", "P03"], "batch_id": ["B1", "B2", "B3"],
        "coi": ["c1", "c2", "c3"], "state": ["administered", "administered", "qa_review"],
        "route": ["portal_vein", "peripheral_vein", ""],
        "collected_at": [t("2023-12-18 08:00"), t("2023-12-20 09:00"), t("2024-01-05 08:00")],
        "released_at": [t("2024-01-01 08:30"), t("2024-01-01 08:30"), pd.NaT],
        "exceptional_release": [False, True, False],
        "administered_at": [t("2024-01-01 08:00"), t("2024-01-02 09:00"), pd.NaT],
        "cells_total": [4e7, 3e7, math.nan], "cells_per_kg": [5e5, math.nan, math.nan],
        "volume_ml": [10.0, 10.0, math.nan], "viability_pct": [90.0, 80.0, 95.0],
        "vein_to_vein_days": [14.0, 13.0, math.nan],
    })  # fmt: skip


def _bundle() -> TrialData:
    td = toy_bundle()
    td.protocol_summary["product"] = {"name": "MSC", "cells_min": 30e6, "cells_max": 50e6,
                                      "dose_basis": "total", "volume_ml": 10,
                                      "shelf_life_hours": 6,
                                      "release_spec": [{"name": "viability"}] * 14}
    td.products = _products()
    return td


def test_product_table_from_the_records() -> None:
    td = _bundle()
    res = analyze(td)
    ps = res["product"]
    assert (ps["n_batches"], ps["n_given"], ps["n_exceptional"]) == (3, 2, 1)
    t = product_table(res)
    assert t is not None
    assert [" ".join(x.split()) for x in to_text(t).splitlines()[2:12]] == [
        "| Characteristic | Infusions, N = 2¹ |",
        "|---|:---:|",
        "| Cells given, ×10⁶ | 35.0 ± 7.1 |",
        "| Cells per kg body weight, ×10⁶/kg | 0.50 |",
        "| Unknown | 1 |",
        "| Viability at release, % | 85.0 ± 7.1 |",
        "| Vein-to-vein time, days | 13.5 (13.0–14.0) |",
        "| **Release** | |",
        "| Within specification | 1 (50%) |",
        "| Exceptional (out of specification) | 1 (50%) |",
    ]
    assert [x.id for x in report_tables(td, res)][:2] == ["table1", "product"]
    text = product_sentence(res)
    assert text.startswith("Each infused batch (protocol dose 30–50 ×10⁶ cells in 10 mL) was "
                           "made from the participant's own marrow harvest")
    assert "tested against the protocol's 14 release tests" in text
    assert "the 6 h shelf life" in text and "2 batches were given, 1 released exceptionally" \
        in text
    page = build_report(td, res, run_time="x")
    assert "<h2>Cell product</h2>" in page and 'id="product"' in page
    assert "Each infused batch" in page


def test_no_product_frame_no_table() -> None:
    td = toy_bundle()
    res = analyze(td)
    assert res["product"] is None and product_table(res) is None
    assert product_sentence(res) == ""
    assert "<h2>Cell product</h2>" not in build_report(td, res, run_time="x")


def test_a_data_cut_keeps_what_had_happened_by_then() -> None:
    td = _bundle()
    cut = td.as_of("2024-01-01")
    assert cut.products is not None
    assert list(cut.products["batch_id"]) == ["B1", "B2"]  # B3 harvested after the cut
    b2 = cut.products.iloc[1]
    assert math.isnan(b2["cells_total"]) and b2["route"] == "" and pd.isna(
        b2["administered_at"])  # infused the day after the cut
    assert cut.products.iloc[0]["cells_total"] == 4e7
    assert analyze(cut)["product"]["n_given"] == 1
    assert toy_bundle().as_of("2024-01-01").products is None
