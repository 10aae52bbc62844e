"""SAE and SUSAR reporting clocks across time zones and daylight-saving changes.

2024 changes: Europe/London 31 March 01:00 GMT -> 02:00 BST and 27 October 02:00 BST ->
01:00 GMT; America/New_York 10 March 02:00 EST -> 03:00 EDT and 3 November 02:00 EDT ->
01:00 EST. Expected instants worked out by hand from those offsets.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from hepatrial.errors import InputError
from hepatrial.protocol import load_protocol
from hepatrial.protocol import safety as s

UTC = dt.UTC
LON = "Europe/London"
NY = "America/New_York"


def _clocks(tz: str) -> s.ReportingClocks:
    return s.ReportingClocks(source="assumed", time_zone=tz)


def _utc(*a: int) -> dt.datetime:
    return dt.datetime(*a, tzinfo=UTC)


def test_local_to_utc_on_the_nights_clocks_change() -> None:
    # spring forward: 01:30 does not exist in London, exists (EST) in New York
    with pytest.raises(InputError, match="does not exist in Europe/London"):
        s.local_to_utc(dt.datetime(2024, 3, 31, 1, 30), LON)
    assert s.local_to_utc(dt.datetime(2024, 3, 10, 1, 30), NY) == _utc(2024, 3, 10, 6, 30)
    with pytest.raises(InputError, match="does not exist in America/New_York"):
        s.local_to_utc(dt.datetime(2024, 3, 10, 2, 30), NY)
    # fall back: 01:30 happens twice in both
    for tz, first, second in ((LON, _utc(2024, 10, 27, 0, 30), _utc(2024, 10, 27, 1, 30)),
                              (NY, _utc(2024, 11, 3, 5, 30), _utc(2024, 11, 3, 6, 30))):
        day = dt.datetime(2024, 10, 27, 1, 30) if tz == LON else dt.datetime(2024, 11, 3, 1, 30)
        with pytest.raises(InputError, match="happened twice"):
            s.local_to_utc(day, tz)
        assert s.local_to_utc(day, tz, fold=0) == first
        assert s.local_to_utc(day, tz, fold=1) == second
    assert s.local_to_utc(dt.datetime(2024, 7, 1, 12), "Asia/Tehran") == _utc(2024, 7, 1, 8, 30)
    with pytest.raises(InputError, match="already has a time zone"):
        s.local_to_utc(_utc(2024, 1, 1), LON)


@pytest.mark.parametrize(("tz", "aware", "deadline", "local_wall"), [
    # London, 00:30 GMT on 31 March: 24 h later is 00:30 UTC = 01:30 BST on 1 April
    (LON, _utc(2024, 3, 31, 0, 30), _utc(2024, 4, 1, 0, 30), dt.datetime(2024, 4, 1, 1, 30)),
    # London, 01:30 BST (first pass) on 27 October: 24 h later is 00:30 GMT on the 28th
    (LON, _utc(2024, 10, 27, 0, 30), _utc(2024, 10, 28, 0, 30), dt.datetime(2024, 10, 28, 0, 30)),
    # London, 01:30 GMT (second pass)
    (LON, _utc(2024, 10, 27, 1, 30), _utc(2024, 10, 28, 1, 30), dt.datetime(2024, 10, 28, 1, 30)),
    # New York, 01:30 EST on 10 March: 24 h later is 02:30 EDT on the 11th
    (NY, _utc(2024, 3, 10, 6, 30), _utc(2024, 3, 11, 6, 30), dt.datetime(2024, 3, 11, 2, 30)),
    # New York, 01:30 EDT (first pass) on 3 November: 00:30 EST on the 4th
    (NY, _utc(2024, 11, 3, 5, 30), _utc(2024, 11, 4, 5, 30), dt.datetime(2024, 11, 4, 0, 30)),
])
def test_initial_report_is_24_elapsed_hours(tz: str, aware: dt.datetime, deadline: dt.datetime,
                                            local_wall: dt.datetime) -> None:
    due = s.initial_report_due(aware, _clocks(tz))
    assert due.kind == "initial" and due.deadline == deadline
    assert due.deadline - due.clock_start == dt.timedelta(hours=24)
    assert due.deadline.astimezone(ZoneInfo(tz)).replace(tzinfo=None) == local_wall
    assert due.due_date == local_wall.date()
    assert "Art. 41" in due.source


def test_awareness_in_another_zone_is_the_same_instant() -> None:
    # the same instant entered in London and in New York gives the same 24 h deadline
    a = s.local_to_utc(dt.datetime(2024, 10, 27, 1, 30), LON, fold=1)
    b = s.local_to_utc(dt.datetime(2024, 10, 26, 21, 30), NY)
    assert a == b
    assert s.initial_report_due(a, _clocks(LON)).deadline == s.initial_report_due(
        b, _clocks(NY)).deadline


@pytest.mark.parametrize(("tz", "aware", "fatal", "due_date", "deadline"), [
    # day 0 = 27 Oct (London), +7 -> 3 Nov, end of day GMT
    (LON, _utc(2024, 10, 27, 0, 30), True, dt.date(2024, 11, 3),
     dt.datetime(2024, 11, 3, 23, 59, 59, 999999, tzinfo=UTC)),
    (LON, _utc(2024, 10, 27, 0, 30), False, dt.date(2024, 11, 11),
     dt.datetime(2024, 11, 11, 23, 59, 59, 999999, tzinfo=UTC)),
    # day 0 = 31 Mar (London, 00:30 GMT), +7 -> 7 Apr, end of day BST = 22:59:59.999999 UTC
    (LON, _utc(2024, 3, 31, 0, 30), True, dt.date(2024, 4, 7),
     dt.datetime(2024, 4, 7, 22, 59, 59, 999999, tzinfo=UTC)),
    # New York 01:30 EST on 10 March: +7 -> 17 March, end of day EDT = 03:59:59.999999 UTC 18th
    (NY, _utc(2024, 3, 10, 6, 30), True, dt.date(2024, 3, 17),
     dt.datetime(2024, 3, 18, 3, 59, 59, 999999, tzinfo=UTC)),
    # New York 01:30 EDT on 3 November: +15 -> 18 November, end of day EST
    (NY, _utc(2024, 11, 3, 5, 30), False, dt.date(2024, 11, 18),
     dt.datetime(2024, 11, 19, 4, 59, 59, 999999, tzinfo=UTC)),
])
def test_susar_calendar_days(tz: str, aware: dt.datetime, fatal: bool, due_date: dt.date,
                             deadline: dt.datetime) -> None:
    due = s.susar_report_due(aware, fatal, _clocks(tz))
    assert due.kind == ("susar_7_day" if fatal else "susar_15_day")
    assert (due.due_date, due.deadline) == (due_date, deadline)


def test_calendar_day_depends_on_the_trial_zone() -> None:
    aware = _utc(2024, 3, 9, 23, 30)  # 9 March in London, 10 March 03:00 in Tehran
    assert s.susar_report_due(aware, True, _clocks(LON)).due_date == dt.date(2024, 3, 16)
    assert s.susar_report_due(aware, True, _clocks("Asia/Tehran")).due_date == dt.date(2024, 3,
                                                                                         17)
    # the built-in protocol counts days in Tehran
    clocks = load_protocol("kharaziha2009").safety.reporting
    assert clocks.time_zone == "Asia/Tehran"
    due = s.susar_report_due(aware, False, clocks)
    assert due.due_date == dt.date(2024, 3, 25)
    assert due.deadline == dt.datetime(2024, 3, 25, 20, 29, 59, 999999, tzinfo=UTC)


def test_report_status_at_the_deadline() -> None:
    due = s.initial_report_due(_utc(2024, 3, 31, 0, 30), _clocks(LON))
    now = _utc(2024, 4, 2)
    assert due.status(due.deadline, now) == "submitted"
    assert due.status(due.deadline + dt.timedelta(microseconds=1), now) == "late"
    assert due.status(None, due.deadline) == "pending"
    assert due.status(None, due.deadline + dt.timedelta(seconds=1)) == "overdue"
    with pytest.raises(InputError, match="time-zone-aware"):
        due.status(None, dt.datetime(2024, 4, 2))


def test_sae_schedule_and_follow_ups() -> None:
    c = _clocks(LON)
    aware = _utc(2024, 3, 31, 0, 30)
    only = s.sae_due_dates(c, site_aware_at=aware)
    assert [d.kind for d in only] == ["initial"]
    initial_sent = _utc(2024, 3, 31, 10)
    sched = s.sae_due_dates(c, site_aware_at=aware, susar=True, fatal_or_life_threatening=True,
                            reports={"initial": initial_sent,
                                     "susar_7_day": _utc(2024, 4, 3, 9)})
    assert [d.kind for d in sched] == ["initial", "susar_7_day", "susar_follow_up", "follow_up"]
    fu8 = sched[2]
    assert fu8.due_date == dt.date(2024, 4, 11)  # 3 April + 8 days
    fu = sched[3]
    assert fu.due_date == dt.date(2024, 4, 30)  # 31 March + 30 days
    # the sponsor's awareness starts the SUSAR clock when it differs from the site's
    later = s.sae_due_dates(c, site_aware_at=aware, sponsor_aware_at=_utc(2024, 4, 2, 12),
                            susar=True)
    assert later[1].kind == "susar_15_day" and later[1].due_date == dt.date(2024, 4, 17)
    # resolved: no further follow-up
    done = s.sae_due_dates(c, site_aware_at=aware, reports={"initial": initial_sent},
                           resolved=True)
    assert [d.kind for d in done] == ["initial"]
    no8 = s.ReportingClocks(source="assumed", time_zone=LON, susar_fatal_follow_up_days=None)
    assert s.susar_follow_up_due(initial_sent, no8) is None


def test_naive_awareness_is_refused() -> None:
    with pytest.raises(InputError, match="not a time-zone-aware datetime"):
        s.initial_report_due(dt.datetime(2024, 3, 31, 1, 30), _clocks(LON))
    with pytest.raises(InputError, match="sponsor_aware_at"):
        s.susar_report_due(dt.datetime(2024, 3, 31, 1, 30), True, _clocks(LON))
