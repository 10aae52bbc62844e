"""Admin: login required, per-site visibility, reason for change on edit and delete."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

import pytest
from django.test import Client

from tests.store.conftest import enrol, released_batch


@pytest.fixture
def two_sites(store: Any) -> dict[str, Any]:
    """Sites S01 (K01) and S02 (K02); coordinator A at S01, coordinator B at S02, a superuser."""
    store.create_site(code="S02", name="second site")
    enrol(store, "K01", "S01")
    enrol(store, "K02", "S02")
    a = store.create_user(username="coord_a", password=None, site_codes=["S01"])
    b = store.create_user(username="coord_b", password=None, site_codes=["S02"])
    root = store.create_user(username="root", password=None, superuser=True)
    dm = store.create_user(username="dm", password=None, role="data-manager")
    return {"a": a, "b": b, "root": root, "dm": dm}


def client_for(user: Any) -> Client:
    c = Client()
    c.force_login(user)
    return c


class _ResultRows(HTMLParser):
    """Text of each row of the admin changelist's ``<table id="result_list">`` body."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_table = self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and ("id", "result_list") in attrs:
            self._in_table = True
        elif self._in_table and tag == "tbody":
            self._in_body = True
        elif self._in_body and tag == "tr":
            self.rows.append([])
        elif self._in_body and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.rows:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._in_table = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def listed_study_ids(response: Any) -> set[str]:
    """First word of every cell of a changelist's result rows (study ids, site codes, ...):
    only the result table is read, never the CSRF token, scripts or filters."""
    assert response.status_code == 200
    parser = _ResultRows()
    parser.feed(response.content.decode())
    assert parser.rows, "no result table rows in the page"
    return {cell.split()[0] for row in parser.rows for cell in row if cell}


def test_result_rows_parser_ignores_the_rest_of_the_page() -> None:
    class R:
        status_code = 200
        content = (b'<input name="csrfmiddlewaretoken" value="xK02y"><table id="result_list">'
                   b'<thead><tr><th>Study id</th></tr></thead><tbody><tr><td></td>'
                   b'<th class="field-study_id"><a href="/x/">K01</a></th><td>S01</td></tr>'
                   b"</tbody></table><script>K02</script>")

    assert listed_study_ids(R()) == {"K01", "S01"}


def test_login_required(two_sites: Any) -> None:
    r = Client().get("/admin/trials/participant/")
    assert r.status_code == 302 and "/admin/login/" in r["Location"]


def test_coordinator_sees_only_own_site(two_sites: Any) -> None:
    from hepatrial.trials.models import LabResult, Participant, Visit

    k2 = Participant.objects.get(study_id="K02")
    c = client_for(two_sites["a"])
    shown = listed_study_ids(c.get("/admin/trials/participant/"))
    assert "K01" in shown and "K02" not in shown
    r = c.get(f"/admin/trials/participant/{k2.pk}/change/")
    assert r.status_code == 302  # "does not exist" redirect to the changelist
    v2 = Visit.objects.filter(participant=k2).first()
    assert c.get(f"/admin/trials/visit/{v2.pk}/change/").status_code == 302
    assert c.get(f"/admin/trials/participant/{k2.pk}/history/").status_code in (302, 403)
    h2 = k2.history.order_by("history_id").first().history_id
    assert c.get(f"/admin/trials/participant/{k2.pk}/history/{h2}/").status_code == 403
    k1 = Participant.objects.get(study_id="K01")
    h1 = k1.history.order_by("history_id").first().history_id
    assert c.get(f"/admin/trials/participant/{k1.pk}/history/{h1}/").status_code == 200
    shown = listed_study_ids(c.get("/admin/trials/visit/"))
    assert "K01" in shown and "K02" not in shown
    assert LabResult.objects.count() == 0
    # the superuser sees both
    shown = listed_study_ids(client_for(two_sites["root"]).get("/admin/trials/participant/"))
    assert {"K01", "K02"} <= shown


def test_coordinator_cannot_see_randomisation_or_ledger(two_sites: Any) -> None:
    c = client_for(two_sites["a"])
    assert c.get("/admin/trials/auditledger/").status_code == 403
    assert c.get("/admin/trials/randomisationentry/").status_code == 403


