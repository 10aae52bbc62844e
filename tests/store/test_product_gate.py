"""The dosing gate on every path that writes an administration: the product service (create
and correction) and the admin (add and change; the CLI is in tests/cli/test_product_cli.py).

Each refusal names every unmet condition (``hepatrial.protocol.dosing.CONDITIONS``, plus the
store's ``state``: a batch is given only after its receipt at the bedside) and writes nothing.
Conditions no store path can reach are judged by the pure gate (tests/protocol):
``transport_temperature`` (a transport excursion already refuses the bedside receipt: tested
in test_product_lifecycle) and ``weight_recorded`` (kharaziha2009 doses in total cells).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.store import _product as P
from tests.store.conftest import DAY0, enrol


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def ward(store: Any) -> dict[str, Any]:
    """K01 with batch B1 at the bedside and B1Q in QA review; K02 with B2 at the bedside;
    K03 (enrolled 3 days earlier) with B3 at the bedside, withdrawn the day before."""
    enrol(store, "K01")
    enrol(store, "K02")
    enrol(store, "K03", day0=DAY0 - dt.timedelta(days=3))
    out = {"B1": P.ready_batch(store, "B1", "K01", DAY0),
           "B2": P.ready_batch(store, "B2", "K02", DAY0),
           "B3": P.ready_batch(store, "B3", "K03", DAY0),
           "B1Q": P.to_qa_review(store, "K01", DAY0, batch_id="B1Q")}
    store.change_status(participant="K03", status="withdrawn", date=DAY0 - dt.timedelta(days=1),
                        reason="withdrew consent")
    return out


def _coi(batch: str) -> str:
    from hepatrial.trials.models.product import CellProductBatch

    return str(CellProductBatch.objects.get(batch_id=batch).coi_identifier)


def _wrong_check(coi: str) -> str:
    return coi[:-1] + ("A" if coi[-1] != "A" else "B")


#: (case, participant, batch, changes to the request, conditions named, a text named)
CASES: list[tuple[str, str, str, dict[str, Any], list[str], str]] = [
    ("no such batch", "K01", "B-none", {"scanned_coi": "K"}, ["batch_exists", "coi_scanned"],
     "batch 'B-none' does not exist"),
    ("another participant's batch", "K01", "B2", {}, ["batch_belongs", "coi_scanned"],
     "batch 'B2' belongs to participant K02, not to K01 (autologous product)"),
    ("batch in QA review", "K01", "B1Q", {}, ["batch_released", "transport_temperature"],
     "batch 'B1Q' is qa_review, not released"),
    ("expired", "K01", "B1", {"administered_at": P.at(DAY0, 13, 1)}, ["within_shelf_life"],
     "expired at 2008-01-20T13:00:00+00:00 (6 h after formulation)"),
    ("mistyped label", "K01", "B1", {"scanned_coi": "wrong"}, ["coi_scanned"],
     "check character"),
    ("one identifier", "K01", "B1", {"identifiers": {"study_id": "K01"}},
     ["patient_identifiers"], "1 patient identifier(s) checked; at least 2 are needed"),
    ("wrong year of birth", "K01", "B1",
     {"identifiers": {"study_id": "K01", "year_of_birth": "1961"}}, ["patient_identifiers"],
     "year_of_birth '1961' does not match the participant's record"),
    ("withdrawn", "K03", "B3", {}, ["administered_at", "participant_enrolled"],
     "K03 is withdrawn, not enrolled"),
    ("route not allowed", "K01", "B1", {"route": "hepatic_artery"}, ["route_allowed"],
     "'hepatic_artery' is not a route the protocol allows (peripheral_vein, portal_vein)"),
    ("dose too high", "K01", "B1", {"cells_total": 80e6}, ["dose_in_range"],
     "dose 8e+07 cells is outside the protocol's range 3e+07-5e+07 cells (give an override"),
    ("everything at once", "K01", "B2",
     {"route": "hepatic_artery", "cells_total": 80e6, "identifiers": {"study_id": "K01"},
      "administered_at": P.at(DAY0, 14)},
     ["batch_belongs", "within_shelf_life", "coi_scanned", "patient_identifiers",
      "route_allowed", "dose_in_range"], "belongs to participant K02"),
]


def _request(participant: str, batch: str, changes: dict[str, Any]) -> dict[str, Any]:
    coi = _coi(batch) if batch != "B-none" else "S01-20080106-001-JG15S-M"
    values = {"participant": participant, "batch_id": batch, "scanned_coi": coi,
              "identifiers": P.identifiers_of(participant), "route": "portal_vein",
              "cells_total": 40e6, "volume_ml": 10, "administered_at": P.at(DAY0, 10),
              "operator": "nurse1", **changes}
    if values["scanned_coi"] == "wrong":
        values["scanned_coi"] = _wrong_check(coi)
    return values


def _fields(exc: Any) -> list[str]:
    return sorted({p.field for p in exc.value.problems})


def test_service_create_refuses_every_unmet_condition(ward: Any, store: Any) -> None:
    from hepatrial.trials.models import ProtocolDeviation
    from hepatrial.trials.models.product import Administration, CustodyEvent

    n_events = CustodyEvent.objects.count()
    for case, pid, batch, changes, conditions, text in CASES:
        with pytest.raises(store.StoreError) as exc:
            store.record_administration(**_request(pid, batch, changes))
        assert _fields(exc) == sorted(conditions), case
        assert text in str(exc.value), (case, str(exc.value))
    assert not Administration.objects.exists() and CustodyEvent.objects.count() == n_events
    assert not ProtocolDeviation.objects.filter(category="dosing").exists()
    # the override: given, with a major dosing deviation
    a = store.record_administration(**_request("K01", "B1", {
        "cells_total": 80e6, "dose_override_reason": "the whole batch, investigator's call"}))
    dev = ProtocolDeviation.objects.get(category="dosing")
    assert dev.major and "administered by override: the whole batch" in dev.description
    assert a.dose_override_reason == "the whole batch, investigator's call"
    # the same batch again: already administered; exactly one administration
    with pytest.raises(store.StoreError, match="batch 'B1' has already been administered"):
        store.record_administration(**_request("K01", "B1", {}))
    assert Administration.objects.count() == 1


def test_released_batch_is_given_only_after_bedside_receipt(ward: Any, store: Any) -> None:
    P.release(store, ward["B1Q"], DAY0)
    with pytest.raises(store.StoreError) as exc:
        store.record_administration(**_request("K01", "B1Q", {}))
    assert _fields(exc) == ["state", "transport_temperature"]  # no transport record yet
    assert "batch B1Q is released: it is given only after its receipt at the bedside" in str(
        exc.value)
    store.quarantine_batch("B1", reason="label damaged", at=P.at(DAY0, 9, 45))
    with pytest.raises(store.StoreError, match="batch 'B1' is quarantined, not released"):
        store.record_administration(**_request("K01", "B1", {}))


def test_service_correction_runs_the_gate_again(ward: Any, store: Any) -> None:
    from hepatrial.trials.models import ProtocolDeviation

    a = store.record_administration(**_request("K01", "B1", {}))
    for changes, conditions, text in [
        ({"cells_total": 80e6}, ["dose_in_range"], "give an override"),
        ({"route": "hepatic_artery"}, ["route_allowed"], "is not a route the protocol allows"),
        ({"scanned_coi": _coi("B2")}, ["coi_scanned"], "is not the chain-of-identity id of"),
        ({"identifiers": {"study_id": "K01", "year_of_birth": "1900"}},
         ["patient_identifiers"], "does not match the participant's record"),
        ({"administered_at": P.at(DAY0, 13, 30)}, ["within_shelf_life"], "expired at"),
        ({"administered_at": P.at(DAY0, 8)}, ["batch_released"],
         "is before the release of batch 'B1'"),
    ]:
        with pytest.raises(store.StoreError) as exc:
            store.update_administration(a, reason="correction", **changes)
        assert _fields(exc) == conditions, changes
        assert text in str(exc.value)
    with pytest.raises(store.StoreError, match="the batch of an administration cannot be "
                       "changed"):
        store.update_administration(a, reason="x", batch_id="B2")
    with pytest.raises(store.ChangeReasonRequired):
        store.update_administration(a, operator="nurse2")
    a = store.update_administration(a, reason="dose as prepared", cells_total=80e6,
                                    dose_override_reason="whole batch")
    assert a.cells_total == 80e6 and a.cells_per_kg == pytest.approx(80e6 / 80)
    assert ProtocolDeviation.objects.filter(category="dosing", major=True).count() == 1
    # a later status (completed) does not make the correction of an earlier infusion refused
    store.change_status(participant="K01", status="completed", date=DAY0 + dt.timedelta(
        days=168), reason="follow-up complete")
    a = store.update_administration(a, reason="operator's name", operator="nurse2")
    assert a.operator == "nurse2"


def test_safety_pause_stops_dosing(ward: Any, store: Any, monkeypatch: Any) -> None:
    """The gate asks the safety module (``services.safety.dosing_pause``) on every write."""
    from hepatrial.protocol.dosing import DosingPause
    from hepatrial.trials.services import safety

    monkeypatch.setattr(safety, "dosing_pause", lambda p, **_kw: DosingPause(
        "SR-PORTAL", "portal vein thrombosis within 28 days"))
    with pytest.raises(store.StoreError) as exc:
        store.record_administration(**_request("K01", "B1", {}))
    assert _fields(exc) == ["dosing_not_paused"]
    assert "dosing is paused by stopping rule SR-PORTAL: portal vein thrombosis" in str(
        exc.value)
    monkeypatch.setattr(safety, "dosing_pause", lambda p, **_kw: None)
    assert store.record_administration(**_request("K01", "B1", {})).batch_id == "B1"


def test_sentinel_rule_pauses_the_next_participant(ward: Any, store: Any) -> None:
    """With the safety store: the second participant is dosed only 14 days or more after the
    first and after the review of the first's safety data (a signed DSMB decision dated
    between the two doses), as the protocol's sentinel rule says."""
    P.administer(store, "K01", "B1", DAY0, review=False)
    with pytest.raises(store.StoreError, match="dosing_not_paused: dosing is paused by "
                       "stopping rule SR-SENTINEL"):
        P.administer(store, "K02", "B2", DAY0, review=False)
    later = DAY0 + dt.timedelta(days=14)
    P.ready_batch(store, "B2L", "K02", later)
    P.allow_dosing(store, "K02", P.at(later, 10))
    assert P.administer(store, "K02", "B2L", later, review=False).batch_id == "B2L"


