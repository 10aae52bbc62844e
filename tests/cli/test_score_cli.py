"""``hepatrial score`` end to end: columns, text kept as entered, errors, atomic output."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hepatrial.cli import app
from hepatrial.scores.table import SCORE_COLUMNS
from tests.conftest import REPO_ROOT

runner = CliRunner()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_example_file_all_scores(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    res = runner.invoke(app, ["score", str(REPO_ROOT / "examples" / "labs.csv"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    rows = _read(out)
    assert list(rows[0])[-len(SCORE_COLUMNS):] == list(SCORE_COLUMNS)
    first = rows[0]
    # inputs kept exactly as entered (trailing zero of 1.90 not rounded away)
    assert first["inr"] == "1.90" and first["bilirubin_umol_l"] == "46"
    assert first["meld_optn2002"] == "20" and first["child_pugh_class"] == "B"
    assert float(first["meld_kamath2001"]) == pytest.approx(19.7932158, abs=1e-6)
    assert first["meld_na_optn2016"] == "23" and first["albi_grade"] == "2"
    # the row with no bilirubin and no sodium: MELD family empty, nothing invented
    last = rows[-1]
    assert last["bilirubin_umol_l"] == "" and last["meld_optn2002"] == ""
    assert last["child_pugh_points"] == "" and last["meld_xi"] == ""


def test_only_the_scores_the_columns_allow(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.csv", "id,bilirubin_mg_dl,creatinine_mg_dl,inr,note\n"
                 "a,0.7,1.2,1.0,x\nb,12,1.2,2.6,\"with, comma\"\n")
    out = tmp_path / "out.csv"
    res = runner.invoke(app, ["score", str(src), "-o", str(out)])
    assert res.exit_code == 0, res.output
    rows = _read(out)
    assert list(rows[0]) == ["id", "bilirubin_mg_dl", "creatinine_mg_dl", "inr", "note",
                             "meld_kamath2001", "meld_continuous", "meld_optn2002", "meld_xi"]
    assert [r["meld_optn2002"] for r in rows] == ["8", "28"]  # amscorer vignette rows
    assert rows[1]["note"] == "with, comma"


def test_bad_row_stops_with_row_column_reason_and_writes_nothing(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.csv", "bilirubin_umol_l,creatinine_umol_l,inr\n"
                 "40,100,1.2\n40,-3,1.2\n40,100,abc\n")
    out = tmp_path / "out.csv"
    res = runner.invoke(app, ["score", str(src), "-o", str(out)])
    assert res.exit_code == 2
    assert "row 2 (line 3)" in res.output and "creatinine_umol_l" in res.output
    assert "-3" in res.output and "greater than 0" in res.output
    assert not out.exists() and list(tmp_path.iterdir()) == [src]
    res = runner.invoke(app, ["score", str(src), "-o", str(out), "--errors", "coerce"])
    assert res.exit_code == 0, res.output
    rows = _read(out)
    assert rows[0]["meld_optn2002"] != "" and rows[1]["meld_optn2002"] == ""
    assert rows[2]["meld_optn2002"] == "" and rows[2]["inr"] == "abc"


def test_text_error_and_unknown_category_name_the_row(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.csv", "bilirubin_mg_dl,creatinine_mg_dl,inr\n1,1,1\n1,1,1..2\n")
    res = runner.invoke(app, ["score", str(src), "-o", str(tmp_path / "o.csv")])
    assert res.exit_code == 2 and "row 2 (line 3)" in res.output and "'inr'" in res.output
    src = _write(tmp_path / "in2.csv", "bilirubin_mg_dl,albumin_g_dl,inr,ascites,encephalopathy\n"
                 "1,4,1,none,none\n1,4,1,none,none\n1,4,1,lots,none\n")
    res = runner.invoke(app, ["score", str(src), "-o", str(tmp_path / "o.csv")])
    assert res.exit_code == 2 and "row 3 (line 4)" in res.output and "lots" in res.output


def test_header_problems(tmp_path: Path) -> None:
    for header, message in (("a,b\n1,2\n", "no score input columns"),
                            ("inr,inr\n1,1\n", "more than once"),
                            ("inr,meld_optn2002\n1,1\n", "output score column"),
                            ("bilirubin_mg_dl,bilirubin_umol_l,creatinine_mg_dl,inr\n1,17,1,1\n",
                             "two units")):
        src = _write(tmp_path / "in.csv", header)
        res = runner.invoke(app, ["score", str(src), "-o", str(tmp_path / "o.csv")])
        assert res.exit_code == 2, header
        assert message in res.output.replace("\n", " "), res.output


def test_streams_across_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hepatrial.cli import _score_file

    monkeypatch.setattr(_score_file, "BLOCK_SIZE", 4096)  # force many blocks
    monkeypatch.setattr(_score_file, "BATCH_ROWS", 700)  # and many scored batches
    n = 3000
    lines = ["bilirubin_mg_dl,creatinine_mg_dl,inr"] + [
        f"{1 + i % 30},{0.5 + i % 7},{1 + (i % 5) / 10}" for i in range(n)
    ]
    lines[2501] = "1,1,-1"  # data row 2501
    src = _write(tmp_path / "in.csv", "\n".join(lines) + "\n")
    res = runner.invoke(app, ["score", str(src), "-o", str(tmp_path / "o.csv")])
    assert res.exit_code == 2 and "row 2501 (line 2502)" in res.output
    lines[2501] = "1,1,1"
    src = _write(tmp_path / "in.csv", "\n".join(lines) + "\n")
    res = runner.invoke(app, ["score", str(src), "-o", str(tmp_path / "o.csv")])
    assert res.exit_code == 0
    rows = _read(tmp_path / "o.csv")
    assert len(rows) == n
    from hepatrial import scores

    expect = scores.meld([float(r["bilirubin_mg_dl"]) for r in rows],
                         [float(r["creatinine_mg_dl"]) for r in rows],
                         [float(r["inr"]) for r in rows])
    assert [float(r["meld_optn2002"]) for r in rows] == expect.tolist()


def test_cli_starts_without_heavy_imports() -> None:
    heavy = ["statsmodels", "scipy", "django", "matplotlib", "great_tables", "pandas"]
    code = ("import sys, hepatrial.cli; "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]", f"imported at CLI start-up: {res.stdout}"


def test_score_path_imports_no_pandas(tmp_path: Path) -> None:
    """pyarrow imports pandas (~0.2 s) on its first pa.array()/to_numpy(); the score path
    moves data through buffers instead and never needs it."""
    out = tmp_path / "out.csv"
    code = ("import sys\nfrom hepatrial.cli import app\n"
            f"try:\n    app(['score', {str(REPO_ROOT / 'examples' / 'labs.csv')!r}, '-o', "
            f"{str(out)!r}])\nexcept SystemExit as exc:\n    assert not exc.code\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pandas', 'scipy', 'django', 'matplotlib')))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]", res.stdout
    assert _read(out)[0]["meld_optn2002"] == "20"


def test_text_kept_as_entered_and_numbers_read_alike(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Blanks, missing markers, exponents and quoted text: the input text comes back as
    entered, and a number reads the same in a block of plain numbers (Arrow's fast parse)
    as in a block that needs trimming (the careful path)."""
    from hepatrial.cli import _score_file

    monkeypatch.setattr(_score_file, "BLOCK_SIZE", 64)  # about one row per block
    monkeypatch.setattr(_score_file, "BATCH_ROWS", 2)
    lines = ["id,bilirubin_mg_dl,creatinine_mg_dl,inr,note",
             'a,1.20,1.0,1.5,"with, comma"',
             'b, 1.20 ,1.0,1.5,"say ""hi"""',
             "c,NA,1.0,1.5,",
             "d,12e-1,1.0,1.50,\"two\nlines\"",
             "e,1.2,1.0,1.5,é ü"]
    src = _write(tmp_path / "in.csv", "\n".join(lines) + "\n")
    out = tmp_path / "out.csv"
    res = runner.invoke(app, ["score", str(src), "-o", str(out)])
    assert res.exit_code == 0, res.output
    rows = _read(out)
    with src.open(newline="") as fh:
        entered = list(csv.DictReader(fh))
    for row, given in zip(rows, entered, strict=True):
        assert {k: row[k] for k in given} == given
    meld = [r["meld_kamath2001"] for r in rows]
    assert meld[0] == meld[1] == meld[3] == meld[4] != "" and meld[2] == ""


