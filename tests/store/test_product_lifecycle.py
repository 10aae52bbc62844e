"""The cell-product lifecycle through the product service: every step, every refusal.

The pure state machine is property-tested in tests/protocol (no sequence of steps reaches
``administered`` without a release); here each step runs through the store (row lock, custody
event, ledger) and each refusal names every unmet condition and writes nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.store import _product as P
from tests.store.conftest import DAY0, enrol


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    """MD5 password hashing in these tests only (PBKDF2 costs 0.3 s per signature)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _conditions(exc: Any) -> list[str]:
    return [u.condition for u in exc.value.unmet]


def _events(batch_id: str) -> list[tuple[str, str, str]]:
    from hepatrial.trials.models.product import CellProductBatch, CustodyEvent

    b = CellProductBatch.objects.get(batch_id=batch_id)
    return list(CustodyEvent.objects.filter(harvest=b.harvest).order_by("seq")
                .values_list("action", "from_state", "to_state"))


def test_vein_to_vein_through_the_service(enrolled: Any, store: Any) -> None:
    from hepatrial.protocol.coi import coi_matches_participant, validate_coi
    from hepatrial.trials.models import AuditLedger
    from hepatrial.trials.models.product import BatchRelease, CellProductBatch, CustodyEvent
    from hepatrial.trials.services.product import product_signature_status

    b = P.ready_batch(store, None, "K01", DAY0)
    assert validate_coi(b.coi_identifier).ok and coi_matches_participant(b.coi_identifier, "K01")
    assert b.batch_id == f"B-{b.coi_identifier}" and b.harvest.coi == b.coi_identifier
    assert b.coi_identifier.startswith("S01-20080106-001-")
    P.administer(store, "K01", b.batch_id, DAY0)
    b = CellProductBatch.objects.get(pk=b.pk)
    assert b.state == "administered" and b.released is True
    assert b.released_at == P.at(DAY0, 8, 30) and b.release_date == DAY0
    assert _events(b.batch_id) == [
        ("harvest", "", "harvested"), ("receive", "harvested", "received"),
        ("start_manufacture", "received", "in_manufacture"),
        ("complete_manufacture", "in_manufacture", "qc"),
        ("submit_for_review", "qc", "qa_review"), ("release", "qa_review", "released"),
        ("dispatch", "released", "dispatched"),
        ("receive_at_bedside", "dispatched", "received_at_bedside"),
        ("administer", "received_at_bedside", "administered"),
    ]  # fmt: skip
    rel = BatchRelease.objects.get(batch=b)
    assert rel.conclusion == "meets the specification" and not rel.exceptional
    assert [a["outcome"] for a in rel.assessment] == ["pass"] * 14
    sig = rel.qa_signature
    assert (sig.printed_name, sig.role, sig.meaning) == ("QA qa_S01", "qa", "release")
    labels = {e[0] for e in sig.manifest}
    assert labels == {"trials.harvest", "trials.manufacturingstep",
                      "trials.inprocesscontrolresult", "trials.qcresult"}
    assert len([e for e in sig.manifest if e[0] == "trials.qcresult"]) == 14
    assert product_signature_status(sig) == "valid"
    # every custody event is in the ledger, once
    for ev in CustodyEvent.objects.all():
        assert AuditLedger.objects.filter(history_model="trials.historicalcustodyevent",
                                          object_pk=str(ev.pk)).count() == 1
    ev = CustodyEvent.objects.get(batch=b, action="receive_at_bedside")
    assert ev.details["readings"] == [["2008-01-20T09:05:00+00:00", 5.0],
                                      ["2008-01-20T09:25:00+00:00", 5.5]]
    assert ev.location == "ward 3" and ev.scanned_coi == b.coi_identifier


