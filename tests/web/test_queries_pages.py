"""The query and SDV pages with the Django test client (real SQLite store, no mocks).

The world (``tests/web/conftest.py``): A1 at S01 (D0 done a week ago: bilirubin 2.3 mg/dL,
creatinine 1.1 mg/dL, INR 1.5, no albumin), B1 at S02; ``u_<role>`` users of S01, ``coord_b``
of S02.
"""

from __future__ import annotations

import re
from typing import Any

from django.urls import reverse

D0 = "/participants/A1/visits/D0/"


def _ledger() -> int:
    from hepatrial.trials.models import AuditLedger

    return int(AuditLedger.objects.count())


def _soft_range_query(world: Any) -> Any:
    """Albumin 8 g/L (expected 10-60) confirmed at entry by the coordinator: a query."""
    from hepatrial.trials.models import Query

    world.services.record_lab(participant="A1", visit_code="D0", analyte="albumin",
                              value="8", unit="g/L", user=world.users["coordinator"],
                              confirmed_out_of_range=True)
    return Query.objects.get(origin="soft_range")


def _section(html: str, key: str) -> str:
    m = re.search(rf'<section class="card worklist" id="wl-{key}">(.*?)</section>', html, re.S)
    assert m is not None, key
    return m.group(1)


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def test_the_query_is_on_the_coordinators_worklist_and_list(world: Any, login: Any) -> None:
    q = _soft_range_query(world)
    c = login("coordinator")
    wl = _text(_section(c.get("/").content.decode(), "queries"))
    assert wl.startswith("Open queries addressed to you 1")
    assert "to answer A1 D0 lab albumin" in wl and "0 day(s) old" in wl
    page = c.get("/queries/").content.decode()
    mine = re.search(r'id="mine-table">(.*?)</table>', page, re.S).group(1)
    assert f'data-query="{q.pk}"' in mine
    row = _text(re.search(rf'<tr data-query="{q.pk}">(.*?)</tr>', mine, re.S).group(1))
    assert row.startswith(f"#{q.pk} A1 D0 lab albumin 0 open")
    ages = _text(re.search(r'id="queries-by-age">(.*?)</table>', page, re.S).group(1))
    assert "0-7 days 1 1 0" in ages and "over 30 days 0 0 0" in ages
    # the monitor has nothing to do yet: the site has to answer
    wl = _text(_section(login("monitor").get("/").content.decode(), "queries"))
    assert "No query is waiting for you." in wl


def test_answer_then_close_by_the_monitor(world: Any, login: Any) -> None:
    from hepatrial.trials.models import Query

    q = _soft_range_query(world)
    url = reverse("web:query", kwargs={"pk": q.pk})
    c = login("coordinator")
    page = c.get(url).content.decode()
    assert 'id="answer-form"' in page and 'id="close-form"' not in page
    assert _text(re.search(r'id="value-then">(.*?)<', page).group(1)) == "8 g/L"
    assert "confirmed at entry by u_coordinator" in page
    before = _ledger()
    r = c.post(url + "answer/", {"text": "  "})
    assert r.status_code == 400 and _ledger() == before
    assert "is required" in r.content.decode()
    r = c.post(url + "answer/", {"text": "8 g/L is on the lab report (nephrotic range)."})
    assert r.status_code == 302 and r["Location"] == url
    q.refresh_from_db()
    assert q.status == "answered"
    assert c.post(url + "close/", {}).status_code == 403  # the site does not close
    m = login("monitor")
    wl = _text(_section(m.get("/").content.decode(), "queries"))
    assert "to close A1 D0 lab albumin" in wl
    page = m.get(url).content.decode()
    assert 'id="answer-form"' not in page and 'id="close-form"' in page
    thread = _text(re.search(r'id="thread">(.*?)</ol>', page, re.S).group(1))
    assert thread.startswith("raised system") and "answered by the site u_coordinator" in thread
    r = m.post(url + "close/", {"text": "Source checked."})
    assert r.status_code == 302
    q = Query.objects.get(pk=q.pk)
    assert (q.status, q.closed_by.username) == ("closed", "u_monitor")
    page = m.get(url).content.decode()
    assert 'id="query-status">closed<' in page and 'id="reopen-form"' in page
    assert 'id="close-form"' not in page
    r = m.post(url + "reopen/", {"text": ""})
    assert r.status_code == 400
    r = m.post(url + "reopen/", {"text": "Report missing from the file."})
    assert r.status_code == 302
    q.refresh_from_db()
    assert q.status == "open"


