"""The eCRF pages read a bounded number of queries whatever the size of the trial (no N+1),
and the fast paths the pages use give the same answers as the plain selectors."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from hepatrial.scores import meld
from tests.web.conftest import enrol, today


def _queries(client: Any, path: str) -> int:
    client.get(path)  # warm: the protocol is parsed once per process
    with CaptureQueriesContext(connection) as q:
        r = client.get(path)
    assert r.status_code == 200, path
    return len(q.captured_queries)


def _grow(world: Any, n: int) -> None:
    """``n`` more participants of S01, day 0 a week ago, D0 done with its labs."""
    day0 = today() - dt.timedelta(days=7)
    for i in range(n):
        sid = f"N{i:02d}"
        enrol(world.services, sid, "S01", day0)
        world.services.record_visit(participant=sid, visit_code="D0", actual_date=day0)
        for analyte, value, unit in (("bilirubin", "40", "umol/L"),
                                     ("creatinine", "90", "umol/L"), ("inr", "1.4", "1")):
            world.services.record_lab(participant=sid, visit_code="D0", analyte=analyte,
                                      value=value, unit=unit)


def test_page_queries_do_not_grow_with_the_trial(world: Any, login: Any) -> None:
    c = login("investigator")
    pages = ("/", "/participants/A1/", "/participants/A1/visits/D0/")
    before = {p: _queries(c, p) for p in pages}
    _grow(world, 4)
    after = {p: _queries(c, p) for p in pages}
    assert after == before
    assert before["/participants/A1/"] <= 22, before  # casebook: locks, signatures read once


def test_meld_trajectory_from_the_visit_rows_equals_the_one_read(world: Any) -> None:
    from hepatrial.trials import selectors_web, services

    p = world.participant("A1")
    rows = selectors_web.visit_rows(services.active_protocol(), p, today())
    with CaptureQueriesContext(connection) as q:
        fast = selectors_web.meld_trajectory(p, "kamath2001", visit_rows=rows)
    assert len(q.captured_queries) == 0
    assert fast == selectors_web.meld_trajectory(p, "kamath2001")
    assert [r["visit"] for r in fast] == ["D0"] and fast[0]["day"] == 0
    # bilirubin 2.3 mg/dL, creatinine 1.1 mg/dL, INR 1.5: Kamath 2001, unrounded
    assert fast[0]["value"] == pytest.approx(meld(2.3, 1.1, 1.5, variant="kamath2001",
                                                  units="conventional"))
    assert round(fast[0]["value"], 2) == 15.03


def test_visits_to_sign_lists_the_done_visits_of_the_sites(world: Any) -> None:
    from hepatrial.trials import selectors_web
    from hepatrial.trials.models import Site

    s01 = Site.objects.get(code="S01").pk
    rows = selectors_web.visits_to_sign([s01])
    assert rows == [{"participant": "A1", "visit": "D0",
                     "label": "Day 0 (baseline, cell infusion)", "actual_date": world.day0}]
    both = selectors_web.visits_to_sign(Site.objects.values_list("pk", flat=True))
    assert [(r["participant"], r["visit"]) for r in both] == [("A1", "D0"), ("B1", "D0")]
