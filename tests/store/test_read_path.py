"""One read path (issue 7 §2): every output of the store agrees on age and dose.

The selectors (``hepatrial.trials.selectors``) are the only reader; the exporter's frames and
CSV files, the CLI's CSV files, the analysis bundle (``export.trial_data()``) and the report's
Table 1 input (the bundle's enrolled participants) must carry the same values, defined in
docs/contracts.md §2:

* age = age at consent in whole years = consent year - year of birth (screening date when no
  consent is recorded);
* dose = ``cells_total`` summed over every administration, ``n_administrations`` their count.

The participants are chosen so that the other plausible definitions give other numbers: K01 is
born in 1960 and consents on 2007-12-27 but is enrolled on 2008-01-10 (age 47 at consent; 48
from the enrolment year; 47.53 from a 1 July birthday at enrolment), and has two infusions
(3x10^7 then 4x10^7: the first alone would be 3x10^7).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import math
from typing import Any

import pandas as pd
import pytest

from tests.store._product import administer
from tests.store.conftest import released_batch

D = dt.date
#: screening data (kharaziha2009 eligibility inputs) of an eligible participant; UNOS MELD 16
ELIGIBLE = {
    "cirrhosis": True, "bilirubin_umol_l": 40, "creatinine_umol_l": 100, "inr": 1.6,
    "portal_vein_patent": True, "hcc": False, "active_infection": False, "pregnant": False,
}  # fmt: skip

#: study id -> (year of birth, screening = consent date, enrolment date or None, eligible)
PEOPLE = {
    "K01": (1960, D(2007, 12, 27), D(2008, 1, 10), True),
    "K02": (1971, D(2008, 2, 1), D(2008, 2, 15), True),
    "K03": (1950, D(2008, 3, 1), None, False),  # screen failure (HCC)
}
#: K04 is screened without a consent: its age is taken at the screening date
K04 = (1980, D(2008, 3, 5))

EXPECTED = pd.DataFrame(
    {
        "participant_id": ["K01", "K02", "K03", "K04"],
        "age": [47, 37, 58, 28],
        "status": ["enrolled", "enrolled", "screen_failed", "screened"],
        "route": ["portal_vein", "peripheral_vein", "NA", "NA"],
        "n_administrations": [2, 1, 0, 0],
        "cells_total": [7e7, 4e7, math.nan, math.nan],
        "cells_per_kg": [3e7 / 72.5 + 4e7 / 72.5, 4e7 / 80, math.nan, math.nan],
        "volume_ml": [20.0, 10.0, math.nan, math.nan],
    }
)
AST, ALT, PLATELETS = 80.0, 60.0, 95.0


def _infuse(s: Any, sid: str, n: int, when: dt.date, cells: float, route: str) -> None:
    batch = f"B-{sid}-{n}"
    released_batch(s, batch, sid, release_date=when)
    administer(s, sid, batch, when, cells=cells, route=route)


@pytest.fixture
def trial(store: Any) -> Any:
    s = store
    for sid, (yob, scr, day0, eligible) in PEOPLE.items():
        data = dict(ELIGIBLE) if eligible else {**ELIGIBLE, "hcc": True}
        s.screen_participant(study_id=sid, site="S01", sex="M", year_of_birth=yob,
                             etiology="HBV", screening_date=scr, screening_data=data)
        s.record_consent(participant=sid, version="1.0", date=scr)
        a = s.assess_eligibility(participant=sid)
        assert a.eligible is eligible
        if day0 is not None:
            s.enrol_participant(participant=sid, enrolment_date=day0)
            s.record_visit(participant=sid, visit_code="D0", actual_date=day0)
            for analyte, value, unit in (("bilirubin", "40", "umol/L"),
                                         ("creatinine", "100", "umol/L"), ("inr", "1.6", "1"),
                                         ("albumin", "30", "g/L"), ("ast", str(AST), "U/L"),
                                         ("alt", str(ALT), "U/L"),
                                         ("platelets", str(PLATELETS), "10^9/L")):
                s.record_lab(participant=sid, visit_code="D0", analyte=analyte, value=value,
                             unit=unit)
    yob, scr = K04
    s.screen_participant(study_id="K04", site="S01", sex="F", year_of_birth=yob,
                         etiology="HCV", screening_date=scr, screening_data=ELIGIBLE)
    # K01: weight at day 0, two infusions (day 0 and week 1); K02: one, weight 80 kg (the
    # lifecycle helper records it: the release judges endotoxin per kg of body weight)
    s.record_clinical(participant="K01", visit_code="D0", ascites="none",
                      encephalopathy="none", weight_kg="72.5")
    _infuse(s, "K01", 1, D(2008, 1, 10), 3e7, "portal_vein")
    s.record_visit(participant="K01", visit_code="W1", actual_date=D(2008, 1, 17))
    _infuse(s, "K01", 2, D(2008, 1, 17), 4e7, "peripheral_vein")
    _infuse(s, "K02", 1, D(2008, 2, 15), 4e7, "peripheral_vein")
    s.record_adverse_event(participant="K01", term="Fever", grade=1, serious=False,
                           relatedness_product="possible", relatedness_procedure="not_related",
                           action_taken="none", onset_date="2008-01-11",
                           resolution_date="2008-01-13", outcome="recovered")
    return s


def _check(frame: pd.DataFrame) -> None:
    """``frame`` (any output's participants table) carries the contract's age and dose."""
    got = frame.set_index("participant_id").loc[EXPECTED["participant_id"]].reset_index()
    for col in EXPECTED.columns:
        a = got[col].tolist()
        b = EXPECTED[col].tolist()
        if col in ("cells_total", "cells_per_kg", "volume_ml"):
            assert [float(x) for x in a] == pytest.approx(b, nan_ok=True, rel=1e-12), col
        else:
            assert [x if isinstance(x, str) else int(x) for x in a] == b, col


def _cli(args: list[str]) -> str:
    from typer.testing import CliRunner

    from hepatrial.cli import app

    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return res.output


def test_selectors_define_age_and_dose(trial: Any) -> None:
    from hepatrial import vocab
    from hepatrial.trials import selectors

    p = selectors.participants_frame()
    assert tuple(p.columns) == vocab.PARTICIPANT_COLUMNS
    _check(p)
    assert p["age"].dtype == "Int64" and p["n_administrations"].dtype == "int64"
    # the administrations the sums are made of
    adm = selectors.administrations_frame()
    per = adm.groupby("participant_id")["cells_total"].agg(["sum", "size"])
    assert per.loc["K01"].tolist() == [7e7, 2] and per.loc["K02"].tolist() == [4e7, 1]
    assert selectors.age_in_whole_years(1960, D(2007, 12, 27)) == 47
    assert selectors.age_in_whole_years(1960, D(2008, 1, 1)) == 48  # born 1960: 47 or 48
    assert selectors.age_in_whole_years(None, D(2008, 1, 1)) is None


def test_every_output_agrees(trial: Any, tmp_path: Any) -> None:
    from hepatrial.ingest import export
    from hepatrial.trials import selectors

    sel_p = selectors.participants_frame()
    sel_ae = selectors.adverse_events_frame()
    # the exporter's frames are the selectors' frames
    pd.testing.assert_frame_equal(export.participants(), sel_p)
    pd.testing.assert_frame_equal(export.adverse_events(), sel_ae)
    # the analysis bundle (input of `hepatrial analyze`, `report` and the demo)
    td = export.trial_data()
    td.validate()
    pd.testing.assert_frame_equal(td.participants, sel_p)
    pd.testing.assert_frame_equal(td.adverse_events, sel_ae)
    pd.testing.assert_frame_equal(td.dataset, export.dataset())
    _check(td.participants)
    # the report's Table 1 input: the bundle's enrolled participants
    enrolled = td.participants[~td.participants["status"].isin(["screened", "screen_failed"])]
    assert enrolled["participant_id"].tolist() == ["K01", "K02"]
    assert enrolled["age"].tolist() == [47, 37]
    assert enrolled["cells_total"].tolist() == [7e7, 4e7]
    assert enrolled["n_administrations"].tolist() == [2, 1]
    # ... and the rendered Table 1 (hepatrial report) shows their mean age and dose
    from hepatrial.report import analyze
    from hepatrial.report.tables import table1

    t = table1(td, analyze(td))
    rows = {r.label: r.cells[-1] for r in t.rows}
    assert rows["Age, years"] == "42.0 ± 7.1"  # 47 and 37
    assert rows["Cells infused, ×10⁶"] == "55.0 ± 21.2"  # 70 and 40 (3 + 4, and 4)
    # measured rows of the dataset are the selectors' measurements
    ds = td.dataset
    meas = ds[ds["source"] == "measured"].reset_index(drop=True)
    pd.testing.assert_frame_equal(meas, selectors.measurements_frame(), check_dtype=False)
    # a derived score that needs the age uses the same age (FIB-4 = age x AST / (plt x sqrt ALT),
    # Sterling 2006; day 0, so age + 0 / 365.25)
    fib4 = ds[(ds["analyte"] == "fib4") & (ds["visit"] == "D0")].set_index("participant_id")
    for sid, age in (("K01", 47), ("K02", 37)):
        assert fib4.loc[sid, "value"] == pytest.approx(
            age * AST / (PLATELETS * math.sqrt(ALT)), rel=1e-12)

    # the CSV files: library and CLI, each byte-identical on a second run
    lib = tmp_path / "participants.csv"
    export.write_participants(lib)
    text = lib.read_text()
    back = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    assert tuple(back.columns) == tuple(sel_p.columns)
    k1 = back.set_index("participant_id").loc["K01"]
    assert (k1["age"], k1["n_administrations"], k1["cells_total"]) == ("47", "2", "70000000.0")
    assert (k1["enrolment_date"], k1["route"]) == ("2008-01-10", "portal_vein")
    _check(pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""]))
    cli_p, cli_d = tmp_path / "cli_participants.csv", tmp_path / "cli_dataset.csv"
    out = _cli(["export", "participants", "-o", str(cli_p)])
    assert "4 participants" in out
    _cli(["export", "dataset", "-o", str(cli_d)])
    assert cli_p.read_bytes() == lib.read_bytes()
    lib_d = tmp_path / "dataset.csv"
    export.write_dataset(lib_d)
    assert cli_d.read_bytes() == lib_d.read_bytes()
    again = tmp_path / "again.csv"
    export.write_participants(again)
    assert hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(lib.read_bytes()).digest()
    pd.testing.assert_frame_equal(
        pd.read_csv(lib_d, keep_default_na=False, na_values=[""]),
        pd.read_csv(io.StringIO(ds.to_csv(index=False)), keep_default_na=False, na_values=[""]))


def test_re_consent_keeps_the_first_consent_date(trial: Any) -> None:
    """A later consent (new version of the form) does not move the age."""
    from hepatrial.trials import selectors

    trial.record_consent(participant="K01", version="2.0", date=D(2009, 6, 1))
    p = selectors.participants_frame().set_index("participant_id")
    assert p.loc["K01", "age"] == 47
