"""The cell product in the protocol (hepatrial.protocol.models.Product and the kharaziha2009
[product] section): starting material, manufacturing controls, release specification with
methods and sample points, dose rule, shelf life, temperatures; every bad key named."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from hepatrial.protocol.loader import builtin_path, load_protocol, validate_text
from hepatrial.protocol.models import Product

#: results of a batch meeting the kharaziha2009 release specification (synthetic)
PASSING: dict[str, Any] = {
    "cd73": 98.5, "cd90": 99.1, "cd105": 97.0, "cd45": 0.4, "cd34": 0.6, "cd14_or_cd11b": 0.8,
    "cd79a_or_cd19": 0.3, "hla_dr": 1.2, "viability": 92.0, "sterility": "no growth",
    "gram_stain": "no organisms seen", "endotoxin": 0.1, "mycoplasma": "negative",
    "cell_count": 40e6,
}  # fmt: skip


def _product() -> Product:
    p = load_protocol("kharaziha2009").product
    assert p is not None
    return p


def _text() -> str:
    return builtin_path("kharaziha2009").read_text(encoding="utf-8")


# ---------------------------------------------------------------------- the built-in product
def test_kharaziha_product_published_values() -> None:
    pr = _product()
    assert (pr.cells_min, pr.cells_max, pr.dose_basis, pr.volume_ml) == (30e6, 50e6, "total", 10)
    assert pr.vehicle == "normal saline"
    assert pr.routes == ("peripheral_vein", "portal_vein")
    sm = pr.starting_material
    assert sm is not None
    assert (sm.kind, sm.collection_site, sm.source) == ("bone_marrow_aspirate", "iliac crest",
                                                         "published")  # fmt: skip
    assert (sm.volume_ml_min, sm.volume_ml_max) == (30, 100)
    assert sm.volume_ok(30) and sm.volume_ok(100) and not sm.volume_ok(29.9)
    assert sm.transport_temp_c is not None and sm.transport_temp_c.text == "15 to 25 °C"
    assert [s.code for s in pr.manufacturing] == ["isolation", "expansion", "harvest",
                                                  "formulation"]  # fmt: skip
    exp = pr.step("expansion")
    assert exp is not None
    assert {c.name: (c.min, c.max, c.unit) for c in exp.controls} == {
        "passage": (1, 4, "1"), "population_doublings": (None, 20, "1"),
        "confluence": (70, 90, "%"),
    }  # fmt: skip
    harvest = pr.step("harvest")
    assert harvest is not None and harvest.control("cell_count").min == 30e6  # type: ignore[union-attr]
    assert harvest.control("viability").assess(69) == (  # type: ignore[union-attr]
        "fail", "69 % does not meet the specification >= 70 %")
    assert pr.shelf_life_hours == 6
    sto = pr.storage_temp_c
    assert sto is not None and (sto.min_c, sto.max_c) == (2, 8)
    assert pr.transport_temp_c is not None and pr.transport_temp_c.contains(8)
    assert not pr.transport_temp_c.contains(8.1)


def test_kharaziha_release_spec_methods_and_sample_points() -> None:
    pr = _product()
    names = [t.name for t in pr.release_spec]
    assert names == ["cd73", "cd90", "cd105", "cd45", "cd34", "cd14_or_cd11b", "cd79a_or_cd19",
                     "hla_dr", "viability", "sterility", "gram_stain", "endotoxin",
                     "mycoplasma", "cell_count"]  # fmt: skip
    for t in pr.release_spec:
        assert t.method, t.name
        assert t.sample_point, t.name
    st = pr.release_test("sterility")
    assert st is not None and "Ph. Eur. 2.6.1" in st.method and st.pending_with == "gram_stain"
    assert pr.release_test("mycoplasma").method.endswith("(Ph. Eur. 2.6.7)")  # type: ignore[union-attr]
    assert "before washing" in pr.release_test("mycoplasma").sample_point  # type: ignore[union-attr]
    en = pr.release_test("endotoxin")
    assert en is not None and (en.max, en.unit, en.max_per_kg_dose, en.per_kg_unit) == (
        0.5, "EU/mL", 5, "EU/kg")
    assert en.full_criterion == "<= 0.5 EU/mL; <= 5 EU/kg per dose"
    cc = pr.release_test("cell_count")
    assert cc is not None and cc.dose_range and (cc.min, cc.max, cc.unit) == (30e6, 50e6, "cells")
    assert cc.full_criterion == "3e+07-5e+07 cells; in the protocol's dose range"


def test_every_product_value_has_its_provenance() -> None:
    p = load_protocol("kharaziha2009")
    prov = {i.path: i for i in p.provenance() if i.path.startswith("product")}
    # every block of the product says where it comes from, with a note when assumed
    for path in ("product", "product.starting_material", "product.storage_temp_c",
                 "product.transport_temp_c", "product.starting_material.transport_temp_c",
                 "product.manufacturing[0]", "product.manufacturing[1].controls[0]",
                 "product.release_spec[10]", "product.release_spec[13]"):  # fmt: skip
        assert path in prov, path
        assert prov[path].source in ("published", "assumed"), path
        if prov[path].source == "assumed":
            assert prov[path].note, path
    assert prov["product"].source == "published"
    assert prov["product.shelf_life_hours"].source == "assumed"
    assert prov["product.starting_material"].source == "published"
    assert prov["product.starting_material.volume_ml_min"].source == "assumed"
    assert prov["product.release_spec[0].method"].source == "assumed"
    assert prov["product.release_spec[13]"].source == "published"  # cell count = dose range
    assumed = {a.path for a in p.assumptions()}
    assert {"product.storage_temp_c", "product.transport_temp_c",
            "product.release_spec[10]", "product.release_spec[11]"} <= assumed  # fmt: skip


def test_spec_rows_and_summary() -> None:
    pr = _product()
    rows = pr.spec_rows()
    assert rows[0] == {"test": "cd73", "unit": "%", "min": 95.0, "max": None, "expected": None}
    assert rows[9] == {"test": "sterility", "unit": None, "min": None, "max": None,
                       "expected": "no growth"}  # fmt: skip
    assert rows[13] == {"test": "cell_count", "unit": "cells", "min": 30e6, "max": 50e6,
                        "expected": None}  # fmt: skip
    s = load_protocol("kharaziha2009").summary_dict()["product"]
    assert s["release_spec"][0] == {"name": "cd73", "unit": "%", "min": 95.0, "max": None,
                                    "expected": None}  # fmt: skip
    assert s["shelf_life_hours"] == 6
    assert s["starting_material"]["transport_temp_c"] == {"min_c": 15.0, "max_c": 25.0}
    assert "source" not in s and "note" not in s["manufacturing"][0]
    assert "note" not in s["manufacturing"][1]["controls"][0]


# ---------------------------------------------------------------------- judging results
def test_release_assessment_of_a_passing_batch() -> None:
    res = _product().release_assessment(PASSING, weight_kg=70)
    assert [a.outcome for a in res] == ["pass"] * 14
    assert all(a.met and a.reason == "" for a in res)


def test_release_assessment_names_every_failure() -> None:
    bad = {**PASSING, "sterility": "POSITIVE", "viability": 41.0, "endotoxin": 9.5,
           "mycoplasma": "positive", "cell_count": 29e6}  # fmt: skip
    del bad["cd34"]
    res = {a.name: a for a in _product().release_assessment(bad, weight_kg=70)}
    assert res["sterility"].outcome == "fail"
    assert res["viability"].reason == "41 % does not meet the specification >= 70 %"
    assert res["endotoxin"].reason == "9.5 EU/mL does not meet the specification <= 0.5 EU/mL"
    assert res["mycoplasma"].outcome == "fail"
    assert res["cell_count"].reason == ("2.9e+07 cells does not meet the specification "
                                        "3e+07-5e+07 cells")
    assert (res["cd34"].outcome, res["cd34"].reason) == ("missing", "no result")
    assert not any(res[n].met for n in ("sterility", "viability", "endotoxin", "mycoplasma",
                                        "cell_count", "cd34"))  # fmt: skip
    assert res["cd73"].met


def test_rapid_release_on_the_gram_stain() -> None:
    pr = _product()
    pending = {k: v for k, v in PASSING.items() if k != "sterility"}
    st = {a.name: a for a in pr.release_assessment(pending, weight_kg=70)}["sterility"]
    assert (st.outcome, st.met) == ("pending", True)
    assert st.reason == "result pending; released on gram_stain (rapid release)"
    # no Gram stain result either: sterility is missing, and so is the Gram stain
    neither = {k: v for k, v in pending.items() if k != "gram_stain"}
    res = {a.name: a for a in pr.release_assessment(neither, weight_kg=70)}
    assert res["sterility"].outcome == "missing"
    assert res["sterility"].reason == "no result (and the rapid test gram_stain has not passed)"
    assert res["gram_stain"].outcome == "missing"
    # a positive Gram stain never lets sterility pend
    pos = {**pending, "gram_stain": "Gram-positive cocci"}
    res = {a.name: a for a in pr.release_assessment(pos, weight_kg=70)}
    assert res["sterility"].outcome == "missing" and res["gram_stain"].outcome == "fail"


@pytest.mark.parametrize(
    ("result", "weight", "outcome", "fragment"),
    [
        # 0.5 EU/mL x 10 mL / 1 kg = 5 EU/kg: at the limit (inclusive)
        (0.5, 1.0, "pass", ""),
        (0.5, 0.99, "fail", "0.5 EU/mL x 10 mL / 0.99 kg = 5.05 EU/kg per dose exceeds 5 EU/kg"),
        (0.5, 70, "pass", ""),
        (0.51, 70, "fail", "does not meet the specification <= 0.5 EU/mL"),
        (0.1, None, "invalid", "the limit 5 EU/kg per dose needs the participant's weight"),
        ("<0.1", 70, "invalid", "'<0.1' is not a number in EU/mL"),
    ],
)
def test_endotoxin_per_kg_per_dose(result: Any, weight: float | None, outcome: str,
                                   fragment: str) -> None:
    got, reason = _product().assess_release("endotoxin", result, weight_kg=weight)
    assert got == outcome
    assert fragment in reason


def test_endotoxin_dose_volume_given() -> None:
    # 0.4 EU/mL x 20 mL / 1.5 kg = 5.33 EU/kg > 5
    got, reason = _product().assess_release("endotoxin", 0.4, weight_kg=1.5, volume_ml=20)
    assert got == "fail" and "= 5.33 EU/kg per dose" in reason


def _per_kg_product() -> Product:
    return _product().model_copy(update={
        "dose_basis": "per_kg", "cells_min": 0.5e6, "cells_max": 1e6,
        "release_spec": tuple(
            t.model_copy(update={"min": None, "max": None}) if t.name == "cell_count" else t
            for t in _product().release_spec),
    })  # fmt: skip


def test_dose_rule_total_and_per_kg() -> None:
    pr = _product()
    assert pr.dose_problem(30e6) is None and pr.dose_problem(50e6) is None
    assert pr.dose_problem(9e9) == ("dose 9e+09 cells is outside the protocol's range "
                                    "3e+07-5e+07 cells")  # fmt: skip
    assert pr.dose_range_cells() == (30e6, 50e6)
    pk = _per_kg_product()
    assert pk.dose_unit == "cells/kg"
    assert pk.dose_range_cells() is None
    assert pk.dose_range_cells(60) == (30e6, 60e6)
    assert pk.dose_problem(60e6, 60) is None
    assert pk.dose_problem(61e6, 60) == ("dose 1.017e+06 cells/kg (6.1e+07 cells / 60 kg) is "
                                         "outside the protocol's range 5e+05-1e+06 cells/kg")
    assert "no weight is recorded" in (pk.dose_problem(40e6, None) or "")


def test_cell_count_in_the_dose_range_per_kg() -> None:
    pk = _per_kg_product()
    assert pk.assess_release("cell_count", 40e6, weight_kg=60) == ("pass", "")
    got, reason = pk.assess_release("cell_count", 29e6, weight_kg=60)
    assert got == "fail"
    assert reason == "2.9e+07 cells is outside the dose range 3e+07-6e+07 cells"
    got, reason = pk.assess_release("cell_count", 40e6)
    assert got == "invalid" and "weight is needed" in reason


def test_expiry_from_formulation() -> None:
    t0 = dt.datetime(2009, 2, 1, 8, 0, tzinfo=dt.UTC)
    assert _product().expiry(t0) == dt.datetime(2009, 2, 1, 14, 0, tzinfo=dt.UTC)
    assert _product().model_copy(update={"shelf_life_hours": None}).expiry(t0) is None


# ---------------------------------------------------------------------- validation
def _issues(extra: str, base: str | None = None) -> list[str]:
    proto, issues = validate_text((base or _text()) + extra, "bad.toml")
    assert proto is None
    return [str(i) for i in issues]


def test_validate_names_every_bad_key() -> None:
    text = _text().replace('collection_site = "iliac crest"',
                           'collection_site = "iliac crest"\ncolour = "red"')
    text = text.replace('shelf_life_hours = 6', 'shelf_life_hours = -1')
    text = text.replace('dose_range = true', 'dose_range = true\ndose_rnage = true')
    proto, issues = validate_text(text, "bad.toml")
    assert proto is None
    got = {str(i) for i in issues}
    assert "product.starting_material.colour: unknown key" in got
    prefix = "product.shelf_life_hours: Input should be greater than 0"
    assert any(g.startswith(prefix) for g in got)
    assert "product.release_spec[13].dose_rnage: unknown key" in got


def test_product_rules_name_their_keys() -> None:
    text = _text()
    text = text.replace("volume_ml_min = 30", "volume_ml_min = 300")
    text = text.replace("[product.storage_temp_c]\nmin_c = 2",
                        "[product.storage_temp_c]\nmin_c = 9")
    text = text.replace('pending_with = "gram_stain"', 'pending_with = "culture"')
    text = text.replace("max_per_kg_dose = 5", "max_per_kg_dose = 5\nmin = 1")
    extra = """
