"""`import labs` against the in-process SQLite store: all-or-nothing, idempotent, audited."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from hepatrial.ingest.importer import import_labs
from hepatrial.ingest.report import ImportRefused

from .conftest import store_counts

TODAY = dt.date(2026, 1, 1)

GOOD = """participant,visit,analyte,value,unit,date,lab
P01,D0,bilirubin,1.20,mg/dL,2024-01-15,central
P01,D0,creatinine,0.90,mg/dL,2024-01-15,central
P01,D0,inr,1.35,1,2024-01-15,central
P01,D0,albumin,3.1,g/dL,2024-01-15,central
P01,W1,bilirubin,20.52,umol/L,2024-01-22,central
P02,D0,bilirubin,2.0,mg/dL,2024-01-16,
P02,D0,albumin,28,g/L,2024-01-16,
"""

BAD = """participant,visit,analyte,value,unit,date,lab
P01,D0,bilirubin,1.20,mg/dL,2024-01-15,central
P77,D0,bilirubin,1.20,mg/dL,2024-01-15,central
P01,W99,bilirubin,1.20,mg/dL,2024-01-15,central
P01,D0,bilirubine,1.20,mg/dL,2024-01-15,central
P01,D0,creatinine,0.9,mmol/dL,2024-01-15,central
P01,D0,albumin,3;1,g/dL,2024-01-15,central
P01,D0,inr,45,1,2024-01-15,central
P01,W1,inr,1.1,1,2024-13-01,central
P01,D0,bilirubin,1.30,mg/dL,2024-01-15,central
P02,D0,albumin,28,g/L,2024-01-16,
"""


def _write(tmp_path, text, name="labs.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_good_file_is_imported_with_text_and_canonical_values(kharaziha_store, tmp_path):
    from hepatrial.trials import audit
    from hepatrial.trials.models import LabResult, Visit

    r = import_labs(_write(tmp_path, GOOD), today=TODAY, user="importer")
    # enrolment scheduled the visits: the import records their dates (earliest specimen date)
    assert (r.created, r.changed, r.unchanged, r.visits_created, r.visits_dated) == (
        7, 0, 0, 0, 3)
    bili = LabResult.objects.get(participant__study_id="P01", visit__code="D0",
                                 analyte="bilirubin")
    assert bili.value_as_entered == "1.20"  # as entered, trailing zero kept
    assert bili.unit_as_entered == "mg/dL"
    assert bili.value == pytest.approx(1.2 * 17.1, rel=1e-15)
    assert bili.unit == "umol/L"
    assert bili.loinc == "1975-2"
    assert bili.specimen_date == dt.date(2024, 1, 15)
    assert bili.laboratory == "central"
    alb = LabResult.objects.get(participant__study_id="P02", analyte="albumin")
    assert alb.value == 28.0 and alb.unit == "g/L"
    w1 = Visit.objects.get(participant__study_id="P01", code="W1")
    assert (w1.nominal_day, w1.actual_date) == (7, dt.date(2024, 1, 22))
    h = bili.history.get()
    assert h.history_type == "+"
    assert h.history_change_reason == "import labs labs.csv"
    assert h.history_user.username == "importer"
    assert audit.verify() == []


def test_bad_file_refused_whole_with_every_reason(kharaziha_store, tmp_path):
    before = store_counts()
    rej_path = tmp_path / "out.rejects.csv"
    with pytest.raises(ImportRefused) as exc:
        import_labs(_write(tmp_path, BAD), today=TODAY, rejects_path=rej_path)
    assert store_counts() == before
    rej = exc.value.rejects
    got = {(int(r.row), r.column): r.reason for r in rej.itertuples()}
    assert got[(2, "participant")] == "unknown participant"
    assert got[(3, "visit")].startswith("unknown visit code")
    assert got[(4, "analyte")] == "unknown analyte"
    assert got[(5, "unit")].startswith("unit not accepted for creatinine")
    assert got[(6, "value")] == "'3;1' is not a number"
    assert got[(7, "value")].startswith("out of range")
    assert got[(8, "date")].startswith("not a valid date")
    assert got[(9, "analyte")].startswith("duplicate of row 1")
    assert set(rej["row"]) == {2, 3, 4, 5, 6, 7, 8, 9}
    on_disk = pd.read_csv(rej_path, dtype=str, keep_default_na=False)
    assert list(on_disk.columns) == ["row", "column", "value", "reason"]
    assert len(on_disk) == len(rej)
    assert on_disk["value"].tolist()[:3] == ["P77", "W99", "bilirubine"]


def test_dry_run_writes_nothing(kharaziha_store, tmp_path):
    before = store_counts()
    r = import_labs(_write(tmp_path, GOOD), today=TODAY, dry_run=True)
    assert (r.created, r.changed, r.unchanged, r.visits_created, r.visits_dated) == (
        7, 0, 0, 0, 3)
    assert r.summary().startswith("dry run, nothing written")
    assert store_counts() == before


def test_reimport_is_idempotent(kharaziha_store, tmp_path):
    path = _write(tmp_path, GOOD)
    import_labs(path, today=TODAY)
    before = store_counts()
    r = import_labs(path, today=TODAY)
    assert (r.created, r.changed, r.unchanged) == (0, 0, 7)
    assert r.summary() == "0 created, 0 changed, 7 unchanged"
    assert store_counts() == before


def test_changed_value_needs_reason_and_is_audited(kharaziha_store, tmp_path):
    from hepatrial.trials import audit
    from hepatrial.trials.models import LabResult

    import_labs(_write(tmp_path, GOOD), today=TODAY)
    changed = GOOD.replace("P01,D0,inr,1.35,", "P01,D0,inr,1.53,")
    path = _write(tmp_path, changed, "labs2.csv")
    before = store_counts()
    with pytest.raises(ImportRefused) as exc:
        import_labs(path, today=TODAY)
    assert store_counts() == before
    rej = exc.value.rejects
    assert rej["row"].tolist() == [3]
    assert "stored 1.35 1" in rej["reason"].iloc[0] and "--reason" in rej["reason"].iloc[0]

    r = import_labs(path, today=TODAY, reason="transcription error corrected")
    assert (r.created, r.changed, r.unchanged) == (0, 1, 6)
    inr = LabResult.objects.get(participant__study_id="P01", visit__code="D0", analyte="inr")
    assert inr.value_as_entered == "1.53" and inr.value == 1.53
    latest = inr.history.order_by("-history_id").first()
    assert latest.history_type == "~"
    assert latest.history_change_reason == "transcription error corrected"
    assert inr.history.count() == 2
    assert audit.verify() == []


def test_scheduled_visits_get_their_dates_and_deviations(db, tmp_path):
    """Labs for visits scheduled at enrolment record each visit's date (earliest specimen date),
    with history, ledger and a window deviation for a late visit."""
    from hepatrial.ingest import export
    from hepatrial.trials import audit, services
    from hepatrial.trials.models import ProtocolDeviation, Visit
    from tests.store.conftest import enrol

    services.install_protocol("kharaziha2009")
    enrol(services, "K01")  # day 0 = 2008-01-20, visits scheduled
    path = _write(tmp_path, "participant,visit,analyte,value,unit,date\n"
                            "K01,D0,bilirubin,2.3,mg/dL,2008-01-20\n"
                            "K01,W1,bilirubin,2.1,mg/dL,2008-02-01\n"
                            "K01,W1,inr,1.4,1,2008-02-02\n")
    r = import_labs(path, today=TODAY)
    assert (r.created, r.visits_created, r.visits_dated) == (3, 0, 2)
    w1 = Visit.objects.get(participant__study_id="K01", code="W1")
    assert (w1.actual_date, w1.status) == (dt.date(2008, 2, 1), "late")  # day 12, window 5-9
    h = w1.history.order_by("-history_id").first()
    assert h.history_type == "~" and "earliest specimen date" in h.history_change_reason
    dev = ProtocolDeviation.objects.get(visit=w1)
    assert dev.category == "visit_window" and "day 12" in dev.description
    assert audit.verify() == []
    ds = export.dataset()
    w1_rows = ds[(ds["visit"] == "W1") & (ds["source"] == "measured")]
    assert set(w1_rows["actual_day"]) == {12}
    assert import_labs(path, today=TODAY).summary() == "0 created, 0 changed, 3 unchanged"


def test_dataset_derives_scores_from_labs_and_clinical(db, tmp_path):
    """Derived rows use that visit's labs + clinical assessment (MELD, Child-Pugh)."""
    from hepatrial.ingest import export
    from hepatrial.trials import services
    from tests.store.conftest import enrol

    services.install_protocol("kharaziha2009")
    enrol(services, "K01")
    services.record_visit(participant="K01", visit_code="D0", actual_date="2008-01-20")
    services.record_clinical(participant="K01", visit_code="D0", ascites="none",
                             encephalopathy="none", weight_kg="70.5")
    path = _write(tmp_path, "participant,visit,analyte,value,unit,date\n"
                            "K01,D0,bilirubin,2.3,mg/dL,2008-01-20\n"
                            "K01,D0,creatinine,1.0,mg/dL,2008-01-20\n"
                            "K01,D0,inr,1.4,1,2008-01-20\n"
                            "K01,D0,albumin,3.1,g/dL,2008-01-20\n")
    import_labs(path, today=TODAY)
    ds = export.dataset()
    d0 = ds[ds["visit"] == "D0"].set_index("analyte")
    # MELD (UNOS 2002-2016) = round(9.57 ln Cr + 3.78 ln bili + 11.2 ln INR + 6.43) (Kamath 2001)
    raw = 9.57 * np.log(1.0) + 3.78 * np.log(2.3) + 11.2 * np.log(1.4) + 6.43
    assert d0.loc["meld_optn2002", "value"] == round(raw) == 13
    # Child-Pugh: bilirubin 2-3 mg/dL 2, albumin 2.8-3.5 g/dL 2, INR < 1.7 1, no ascites 1,
    # no encephalopathy 1 (Pugh 1973)
    assert d0.loc["child_pugh_points", "value"] == 7
    assert d0.loc["child_pugh_points", "source"] == "derived"
    assert d0.loc["child_pugh_points", "unit"] == "points"
    assert d0.loc["weight", "value"] == 70.5 and d0.loc["weight", "unit"] == "kg"
    assert d0.loc["bilirubin", "value"] == pytest.approx(2.3 * 17.1)
    assert set(d0["actual_day"]) == {0}
