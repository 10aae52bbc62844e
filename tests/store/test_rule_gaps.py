"""Rule × path cells the review of issue 7 (note 7, section 2) found untested.

Each refusal names the record, the field and the reason, and nothing is written:

* an administration dated before its batch's release: service create and admin add;
* the admin change form of an administration posting another participant's batch and a
  nonexistent batch (the field is disabled on change: the posted value is ignored);
* a harvest and a batch for a participant who is only screened (product service);
* the eCRF visit CRF with a visit date in the future (the CRF has no specimen date field: a
  lab's specimen date is its visit's date, so a future specimen date comes only through it);
* ``import labs`` into a visit recorded as not done / missed.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

import pytest

from tests.store import _product as P
from tests.store.conftest import DAY0, enrol
from tests.store.conftest import ELIGIBLE as ELIGIBLE_DATA
from tests.web.conftest import login, today, world  # noqa: F401  (fixtures of the CRF test)


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _ledger() -> int:
    from hepatrial.trials.models import AuditLedger

    return AuditLedger.objects.count()


# ---------------------------------------------------------------------- administrations
@pytest.fixture
def two(store: Any) -> Any:
    """K01 with B1 and K02 with B2 at the bedside on day 0 (released 08:30)."""
    enrol(store, "K01")
    enrol(store, "K02")
    P.ready_batch(store, "B1", "K01", DAY0)
    P.ready_batch(store, "B2", "K02", DAY0)
    return store


def _coi(batch: str) -> str:
    from hepatrial.trials.models.product import CellProductBatch

    return str(CellProductBatch.objects.get(batch_id=batch).coi_identifier)


def _request(batch: str = "B1", at: dt.datetime | None = None) -> dict[str, Any]:
    return {"participant": "K01", "batch_id": batch, "scanned_coi": _coi(batch),
            "identifiers": P.identifiers_of("K01"), "route": "portal_vein",
            "cells_total": 40e6, "volume_ml": 10,
            "administered_at": at or P.at(DAY0, 10), "operator": "nurse1"}


def _form(batch: str = "B1", at: dt.datetime | None = None) -> dict[str, Any]:
    from hepatrial.trials.models import Participant

    r = _request(batch, at)
    t = r["administered_at"]
    return {"participant": Participant.objects.get(study_id="K01").pk, "batch_id": batch,
            "scanned_coi": r["scanned_coi"], "id_study_id": "K01",
            "id_year_of_birth": r["identifiers"]["year_of_birth"], "route": "portal_vein",
            "cells_total": "40000000.0", "cells_per_kg": "", "volume_ml": "10",
            "administered_at_0": t.date().isoformat(),
            "administered_at_1": t.strftime("%H:%M:%S"), "operator": "nurse1",
            "dose_override_reason": ""}


def _admin(store: Any) -> Any:
    from django.test import Client

    u = store.create_user(username="coord_a", password=None, site_codes=["S01"])
    c = Client()
    c.force_login(u)
    return c


BEFORE_RELEASE = ("2008-01-20T08:00:00+00:00 is before the release of batch 'B1' at "
                  "2008-01-20T08:30:00+00:00")


def test_administration_before_release_refused_on_service_create(two: Any) -> None:
    from hepatrial.trials.models import ProtocolDeviation
    from hepatrial.trials.models.product import Administration, CustodyEvent

    n_events, n_ledger = CustodyEvent.objects.count(), _ledger()
    with pytest.raises(two.StoreError) as exc:
        two.record_administration(**_request(at=P.at(DAY0, 8)))
    problems = [(p.record, p.field, p.reason) for p in exc.value.problems]
    assert [f for _r, f, _why in problems] == ["batch_released"], problems
    record, _f, reason = problems[0]
    assert "K01" in record and reason == BEFORE_RELEASE
    assert f"batch_released: {BEFORE_RELEASE}" in str(exc.value)
    assert not Administration.objects.exists()
    assert CustodyEvent.objects.count() == n_events and _ledger() == n_ledger
    assert not ProtocolDeviation.objects.filter(category="dosing").exists()
    # the same request after the release is given
    assert two.record_administration(**_request()).batch_id == "B1"


def test_administration_before_release_refused_on_admin_add(two: Any) -> None:
    from hepatrial.trials.models.product import Administration

    c = _admin(two)
    n_ledger = _ledger()
    r = c.post("/admin/trials/administration/add/", _form(at=P.at(DAY0, 8)))
    page = html.unescape(r.content.decode())
    assert r.status_code == 200
    assert BEFORE_RELEASE in page, page[:3000]
    # shown on the batch field of the form (the gate's batch_released -> batch_id)
    assert "field-batch_id" in page and "errorlist" in page
    assert not Administration.objects.exists() and _ledger() == n_ledger
    r = c.post("/admin/trials/administration/add/", _form())
    assert r.status_code == 302, html.unescape(r.content.decode())[:3000]
    assert Administration.objects.get().batch_id == "B1"


@pytest.mark.parametrize("posted", ["B2", "B-none"])
def test_admin_change_cannot_move_an_administration_to_another_batch(
        two: Any, posted: str) -> None:
    """The batch field is disabled on the change form: a posted batch id (another
    participant's, or one that does not exist) is ignored and the record keeps its batch; the
    service refuses a batch change outright."""
    from hepatrial.trials.models.product import Administration

    a = two.record_administration(**_request())
    c = _admin(two)
    url = f"/admin/trials/administration/{a.pk}/change/"
    page = html.unescape(c.get(url).content.decode())
    field = page[page.index('name="batch_id"') - 200:page.index('name="batch_id"') + 200]
    assert "disabled" in field, field
    n_history = a.history.count()
    data = _form()
    data.pop("participant")
    data["batch_id"] = posted
    # only the batch differs: nothing to change, nothing written
    r = c.post(url, {**data, "change_reason": "moved to another batch"})
    assert r.status_code in (200, 302), r.status_code
    a.refresh_from_db()
    assert a.batch_id == "B1" and a.history.count() == n_history
    # with a real change beside it: saved with the batch kept (the posted id is ignored)
    r = c.post(url, {**data, "operator": "nurse2", "change_reason": "operator's name"})
    assert r.status_code == 302, html.unescape(r.content.decode())[:3000]
    a.refresh_from_db()
    assert (a.batch_id, a.operator) == ("B1", "nurse2")
    assert Administration.objects.filter(batch__batch_id=posted).count() == 0
    assert a.history.first().batch_id == "B1"
    # the service path: refused, naming the field and the reason
    with pytest.raises(two.StoreError) as exc:
        two.update_administration(a, reason="x", batch_id=posted)
    assert str(exc.value) == (f"{a}: the batch of an administration cannot be changed (the "
                              "chain of custody records it as given); quarantine and "
                              "investigate instead")
    assert "K01" in str(a)
    a.refresh_from_db()
    assert a.batch_id == "B1"


# ---------------------------------------------------------------------- harvest / batch
def _screen_only(store: Any, study_id: str = "K05") -> None:
    from tests.store.conftest import ELIGIBLE

    store.screen_participant(study_id=study_id, site="S01", sex="F", year_of_birth=1965,
                             etiology="HCV", screening_date=DAY0 - dt.timedelta(days=20),
                             screening_data=ELIGIBLE)


def test_harvest_and_batch_while_screened_are_accepted(store: Any) -> None:
    """Decision (issue 7): a harvest and its batch may be recorded for a participant who is
    screened - the protocol's timeline aspirates the marrow 12-14 days before day 0, which is
    the enrolment date in this store - while release needs the whole specification and a QA
    e-signature, and administration an enrolled, eligible participant (the dosing gate)."""
    from hepatrial.trials.models.product import CellProductBatch, Harvest

    _screen_only(store)
    h = P.harvest(store, "K05", DAY0 - dt.timedelta(days=10))
    b = store.register_batch(participant="K05", coi=h.coi, batch_id="B5",
                             facility="GMP cell lab", received_at=P.at(DAY0 - dt.timedelta(
                                 days=10), 15), receipt_temperature_c=20.0)
    assert Harvest.objects.get().participant.study_id == "K05"
    assert CellProductBatch.objects.get().batch_id == b.batch_id == "B5"


def test_harvest_for_a_screen_failed_participant_is_refused(store: Any) -> None:
    from hepatrial.trials.models import Participant
    from hepatrial.trials.models.product import CellProductBatch, Harvest

    _screen_only(store)
    store.assess_eligibility(participant="K05", screening_data={**ELIGIBLE_DATA, "hcc": True},
                             reason="HCC found on the screening CT")
    assert Participant.objects.get(study_id="K05").status == "screen_failed"
    n_ledger = _ledger()
    with pytest.raises(store.StoreError) as exc:
        P.harvest(store, "K05", DAY0 - dt.timedelta(days=10))
    problems = [(p.record, p.field, p.reason) for p in exc.value.problems]
    assert ("participant K05 harvest", "participant",
            "K05 is screen_failed: a harvest is recorded only for a participant who is "
            "screened or enrolled") in problems, problems
    assert not Harvest.objects.exists() and not CellProductBatch.objects.exists()
    assert _ledger() == n_ledger


# ---------------------------------------------------------------------- eCRF visit CRF
def _labs(study_id: str, code: str) -> int:
    from hepatrial.trials.models import LabResult

    return LabResult.objects.filter(participant__study_id=study_id, visit__code=code).count()


def test_crf_refuses_a_future_visit_and_specimen_date(world: Any, login: Any) -> None:  # noqa: F811
    """A future visit date is refused on its field; the labs posted with it (whose specimen
    date would be that date) are not stored either."""
    import re

    c = login("coordinator")
    before = _ledger()
    future = today() + dt.timedelta(days=1)
    r = c.post("/participants/A1/visits/W1/", {
        "actual_date": future.isoformat(), "lab-bilirubin": "2.0",
        "lab-bilirubin-unit": "mg/dL", "lab-inr": "1.4", "lab-inr-unit": "1",
        "action": "draft"})
    assert r.status_code == 400
    page = html.unescape(r.content.decode())
    row = re.search(r'id="actual_date".*?</td>', page, re.S)
    assert row is not None
    errs = re.findall(r'<span class="error">([^<]*)</span>', row.group(0))
    # the record is the page's (participant A1, visit W1), the field its visit date input
    assert "<title>A1 W1 · hepatrial</title>" in page
    assert errs == [f"{future} is in the future (today is {today()})"], errs
    assert _ledger() == before and _labs("A1", "W1") == 0
    assert world.participant("A1").visits.get(code="W1").actual_date is None


# ---------------------------------------------------------------------- import labs
def test_import_labs_into_a_visit_not_done_is_refused(store: Any, tmp_path: Any) -> None:
    from hepatrial.ingest.importer import import_labs
    from hepatrial.ingest.report import ImportRefused
    from hepatrial.trials.models import LabResult, Visit

    day0 = dt.date(2024, 1, 15)
    enrol(store, "P01", day0=day0)
    store.create_user(username="importer", password=None, role="data-manager")
    store.mark_visit_not_done(participant="P01", visit_code="W1", reason="no show")  # missed
    store.mark_visit_not_done(participant="P01", visit_code="W2", status="not_done",
                              reason="patient unwell")
    path = tmp_path / "labs.csv"
    path.write_text("participant,visit,analyte,value,unit,date,lab\n"
                    "P01,D0,bilirubin,1.20,mg/dL,2024-01-15,central\n"
                    "P01,W1,bilirubin,1.30,mg/dL,2024-01-22,central\n"
                    "P01,W2,inr,1.2,1,2024-01-29,central\n", encoding="utf-8")
    before = (_ledger(), LabResult.objects.count(), LabResult.history.count(),
              Visit.history.count())
    with pytest.raises(ImportRefused) as exc:
        import_labs(path, today=dt.date(2026, 1, 1), user="importer")
    rej = exc.value.rejects
    got = {(int(r.row), r.column, r.value): r.reason for r in rej.itertuples()}
    assert got == {
        (2, "visit", "W1"): "the visit is missed: a visit that did not take place has no "
                            "results",
        (3, "visit", "W2"): "the visit is not done: a visit that did not take place has no "
                            "results"}, got
    assert (_ledger(), LabResult.objects.count(), LabResult.history.count(),
            Visit.history.count()) == before
    assert list(Visit.objects.filter(participant__study_id="P01", code__in=["W1", "W2"])
                .order_by("code").values_list("status", "actual_date")) == [
        ("missed", None), ("not_done", None)]
