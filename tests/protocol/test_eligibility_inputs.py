"""Typed eligibility inputs: each input declares its kind; criteria read only declared inputs of
a matching kind; a value of the wrong kind is never compared; `protocol validate` refuses an
input without a kind."""

from __future__ import annotations

import copy
import datetime as dt
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from hepatrial.cli.protocol import register
from hepatrial.protocol import load_protocol
from hepatrial.protocol.loader import validate_data

KH = load_protocol("kharaziha2009")
BUILTIN = resources.files("hepatrial.protocol").joinpath("builtin")


def _data(name: str = "kharaziha2009") -> dict[str, Any]:
    return tomllib.loads(BUILTIN.joinpath(f"{name}.toml").read_text())


def _issues(data: dict[str, Any]) -> dict[str, str]:
    proto, issues = validate_data(data)
    assert proto is None, "expected the protocol to be invalid"
    return {i.path: i.message for i in issues}


def _input(data: dict[str, Any], name: str) -> tuple[int, dict[str, Any]]:
    return next((i, x) for i, x in enumerate(data["eligibility_inputs"]) if x["name"] == name)


def test_builtin_inputs_are_typed_with_provenance() -> None:
    kinds = {i.name: (i.kind, i.analyte, i.unit, i.derived_from) for i in KH.eligibility_inputs}
    assert kinds["hcc"] == ("boolean", None, None, None)
    assert kinds["bilirubin"] == ("number", "bilirubin", "umol/L", None)
    assert kinds["inr"] == ("number", "inr", "1", None)
    assert kinds["age"] == ("number", None, "years", "participant")
    assert kinds["etiology"][0] == "choice" and kinds["informed_consent"][3] == "consent"
    # every criterion reads declared inputs (a score: its lab inputs)
    names = set(kinds)
    for c in KH.eligibility:
        if c.check.field == "meld":
            assert {"bilirubin", "creatinine", "inr"} <= names
        else:
            assert c.check.field in names, c.id
    paths = {p.path for p in KH.provenance()}
    assert all(f"eligibility_inputs[{i}]" in paths for i in range(len(KH.eligibility_inputs)))
    assert [i.name for i in load_protocol("mayo-pbc").eligibility_inputs] == [
        "age", "etiology", "informed_consent"]
    assert [i.name for i in KH.entered_inputs] == [
        "cirrhosis", "bilirubin", "creatinine", "inr", "dialysis", "albumin",
        "portal_vein_patent", "hcc", "active_infection", "pregnant"]


def test_an_input_without_a_kind_is_refused() -> None:
    data = _data()
    i, inp = _input(data, "hcc")
    del inp["kind"]
    assert _issues(data) == {f"eligibility_inputs[{i}].kind": "required key is missing"}