def test_a_step_out_of_order_is_refused_and_writes_nothing(enrolled: Any, store: Any) -> None:
    from hepatrial.trials.models.product import CustodyEvent

    b = P.to_qa_review(store, "K01", DAY0, submit=False)
    n = CustodyEvent.objects.count()
    with pytest.raises(store.ProductStepRefused) as exc:
        store.dispatch_batch(b, scanned_coi=b.coi_identifier, at=P.at(DAY0, 9))
    assert _conditions(exc)[0] == "state"
    assert "cannot dispatch a batch that is qc (allowed from: exceptional_release, released)" \
        in str(exc.value)
    with pytest.raises(store.ProductStepRefused, match="cannot start_manufacture a batch that "
                       "is qc"):
        store.start_manufacture(b, at=P.at(DAY0, 9))
    P.qa_user(store, "qa_S01")
    with pytest.raises(store.ProductStepRefused, match="cannot release a batch that is qc"):
        store.release_batch(b, user="qa_S01", password=P.QA_PASSWORD,
                            released_at=P.at(DAY0, 8, 30))
    with pytest.raises(store.ProductStepRefused, match="time_order"):
        store.submit_for_review(b, at=P.at(DAY0, 6))  # before the formulation at 07:00
    assert CustodyEvent.objects.count() == n
    assert store.submit_for_review(b, at=P.at(DAY0, 8)).state == "qa_review"


def test_receipt_at_the_facility_names_every_unmet_condition(enrolled: Any, store: Any) -> None:
    from hepatrial.trials.models.product import CellProductBatch

    h0 = DAY0 - dt.timedelta(days=14)
    h = P.harvest(store, "K01", h0, volume_ml="12")
    with pytest.raises(store.ProductStepRefused) as exc:
        store.register_batch(participant="K01", coi=h.coi, received_at=P.at(h0 + dt.timedelta(
            days=1), 9), receipt_temperature_c=31.0, facility="GMP cell lab")
    assert sorted(_conditions(exc)) == ["receipt_temperature", "receipt_time", "starting_volume"]
    msg = str(exc.value)
    assert "received 25.0 h after collection (at most 24 h)" in msg
    assert "31 °C at receipt is outside 15 to 25 °C" in msg
    assert "12 mL is outside the accepted 30-100 mL" in msg
    assert not CellProductBatch.objects.exists()
    wrong = h.coi[:-1] + ("A" if h.coi[-1] != "A" else "B")
    with pytest.raises(store.StoreError) as exc2:
        store.register_batch(participant="K01", coi=wrong, received_at=P.at(h0, 11),
                             receipt_temperature_c=20.0)
    assert f"check character {wrong[-1]!r} is wrong: expected {h.coi[-1]!r}" in str(exc2.value)
    enrol(store, "K02")
    with pytest.raises(store.StoreError, match="is participant K01's, not K02's"):
        store.register_batch(participant="K02", coi=h.coi, received_at=P.at(h0, 11),
                             receipt_temperature_c=20.0, volume_ml="60")
    b = store.register_batch(participant="K01", coi=h.coi, received_at=P.at(h0, 11),
                             receipt_temperature_c=20.0, volume_ml="60")
    assert b.state == "received"
    with pytest.raises(store.StoreError, match="a batch was already made from harvest"):
        store.register_batch(participant="K01", coi=h.coi, batch_id="B-other",
                             received_at=P.at(h0, 11), receipt_temperature_c=20.0)


def test_harvest_rules_and_unique_chain_of_identity(enrolled: Any, store: Any) -> None:
    from hepatrial.trials.models.product import Harvest

    h0 = DAY0 - dt.timedelta(days=14)
    with pytest.raises(store.StoreError) as exc:
        store.record_harvest(participant="K01", collected_at="2008-01-06 08:00",
                             operator=" ", volume_ml="-3")
    msg = str(exc.value)
    assert "collected_at: '2008-01-06 08:00' has no time zone" in msg
    assert "operator: is required" in msg and "volume_ml: '-3' must be positive" in msg
    a = P.harvest(store, "K01", h0)
    b = P.harvest(store, "K01", h0, collected_at=P.at(h0, 15))
    assert (a.sequence, b.sequence) == (1, 2) and a.coi != b.coi
    assert a.coi[:17] == "S01-20080106-001-" and b.coi[:17] == "S01-20080106-002-"
    assert Harvest.objects.count() == 2
    with pytest.raises(store.StoreError, match="is in the future"):
        P.harvest(store, "K01", dt.date(2999, 1, 1))


