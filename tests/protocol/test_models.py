"""Protocol models: built-ins, structural and cross-field validation, windows, hash, summary."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from hepatrial.protocol import (
    Protocol,
    ProtocolError,
    ProtocolNotFoundError,
    list_builtin,
    load_protocol,
    validate_text,
)
from hepatrial.protocol.loader import validate_data


def _builtin_text(name: str) -> str:
    return resources.files("hepatrial.protocol").joinpath("builtin", f"{name}.toml").read_text()


def _builtin_data(name: str) -> dict[str, Any]:
    return tomllib.loads(_builtin_text(name))


def _issues(data: dict[str, Any]) -> dict[str, str]:
    proto, issues = validate_data(data)
    assert proto is None, "expected the protocol to be invalid"
    return {i.path: i.message for i in issues}


# ---------------------------------------------------------------------- built-ins
def test_list_builtin() -> None:
    assert list_builtin() == ["kharaziha2009", "mayo-pbc"]


@pytest.mark.parametrize("name", ["kharaziha2009", "mayo-pbc"])
def test_builtins_validate(name: str) -> None:
    p = load_protocol(name)
    assert isinstance(p, Protocol)
    assert p.name == name


def test_kharaziha_content() -> None:
    p = load_protocol("kharaziha2009")
    assert p.registration == "NCT00420134"
    assert p.design == "single_arm"
    assert p.arm_codes == ("single",)
    assert p.visit_codes == ("SCR", "D0", "W1", "W2", "W4", "W8", "W24")
    assert [v.target_day for v in p.visits] == [-14, 0, 7, 14, 28, 56, 168]
    assert p.baseline_visit.code == "D0"
    assert p.primary_endpoint.analyte == "meld_kamath2001"
    assert p.primary_endpoint.visit == "W24"
    assert [(s.analyte, s.visit) for s in p.analysis.sequence] == [
        ("meld_kamath2001", "W24"),
        ("inr", "W24"),
        ("creatinine", "W24"),
        ("albumin", "W24"),
        ("bilirubin", "W24"),
    ]
    assert p.analysis.paired_tests == ("t", "wilcoxon")
    assert p.analysis.wilcoxon_method == "exact"
    assert p.product is not None
    assert (p.product.cells_min, p.product.cells_max, p.product.volume_ml) == (30e6, 50e6, 10)
    assert set(p.product.routes) == {"peripheral_vein", "portal_vein"}
    assert set(p.etiologies) == {"HBV", "HCV", "alcohol", "cryptogenic"}
    units = {o.analyte: o.unit for o in p.outcomes}
    assert units == {
        "meld_kamath2001": "points",
        "inr": "1",
        "creatinine": "umol/L",
        "albumin": "g/L",
        "bilirubin": "umol/L",
    }


def test_every_kharaziha_visit_window_is_marked_assumed() -> None:
    p = load_protocol("kharaziha2009")
    assumed = {a.path for a in p.assumptions()}
    for i, v in enumerate(p.visits):
        if v.source == "assumed":
            assert f"visits[{i}]" in assumed
        else:  # published visit, windows overridden as assumed
            assert {f"visits[{i}].window_lower", f"visits[{i}].window_upper"} <= assumed
    assert "eligibility[1].check" in assumed  # MELD variant
    assert "primary_endpoint.visit" in assumed
    assert "analysis" in assumed
    # every block has a provenance entry
    prov = {x.path: x.source for x in p.provenance()}
    assert prov["product"] == "published"
    assert prov["etiologies"] == "derived"
    assert prov["arms[0]"] == "published"
    assert all(s in ("published", "assumed", "derived") for s in prov.values())


def test_mayo_content() -> None:
    p = load_protocol("mayo-pbc")
    assert p.design == "randomised"
    assert p.arm_codes == ("DPCA", "placebo")
    assert [a.ratio for a in p.arms] == [1, 1]
    assert p.visit_codes[:3] == ("D0", "M6", "M12")
    assert p.visit_codes[-1] == "Y14"
    assert p.visit("Y14").target_day == 14 * 365
    assert p.outcome("bilirubin").transform == "log"
    assert p.primary_endpoint.comparison == "arm_by_time"
    assert p.analysis.mixed_model is not None
    assert "arm:time" in p.analysis.mixed_model.fixed_effects
    # windows tile the axis from day 91 without gaps
    for prev, cur in zip(p.visits[1:], p.visits[2:], strict=False):
        assert cur.earliest_day == prev.latest_day + 1


def test_unknown_builtin() -> None:
    with pytest.raises(ProtocolNotFoundError, match="kharaziha2009"):
        load_protocol("nope")
    with pytest.raises(ProtocolNotFoundError):
        load_protocol("missing-file.toml")


# ---------------------------------------------------------------------- broken files
def test_unknown_key_named_with_path() -> None:
    data = _builtin_data("kharaziha2009")
    data["visits"][2]["windw_upper"] = 3
    assert _issues(data) == {"visits[2].windw_upper": "unknown key"}


def test_unknown_top_level_key_and_text_path() -> None:
    text = 'sponsor = "x"\n' + _builtin_text("kharaziha2009")
    proto, issues = validate_text(text)
    assert proto is None
    assert [(i.path, i.message) for i in issues] == [("sponsor", "unknown key")]


def test_toml_syntax_error() -> None:
    proto, issues = validate_text('name = "x"\nvisits = [\n')
    assert proto is None
    assert issues[0].path == "(toml)"
    assert "TOML syntax error" in issues[0].message


def test_duplicate_visit_code() -> None:
    data = _builtin_data("kharaziha2009")
    data["visits"][3]["code"] = "W1"
    issues = _issues(data)
    assert "visits[3].code" in issues
    assert "duplicate visit code 'W1' (first at visits[2])" in issues["visits[3].code"]


def test_window_upper_negative() -> None:
    data = _builtin_data("kharaziha2009")
    data["visits"][2]["window_upper"] = -1
    issues = _issues(data)
    assert list(issues) == ["visits[2].window_upper"]
    assert "greater than or equal to 0" in issues["visits[2].window_upper"]


def test_window_lower_positive() -> None:
    data = _builtin_data("kharaziha2009")
    data["visits"][4]["window_lower"] = 2
    assert list(_issues(data)) == ["visits[4].window_lower"]


def test_two_baselines() -> None:
    data = _builtin_data("kharaziha2009")
    data["visits"][2]["baseline"] = True
    issues = _issues(data)
    assert "visits[2].baseline" in issues
    assert "exactly one visit" in issues["visits[2].baseline"]


def test_no_baseline() -> None:
    data = _builtin_data("kharaziha2009")
    del data["visits"][1]["baseline"]
    assert "visits" in _issues(data)


def test_target_days_must_increase_and_windows_not_overlap() -> None:
    data = _builtin_data("kharaziha2009")
    data["visits"][3]["target_day"] = 7  # W2 on the W1 day
    assert "visits[3].target_day" in _issues(data)
    data = _builtin_data("kharaziha2009")
    data["visits"][3]["window_lower"] = -6  # W2 from day 8 overlaps W1 (5..9)
    assert "overlaps W1" in _issues(data)["visits[3].window_lower"]


def test_unknown_analytes_and_units() -> None:
    data = _builtin_data("kharaziha2009")
    data["outcomes"][1]["analyte"] = "inr_ratio"
    data["outcomes"][2]["unit"] = "mg/dL"
    data["outcomes"][3]["reported_unit"] = "mmol/L"
    data["visits"][2]["measurements"].append("ggt")
    issues = _issues(data)
    assert "unknown analyte or score 'inr_ratio'" in issues["outcomes[1].analyte"]
    assert "canonical 'umol/L'" in issues["outcomes[2].unit"]
    assert "outcomes[3].reported_unit" in issues
    assert "visits[2].measurements[4]" in issues


def test_fixed_sequence_refers_to_outcomes_and_visits() -> None:
    data = _builtin_data("kharaziha2009")
    data["analysis"]["sequence"][1] = {"analyte": "sodium", "visit": "W24"}
    data["analysis"]["sequence"][2] = {"analyte": "creatinine", "visit": "W12"}
    data["analysis"]["sequence"][3] = {"analyte": "albumin", "visit": "D0"}
    issues = _issues(data)
    assert "analysis.sequence[1].analyte" in issues
    assert "unknown visit 'W12'" in issues["analysis.sequence[2].visit"]
    assert "baseline" in issues["analysis.sequence[3].visit"]


def test_fixed_sequence_needs_sequence() -> None:
    data = _builtin_data("kharaziha2009")
    data["analysis"]["sequence"] = []
    assert "analysis.sequence" in _issues(data)


def test_randomised_needs_two_arms_and_unique_codes() -> None:
    data = _builtin_data("mayo-pbc")
    data["arms"] = data["arms"][:1]
    assert "arms" in _issues(data)
    data = _builtin_data("mayo-pbc")
    data["arms"][1]["code"] = "DPCA"
    assert "duplicate arm code 'DPCA'" in _issues(data)["arms[1].code"]
    data = _builtin_data("mayo-pbc")
    data["randomisation"]["block_sizes"] = [3]
    assert "randomisation.block_sizes[0]" in _issues(data)


def test_single_arm_rules() -> None:
    data = _builtin_data("kharaziha2009")
    data["arms"][0]["code"] = "msc"
    assert "arms[0].code" in _issues(data)


def test_bad_check_and_sources() -> None:
    data = _builtin_data("kharaziha2009")
    data["eligibility"][1]["check"]["variant"] = "optn2099"
    data["eligibility"][2]["check"]["op"] = ">="  # needs a single number, has a list
    data["visits"][2]["sources"]["window_middle"] = {"source": "assumed"}
    data["visits"][3]["source"] = "guessed"
    issues = _issues(data)
    assert "optn2099" in issues["eligibility[1].check"]
    assert "numeric" in issues["eligibility[2].check"]
    assert "window_middle" in issues["visits[2]"]
    assert "visits[3].source" in issues


def test_top_level_sources_name_settings() -> None:
    data = _builtin_data("kharaziha2009")
    data["sources"]["sponsor"] = {"source": "assumed"}
    assert "sources.sponsor" in _issues(data)


def test_etiology_criterion_must_use_known_etiologies() -> None:
    data = _builtin_data("kharaziha2009")
    data["eligibility"][3]["check"]["value"] = ["HBV", "NASH"]
    assert "unknown etiology 'NASH'" in _issues(data)["eligibility[3].check.value[1]"]


def test_direct_construction_runs_rules() -> None:
    data = _builtin_data("kharaziha2009")
    data["visits"][2]["baseline"] = True
    with pytest.raises(ValueError, match=r"visits\[2\]\.baseline"):
        Protocol.model_validate(data)


def test_load_file_error_lists_issues(tmp_path: Path) -> None:
    data_text = _builtin_text("kharaziha2009").replace('code = "W2"', 'code = "W1"')
    f = tmp_path / "bad.toml"
    f.write_text(data_text)
    with pytest.raises(ProtocolError) as exc:
        load_protocol(f)
    assert [i.path for i in exc.value.issues] == ["visits[3].code"]
    assert "bad.toml" in str(exc.value)


def test_models_are_frozen() -> None:
    p = load_protocol("kharaziha2009")
    with pytest.raises(ValueError):
        p.visits[0].target_day = 3  # type: ignore[misc]


# ---------------------------------------------------------------------- windows and schedule
def test_classify_boundaries() -> None:
    w4 = load_protocol("kharaziha2009").visit("W4")  # day 28, -7/+7
    assert w4.classify(20) == "early"
    assert w4.classify(21) == "in_window"
    assert w4.classify(28) == "in_window"
    assert w4.classify(35) == "in_window"
    assert w4.classify(36) == "late"
    assert (w4.window_closed(35), w4.window_closed(36)) == (False, True)
    d0 = load_protocol("kharaziha2009").visit("D0")
    assert (d0.classify(-1), d0.classify(0), d0.classify(1)) == ("early", "in_window", "late")


def test_schedule_dates() -> None:
    p = load_protocol("kharaziha2009")
    sched = {s.code: s for s in p.schedule(dt.date(2024, 1, 31))}
    assert sched["D0"].target_date == dt.date(2024, 1, 31)
    assert sched["W1"].target_date == dt.date(2024, 2, 7)
    assert sched["W1"].earliest_date == dt.date(2024, 2, 5)
    assert sched["W1"].latest_date == dt.date(2024, 2, 9)
    assert sched["W24"].target_date == dt.date(2024, 7, 17)
    assert sched["SCR"].earliest_date == dt.date(2024, 1, 3)
    assert sched["SCR"].latest_date == dt.date(2024, 1, 30)


def test_assign_visits_tie_goes_to_earlier_day() -> None:
    p = load_protocol("kharaziha2009")
    got = p.assign_visits([0, 8, 6, 40, 170, -20])
    assert [(a.visit, a.nominal_day) for a in got] == [
        ("D0", 0),
        ("UNS", 8),
        ("W1", 7),
        ("UNS", 40),
        ("W24", 168),
        ("SCR", -14),
    ]
    assert p.window_visit(40) is None
    assert p.window_visit(9).code == "W1"


# ---------------------------------------------------------------------- hash and summary
def test_content_hash_stable_and_sensitive() -> None:
    p = load_protocol("kharaziha2009")
    h = p.content_hash()
    assert len(h) == 64
    # reformatting / comments do not change it
    text = "# a comment\n" + re.sub(
        r"^(\w+) = ", r"\1   =   ", _builtin_text("kharaziha2009"), flags=re.M
    )
    assert text != _builtin_text("kharaziha2009")
    q, issues = validate_text(text)
    assert not issues and q is not None
    assert q.content_hash() == h
    # key order does not change it
    data = _builtin_data("kharaziha2009")
    reordered = dict(reversed(list(data.items())))
    r, _ = validate_data(reordered)
    assert r is not None and r.content_hash() == h
    # any setting does
    data2 = copy.deepcopy(data)
    data2["visits"][2]["window_upper"] = 3
    s, _ = validate_data(data2)
    assert s is not None and s.content_hash() != h
    assert load_protocol("mayo-pbc").content_hash() != h


def test_summary_dict_is_plain_json() -> None:
    p = load_protocol("kharaziha2009")
    s = p.summary_dict()
    assert json.loads(json.dumps(s)) == s
    assert s["name"] == "kharaziha2009"
    assert s["baseline_visit"] == "D0"
    assert s["content_hash"] == p.content_hash()
    assert [v["nominal_day"] for v in s["visits"]] == [-14, 0, 7, 14, 28, 56, 168]
    assert s["arms"] == [{"code": "single", "label": "Autologous bone-marrow MSC", "ratio": 1}]
    assert s["meld_variant"] == s["analysis"]["meld_variant"] == "kamath2001"
    assert s["tests"] == ["t", "wilcoxon"]
    assert s["multiplicity"] == "fixed_sequence"
    assert s["analysis"]["meld_score"] == "meld_kamath2001"
    assert s["primary_endpoint"] == {
        "analyte": "meld_kamath2001",
        "visit": "W24",
        "comparison": "change_from_baseline",
        "transform": "none",
    }
    assert {"analyte": "bilirubin", "label": "Bilirubin, total", "unit": "umol/L",
            "transform": "none", "reported_unit": "umol/L"} in s["outcomes"]


def test_models_hashable_and_equal() -> None:
    a, b = load_protocol("kharaziha2009"), load_protocol("mayo-pbc")
    assert len({a, b, a.visits[0], a.visits[0]}) == 3
