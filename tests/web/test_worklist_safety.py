"""The worklist sections of web/safety_worklist.py on the real store: the SAE reporting clocks
(investigator, sponsor, DSMB; the user's sites only; overdue first) and the batches awaiting
QA release (QA), and their queries do not grow with the number of events.

Awareness times are relative to now (the store refuses times in the future); the deadlines
asserted are the protocol's clocks (kharaziha2009: 24 h initial report, 30-day follow-up,
calendar days in Asia/Tehran).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.store._product import at, release, to_qa_review
from tests.store._trial import PASSWORD, fast_passwords
from tests.web.conftest import today

TEHRAN = ZoneInfo("Asia/Tehran")
H = dt.timedelta(hours=1)


def _section(page: str, key: str) -> str:
    m = re.search(rf'id="wl-{key}".*?</section>', page, re.S)
    assert m is not None, key
    return m.group(0)


def _items(section: str) -> list[str]:
    return [" ".join(re.sub(r"<[^>]+>", " ", li).split())
            for li in re.findall(r"<li>(.*?)</li>", section, re.S)]


def _minutes(text: str, pattern: str) -> int:
    m = re.search(pattern, text)
    assert m is not None, (pattern, text)
    return int(m["h"]) * 60 + int(m["m"])


def _tehran(t: dt.datetime) -> str:
    return f"{t.astimezone(TEHRAN):%Y-%m-%d %H:%M} Asia/Tehran"


def sae(participant: str = "A1", hours_ago: float = 2, *, term: str = "Ascites",
        grade: int = 3, outcome: str = "not_recovered") -> Any:
    """A serious adverse event (hospitalisation, not related) the site became aware of
    ``hours_ago`` hours ago (to the minute)."""
    from hepatrial.trials.services import safety

    aware = (timezone.now() - hours_ago * H).replace(second=0, microsecond=0)
    return safety.record_adverse_event(
        participant=participant, term=term, grade=grade, onset_date=today() - dt.timedelta(
            days=3), serious=True, seriousness_criteria=["hospitalisation"],
        relatedness_product="not_related", relatedness_procedure="not_related",
        action_taken="not_applicable", outcome=outcome, aware_at=aware)


@pytest.fixture
def inv(world: Any, settings: Any) -> Any:
    """An investigator of S01 with a password (to sign SAE reports)."""
    fast_passwords(settings)
    return world.services.create_user(username="inv_pw", password=PASSWORD,
                                      role="investigator", site_codes=["S01"],
                                      printed_name="Dr Pw")


def _report(ae: Any, kind: str, submitted: dt.datetime, **kw: Any) -> Any:
    from hepatrial.trials.services import safety

    return safety.report_sae(ae, kind=kind, narrative=f"{kind} narrative", user="inv_pw",
                             password=PASSWORD, submitted=submitted, **kw)


# ------------------------------------------------------------------ SAE clocks
def test_an_sae_of_my_site_shows_its_24_h_clock_and_another_sites_does_not(
        world: Any, login: Any, inv: Any) -> None:
    mine = sae("A1", 2, term="Ascites")
    sae("B1", 3, term="Encephalopathy")
    page = login(inv).get("/").content.decode()
    items = _items(_section(page, "sae_clocks"))
    assert len(items) == 1, items
    deadline = mine.aware_at + 24 * H
    assert items[0].startswith(
        f"pending AE-{mine.pk} A1 · Ascites, grade 3 — initial report due {_tehran(deadline)} "
        "(24 h after the site became aware) · ")
    left = _minutes(items[0], r"· (?P<h>\d+) h (?P<m>\d+) min left$")
    assert 22 * 60 - 3 <= left <= 22 * 60, items[0]
    assert 'href="/participants/A1/adverse-events/"' in _section(page, "sae_clocks")
    assert "Encephalopathy" not in page and "B1" not in _section(page, "sae_clocks")
    assert '<span class="count">1</span>' in _section(page, "sae_clocks")


def test_roles_of_every_site_see_every_sae_and_roles_without_a_safety_action_none(
        world: Any, login: Any) -> None:
    a, b = sae("A1", 2), sae("B1", 3)
    for role in ("sponsor", "dsmb"):
        items = _items(_section(login(role).get("/").content.decode(), "sae_clocks"))
        assert [i.split(" · ")[0] for i in items] == [f"pending AE-{b.pk} B1",
                                                      f"pending AE-{a.pk} A1"], role
    for role in ("coordinator", "monitor", "qa", "data-manager"):
        page = login(role).get("/").content.decode()
        assert 'id="wl-sae_clocks"' not in page, role
        assert "Ascites" not in page, role


def test_overdue_clocks_come_first_in_danger_style(world: Any, login: Any, inv: Any) -> None:
    reported = sae("A1", 72, term="Ascites")          # oldest awareness: its clock is pending
    _report(reported, "initial", reported.aware_at + H)
    late = sae("A1", 26, term="Lung infection")            # overdue by 2 h
    later = sae("A1", 50, term="Sepsis", grade=4)     # overdue by 26 h: first
    page = login(inv).get("/").content.decode()
    section = _section(page, "sae_clocks")
    items = _items(section)
    assert [i.split(" — ")[0] for i in items] == [
        f"overdue AE-{later.pk} A1 · Sepsis, grade 4",
        f"overdue AE-{late.pk} A1 · Lung infection, grade 3",
        f"pending AE-{reported.pk} A1 · Ascites, grade 3"]
    assert section.count('<span class="badge bad">overdue</span>') == 2
    assert section.count('<span class="badge warn">pending</span>') == 1
    assert items[0].endswith(f"initial report due {_tehran(later.aware_at + 24 * H)} (24 h "
                             "after the site became aware) · overdue by 1 d 2 h")
    over = _minutes(items[1], r"overdue by (?P<h>\d+) h (?P<m>\d+) min$")
    assert 2 * 60 <= over <= 2 * 60 + 3, items[1]
    # the reported event owes its follow-up: the end of the 30th calendar day in Tehran
    # after the initial report
    sent = (reported.aware_at + H).astimezone(TEHRAN).date() + dt.timedelta(days=30)
    assert f"follow-up report due {sent} 23:59 Asia/Tehran (30 calendar days after the last " \
           "report until resolution) · " in items[2]


def test_a_reported_sae_leaves_the_worklist(world: Any, login: Any, inv: Any) -> None:
    from hepatrial.trials.services import safety

    ae = sae("A1", 5, term="Ascites")
    c = login(inv)
    assert [i.split(" — ")[1].split(" due ")[0] for i in _items(_section(
        c.get("/").content.decode(), "sae_clocks"))] == ["initial report"]
    _report(ae, "initial", ae.aware_at + H)
    items = _items(_section(c.get("/").content.decode(), "sae_clocks"))
    assert len(items) == 1 and "— follow-up report due" in items[0], items
    ae = safety.update_adverse_event(ae, outcome="recovered",
                                     resolution_date=today(), reason="resolved", user="inv_pw")
    _report(ae, "follow_up", timezone.now() - dt.timedelta(minutes=1), final=True)
    section = _section(c.get("/").content.decode(), "sae_clocks")
    assert _items(section) == []
    assert "No serious adverse event report is due." in section
    assert '<span class="count">0</span>' in section


def test_an_sae_without_an_awareness_time_is_listed_without_a_clock(
        world: Any, login: Any) -> None:
    from hepatrial.trials.models import AdverseEvent

    ae = sae("A1", 2)
    # as an event stored before the clocks (migration 0005) is: no awareness time
    AdverseEvent.objects.filter(pk=ae.pk).update_with_reason("legacy record", aware_at=None)
    items = _items(_section(login("investigator").get("/").content.decode(), "sae_clocks"))
    assert items == [f"no clock AE-{ae.pk} A1 · Ascites, grade 3 — no reporting clock: no "
                     "time of awareness recorded (stored before the SAE clocks): enter it "
                     "with hepatrial ae update"]


def test_sae_clock_queries_do_not_grow_with_the_events(
        world: Any, login: Any, django_assert_max_num_queries: Any,
        django_assert_num_queries: Any) -> None:
    from hepatrial.trials.web.access import Access
    from hepatrial.trials.web.safety_worklist import sae_clocks_section

    c = login("investigator")
    sae("A1", 2)
    c.get("/")  # warm: the protocol is parsed once per process
    with CaptureQueriesContext(connection) as q:
        assert c.get("/").status_code == 200
    one = len(q.captured_queries)
    for i in range(9):
        sae("A1", 3 + i, term="Lung infection")
    with django_assert_max_num_queries(one):
        page = c.get("/").content.decode()
    assert len(_items(_section(page, "sae_clocks"))) == 10
    access = Access.of(world.users["investigator"])
    # the protocol, the events' ids, their reports, the sponsor's assessments, the events
    with django_assert_num_queries(5):
        section = sae_clocks_section(access, today())
    assert section is not None and section.count == 10


# ------------------------------------------------------------------ batches
def test_a_batch_in_qa_review_shows_for_qa_and_not_for_a_coordinator(
        world: Any, login: Any, settings: Any) -> None:
    fast_passwords(settings)
    s = world.services
    day = today() - dt.timedelta(days=2)  # in review since 08:00 two days ago: 1 d and more
    waiting = to_qa_review(s, "A1", day, batch_id="MSC-A1-1")
    to_qa_review(s, "B1", day, batch_id="MSC-B1-1")            # another site
    earlier = day - dt.timedelta(days=1)
    release(s, to_qa_review(s, "A1", earlier, batch_id="MSC-A1-0"), earlier)
    page = login("qa").get("/").content.decode()
    section = _section(page, "batch_release")
    items = _items(section)
    assert len(items) == 1, items
    assert items[0].startswith(
        f"shelf life ended MSC-A1-1 · A1 (S01) — in QA review since {day} 08:00 UTC (")
    assert items[0].endswith(f"shelf life ended {day} 13:00 UTC")  # 6 h after formulation
    waited = timezone.now() - at(day, 8)
    shown = re.search(r"\((?P<d>\d+) d (?P<h>\d+) h\)", items[0])
    assert shown is not None and (int(shown["d"]), int(shown["h"])) == (
        waited.days, waited.seconds // 3600), items[0]
    assert f'href="/products/{waiting.batch_id}/"' in section
    assert '<span class="badge bad">shelf life ended</span>' in section
    assert "MSC-B1-1" not in page and "MSC-A1-0" not in page
    for role in ("coordinator", "investigator", "data-manager"):
        assert 'id="wl-batch_release"' not in login(role).get("/").content.decode(), role


def test_no_batch_waiting_says_so(world: Any, login: Any) -> None:
    section = _section(login("qa").get("/").content.decode(), "batch_release")
    assert _items(section) == [] and "No batch is waiting for release." in section
