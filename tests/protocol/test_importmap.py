"""The pbcseq -> mayo-pbc import map, checked against the reference data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hepatrial.protocol import ProtocolError, VisitImportMap, load_import_map, load_protocol
from hepatrial.protocol.importmap import FieldMap
from hepatrial.protocol.loader import load_model_file

MAP = load_import_map("mayo-pbc")
PBC = load_protocol("mayo-pbc")


@pytest.fixture(scope="module")
def pbcseq(pbcseq_csv: Path) -> pd.DataFrame:
    return pd.read_csv(pbcseq_csv)


def test_map_matches_protocol() -> None:
    assert MAP.protocol == "mayo-pbc"
    assert MAP.check_against(PBC) == []


def test_map_matches_file_header(pbcseq: pd.DataFrame) -> None:
    assert MAP.check_header(list(pbcseq.columns)) == []
    issues = MAP.check_header([c for c in pbcseq.columns if c != "bili"] + ["ggt"])
    assert [str(i) for i in issues] == [
        "(map): column 'bili' is not in the file",
        "(file): column 'ggt' is neither mapped nor ignored",
    ]


def test_every_row_maps_to_a_visit(pbcseq: pd.DataFrame) -> None:
    rows = []
    for pid, g in pbcseq.groupby("id", sort=True):
        for a in PBC.assign_visits(g["day"].tolist()):
            rows.append((pid, a.actual_day, a.visit, a.scheduled))
    assert len(rows) == len(pbcseq) == 1945  # nothing dropped
    df = pd.DataFrame(rows, columns=["id", "day", "visit", "scheduled"])
    in_window = sum(PBC.window_visit(int(d)) is not None for d in pbcseq["day"])
    # the windows tile days 0 and 91..5292; every pbcseq day (max 5152) lands in one
    assert in_window == 1945
    # extra visits in an already-used window are kept as unscheduled
    n_uns = int((df.visit == "UNS").sum())
    assert n_uns == 1945 - int(df.scheduled.sum())
    assert n_uns == 37
    assert not df[df.scheduled].duplicated(["id", "visit"]).any()
    # every participant has the baseline visit at day 0
    assert (df[df.visit == "D0"].day == 0).all()
    assert (df.visit == "D0").sum() == 312
    counts = df.visit.value_counts()
    assert (counts["M6"], counts["M12"], counts["Y2"], counts["Y14"]) == (256, 250, 220, 3)


def test_assignment_of_one_participant_by_hand(pbcseq: pd.DataFrame) -> None:
    # participant 7: two visits in the M12 window (274..547): 392 is nearer day 365
    days = pbcseq.loc[pbcseq.id == 7, "day"].tolist()
    assert days == [0, 392, 545, 760, 1126, 1489, 2262]
    got = [(a.visit, a.nominal_day) for a in PBC.assign_visits(days)]
    assert got == [
        ("D0", 0),
        ("M12", 365),
        ("UNS", 545),
        ("Y2", 730),
        ("Y3", 1095),
        ("Y4", 1460),
        ("Y6", 2190),
    ]


def test_participant_fields_decode(pbcseq: pd.DataFrame) -> None:
    p = MAP.participant
    arms = pbcseq.groupby("id").trt.first().map(p.arm.decode)
    assert arms.value_counts().to_dict() == {"DPCA": 158, "placebo": 154}
    assert set(pbcseq.sex.map(p.sex.decode)) == {"F", "M"}
    assert p.site.decode() == "MAYO"
    assert set(pbcseq.status.map(p.status.decode)) == {"completed", "transplanted", "died"}
    # participant-level columns are constant within participant
    for col in ("trt", "sex", "age", "status", "futime"):
        assert (pbcseq.groupby("id")[col].nunique() == 1).all(), col


def test_codes_match_numerically() -> None:
    fm = FieldMap(column="trt", codes={"1": "DPCA", "0": "placebo"})
    assert fm.decode("1") == "DPCA"
    assert fm.decode(1) == "DPCA"
    assert fm.decode(1.0) == "DPCA"
    assert fm.decode("0.0") == "placebo"
    assert fm.decode("") is None
    assert fm.decode(float("nan")) is None
    with pytest.raises(ValueError, match="column 'trt': value 2 has no code"):
        fm.decode(2)


def test_analyte_columns_convert_without_range_errors(pbcseq: pd.DataFrame) -> None:
    out = {a.analyte: a.to_canonical(pbcseq[a.column].to_numpy()) for a in MAP.analytes}
    assert out["bilirubin"][0] == pytest.approx(14.5 * 17.1)
    assert out["albumin"][0] == pytest.approx(26.0)
    assert out["cholesterol"][0] == pytest.approx(261.0 / 38.67)
    assert out["platelets"][0] == 190.0
    assert np.isnan(out["cholesterol"]).sum() == 821  # missing stays missing
    units = {a.analyte: a.unit for a in MAP.analytes}
    assert units["ast"] == "U/L"  # documented: the file's 'U/mL' label is wrong


def test_clinical_columns_decode(pbcseq: pd.DataFrame) -> None:
    by_field = {c.field: c for c in MAP.clinical}
    assert set(pbcseq.edema.map(by_field["edema"].decode)) == {
        "none",
        "untreated_or_resolved",
        "despite_diuretics",
    }
    assert by_field["ascites"].decode(1.0) is True
    assert by_field["ascites"].decode(None) is None
    assert by_field["histologic_stage"].decode("4") == 4
    with pytest.raises(ValueError, match="not an integer"):
        by_field["histologic_stage"].decode("2.5")


def test_bad_map_errors_have_paths(tmp_path: Path) -> None:
    f = tmp_path / "bad.map.toml"
    f.write_text(
        """
protocol = "mayo-pbc"
[participant]
id = "id"
site = { value = "MAYO", column = "site" }
arm = { column = "trt" }
sex = { column = "sex", codes = { f = "female" } }
[visit]
day = "day"
[[analytes]]
column = "bili"
analyte = "bilirubin"
unit = "mmol/L"
[[analytes]]
column = "ast"
analyte = "ast"
unit = "U/L"
colour = "red"
"""
    )
    with pytest.raises(ProtocolError) as exc:
        load_model_file(f, VisitImportMap)
    got = {i.path: i.message for i in exc.value.issues}
    assert "exactly one of 'column' or 'value'" in got["participant.site"]
    assert "not allowed" in got["participant.sex"]
    assert "mmol/L" in got["analytes[0]"]
    assert got["analytes[1].colour"] == "unknown key"


def test_map_against_wrong_protocol() -> None:
    issues = MAP.check_against(load_protocol("kharaziha2009"))
    paths = {i.path for i in issues}
    assert {"protocol", "participant.arm", "participant.site", "participant.etiology"} <= paths
