"""`import participants` against the in-process SQLite store: screening, consent, eligibility
and enrolment through the services; all-or-nothing; screen failures stored, never enrolled."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from hepatrial.ingest.participants import import_participants
from hepatrial.ingest.report import ImportRefused
from hepatrial.ingest.validate import ImportFileError
from tests.conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "participants.csv"
HEAD = ("study_id,site,sex,year_of_birth,etiology,screening_date,consent_version,consent_date,"
        "enrolment_date,cirrhosis,bilirubin_{bu},creatinine_{cu},inr,portal_vein_patent,hcc,"
        "active_infection,pregnant")
GOOD_ROW = ("{sid},S01,M,1960,HBV,2024-01-02,1.0,2024-01-02,{day0},true,{bili},{creat},{inr},"
            "true,{hcc},false,false")


def _file(tmp_path: Path, rows: list[str], *, bu: str = "umol_l", cu: str = "umol_l",
          head: str | None = None) -> Path:
    p = tmp_path / "participants.csv"
    p.write_text("\n".join([head or HEAD.format(bu=bu, cu=cu), *rows]) + "\n", encoding="utf-8")
    return p


def _row(sid: str, *, day0: str = "2024-01-16", bili: str = "40", creat: str = "100",
         inr: str = "1.6", hcc: str = "false") -> str:
    return GOOD_ROW.format(sid=sid, day0=day0, bili=bili, creat=creat, inr=inr, hcc=hcc)


def counts() -> dict[str, int]:
    """Rows of every table the import writes (for 'nothing written')."""
    from django.contrib.auth import get_user_model

    from hepatrial.trials.models import (
        AuditLedger,
        Consent,
        EligibilityAssessment,
        Participant,
        Visit,
    )

    return {"participants": Participant.objects.count(), "consents": Consent.objects.count(),
            "assessments": EligibilityAssessment.objects.count(),
            "visits": Visit.objects.count(), "history": Participant.history.count(),
            "users": get_user_model().objects.count(), "ledger": AuditLedger.objects.count()}


@pytest.fixture()
def example(tmp_path: Path) -> Path:
    """A copy of examples/participants.csv (a refused import writes its rejects beside it)."""
    p = tmp_path / "example_participants.csv"
    p.write_bytes(EXAMPLE.read_bytes())
    return p


@pytest.fixture()
def store(db: Any) -> Any:
    from hepatrial.trials import services

    services.install_protocol("kharaziha2009")
    return services


def test_example_file_enrols_the_eight_patients(store: Any, example: Path) -> None:
    from hepatrial.trials import audit
    from hepatrial.trials.models import Participant, Visit

    r = import_participants(example)
    assert (r.created, r.enrolled, r.screen_failed, r.screened_only, r.unchanged) == (
        8, 8, 0, 0, 0)
    assert r.summary() == ("8 participants created (8 enrolled, 0 screen-failed, "
                           "0 screened only), 0 unchanged")
    ppl = pd.read_csv(EXAMPLE, dtype=str)
    for row in ppl.itertuples(index=False):
        p = Participant.objects.get(study_id=row.study_id)
        assert (p.status, p.arm.code, p.enrolment_date.isoformat()) == (
            "enrolled", "single", row.enrolment_date)
        assert p.consents.get().date.isoformat() == row.consent_date
        a = p.eligibility_assessments.get()
        assert a.eligible is True and a.assessed_on.isoformat() == row.screening_date
        # screening data stored as entered, with the unit of the column
        assert p.screening_data["bilirubin"] == {"value": row.bilirubin_umol_l, "unit": "umol/L"}
        assert p.screening_data["hcc"] is False
        assert Visit.objects.filter(participant=p).count() == 7  # schedule made at enrolment
    assert audit.verify() == []
    # re-importing the same file changes nothing
    before = counts()
    again = import_participants(example)
    assert (again.created, again.unchanged) == (0, 8)
    assert counts() == before


def test_dry_run_writes_nothing(store: Any, example: Path) -> None:
    store.create_user(username="dm", password=None, role="data-manager")
    before = counts()
    r = import_participants(example, dry_run=True, user="dm")
    assert r.dry_run and (r.created, r.enrolled) == (8, 8)
    assert r.summary().startswith("dry run, nothing written: would be 8 participants created")
    assert counts() == before  # no participant, consent, visit, history, ledger, account


def test_mg_dl_labs_are_converted_and_a_failed_criterion_screen_fails(
        store: Any, tmp_path: Path) -> None:
    """Issue 7: bilirubin 2.7 / creatinine 1.3 typed in mg/dL were read as umol/L (MELD 9,
    screen-failed). Named with their unit they are converted: UNOS MELD 15, enrolled. A real
    MELD < 10 screen-fails the participant with the reason; the row's enrolment is not made."""
    from hepatrial.trials.models import Participant

    path = _file(tmp_path, [_row("M01", bili="2.7", creat="1.3", inr="1.2"),
                            _row("M02", bili="0.8", creat="0.7", inr="1.0")],
                 bu="mg_dl", cu="mg_dl")
    r = import_participants(path)
    assert (r.created, r.enrolled, r.screen_failed) == (2, 1, 1)
    m1 = Participant.objects.get(study_id="M01")
    assert m1.status == "enrolled"
    assert m1.screening_data["bilirubin"] == {"value": "2.7", "unit": "mg/dL"}
    crit = m1.eligibility_assessments.get().criteria["INC-MELD"]
    # OPTN 2002: 3.78 ln 2.7 + 11.2 ln 1.2 + 9.57 ln 1.3 + 6.43 = 14.74 -> 15
    assert crit["passes"] is True and crit["value"] == 15
    m2 = Participant.objects.get(study_id="M02")
    assert (m2.status, m2.enrolment_date, m2.arm) == ("screen_failed", None, None)
    assert m2.status_reason == "ineligible: INC-MELD"
    assert m2.visits.count() == 0
    note = next(n for n in r.notes if n.startswith("M02"))
    assert "screen failed (INC-MELD" in note and note.endswith(": not enrolled")


