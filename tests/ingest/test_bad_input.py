"""Issue 8: every importer refuses bad input cleanly, naming row, column and reason (in-process
SQLite store; the subprocess and PostgreSQL halves are in test_bad_input_e2e.py)."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from hepatrial.errors import NotFoundError, PermissionDenied, RecordLocked
from hepatrial.ingest.importer import import_labs
from hepatrial.ingest.participants import import_participants
from hepatrial.ingest.report import ImportRefused
from hepatrial.ingest.validate import ImportFileError
from hepatrial.ingest.visits import import_visits

from .conftest import store_counts

TODAY = dt.date(2026, 1, 1)
HEAD = "participant,visit,analyte,value,unit,date,lab\n"
ROW = "P01,D0,bilirubin,1.20,mg/dL,2024-01-15,central\n"
runner = CliRunner()


def _write(tmp_path: Path, text: str | bytes, name: str = "labs.csv") -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def _reasons(exc: ImportRefused) -> dict[tuple[int, str], str]:
    return {(int(r.row), str(r.column)): str(r.reason) for r in exc.rejects.itertuples()}


# ------------------------------------------------------------------ the file as a whole


@pytest.mark.parametrize(("text", "message"), [
    # pandas would read the second header as value.1 and take the first silently
    ("participant,visit,analyte,value,unit,date,value\n", "duplicate column(s) in header: value"),
    ("participant,visit,analyte,value,unit,date,comment\n",
     "unknown column(s): comment (a file may have only: participant, visit, analyte, value, "
     "unit, date, lab; nothing is ignored silently)"),
    ("participant,visit,analyte,value,unit\n", "missing required column(s): date"),
    ("", "empty file (no header)"),
    (HEAD + "P01,D0,bilirubin,1.2,mg/dL\n", "row 1 (line 2) has 5 field(s); the header has 7"),
    (HEAD + ROW.replace("\n", ",x\n"), "row 1 (line 2) has 8 field(s)"),
    (b"participant,visit,analyte,value,unit,date\nP01,D0,bilirubin,1.2,\xb5mol/L,2024-01-15\n",
     "line 2 (byte 64) is not UTF-8 (byte 0xb5); save the file as UTF-8"),
])
def test_file_refused_by_name(kharaziha_store: Any, tmp_path: Path, text: str | bytes,
                              message: str) -> None:
    before = store_counts()
    with pytest.raises(ImportFileError) as exc:
        import_labs(_write(tmp_path, text), today=TODAY)
    assert message in str(exc.value)
    assert store_counts() == before
    assert not (tmp_path / "labs.csv.rejects.csv").exists()


def test_missing_file_and_directory(kharaziha_store: Any, tmp_path: Path) -> None:
    with pytest.raises(ImportFileError, match="no such file"):
        import_labs(tmp_path / "nope.csv")
    with pytest.raises(ImportFileError, match="not a file"):
        import_labs(tmp_path)


# ------------------------------------------------------------------ numbers, dates, text


def test_numbers_dates_and_text_refused_with_reason(kharaziha_store: Any, tmp_path: Path) -> None:
    rows = [
        "P01,D0,bilirubin,4_6,umol/L,2024-01-15,central",           # 1: read as 46 by float()
        "P01,D0,creatinine,١٢٠,umol/L,2024-01-15,central",          # 2: Arabic-Indic digits
        "P01,D0,inr,inf,1,2024-01-15,central",                      # 3
        "P01,D0,albumin,1e999,g/L,2024-01-15,central",              # 4: overflows
        "P01,D0,sodium,1e300,mmol/L,2024-01-15,central",            # 5: beyond the hard limit
        "P02,D0,bilirubin,1.2,mg/dL,1800-01-01,central",            # 6: specimen date of 1800
        "P02,D0,creatinine,90,umol/L,0000-01-01,central",           # 7: year 0
        "P02,D0,inr,1.1,1,1955-05-05,central",                      # 8: before birth (1960)
        "P02,D0,albumin,30,g/L,2024-01-16," + "L" * 300,            # 9: 300-character lab
        "P02,D0,sodium,1." + "0" * 60 + ",mmol/L,2024-01-16,central",  # 10: 62-character value
        "P02,D0,ast,40,U/L,2024-01-16,cen\x00tral",                 # 11: NUL byte
        "P02,D0,alt,40,U/L,2024-01-16,\x1b[31mred",                 # 12: escape sequence
    ]
    path = _write(tmp_path, HEAD + "\n".join(rows) + "\n")
    before = store_counts()
    with pytest.raises(ImportRefused) as exc:
        import_labs(path, today=TODAY)
    assert store_counts() == before
    got = _reasons(exc.value)
    assert got[(1, "value")] == "'4_6' contains '_'; write the number without separators"
    assert got[(2, "value")] == "'١٢٠' uses the non-ASCII digit '١'; write digits 0-9"
    assert got[(3, "value")] == "'inf' is not a finite number"
    assert got[(4, "value")] == "'1e999' is too large to be a number"
    assert got[(5, "value")].startswith("out of range: 1e+300 mmol/L")
    assert got[(6, "date")] == ("before 1900: not a plausible date (no participant was born "
                                "before 1900)")
    assert got[(7, "date")] == "not a valid date (expected YYYY-MM-DD)"
    assert got[(8, "date")] == "before the participant was born (year of birth 1960)"
    assert got[(9, "lab")] == "is 300 characters long; at most 200 are allowed"
    assert got[(10, "value")] == "is 62 characters long; at most 50 are allowed"
    assert got[(11, "lab")] == "contains the control character NUL (U+0000)"
    assert got[(12, "lab")] == "contains the control character ESCAPE (U+001B)"
    assert set(exc.value.rejects["row"]) == set(range(1, 13))
    # the rejects CSV shows the control characters as escapes, never raw
    on_disk = (tmp_path / "labs.csv.rejects.csv").read_text(encoding="utf-8")
    assert "cen\\x00tral" in on_disk and "\x00" not in on_disk and "\x1b" not in on_disk


def test_visit_rules_for_the_visits_an_import_dates(kharaziha_store: Any, tmp_path: Path
                                                    ) -> None:
    """A visit the import dates (its earliest specimen date) follows the store's visit rules:
    not before day 0 unless a screening visit, not in the future, the participant enrolled."""
    from hepatrial.trials import services

    services.screen_participant(study_id="P03", site="S01", sex="F", year_of_birth=1970,
                                etiology="HCV", screening_date=dt.date(2024, 1, 1))
    path = _write(tmp_path, HEAD + "P01,W1,bilirubin,1.2,mg/dL,2024-01-10,\n"  # day -5
                  "P01,SCR,bilirubin,1.3,mg/dL,2024-01-02,\n"                  # screening: ok
                  "P02,W4,bilirubin,1.2,mg/dL,2025-12-31,\n"
                  "P03,D0,bilirubin,1.2,mg/dL,2024-01-20,\n")
    with pytest.raises(ImportRefused) as exc:
        import_labs(path, today=dt.date(2025, 12, 30))
    got = _reasons(exc.value)
    assert got[(1, "date")] == ("visit W1 would be dated 2024-01-10 (its earliest specimen "
                                "date): 2024-01-10 is before enrolment (day 0 = 2024-01-15); "
                                "only a screening visit (before day 0) can be")
    assert (2, "date") not in got
    assert got[(3, "date")] == "date is in the future"
    assert got[(4, "date")].endswith("the participant is not enrolled (no day 0): visits "
                                     "follow enrolment")


def test_visits_file_plausibility(mayo_store: Any, pbcseq_path: Path, tmp_path: Path) -> None:
    """Issue 8: age -5, 0 or 200, a death before enrolment, day = 1e9, futime = 1e12, a
    formula-like or 60-character id, a NUL byte: each refused on its row and column."""
    raw = pd.read_csv(pbcseq_path, dtype=str, keep_default_na=False)
    raw = raw.loc[raw["id"].isin(["1", "2", "3", "4"])].reset_index(drop=True)
    first = {sid: i for i, sid in reversed(list(enumerate(raw["id"])))}
    raw.loc[raw["id"] == "1", "age"] = "-5"
    raw.loc[raw["id"] == "2", "age"] = "0"
    raw.loc[raw["id"] == "3", "age"] = "200"
    raw.loc[raw["id"] == "4", ["status", "futime"]] = ["2", "-5"]   # died before enrolment
    raw.loc[1, "day"] = "1e9"
    raw.loc[3, "day"] = "4_6"
    raw.loc[5, "day"] = "1.5"
    raw.loc[raw["id"] == "2", "futime"] = "1e12"
    raw.loc[raw["id"] == "3", "id"] = "=HYPERLINK(\"http://x\")"
    raw.loc[raw["id"] == "4", "id"] = "4" * 60
    raw.loc[7, "bili"] = "1.\x002"
    path = tmp_path / "visits.csv"
    raw.to_csv(path, index=False)
    before = store_counts()
    with pytest.raises(ImportRefused) as exc:
        import_visits(path, "mayo-pbc", today=TODAY)
    assert store_counts() == before
    got = _reasons(exc.value)
    row = {sid: first[sid] + 1 for sid in first}
    assert got[(row["1"], "age")] == "age -5 years is not plausible (it must be more than 0 years)"
    assert got[(row["2"], "age")] == "age 0 years is not plausible (it must be more than 0 years)"
    assert got[(row["3"], "age")] == "age 200 years is not plausible (at most 120 years)"
    assert got[(row["4"], "futime")] == ("status day -5 is before enrolment (day 0): the status "
                                         "date cannot be before day 0")
    most = (dt.date.max - dt.date(2000, 1, 1)).days
    assert got[(row["2"], "futime")] == (f"status day 1000000000000 is not plausible (at most "
                                         f"{most})")
    assert got[(2, "day")] == "visit day gives no calendar date from day 0 = 2000-01-01 (--day0)"
    assert got[(4, "day")] == "visit day: '4_6' contains '_'; write the number without separators"
    assert got[(6, "day")] == "visit day is not a whole number"
    assert got[(row["3"], "id")].startswith("starts with '=': identifiers may not start with")
    assert got[(row["4"], "id")] == f"{'4' * 60!r} has 60 characters (at most 40)"
    assert got[(8, "bili")] == "'1.\\x002' is not a number"  # repr: the NUL shown escaped


def test_visits_in_the_future_and_visits_after_death(mayo_store: Any, pbcseq_path: Path,
                                                     tmp_path: Path) -> None:
    raw = pd.read_csv(pbcseq_path, dtype=str, keep_default_na=False).head(12)
    path = tmp_path / "visits.csv"
    raw.to_csv(path, index=False)
    with pytest.raises(ImportRefused) as exc:  # --day0 2026-01-01: visits in 2034
        import_visits(path, "mayo-pbc", day0=dt.date(2026, 1, 1), today=dt.date(2026, 6, 1))
    reasons = list(exc.value.rejects["reason"])
    assert ("visit day 3226 is 2034-11-01 (day 0 = 2026-01-01, --day0): 2034-11-01 is in the "
            "future (today is 2026-06-01)") in reasons
    futime = exc.value.rejects.query("column == 'futime'")
    assert list(futime["row"]) == [1, 3, 12]  # each participant's first row, once
    assert futime["reason"].iloc[0] == ("status day 400 is 2027-02-05, in the future (today "
                                         "is 2026-06-01; day 0 = 2026-01-01, --day0)")
    raw.loc[raw["id"] == "1", "futime"] = "100"  # participant 1 died on day 100 ...
    raw.to_csv(path, index=False)
    with pytest.raises(ImportRefused) as exc:
        import_visits(path, "mayo-pbc", today=TODAY)
    got = _reasons(exc.value)
    assert got[(2, "day")] == "visit on day 192 is after the participant's death on day 100"


# ------------------------------------------------------------------ batch by batch, concurrency


def test_visits_batch_by_batch(mayo_store: Any, pbcseq_path: Path, tmp_path: Path) -> None:
    """pbcseq's first 20 rows, then the whole file: the new rows are imported and the re-sent
    ones are unchanged (it crashed with pandas MergeError: new visits all had visit_id -1)."""
    from hepatrial.trials import audit
    from hepatrial.trials.models import LabResult, Visit

    text = pbcseq_path.read_text().splitlines()
    part = tmp_path / "first20.csv"
    part.write_text("\n".join(text[:21]) + "\n")
    first = import_visits(part, "mayo-pbc")
    whole = import_visits(pbcseq_path, "mayo-pbc")
    assert whole.unchanged == first.created and whole.changed == 0
    assert LabResult.objects.count() == first.created + whole.created
    assert Visit.objects.count() == 1945
    again = import_visits(pbcseq_path, "mayo-pbc")
    assert (again.created, again.changed) == (0, 0)
    assert again.notes == ["every row is already stored unchanged: nothing to import"]
    assert audit.verify() == []


def test_labs_batch_by_batch(kharaziha_store: Any, tmp_path: Path) -> None:
    rows = ["P01,D0,bilirubin,1.2,mg/dL,2024-01-15,", "P01,D0,inr,1.3,1,2024-01-15,",
            "P01,W1,bilirubin,1.4,mg/dL,2024-01-22,", "P01,W1,inr,1.2,1,2024-01-22,",
            "P01,W2,inr,1.1,1,2024-01-29,", "P02,W2,inr,1.1,1,2024-01-30,"]
    r1 = import_labs(_write(tmp_path, HEAD + "\n".join(rows[:3]) + "\n", "a.csv"), today=TODAY)
    r2 = import_labs(_write(tmp_path, HEAD + "\n".join(rows) + "\n", "b.csv"), today=TODAY)
    assert (r1.created, r2.created, r2.unchanged, r2.changed) == (3, 3, 3, 0)


def test_labs_batch_by_batch_creating_visits(db: Any, tmp_path: Path) -> None:
    """Visits the file creates (an unscheduled code the participant does not have yet is
    refused; protocol visits not scheduled are created): several rows of one new visit."""
    from hepatrial.trials import services
    from hepatrial.trials.models import Visit
    from tests.store.conftest import enrol

    services.install_protocol("kharaziha2009")
    enrol(services, "K01")
    Visit.objects.filter(participant__study_id="K01", code__in=["W1", "W2"]).delete_with_reason(
        "test: visits not scheduled yet")
    rows = ["K01,D0,bilirubin,1.2,mg/dL,2008-01-20,", "K01,W1,bilirubin,1.4,mg/dL,2008-01-27,",
            "K01,W1,inr,1.2,1,2008-01-27,", "K01,W2,inr,1.1,1,2008-02-03,",
            "K01,W2,bilirubin,1.1,mg/dL,2008-02-03,"]
    r1 = import_labs(_write(tmp_path, HEAD + "\n".join(rows[:2]) + "\n", "a.csv"), today=TODAY)
    r2 = import_labs(_write(tmp_path, HEAD + "\n".join(rows) + "\n", "b.csv"), today=TODAY)
    assert (r1.created, r1.visits_created) == (2, 1)
    assert (r2.created, r2.unchanged, r2.visits_created) == (3, 2, 1)


# ------------------------------------------------------------------ rejects file, dry run


def test_rejects_file_that_cannot_be_written_keeps_the_reasons(kharaziha_store: Any,
                                                               tmp_path: Path) -> None:
    if os.geteuid() == 0:
        ro = Path("/proc/self")  # root writes anywhere: a folder no one can create files in
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    path = _write(tmp_path, HEAD + ROW.replace("1.20", "x"))
    with pytest.raises(ImportRefused) as exc:
        import_labs(path, today=TODAY, rejects_path=ro / "rejects.csv")
    assert exc.value.rejects_error is not None and exc.value.rejects_path is None
    assert _reasons(exc.value)[(1, "value")] == "'x' is not a number"
    from hepatrial.cli import app

    res = runner.invoke(app, ["import", "labs", str(path), "--rejects", str(ro / "r.csv")])
    assert res.exit_code == 74, res.output
    assert "'x' is not a number" in res.output  # the reasons are shown first
    assert f"the rejects file {ro / 'r.csv'} cannot be written" in res.output
    assert "nothing was imported" in res.output
    res = runner.invoke(app, ["import", "labs", str(path), "--dry-run", "--rejects",
                              str(ro / "r.csv")])
    assert res.exit_code == 74 and "'x' is not a number" in res.output


def test_dry_run_writes_no_rejects_file_unless_asked(kharaziha_store: Any, tmp_path: Path
                                                     ) -> None:
    from hepatrial.cli import app

    path = _write(tmp_path, HEAD + ROW.replace("1.20", "x"))
    res = runner.invoke(app, ["import", "labs", str(path), "--dry-run"])
    assert res.exit_code == 1 and "'x' is not a number" in res.output
    assert "no rejects file written (a dry run writes nothing" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labs.csv"]
    res = runner.invoke(app, ["import", "labs", str(path), "--dry-run", "--rejects",
                              str(tmp_path / "asked.csv")])
    assert res.exit_code == 1 and (tmp_path / "asked.csv").is_file()
    res = runner.invoke(app, ["import", "labs", str(path)])
    assert res.exit_code == 1 and (tmp_path / "labs.csv.rejects.csv").is_file()


def test_rejects_csv_neutralises_formulas(kharaziha_store: Any, tmp_path: Path) -> None:
    path = _write(tmp_path, HEAD + '"=HYPERLINK(""http://x"",""y"")",D0,inr,1.1,1,2024-01-15,\n'
                  "@SUM(A1),D0,inr,1.1,1,2024-01-15,\n")
    with pytest.raises(ImportRefused):
        import_labs(path, today=TODAY)
    rej = pd.read_csv(tmp_path / "labs.csv.rejects.csv", dtype=str, keep_default_na=False)
    assert list(rej["value"]) == ["'=HYPERLINK(\"http://x\",\"y\")", "'@SUM(A1)"]


# ------------------------------------------------------------------ users, locks


def test_unknown_or_unauthorised_user_is_refused(kharaziha_store: Any, tmp_path: Path) -> None:
    from django.contrib.auth import get_user_model

    from hepatrial.cli import app
    from hepatrial.trials import services

    path = _write(tmp_path, HEAD + ROW)
    users = get_user_model().objects.count()
    for dry in (False, True):
        with pytest.raises(NotFoundError, match="--user 'alcie': no such account"):
            import_labs(path, today=TODAY, user="alcie", dry_run=dry)
    assert get_user_model().objects.count() == users  # no account made for a typo
    services.create_user(username="mon", password=None, role="monitor", site_codes=["S01"])
    with pytest.raises(PermissionDenied, match="import_data: user 'mon' is monitor"):
        import_labs(path, today=TODAY, user="mon")
    assert runner.invoke(app, ["import", "labs", str(path), "--user", "alcie"]).exit_code == 2
    assert runner.invoke(app, ["import", "labs", str(path), "--user", "mon"]).exit_code == 3
    r = import_labs(path, today=TODAY, user="importer")
    assert r.created == 1


def test_import_into_a_locked_visit_exit_5(kharaziha_store: Any, tmp_path: Path) -> None:
    from hepatrial.cli import app
    from hepatrial.trials import services

    services.record_visit(participant="P01", visit_code="D0", actual_date="2024-01-15")
    services.create_user(username="dm", password=None, role="data-manager")
    services.lock(level="visit", participant="P01", visit_code="D0", user="dm", reason="clean")
    path = _write(tmp_path, HEAD + ROW)
    before = store_counts()
    for dry in (False, True):
        with pytest.raises(RecordLocked, match="visit D0 of participant P01 is locked"):
            import_labs(path, today=TODAY, dry_run=dry)
    res = runner.invoke(app, ["import", "labs", str(path)])
    assert res.exit_code == 5, res.output
    assert "visit D0 of participant P01 is locked" in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert store_counts() == before


# ------------------------------------------------------------------ participants importer


def test_participants_text_rules(db: Any, tmp_path: Path) -> None:
    from hepatrial.trials import services

    services.install_protocol("kharaziha2009")
    head = ("study_id,site,sex,year_of_birth,etiology,screening_date,consent_version,"
            "consent_date,enrolment_date\n")
    rows = ["=cmd|' /C calc'!A0,S01,F,1960,HCV,2024-01-02,,,",
            "K" * 60 + ",S01,F,1960,HCV,2024-01-02,,,",
            "K03,S01,F,1960,HCV,2024-01-02," + "v" * 60 + ",2024-01-02,",
            "K04,S01,F,1960,HCV,2024-01-02,1.0\x00,2024-01-02,",
            "K05,S01,F,1960,HCV,2024-01-02,,,"]
    path = _write(tmp_path, head + "\n".join(rows) + "\n", "ppl.csv")
    with pytest.raises(ImportRefused) as exc:
        import_participants(path)
    got = _reasons(exc.value)
    assert got[(1, "study_id")].startswith("starts with '='")
    assert got[(2, "study_id")] == "is 60 characters long; at most 40 are allowed"
    assert got[(3, "consent_version")] == "is 60 characters long; at most 50 are allowed"
    assert got[(4, "consent_version")] == "contains the control character NUL (U+0000)"
    assert set(exc.value.rejects["row"]) == {1, 2, 3, 4}


# ------------------------------------------------------------------ outputs


def test_export_gets_normal_permissions_and_neutral_cells(kharaziha_store: Any,
                                                          tmp_path: Path) -> None:
    from hepatrial.ingest import export

    old = os.umask(0o022)
    try:
        out = tmp_path / "ds.csv"
        export.write_dataset(out)
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        export.write_participants(tmp_path / "p.parquet")
        assert stat.S_IMODE((tmp_path / "p.parquet").stat().st_mode) == 0o644
        path = _write(tmp_path, HEAD + ROW.replace("1.20", "x"))
        with pytest.raises(ImportRefused):
            import_labs(path, today=TODAY)
        assert stat.S_IMODE((tmp_path / "labs.csv.rejects.csv").stat().st_mode) == 0o644
    finally:
        os.umask(old)
    frame = pd.DataFrame({"participant_id": ["=1+1", "K01", "-3", "@x"], "value": [1.0, 2, 3, 4],
                          "unit": ["+x", "umol/L", "1", "\tq"]})
    safe = export.csv_safe(frame)
    assert list(safe["participant_id"]) == ["'=1+1", "K01", "-3", "'@x"]
    assert list(safe["unit"]) == ["'+x", "umol/L", "1", "'\tq"]
    assert list(frame["participant_id"]) == ["=1+1", "K01", "-3", "@x"]  # input unchanged


def test_export_refuses_a_directory_as_output(kharaziha_store: Any, tmp_path: Path) -> None:
    from hepatrial.cli import app

    (tmp_path / "d.csv").mkdir()
    res = runner.invoke(app, ["export", "dataset", "-o", str(tmp_path / "d.csv")])
    assert res.exit_code == 2 and "is a directory" in res.output
    res = runner.invoke(app, ["export", "dataset", "-o", str(tmp_path / "no" / "d.csv")])
    assert res.exit_code == 74 and "cannot write" in res.output, res.output
