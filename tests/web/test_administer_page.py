"""The eCRF's administration page (issue 11): the bedside entry of an infusion writes only
through ``services.record_administration``, so the whole dosing gate applies on the page as
on the CLI; a refusal names every unmet condition, keeps what was typed and writes nothing;
the role (``administer_product``) and the site are checked on the server.

Real store (``tests/web/conftest.py``), a batch driven to the bedside through the product
services with times relative to now (within its 6 h shelf life); the Django test client.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.utils import timezone

from tests.store._product import (
    QA_PASSWORD,
    RELEASE_TESTS,
    STEPS,
    allow_dosing,
    harvest,
    qa_user,
    weigh,
)
from tests.store._trial import fast_passwords
from tests.web.conftest import today
from tests.web.test_product_pages import (
    SIGN_IN_HISTORY,
    _by_id,
    _page,
    _text,
    _value,
    field_errors,
    general_errors,
)

ONE = dt.timedelta(days=1)
H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)
URL = "/products/MSC-A1-BED/administer/"


def bedside(world: Any, sid: str = "A1", batch_id: str = "MSC-A1-BED") -> str:
    """A batch of ``sid`` released 100 minutes ago and received at the bedside an hour ago
    (transport readings in range, the sentinel review recorded); its chain-of-identity id."""
    s = world.services
    now = timezone.now().replace(second=0, microsecond=0)
    weigh(s, sid, today())
    hv = harvest(s, sid, (now - 14 * ONE).date(), collected_at=now - 14 * ONE)
    b = s.register_batch(participant=sid, coi=hv.coi, batch_id=batch_id,
                         facility="GMP cell lab", received_at=now - 14 * ONE + 3 * H,
                         receipt_temperature_c=20.0)
    s.start_manufacture(b, at=now - 14 * ONE + 4 * H)
    for i, (code, controls) in enumerate(STEPS.items()):
        start = now - 14 * ONE + 5 * H + 3 * i * ONE
        end = now - 3 * H if code == "formulation" else start + 2 * ONE
        s.record_manufacturing_step(b, step=code, started_at=start, completed_at=end,
                                    operator="tech1", reagents=[], controls=controls)
    s.complete_manufacture(b, formulated_at=now - 150 * M)
    for test, value in RELEASE_TESTS.items():
        s.record_qc_result(b, test=test, result=value, analyst="analyst1",
                           tested_on=(now - 3 * H).date())
    s.submit_for_review(b, at=now - 2 * H)
    qa = f"qa_{world.participant(sid).site.code}"
    qa_user(s, qa, world.participant(sid).site.code)
    s.release_batch(b.batch_id, user=qa, password=QA_PASSWORD, released_at=now - 100 * M)
    s.dispatch_batch(b.batch_id, scanned_coi=hv.coi, at=now - 80 * M)
    s.receive_at_bedside(b.batch_id, scanned_coi=hv.coi, at=now - H, location="ward 3",
                         readings=[(now - 75 * M, 5.0), (now - 65 * M, 5.5)])
    allow_dosing(s, sid, now)
    return str(hv.coi)


def written() -> tuple[Any, ...]:
    """What a refused entry must leave as it was: administrations, custody events,
    deviations, the batches' states and the audit ledger (but the sign-ins' entries)."""
    from hepatrial.trials.models import Administration, AuditLedger, ProtocolDeviation
    from hepatrial.trials.models.product import CellProductBatch, CustodyEvent

    return (Administration.objects.count(), CustodyEvent.objects.count(),
            ProtocolDeviation.objects.count(),
            AuditLedger.objects.exclude(history_model__in=SIGN_IN_HISTORY).count(),
            list(CellProductBatch.objects.order_by("pk").values_list("batch_id", "state")))


@pytest.fixture
def coi(world: Any, settings: Any) -> str:
    fast_passwords(settings)
    return bedside(world)


def _post(world: Any, coi: str, **over: str) -> dict[str, str]:
    p = world.participant("A1")
    given = timezone.now().astimezone(dt.UTC) - 10 * M
    return {"scanned_coi": coi, "identifiers": f"study_id=A1, year_of_birth={p.year_of_birth}",
            "route": "portal_vein", "cells_total": "4e7", "volume_ml": "10",
            "administered_at": f"{given:%Y-%m-%dT%H:%M}Z", "operator": "nurse1",
            "cells_per_kg": "", "dose_override_reason": "", **over}


def _unmet(page: str) -> list[tuple[str, str]]:
    m = re.search(r'<ul id="admin-unmet">(.*?)</ul>', page, re.S)
    return [] if m is None else [
        (c, _text(t)) for c, t in re.findall(r'<li data-condition="([^"]+)">(.*?)</li>',
                                             m.group(1), re.S)]


def test_an_administration_entered_is_stored_with_its_custody_event(
        world: Any, login: Any, coi: str) -> None:
    from hepatrial.trials.models import Administration
    from hepatrial.trials.models.product import CellProductBatch, CustodyEvent

    c = login("investigator")
    page = _page(c.get("/products/MSC-A1-BED/"))
    assert f'href="{URL}" id="administer"' in page  # received at the bedside: linked
    form = _page(c.get(URL))
    select = re.search(r'<select id="route".*?</select>', form, re.S)
    assert select is not None  # the protocol's routes
    assert re.findall(r'<option value="([^"]*)"', select.group(0)) == [
        "", "peripheral_vein", "portal_vein"]
    assert _value(form, "scanned_coi") == "" and _value(form, "identifiers") == ""
    post = _post(world, coi)
    r = c.post(URL, post)
    assert r.status_code == 302 and r["Location"] == "/products/MSC-A1-BED/"
    b = CellProductBatch.objects.get(batch_id="MSC-A1-BED")
    assert b.state == "administered"
    a = Administration.objects.get(batch=b)
    given = dt.datetime.fromisoformat(post["administered_at"])
    assert (a.participant.study_id, a.route, a.cells_total, float(a.volume_ml),
            a.administered_at, a.operator, a.scanned_coi, a.dose_override_reason) == (
        "A1", "portal_vein", 40e6, 10.0, given, "nurse1", coi, None)
    assert a.cells_per_kg == pytest.approx(40e6 / 80)  # cells / the latest weight (80 kg)
    assert a.identifiers_checked == {"study_id": "A1",
                                     "year_of_birth": str(world.participant("A1").year_of_birth)}
    ev = CustodyEvent.objects.filter(batch=b).order_by("-seq").first()
    assert (ev.action, ev.from_state, ev.to_state, ev.scanned_coi, ev.at,
            ev.details["administration"], ev.details["route"]) == (
        "administer", "received_at_bedside", "administered", coi, given, a.pk, "portal_vein")
    page = _page(c.get("/products/MSC-A1-BED/"))
    assert (f"batch MSC-A1-BED administered to A1: 4e+07 cells, 5e+05 cells/kg by portal_vein "
            f"at {given:%Y-%m-%d %H:%M} UTC (operator nurse1).") in page
    assert _by_id(page, "b-administered") == f"{given:%Y-%m-%d %H:%M} UTC"
    assert 'id="administer"' not in page  # given: no longer linked
    # a second administration of the batch is refused by the gate, nothing written
    before = written()
    r = c.post(URL, post)
    assert r.status_code == 400
    assert ("batch_released", "batch_released : batch 'MSC-A1-BED' has already been "
                              "administered") in _unmet(_page(r))
    assert written() == before


#: (posted values over a valid entry, the unmet conditions the page lists (their start))
GATE: dict[str, tuple[dict[str, str], list[tuple[str, str]]]] = {
    "wrong_scanned_id": ({"scanned_coi": "HEP-COI-WRONG"}, [
        ("coi_scanned", "coi_scanned : ")]),
    "one_identifier": ({"identifiers": "study_id=A1"}, [
        ("patient_identifiers", "patient_identifiers : ")]),
    "dose_out_of_range": ({"cells_total": "5e8"}, [
        ("dose_in_range", "dose_in_range : dose ")]),
}


@pytest.mark.parametrize("case", sorted(GATE))
def test_the_gate_refuses_naming_the_condition_and_keeps_what_was_typed(
        world: Any, login: Any, coi: str, case: str) -> None:
    over, want = GATE[case]
    c = login("coordinator")
    post = _post(world, coi, **over)
    before = written()
    r = c.post(URL, post)
    assert r.status_code == 400
    page = _page(r)
    got = _unmet(page)
    assert [x[0] for x in got] == [w[0] for w in want]
    for (cond, text), (_, start) in zip(got, want, strict=True):
        assert text.startswith(start) and len(text) > len(start), (cond, text)
    for k, v in post.items():
        assert _value(page, k) == v, k
    assert written() == before


def test_each_refusal_reason_is_the_services(world: Any, login: Any, coi: str) -> None:
    """Every problem at once: the page lists each unmet condition with the service's reason
    (in its order) and each value's problem on its field."""
    from hepatrial.trials import services
    from hepatrial.trials.validators import RuleViolation

    over = {"scanned_coi": "HEP-COI-WRONG", "identifiers": "study_id=A1", "cells_total": "5e8",
            "operator": ""}
    post = _post(world, coi, **over)
    with pytest.raises(RuleViolation) as exc:
        services.record_administration(
            participant="A1", batch_id="MSC-A1-BED", scanned_coi=post["scanned_coi"],
            identifiers={"study_id": "A1"}, route="portal_vein", cells_total="5e8",
            volume_ml="10", administered_at=post["administered_at"], operator="",
            user=world.users["coordinator"])
    service = [(p.field, p.reason) for p in exc.value.problems]
    before = written()
    r = login("coordinator").post(URL, post)
    assert r.status_code == 400
    got = [(cond, text.split(" : ", 1)[1]) for cond, text in _unmet(_page(r))]
    assert got == [x for x in service if x[0] != "operator"]
    assert {x[0] for x in got} == {"coi_scanned", "patient_identifiers", "dose_in_range"}
    assert field_errors(r, "operator") == [dict(service)["operator"]]
    assert written() == before


