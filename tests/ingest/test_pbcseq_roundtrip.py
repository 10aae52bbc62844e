"""Acceptance test: init mayo-pbc → import pbcseq → export gives back every value."""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pandas as pd
import pytest

from hepatrial.ingest import export
from hepatrial.ingest.report import ImportRefused
from hepatrial.ingest.visits import import_visits

from .conftest import store_counts

# pbcseq column -> (analyte, factor to the canonical unit), written out independently of the
# registry: bilirubin mg/dL x 17.1 = umol/L, albumin g/dL x 10 = g/L, cholesterol
# mg/dL / 38.67 = mmol/L, AST/ALP U/L, platelets 10^3/uL = 10^9/L, prothrombin time s.
MAPPED = {
    "bili": ("bilirubin", 17.1),
    "albumin": ("albumin", 10.0),
    "ast": ("ast", 1.0),
    "platelet": ("platelets", 1.0),
    "protime": ("prothrombin_time", 1.0),
    "chol": ("cholesterol", 1 / 38.67),
    "alk.phos": ("alk_phos", 1.0),
}
# pbcseq clinical column -> analyte code in the dataset (unit "1"): 0/1 signs, edema 0/0.5/1
# (survival::pbc coding), histologic stage 1-4 - each exported as the number in the file.
CLINICAL = {
    "ascites": "ascites",
    "hepato": "hepatomegaly",
    "spiders": "spiders",
    "edema": "edema",
    "stage": "histologic_stage",
}
# pbcseq clinical column -> ClinicalAssessment field and the stored value of each file value
STORED = {
    "ascites": ("ascites_present", {0: False, 1: True}),
    "hepato": ("hepatomegaly", {0: False, 1: True}),
    "spiders": ("spider_angiomata", {0: False, 1: True}),
    "edema": ("edema", {0.0: "none", 0.5: "untreated_or_resolved", 1.0: "despite_diuretics"}),
    "stage": ("histologic_stage", {1: 1, 2: 2, 3: 3, 4: 4}),
}


@pytest.fixture()
def loaded(mayo_store, pbcseq_path):
    result = import_visits(pbcseq_path, "mayo-pbc")
    return result


def test_import_loads_every_patient_and_visit(loaded, pbcseq_path):
    from hepatrial.trials import audit
    from hepatrial.trials.models import LabResult, Participant, Visit

    raw = pd.read_csv(pbcseq_path)
    assert loaded.participants_created == 312 and Participant.objects.count() == 312
    assert loaded.visits_created == 1945 and Visit.objects.count() == 1945
    n_cells = int(sum(raw[c].notna().sum() for c in MAPPED))
    assert loaded.created == n_cells == LabResult.objects.count()
    arms = pd.Series(dict(Participant.objects.values_list("study_id", "arm__code")))
    first = raw.drop_duplicates("id").set_index(raw.drop_duplicates("id")["id"].astype(str))
    expected_arm = first["trt"].map({1: "DPCA", 0: "placebo"})
    assert (arms.sort_index() == expected_arm.sort_index()).all()
    assert (arms.value_counts().to_dict()) == {"DPCA": 158, "placebo": 154}
    assert Visit.objects.filter(code__startswith="UNS-D").count() > 0  # extra visits kept
    assert audit.verify() == []


