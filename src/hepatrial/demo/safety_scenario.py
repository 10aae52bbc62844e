"""Synthetic safety scenarios for the DSMB report and its tests (seeded; not patient data).

:func:`scenario` builds a small trial under the kharaziha2009 protocol (or a randomised
variant of it, :func:`randomised_protocol`) in one interim state, as the store would export
it: the analysis bundle (``TrialData``), the safety records (``SafetyData``) and the data-cut
date. States:

* ``empty`` — nobody enrolled yet;
* ``enrolled_not_dosed`` — participants enrolled, baseline labs, no administration;
* ``no_aes`` — dosed, followed, no adverse event;
* ``aes_no_sae`` — non-serious events: infusion-day fever related to the product, pain after
  the portal-vein puncture related to the procedure, an unrelated hypoalbuminaemia;
* ``triggered`` — as ``aes_no_sae`` plus a portal-vein thrombosis (grade 3, serious,
  probably related to the portal-vein injection) 9 days after a portal injection: the
  stopping rules "any death or related SAE" and "portal-vein thrombosis after portal
  injection" trigger and the SAE listing has the event;
* ``death`` — as ``aes_no_sae`` plus an unrelated fatal hepatic failure (a death: the
  "any death" rule triggers; a competing event for the time to the first related AE).

:func:`demo_safety_data` gives the demo cohort's safety records (each of the 8 patients one
administration on day 0 by their route, MELD for the lab-rise rule, no adverse events).
Same seed and state, same frames.
"""

from __future__ import annotations

import copy
import datetime as _dt
import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from hepatrial.analysis import TrialData
from hepatrial.analysis.dsmb_data import safety_labs_frame
from hepatrial.protocol import load_protocol
from hepatrial.protocol import safety as _s
from hepatrial.protocol.loader import validate_data
from hepatrial.protocol.models import Protocol

__all__ = ["LABEL", "STATES", "Scenario", "demo_safety_data", "randomised_protocol", "scenario"]

STATES = ("empty", "enrolled_not_dosed", "no_aes", "aes_no_sae", "triggered", "death")
LABEL = "SYNTHETIC SCENARIO: invented safety data for testing the DSMB report; not patient data"
SEED = 20240108
_DS_COLS = ["participant_id", "site", "arm", "visit", "nominal_day", "actual_day", "analyte",
            "value", "unit", "source"]
_AE_COLS = ["participant_id", "term", "grade", "serious", "related", "onset_day",
            "resolved_day", "outcome"]
_UNITS = {"bilirubin": "umol/L", "creatinine": "umol/L", "inr": "1", "albumin": "g/L"}


@dataclass
class Scenario:
    """A trial state: the bundle, the safety records, the protocol and the data cut."""

    state: str
    data: TrialData
    safety: _s.SafetyData
    protocol: Protocol
    as_of: _dt.date
    label: str = LABEL
    #: per adverse event: ``id``, ``seriousness_criteria``, ``resolution_date``
    ae_details: pd.DataFrame | None = None


def randomised_protocol() -> Protocol:
    """kharaziha2009 as a randomised trial (cells vs standard medical care, 1:1, permuted
    blocks): for the closed report's by-arm tables."""
    text = resources.files("hepatrial.protocol").joinpath("builtin", "kharaziha2009.toml")
    d = copy.deepcopy(tomllib.loads(text.read_text(encoding="utf-8")))
    d["name"] = "kharaziha2009-randomised"
    d["title"] = "Autologous MSC vs standard care in end-stage liver disease (synthetic " \
                 "randomised variant)"
    d["design"] = "randomised"
    d["arms"] = [dict(d["arms"][0], code="cells", note="synthetic randomised variant"),
                 {"code": "control", "label": "Standard medical care", "ratio": 1,
                  "source": "assumed"}]
    d["randomisation"] = {"method": "permuted_block", "block_sizes": [2, 4], "strata": [],
                          "seed": SEED, "source": "assumed"}
    proto, issues = validate_data(d, "kharaziha2009-randomised")
    if proto is None:  # pragma: no cover - the built-in protocol validates
        raise ValueError(f"randomised variant invalid: {issues}")
    return proto


def _meld(bili: float, crea: float, inr: float) -> float:
    from hepatrial import scores

    return float(scores.meld(bilirubin=bili, creatinine=crea, inr=inr, units="si",
                             variant="kamath2001"))


