"""The admin of the cell product: QC results through the product service (add and change,
every problem on its field, a change needs a reason), batches, harvests and the chain of
custody shown read-only (the lifecycle goes through the service)."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.test import Client

from tests.store import _product as P
from tests.store.conftest import DAY0


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def lab(enrolled: Any, store: Any) -> dict[str, Any]:
    b = P.to_qa_review(store, "K01", DAY0, results={}, submit=False)
    qa = P.qa_user(store, "qa_S01")
    dm = store.create_user(username="dm", password=None, role="data-manager")
    c = Client()
    c.force_login(dm)
    return {"batch": b, "client": c, "qa": qa}


def _page(r: Any) -> str:
    return html.unescape(r.content.decode())


def test_admin_qc_result_add_and_change(lab: Any, store: Any) -> None:
    from hepatrial.trials.models.product import QcResult

    c, b = lab["client"], lab["batch"]
    data = {"batch_ref": b.batch_id, "test": "viability", "result": "92", "unit": "fraction",
            "analyst": "lab analyst", "tested_on": "2999-01-01", "method": ""}
    r = c.post("/admin/trials/qcresult/add/", data)
    page = _page(r)
    assert r.status_code == 200
    assert "unit 'fraction' is not the specification's unit '%'" in page
    assert "is in the future" in page
    assert not QcResult.objects.exists()
    data.update(unit="", tested_on=DAY0.isoformat())
    r = c.post("/admin/trials/qcresult/add/", data)
    assert r.status_code == 302, _page(r)[:3000]
    q = QcResult.objects.get()
    assert (q.value, q.value_as_entered, q.unit) == (92.0, "92", "%")
    url = f"/admin/trials/qcresult/{q.pk}/change/"
    data.update(result="90.5")
    r = c.post(url, data)
    assert r.status_code == 200 and "A reason for change is required." in _page(r)
    data["change_reason"] = "retest"
    r = c.post(url, data)
    assert r.status_code == 302, _page(r)[:3000]
    q.refresh_from_db()
    assert q.value == 90.5 and q.history.first().history_change_reason == "retest"


def test_lifecycle_records_are_read_only_in_the_admin(lab: Any, store: Any) -> None:
    from hepatrial.trials.models.product import CustodyEvent

    c, b = lab["client"], lab["batch"]
    r = c.get(f"/admin/trials/cellproductbatch/{b.pk}/change/")
    assert r.status_code == 200
    page = _page(r)
    assert b.batch_id in page and "complete manufacture" in page  # the custody inline
    assert 'name="state"' not in page  # shown, not editable
    assert c.get("/admin/trials/cellproductbatch/add/").status_code == 403
    ev = CustodyEvent.objects.filter(batch=b).first()
    assert c.post(f"/admin/trials/custodyevent/{ev.pk}/delete/",
                  {"post": "yes", "change_reason": "x"}).status_code == 403
    assert c.get("/admin/trials/harvest/").status_code == 200