def test_manufacture_needs_every_step_and_control_met(enrolled: Any, store: Any) -> None:
    h0 = DAY0 - dt.timedelta(days=14)
    P.weigh(store, "K01", DAY0)
    h = P.harvest(store, "K01", h0)
    b = store.register_batch(participant="K01", coi=h.coi, received_at=P.at(h0, 11),
                             receipt_temperature_c=20.0)
    with pytest.raises(store.ProductStepRefused, match="manufacturing steps are recorded "
                       "while the batch is in manufacture; it is received"):
        store.record_manufacturing_step(b, step="isolation", started_at=P.at(h0, 13),
                                        completed_at=P.at(h0, 14), operator="tech1")
    store.start_manufacture(b, at=P.at(h0, 12))
    with pytest.raises(store.StoreError) as exc:
        store.record_manufacturing_step(
            b, step="expansion", started_at=P.at(h0, 14), completed_at=P.at(h0, 13),
            operator="tech1", reagents=[{"name": "FBS"}],
            controls={"passage": "six", "colour": "pink"})
    msg = str(exc.value)
    assert "completed_at: 2008-01-06T13:00:00+00:00 is before the start" in msg
    assert "reagents[1].lot: is required" in msg
    assert "controls.passage: 'six' is not a number in 1" in msg
    assert "controls.colour: is not an in-process control of step expansion" in msg
    store.record_manufacturing_step(b, step="isolation", started_at=P.at(h0, 13),
                                    completed_at=P.at(h0, 15), operator="tech1",
                                    controls={"viability": 88})
    store.record_manufacturing_step(b, step="expansion", started_at=P.at(h0, 16),
                                    completed_at=P.at(h0, 18), operator="tech1",
                                    controls={"passage": 6, "population_doublings": 12})
    with pytest.raises(store.ProductStepRefused) as exc2:
        store.complete_manufacture(b, formulated_at=P.at(DAY0, 7))
    msg = str(exc2.value)
    assert set(_conditions(exc2)) == {"in_process_controls"}
    assert "expansion.passage: 6 1 does not meet the specification 1-4 1" in msg
    assert "expansion.confluence: no result" in msg
    assert "step harvest (Harvest, wash and count) is not recorded" in msg
    assert "step formulation (Formulation in 10 mL normal saline) is not recorded" in msg


def test_qc_results_are_typed_as_entered_and_needed_for_review(enrolled: Any,
                                                               store: Any) -> None:
    results = {k: v for k, v in P.RELEASE_TESTS.items() if k not in ("sterility", "cd34")}
    b = P.to_qa_review(store, "K01", DAY0, results=results, submit=False)
    with pytest.raises(store.StoreError) as exc:
        store.record_qc_result(b, test="viability", result="92", unit="fraction",
                               analyst="a", tested_on="2008-01-20")
    assert "unit 'fraction' is not the specification's unit '%'" in str(exc.value)
    with pytest.raises(store.StoreError, match="'sterile' is not a test of the protocol's"):
        store.record_qc_result(b, test="sterile", result="ok", analyst="a",
                               tested_on="2008-01-20")
    with pytest.raises(store.StoreError, match="'abc' is not a number in %"):
        store.record_qc_result(b, test="cd34", result="abc", analyst="a", tested_on=DAY0)
    with pytest.raises(store.ProductStepRefused) as exc2:
        store.submit_for_review(b, at=P.at(DAY0, 8))
    assert str(exc2.value).count("release_results") == 1  # sterility pends on the Gram stain
    assert "cd34: no result" in str(exc2.value)
    q = store.record_qc_result(b, test="cd34", result="0.60", unit="%", analyst="analyst2",
                               tested_on=DAY0, method="flow cytometry")
    assert (q.value, q.value_as_entered, q.unit) == (0.6, "0.60", "%")
    with pytest.raises(store.ChangeReasonRequired):
        store.record_qc_result(b, test="cd34", result="0.7", analyst="analyst2",
                               tested_on=DAY0)
    store.submit_for_review(b, at=P.at(DAY0, 8))
    # sterility culture still pending: released on the Gram stain (rapid release)
    rel = P.release(store, b, DAY0)
    from hepatrial.trials.models.product import BatchRelease

    r = BatchRelease.objects.get(batch=rel)
    assert r.conclusion == "meets the specification; pending (rapid release): sterility"