def test_exclusion_met_screen_fails(store: Any, tmp_path: Path) -> None:
    from hepatrial.trials.models import Participant

    r = import_participants(_file(tmp_path, [_row("H01", hcc="true")]))
    assert (r.created, r.screen_failed, r.enrolled) == (1, 1, 0)
    assert Participant.objects.get(study_id="H01").status_reason == "ineligible: EXC-HCC"


def test_refused_rows_list_every_problem_and_nothing_is_written(
        store: Any, tmp_path: Path) -> None:
    """A bad row anywhere: nothing of any row is stored; every problem has row, column,
    value and reason (from the store's own rules)."""
    rows = [
        _row("B01"),  # good: not written either
        _row("B02", hcc="yes"),  # a boolean is true/false only
        GOOD_ROW.format(sid="B03", day0="2024-01-16", bili="40", creat="100", inr="1.6",
                        hcc="false").replace(",1960,", ",2090,"),  # year of birth in the future
        _row("B04").replace("B04,S01", "B04,S99"),  # no such site
        _row("B01"),  # duplicate study id
        _row("B06").replace(",1.0,2024-01-02,", ",1.0,,"),  # consent version without a date
        _row("B07", bili="9000"),  # impossible bilirubin
        _row("B08", day0="2023-12-01"),  # enrolled before consent
    ]
    path = _file(tmp_path, rows)
    before = counts()
    with pytest.raises(ImportRefused) as exc:
        import_participants(path)
    assert counts() == before
    rej = exc.value.rejects
    got = {(int(r.row), r.column): (r.value, r.reason) for r in rej.itertuples(index=False)}
    assert set(rej["row"]) == {2, 3, 4, 5, 6, 7, 8}
    assert got[(2, "hcc")][0] == "yes" and "not a boolean" in got[(2, "hcc")][1]
    assert got[(3, "year_of_birth")][0] == "2090" and "future" in got[(3, "year_of_birth")][1]
    assert "S99" in got[(4, "site")][1]
    assert got[(5, "study_id")] == ("B01", "duplicate of row 1")
    assert "go together" in got[(6, "consent_date")][1]
    assert got[(7, "bilirubin_umol_l")][0] == "9000"
    assert got[(8, "enrolment_date")][0] == "2023-12-01"
    assert "consent" in got[(8, "enrolment_date")][1]
    assert str(exc.value) == "7 of 8 rows rejected; nothing was imported"
    written = pd.read_csv(tmp_path / "participants.csv.rejects.csv", dtype=str)
    assert list(written.columns) == ["row", "column", "value", "reason"]
    assert len(written) == len(rej)