def test_bad_row_in_a_later_block_leaves_nothing(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from hepatrial.cli import _score_file

    monkeypatch.setattr(_score_file, "BLOCK_SIZE", 4096)
    monkeypatch.setattr(_score_file, "BATCH_ROWS", 1000)
    lines = ["bilirubin_mg_dl,creatinine_mg_dl,inr"] + ["1.5,1.1,1.2"] * 5000
    lines[4000] = "1.5,0,1.2"
    src = _write(tmp_path / "in.csv", "\n".join(lines) + "\n")
    out = tmp_path / "out.csv"
    res = runner.invoke(app, ["score", str(src), "-o", str(out)])
    assert res.exit_code == 2 and "row 4000 (line 4001)" in res.output
    assert list(tmp_path.iterdir()) == [src]


def test_output_has_the_usual_permissions(tmp_path: Path) -> None:
    import os

    out = tmp_path / "out.csv"
    res = runner.invoke(app, ["score", str(REPO_ROOT / "examples" / "labs.csv"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask


def test_ragged_or_undecodable_file_is_refused_with_its_row(tmp_path: Path) -> None:
    src = _write(tmp_path / "in.csv", "bilirubin_mg_dl,creatinine_mg_dl,inr\n1,1,1\n"
                 '"a\nb",1,1\n1,1\n1,1,1\n')
    out = tmp_path / "out.csv"
    res = runner.invoke(app, ["score", str(src), "-o", str(out)])
    assert res.exit_code == 2, res.output
    flat = " ".join(res.output.split())
    assert "row 3 (line 5): has 2 fields, the header has 3" in flat
    assert list(tmp_path.iterdir()) == [src]
    src.write_bytes(b"inr,bilirubin_mg_dl,creatinine_mg_dl\n1,\xff,1\n")
    res = runner.invoke(app, ["score", str(src), "-o", str(out)])
    assert res.exit_code == 2
    assert "line 2 (byte 40) is not UTF-8 (byte 0xff); save the file as UTF-8" in res.output
    assert list(tmp_path.iterdir()) == [src]


def test_unwritable_output_is_a_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "dir" / "out.csv"
    res = runner.invoke(app, ["score", str(REPO_ROOT / "examples" / "labs.csv"), "-o", str(out)])
    assert res.exit_code == 2
    assert "cannot write" in res.output and "No such file or directory" in res.output