def test_roundtrip_every_value(loaded, pbcseq_path):
    raw = pd.read_csv(pbcseq_path)
    ds = export.dataset()
    meas = ds[ds["source"] == "measured"]
    # every visit is there with its day: (participant, actual_day) pairs = file rows
    pairs = set(zip(meas["participant_id"], meas["actual_day"].astype(int), strict=True))
    assert pairs == set(zip(raw["id"].astype(str), raw["day"].astype(int), strict=True))
    got = meas.set_index(["participant_id", "actual_day", "analyte"])["value"]
    assert got.index.is_unique
    n = 0
    for col, (analyte, factor) in MAPPED.items():
        sub = raw.loc[raw[col].notna(), ["id", "day", col]]
        keys = pd.MultiIndex.from_arrays([sub["id"].astype(str), sub["day"].astype(int),
                                          [analyte] * len(sub)])
        values = got.reindex(keys).to_numpy()
        assert not np.isnan(values).any(), f"{col}: values missing from the export"
        np.testing.assert_allclose(values, sub[col].to_numpy() * factor, rtol=1e-12, atol=0,
                                   err_msg=col)
        n += len(sub)
    for col, analyte in CLINICAL.items():
        sub = raw.loc[raw[col].notna(), ["id", "day", col]]
        assert len(sub) > 0
        keys = pd.MultiIndex.from_arrays([sub["id"].astype(str), sub["day"].astype(int),
                                          [analyte] * len(sub)])
        values = got.reindex(keys).to_numpy()
        assert not np.isnan(values).any(), f"{col}: values missing from the export"
        np.testing.assert_array_equal(values, sub[col].to_numpy(dtype=float), err_msg=col)
        n += len(sub)
    assert n == len(meas)  # nothing more, nothing less
    units = meas.groupby("analyte")["unit"].unique().map(list).to_dict()
    assert units == {"albumin": ["g/L"], "alk_phos": ["U/L"], "ast": ["U/L"],
                     "bilirubin": ["umol/L"], "cholesterol": ["mmol/L"],
                     "platelets": ["10^9/L"], "prothrombin_time": ["s"],
                     "ascites": ["1"], "hepatomegaly": ["1"], "spiders": ["1"], "edema": ["1"],
                     "histologic_stage": ["1"]}
    assert set(meas.loc[meas["analyte"] == "edema", "value"]) == {0.0, 0.5, 1.0}


def test_clinical_items_stored_as_entered(loaded, pbcseq_path):
    """Every non-missing clinical cell is in the visit's ClinicalAssessment; missing cells and
    the items pbcseq does not have (Child-Pugh grades) are NULL = not assessed."""
    from hepatrial.trials.models import ClinicalAssessment

    raw = pd.read_csv(pbcseq_path)
    some = raw[list(STORED)].notna().any(axis=1)
    assert loaded.clinical_created == int(some.sum()) == ClinicalAssessment.objects.count()
    fields = [f for f, _ in STORED.values()]
    rows = ClinicalAssessment.objects.values_list(
        "participant__study_id", "visit__actual_date", "participant__enrolment_date",
        "ascites", "encephalopathy", "dialysis_last_week", "weight_kg", *fields)
    stored = {(sid, (ad - d0).days): rest for sid, ad, d0, *rest in rows}
    for r in raw.loc[some].itertuples(index=False):
        got = stored[(str(r.id), int(r.day))]
        assert got[:4] == [None, None, False, None]
        for i, (col, (_f, codes)) in enumerate(STORED.items()):
            v = getattr(r, col)
            assert got[4 + i] == (None if pd.isna(v) else codes[v]), (r.id, r.day, col)
    missing = {col: int(raw[col].isna().sum()) for col in STORED}
    for col, (f, _codes) in STORED.items():
        assert ClinicalAssessment.objects.filter(**{f"{f}__isnull": True}).count() == (
            missing[col] - int((~some).sum())), col


def test_values_as_entered_are_kept(loaded, pbcseq_path):
    from hepatrial.trials.models import LabResult

    raw = pd.read_csv(pbcseq_path, dtype=str, keep_default_na=False)
    row = raw.iloc[0]  # id 1, day 0: bili 14.5, chol 261.0
    lab = LabResult.objects.get(participant__study_id="1", visit__code="D0", analyte="cholesterol")
    assert lab.value_as_entered == row["chol"] == "261.0"
    assert lab.unit_as_entered == "mg/dL"
    assert lab.value == 261.0 / 38.67


