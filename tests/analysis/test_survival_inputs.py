"""Inputs of the time-to-event and DSMB summaries (hepatrial.analysis.dsmb_data): the time to
the first event with censoring and competing deaths, visits not yet due, enrolment by month,
lab records for the stopping rules — each at its boundaries."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from hepatrial.analysis import (
    AnalysisInputError,
    enrolment_by_month,
    safety_labs_frame,
    time_to_first_event,
    visit_status,
)

CUT = dt.date(2024, 6, 30)


def _ppl(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["participant_id", "status", "status_date"])


def _origins(d: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({"participant_id": list(d), "origin": list(d.values())})


def _events(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["participant_id", "date"])


def test_time_to_first_event_censoring_and_competing_death() -> None:
    ppl = _ppl([("A", "enrolled", "2024-01-01"), ("B", "completed", "2024-06-20"),
                ("C", "withdrawn", "2024-03-01"), ("D", "died", "2024-02-10"),
                ("E", "enrolled", "2024-01-01"), ("F", "transplanted", "2024-08-01"),
                ("G", "died", "2024-04-01")])
    origins = _origins({"A": "2024-01-01", "B": "2024-01-05", "C": "2024-01-10",
                        "D": "2024-01-15", "E": "2024-01-20", "F": "2024-02-01",
                        "G": "2024-03-01"})
    events = _events([
        ("A", "2024-01-03"), ("A", "2024-01-02"),  # the first counts: day 1
        ("B", "2024-01-04"),  # before the origin: not counted, reported
        ("C", "2024-03-02"),  # after withdrawal: not counted
        ("D", "2024-02-10"),  # on the day of death: the event counts (first)
        ("E", "2024-07-01"),  # after the cut: unknown
        ("G", "2024-04-02")])  # after death
    deaths = pd.DataFrame({"participant_id": ["G"], "date": ["2024-04-01"]})
    out = time_to_first_event(ppl, origins, events, as_of=CUT, deaths=deaths)
    got = {r.participant_id: (r.time, r.status, r.reason, r.events_before_origin, r.follow_up)
           for r in out.itertuples()}
    assert got == {
        "A": (1, 1, "event", 0, 181),
        "B": (167, 0, "completed", 1, 167),
        "C": (51, 0, "withdrawn", 0, 51),
        "D": (26, 1, "event", 0, 26),
        "E": (162, 0, "data cut", 0, 162),
        "F": (150, 0, "data cut", 0, 150),  # transplanted after the cut: in follow-up at it
        "G": (31, 2, "death", 0, 31),
    }
    assert list(out["participant_id"]) == sorted(got)


def test_time_to_first_event_boundaries() -> None:
    # an event on the infusion day is at time 0; a participant dosed on the cut day has 0 days
    ppl = _ppl([("A", "enrolled", "2024-06-30"), ("B", "enrolled", "2024-06-30")])
    out = time_to_first_event(ppl, _origins({"A": "2024-06-30", "B": "2024-06-30"}),
                              _events([("A", "2024-06-30")]), as_of=CUT)
    assert out[["time", "status"]].values.tolist() == [[0, 1], [0, 0]]
    # nobody treated
    empty = time_to_first_event(ppl, _origins({}), _events([]), as_of=CUT)
    assert empty.empty and "follow_up" in empty.columns
    # follow-up cannot end before the first administration
    with pytest.raises(AnalysisInputError, match="participant 'A': follow-up ends on "
                                                 "2024-01-01 \\(completed\\), before the first"):
        time_to_first_event(_ppl([("A", "completed", "2024-01-01")]),
                            _origins({"A": "2024-02-01"}), _events([]), as_of=CUT)
    with pytest.raises(AnalysisInputError, match="participant 'Z' is not in the participants"):
        time_to_first_event(ppl, _origins({"Z": "2024-01-01"}), _events([]), as_of=CUT)


def test_visit_status_window_boundary() -> None:
    visits = [{"code": "D0", "nominal_day": 0, "window_upper": 0},
              {"code": "W4", "nominal_day": 28, "window_upper": 7}]
    ppl = pd.DataFrame({"participant_id": ["A", "B", "C", "D", "S"],
                        "status": ["enrolled", "enrolled", "withdrawn", "enrolled",
                                   "screen_failed"],
                        "enrolment_date": ["2024-05-26", "2024-05-25", "2024-01-01",
                                           "2024-05-26", None]})
    ds = pd.DataFrame({"participant_id": ["A", "B", "C", "D", "D"],
                       "visit": ["D0", "D0", "D0", "D0", "W4"],
                       "value": [1.0, 1.0, 1.0, 1.0, 2.0]})
    # W4 window closes on day 35: A (day 35 is 30 June, the cut) is due, B's closed a day
    # earlier; a window closing after the cut is not yet due
    out = visit_status(ds, ppl, visits, as_of=dt.date(2024, 6, 29))
    w4 = dict(zip(out.loc[out["visit"] == "W4", "participant_id"],
                  out.loc[out["visit"] == "W4", "status"], strict=True))
    assert w4 == {"A": "not yet due", "B": "missed", "C": "withdrawn", "D": "attended"}
    out = visit_status(ds, ppl, visits, as_of=CUT)
    assert out.loc[(out["visit"] == "W4") & (out["participant_id"] == "A"), "status"].item() \
        == "missed"
    assert set(out["participant_id"]) == {"A", "B", "C", "D"}  # the screen failure is not due


def test_enrolment_by_month() -> None:
    ppl = pd.DataFrame({"participant_id": list("ABCD"),
                        "enrolment_date": ["2024-01-31", "2024-03-01", None, "2024-07-01"]})
    out = enrolment_by_month(ppl, as_of=CUT)
    assert out.values.tolist() == [["2024-01", 1, 1], ["2024-02", 0, 1], ["2024-03", 1, 2],
                                   ["2024-04", 0, 2], ["2024-05", 0, 2], ["2024-06", 0, 2]]
    assert enrolment_by_month(ppl, as_of=dt.date(2023, 12, 31)).empty


def test_safety_labs_frame() -> None:
    ds = pd.DataFrame({"participant_id": ["A", "A", "A"], "visit": ["D0", "W4", "W4"],
                       "nominal_day": [0, 28, 28], "actual_day": [0, 30, None],
                       "analyte": ["meld_kamath2001", "meld_kamath2001", "inr"],
                       "value": [17.9, 23.0, 1.5]})
    ppl = pd.DataFrame({"participant_id": ["A"], "enrolment_date": ["2024-01-01"]})
    out = safety_labs_frame(ds, ppl, ["meld_kamath2001"])
    assert out.to_dict("records") == [
        {"participant_id": "A", "visit": "D0", "nominal_day": 0, "analyte": "meld_kamath2001",
         "value": 17.9, "date": dt.date(2024, 1, 1)},
        {"participant_id": "A", "visit": "W4", "nominal_day": 28, "analyte": "meld_kamath2001",
         "value": 23.0, "date": dt.date(2024, 1, 31)}]
    from hepatrial.protocol.safety import SafetyData

    assert len(SafetyData.from_frames(labs=out).labs) == 2
    assert safety_labs_frame(ds, ppl, ["albumin"]).empty