def test_release_refusals(enrolled: Any, store: Any) -> None:
    from hepatrial.errors import AuthenticationFailed, PermissionDenied
    from hepatrial.trials.models import UserProfile
    from hepatrial.trials.models.product import ProductSignature

    b = P.to_qa_review(store, "K01", DAY0, operator="qa_S01")
    with pytest.raises(PermissionDenied, match="system account cannot e-sign"):
        store.release_batch(b, user=None, password="x")
    store.create_user(username="coord", password="coordinating nicely", site_codes=["S01"])
    with pytest.raises(PermissionDenied, match="only qa may release"):
        store.release_batch(b, user="coord", password="coordinating nicely")
    qa = P.qa_user(store, "qa_S01")
    with pytest.raises(AuthenticationFailed, match="wrong password"):
        store.release_batch(b, user="qa_S01", password="not it")
    assert UserProfile.objects.get(user=qa).failed_signatures == 1
    with pytest.raises(store.ProductStepRefused) as exc:  # four eyes; and 14:00 is past 13:00
        store.release_batch(b, user="qa_S01", password=P.QA_PASSWORD,
                            released_at=P.at(DAY0, 14))
    assert _conditions(exc) == ["four_eyes", "within_shelf_life"]
    assert "qa_S01 manufactured this batch and cannot release it" in str(exc.value)
    assert "expired at 2008-01-20T13:00:00+00:00 (6 h after formulation)" in str(exc.value)
    assert not ProductSignature.objects.exists()
    P.qa_user(store, "qa2")
    b = store.release_batch(b, user="qa2", password=P.QA_PASSWORD,
                            released_at=P.at(DAY0, 8, 30))
    assert b.state == "released"


#: the batch of the issue: sterility positive, viability 41 %, endotoxin 9.5 EU/mL, mycoplasma
#: positive
BAD = {**P.RELEASE_TESTS, "sterility": "positive", "viability": 41.0, "endotoxin": 9.5,
       "mycoplasma": "positive"}


def test_out_of_specification_batch_is_refused_naming_each_test(enrolled: Any,
                                                                store: Any) -> None:
    b = P.to_qa_review(store, "K01", DAY0, results=BAD)
    P.qa_user(store, "qa_S01")
    with pytest.raises(store.ProductStepRefused) as exc:
        store.release_batch(b, user="qa_S01", password=P.QA_PASSWORD,
                            released_at=P.at(DAY0, 8, 30))
    msg = str(exc.value)
    assert _conditions(exc) == ["specification"] * 4
    assert "viability: 41 % does not meet the specification >= 70 %" in msg
    assert "sterility: 'positive' does not meet the specification 'no growth'" in msg
    assert "endotoxin: 9.5 EU/mL does not meet the specification <= 0.5 EU/mL" in msg
    assert "mycoplasma: 'positive' does not meet the specification 'negative'" in msg


