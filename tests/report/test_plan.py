"""The analysis plan names one primary test per hypothesis (protocol ``analysis.primary_test``);
the report uses it for the confirmatory family and reports the other test as sensitivity."""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

from hepatrial.protocol import load_protocol
from hepatrial.protocol.loader import validate_data
from hepatrial.report import analyze
from tests.report.conftest import toy_bundle


def _data(name: str) -> dict[str, Any]:
    text = resources.files("hepatrial.protocol").joinpath("builtin", f"{name}.toml").read_text()
    return tomllib.loads(text)


def _issues(data: dict[str, Any]) -> dict[str, str]:
    proto, issues = validate_data(data)
    assert proto is None
    return {i.path: i.message for i in issues}


def test_builtin_plan_names_primary_test_with_provenance() -> None:
    p = load_protocol("kharaziha2009")
    assert p.analysis.primary_test == "t"
    s = p.summary_dict()["analysis"]
    assert s["primary_test"] == "t" and s["sensitivity_tests"] == ["wilcoxon"]
    prov = {i.path: i for i in p.provenance()}
    assert prov["analysis.primary_test"].source == "assumed"
    mayo = load_protocol("mayo-pbc").summary_dict()["analysis"]
    assert mayo["primary_test"] is None and mayo["sensitivity_tests"] == []


def test_primary_test_must_be_one_of_the_paired_tests() -> None:
    data = _data("kharaziha2009")
    data["analysis"]["paired_tests"] = ["wilcoxon"]
    assert "'t' is not one of paired_tests" in _issues(data)["analysis.primary_test"]
    data = _data("kharaziha2009")
    del data["analysis"]["primary_test"]
    del data["analysis"]["sources"]["primary_test"]
    assert "name the primary test" in _issues(data)["analysis.primary_test"]
    data["analysis"]["paired_tests"] = ["wilcoxon"]  # one test: it is the primary one
    proto, issues = validate_data(data)
    assert proto is not None and not issues
    assert proto.summary_dict()["analysis"]["primary_test"] == "wilcoxon"


def test_wilcoxon_as_primary_moves_the_confirmatory_family() -> None:
    td = toy_bundle()
    td.protocol_summary = {**td.protocol_summary, "arms": [], "design": "single_arm"}
    td.dataset = td.dataset.assign(arm="single")
    td.participants = td.participants.assign(arm="single")
    plan = td.protocol_summary["analysis"]
    for primary, other in (("t", "wilcoxon"), ("wilcoxon", "t")):
        td.protocol_summary["analysis"] = {**plan, "primary_test": primary}
        res = analyze(td, mixed_model=False)
        conf = res["multiplicity"]["confirmatory"]
        assert conf["test"] == primary
        assert [s["test"] for s in res["multiplicity"]["sensitivity"]] == [other]
        col = {"t": "p_t", "wilcoxon": "p_wilcoxon"}[primary]
        pr = next(r for r in res["paired"] if r["outcome"] == "meld_optn2002"
                  and r["visit"] == "W12")
        assert conf["hypotheses"][0]["p"] == pr[col]
        assert res["plan"]["primary_test"] == primary
