"""The worklist, the site dashboard, the participant list and the casebook (values asserted)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from tests.web.conftest import today


def _section(page: str, key: str) -> str:
    m = re.search(rf'id="wl-{key}".*?</section>', page, re.S)
    assert m is not None, key
    return m.group(0)


def _items(section: str) -> list[str]:
    return [" ".join(re.sub(r"<[^>]+>", " ", li).split())
            for li in re.findall(r"<li>(.*?)</li>", section, re.S)]


def _d(days: int) -> str:
    return (today() + dt.timedelta(days=days)).isoformat()


def test_worklist_of_a_coordinator(world: Any, login: Any) -> None:
    page = login("coordinator").get("/").content.decode()
    visits = _items(_section(page, "visits"))
    a1, a3 = world.day0, today() - dt.timedelta(days=40)

    def w(day0: dt.date, target: int, lo: int, hi: int) -> str:
        d = dt.timedelta
        return (f"window {day0 + d(days=target + lo)} – {day0 + d(days=target + hi)} "
                f"(target {day0 + d(days=target)})")

    # overdue, by the date the window closed: A3's (day 0 40 days ago) SCR, W1, W2, A1's SCR
    # (days -28..-1: the screening visit never recorded as a visit), A3's W4
    overdue = [v for v in visits if v.startswith("overdue")]
    assert [v.split(" · ")[0] for v in overdue] == [
        "overdue A3 SCR", "overdue A3 W1", "overdue A3 W2", "overdue A1 SCR", "overdue A3 W4"]
    assert overdue[1] == f"overdue A3 W1 · Week 1 — {w(a3, 7, -2, 2)}; closed 31 day(s) ago"
    assert f"due now A1 W1 · Week 1 — {w(a1, 7, -2, 2)}" in visits
    assert f"due soon A1 W2 · Week 2 — {w(a1, 14, -3, 3)}" in visits
    assert f"due soon A3 W8 · Week 8 — {w(a3, 56, -7, 7)}" in visits
    assert not any("B1" in v for v in visits)  # another site's participant
    forms = _items(_section(page, "forms"))
    assert forms == ["1 missing A1 D0 · Day 0 (baseline, cell infusion) — missing: albumin"]
    assert 'id="wl-signatures"' not in page  # a coordinator does not sign


def test_worklist_of_an_investigator_lists_what_to_sign(world: Any, login: Any) -> None:
    page = login("investigator").get("/").content.decode()
    sign = _items(_section(page, "signatures"))
    assert sign == [f"to sign A1 D0 · Day 0 (baseline, cell infusion) — visit on {world.day0}"]
    inv = world.users["investigator"]
    from django.contrib.auth.hashers import make_password

    inv.password = make_password("Sign-Here-2024!x")
    inv.save()
    world.services.sign(level="visit", participant="A1", visit_code="D0",
                        meaning="I reviewed these data", user=inv, password="Sign-Here-2024!x")
    page = login("investigator").get("/").content.decode()
    assert "Nothing is waiting for your signature." in _section(page, "signatures")


def test_worklist_without_a_role(world: Any, client: Any) -> None:
    from django.contrib.auth import get_user_model

    u = get_user_model().objects.create_user("nobody")
    client.force_login(u, backend="django.contrib.auth.backends.ModelBackend")
    page = client.get("/").content.decode()
    assert "Your account has no role in the trial" in page and 'id="wl-' not in page


def test_site_dashboard(world: Any, login: Any) -> None:
    c = login("monitor")
    page = c.get("/sites/S01/").content.decode()
    rows = re.findall(r'<tr><th><a href="/participants/([A-Z0-9]+)/">[^<]*</a></th>(.*?)</tr>',
                      page, re.S)
    assert [r[0] for r in rows] == ["A1", "A2", "A3"]
    cells = {pid: re.findall(r'data-state="([a-z_]+)"', body) for pid, body in rows}
    # SCR D0 W1 W2 W4 W8 W24
    assert cells["A1"] == ["overdue", "done", "due", "not_due", "not_due", "not_due", "not_due"]
    assert cells["A2"] == []  # screened only: no visit scheduled
    assert cells["A3"] == ["overdue", "missed", "overdue", "overdue", "overdue", "not_due",
                           "not_due"]
    month = world.day0.strftime("%Y-%m")
    enrol = re.findall(r"<tr><td>(\d{4}-\d\d)</td><td class=\"num\">(\d+)</td>"
                       r"<td class=\"num\">(\d+)</td></tr>", page)
    assert enrol[-1][0] == month and int(enrol[-1][2]) == 2  # A1 and A3 enrolled
    assert sum(int(n) for _m, n, _c in enrol) == 2
    assert "visit D0 missed: patient unwell" in page  # the missed-visit deviation
    assert set(re.findall(r'href="/participants/([A-Z0-9]+)/', page)) == {"A1", "A2", "A3"}
    assert "<svg" in page  # the enrolment chart
    assert c.get("/sites/S02/").status_code == 404


def test_dashboard_marks_signed_and_locked(world: Any, login: Any) -> None:
    world.services.lock(level="visit", participant="A1", visit_code="D0",
                        user=world.users["data-manager"], reason="database lock of D0")
    page = login("data-manager").get("/sites/S01/").content.decode()
    d0 = re.search(r'<td class="cell done" data-state="done" title="D0:.*?</td>', page, re.S)
    assert d0 is not None and 'title="locked">L<' in d0.group(0)
    assert login("data-manager").get("/sites/S02/").status_code == 200  # all sites


def test_participant_list_search_and_filters(world: Any, login: Any) -> None:
    c = login("coordinator")
    ids = re.findall(r'<td><a href="/participants/([A-Z0-9]+)/">',
                     c.get("/participants/").content.decode())
    assert ids == ["A1", "A2", "A3"]
    ids = re.findall(r'<td><a href="/participants/([A-Z0-9]+)/">',
                     c.get("/participants/", {"status": "screened"}).content.decode())
    assert ids == ["A2"]
    ids = re.findall(r'<td><a href="/participants/([A-Z0-9]+)/">',
                     c.get("/participants/", {"q": "a3"}).content.decode())
    assert ids == ["A3"]
    ids = re.findall(r'<td><a href="/participants/([A-Z0-9]+)/">',
                     login("auditor").get("/participants/").content.decode())
    assert ids == ["A1", "A2", "A3", "B1"]


def test_casebook(world: Any, login: Any) -> None:
    c = login("coordinator")
    page = c.get("/participants/A1/").content.decode()
    assert re.search(r'id="h-study">A1<', page) and re.search(r'id="h-site">S01<', page)
    assert re.search(r'id="h-status">enrolled', page)
    assert re.search(r'id="h-arm">single<', page)
    assert re.search(rf'id="h-day0">{world.day0}<', page)
    rows = re.findall(r'<tr class="state-([a-z_]+)" data-visit="([A-Z0-9]+)">\s*<td>.*?</td>\s*'
                      r'<td>([0-9-]+)</td><td>([0-9-]+)</td><td>([0-9-]+)</td>', page, re.S)
    got = {code: (state, e, t, lt) for state, code, e, t, lt in rows}
    assert list(got) == ["SCR", "D0", "W1", "W2", "W4", "W8", "W24"]
    assert got["W1"] == ("due", _d(-2), _d(0), _d(2))
    assert got["W24"] == ("not_due", _d(-7 + 168 - 14), _d(-7 + 168), _d(-7 + 168 + 14))
    assert got["D0"][0] == "done"
    d0 = re.search(r'data-visit="D0">.*?</tr>', page, re.S).group(0)
    assert "items 3/4" in d0 and "incomplete: albumin" in d0


def test_field_history_one_click_away(world: Any, login: Any) -> None:
    p = world.participant("A1")
    world.services.update_participant(p, year_of_birth=1961, reason="birth year per ID card",
                                      user=world.users["coordinator"])
    c = login("monitor")
    page = c.get("/participants/A1/").content.decode()
    url = f"/participants/A1/history/participant/{p.pk}/year_of_birth/"
    assert f'href="{url}" hx-get="{url}" hx-target="#history-panel"' in page
    html = c.get(url).content.decode()
    rows = re.findall(r"<tr><td>[^<]*</td><td>([^<]*)</td><td>([^<]*)</td>\s*<td>([^<]*)</td>"
                      r"<td>([^<]*)</td><td>([^<]*)</td></tr>", html)
    assert rows == [("system", "created", "", "1960", ""),
                    ("u_coordinator", "changed", "1960", "1961", "birth year per ID card")]
    assert "<html" in html  # without htmx: a page


def test_dashboard_pages_the_matrix(world: Any, login: Any, monkeypatch: Any) -> None:
    from hepatrial.trials.web import dashboard

    monkeypatch.setattr(dashboard, "ROWS_PER_PAGE", 2)
    c = login("coordinator")
    rows = re.findall(r'<tr><th><a href="/participants/([A-Z0-9]+)/">',
                      c.get("/sites/S01/").content.decode())
    assert rows == ["A1", "A2"]
    page = c.get("/sites/S01/", {"page": "2"}).content.decode()
    assert re.findall(r'<tr><th><a href="/participants/([A-Z0-9]+)/">', page) == ["A3"]
    assert "Participants 3 · page" in page
    # the status counts are the site's, not the page's
    assert re.findall(r"<tr><td>(enrolled|screened)</td><td class=\"num\">(\d+)</td>", page) == [
        ("enrolled", "2"), ("screened", "1")]
    assert c.get("/sites/S01/", {"page": "x"}).status_code == 200


def test_worklist_lists_the_first_of_each_kind_and_counts_the_rest(world: Any, login: Any,
                                                                   monkeypatch: Any) -> None:
    from hepatrial.trials.web import worklist

    monkeypatch.setattr(worklist, "SHOWN", 1)
    page = login("coordinator").get("/").content.decode()
    section = _section(page, "visits")
    items = _items(section)
    assert items[0].startswith("overdue A3 SCR")
    assert items[1] == "more 4 more overdue visit(s) — listed on the site dashboards"
    assert re.search(r'<span class="count">(\d+)</span>', section).group(1) == str(
        5 + 1 + 3)  # 5 overdue, 1 due now (A1 W1), 3 due soon (A1 W2, A1 W4, A3 W8)