def scenario(state: str = "triggered", *, seed: int = SEED, n: int = 8,
             randomised: bool = False) -> Scenario:
    """One synthetic trial state (see the module docstring); ``n`` participants enrolled
    14-21 days apart from 8 January 2024, the cut 60 days after the last enrolment."""
    if state not in STATES:
        raise ValueError(f"state {state!r} is not one of {', '.join(STATES)}")
    rng = np.random.default_rng(seed)
    protocol = randomised_protocol() if randomised else load_protocol("kharaziha2009")
    ps = protocol.summary_dict()
    start = _dt.date(2024, 1, 8)
    gaps = rng.integers(14, 22, size=n)
    enrol = [start + _dt.timedelta(days=int(g)) for g in np.cumsum(gaps) - gaps[0]]
    as_of = enrol[-1] + _dt.timedelta(days=60)
    if state == "empty":
        ppl = pd.DataFrame(columns=["participant_id", "site", "arm", "sex", "age", "etiology",
                                    "status", "status_date", "status_reason", "enrolment_date",
                                    "route", "n_administrations", "cells_total",
                                    "cells_per_kg", "volume_ml"])
        ds = pd.DataFrame(columns=_DS_COLS)
        return Scenario(state, TrialData(ds, ppl, pd.DataFrame(columns=_AE_COLS), ps),
                        _s.SafetyData(), protocol, start + _dt.timedelta(days=30))
    arms = ["single"] * n
    if randomised:
        arms = list(rng.permutation(["cells", "control"] * (n // 2) + ["cells"] * (n % 2)))
    routes = ["portal_vein" if rng.random() < 0.75 else "peripheral_vein" for _ in range(n)]
    routes[2] = "portal_vein"
    dosed = state != "enrolled_not_dosed"
    ids = [f"P{i + 1:02d}" for i in range(n)]
    visits = [v for v in ps["visits"] if v["nominal_day"] >= 0]
    death_of = ids[4] if state == "death" else None
    death_day = 100
    rows, ppl_rows, admins = [], [], []
    for i, pid in enumerate(ids):
        d0 = enrol[i]
        got = dosed and arms[i] != "control"
        weight = float(np.round(rng.normal(68, 9), 1))
        cells = float(rng.integers(30, 51)) * 1e6 if got else np.nan
        end = d0 + _dt.timedelta(days=168 + 3)
        status, sdate, reason = "enrolled", d0, ""
        if pid == death_of and d0 + _dt.timedelta(days=death_day) <= as_of:
            status, sdate, reason = "died", d0 + _dt.timedelta(days=death_day), "hepatic failure"
        elif end <= as_of:
            status, sdate, reason = "completed", end, "completed 24-week follow-up"
        ppl_rows.append({
            "participant_id": pid, "site": "S01", "arm": arms[i], "sex": "FM"[i % 2],
            "age": int(rng.integers(30, 66)), "etiology": ["HBV", "HCV", "cryptogenic",
                                                          "alcohol"][i % 4],
            "status": status, "status_date": sdate.isoformat(), "status_reason": reason,
            "enrolment_date": d0.isoformat(), "route": routes[i] if got else "NA",
            "n_administrations": 1 if got else 0, "cells_total": cells,
            "cells_per_kg": cells / weight if got else np.nan,
            "volume_ml": 10.0 if got else np.nan})
        if got:
            admins.append(_s.Administration(f"ADM-{pid}", pid, d0, routes[i]))
        base = {"bilirubin": rng.normal(40, 10), "creatinine": rng.normal(95, 15),
                "inr": rng.normal(1.6, 0.2), "albumin": rng.normal(31, 3)}
        for v in visits:
            day = int(v["nominal_day"])
            when = d0 + _dt.timedelta(days=day)
            if when > as_of or (day > 0 and not dosed) or (
                    status == "died" and day >= death_day):
                continue
            drift = 1.0 - 0.002 * day if arms[i] != "control" else 1.0
            vals = {"bilirubin": round(base["bilirubin"] * drift + rng.normal(0, 3), 0),
                    "creatinine": round(base["creatinine"] * drift + rng.normal(0, 5), 0),
                    "inr": round(base["inr"] * drift + rng.normal(0, 0.05), 2),
                    "albumin": round(base["albumin"] + rng.normal(0, 1), 0)}
            for a, x in vals.items():
                rows.append([pid, "S01", arms[i], v["code"], day, day, a, float(x), _UNITS[a],
                             "measured"])
            rows.append([pid, "S01", arms[i], v["code"], day, day, "meld_kamath2001",
                         _meld(vals["bilirubin"], vals["creatinine"], vals["inr"]), "points",
                         "derived"])
    ds = pd.DataFrame(rows, columns=_DS_COLS).sort_values(
        ["participant_id", "nominal_day", "visit", "analyte"], kind="mergesort").reset_index(
        drop=True)
    ppl = pd.DataFrame(ppl_rows)
    aes: list[_s.AdverseEventRecord] = []
    deaths: list[_s.Death] = []
    portal = [i for i, r in enumerate(routes) if r == "portal_vein" and arms[i] != "control"]
    treated = [i for i in range(n) if arms[i] != "control"]

    details: list[dict[str, Any]] = []

    def ae(k: int, i: int, term: str, grade: int, day: int, *, serious: bool = False,
           prod: str = "not_related", proc: str = "not_related", procedure: str | None = None,
           outcome: str | None = "recovered", criteria: str = "",
           lasts: int | None = 2) -> None:
        onset = enrol[i] + _dt.timedelta(days=day)
        if onset <= as_of:
            aes.append(_s.AdverseEventRecord(f"AE-{k:03d}", ids[i], term, grade, serious, prod,
                                             proc, onset, outcome=outcome, procedure=procedure))
            end = None if lasts is None else onset + _dt.timedelta(days=lasts)
            details.append({"id": f"AE-{k:03d}", "seriousness_criteria": criteria,
                            "resolution_date": end})

    if state in ("aes_no_sae", "triggered", "death") and dosed:
        for k, i in enumerate(treated[:2]):
            ae(1 + k, i, "Fever", 1, 0, prod="possible")
        ae(3, portal[0], "Abdominal pain", 1, 1, proc="probable",
           procedure="portal_vein_injection")
        ae(4, treated[1 % len(treated)], "Hypoalbuminemia", 2, 40, outcome="not_recovered",
           lasts=None)
    if state == "triggered" and dosed:
        i = 2 if arms[2] != "control" else portal[0]
        ae(5, i, "Portal vein thrombosis", 3, 9, serious=True, prod="unlikely",
           proc="probable", procedure="portal_vein_injection", outcome="recovering",
           criteria="hospitalisation", lasts=None)
    if state == "death" and death_of is not None:
        i = ids.index(death_of)
        when = enrol[i] + _dt.timedelta(days=death_day)
        if when <= as_of:
            ae(6, i, "Hepatic failure", 5, death_day, serious=True, outcome="fatal",
               criteria="death;hospitalisation", lasts=0)
            deaths.append(_s.Death(death_of, when))
    labs = safety_labs_frame(ds, ppl, ["meld_kamath2001"])
    safety = _s.SafetyData(adverse_events=tuple(aes), administrations=tuple(admins),
                           labs=_s.SafetyData.from_frames(labs=labs).labs,
                           deaths=tuple(deaths))
    frame = pd.DataFrame(details, columns=["id", "seriousness_criteria", "resolution_date"])
    return Scenario(state, TrialData(ds, ppl, _ae_table(aes, enrol, ids), ps), safety,
                    protocol, as_of, ae_details=frame)


def _ae_table(aes: list[_s.AdverseEventRecord], enrol: list[_dt.date],
              ids: list[str]) -> pd.DataFrame:
    """The bundle's adverse-event table (docs/contracts.md §3) of the same events."""
    rank = {c: k for k, c in enumerate(("not_related", "unlikely", "possible", "probable",
                                        "definite"))}
    d0 = dict(zip(ids, enrol, strict=True))
    rows = [[a.participant_id, a.term, a.grade, a.serious,
             max(a.related_product, a.related_procedure, key=rank.__getitem__),
             (a.onset - d0[a.participant_id]).days, pd.NA, a.outcome] for a in aes]
    return pd.DataFrame(rows, columns=_AE_COLS)


def demo_safety_data(data: TrialData, protocol: Any = None) -> _s.SafetyData:
    """The demo cohort's safety records: one administration per participant on the
    enrolment day (day 0, the infusion) by the participant's route, the lab values the
    protocol's lab-rise rules read, no adverse events, deaths or decisions."""
    protocol = protocol or load_protocol("kharaziha2009")
    ppl = data.participants
    admins = tuple(
        _s.Administration(f"ADM-{p}", str(p), _dt.date.fromisoformat(str(d)[:10]), str(r))
        for p, d, r in zip(ppl["participant_id"], ppl["enrolment_date"], ppl["route"],
                           strict=True)
        if pd.notna(d) and str(r) not in ("", "NA", "nan"))
    analytes = [r.analyte for r in (protocol.safety.stopping_rules if protocol.safety else ())
                if isinstance(r, _s.LabRiseRule)]
    labs = safety_labs_frame(data.dataset, ppl, analytes)
    return _s.SafetyData(administrations=admins,
                         labs=_s.SafetyData.from_frames(labs=labs).labs)