def test_participants_and_derived_scores(loaded, pbcseq_path):
    raw = pd.read_csv(pbcseq_path).drop_duplicates("id")
    ppl = export.participants().set_index("participant_id")
    assert len(ppl) == 312
    r = raw.set_index(raw["id"].astype(str))
    # age at consent in whole years (docs/contracts.md §2): no consent recorded, so the screening
    # date (day 0 = 2000-01-01) - year of birth, which the import sets to 2000 - floor(age)
    assert ppl["age"].dtype == "Int64"
    assert (ppl.loc[r.index, "age"].astype(int) == np.floor(r["age"]).astype(int)).all()
    # the exact age as entered is kept in the screening data
    from hepatrial.trials.models import Participant

    exact = dict(Participant.objects.values_list("study_id", "screening_data__age"))
    np.testing.assert_allclose([exact[i] for i in r.index], r["age"], rtol=0, atol=0)
    assert (ppl.loc[r.index, "sex"] == r["sex"].str.upper()).all()
    status = r["status"].map({0: "completed", 1: "transplanted", 2: "died"})
    assert (ppl.loc[r.index, "status"] == status).all()
    days = (ppl.loc[r.index, "status_date"] - ppl.loc[r.index, "enrolment_date"]).dt.days
    assert (days == r["futime"]).all()

    ds = export.dataset()
    albi = ds[(ds["analyte"] == "albi") & (ds["source"] == "derived")]
    assert len(albi) == 1945  # bilirubin and albumin at every visit
    one = albi[(albi["participant_id"] == "1") & (albi["visit"] == "D0")]["value"].item()
    # ALBI = 0.66 log10(bili umol/L) - 0.085 albumin g/L (Johnson 2015)
    assert one == pytest.approx(0.66 * np.log10(14.5 * 17.1) - 0.085 * 26.0, abs=1e-9)
    assert set(ds.loc[ds["source"] == "derived", "unit"]) == {"points"}
    assert list(ds.columns) == list(export.DATASET_COLUMNS)
    order = ds.sort_values(["participant_id", "nominal_day", "visit", "analyte"],
                           kind="mergesort").index
    assert (order == ds.index).all()


def test_export_is_deterministic(loaded, tmp_path):
    for suffix in ("csv", "parquet"):
        a, b = tmp_path / f"a.{suffix}", tmp_path / f"b.{suffix}"
        export.write_dataset(a)
        export.write_dataset(b)
        assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    back = pd.read_parquet(tmp_path / "a.parquet")
    pd.testing.assert_frame_equal(back, export.dataset(), check_dtype=False)


def test_reimport_changes_nothing(loaded, pbcseq_path):
    before = store_counts()
    again = import_visits(pbcseq_path, "mayo-pbc")
    assert (again.created, again.changed, again.unchanged) == (0, 0, loaded.created)
    assert (again.clinical_created, again.clinical_changed, again.clinical_unchanged) == (
        0, 0, loaded.clinical_created)
    assert again.summary() == f"0 created, 0 changed, {loaded.created} unchanged"
    assert again.notes == ["every row is already stored unchanged: nothing to import"]
    assert store_counts() == before


def test_changed_clinical_item_needs_reason(loaded, pbcseq_path, tmp_path):
    """Re-import with one edema value changed: refused without --reason (nothing written);
    with a reason the one item changes, with a ``~`` history row carrying the reason."""
    from hepatrial.trials import audit
    from hepatrial.trials.models import ClinicalAssessment

    raw = pd.read_csv(pbcseq_path, dtype=str, keep_default_na=False)
    i = int(np.flatnonzero(raw["edema"].to_numpy() == "0.0")[0])  # the file writes 0.0/0.5/1.0
    raw.loc[i, "edema"] = "1.0"
    path = tmp_path / "edited.csv"
    raw.to_csv(path, index=False)
    before = store_counts()
    with pytest.raises(ImportRefused) as exc:
        import_visits(path, "mayo-pbc")
    assert store_counts() == before
    rej = exc.value.rejects
    assert list(rej["row"]) == [i + 1] and list(rej["column"]) == ["edema"]
    assert list(rej["value"]) == ["edema 'none' -> 'despite_diuretics'"]
    r = import_visits(path, "mayo-pbc", reason="edema re-read from the source record")
    assert (r.clinical_created, r.clinical_changed) == (0, 1) and r.created == 0
    day = int(raw.loc[i, "day"])
    c = ClinicalAssessment.objects.get(participant__study_id=raw.loc[i, "id"],
                                       visit__actual_date=dt.date(2000, 1, 1)
                                       + dt.timedelta(days=day))
    assert c.edema == "despite_diuretics"
    h = c.history.order_by("-history_id").first()
    assert (h.history_type, h.history_change_reason) == (
        "~", "edema re-read from the source record")
    assert audit.verify() == []