def _change_data(p: Any, **over: Any) -> dict[str, Any]:
    data = {
        "study_id": p.study_id,
        "site": p.site_id,
        "sex": p.sex,
        "year_of_birth": p.year_of_birth,
        "etiology": p.etiology,
        "screening_date": p.screening_date.isoformat(),
        "screening_data": '{"cirrhosis": true}',
        "change_reason": "",
    }
    data.update(over)
    return data


def test_change_without_reason_refused_with_reason_recorded(two_sites: Any) -> None:
    from hepatrial.trials.models import Participant

    p = Participant.objects.get(study_id="K01")
    n_hist = p.history.count()
    c = client_for(two_sites["a"])
    url = f"/admin/trials/participant/{p.pk}/change/"
    assert "Reason for change" in c.get(url).content.decode()
    r = c.post(url, _change_data(p, year_of_birth=1961))
    assert r.status_code == 200  # form re-displayed with the error
    assert "A reason for change is required." in r.content.decode()
    p.refresh_from_db()
    assert p.year_of_birth == 1960 and p.history.count() == n_hist
    r = c.post(url, _change_data(p, year_of_birth=1961, change_reason="source document check"))
    assert r.status_code == 302, r.content.decode()[:2000]
    p.refresh_from_db()
    assert p.year_of_birth == 1961
    h = p.history.order_by("-history_id").first()
    assert h.history_change_reason == "source document check"
    assert h.history_user.username == "coord_a"
    from hepatrial.trials import audit

    assert audit.verify() == []


def test_delete_requires_reason(two_sites: Any) -> None:
    from hepatrial.trials.models import Consent

    consent = Consent.objects.get(participant__study_id="K01")
    c = client_for(two_sites["dm"])  # the admin role may not delete trial data
    url = f"/admin/trials/consent/{consent.pk}/delete/"
    page = c.get(url).content.decode()
    assert 'name="change_reason"' in page
    r = c.post(url, {"post": "yes"})
    assert r.status_code == 302 and Consent.objects.filter(pk=consent.pk).exists()
    r = c.post(url, {"post": "yes", "change_reason": "entered for the wrong participant"})
    assert r.status_code == 302
    assert not Consent.objects.filter(pk=consent.pk).exists()
    h = Consent.history.filter(id=consent.pk).order_by("-history_id").first()
    assert h.history_type == "-"
    assert h.history_change_reason == "entered for the wrong participant"
    assert h.history_user.username == "dm"


def test_no_bulk_delete_action(two_sites: Any) -> None:
    r = client_for(two_sites["root"]).get("/admin/trials/participant/")
    assert "delete_selected" not in r.content.decode()


def test_admin_visit_date_goes_through_window_check(two_sites: Any) -> None:
    from hepatrial.trials.models import ProtocolDeviation, Visit

    v = Visit.objects.get(participant__study_id="K01", code="W1")
    c = client_for(two_sites["a"])
    url = f"/admin/trials/visit/{v.pk}/change/"
    data = {"label": v.label, "scheduled_date": v.scheduled_date.isoformat(),
            "actual_date": "2008-02-05", "change_reason": "visit done"}  # fmt: skip
    r = c.post(url, data)
    assert r.status_code == 302, r.content.decode()[:3000]
    v.refresh_from_db()
    assert v.status == "late" and v.actual_date.isoformat() == "2008-02-05"
    assert ProtocolDeviation.objects.get(visit=v).category == "visit_window"
    assert v.history.order_by("-history_id").first().history_user.username == "coord_a"


def test_admin_lab_edit_is_reconverted(two_sites: Any, store: Any) -> None:
    store.record_visit(participant="K01", visit_code="D0", actual_date="2008-01-20")
    lab = store.record_lab(
        participant="K01", visit_code="D0", analyte="creatinine", value="1.0", unit="mg/dL"
    )
    c = client_for(two_sites["a"])
    url = f"/admin/trials/labresult/{lab.pk}/change/"
    data = {"value_as_entered": "100", "unit_as_entered": "umol/L", "laboratory": "",
            "specimen_date": "2008-01-20", "change_reason": ""}  # fmt: skip
    r = c.post(url, data)
    assert r.status_code == 200 and "A reason for change is required." in r.content.decode()
    data["change_reason"] = "unit corrected"
    r = c.post(url, data)
    assert r.status_code == 302, r.content.decode()[:3000]
    lab.refresh_from_db()
    assert (lab.value, lab.unit, lab.unit_as_entered) == (100.0, "umol/L", "umol/L")
    data.update(value_as_entered="100", unit_as_entered="mg/L", change_reason="x")
    r = c.post(url, data)
    assert r.status_code == 200
    assert "unit &#x27;mg/L&#x27; is not accepted" in r.content.decode()
    lab.refresh_from_db()
    assert lab.unit_as_entered == "umol/L"