def test_observations_and_an_infusion_reaction(ward: Any, store: Any) -> None:
    from hepatrial.trials.models import AdverseEvent

    a = P.administer(store, "K01", "B1", DAY0)
    o = store.record_observation(a, minute=0, observed_at=P.at(DAY0, 10), heart_rate=72,
                                 systolic_bp=120, diastolic_bp=80, temperature_c="36.8",
                                 spo2=98, respiratory_rate=14, observer="nurse1")
    assert (o.heart_rate, str(o.temperature_c), o.adverse_event_id) == (72, "36.8", None)
    with pytest.raises(store.StoreError) as exc:
        store.record_observation(a, minute=0, observed_at=P.at(DAY0, 9), heart_rate=720,
                                 temperature_c="36.85", reaction=True, observer="nurse1")
    msg = str(exc.value)
    for text in ("minute: the observation at 0 min is already recorded",
                 "observed_at: 2008-01-20T09:00:00+00:00 is before the start of the infusion",
                 "heart_rate: 720 is outside 20-250", "temperature_c: '36.85' has more than 1",
                 "reaction_description: is required", "reaction_term: is required",
                 "reaction_grade: None is not a CTCAE grade 1-5"):
        assert text in msg, text
    with pytest.raises(store.StoreError, match="minute: 20 is not one of 0, 15, 30, 60"):
        store.record_observation(a, minute=20, observed_at=P.at(DAY0, 10, 20), observer="n")
    o = store.record_observation(
        a, minute=15, observed_at=P.at(DAY0, 10, 15), heart_rate=118, temperature_c="38.9",
        reaction=True, reaction_description="rigors and fever during the infusion",
        reaction_term="Infusion related reaction", reaction_grade=2, observer="nurse1")
    ae = AdverseEvent.objects.get(pk=o.adverse_event_id)
    assert (ae.term, ae.grade, ae.onset_date) == ("Infusion related reaction", 2, DAY0)