def test_a_closed_query_cannot_be_answered(world: Any, login: Any) -> None:
    from hepatrial.trials.services import queries

    q = _soft_range_query(world)
    queries.close_query(q, user=world.users["monitor"], text="withdrawn")
    c = login("coordinator")
    url = reverse("web:query", kwargs={"pk": q.pk})
    assert 'id="answer-form"' not in c.get(url).content.decode()
    r = c.post(url + "answer/", {"text": "late answer"})
    assert r.status_code == 400
    assert "the query is closed: cannot answer it (re-open it first)" in r.content.decode()


def test_queries_of_another_site_do_not_exist(world: Any, login: Any, client: Any) -> None:
    from hepatrial.trials.services import queries

    q = _soft_range_query(world)
    b1 = world.participant("B1")
    qb = queries.raise_query(participant=b1, model="visit", object_pk=b1.visits.get(
        code="D0").pk, field="actual_date", text="Date?", user=world.users["data-manager"])
    client.force_login(world.other, backend="django.contrib.auth.backends.ModelBackend")
    assert client.get(reverse("web:query", kwargs={"pk": q.pk})).status_code == 404
    assert client.post(reverse("web:query_answer", kwargs={"pk": q.pk}),
                       {"text": "x"}).status_code == 404
    page = client.get("/queries/", {"status": "all"}).content.decode()
    assert f'data-query="{qb.pk}"' in page and f'data-query="{q.pk}"' not in page
    page = client.get("/queries/", {"status": "all", "site": "S01"}).content.decode()
    assert "No query found." in page
    m = login("monitor")
    assert m.get(reverse("web:query", kwargs={"pk": qb.pk})).status_code == 404
    dm = login("data-manager")
    assert dm.get(reverse("web:query", kwargs={"pk": qb.pk})).status_code == 200


def test_monitor_raises_a_query_on_a_field(world: Any, login: Any) -> None:
    from hepatrial.trials.models import LabResult, Query

    m = login("monitor")
    url = D0 + "queries/new/"
    page = m.get(url).content.decode()
    bili = LabResult.objects.get(participant__study_id="A1", visit__code="D0",
                                 analyte="bilirubin")
    assert f'value="labresult:{bili.pk}:value_as_entered:bilirubin"' in page
    assert ">Lab bilirubin = 2.3 mg/dL<" in page
    assert 'value="labresult::value_as_entered:albumin"' in page  # due, never entered
    before = _ledger()
    r = m.post(url, {"target": "", "text": "x"})
    assert r.status_code == 400 and "choose the field the query is about" in r.content.decode()
    b1_lab = world.services.record_lab(participant="B1", visit_code="D0", analyte="inr",
                                       value="1.2", unit="1")
    r = m.post(url, {"target": f"labresult:{b1_lab.pk}:value_as_entered:inr", "text": "x"})
    assert r.status_code == 400  # a record of another participant is not offered
    r = m.post(url, {"target": f"labresult:{bili.pk}:value_as_entered:bilirubin", "text": ""})
    assert r.status_code == 400 and "is required" in r.content.decode()
    assert _ledger() == before + 1  # only B1's lab above
    r = m.post(url, {"target": f"labresult:{bili.pk}:value_as_entered:bilirubin",
                     "text": "Bilirubin per the lab report?"})
    q = Query.objects.get(origin="manual", item="bilirubin")
    assert r.status_code == 302 and r["Location"] == f"/queries/{q.pk}/"
    assert (q.value_at_raise, q.raised_by.username, q.status) == ("2.3 mg/dL", "u_monitor",
                                                                  "open")
    r = m.post(url, {"target": "labresult::value_as_entered:albumin",
                     "text": "Albumin was due at D0."})
    assert r.status_code == 302
    assert Query.objects.get(item="albumin").object_pk == ""
    assert login("coordinator").get(url).status_code == 403


def test_raising_on_a_locked_visit_is_refused_on_the_page(world: Any, login: Any) -> None:
    from hepatrial.trials.models import LabResult

    world.services.lock(level="visit", participant="A1", visit_code="D0",
                        user=world.users["data-manager"], reason="monitoring done")
    bili = LabResult.objects.get(participant__study_id="A1", visit__code="D0",
                                 analyte="bilirubin")
    r = login("monitor").post(D0 + "queries/new/", {
        "target": f"labresult:{bili.pk}:value_as_entered:bilirubin", "text": "check"})
    assert r.status_code == 400
    assert "the visit is locked: its data are final" in r.content.decode()