[[product.manufacturing]]
code = "expansion"
label = "again"
source = "assumed"

[[product.manufacturing.controls]]
name = "passage"
unit = "1"
source = "assumed"

[[product.manufacturing.controls]]
name = "passage"
expected = "ok"
min = 1
source = "assumed"

[[product.release_spec]]
name = "potency"
unit = "%"
min = 20
max_per_kg_dose = 1
source = "assumed"

[[product.release_spec]]
name = "count2"
unit = "x10^6"
min = 30
dose_range = true
source = "assumed"

[[product.release_spec]]
name = "count3"
unit = "cells"
min = 1
dose_range = true
source = "assumed"

[[product.release_spec]]
name = "self"
expected = "ok"
pending_with = "self"
source = "assumed"

[[product.release_spec]]
name = "chain"
expected = "ok"
pending_with = "sterility"
source = "assumed"
"""
    got = set(_issues(extra, text))
    assert ("product.starting_material.volume_ml_min: volume_ml_min is larger than "
            "volume_ml_max") in got
    assert "product.storage_temp_c.min_c: min_c is larger than max_c" in got
    assert ("product.release_spec[9].pending_with: 'culture' is not a test of the release "
            "specification (cd73, cd90, cd105, cd45, cd34, cd14_or_cd11b, cd79a_or_cd19, "
            "hla_dr, viability, sterility, gram_stain, endotoxin, mycoplasma, cell_count, "
            "potency, count2, count3, self, chain)") in got
    assert ("product.manufacturing[4].code: duplicate step code 'expansion' (first "
            "at manufacturing[1])") in got
    assert ("product.manufacturing[4].controls[1].name: duplicate control 'passage' "
            "(first at controls[0])") in got
    assert ("product.manufacturing[4].controls[0]: give min and/or max (quantitative) or "
            "expected (qualitative)") in got
    assert ("product.manufacturing[4].controls[1]: a qualitative test (expected) "
            "has no min/max") in got
    assert ("product.release_spec[14].max_per_kg_dose: a limit per kg per dose is for a "
            "concentration result (a quantitative test whose unit ends in /mL)") in got
    assert ("product.release_spec[15].dose_range: the dose range applies to a cell "
            "count (unit 'cells')") in got
    assert ("product.release_spec[16].min: min/max of a dose-range test must be the dose range "
            "3e+07-5e+07 cells") in got
    assert ("product.release_spec[17].pending_with: a test cannot be its own rapid "
            "release test") in got
    assert ("product.release_spec[18].pending_with: the rapid test 'sterility' must itself have a "
            "result at release (it has pending_with)") in got


def test_per_kg_dose_range_test_takes_no_limits() -> None:
    text = _text().replace('dose_basis = "total"', 'dose_basis = "per_kg"')
    text = text.replace("cells_min = 30e6\ncells_max = 50e6\ndose_basis",
                        "cells_min = 0.5e6\ncells_max = 1e6\ndose_basis")
    got = _issues("", text)
    assert ("product.release_spec[13].min: the dose is per kg: the cell-count limits come from "
            "the participant's weight (give no min/max)") in got


def test_cli_validate_names_every_bad_product_key(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from hepatrial.cli import app

    text = _text().replace('anticoagulant = "heparin"', 'anticoagulant = "heparin"\nvolume = 5')
    text = text.replace("[product.transport_temp_c]\nmin_c = 2",
                        "[product.transport_temp_c]\nmin_c = 12")
    text = text.replace('method = "Gram stain"', 'method = "Gram stain"\nsample = "x"')
    f = tmp_path / "bad.toml"
    f.write_text(text, encoding="utf-8")
    r = CliRunner().invoke(app, ["protocol", "validate", str(f)])
    assert r.exit_code == 2
    out = r.output
    assert "product.starting_material.volume: unknown key" in out
    assert "product.release_spec[10].sample: unknown key" in out
    f.write_text(_text().replace("[product.transport_temp_c]\nmin_c = 2",
                                 "[product.transport_temp_c]\nmin_c = 12"), encoding="utf-8")
    r = CliRunner().invoke(app, ["protocol", "validate", str(f)])
    assert r.exit_code == 2
    assert "product.transport_temp_c.min_c: min_c is larger than max_c" in r.output