# ---------------------------------------------------------------------- the admin
def _client(store: Any) -> Any:
    from django.test import Client

    u = store.create_user(username="coord_a", password=None, site_codes=["S01"])
    c = Client()
    c.force_login(u)
    return c


def _form(participant: str, batch: str, changes: dict[str, Any]) -> dict[str, Any]:
    from hepatrial.trials.models import Participant

    r = _request(participant, batch, changes)
    t = r["administered_at"]
    return {"participant": Participant.objects.get(study_id=participant).pk,
            "batch_id": batch, "scanned_coi": r["scanned_coi"],
            "id_study_id": r["identifiers"].get("study_id", ""),
            "id_year_of_birth": r["identifiers"].get("year_of_birth", ""),
            "route": r["route"], "cells_total": str(r["cells_total"]), "cells_per_kg": "",
            "volume_ml": "10", "administered_at_0": t.date().isoformat(),
            "administered_at_1": t.strftime("%H:%M:%S"), "operator": "nurse1",
            "dose_override_reason": r.get("dose_override_reason", "")}


def test_admin_add_and_change_run_the_gate(ward: Any, store: Any) -> None:
    import html

    from hepatrial.trials.models.product import Administration

    c = _client(store)
    for case, pid, batch, changes, _conditions, text in CASES:
        if "identifiers" in changes and len(changes["identifiers"]) < 2:
            continue  # the form always has both identifier fields (an empty one: below)
        r = c.post("/admin/trials/administration/add/", _form(pid, batch, changes))
        page = html.unescape(r.content.decode())
        assert r.status_code == 200, case
        assert text in page, (case, page[:3000])
    data = _form("K01", "B1", {})
    data["id_year_of_birth"] = ""
    r = c.post("/admin/trials/administration/add/", data)
    assert r.status_code == 200 and "This field is required" in r.content.decode()
    assert not Administration.objects.exists()
    r = c.post("/admin/trials/administration/add/", _form("K01", "B1", {}))
    assert r.status_code == 302, r.content.decode()[:3000]
    a = Administration.objects.get()
    url = f"/admin/trials/administration/{a.pk}/change/"
    data = _form("K01", "B1", {"cells_total": 80e6})
    data.pop("participant")
    data["change_reason"] = "dose as prepared"
    r = c.post(url, data)
    page = html.unescape(r.content.decode())
    assert r.status_code == 200 and "give an override with its reason" in page
    data["dose_override_reason"] = "whole batch given"
    r = c.post(url, data)
    assert r.status_code == 302, html.unescape(r.content.decode())[:3000]
    a.refresh_from_db()
    assert a.cells_total == 80e6 and a.history.first().history_user.username == "coord_a"