def test_admin_administration_checks_chain_of_identity(two_sites: Any, store: Any) -> None:
    from hepatrial.trials.models import Administration, Participant
    from tests.store._product import identifiers_of

    b2 = released_batch(store, "B-K02", "K02")
    k1 = Participant.objects.get(study_id="K01")
    c = client_for(two_sites["a"])  # a coordinator of K01's site records the infusion
    ids = identifiers_of("K01")
    data = {"participant": k1.pk, "route": "portal_vein", "cells_total": "4e7",
            "cells_per_kg": "", "volume_ml": "10", "administered_at_0": "2008-01-20",
            "administered_at_1": "10:00:00", "operator": "op", "batch_id": "B-K02",
            "scanned_coi": b2.coi_identifier, "id_study_id": ids["study_id"],
            "id_year_of_birth": ids["year_of_birth"], "dose_override_reason": ""}  # fmt: skip
    r = c.post("/admin/trials/administration/add/", data)
    assert r.status_code == 200
    assert "belongs to participant K02, not to K01 (autologous product)" in r.content.decode()
    assert Administration.objects.count() == 0
    data["batch_id"] = "B-unregistered"
    r = c.post("/admin/trials/administration/add/", data)
    assert r.status_code == 200
    assert "&#x27;B-unregistered&#x27; does not exist" in r.content.decode()
    b1 = released_batch(store, "B-K01", "K01")
    data["batch_id"] = "B-K01"
    data["scanned_coi"] = b1.coi_identifier
    r = c.post("/admin/trials/administration/add/", data)
    assert r.status_code == 302, r.content.decode()[:2000]
    a = Administration.objects.get()
    assert a.cells_total == 4e7 and a.history.get().history_user.username == "coord_a"


def test_user_account_change_needs_reason_and_cannot_be_deleted(two_sites: Any) -> None:
    b = two_sites["b"]
    c = client_for(two_sites["root"])
    url = f"/admin/auth/user/{b.pk}/change/"
    data = {"username": "coord_b", "first_name": "", "last_name": "", "email": "",
            "is_active": "", "is_staff": "on", "date_joined_0": "2008-01-01",
            "date_joined_1": "00:00:00", "change_reason": ""}  # fmt: skip
    r = c.post(url, data)
    assert r.status_code == 200  # reason missing
    b.refresh_from_db()
    assert b.is_active
    data["change_reason"] = "left the study team"
    r = c.post(url, data)
    assert r.status_code == 302, r.content.decode()[:3000]
    b.refresh_from_db()
    assert not b.is_active
    h = b.history.order_by("-history_id").first()
    assert h.history_change_reason == "left the study team" and h.history_user.username == "root"
    assert c.get(f"/admin/auth/user/{b.pk}/delete/").status_code == 403
    from hepatrial.trials import audit

    assert audit.verify() == []


def test_history_form_page_cannot_revert(two_sites: Any) -> None:
    """django-simple-history's history-form page saves what is POSTed to it
    (SIMPLE_HISTORY_REVERT_DISABLED only hides the button): a POST is refused (403) for every
    role, the superuser included, and the record, its history and the site are unchanged."""
    from hepatrial.trials.models import Participant, Site

    p = Participant.objects.get(study_id="K01")
    site = Site.objects.get(code="S01")
    store_history = (p.history.count(), site.history.count())
    h = p.history.order_by("history_id").first().history_id
    hs = site.history.order_by("history_id").first().history_id
    for who in ("a", "dm", "root"):
        c = client_for(two_sites[who])
        r = c.post(f"/admin/trials/participant/{p.pk}/history/{h}/",
                   _change_data(p, year_of_birth=1950, change_reason="revert"))
        assert r.status_code == 403, (who, r.status_code)
        r = c.post(f"/admin/trials/site/{site.pk}/history/{hs}/",
                   {"code": "S01", "name": "renamed", "change_reason": "revert"})
        assert r.status_code == 403, (who, r.status_code)
    p.refresh_from_db()
    site.refresh_from_db()
    assert p.year_of_birth != 1950 and site.name != "renamed"
    assert (p.history.count(), site.history.count()) == store_history