def test_bad_visits_file_refused(mayo_store, pbcseq_path, tmp_path):
    text = pbcseq_path.read_text().splitlines()
    header = text[0].split(",")
    bad = [text[0]]
    for i, line in enumerate(text[1:6], start=1):
        cells = line.split(",")
        if i == 2:
            cells[header.index("bili")] = "high"
        if i == 3:
            cells[header.index("albumin")] = "55"  # g/dL -> 550 g/L
        if i == 4:
            cells[header.index("trt")] = "7"
        bad.append(",".join(cells))
    bad.append(text[1])  # duplicate of row 1 (same participant and day)
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(bad) + "\n")
    before = store_counts()
    with pytest.raises(ImportRefused) as exc:
        import_visits(path, "mayo-pbc")
    assert store_counts() == before
    got: dict[tuple[int, str], list[str]] = {}
    for r in exc.value.rejects.itertuples():
        got.setdefault((int(r.row), r.column), []).append(r.reason)
    assert got[(2, "bili")] == ["'high' is not a number"]
    assert got[(3, "albumin")][0].startswith("out of range")
    assert any("no code" in x for x in got[(4, "trt")])
    assert any(x.startswith("participant-level value differs from row") for x in got[(4, "trt")])
    assert got[(6, "day")][0].startswith("duplicate of row 1")
    assert set(exc.value.rejects["row"]) == {2, 3, 4, 6}
    assert (tmp_path / "bad.csv.rejects.csv").is_file()


def test_trial_data_bundle(loaded):
    from hepatrial.analysis import TrialData

    td = export.trial_data()
    assert isinstance(td, TrialData)
    td.validate()
    assert td.baseline_visit == "D0"
    assert td.protocol_summary["name"] == "mayo-pbc"
    assert len(td.participants) == 312 and list(td.participants.columns) == list(
        export.PARTICIPANT_COLUMNS)
    assert td.adverse_events.empty and list(td.adverse_events.columns) == list(
        export.AE_COLUMNS)
    assert len(td.dataset) == len(export.dataset())


def test_visits_dry_run_writes_nothing(mayo_store, pbcseq_path):
    before = store_counts()
    r = import_visits(pbcseq_path, "mayo-pbc", dry_run=True)
    assert (r.participants_created, r.visits_created) == (312, 1945)
    assert r.created == sum(pd.read_csv(pbcseq_path)[c].notna().sum() for c in MAPPED)
    assert r.summary().startswith("dry run, nothing written: would be ")
    assert store_counts() == before


def test_map_clinical_field_without_store_field_refused(mayo_store, pbcseq_path, tmp_path):
    """A [[clinical]] entry the store has no field for refuses the import (never dropped)."""
    from hepatrial.ingest.validate import ImportFileError
    from hepatrial.protocol.importmap import builtin_root

    text = builtin_root().joinpath("mayo-pbc.map.toml").read_text(encoding="utf-8")
    assert 'field = "hepatomegaly"' in text
    edited = tmp_path / "edited.map.toml"
    edited.write_text(text.replace('field = "hepatomegaly"', 'field = "liver_span"'),
                      encoding="utf-8")
    before = store_counts()
    with pytest.raises(ImportFileError, match=r"hepato -> liver_span \(bool\)"):
        import_visits(pbcseq_path, edited)
    assert store_counts() == before


