"""Kaplan–Meier and Aalen–Johansen (hepatrial.analysis.survival) against R survival::survfit.

The reference numbers and the input data (survival::aml, lung, pbc and constructed boundary
cases) were computed by ``tests/report/r/survival_reference.R`` (R 4.2, survival 3.5-3) and
committed; R is not needed to run the tests.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hepatrial.analysis import AnalysisInputError
from hepatrial.analysis.survival import cumulative_incidence, kaplan_meier

R_DIR = Path(__file__).resolve().parents[1] / "report" / "r"
REF = json.loads((R_DIR / "survival_reference.json").read_text())
DATA = json.loads((R_DIR / "survival_data.json").read_text())


def _data(name: str) -> tuple[np.ndarray, np.ndarray]:
    d = DATA[name]
    return np.asarray(d["time"], dtype=float), np.asarray(d["status"], dtype=int)


def _close(a: object, b: object, tol: float = 1e-10) -> bool:
    if b is None:
        return a is None or math.isnan(float(a))  # type: ignore[arg-type]
    return abs(float(a) - float(b)) <= tol * max(1.0, abs(float(b)))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["aml_maintained", "aml_nonmaintained", "lung",
                                  "event_at_zero", "tie_event_censor", "median_flat",
                                  "dsmb_triggered"])
def test_km_matches_r(name: str) -> None:
    t, s = _data(name)
    ref = REF["km"][name]
    km = kaplan_meier(t, s)
    tab = km.table
    assert tab["time"].tolist() == [float(x) for x in ref["time"]]
    assert tab["n_risk"].tolist() == ref["n_risk"]
    assert tab["n_event"].tolist() == ref["n_event"]
    worst = 0.0
    for col in ("surv", "std_err", "lower", "upper"):
        for a, b in zip(tab[col], ref[col], strict=True):
            assert _close(a, b), (name, col, a, b)
            if b is not None:
                worst = max(worst, abs(float(a) - float(b)))
    assert worst < 1e-12
    for k in ("median", "median_lower", "median_upper"):
        assert _close(getattr(km, k), ref[k]), (name, k, getattr(km, k), ref[k])
    assert km.n == ref["n"] and km.events == ref["events"]
    assert km.censored == km.n - km.events


def test_km_boundaries() -> None:
    # every participant censored (the demo: no related AE): nothing estimated, S = 1
    t, s = _data("all_censored")
    km = kaplan_meier(t, s)
    assert km.table.empty and km.events == 0 and km.censored == 3
    assert km.censor_times == (150.0, 168.0, 168.0)
    assert km.surv_at(1000) == REF["km"]["all_censored"]["surv_last"] == 1.0
    assert math.isnan(km.median) and km.max_time == 168.0
    # no participant at all
    empty = kaplan_meier([], [])
    assert empty.n == 0 and empty.table.empty and math.isnan(empty.max_time)
    # event at time 0 counts at time 0; S(t) is right-continuous
    km0 = kaplan_meier(*_data("event_at_zero"))
    assert km0.surv_at(0) == pytest.approx(0.8) and km0.surv_at(2.999) == pytest.approx(0.8)
    assert km0.surv_at(3) == pytest.approx(0.6)
    # R's midpoint rule: S = 0.5 on [2, 3) gives the median 2.5
    assert kaplan_meier(*_data("median_flat")).median == 2.5
    d = km0.as_dict()
    json.dumps(d, allow_nan=False)
    assert d["table"][0] == {"time": 0.0, "n_risk": 5, "n_event": 1, "surv": 0.8,
                             "std_err": pytest.approx(0.178885438199983),
                             "lower": pytest.approx(0.516125760342172), "upper": 1.0}


def test_km_refuses_bad_input() -> None:
    with pytest.raises(AnalysisInputError, match="row 1: time -1 is negative"):
        kaplan_meier([1, -1], [1, 0])
    with pytest.raises(AnalysisInputError, match="row 0: time 'x'"):
        kaplan_meier(["x", 2], [1, 0])
    with pytest.raises(AnalysisInputError, match="row 1: status 2 is not 0/1"):
        kaplan_meier([1, 2], [1, 2])
    with pytest.raises(AnalysisInputError, match="2 values, status 1"):
        kaplan_meier([1, 2], [1])
    with pytest.raises(AnalysisInputError, match="conf_level"):
        kaplan_meier([1], [1], conf_level=1.5)


@pytest.mark.parametrize("name,data,causes", [("pbc", "pbc", ["transplant", "death"]),
                                              ("small", "aj_small", ["event", "death"])])
def test_aalen_johansen_matches_r(name: str, data: str, causes: list[str]) -> None:
    t, s = _data(data)
    ref = REF["aj"][name]
    ci = cumulative_incidence(t, s, causes)
    assert ci["time"].tolist() == [float(x) for x in ref["time"]]
    assert ci["n_risk"].tolist() == ref["n_risk"]
    for c in causes:
        np.testing.assert_allclose(ci[c].to_numpy(), np.asarray(ref[c], dtype=float),
                                   rtol=0, atol=1e-12)
    # the event-free probability is 1 minus the sum of the incidences
    free = 1 - ci[causes].sum(axis=1)
    np.testing.assert_allclose(free, ref["free"], atol=1e-12)


def test_cumulative_incidence_without_events_and_absent_cause() -> None:
    none = cumulative_incidence([5, 6], [0, 0], ["event", "death"])
    assert none.empty and list(none.columns) == ["time", "n_risk", "event", "death"]
    only = cumulative_incidence([1, 2, 3], [1, 0, 1], ["event", "death"])
    assert only["death"].tolist() == [0.0, 0.0]
    # without competing deaths the incidence is 1 - KM
    km = kaplan_meier([1, 2, 3], [1, 0, 1])
    np.testing.assert_allclose(only["event"], 1 - km.table["surv"])
    with pytest.raises(AnalysisInputError, match=r"row 0: status 3 is not 0\.\.2"):
        cumulative_incidence([1], [3], ["event", "death"])
    assert isinstance(only, pd.DataFrame)