def test_exceptional_release_needs_justification_and_investigator(enrolled: Any,
                                                                  store: Any) -> None:
    from hepatrial.errors import PermissionDenied
    from hepatrial.trials.models import ProtocolDeviation
    from hepatrial.trials.models.product import BatchRelease

    good = P.to_qa_review(store, "K01", DAY0)
    P.qa_user(store, "qa_S01")
    P.investigator(store, "inv1")
    kw = {"user": "qa_S01", "password": P.QA_PASSWORD, "investigator": "inv1",
          "investigator_password": P.INV_PASSWORD, "released_at": P.at(DAY0, 8, 30)}
    with pytest.raises(store.ProductStepRefused) as exc:
        store.release_batch_exceptionally(good, justification="", **kw)
    assert _conditions(exc) == ["out_of_specification", "medical_justification"]
    bad = P.to_qa_review(store, "K01", DAY0, results={**P.RELEASE_TESTS, "viability": 65.0})
    with pytest.raises(PermissionDenied, match="only investigator may"):
        store.release_batch_exceptionally(bad, justification="no other batch", **{
            **kw, "investigator": "qa_S01", "investigator_password": P.QA_PASSWORD})
    b = store.release_batch_exceptionally(
        bad, justification="no second marrow harvest possible; viability 65 % acceptable "
        "for this patient", **kw)
    assert b.state == "exceptional_release"
    rel = BatchRelease.objects.get(batch=b)
    assert rel.exceptional and rel.investigator_signature.meaning == "medical_justification"
    assert rel.qa_signature.meaning == "exceptional_release"
    dev = ProtocolDeviation.objects.get(pk=rel.deviation_id)
    assert dev.major and dev.category == "other"
    assert dev.description.startswith("exceptional release of an out-of-specification batch "
                                      "(viability: 65 % does not meet the specification")
    P.to_bedside(store, b, DAY0)
    a = P.administer(store, "K01", b.batch_id, DAY0)
    assert a.batch_id == b.batch_id


def test_distribution_refusals(enrolled: Any, store: Any) -> None:
    b = P.to_qa_review(store, "K01", DAY0)
    P.release(store, b, DAY0)
    other = P.harvest(store, "K01", DAY0 - dt.timedelta(days=3))
    with pytest.raises(store.ProductStepRefused) as exc:
        store.dispatch_batch(b.batch_id, scanned_coi=other.coi, at=P.at(DAY0, 13, 30))
    assert _conditions(exc) == ["coi_scanned", "within_shelf_life"]
    assert f"scanned {other.coi!r} is not this batch's chain-of-identity id" in str(exc.value)
    from hepatrial.trials.models.product import CustodyEvent

    events = CustodyEvent.objects.count()
    with pytest.raises(store.ProductStepRefused) as exc_t:  # stored at room temperature
        store.dispatch_batch(b.batch_id, scanned_coi=b.coi_identifier, at=P.at(DAY0, 9),
                             temperature_c=21.5)
    assert _conditions(exc_t) == ["storage_temperature"]
    assert "21.5 °C at dispatch is outside the storage range 2 to 8 °C" in str(exc_t.value)
    with pytest.raises(store.StoreError, match=r"temperature_c: 'warm' is not a temperature"):
        store.dispatch_batch(b.batch_id, scanned_coi=b.coi_identifier, at=P.at(DAY0, 9),
                             temperature_c="warm")
    assert CustodyEvent.objects.count() == events
    store.dispatch_batch(b.batch_id, scanned_coi=b.coi_identifier, at=P.at(DAY0, 9))
    with pytest.raises(store.ProductStepRefused) as exc_a:
        store.receive_at_bedside(b.batch_id, scanned_coi=b.coi_identifier, at=P.at(DAY0, 9, 30),
                                 readings=[(P.at(DAY0, 9, 5), 5.0)], temperature_c=12)
    assert "12 °C on arrival at the bedside is outside 2 to 8 °C" in str(exc_a.value)
    with pytest.raises(store.ProductStepRefused) as exc2:
        store.receive_at_bedside(b.batch_id, scanned_coi=b.coi_identifier, readings=[],
                                 at=P.at(DAY0, 9, 30))
    assert _conditions(exc2) == ["transport_temperature"]
    with pytest.raises(store.ProductStepRefused) as exc3:
        store.receive_at_bedside(
            b.batch_id, scanned_coi=b.coi_identifier, at=P.at(DAY0, 9, 30),
            readings=[(P.at(DAY0, 9, 5), 5.0), (P.at(DAY0, 9, 15), 9.1)])
    assert "1 reading(s) outside 2 to 8 °C: 2008-01-20T09:15:00+00:00 9.1 °C" in str(exc3.value)
    with pytest.raises(store.StoreError, match=r"readings\[1\]: 'noon' is not a date and time"):
        store.receive_at_bedside(b.batch_id, scanned_coi=b.coi_identifier,
                                 readings=[("noon", 5.0)])