def test_an_override_reason_gives_an_out_of_range_dose_with_a_deviation(
        world: Any, login: Any, coi: str) -> None:
    from hepatrial.trials.models import Administration, ProtocolDeviation

    r = login("investigator").post(URL, _post(world, coi, cells_total="5e8",
                                              dose_override_reason="PI decision: bag volume"))
    assert r.status_code == 302
    a = Administration.objects.get(batch__batch_id="MSC-A1-BED")
    assert (a.cells_total, a.dose_override_reason) == (5e8, "PI decision: bag volume")
    [dev] = ProtocolDeviation.objects.filter(participant__study_id="A1", category="dosing")
    assert dev.major is True


def test_bad_identifiers_text_is_refused_on_its_field(world: Any, login: Any,
                                                      coi: str) -> None:
    post = _post(world, coi, identifiers="study_id=A1, 1960")
    before = written()
    r = login("coordinator").post(URL, post)
    assert r.status_code == 400
    assert field_errors(r, "identifiers") == ["'1960' is not NAME=VALUE (e.g. study_id=A1)"]
    assert [c for c, _ in _unmet(_page(r))] == ["patient_identifiers"]  # one pair read
    assert written() == before


def test_a_lock_refuses_the_entry(world: Any, login: Any, coi: str) -> None:
    world.services.lock(level="participant", participant="A1",
                        user=world.users["data-manager"], reason="interim analysis")
    c = login("investigator")
    assert 'id="administer"' not in _page(c.get("/products/MSC-A1-BED/"))
    before = written()
    r = c.post(URL, _post(world, coi))
    assert r.status_code == 409
    [msg] = general_errors(r)
    assert msg.startswith("Locked: the casebook of participant A1 is locked (lock ")
    assert written() == before


def test_roles_without_administer_product_get_403_and_another_site_404(
        world: Any, login: Any, coi: str) -> None:
    from hepatrial.trials.services.permissions import ROLES, allowed

    post = _post(world, coi)
    refused = [r for r in ROLES if not allowed("administer_product", r)]
    assert {"qa", "data-manager", "monitor", "auditor", "admin"} <= set(refused)
    assert allowed("administer_product", "coordinator")
    before = written()
    for role in refused:
        c = login(role)
        assert c.get(URL).status_code == 403, role
        assert c.post(URL, post).status_code == 403, role
        assert 'id="administer"' not in _page(c.get("/products/MSC-A1-BED/")), role
    # the coordinator of the other site: A1's batch does not exist for them
    other = login(world.other)
    assert other.get(URL).status_code == 404
    assert other.post(URL, post).status_code == 404
    assert written() == before
