"""The eCRF's cell-product pages (issue 11): the batches of the user's sites, a batch's record
vein to vein (harvest, manufacture, QC against the release specification, QA release,
custody chain, the dosing gate's verdict), the QC-result form writing through
``services.record_qc_result`` (the store's rules refuse on the page as on the CLI, nothing
written), the certificate of analysis, sites, permissions, locks and the form's version.

Real store (``tests/web/conftest.py``) with batches driven through the product services by
``tests/store/_product.py``; the Django test client, no mocks.
"""

from __future__ import annotations

import datetime as dt
import html
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
    identifiers_of,
    qa_user,
    release,
    to_qa_review,
    weigh,
)
from tests.store._trial import fast_passwords
from tests.web.conftest import today

ONE = dt.timedelta(days=1)
#: the release tests left without a result in the QC-pending batch
PENDING_TESTS = ("cell_count", "endotoxin")
#: the ledger's history models a sign-in writes (a login event, the user's last login)
SIGN_IN_HISTORY = ("trials.historicalloginevent", "trials.historicaluser")


def _page(r: Any) -> str:
    """A response's HTML as sent (entities escaped: parse it, then :func:`_text` a part)."""
    return str(r.content.decode())


def _text(fragment: str) -> str:
    """The text of an HTML fragment: tags removed, entities unescaped, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", fragment)).split())


def _rows(page: str, table: str) -> list[str]:
    """The text of each body row of the table ``id=table``."""
    m = re.search(rf'<table[^>]*id="{table}".*?<tbody>(.*?)</tbody>', page, re.S)
    assert m is not None, table
    return [_text(r) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", m.group(1), re.S)]


def _row(page: str, attr: str, key: str) -> str:
    m = re.search(rf'<tr data-{attr}="{re.escape(key)}"[^>]*>(.*?)</tr>', page, re.S)
    assert m is not None, (attr, key)
    return _text(m.group(1))


def _by_id(page: str, element_id: str) -> str:
    """The text of the element ``id=element_id`` (up to its tag's first closing tag)."""
    m = re.search(rf'<(\w+)[^>]*id="{element_id}"[^>]*>(.*?)</\1>', page, re.S)
    assert m is not None, element_id
    return _text(m.group(2))


def field_errors(r: Any, name: str) -> list[str]:
    """The messages shown on one form field (its ``.field`` block) of a response."""
    for block in re.split(r'(?=<div class="field)', r.content.decode())[1:]:
        if f'name="{name}"' in block:
            return [html.unescape(m) for m in
                    re.findall(r'<span class="error">([^<]*)</span>', block)]
    raise AssertionError(f"no field {name!r} on the page")


def general_errors(r: Any) -> list[str]:
    """The messages shown above the form (of no field)."""
    m = re.search(r'<ul class="errorlist general" id="form-errors">(.*?)</ul>',
                  r.content.decode(), re.S)
    return [html.unescape(x) for x in re.findall(r"<li>(.*?)</li>", m.group(1), re.S)] if m \
        else []


def _value(page: str, name: str) -> str:
    """The value an input of the form shows (the selected option of a select)."""
    m = re.search(rf'<input[^>]*name="{name}"[^>]*value="([^"]*)"', page)
    if m is None:
        sel = re.search(rf'<select[^>]*name="{name}"[^>]*>(.*?)</select>', page, re.S)
        assert sel is not None, name
        m = re.search(r'<option value="([^"]*)" selected', sel.group(1))
        assert m is not None, name
    return html.unescape(m.group(1))


def _version(page: str) -> str:
    m = re.search(r'name="loaded_version" value="([^"]*)"', page)
    assert m is not None
    return m.group(1)


def state() -> tuple[Any, ...]:
    """What a refused save must leave as it was: the QC results, their history, the batches'
    states and the audit ledger (but the entries of sign-ins: the test client signs in as
    each role, which records a login event and the account's last login)."""
    from hepatrial.trials.models import AuditLedger
    from hepatrial.trials.models.product import CellProductBatch, QcResult

    ledger = AuditLedger.objects.exclude(history_model__in=SIGN_IN_HISTORY)
    return (list(QcResult.objects.order_by("pk").values_list(
        "pk", "test", "value_as_entered", "unit", "analyst", "tested_on", "method")),
        QcResult.history.count(), ledger.count(),
        list(CellProductBatch.objects.order_by("pk").values_list("batch_id", "state")))


@pytest.fixture
def day() -> dt.date:
    """The day the batches were formulated, QC'd and released: two days ago."""
    return today() - 2 * ONE


@pytest.fixture
def batches(world: Any, settings: Any, day: dt.date) -> dict[str, Any]:
    """``released``: A1's batch MSC-A1-1 released at 08:30 two days ago; ``pending``: A1's
    MSC-A1-2 (formulated the day before) in QC with no result for cell_count and endotoxin;
    ``other``: B1's MSC-B1-1 (site S02) in QA review."""
    fast_passwords(settings)
    s = world.services
    released = to_qa_review(s, "A1", day, batch_id="MSC-A1-1")
    release(s, released, day)
    results = {k: v for k, v in RELEASE_TESTS.items() if k not in PENDING_TESTS}
    pending = to_qa_review(s, "A1", day - ONE, batch_id="MSC-A1-2", results=results,
                           submit=False)
    other = to_qa_review(s, "B1", day, batch_id="MSC-B1-1")
    return {"released": released, "pending": pending, "other": other}


def _qc_url(batch_id: str) -> str:
    return f"/products/{batch_id}/qc/"


# ---------------------------------------------------------------------- the list
def test_the_list_shows_the_batches_of_the_users_sites(world: Any, login: Any, day: dt.date,
                                                       batches: dict[str, Any]) -> None:
    c = login("coordinator")
    page = _page(c.get("/products/"))
    assert _rows(page, "batches") == [
        f"MSC-A1-2 A1 S01 qc {day - ONE - 14 * ONE} no no",
        f"MSC-A1-1 A1 S01 released {day - 14 * ONE} released {day} 08:30 UTC no",
    ]
    assert 'href="/products/MSC-A1-1/"' in page and 'href="/participants/A1/"' in page
    assert "MSC-B1-1" not in page
    # by state
    assert _rows(_page(c.get("/products/", {"state": "qc"})), "batches") == [
        f"MSC-A1-2 A1 S01 qc {day - 15 * ONE} no no"]
    assert _rows(_page(c.get("/products/", {"state": "administered"})), "batches") == [
        "No batch found."]
    r = c.get("/products/", {"state": "shipped"})
    assert r.status_code == 200 and _rows(_page(r), "batches") == ["No batch found."]
    assert general_errors(r)[0].startswith(
        "'shipped' is not a state of the product lifecycle (harvested, received, ")
    # the other site's coordinator sees only B1's batch; the data manager every site's
    assert _rows(_page(login(world.other).get("/products/")), "batches") == [
        f"MSC-B1-1 B1 S02 qa review {day - 14 * ONE} no no"]
    assert [r.split()[0] for r in _rows(_page(login("data-manager").get("/products/")),
                                        "batches")] == ["MSC-A1-2", "MSC-A1-1", "MSC-B1-1"]


# ---------------------------------------------------------------------- the batch
def test_the_batch_page_shows_the_record_vein_to_vein(world: Any, login: Any, day: dt.date,
                                                      batches: dict[str, Any]) -> None:
    b = batches["released"]
    b.refresh_from_db()
    coi = b.harvest.coi
    h0 = day - 14 * ONE
    c = login("monitor")
    before = state()
    page = _page(c.get("/products/MSC-A1-1/"))
    assert state() == before  # reading the record (and judging the gate) writes nothing
    assert _by_id(page, "b-state") == "released"
    assert _by_id(page, "b-coi") == coi
    assert _by_id(page, "b-received") == f"{h0} 11:00 UTC"
    assert _by_id(page, "b-formulated") == f"{day} 07:00 UTC · 10 mL"
    assert _by_id(page, "b-expiry") == f"{day} 13:00 UTC ended"  # 6 h of shelf life
    assert _by_id(page, "b-released") == f"{day} 08:30 UTC"
    assert _by_id(page, "b-administered") == "no"
    # harvest
    assert _by_id(page, "h-collected") == f"{h0} 08:00 UTC"
    assert (_by_id(page, "h-operator"), _by_id(page, "h-volume"), _by_id(page, "h-lot")) == (
        "Dr Aspirate", "60 mL", "HEP-2008-01")
    # manufacturing: each step with its operator, reagents and controls judged
    assert _row(page, "step", "isolation") == (
        f"isolation Mononuclear-cell isolation and seeding (passage 0) {h0} 13:00 UTC "
        f"{h0 + 2 * ONE} 13:00 UTC tech1 alpha-MEM lot M-0; FBS lot F-7 "
        "viability 88.0 % (>= 70 %) pass")
    assert _row(page, "step", "formulation").endswith(f"{day} 06:30 UTC tech1 alpha-MEM lot "
                                                      "M-3; FBS lot F-7 none")
    # QC: every test of the specification, value as entered, unit, spec, verdict, analyst...
    qc = _rows(page, "qc-results")
    assert len(qc) == 14
    assert _row(page, "test", "cd73") == (
        f"cd73 98.5 ↺ % >= 95 % pass analyst1 flow cytometry (ISCT panel) (the "
        f"specification's) {day} entry")
    assert _row(page, "test", "endotoxin").startswith(
        "endotoxin 0.1 ↺ EU/mL <= 0.5 EU/mL; <= 5 EU/kg per dose pass analyst1 LAL kinetic")
    assert _row(page, "test", "sterility").startswith("sterility no growth ↺ 'no growth' pass")
    assert _by_id(page, "qc-weight") == ("Per-kg limits judged with the weight: 80 kg, "
                                         "recorded with the release.")
    # QA review and release with its e-signature
    assert _by_id(page, "qa-review") == f"Submitted for QA review {day} 08:00 UTC."
    line = _text(re.search(r'<p class="release-line">(.*?)</p>', page, re.S).group(1))
    assert line.startswith(f"Release {day} 08:30 UTC: e-signed by QA qa_S01 (meaning "
                           "release, signed ")
    assert line.endswith("signature valid · weight 80 kg")
    assert "Conclusion: meets the specification" in page
    # the chain of custody: every event in order with who, when, where, temperature
    assert _rows(page, "custody-events") == [
        f"1 {h0} 08:00 UTC harvest — → harvested system site S01, iliac crest "
        "operator: Dr Aspirate; volume ml: 60",
        f"2 {h0} 11:00 UTC receive harvested → received system GMP cell lab 20 °C {coi} "
        "volume ml: 60.00",
        f"3 {h0} 12:00 UTC start manufacture received → in manufacture system",
        f"4 {day} 07:00 UTC complete manufacture in manufacture → qc system formulated at: "
        f"{day}T07:00:00+00:00; volume ml: 10.0",
        f"5 {day} 08:00 UTC submit for review qc → qa review system",
        f"6 {day} 08:30 UTC release qa review → released QA qa_S01 conclusion: meets the "
        f"specification; signature: {b.releases.get().qa_signature_id}",
    ]
    # the dosing gate for A1 now: what the records refuse
    assert _by_id(page, "gate-verdict") == "not now 3 unmet condition(s):"
    assert re.findall(r'<li data-condition="([^"]+)">', page) == [
        "within_shelf_life", "transport_temperature", "state"]
    gate = _text(re.search(r'<ul id="gate-unmet">(.*?)</ul>', page, re.S).group(1))
    assert gate == (
        f"within_shelf_life : expired at {day}T13:00:00+00:00 (6 h after formulation) "
        "transport_temperature : no transport temperature record "
        "state : batch MSC-A1-1 is released: it is given only after its receipt at the "
        "bedside (receive it first)")
    assert ('<code id="coa-command">hepatrial product coa MSC-A1-1 -o MSC-A1-1-coa.html</code>'
            in page)
    # a monitor may read, not enter QC results
    assert 'id="enter-qc"' not in page and 'class="qc-correct"' not in page


def test_a_qc_pending_batch_shows_the_missing_tests(world: Any, login: Any, day: dt.date,
                                                    batches: dict[str, Any]) -> None:
    page = _page(login("qa").get("/products/MSC-A1-2/"))
    assert _by_id(page, "b-state") == "qc"
    assert _row(page, "test", "cell_count") == (
        "cell_count cells 3e+07-5e+07 cells; in the protocol's dose range missing no result "
        "haemocytometer or automated counter, viable cells (the specification's)")
    assert _row(page, "test", "endotoxin").startswith("endotoxin EU/mL <= 0.5 EU/mL; <= 5 "
                                                      "EU/kg per dose missing no result")
    assert _by_id(page, "qa-review") == "Not submitted for QA review."
    assert _by_id(page, "no-release") == "Not released."
    assert _by_id(page, "qc-weight") == (f"Per-kg limits judged with the weight: 80 kg, the "
                                         f"latest weight (visit of {world.day0}).")
    gate = re.findall(r'<li data-condition="([^"]+)">(.*?)</li>', page, re.S)
    assert next((c, _text(t)) for c, t in gate) == (
        "batch_released", "batch_released : batch 'MSC-A1-2' is qc, not released")
    assert 'href="/products/MSC-A1-2/qc/"' in page  # QA enters QC results


def test_the_gate_allows_a_batch_received_at_the_bedside_then_refuses_it_given(
        world: Any, login: Any, settings: Any) -> None:
    """A batch made with times relative to now (within its 6 h shelf life): the records
    allow it; once administered, the gate says so and the list shows the day."""
    fast_passwords(settings)
    s = world.services
    now = timezone.now().replace(second=0, microsecond=0)
    h = dt.timedelta(hours=1)
    weigh(s, "A1", today())
    hv = harvest(s, "A1", (now - 14 * ONE).date(), collected_at=now - 14 * ONE)
    b = s.register_batch(participant="A1", coi=hv.coi, batch_id="MSC-A1-NOW",
                         facility="GMP cell lab", received_at=now - 14 * ONE + 3 * h,
                         receipt_temperature_c=20.0)
    s.start_manufacture(b, at=now - 14 * ONE + 4 * h)
    for i, (code, controls) in enumerate(STEPS.items()):
        start = now - 14 * ONE + 5 * h + 3 * i * ONE
        end = now - 3 * h if code == "formulation" else start + 2 * ONE
        s.record_manufacturing_step(b, step=code, started_at=start, completed_at=end,
                                    operator="tech1", reagents=[], controls=controls)
    s.complete_manufacture(b, formulated_at=now - 150 * dt.timedelta(minutes=1))
    for test, value in RELEASE_TESTS.items():
        s.record_qc_result(b, test=test, result=value, analyst="analyst1",
                           tested_on=(now - 3 * h).date())
    s.submit_for_review(b, at=now - 2 * h)
    qa_user(s, "qa_S01", "S01")
    s.release_batch(b.batch_id, user="qa_S01", password=QA_PASSWORD,
                    released_at=now - 100 * dt.timedelta(minutes=1))
    s.dispatch_batch(b.batch_id, scanned_coi=hv.coi, at=now - 80 * dt.timedelta(minutes=1))
    s.receive_at_bedside(b.batch_id, scanned_coi=hv.coi, at=now - h, location="ward 3",
                         readings=[(now - 75 * dt.timedelta(minutes=1), 5.0),
                                   (now - 65 * dt.timedelta(minutes=1), 5.5)])
    allow_dosing(s, "A1", now)
    c = login("investigator")
    page = _page(c.get("/products/MSC-A1-NOW/"))
    assert _by_id(page, "gate-verdict") == ("may be given The records allow batch MSC-A1-NOW "
                                            "to be given to A1 now.")
    bedside = _row(page, "seq", "8")
    assert bedside.startswith(f"8 {(now - h):%Y-%m-%d %H:%M} UTC receive at bedside "
                              "dispatched → received at bedside")
    m = dt.timedelta(minutes=1)
    assert bedside.endswith(f"transport readings: {now - 75 * m:%Y-%m-%d %H:%M} UTC 5 °C, "
                            f"{now - 65 * m:%Y-%m-%d %H:%M} UTC 5.5 °C")
    given = now - 10 * dt.timedelta(minutes=1)
    s.record_administration(participant="A1", batch_id="MSC-A1-NOW", scanned_coi=hv.coi,
                            identifiers=identifiers_of("A1"), route="portal_vein",
                            cells_total=40e6, volume_ml=10, administered_at=given,
                            operator="nurse1", user=world.users["investigator"])
    page = _page(c.get("/products/MSC-A1-NOW/"))
    assert _by_id(page, "b-administered") == f"{given:%Y-%m-%d %H:%M} UTC"
    assert _by_id(page, "adm-line").startswith(
        f"{given:%Y-%m-%d %H:%M} UTC · route portal_vein · 40000000 cells")
    assert [(c_, _text(t)) for c_, t in re.findall(
        r'<li data-condition="([^"]+)">(.*?)</li>', page, re.S)] == [
        ("batch_released", "batch_released : batch 'MSC-A1-NOW' has already been "
                           "administered")]
    rows = _rows(_page(c.get("/products/", {"state": "administered"})), "batches")
    assert rows == [f"MSC-A1-NOW A1 S01 administered {(now - 14 * ONE).date()} released "
                    f"{(now - 100 * dt.timedelta(minutes=1)):%Y-%m-%d %H:%M} UTC "
                    f"administered {given.date()}"]


# ---------------------------------------------------------------------- QC entry
def test_a_qc_result_entered_is_stored_with_its_history(world: Any, login: Any,
                                                        day: dt.date,
                                                        batches: dict[str, Any]) -> None:
    from hepatrial.trials.models.product import QcResult

    c = login("qa")
    form_page = _page(c.get(_qc_url("MSC-A1-2")))
    version = _version(form_page)
    r = c.post(_qc_url("MSC-A1-2"), {
        "loaded_version": version, "test": "cell_count", "result": "4.1e7", "unit": "",
        "analyst": "analyst2", "tested_on": str(day), "method": "automated counter"})
    assert r.status_code == 302 and r["Location"] == "/products/MSC-A1-2/"
    q = QcResult.objects.get(batch__batch_id="MSC-A1-2", test="cell_count")
    assert (q.value, q.value_as_entered, q.unit, q.analyst, q.tested_on, q.method,
            q.source) == (41e6, "4.1e7", "cells", "analyst2", day, "automated counter",
                          "entry")
    [h] = q.history.all()
    assert (h.history_type, h.history_user.username) == ("+", "u_qa")
    page = _page(c.get("/products/MSC-A1-2/"))
    assert f"batch MSC-A1-2: cell_count = 4.1e7 cells saved (analyst analyst2, tested on " \
           f"{day})." in page
    assert _row(page, "test", "cell_count") == (
        f"cell_count 4.1e7 ↺ cells 3e+07-5e+07 cells; in the protocol's dose range pass "
        f"analyst2 automated counter {day} entry correct")
    # the correction: loaded from the stored result, needs a reason, kept in the history
    form_page = _page(c.get(_qc_url("MSC-A1-2"), {"test": "cell_count"}))
    assert (_value(form_page, "test"), _value(form_page, "result"),
            _value(form_page, "analyst"), _value(form_page, "tested_on")) == (
        "cell_count", "4.1e7", "analyst2", str(day))
    post = {"loaded_version": _version(form_page), "test": "cell_count", "result": "4.3e7",
            "unit": "cells", "analyst": "analyst2", "tested_on": str(day),
            "method": "automated counter", "reason": "transcription error"}
    assert c.post(_qc_url("MSC-A1-2"), post).status_code == 302
    q.refresh_from_db()
    assert (q.value, q.value_as_entered) == (43e6, "4.3e7")
    hist = list(q.history.order_by("history_id").values_list(
        "value_as_entered", "history_change_reason"))
    assert hist[0][0] == "4.1e7" and hist[1] == ("4.3e7", "transcription error")
    shown = _page(c.get(f"/participants/A1/history/qcresult/{q.pk}/value_as_entered/"))
    assert _rows(shown, "history-table")[1].endswith("4.1e7 4.3e7 transcription error")
    # the same values again: nothing written
    before = state()
    form_page = _page(c.get(_qc_url("MSC-A1-2"), {"test": "cell_count"}))
    r = c.post(_qc_url("MSC-A1-2"), {**post, "loaded_version": _version(form_page),
                                     "reason": ""}, follow=True)
    assert "batch MSC-A1-2: cell_count = 4.3e7 cells: nothing changed, nothing saved." in \
        _page(r)
    assert state() == before


#: (posted values over a valid endotoxin entry, the field, the validator's message)
RULES: dict[str, tuple[dict[str, str], str, str]] = {
    "unknown_test": ({"test": "cd999"}, "test",
                     "'cd999' is not a test of the protocol's release specification (known: "
                     "cd73, cd90, cd105, cd45, cd34, cd14_or_cd11b, cd79a_or_cd19, hla_dr, "
                     "viability, sterility, gram_stain, endotoxin, mycoplasma, cell_count)"),
    "unit_not_the_specs": ({"unit": "EU/kg"}, "unit",
                           "unit 'EU/kg' is not the specification's unit 'EU/mL' (results are "
                           "never converted)"),
    "not_a_number": ({"result": "<0.05"}, "result", "'<0.05' is not a number in EU/mL"),
    "not_a_percentage": ({"test": "viability", "result": "120"}, "result",
                         "120.0 % is not a percentage (0-100)"),
    "no_result": ({"result": ""}, "result", "no result given"),
    "no_analyst": ({"analyst": ""}, "analyst", "is required"),
    "tested_in_the_future": ({"tested_on": "FUTURE"}, "tested_on",
                             "FUTURE is in the future (today is TODAY)"),
    "tested_before_the_harvest": ({"tested_on": "BEFORE"}, "tested_on",
                                  "BEFORE is before the harvest on HARVEST"),
    "not_a_date": ({"tested_on": "30/11/2026"}, "tested_on",
                   "'30/11/2026' is not a date (YYYY-MM-DD)"),
    "correction_without_reason": ({"test": "cd73", "result": "97"}, "reason",
                                  "a reason for change is required for changing batch "
                                  "MSC-A1-2 QC cd73 (value, value_as_entered, analyst, "
                                  "tested_on)"),
}


@pytest.mark.parametrize("case", sorted(RULES))
def test_a_rule_refuses_the_entry_on_its_field_and_keeps_what_was_typed(
        world: Any, login: Any, day: dt.date, batches: dict[str, Any], case: str) -> None:
    over, field, message = RULES[case]
    harvest_day = day - ONE - 14 * ONE
    dates = {"FUTURE": str(today() + ONE), "TODAY": str(today()),
             "BEFORE": str(harvest_day - ONE), "HARVEST": str(harvest_day)}
    for k, v in dates.items():
        message = message.replace(k, v)
    values = {"test": "endotoxin", "result": "0.2", "unit": "", "analyst": "analyst2",
              "tested_on": str(day), "method": "LAL", "reason": "",
              **{k: dates.get(v, v) for k, v in over.items()}}
    c = login("data-manager")
    version = _version(_page(c.get(_qc_url("MSC-A1-2"))))
    before = state()
    r = c.post(_qc_url("MSC-A1-2"), {"loaded_version": version, **values})
    assert r.status_code == 400
    assert field_errors(r, field) == [message]
    page = _page(r)
    for k, v in values.items():
        assert _value(page, k) == v, k
    assert _version(page) == version
    assert state() == before


def test_a_batch_not_in_manufacture_refuses_qc_above_the_form(world: Any, login: Any,
                                                              day: dt.date) -> None:
    """The batch's state is no form field: its problem is shown above the form."""
    h = harvest(world.services, "A1", day - 3 * ONE)
    world.services.register_batch(participant="A1", coi=h.coi, batch_id="MSC-A1-R",
                                  facility="GMP cell lab",
                                  received_at=dt.datetime.combine(day - 3 * ONE, dt.time(11),
                                                                  dt.UTC),
                                  receipt_temperature_c=20.0)
    c = login("qa")
    before = state()
    r = c.post(_qc_url("MSC-A1-R"), {"test": "cd73", "result": "98", "analyst": "a",
                                     "tested_on": str(day)})
    assert r.status_code == 400
    assert general_errors(r) == ["batch MSC-A1-R QC cd73 batch: batch MSC-A1-R is received: "
                                 "QC results are recorded from the start of manufacture"]
    assert state() == before


def test_a_stale_version_is_refused_naming_who_changed_what(world: Any, login: Any,
                                                            day: dt.date,
                                                            batches: dict[str, Any]) -> None:
    from hepatrial.trials.models.product import QcResult

    c = login("qa")
    version = _version(_page(c.get(_qc_url("MSC-A1-2"))))
    world.services.record_qc_result("MSC-A1-2", test="cell_count", result=42e6,
                                    analyst="analyst3", tested_on=day,
                                    user=world.users["data-manager"])
    before = state()
    r = c.post(_qc_url("MSC-A1-2"), {
        "loaded_version": version, "test": "endotoxin", "result": "0.2", "analyst": "a2",
        "tested_on": str(day)})
    assert r.status_code == 409
    [msg] = general_errors(r)
    assert msg.startswith("the QC results of batch MSC-A1-2 was added by u_data-manager at ")
    assert msg.endswith("since you loaded this form. Nothing was saved: reload the page to "
                        "see the change, then edit again.")
    assert state() == before
    assert not QcResult.objects.filter(batch__batch_id="MSC-A1-2", test="endotoxin").exists()
    # the form shown again carries the current version: saving it now works
    again = _version(_page(r))
    assert again != version
    r = c.post(_qc_url("MSC-A1-2"), {"loaded_version": again, "test": "endotoxin",
                                     "result": "0.2", "analyst": "a2", "tested_on": str(day)})
    assert r.status_code == 302


@pytest.mark.parametrize("level", ["participant", "trial"])
def test_a_lock_refuses_the_entry(world: Any, login: Any, day: dt.date,
                                  batches: dict[str, Any], level: str) -> None:
    world.services.lock(level=level, participant="A1" if level == "participant" else None,
                        user=world.users["data-manager"], reason="interim analysis")
    c = login("qa")
    page = _page(c.get("/products/MSC-A1-2/"))
    assert 'id="locked"' in page and 'id="enter-qc"' not in page
    before = state()
    r = c.post(_qc_url("MSC-A1-2"), {"test": "endotoxin", "result": "0.2", "analyst": "a2",
                                     "tested_on": str(day)})
    assert r.status_code == 409
    [msg] = general_errors(r)
    target = "the casebook of participant A1" if level == "participant" else "the trial"
    assert msg.startswith(f"Locked: {target} is locked (lock ") and "interim analysis" in msg
    assert msg.endswith("Nothing was saved.")
    assert state() == before


# ---------------------------------------------------------------------- sites and roles
def test_another_sites_batch_does_not_exist(world: Any, login: Any, day: dt.date,
                                            batches: dict[str, Any]) -> None:
    before = state()
    for role in ("coordinator", "qa", "monitor"):
        c = login(role)
        for url in ("/products/MSC-B1-1/", _qc_url("MSC-B1-1")):
            # QC entry: the role is judged first (coordinator and monitor may not enter)
            want = 403 if url.endswith("/qc/") and role != "qa" else 404
            assert c.get(url).status_code == want, (role, url)
        assert "MSC-B1-1" not in _page(c.get("/products/"))
    r = login("qa").post(_qc_url("MSC-B1-1"), {"test": "endotoxin", "result": "0.2",
                                               "analyst": "a2", "tested_on": str(day)})
    assert r.status_code == 404
    assert login(world.other).get("/products/MSC-A1-1/").status_code == 404
    assert login("qa").get("/products/NO-SUCH-BATCH/").status_code == 404
    assert state() == before


def test_roles_without_manage_product_get_403(world: Any, login: Any, day: dt.date,
                                               batches: dict[str, Any]) -> None:
    from django.contrib.auth import get_user_model

    from hepatrial.trials.services.permissions import ROLES, allowed

    before = state()
    post = {"test": "endotoxin", "result": "0.2", "analyst": "a2", "tested_on": str(day)}
    refused = [r for r in ROLES if not allowed("manage_product", r)]
    assert {"coordinator", "investigator", "monitor", "auditor", "admin"} <= set(refused)
    for role in refused:
        c = login(role)
        assert c.get(_qc_url("MSC-A1-2")).status_code == 403, role
        assert c.post(_qc_url("MSC-A1-2"), post).status_code == 403, role
        assert c.get("/products/MSC-A1-2/").status_code == 200, role  # every role reads
    nobody = get_user_model().objects.create_user("no_role_user")
    c = login(nobody)
    for url in ("/products/", "/products/MSC-A1-2/", _qc_url("MSC-A1-2")):
        assert c.get(url).status_code == 403, url
    assert state() == before
