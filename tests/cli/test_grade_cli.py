"""``hepatrial grade``: CTCAE v5.0 grades for a CSV file."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hepatrial.cli import app

runner = CliRunner()


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


def _read(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


GOOD = (
    "participant,Term,value,unit,uln,lln,baseline,anticoagulated\n"
    "P01,Alanine aminotransferase increased,121.0,U/L,40,,40,\n"
    "P01,ALT increased,0130,U/L,40,,,\n"
    "P02,Platelet count decreased,049,10^9/L,,150,,\n"
    "P02,Platelet count decreased,100,10^9/L,,,,\n"
    "P03,INR increased,1.30,,,,1.0,yes\n"
    "P03,INR increased,1.30,,,,,\n"
    "P04,Hypoalbuminemia,2.9,g/dL,,3.5,,\n"
    "P04,Creatinine increased,1.61,mg/dL,1.0,,0.5,\n"
    "P05,Blood bilirubin increased,  41 ,umol/L,39,,40,\n"
    "P05,,,,,,,\n"
)


def test_grade_writes_input_columns_plus_grade(tmp_path: Path) -> None:
    src = _write(tmp_path / "labs.csv", GOOD)
    out = tmp_path / "graded.csv"
    result = runner.invoke(app, ["grade", str(src), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "graded 10 rows" in result.output
    rows = _read(out)
    in_rows = list(csv.reader(GOOD.splitlines()))
    assert rows[0] == [*in_rows[0], "ctcae_grade"]
    # every input cell unchanged, as text (leading zeros, trailing zeros, blanks kept)
    assert [r[:-1] for r in rows[1:]] == in_rows[1:]
    assert rows[2][2] == "0130"
    assert rows[3][2] == "049"
    assert rows[5][2] == "1.30"
    assert rows[9][2] == "  41 "
    assert [r[-1] for r in rows[1:]] == ["2", "2", "3", "", "1", "1", "2", "3", "1", ""]


def test_grade_minimal_columns(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.csv", "term,value\nINR increased,2.6\nINR increased,1.1\n"
                                      "ALT increased,500\n")
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["grade", str(src), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert _read(out) == [["term", "value", "ctcae_grade"], ["INR increased", "2.6", "3"],
                          ["INR increased", "1.1", "0"], ["ALT increased", "500", ""]]


def test_inr_rule_admiral(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.csv", "term,value,baseline\nINR increased,1.5,0.6\n"
                                      "INR increased,1.2,1.0\n")
    out = tmp_path / "out.csv"
    assert runner.invoke(app, ["grade", str(src), "-o", str(out)]).exit_code == 0
    assert [r[-1] for r in _read(out)[1:]] == ["1", "0"]
    result = runner.invoke(app, ["grade", str(src), "-o", str(out), "--inr-rule", "admiral"])
    assert result.exit_code == 0, result.output
    assert [r[-1] for r in _read(out)[1:]] == ["2", "1"]


@pytest.mark.parametrize(
    ("body", "row", "line", "column", "reason"),
    [
        ("ALT increased,50,40\nALT increased,abc,40\n", 2, 3, "value", "is not a number"),
        ("ALT increased,50,40\nALT increased,50,0\n", 2, 3, "ULN", "greater than 0"),
        ("Thrombocytopenia,50,\n", 1, 2, "Term", "CTCAE v6.0"),
        ("Anemia,9,\n", 1, 2, "Term", "not a CTCAE v5.0 term"),
        ("ALT increased,-3,40\n", 1, 2, "value", "greater than 0"),
    ],
)
def test_bad_row_stops_run(tmp_path: Path, body: str, row: int, line: int, column: str,
                           reason: str) -> None:
    src = _write(tmp_path / "in.csv", "Term,value,ULN\n" + body)
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["grade", str(src), "-o", str(out)])
    assert result.exit_code == 2
    assert f"data row {row} (line {line})" in result.output
    assert f"column {column!r}" in result.output
    assert reason in result.output
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]  # no temp file left


def test_bad_row_line_number_counts_multiline_fields(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.csv",
                 'note,term,value,uln\n"two\nlines",ALT increased,50,40\n'
                 "x,ALT increased,50,-40\n")
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["grade", str(src), "-o", str(out)])
    assert result.exit_code == 2
    assert "data row 2 (line 4)" in result.output
    assert "column 'uln'" in result.output


def test_bad_row_keeps_existing_output(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.csv", "term,value\nALT increased,zero\n")
    out = _write(tmp_path / "out.csv", "previous\n")
    result = runner.invoke(app, ["grade", str(src), "-o", str(out)])
    assert result.exit_code == 2
    assert out.read_text() == "previous\n"


def test_errors_coerce_gives_empty_grade(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.csv",
                 "term,value,uln,baseline\nALT increased,50,40,\nALT increased,abc,40,\n"
                 "Thrombocytopenia,20,,\nALT increased,130,40,-1\n")
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["grade", str(src), "-o", str(out), "--errors", "coerce"])
    assert result.exit_code == 0, result.output
    rows = _read(out)
    assert [r[-1] for r in rows[1:]] == ["1", "", "", ""]
    assert rows[2][1] == "abc"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("term,unit\nALT increased,U/L\n", "missing required column(s): value"),
        ("term,value,ctcae_grade\nALT increased,1,\n", "already has a column"),
        ("term,value,term\nALT increased,1,x\n", "duplicate column"),
        ("", "empty file"),
        ("term,value,uln\nALT increased,50\n", "data row 1 (line 2): has 2 fields"),
    ],
)
def test_bad_file(tmp_path: Path, text: str, message: str) -> None:
    src = _write(tmp_path / "in.csv", text)
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["grade", str(src), "-o", str(out)])
    assert result.exit_code == 2
    assert message in result.output
    assert not out.exists()


def test_missing_input_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["grade", str(tmp_path / "nope.csv"), "-o",
                                 str(tmp_path / "out.csv")])
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_bom_and_crlf(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes("\ufeffterm,value,uln\r\nALT increased,130,40\r\n".encode())
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["grade", str(src), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert _read(out) == [["term", "value", "uln", "ctcae_grade"],
                          ["ALT increased", "130", "40", "2"]]


def test_header_only(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.csv", "term,value\n")
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["grade", str(src), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert _read(out) == [["term", "value", "ctcae_grade"]]


def test_grade_is_registered() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "grade" in result.output
    result = runner.invoke(app, ["grade", "--help"])
    assert result.exit_code == 0
    assert "--inr-rule" in result.output


def test_grades_in_chunks_with_bounded_memory(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunked grading gives the same file as one chunk, and row numbers across chunks."""
    from hepatrial.cli import grade as grade_module

    src = _write(tmp_path / "in.csv", GOOD)
    whole = tmp_path / "whole.csv"
    assert runner.invoke(app, ["grade", str(src), "-o", str(whole)]).exit_code == 0
    monkeypatch.setattr(grade_module, "CHUNK_ROWS", 3)
    chunked = tmp_path / "chunked.csv"
    res = runner.invoke(app, ["grade", str(src), "-o", str(chunked)])
    assert res.exit_code == 0, res.output
    assert chunked.read_bytes() == whole.read_bytes()
    lines = GOOD.splitlines()
    bad = "\n".join([*lines[:8], "P09,INR increased,-1,,,,,", *lines[8:]]) + "\n"
    out = tmp_path / "bad.csv"
    res = runner.invoke(app, ["grade", str(_write(tmp_path / "b.csv", bad)), "-o", str(out)])
    assert res.exit_code == 2
    assert "data row 8 (line 9)" in res.output and "'value'" in res.output
    assert not out.exists()