def test_query_list_filters(world: Any, login: Any) -> None:
    from hepatrial.trials.services import queries

    q = _soft_range_query(world)
    queries.close_query(q, user=world.users["monitor"])
    c = login("coordinator")
    assert "No query found." in c.get("/queries/").content.decode()  # default: not closed
    page = c.get("/queries/", {"status": "closed"}).content.decode()
    assert f'data-query="{q.pk}"' in page
    assert "No query found." in c.get("/queries/", {"status": "closed", "q": "B"}).content.decode()
    assert f'data-query="{q.pk}"' in c.get("/queries/", {"status": "all", "visit": "D0"}
                                           ).content.decode()


# ---------------------------------------------------------------------- SDV
def _sdv_rows(html: str, form: str) -> dict[str, str]:
    table = re.search(rf'id="sdv-{form}-items">(.*?)</table>', html, re.S)
    if table is None:
        return {}
    out = {}
    for item, row in re.findall(r'<tr data-item="([^"]+)"[^>]*>(.*?)</tr>', table.group(1),
                                re.S):
        out[item] = _text(row)
    return out


def test_sdv_page_marks_items_and_forms(world: Any, login: Any) -> None:
    from hepatrial.trials.models import LabResult, SourceVerification

    m = login("monitor")
    url = D0 + "sdv/"
    page = m.get(url).content.decode()
    assert _sdv_rows(page, "labs") == {
        "bilirubin": "bilirubin 2.3 mg/dL not verified Verify",
        "creatinine": "creatinine 1.1 mg/dL not verified Verify",
        "inr": "inr 1.5 1 not verified Verify"}
    assert 'id="verify-labs"' in page and "Nothing entered." in page  # no clinical form
    r = m.post(url, {"target": "labs:bilirubin", "note": "lab report p. 2"})
    assert r.status_code == 302
    page = m.get(url).content.decode()
    rows = _sdv_rows(page, "labs")
    assert rows["bilirubin"].startswith("bilirubin 2.3 mg/dL verified by u_monitor ")
    assert rows["inr"] == "inr 1.5 1 not verified Verify"
    assert 'id="sdv-labs-state">partly verified 1/3<' in page
    r = m.post(url, {"target": "labs:"})
    assert r.status_code == 302
    page = m.get(url).content.decode()
    assert 'id="sdv-labs-state">verified 3/3<' in page
    assert 'id="sdv-visit-state">verified<' in page
    # the coordinator corrects bilirubin: its mark is cleared, the others stay verified
    lab = LabResult.objects.get(participant__study_id="A1", visit__code="D0",
                                analyte="bilirubin")
    world.services.update_lab(lab, value="2.4", unit="mg/dL", reason="transcription error",
                              user=world.users["coordinator"])
    from hepatrial.trials.models import AuditLedger

    seq = AuditLedger.objects.filter(history_model="trials.historicallabresult",
                                     object_pk=str(lab.pk)).order_by("-seq").first().seq
    page = m.get(url).content.decode()
    rows = _sdv_rows(page, "labs")
    assert rows["bilirubin"] == f"bilirubin 2.4 mg/dL cleared by change seq {seq} Verify"
    assert rows["inr"].startswith("inr 1.5 1 verified by u_monitor")
    assert 'id="sdv-labs-state">partly verified 2/3<' in page
    assert SourceVerification.objects.count() == 2


def test_sdv_refusals_on_the_page(world: Any, login: Any) -> None:
    m = login("monitor")
    url = D0 + "sdv/"
    before = _ledger()
    r = m.post(url, {"target": "labs:albumin"})
    assert r.status_code == 400 and "albumin is not entered: nothing to verify" in \
        r.content.decode()
    r = m.post(url, {"target": ""})
    assert r.status_code == 400 and "is not one of labs, clinical" in r.content.decode()
    assert _ledger() == before
    c = login("coordinator")
    page = c.get(url).content.decode()
    assert 'id="verify-labs"' not in page and ">Verify<" not in page
    assert c.post(url, {"target": "labs:"}).status_code == 403
    assert login("investigator").post(url, {"target": "labs:"}).status_code == 403
    r = login("monitor").post("/participants/B1/visits/D0/sdv/", {"target": "labs:"})
    assert r.status_code == 404
    from hepatrial.trials.models import SourceVerification

    assert not SourceVerification.objects.exists()