@pytest.mark.parametrize(
    ("edit", "path", "message"),
    [
        (lambda d: d["eligibility_inputs"].pop(_input(d, "hcc")[0]), "eligibility[6].check.field",
         "'hcc' is not a declared eligibility input"),
        (lambda d: d["eligibility_inputs"].pop(_input(d, "inr")[0]),
         "eligibility[1].check.field", "score 'meld' is computed from 'inr', which is not a "
         "declared eligibility input"),
        (lambda d: d["eligibility"][6]["check"].update(value="yes"),
         "eligibility[6].check.value", "'hcc' is a boolean input: compare with true or false"),
        (lambda d: d["eligibility"][6]["check"].update(op=">="),
         "eligibility[6].check.value", None),
        (lambda d: _input(d, "bilirubin")[1].update(unit="mg/dL"),
         "eligibility_inputs[{bilirubin}].unit", "compared in the canonical unit of bilirubin"),
        (lambda d: _input(d, "bilirubin")[1].pop("analyte"),
         "eligibility_inputs[{bilirubin}].analyte", "is a lab analyte: set analyte"),
        (lambda d: _input(d, "hcc")[1].update(choices=["yes", "no"]),
         "eligibility_inputs[{hcc}].choices", "only for choice inputs"),
        (lambda d: _input(d, "etiology")[1].update(choices=["HBV", "NASH"]),
         "eligibility_inputs[{etiology}].choices[1]", "unknown etiology code 'NASH'"),
        (lambda d: _input(d, "age")[1].pop("derived_from"),
         "eligibility_inputs[{age}].derived_from", "computed by the store"),
        (lambda d: _input(d, "cirrhosis")[1].update(derived_from="participant"),
         "eligibility_inputs[{cirrhosis}].derived_from", "the store derives only"),
        (lambda d: d["eligibility_inputs"].append(copy.deepcopy(_input(d, "hcc")[1])),
         "eligibility_inputs[13].name", "duplicate eligibility input 'hcc'"),
    ],
    ids=["undeclared field", "score input undeclared", "boolean compared with text",
         "boolean with an order operator", "lab not in canonical unit", "lab without analyte",
         "choices on a boolean", "unknown etiology code", "age not derived",
         "derived other than known", "duplicate"],
)
def test_input_rules(edit: Any, path: str, message: str | None) -> None:
    data = _data()
    edit(data)
    names = {x["name"]: i for i, x in enumerate(data["eligibility_inputs"])}
    path = path.format(**names)
    issues = _issues(data)
    if message is None:  # pydantic's own check of the operator/value pair
        assert any(p.startswith("eligibility[6].check") for p in issues), issues
        return
    assert path in issues, issues
    assert message in issues[path]


def test_wrong_kind_is_never_compared() -> None:
    """``"hcc": "yes"`` used to pass EXC-HCC (compared with True): now undecided."""
    ok = {"hcc": False, "cirrhosis": True, "bilirubin": 46.0, "creatinine": 114.0, "inr": 1.9,
          "age": 55, "etiology": "HBV", "portal_vein_patent": True, "informed_consent": True,
          "active_infection": False, "pregnant": False}
    assert KH.screen(ok).eligible is True
    for field, bad, why in (("hcc", "yes", "'yes' is not a boolean (true or false)"),
                            ("hcc", 0, "0 is not a boolean"),
                            ("bilirubin", True, "True is not a number"),
                            ("etiology", "hbv", "'hbv' is not one of HBV")):
        res = KH.screen({**ok, field: bad})
        assert res.eligible is None
        (r,) = res.undecided
        assert r.reason.startswith(f"{field}: {why}")


def test_date_input_and_check() -> None:
    data = _data()
    data["eligibility_inputs"].append({"name": "diagnosis_date", "kind": "date",
                                       "source": "assumed"})
    data["eligibility"].append({"id": "INC-DIAG", "kind": "inclusion", "text": "diagnosed",
                                "check": {"field": "diagnosis_date", "op": "<=",
                                          "value": dt.date(2007, 12, 31)},
                                "source": "assumed"})
    proto, issues = validate_data(data)
    assert issues == [] and proto is not None
    c = proto.eligibility[-1]
    assert c.evaluate({"diagnosis_date": dt.date(2007, 6, 1)}).met is True
    assert c.evaluate({"diagnosis_date": dt.date(2008, 1, 2)}).met is False
    kinds = {i.name: (i.kind, i.choices) for i in proto.eligibility_inputs}
    assert c.evaluate({"diagnosis_date": "2007-06-01"}, kinds).met is None


def test_protocol_validate_cli_rejects_an_input_without_kind(tmp_path: Path) -> None:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        """Test root."""

    text = BUILTIN.joinpath("kharaziha2009.toml").read_text()
    old = 'name = "hcc"\nkind = "boolean"\n'
    assert old in text
    f = tmp_path / "k.toml"
    f.write_text(text.replace(old, 'name = "hcc"\n', 1))
    r = CliRunner().invoke(app, ["protocol", "validate", str(f)])
    assert r.exit_code == 2
    i = [x.name for x in KH.eligibility_inputs].index("hcc")
    assert f"  eligibility_inputs[{i}].kind: required key is missing" in r.stderr.splitlines()
