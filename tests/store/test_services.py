"""Services: the write path of the trial store (SQLite, in-process)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.store.conftest import DAY0, ELIGIBLE, enrol


def test_install_protocol_is_idempotent_and_creates_sites_and_arms(store: Any) -> None:
    from hepatrial.trials.models import Arm, Site, TrialConfig

    cfg, action = store.install_protocol("kharaziha2009")
    assert action == "unchanged"
    assert TrialConfig.objects.count() == 1
    assert cfg.name == "kharaziha2009" and len(cfg.content_hash) == 64
    assert "[[visits]]" in cfg.toml_text
    assert list(Site.objects.values_list("code", flat=True)) == ["S01"]
    assert list(Arm.objects.values_list("code", flat=True)) == ["single"]


def test_new_protocol_version_requires_reason(store: Any, tmp_path: Any) -> None:
    from hepatrial.protocol.loader import builtin_path
    from hepatrial.trials.base import ChangeReasonRequired
    from hepatrial.trials.models import TrialConfig

    text = builtin_path("kharaziha2009").read_text().replace(
        'version = "1.0.0"', 'version = "1.1.0"', 1
    )
    f = tmp_path / "k.toml"
    f.write_text(text)
    with pytest.raises(ChangeReasonRequired):
        store.install_protocol(f)
    cfg, action = store.install_protocol(f, reason="amendment 1")
    assert action == "updated" and cfg.version == "1.1.0"
    h = TrialConfig.history.order_by("-history_id").first()
    assert h.history_change_reason == "amendment 1"
    assert TrialConfig.history.count() == 2


def test_enrolment_schedules_visits_from_day0(enrolled: Any) -> None:
    visits = {v.code: v for v in enrolled.visits.all()}
    assert list(visits) == ["SCR", "D0", "W1", "W2", "W4", "W8", "W24"]
    assert visits["W24"].scheduled_date == DAY0 + dt.timedelta(days=168)
    assert visits["W1"].scheduled_date == dt.date(2008, 1, 27)
    assert enrolled.status == "enrolled" and enrolled.arm.code == "single"
    assert enrolled.enrolment_date == DAY0


def test_eligibility_stores_each_criterion_with_value(store: Any) -> None:
    store.screen_participant(
        study_id="K02", site="S01", sex="F", year_of_birth=1990, etiology="PBC",
        screening_date="2008-01-01", screening_data=ELIGIBLE,
    )  # fmt: skip
    a = store.assess_eligibility(participant="K02")
    assert a.eligible is False
    assert a.criteria["INC-ETIOLOGY"]["passes"] is False
    assert a.criteria["INC-ETIOLOGY"]["value"] == "PBC"
    assert a.criteria["INC-MELD"]["value"] == 16.0  # MELD(40 umol/L, 100 umol/L, 1.6) = 16
    assert a.criteria["INC-AGE"]["value"] == 18
    p = a.participant
    p.refresh_from_db()
    assert p.status == "screen_failed" and "INC-ETIOLOGY" in p.status_reason
    with pytest.raises(store.StoreError, match="only screened"):
        store.enrol_participant(participant="K02", enrolment_date="2008-01-20")


def test_enrolment_requires_consent(store: Any) -> None:
    store.screen_participant(
        study_id="K03", site="S01", sex="F", year_of_birth=1960, etiology="HCV",
        screening_date="2008-01-01", screening_data=ELIGIBLE,
    )  # fmt: skip
    with pytest.raises(store.StoreError, match="no informed consent"):
        store.enrol_participant(participant="K03", enrolment_date="2008-01-20")


@pytest.mark.parametrize(
    ("actual", "status", "deviations"),
    [
        ("2008-01-27", "in_window", 0),  # day 7
        ("2008-01-25", "in_window", 0),  # day 5 = 7 - 2 (inclusive)
        ("2008-01-29", "in_window", 0),  # day 9 = 7 + 2 (inclusive)
        ("2008-01-24", "early", 1),  # day 4
        ("2008-01-30", "late", 1),  # day 10
    ],
)
def test_record_visit_classifies_window(
    enrolled: Any, store: Any, actual: str, status: str, deviations: int
) -> None:
    from hepatrial.trials.models import ProtocolDeviation

    v = store.record_visit(participant="K01", visit_code="W1", actual_date=actual)
    assert v.status == status
    devs = ProtocolDeviation.objects.filter(visit=v)
    assert devs.count() == deviations
    if deviations:
        d = devs.get()
        assert d.category == "visit_window" and d.detected_by == "system"
        assert "window is day 5 to 9" in d.description


def test_changing_a_recorded_visit_date_needs_reason(enrolled: Any, store: Any) -> None:
    store.record_visit(participant="K01", visit_code="W1", actual_date="2008-01-27")
    with pytest.raises(store.ChangeReasonRequired):
        store.record_visit(participant="K01", visit_code="W1", actual_date="2008-01-28")
    v = store.record_visit(
        participant="K01", visit_code="W1", actual_date="2008-01-28", reason="wrong date typed"
    )
    assert v.actual_date == dt.date(2008, 1, 28)
    assert v.history.first().history_change_reason == "wrong date typed"


def test_missed_visit_creates_deviation(enrolled: Any, store: Any) -> None:
    v = store.mark_visit_not_done(participant="K01", visit_code="W8", reason="patient travelling")
    assert v.status == "missed"
    assert v.deviations.get().category == "missed_visit"


def test_lab_converted_to_canonical_and_kept_as_entered(enrolled: Any, store: Any) -> None:
    store.record_visit(participant="K01", visit_code="D0", actual_date=DAY0)
    lab = store.record_lab(
        participant="K01", visit_code="D0", analyte="bilirubin", value="2.30", unit="mg/dL"
    )
    lab.refresh_from_db()
    assert lab.value_as_entered == "2.30" and lab.unit_as_entered == "mg/dL"
    assert lab.value == pytest.approx(39.33)  # 2.30 mg/dL x 17.1
    assert lab.unit == "umol/L" and lab.loinc == "1975-2"
    alb = store.record_lab(
        participant="K01", visit_code="D0", analyte="albumin", value=3.5, unit="g/dL"
    )
    assert alb.value == pytest.approx(35.0) and alb.unit == "g/L"
    import numpy as np

    inr = store.record_lab(
        participant="K01", visit_code="D0", analyte="inr", value=np.float64(1.45), unit="1"
    )
    assert inr.value_as_entered == "1.45" and inr.value == 1.45


@pytest.mark.parametrize(
    ("analyte", "value", "unit", "pattern"),
    [
        ("bilirubin", "2.3", "mg/L", r"lab bilirubin unit: bilirubin: unit 'mg/L' is not accepted"),
        ("bilirubin", "2300", "mg/dL", r"lab bilirubin value: bilirubin: 2300.0 mg/dL .*outside"),
        ("unobtainium", "1", "g/L", r"lab unobtainium analyte: unknown analyte 'unobtainium'"),
        ("creatinine", "abc", "umol/L", r"lab creatinine value: 'abc' is not a number"),
    ],
)
def test_lab_refused_with_message(
    enrolled: Any, store: Any, analyte: str, value: str, unit: str, pattern: str
) -> None:
    from hepatrial.trials.models import LabResult

    with pytest.raises(store.StoreError, match=pattern) as exc:
        store.record_lab(
            participant="K01", visit_code="W1", analyte=analyte, value=value, unit=unit
        )
    assert "participant K01 visit W1" in str(exc.value)
    assert LabResult.objects.count() == 0


def test_update_lab_needs_reason_and_reconverts(enrolled: Any, store: Any) -> None:
    store.record_visit(participant="K01", visit_code="D0", actual_date=DAY0)
    lab = store.record_lab(
        participant="K01", visit_code="D0", analyte="creatinine", value="1.0", unit="mg/dL"
    )
    with pytest.raises(store.ChangeReasonRequired):
        store.update_lab(lab, value="1.2", reason="  ")
    lab = store.update_lab(lab, value="1.2", reason="lab re-issued report")
    assert lab.value == pytest.approx(106.08)
    h = lab.history.order_by("-history_id").first()
    assert h.history_change_reason == "lab re-issued report"
    assert h.history_user.username == "system"


def test_save_without_reason_raises_on_every_orm_path(enrolled: Any) -> None:
    from hepatrial.trials.base import ChangeReasonRequired
    from hepatrial.trials.models import Participant, Visit

    p = Participant.objects.get(study_id="K01")
    p.sex = "F"
    with pytest.raises(ChangeReasonRequired):
        p.save()
    with pytest.raises(ChangeReasonRequired):
        Participant.objects.filter(pk=p.pk).update(sex="F")
    with pytest.raises(ChangeReasonRequired):
        Visit.objects.filter(participant=p).delete()
    with pytest.raises(ChangeReasonRequired):
        Visit.objects.bulk_update(list(Visit.objects.all()), ["label"])
    with pytest.raises(ChangeReasonRequired):
        p.visits.first().delete()
    assert Participant.objects.get(pk=p.pk).sex == "M"
    n = Visit.objects.filter(participant=p, code="W1").update_with_reason(
        "relabel", label="Week one"
    )
    assert n == 1
    assert Visit.history.filter(label="Week one").get().history_change_reason == "relabel"


def test_change_status_transitions(enrolled: Any, store: Any) -> None:
    with pytest.raises(store.StoreError, match="cannot go from 'enrolled' to 'screened'"):
        store.change_status(participant="K01", status="screened", date=DAY0, reason="x")
    with pytest.raises(store.ChangeReasonRequired):
        store.change_status(participant="K01", status="withdrawn", date=DAY0, reason="")
    p = store.change_status(
        participant="K01", status="withdrawn", date="2008-03-01", reason="withdrew consent"
    )
    assert (p.status, p.status_date, p.status_reason) == (
        "withdrawn", dt.date(2008, 3, 1), "withdrew consent",
    )  # fmt: skip


def test_administration_chain_of_identity_and_dose(enrolled: Any, store: Any) -> None:
    from hepatrial.trials.models import ProtocolDeviation
    from tests.store._product import administer, ready_batch, release, to_bedside, to_qa_review

    enrol(store, study_id="K02")
    store.record_visit(participant="K01", visit_code="D0", actual_date=DAY0)
    store.record_clinical(
        participant="K01", visit_code="D0", ascites="none", encephalopathy="none", weight_kg="80"
    )
    ready_batch(store, "B-K02", "K02", DAY0)
    with pytest.raises(store.StoreError, match="belongs to participant K02"):
        administer(store, "K01", "B-K02", DAY0)
    b = to_qa_review(store, "K01", DAY0, batch_id="B-K01")
    with pytest.raises(store.StoreError, match="is qa_review, not released"):
        administer(store, "K01", "B-K01", DAY0)
    release(store, b, DAY0)
    to_bedside(store, b, DAY0)
    a = administer(store, "K01", "B-K01", DAY0, volume_ml="10")
    assert a.cells_per_kg == pytest.approx(500_000.0)  # 40e6 / 80 kg
    assert not ProtocolDeviation.objects.filter(category="dosing").exists()
    ready_batch(store, "B-K01-2", "K01", DAY0)
    with pytest.raises(store.StoreError, match="dose_in_range"):
        administer(store, "K01", "B-K01-2", DAY0, cells=80e6, route="peripheral_vein")
    administer(store, "K01", "B-K01-2", DAY0, cells=80e6, route="peripheral_vein",
               dose_override_reason="whole batch given: investigator's decision")
    assert ProtocolDeviation.objects.filter(category="dosing", major=True).count() == 1


def test_adverse_event_validation(enrolled: Any, store: Any) -> None:
    with pytest.raises(store.StoreError, match="grade: 6 is not 1-5"):
        store.record_adverse_event(
            participant="K01", term="Fever", grade=6, serious=False,
            relatedness_product="unlikely", relatedness_procedure="not_related",
            action_taken="none", onset_date=DAY0,
        )  # fmt: skip
    with pytest.raises(store.StoreError, match="relatedness_product: 'maybe'"):
        store.record_adverse_event(
            participant="K01", term="Fever", grade=1, serious=False,
            relatedness_product="maybe", relatedness_procedure="not_related",
            action_taken="none", onset_date=DAY0,
        )  # fmt: skip
    ae = store.record_adverse_event(
        participant="K01", term="Fever", grade=2, serious=False,
        relatedness_product="unlikely", relatedness_procedure="not_related",
        action_taken="none", onset_date="2008-01-21",
    )  # fmt: skip
    ae = store.update_adverse_event(
        ae, resolution_date="2008-01-23", outcome="recovered", reason="follow-up"
    )
    assert ae.resolution_date == dt.date(2008, 1, 23)


def test_randomised_protocol_allocation_is_concealed_seeded_and_used_once(db: Any) -> None:
    from hepatrial.trials import services
    from hepatrial.trials.models import RandomisationEntry

    services.install_protocol("mayo-pbc")
    entries = list(RandomisationEntry.objects.order_by("site__code", "sequence"))
    assert len(entries) >= 200
    # permuted blocks of 2 and 4 with 1:1 ratio: balanced at the end of every block
    by_block: dict[int, list[str]] = {}
    for e in entries:
        by_block.setdefault(e.block, []).append(e.arm.code)
    for arms in by_block.values():
        assert len(arms) in (2, 4)
        assert arms.count(arms[0]) * 2 == len(arms)
    first_arms = [e.arm.code for e in entries[:20]]
    # seeded: the same list on every machine (regression values for seed 19740101, site MAYO)
    assert first_arms[:12] == [
        "placebo", "DPCA", "DPCA", "placebo", "DPCA", "placebo",
        "DPCA", "placebo", "DPCA", "placebo", "DPCA", "DPCA",
    ]  # fmt: skip
    assert [e.block for e in entries[:10]] == [1, 1, 2, 2, 2, 2, 3, 3, 4, 4]
    from hepatrial.protocol import load_protocol

    proto = load_protocol("mayo-pbc")
    site = proto.sites[0].code
    screening: dict[str, Any] = {}  # mayo-pbc: etiology and consent (from the records)
    assigned = []
    for i in range(4):
        sid = f"P{i:02d}"
        services.screen_participant(
            study_id=sid, site=site, sex="F", year_of_birth=1950, etiology="PBC",
            screening_date="1980-01-01", screening_data=screening,
        )  # fmt: skip
        services.record_consent(participant=sid, version="1", date="1980-01-01")
        a = services.assess_eligibility(participant=sid)
        if a.eligible is not True:
            pytest.skip(f"mayo-pbc eligibility needs other screening data: {a.criteria}")
        p = services.enrol_participant(participant=sid, enrolment_date="1980-01-02")
        assigned.append(p.arm.code)
    assert assigned == first_arms[:4]
    used = RandomisationEntry.objects.filter(participant__isnull=False)
    assert list(used.order_by("sequence").values_list("sequence", flat=True)) == [1, 2, 3, 4]


def test_update_participant_and_manual_deviation(enrolled: Any, store: Any) -> None:
    # a person with a role that may enter data (services check the role matrix)
    dm = store.create_user(username="dm", password=None, role="data-manager")
    with pytest.raises(store.StoreError, match="etiology: 'NASH' is not one of"):
        store.update_participant("K01", etiology="NASH", reason="x")
    with pytest.raises(store.StoreError, match="participant K01 status: cannot be changed here"):
        store.update_participant("K01", status="died", reason="x")
    p = store.update_participant("K01", etiology="HCV", reason="serology result", user=dm)
    h = p.history.order_by("-history_id").first()
    assert (h.etiology, h.history_change_reason, h.history_user) == (
        "HCV", "serology result", dm,
    )  # fmt: skip
    d = store.record_deviation(participant="K01", category="consent", visit_code="D0",
                               description="consent form version 0.9 used", date=DAY0,
                               major=True, user=dm)  # fmt: skip
    assert d.detected_by == "dm" and d.visit.code == "D0"


def test_clinical_items_optional_and_checked(enrolled: Any, store: Any) -> None:
    """Encephalopathy and the Child-Pugh ascites grade may be not assessed (None); the optional
    signs are stored as given, bad values are refused naming the item, changes need a reason."""
    from hepatrial.trials.models import ClinicalAssessment

    store.record_visit(participant="K01", visit_code="D0", actual_date=DAY0)
    for bad, msg in (({"edema": "0.5"}, "edema"), ({"histologic_stage": 5}, "histologic_stage"),
                     ({"hepatomegaly": 1}, "hepatomegaly"), ({"liver_size": 3}, "unknown")):
        with pytest.raises(store.StoreError, match=msg):
            store.record_clinical(participant="K01", visit_code="D0", **bad)
    c = store.record_clinical(participant="K01", visit_code="D0", ascites_present=True,
                              edema="untreated_or_resolved", histologic_stage=2)
    got = ClinicalAssessment.objects.values(
        "ascites", "encephalopathy", "ascites_present", "hepatomegaly", "spider_angiomata",
        "edema", "histologic_stage").get(pk=c.pk)
    assert got == {"ascites": None, "encephalopathy": None, "ascites_present": True,
                   "hepatomegaly": None, "spider_angiomata": None,
                   "edema": "untreated_or_resolved", "histologic_stage": 2}
    with pytest.raises(store.ChangeReasonRequired):  # edema was recorded: a change
        store.update_clinical(c, reason="", edema="none")
    store.update_clinical(c, reason="assessed at the visit", encephalopathy="none",
                          spider_angiomata=False)
    c.refresh_from_db()
    assert (c.encephalopathy, c.spider_angiomata) == ("none", False)
    assert c.history.order_by("-history_id").first().history_change_reason == (
        "assessed at the visit")
