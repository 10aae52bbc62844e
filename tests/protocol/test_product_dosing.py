"""The dosing gate (hepatrial.protocol.dosing.check_administration): every condition refused
with its name and reason, all of them reported at once, the override and its deviation."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from hepatrial.protocol.coi import make_coi
from hepatrial.protocol.dosing import (
    CONDITIONS,
    AdministrationRequest,
    DosingPause,
    GateBatch,
    GateParticipant,
    GateResult,
    check_administration,
)
from hepatrial.protocol.loader import load_protocol
from hepatrial.protocol.models import Product
from hepatrial.protocol.product_lifecycle import TemperatureReading

UTC = dt.UTC
FORMULATED = dt.datetime(2009, 2, 5, 7, 0, tzinfo=UTC)
RELEASED = FORMULATED + dt.timedelta(hours=1)
AT = FORMULATED + dt.timedelta(hours=3)
COI = make_coi("S01", "K01", dt.date(2009, 1, 15), 1)
BATCH = GateBatch(
    batch_id="B-K01", participant="K01", coi=COI, state="received_at_bedside",
    released_at=RELEASED, formulated_at=FORMULATED,
    transit_readings=(TemperatureReading(FORMULATED + dt.timedelta(hours=2), 4.5),),
)  # fmt: skip
PERSON = GateParticipant(
    study_id="K01", identifiers={"study_id": "K01", "year_of_birth": "1962",
                                 "hospital_number": "H-55012"},
    status="enrolled", eligible=True, weight_kg=70.0, weight_date=dt.date(2009, 2, 1),
)  # fmt: skip
REQUEST = AdministrationRequest(
    participant="K01", batch_id="B-K01", scanned_coi=COI,
    identifiers={"study_id": "K01", "year_of_birth": "1962"}, route="portal_vein",
    cells_total=40e6, at=AT, operator="dr.b", volume_ml=10,
)  # fmt: skip


def _product() -> Product:
    p = load_protocol("kharaziha2009").product
    assert p is not None
    return p


def _gate(request: AdministrationRequest = REQUEST, batch: GateBatch | None = BATCH,
          person: GateParticipant | None = PERSON, product: Any = "default",
          **kw: Any) -> GateResult:
    return check_administration(request, batch, person,
                                _product() if product == "default" else product, **kw)


def _by(res: GateResult) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for u in res.unmet:
        out.setdefault(u.condition, []).append(u.reason)
    return out


def test_allowed() -> None:
    res = _gate()
    assert res.allowed, res.message()
    assert res.deviations == () and res.cells_per_kg == pytest.approx(40e6 / 70)
    assert res.message() == "administration allowed"
    # a store without dispatch records passes state "released"
    assert _gate(batch=dataclasses.replace(BATCH, state="released")).allowed


def test_every_unmet_condition_at_once() -> None:
    other = make_coi("S01", "K02", dt.date(2009, 1, 15), 2)
    batch = dataclasses.replace(
        BATCH, participant="K02", coi=other, state="qa_review", formulated_at=FORMULATED,
        transit_readings=(TemperatureReading(AT, 12.0),))  # fmt: skip
    person = dataclasses.replace(PERSON, status="screened", eligible=None)
    req = dataclasses.replace(
        REQUEST, scanned_coi=other, identifiers={"study_id": "K01", "year_of_birth": "1961"},
        route="hepatic_artery", cells_total=9e9, at=FORMULATED + dt.timedelta(hours=7))
    res = _gate(req, batch, person, pause=DosingPause("SR-3", "grade 4 infusion reaction"))
    by = _by(res)
    assert list(by) == ["batch_belongs", "batch_released", "within_shelf_life",
                        "transport_temperature", "coi_scanned", "patient_identifiers",
                        "participant_enrolled", "participant_eligible", "dosing_not_paused",
                        "route_allowed", "dose_in_range"]  # fmt: skip
    assert by["batch_belongs"] == ["batch 'B-K01' belongs to participant K02, not to K01 "
                                   "(autologous product)"]  # fmt: skip
    assert by["batch_released"] == ["batch 'B-K01' is qa_review, not released"]
    assert by["within_shelf_life"] == ["expired at 2009-02-05T13:00:00+00:00 (6 h after "
                                       "formulation)"]  # fmt: skip
    assert by["transport_temperature"] == [
        "1 reading(s) outside 2 to 8 °C: 2009-02-05T10:00:00+00:00 12 °C"]
    assert by["coi_scanned"] == [f"scanned {other!r} was not made for participant K01"]
    assert by["patient_identifiers"] == [
        "year_of_birth '1961' does not match the participant's record"]
    assert by["participant_enrolled"] == ["K01 is screened, not enrolled"]
    assert by["participant_eligible"] == ["the eligibility of K01 is not determined"]
    assert by["dosing_not_paused"] == [
        "dosing is paused by stopping rule SR-3: grade 4 infusion reaction"]
    assert by["route_allowed"] == ["'hepatic_artery' is not a route the protocol allows "
                                   "(peripheral_vein, portal_vein)"]  # fmt: skip
    assert by["dose_in_range"][0].startswith(
        "dose 9e+09 cells is outside the protocol's range 3e+07-5e+07 cells (give an override")
    assert res.message().startswith("administration refused (11 unmet condition(s)):")
    assert set(by) <= set(CONDITIONS)


def test_batch_missing_or_unreleased() -> None:
    assert _by(_gate(batch=None)) == {"batch_exists": ["batch 'B-K01' does not exist"]}
    wrong_id = dataclasses.replace(BATCH, batch_id="B-K09")
    assert "batch_exists" in _by(_gate(batch=wrong_id))
    for state, why in [("administered", "batch 'B-K01' has already been administered"),
                       ("quarantined", "batch 'B-K01' is quarantined, not released"),
                       ("destroyed", "batch 'B-K01' is destroyed, not released")]:  # fmt: skip
        assert _by(_gate(batch=dataclasses.replace(BATCH, state=state))) == {
            "batch_released": [why]}
    early = dataclasses.replace(REQUEST, at=RELEASED - dt.timedelta(minutes=1))
    assert _by(_gate(early)) == {"batch_released": [
        "2009-02-05T07:59:00+00:00 is before the release of batch 'B-K01' at "
        "2009-02-05T08:00:00+00:00"]}
    assert _by(_gate(batch=dataclasses.replace(BATCH, released_at=None))) == {
        "batch_released": ["batch 'B-K01' has no release time"]}
    exc = dataclasses.replace(BATCH, state="exceptional_release")
    assert _gate(batch=exc).allowed


def test_shelf_life_boundaries() -> None:
    at_expiry = dataclasses.replace(REQUEST, at=FORMULATED + dt.timedelta(hours=6))
    assert _gate(at_expiry).allowed
    after = dataclasses.replace(REQUEST, at=FORMULATED + dt.timedelta(hours=6, seconds=1))
    assert "within_shelf_life" in _by(_gate(after))
    nof = dataclasses.replace(BATCH, formulated_at=None)
    assert _by(_gate(batch=nof)) == {"within_shelf_life": [
        "the time of formulation is not recorded"]}
    naive = dataclasses.replace(REQUEST, at=dt.datetime(2009, 2, 5, 10))
    assert "has no time zone" in _by(_gate(naive))["within_shelf_life"][0]


def test_transport_temperature() -> None:
    assert _by(_gate(batch=dataclasses.replace(BATCH, transit_readings=()))) == {
        "transport_temperature": ["no transport temperature record"]}
    edge = (TemperatureReading(AT, 2.0), TemperatureReading(AT, 8.0))
    assert _gate(batch=dataclasses.replace(BATCH, transit_readings=edge)).allowed


def test_scanned_identifier() -> None:
    bad = dataclasses.replace(REQUEST, scanned_coi=COI[:-1] + "Q")
    assert _by(_gate(bad))["coi_scanned"] == [
        f"{COI[:-1] + 'Q'!r}: check character 'Q' is wrong: expected 'D' (mis-scanned or "
        "mistyped identifier)"]
    another = make_coi("S01", "K01", dt.date(2009, 1, 16), 1)  # a valid id of another batch
    assert _by(_gate(dataclasses.replace(REQUEST, scanned_coi=another)))["coi_scanned"] == [
        f"scanned {another!r} is not the chain-of-identity id of batch 'B-K01' ({COI!r})"]
    assert _gate(dataclasses.replace(REQUEST, scanned_coi=COI + "\r\n")).allowed


def test_two_patient_identifiers() -> None:
    one = dataclasses.replace(REQUEST, identifiers={"study_id": "K01", "year_of_birth": " "})
    assert _by(_gate(one)) == {"patient_identifiers": [
        "1 patient identifier(s) checked; at least 2 are needed"]}
    unknown = dataclasses.replace(REQUEST, identifiers={"study_id": "K01", "initials": "AB"})
    assert _by(_gate(unknown)) == {"patient_identifiers": [
        "'initials' is not an identifier on the participant's record (hospital_number, "
        "study_id, year_of_birth)"]}
    three = dataclasses.replace(REQUEST, identifiers={"study_id": "K01", "year_of_birth": "1962",
                                                      "hospital_number": "H-55012"})
    assert _gate(three).allowed


def test_participant() -> None:
    assert _by(_gate(person=None)) == {"participant_enrolled": [
        "participant 'K01' does not exist"]}
    no = dataclasses.replace(PERSON, eligible=False)
    assert _by(_gate(person=no)) == {"participant_eligible": [
        "K01 does not meet the eligibility criteria"]}


def test_no_product() -> None:
    by = _by(_gate(product=None))
    assert by == {"protocol": ["the protocol declares no product: nothing may be administered"]}


def test_dose_range_boundaries_and_override() -> None:
    for cells in (30e6, 50e6):
        assert _gate(dataclasses.replace(REQUEST, cells_total=cells)).allowed
    low = dataclasses.replace(REQUEST, cells_total=29.9e6)
    assert "dose_in_range" in _by(_gate(low))
    over = dataclasses.replace(low, dose_override_reason="  only 29.9 x10^6 cells grew; "
                               "investigator decided to give the batch  ")
    res = _gate(over)
    assert res.allowed
    (dev,) = res.deviations
    assert (dev.category, dev.severity) == ("dosing", "major")
    assert dev.description == ("dose 2.99e+07 cells is outside the protocol's range "
                               "3e+07-5e+07 cells; administered by override: only 29.9 x10^6 "
                               "cells grew; investigator decided to give the batch")
    for cells in (0, -1, float("nan"), True):
        r = _gate(dataclasses.replace(REQUEST, cells_total=cells))
        assert _by(r)["dose_in_range"] == [f"{cells!r} is not a positive number of cells"]


def _per_kg() -> Product:
    pr = _product()
    return pr.model_copy(update={"dose_basis": "per_kg", "cells_min": 0.5e6, "cells_max": 1e6})


def test_per_kg_dose_from_the_latest_weight() -> None:
    pk = _per_kg()
    assert _gate(dataclasses.replace(REQUEST, cells_total=70e6), product=pk).allowed
    r = _gate(dataclasses.replace(REQUEST, cells_total=71e6), product=pk)
    assert _by(r)["dose_in_range"][0].startswith(
        "dose 1.014e+06 cells/kg (7.1e+07 cells / 70 kg) is outside the protocol's range "
        "5e+05-1e+06 cells/kg")
    noweight = dataclasses.replace(PERSON, weight_kg=None)
    r = _gate(person=noweight, product=pk)
    assert _by(r) == {"weight_recorded": [
        "the dose is per kg of body weight and the participant has no weight recorded"]}
    assert r.cells_per_kg is None
    # an override does not replace a missing weight
    r = _gate(dataclasses.replace(REQUEST, dose_override_reason="x"), person=noweight,
              product=pk)
    assert "weight_recorded" in _by(r)
