"""Whole-file validation of lab files (pure pandas, no database)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from hepatrial.ingest.validate import (
    ImportFileError,
    read_text_csv,
    validate_labs,
)

TODAY = dt.date(2026, 1, 1)


@pytest.fixture()
def catalog():
    from hepatrial.ingest.catalog import registry_catalog

    return registry_catalog()


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "labs.csv"
    p.write_text(text, encoding="utf-8")
    return p


GOOD = """participant,visit,analyte,value,unit,date,lab
P01,D0,bilirubin,1.20,mg/dL,2024-01-02,central
P01,D0,inr,1.4,1,2024-01-02,central
P02,W1,albumin,31,g/L,2024-01-09,
"""


def test_good_file_validates_and_keeps_text(tmp_path, catalog):
    frame = read_text_csv(_write(tmp_path, GOOD), required=("participant", "visit"))
    v = validate_labs(frame, catalog=catalog, visits={"D0", "W1"},
                      participants={"P01", "P02"}, today=TODAY)
    assert v.ok, v.rejects
    assert list(v.frame["value"]) == ["1.20", "1.4", "31"]
    assert v.frame["value_canonical"].tolist() == pytest.approx([1.2 * 17.1, 1.4, 31.0])
    assert list(v.frame["unit_canonical"]) == ["umol/L", "1", "g/L"]
    assert list(v.frame["row"]) == [1, 2, 3]


BAD = """participant,visit,analyte,value,unit,date
P01,D0,bilirubin,1.2,mg/dL,2024-01-02
P99,D0,bilirubin,1.2,mg/dL,2024-01-02
P01,X9,bilirubin,1.2,mg/dL,2024-01-02
P01,D0,bilirubinx,1.2,mg/dL,2024-01-02
P01,D0,creatinine,1.2,mmol/dL,2024-01-02
P01,D0,albumin,abc,g/L,2024-01-02
P01,D0,inr,99,1,2024-01-02
P01,W1,inr,1.1,1,2024-02-30
P01,D0,bilirubin,1.3,mg/dL,2024-01-02
P01,W1,albumin,,g/L,2024-01-09
P01,W2,albumin,30,g/L,2030-01-09
P01,W2,sodium,"1,5",mmol/L,2024-01-09
"""


def test_every_bad_row_is_listed_with_reason(tmp_path, catalog):
    frame = read_text_csv(_write(tmp_path, BAD))
    v = validate_labs(frame, catalog=catalog, visits={"D0", "W1", "W2"},
                      participants={"P01"}, today=TODAY)
    assert not v.ok
    got = {(r.row, r.column): r.reason for r in v.rejects.itertuples()}
    assert got[(2, "participant")] == "unknown participant"
    assert got[(3, "visit")].startswith("unknown visit code")
    assert "X9" in set(v.rejects["value"])
    assert got[(4, "analyte")] == "unknown analyte"
    assert got[(5, "unit")].startswith("unit not accepted for creatinine")
    assert got[(6, "value")] == "'abc' is not a number"
    assert got[(7, "value")].startswith("out of range")
    assert got[(8, "date")].startswith("not a valid date")
    assert got[(9, "analyte")].startswith("duplicate of row 1")
    assert got[(10, "value")] == "missing value"
    assert got[(11, "date")] == "date is in the future"
    assert got[(12, "value")] == ("'1,5' contains ','; use a point as the decimal mark and no "
                                  "thousands separator")
    assert 1 not in set(v.rejects["row"])
    assert v.n_rejected_rows == 11
    assert list(v.rejects["row"]) == sorted(v.rejects["row"])


def test_missing_columns_named(tmp_path):
    p = _write(tmp_path, "participant,visit,value\nP01,D0,1\n")
    with pytest.raises(ImportFileError, match=r"missing required column.*analyte.*unit.*date"):
        read_text_csv(p, required=("participant", "visit", "analyte", "value", "unit", "date"))


def test_unit_spelling_normalised(tmp_path, catalog):
    p = _write(tmp_path, "participant,visit,analyte,value,unit,date\n"
                         "P01,D0,bilirubin,20,µmol/L,2024-01-02\n"
                         "P01,D0,platelets,150,10^3/uL,2024-01-02\n")
    v = validate_labs(read_text_csv(p), catalog=catalog, visits={"D0"},
                      participants=None, today=TODAY)
    assert v.ok, v.rejects
    assert np.allclose(v.frame["value_canonical"], [20.0, 150.0])


def test_terminal_table_is_capped_with_a_count(tmp_path):
    import pandas as pd
    from rich.console import Console

    from hepatrial.ingest.report import render_rejects, write_rejects

    rej = pd.DataFrame({"row": range(1, 121), "column": "value", "value": "x",
                        "reason": "not a number"})
    console = Console(record=True, width=120)
    render_rejects(rej, console, title="labs.csv", cap=50)
    text = console.export_text()
    assert "120 row(s) rejected, 120 problem(s)" in text
    assert "... and 70 more problem(s) not shown" in text
    assert " 50 " in text and " 51 " not in text
    out = write_rejects(rej, tmp_path / "r.csv")
    assert len(pd.read_csv(out)) == 120  # the CSV has every problem