def test_quarantine_investigation_resume_return_destroy(enrolled: Any, store: Any) -> None:
    from hepatrial.errors import PermissionDenied
    from hepatrial.trials.models.product import CellProductBatch

    b = P.to_qa_review(store, "K01", DAY0)
    P.release(store, b, DAY0)
    with pytest.raises(store.ProductStepRefused, match="reason: give the reason"):
        store.quarantine_batch(b.batch_id, reason=" ", at=P.at(DAY0, 8, 40))
    store.quarantine_batch(b.batch_id, reason="label smudged", at=P.at(DAY0, 8, 40))
    assert CellProductBatch.objects.get(pk=b.pk).quarantined_from == "released"
    store.investigate_batch(b.batch_id, reason="label reprint and identity check",
                            at=P.at(DAY0, 8, 45))
    with pytest.raises(PermissionDenied):  # resuming is QA's decision
        store.resume_batch(b.batch_id, reason="label fine", at=P.at(DAY0, 8, 50),
                           user=store.create_user(username="dm", password=None,
                                                  role="data-manager"))
    got = store.resume_batch(b.batch_id, reason="identity confirmed", at=P.at(DAY0, 8, 50),
                             user="qa_S01")
    assert got.state == "qa_review" and not got.released and got.released_at is None
    with pytest.raises(store.StoreError, match="is qa_review, not released"):
        P.administer(store, "K01", b.batch_id, DAY0)
    store.release_batch(b.batch_id, user="qa2" if P.qa_user(store, "qa2") else "",
                        password=P.QA_PASSWORD, released_at=P.at(DAY0, 8, 55))
    store.dispatch_batch(b.batch_id, scanned_coi=b.coi_identifier, at=P.at(DAY0, 9))
    store.return_batch(b.batch_id, reason="infusion postponed", at=P.at(DAY0, 9, 10))
    with pytest.raises(store.ProductStepRefused, match="qa_role"):
        store.destroy_batch(b.batch_id, reason="expired", at=P.at(DAY0, 14))
    d = store.destroy_batch(b.batch_id, reason="expired", method="autoclave",
                            at=P.at(DAY0, 14), user="qa_S01")
    assert d.state == "destroyed"
    with pytest.raises(store.ProductStepRefused, match="cannot quarantine a batch that is "
                       "destroyed"):
        store.quarantine_batch(b.batch_id, reason="x", at=P.at(DAY0, 15))
    assert [e[0] for e in _events(b.batch_id)][-8:] == [
        "release", "quarantine", "investigate", "resume", "release", "dispatch", "return",
        "destroy"]


def test_a_changed_qc_result_invalidates_the_release_signature(enrolled: Any,
                                                               store: Any) -> None:
    from hepatrial.trials.models.product import BatchRelease, QcResult
    from hepatrial.trials.services.product import product_signature_status

    b = P.to_qa_review(store, "K01", DAY0)
    P.release(store, b, DAY0)
    sig = BatchRelease.objects.get(batch=b).qa_signature
    assert product_signature_status(sig) == "valid"
    q = QcResult.objects.get(batch=b, test="sterility")
    store.update_qc_result(q, result="growth of S. epidermidis", reason="14-day culture read")
    status = product_signature_status(sig)
    assert status.startswith("invalidated by change seq ")
    assert int(status.rsplit(" ", 1)[1]) > sig.ledger_seq


def test_batch_made_before_the_lifecycle_cannot_take_steps(enrolled: Any, store: Any) -> None:
    """A batch of a store before migration 0005 (no harvest, no state) is refused by name."""
    from hepatrial.trials.models.product import CellProductBatch

    b = CellProductBatch(batch_id="B-OLD", participant=enrolled, coi_identifier="A0001",
                         released=True, release_date=DAY0)
    b.save()
    with pytest.raises(store.ProductStepRefused) as exc:
        store.quarantine_batch("B-OLD", reason="audit", at=P.at(DAY0, 9))
    assert _conditions(exc)[0] == "state"
    assert "registered before the product lifecycle" in str(exc.value)