def test_undecided_eligibility(store: Any, tmp_path: Path) -> None:
    """A missing input leaves its criterion undecided: screened only (noted); asking to enrol
    such a participant refuses the row."""
    from hepatrial.trials.models import Participant

    head = HEAD.format(bu="umol_l", cu="umol_l").replace("cirrhosis,", "")
    row = _row("U01", day0="").replace(",true,40,", ",40,")
    r = import_participants(_file(tmp_path, [row], head=head))
    assert (r.created, r.screened_only) == (1, 1)
    assert Participant.objects.get(study_id="U01").status == "screened"
    assert r.notes == ["U01: screened; eligibility undecided (no value for INC-CIRRHOSIS)"]
    with pytest.raises(ImportRefused) as exc:
        import_participants(_file(tmp_path, [_row("U02").replace(",true,40,", ",40,")],
                                  head=head))
    (line,) = exc.value.rejects.itertuples(index=False)
    assert (line.row, line.column) == (1, "enrolment_date")
    assert line.reason == "cannot enrol: eligibility undecided (no value for INC-CIRRHOSIS)"


def test_without_consent_only_screened(store: Any, tmp_path: Path) -> None:
    from hepatrial.trials.models import Participant

    row = _row("C01", day0="").replace(",1.0,2024-01-02,", ",,,")
    r = import_participants(_file(tmp_path, [row]))
    assert (r.created, r.screened_only) == (1, 1)
    p = Participant.objects.get(study_id="C01")
    assert p.status == "screened" and not p.consents.exists()
    assert not p.eligibility_assessments.exists()


def test_stored_participant_that_differs_is_refused(store: Any, tmp_path: Path) -> None:
    import_participants(_file(tmp_path, [_row("D01")]))
    before = counts()
    with pytest.raises(ImportRefused) as exc:
        import_participants(_file(tmp_path, [_row("D01").replace(",1960,", ",1961,")]))
    assert counts() == before
    (line,) = exc.value.rejects.itertuples(index=False)
    assert (line.column, line.value) == ("year_of_birth", "1961")
    assert "already stored and differs (stored '1960')" in line.reason


@pytest.mark.parametrize(("column", "message"), [
    ("informed_consent", "'informed_consent' is not entered: the store takes it from "
                         "consent_version and consent_date"),
    ("bilirubin", "'bilirubin' is not a column of a participants file"),
])
def test_unknown_columns_refuse_the_file(store: Any, tmp_path: Path, column: str,
                                         message: str) -> None:
    head = HEAD.format(bu="umol_l", cu="umol_l") + f",{column}"
    path = _file(tmp_path, [_row("X01") + ",true"], head=head)
    with pytest.raises(ImportFileError, match=message) as exc:
        import_participants(path)
    assert "bilirubin_mg_dl" in str(exc.value)  # the accepted columns are listed


def test_example_is_eligible_and_the_same_cohort_as_the_demo() -> None:
    """examples/participants.csv and labs_long.csv are what examples/make_examples.py writes
    from the demo's synthetic cohort (ids, sex, aetiology, day 0, day-0 labs)."""
    import importlib.util
    import tempfile

    spec = importlib.util.spec_from_file_location("make_examples",
                                                  REPO_ROOT / "examples" / "make_examples.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with tempfile.TemporaryDirectory() as tmp:
        ppl, labs = mod.build(Path(tmp))
    assert ppl == EXAMPLE.read_text(encoding="utf-8")
    assert labs == (REPO_ROOT / "examples" / "labs_long.csv").read_bytes()
    p = pd.read_csv(EXAMPLE, dtype=str)
    assert list(p["study_id"]) == [f"KH{i:02d}" for i in range(1, 9)]
    day0 = pd.to_datetime(p["enrolment_date"])
    assert ((day0 - pd.to_datetime(p["consent_date"])).dt.days == 14).all()
    assert dt.date(2007, 1, 1) <= day0.min().date()