def test_changed_participant_and_visit_day_with_reason(loaded, pbcseq_path, tmp_path):
    """Participant-level and visit-date changes go through audit.bulk_update: stored, one
    ``~`` history row each with the reason, ledger verifies."""
    from hepatrial.trials import audit
    from hepatrial.trials.models import Participant, Visit

    raw = pd.read_csv(pbcseq_path, dtype=str, keep_default_na=False)
    one = raw["id"] == "1"
    raw.loc[one, "age"] = "58.8"
    raw.loc[one & (raw["day"] == "192"), "day"] = "193"
    path = tmp_path / "edited.csv"
    raw.to_csv(path, index=False)
    with pytest.raises(ImportRefused):
        import_visits(path, "mayo-pbc")
    r = import_visits(path, "mayo-pbc", reason="age and visit day corrected at source")
    row = raw.loc[one & (raw["day"] == "193")].iloc[0]
    n_labs = sum(row[c] != "" for c in MAPPED)  # their specimen date moves with the visit
    assert n_labs == 6 and r.changed == 1 + 1 + n_labs and r.created == 0
    p = Participant.objects.get(study_id="1")
    assert p.screening_data["age"] == 58.8
    assert p.year_of_birth == 2000 - 58  # floor(58.8): the whole-year age follows the change
    v = Visit.objects.get(participant=p, actual_date=dt.date(2000, 1, 1) + dt.timedelta(193))
    for obj in (p, v):
        h = obj.history.order_by("-history_id").first()
        assert (h.history_type, h.history_change_reason) == (
            "~", "age and visit day corrected at source")
    assert audit.verify() == []


def test_mixed_model_on_pbcseq_through_the_store_matches_r(loaded):
    """R4 of analysis-notes.md, but from the store: init mayo-pbc -> import pbcseq -> export.

    nlme: lme(log(bili) ~ year, random = ~ year | id), REML, year = day / 365.25 gives
    beta = 0.4957237631 (SE 0.0580742476), 0.1775048326 (SE 0.0124188218), logLik -1531.36038.
    The store keeps bilirubin in umol/L, so the intercept is shifted by ln(17.1) and
    everything else is unchanged.
    """
    from hepatrial.analysis import fit_lmm

    td = export.trial_data()
    bili = td.dataset[(td.dataset["analyte"] == "bilirubin")].copy()
    assert len(bili) == 1945  # every pbcseq visit, unscheduled ones included
    bili["year"] = bili["actual_day"].astype(float) / 365.25
    fit = fit_lmm(bili, subject="participant_id", time="year", outcome="value", log=True,
                  random="slope").to_dict()
    est = fit["fixed_effects"]
    assert fit["converged"] and fit["n_groups"] == 312 and fit["n_obs"] == 1945
    assert fit["n_dropped"] == 0
    assert est["Intercept"]["estimate"] - np.log(17.1) == pytest.approx(0.4957237631, rel=1e-5)
    assert est["year"]["estimate"] == pytest.approx(0.1775048326, rel=1e-5)
    assert est["Intercept"]["se"] == pytest.approx(0.0580742476, rel=1e-5)
    assert est["year"]["se"] == pytest.approx(0.0124188218, rel=1e-5)
    # a shift of log(y) leaves the REML likelihood unchanged
    assert fit["loglik"] == pytest.approx(-1531.36038, abs=1e-4)


def test_report_analysis_on_pbcseq_keeps_unscheduled_visits_out_of_visit_tables(loaded):
    """A randomised trial with unscheduled visits: per-visit tables by arm, UNS counted."""
    from hepatrial.report.analyze import analyze
    from hepatrial.report.html import outcomes_table

    res = analyze(export.trial_data(), mixed_model=False)
    assert res["arms"] == ["DPCA", "placebo"]
    assert res["unscheduled"]["visits"] == 37 and res["unscheduled"]["codes"] == ["UNS"]
    assert "UNS" not in {r["visit"] for r in res["describe"]}
    assert "37 unscheduled visit(s)" in outcomes_table(res)
