"""The DSMB's reports: an open report (pooled data) and a closed report (by arm).

:func:`write_dsmb_report` takes the analysis bundle (``TrialData``, docs/contracts.md §4), the
safety records the stopping rules read (:class:`hepatrial.protocol.safety.SafetyData`) and the
protocol, cuts everything at the data-cut date, evaluates the protocol's stopping rules
(:func:`~hepatrial.protocol.safety.evaluate_stopping_rules`) and their operating
characteristics (:func:`~hepatrial.protocol.safety.plan_operating_characteristics`), and writes

* ``<stem>_open.html`` / ``.docx`` and ``<stem>_closed.html`` / ``.docx``, every table of each
  as ``<stem>_<session>_<table id>.csv`` and an index ``<stem>_<session>_tables.csv``
  (:mod:`hepatrial.report.table` conventions: UTF-8 with BOM).

**Open report** (the DSMB's open session; the sponsor and investigators may see it):
stopping-rule status with the evaluator's reasons, the rules' operating characteristics,
enrolment over time, exposure (administrations, cells, cells/kg, route), visit completeness,
adverse events by system organ class and term (participants n (%), events, maximum grade per
participant, serious, related to the product and to a procedure, days from infusion to
onset), the SAE listing with expectedness against the reference safety information and
SUSAR assessment, deaths, DSMB decisions, and the Kaplan–Meier time to the first related
adverse event — all pooled over arms. **Closed report** (closed session, DSMB members only):
the same by arm for a randomised trial; a single-arm trial has nothing to unmask, and the
closed report says so and gives the open tables.

Definitions: *related* = relatedness possible, probable or definite (a suspected adverse
reaction, ICH E2A §II.A.2) to the cell product or to a trial procedure, each judged
separately; grades CTCAE v5.0; *time from infusion* = onset date − date of the participant's
first administration; denominators: enrolled participants (exposure and time-to-event:
participants who received the product). Records are cut as the evaluator cuts them: adverse
events with onset on or before the cut date and recorded (``recorded_at``) by the end of that
day in the trial's time zone; administrations, deaths and labs dated on or before it;
decisions made by then.

Reproducibility and provenance as the main report: the software version, the protocol's
content hash, SHA-256 of the inputs (analysis dataset as CSV — the main report's hash —,
participants table as CSV, safety records as canonical JSON) and the data-cut date are printed;
the same inputs give the same bytes in every file except the run-time line of the HTML and
the Word document. Tables follow :mod:`hepatrial.report.format` (clinical labels, display
units, true minus signs); the evaluator's reasons are shown with analyte and visit codes
replaced by their labels.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import html as _html
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hepatrial import vocab as _vocab
from hepatrial.analysis import TrialData
from hepatrial.analysis.dsmb_data import (
    enrolment_by_month,
    time_to_first_event,
    visit_status,
)
from hepatrial.analysis.safety import NOT_CODED, ae_by_soc_term
from hepatrial.analysis.survival import KaplanMeier, cumulative_incidence, kaplan_meier
from hepatrial.errors import InputError
from hepatrial.protocol import analytes as _an
from hepatrial.protocol import safety as _s
from hepatrial.report.analyze import dataset_hash
from hepatrial.report.format import (
    DASH,
    fmt_mean_sd,
    fmt_n_pct,
    fmt_num,
    fmt_pct,
    visit_label,
    visit_word,
)
from hepatrial.report.table import Notes, Table, to_csv, to_html

__all__ = ["DEFAULT_OC_RATES", "Dsmb", "DsmbInputError", "build_dsmb", "dsmb_tables",
           "write_dsmb_report"]

#: true rates of participants with a related SAE at which the operating characteristics
#: are shown
DEFAULT_OC_RATES = (0.05, 0.10, 0.20, 0.30, 0.40, 0.50)
SESSIONS = ("open", "closed")
_RANK = {c: i for i, c in enumerate(_vocab.codes(_vocab.RELATEDNESS))}
_REL_LABEL = {c: lab[:1].upper() + lab[1:] for c, lab in _vocab.RELATEDNESS}
_OUTCOME_LABEL = {c: lab[:1].upper() + lab[1:] for c, lab in _vocab.AE_OUTCOME}
_ROUTE_LABEL = {"peripheral_vein": "Peripheral vein", "portal_vein": "Portal vein",
                "hepatic_artery": "Hepatic artery"}
_STATUS_ROWS = (("enrolled", "In follow-up"), ("completed", "Completed follow-up"),
                ("withdrawn", "Withdrawn"), ("transplanted", "Transplanted"),
                ("died", "Died"))
_RELATED = "Related: relatedness possible, probable or definite (judged separately for the " \
           "cell product and for a trial procedure)."


class DsmbInputError(InputError):
    """The DSMB report's inputs disagree or cannot be used (names the record and reason)."""


# ============================================================================ inputs, cut
@dataclass
class Dsmb:
    """Everything the DSMB reports show, as of the data cut (built by :func:`build_dsmb`)."""

    as_of: _dt.date
    cut: _dt.datetime
    time_zone: str
    data: TrialData  # the bundle as of the cut
    protocol: Any
    status: _s.SafetyStatus | None
    oc: dict[str, Any]
    aes: pd.DataFrame
    administrations: pd.DataFrame
    deaths: pd.DataFrame
    decisions: pd.DataFrame
    enrolled: pd.DataFrame
    ttfe: pd.DataFrame
    hashes: dict[str, str]
    synthetic_label: str | None = None
    codes: dict[str, str] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, Any]:
        """The protocol summary of the bundle."""
        return self.data.protocol_summary or {}

    @property
    def randomised(self) -> bool:
        """More than one arm in the protocol."""
        return len(self.summary.get("arms") or []) > 1 or str(
            self.summary.get("design")) == "randomised"

    def groups(self, session: str) -> list[tuple[str, list[str]]]:
        """(column label, participant ids) of the session: overall in the open report, each
        arm and overall in the closed report of a randomised trial."""
        ids = sorted(self.enrolled["participant_id"].astype(str))
        overall = [("Overall", ids)]
        if session == "open" or not self.randomised:
            return overall
        out = []
        arm = dict(zip(self.enrolled["participant_id"].astype(str),
                       self.enrolled["arm"].astype(str), strict=True))
        for a in self.summary.get("arms") or []:
            out.append((str(a.get("label") or a["code"]), [p for p in ids if arm[p] == a["code"]]))
        known = {str(a["code"]) for a in self.summary.get("arms") or []}
        for a in sorted({arm[p] for p in ids} - known):
            out.append((a, [p for p in ids if arm[p] == a]))
        return out + overall


def _canonical(records: Iterable[Any]) -> list[dict[str, Any]]:
    def conv(v: Any) -> Any:
        if isinstance(v, _dt.datetime | _dt.date):
            return v.isoformat()
        return v
    return [{k: conv(v) for k, v in asdict(r).items()} for r in records]


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _input_hashes(data: TrialData, safety: _s.SafetyData) -> dict[str, str]:
    recs = {name: _canonical(getattr(safety, name)) for name in
            ("adverse_events", "administrations", "labs", "decisions", "deaths")}
    js = json.dumps(recs, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return {"dataset": dataset_hash(data.dataset),
            "participants": _sha(data.participants.to_csv(index=False, lineterminator="\n")
                                 .encode("utf-8")),
            "safety": _sha(js.encode("utf-8"))}


def _day_start(d: _dt.date, tz: Any) -> _dt.datetime:
    return _dt.datetime.combine(d, _dt.time(), tzinfo=tz).astimezone(_dt.UTC)


def _first_dose(adm: pd.DataFrame) -> dict[str, _dt.date]:
    out: dict[str, _dt.date] = {}
    for p, d in zip(adm["participant_id"], adm["date"], strict=True):
        if p not in out or d < out[p]:
            out[p] = d
    return out


def _ae_frame(aes: Sequence[_s.AdverseEventRecord], first: dict[str, _dt.date],
              plan: Any) -> pd.DataFrame:
    cols = ["id", "participant_id", "term", "soc", "grade", "serious", "related_product",
            "related_procedure", "related", "onset", "outcome", "procedure", "days",
            "expectedness", "susar"]
    rows = []
    for a in aes:
        rel = max(a.related_product, a.related_procedure, key=_RANK.__getitem__)
        d0 = first.get(a.participant_id)
        days = float((a.onset - d0).days) if d0 is not None and a.onset >= d0 else np.nan
        exp, susar = _expectedness(plan, a)
        rows.append([a.id, a.participant_id, a.term, a.soc if a.coded else None, a.grade,
                     a.serious, a.related_product, a.related_procedure, rel, a.onset,
                     a.outcome, a.procedure, days, exp, susar])
    df = pd.DataFrame(rows, columns=cols)
    if df.empty:
        return df.astype({"grade": "int64", "serious": bool, "days": float})
    return df.sort_values(["participant_id", "onset", "id"], kind="mergesort").reset_index(
        drop=True)


def _expectedness(plan: Any, a: _s.AdverseEventRecord,
                  sponsor: str | None = None) -> tuple[str, bool]:
    """(expectedness text, SUSAR) of one event against the reference safety information;
    ``sponsor``: the sponsor's assessment for the product attribution, which then decides
    (ICH E2A III.A: expectedness is the sponsor's judgement)."""
    prod = _s.is_suspected(a.related_product)
    proc = _s.is_suspected(a.related_procedure)
    if not (prod or proc):
        return "Not applicable (not related)", False
    parts = []
    susar = False
    for ok, who in ((prod, "product"), (proc, "procedure")):
        if not ok:
            continue
        if who == "product" and sponsor is not None:
            e, by = sponsor, "product, sponsor's assessment"
        elif plan is None:
            parts.append(f"Not assessed ({who}: no reference safety information)")
            continue
        elif not a.coded:
            parts.append(f"Not assessable ({who}: term not coded)")
            continue
        else:
            e, by = _s.expectedness(plan, a.term, a.grade, who), who  # type: ignore[arg-type]
        parts.append(f"{e[:1].upper() + e[1:]} ({by})")
        if who == "product":
            susar = _s.is_susar(a.serious, a.related_product, e)
    return "; ".join(parts), susar


def _check_bundle_events(data: TrialData, aes: Sequence[_s.AdverseEventRecord]) -> None:
    """The bundle's adverse-event table and the safety records must list the same events
    (counted per participant): the report reads the safety records only."""
    ae = data.adverse_events
    if ae is None or ae.empty:
        return
    a = ae["participant_id"].astype(str).value_counts()
    b = pd.Series([x.participant_id for x in aes], dtype=object).value_counts()
    for pid in sorted(set(a.index) | set(b.index)):
        if int(a.get(pid, 0)) != int(b.get(pid, 0)):
            raise DsmbInputError(
                f"participant {pid}: the bundle's adverse-event table has {int(a.get(pid, 0))} "
                f"event(s), the safety records {int(b.get(pid, 0))}: give both from the same "
                "store state")


_CRITERIA = {c: ("Life-threatening" if c == "life_threatening" else
                 c.replace("_", " ").capitalize()) for c in
             _vocab.codes(_vocab.SERIOUSNESS_CRITERIA)}


def _with_details(frame: pd.DataFrame, details: pd.DataFrame | None, safety: _s.SafetyData,
                  as_of: _dt.date, plan: Any = None) -> pd.DataFrame:
    """``frame`` with the columns ``criteria`` (labels, ``; ``-joined) and ``resolved``
    (date or None) from ``details``, and the expectedness and SUSAR of the events whose
    details carry the sponsor's ``expectedness``; unchanged without details."""
    if details is None:
        return frame
    if "id" not in details.columns:
        raise DsmbInputError("ae_details: the column 'id' (the adverse event's id) is missing")
    known = {a.id: a for a in safety.adverse_events}
    crit: dict[str, str] = {}
    res: dict[str, _dt.date | None] = {}
    sponsor: dict[str, str] = {}
    for i, r in enumerate(details.to_dict("records")):
        aid = str(r["id"])
        if aid not in known:
            raise DsmbInputError(f"ae_details row {i}: id {aid!r} is not an adverse event of "
                                 "the safety records")
        c = r.get("seriousness_criteria")
        if isinstance(c, str):
            codes = [x.strip() for x in re.split(r"[;,]", c) if x.strip()]
        elif isinstance(c, list | tuple):
            codes = [str(x) for x in c]
        else:
            codes = []
        bad = [x for x in codes if x not in _CRITERIA]
        if bad:
            raise DsmbInputError(f"ae_details row {i} (adverse event {aid}): seriousness "
                                 f"criterion {bad[0]!r} is not one of {', '.join(_CRITERIA)}")
        crit[aid] = "; ".join(_CRITERIA[x] for x in codes)
        d = r.get("resolution_date")
        day = None if d is None or (not isinstance(d, _dt.date) and pd.isna(d)) else \
            pd.Timestamp(d).date()
        if day is not None and day < known[aid].onset:
            raise DsmbInputError(f"ae_details row {i} (adverse event {aid}): resolution_date "
                                 f"{day} is before the onset {known[aid].onset}")
        res[aid] = day if day is not None and day <= as_of else None
        e = r.get("expectedness")
        if e is not None and not (isinstance(e, float) and pd.isna(e)) and e is not pd.NA \
                and str(e) != "":
            if e not in _vocab.codes(_vocab.EXPECTEDNESS):
                raise DsmbInputError(f"ae_details row {i} (adverse event {aid}): expectedness "
                                     f"{e!r} is not one of "
                                     f"{', '.join(_vocab.codes(_vocab.EXPECTEDNESS))}")
            sponsor[aid] = str(e)
    out = frame.copy()
    out["criteria"] = [crit.get(x, "") for x in out["id"]] if len(out) else []
    out["resolved"] = [res.get(x) for x in out["id"]] if len(out) else []
    for k, aid in enumerate(out["id"]):
        if aid in sponsor:
            text, susar = _expectedness(plan, known[aid], sponsor[aid])
            out.loc[out.index[k], ["expectedness", "susar"]] = [text, susar]
    return out


def _check_administrations(data: TrialData,
                           admins: Sequence[_s.Administration]) -> None:
    """The participants table's ``n_administrations`` (when it has the column) must count the
    administration records."""
    ppl = data.participants
    if "n_administrations" not in ppl.columns:
        return
    counts = pd.Series([a.participant_id for a in admins], dtype=object).value_counts()
    for pid, n in zip(ppl["participant_id"].astype(str), ppl["n_administrations"], strict=True):
        if pd.notna(n) and int(n) != int(counts.get(pid, 0)):
            raise DsmbInputError(
                f"participant {pid}: the participants table counts {int(n)} administration(s), "
                f"the safety records {int(counts.get(pid, 0))}: give both from the same store "
                "state")


def build_dsmb(data: TrialData, safety: _s.SafetyData, protocol: Any, *, as_of: _dt.date,
               oc_rates: Sequence[float] = DEFAULT_OC_RATES,
               synthetic_label: str | None = None,
               ae_details: pd.DataFrame | None = None) -> Dsmb:
    """Cut the inputs at ``as_of`` (a date), evaluate the stopping rules and their operating
    characteristics, and prepare every frame the reports show.

    ``ae_details`` (optional): one row per adverse event with ``id`` (the safety record's id)
    and any of ``seriousness_criteria`` (ICH E2A codes of
    :data:`hepatrial.vocab.SERIOUSNESS_CRITERIA`, a list or a ``;``/``,``-separated string)
    and ``resolution_date``; the SAE listing then shows them (a resolution after the cut is
    not known at the cut); an optional ``expectedness`` (``expected``/``unexpected``: the
    sponsor's assessment) replaces the reference-safety-information assessment of the
    product attribution, for the listing and the SUSAR count.

    Raises :class:`DsmbInputError` when the inputs disagree: the bundle's protocol is not
    ``protocol`` (content hash), an administration, event or death names a participant the
    participants table does not have, the participants table counts other administrations
    than the records, or the bundle's adverse-event table other events.
    """
    if isinstance(as_of, _dt.datetime) or not isinstance(as_of, _dt.date):
        raise DsmbInputError(f"as_of {as_of!r}: the data cut is a date")
    if not isinstance(safety, _s.SafetyData):
        raise DsmbInputError("safety: a hepatrial.protocol.safety.SafetyData "
                             "(SafetyData.from_frames builds one from data frames)")
    data.validate()
    summary = protocol.summary_dict()
    h_given = (data.protocol_summary or {}).get("content_hash")
    if h_given and h_given != summary["content_hash"]:
        raise DsmbInputError(f"the bundle was exported under protocol content hash {h_given}, "
                             f"the protocol given has {summary['content_hash']}")
    plan = getattr(protocol, "safety", None)
    tz_name = plan.reporting.time_zone if plan is not None else "UTC"
    tz = plan.reporting.tz if plan is not None else _dt.UTC
    cut = _day_start(as_of + _dt.timedelta(days=1), tz) - _dt.timedelta(microseconds=1)
    hashes = _input_hashes(data, safety)
    ppl_all = set(data.participants["participant_id"].astype(str))
    for name in ("adverse_events", "administrations", "deaths"):
        for r in getattr(safety, name):
            if r.participant_id not in ppl_all:
                what = getattr(r, "id", r.participant_id)
                raise DsmbInputError(f"{name} {what!r}: participant {r.participant_id!r} is not "
                                     "in the participants table")
    _check_bundle_events(data, safety.adverse_events)
    _check_administrations(data, safety.administrations)
    td = data.as_of(as_of)
    td = TrialData(td.dataset, td.participants, td.adverse_events,
                   dict(data.protocol_summary or {}) or summary)
    ppl = td.participants
    enrolled = ppl[~ppl["status"].astype(str).isin(["screened", "screen_failed"])].copy()
    enrolled["participant_id"] = enrolled["participant_id"].astype(str)
    kept = set(enrolled["participant_id"])
    # the cut, as the evaluator makes it
    aes = [a for a in safety.adverse_events if a.onset <= as_of
           and (a.recorded_at is None or a.recorded_at <= cut)]
    outside = [a for a in aes if a.participant_id not in kept]
    if outside:
        a = outside[0]
        raise DsmbInputError(f"adverse event {a.id!r}: participant {a.participant_id} is not "
                             f"enrolled by {as_of} (onset {a.onset})")
    adm = pd.DataFrame([(a.id, a.participant_id, a.date, a.route)
                        for a in safety.administrations if a.date <= as_of],
                       columns=["id", "participant_id", "date", "route"])
    bad = adm[~adm["participant_id"].isin(kept)]
    if len(bad):
        r = bad.iloc[0]
        raise DsmbInputError(f"administration {r['id']!r}: participant {r['participant_id']} "
                             f"is not enrolled by {as_of}")
    first = _first_dose(adm)
    deaths = pd.DataFrame([(d.participant_id, d.date) for d in safety.deaths
                           if d.date <= as_of], columns=["participant_id", "date"])
    decisions = pd.DataFrame([(d.id, d.rule_id, d.decided_at, d.decision, d.reason)
                              for d in safety.decisions if d.decided_at <= cut],
                             columns=["id", "rule_id", "decided_at", "decision", "reason"])
    status = None
    oc: dict[str, Any] = {}
    if plan is not None:
        status = _s.evaluate_stopping_rules(protocol, safety, as_of)
        rates = [float(r) for r in oc_rates]
        oc = {"rates": rates, "sets": _s.plan_operating_characteristics(plan, rates),
              "bayes": [r for r in plan.stopping_rules if isinstance(r, _s.BayesianRule)]}
    frame = _with_details(_ae_frame(aes, first, plan), ae_details, safety, as_of, plan)
    if ae_details is not None:
        hashes["ae_details"] = _sha(ae_details.to_csv(index=False, lineterminator="\n")
                                    .encode("utf-8"))
    rel = frame[frame["related"].isin(_vocab.RELATED_CODES)] if len(frame) else frame
    ttfe = time_to_first_event(
        enrolled[["participant_id", "status", "status_date"]],
        pd.DataFrame({"participant_id": list(first), "origin": list(first.values())}),
        pd.DataFrame({"participant_id": rel["participant_id"] if len(rel) else [],
                      "date": rel["onset"] if len(rel) else []}),
        as_of=as_of, deaths=deaths)
    codes = _code_labels(summary, plan)
    return Dsmb(as_of, cut, tz_name, td, protocol, status, oc, frame, adm, deaths, decisions,
                enrolled, ttfe, hashes, synthetic_label, codes)


def _code_labels(summary: dict[str, Any], plan: Any) -> dict[str, str]:
    """Analyte and visit codes of the evaluator's texts → clinical labels."""
    out: dict[str, str] = {}
    labels = {str(v["code"]): str(v.get("label") or v["code"]) for v in summary.get("visits")
              or []}
    base = summary.get("baseline_visit")
    for code in labels:
        out[code] = visit_word(code, labels, baseline=base)
    analytes = {r.analyte for r in (plan.stopping_rules if plan is not None else ())
                if isinstance(r, _s.LabRiseRule)}
    for o in summary.get("outcomes") or []:
        analytes.add(str(o["analyte"]))
    for a in analytes:
        if a in _an.SCORES:
            out[a] = _an.SCORES[a].label
        elif a in _an.ANALYTES:
            out[a] = _an.ANALYTES[a].label
    return out


def clinical_text(text: str, codes: dict[str, str]) -> str:
    """An evaluator's reason with codes replaced by labels and ASCII operators by symbols
    (``>=`` → ``≥``, ``->`` → ``→``, a hyphen before a number → ``−``)."""
    for code in sorted(codes, key=len, reverse=True):
        text = re.sub(rf"(?<![\w-]){re.escape(code)}(?![\w-])", codes[code], text)
    text = text.replace("->", "→").replace(">=", "≥").replace("<=", "≤")
    return re.sub(r"(?<![\w\-])-(?=\d)", "−", text)


# ============================================================================ helpers
def _date(d: Any) -> str:
    if d is None or (not isinstance(d, _dt.date) and pd.isna(d)):
        return DASH
    return pd.Timestamp(d).date().isoformat()


def _local_date(t: _dt.datetime | None, tz: str) -> str:
    if t is None:
        return DASH
    from zoneinfo import ZoneInfo

    return t.astimezone(ZoneInfo(tz)).date().isoformat()


def _median_range(x: pd.Series, d: int) -> str:
    v = pd.to_numeric(x, errors="coerce").dropna().to_numpy(dtype=float)
    if not v.size:
        return DASH
    return f"{fmt_num(np.median(v), d)} ({fmt_num(v.min(), d)}, {fmt_num(v.max(), d)})"


def _ids(ds: Dsmb, pids: list[str]) -> pd.DataFrame:
    return ds.enrolled[ds.enrolled["participant_id"].isin(pids)]


def _spanned(groups: list[tuple[str, list[str]]], sub: list[str]
             ) -> tuple[list[str], list[tuple[str, int, int]]]:
    """Columns and spanners for per-group sub-columns (one group: no spanner)."""
    if len(groups) == 1:
        return list(sub), []
    cols, spans = [], []
    for label, pids in groups:
        a = len(cols)
        cols += list(sub)
        spans.append((f"{label}, N = {len(pids)}", a, a + len(sub) - 1))
    return cols, spans


# ============================================================================ tables
def rules_table(ds: Dsmb) -> Table | None:
    """Stopping-rule status: each rule's text, status, since when, and the evaluator's
    reasons."""
    st = ds.status
    if st is None:
        return None
    t = Table("stopping_rules", "Stopping rules: status at the data cut", "Rule",
              ["Status", "Since", "Evaluation"])
    for r in st.rules:
        if r.paused:
            state = ("Dosing gate closed" if r.kind == "sentinel"
                     else "Triggered: enrolment and dosing paused")
        elif r.triggered and r.resume is not None:
            state = ("Triggered; resumed by the DSMB on "
                     f"{_local_date(r.resume.decided_at, ds.time_zone)}")
        elif r.triggered:
            state = "Triggered"
        else:
            state = "Not triggered"
        reasons = [clinical_text(x, ds.codes) for x in r.reasons]
        dev = (r.details or {}).get("interval_deviations") if r.kind == "sentinel" else None
        if dev:
            reasons.append("intervals shorter than the minimum: " + "; ".join(dev))
        if r.undetermined:
            reasons.append("Not assessable: " + "; ".join(clinical_text(x, ds.codes)
                                                          for x in r.undetermined))
        ev = "; ".join(reasons)
        t.add(f"{clinical_text(r.text, ds.codes)} ({r.rule_id})",
              [state, _local_date(r.since, ds.time_zone), ev[:1].upper() + ev[1:] or DASH])
    t.notes = [f"Evaluated on the data known by the end of {ds.as_of.isoformat()} "
               f"({ds.time_zone}). A triggered rule pauses enrolment and dosing until a "
               "signed DSMB decision resumes it; the dosing-interval rule restricts dosing "
               "only.", _RELATED]
    if st.uncoded_events:
        t.notes.append("Adverse events with a term not coded to CTCAE v5.0 (they match no "
                       "term criterion): " + "; ".join(st.uncoded_events) + ".")
    return t


def oc_table(ds: Dsmb) -> Table | None:
    """Operating characteristics of the protocol's stopping rules for true rates of
    participants with a related SAE: P(pause) and the expected number treated, for each
    Bayesian rule alone and for the whole rule set."""
    if not ds.oc or "all" not in ds.oc["sets"]:
        return None
    plan = ds.protocol.safety
    sets = ds.oc["sets"]
    keys = [k for k in sets if k.startswith("bayesian:")] + ["all"]
    cols, spans = [], []
    for k in keys:
        a = len(cols)
        cols += ["P(pause)", "Expected number treated"]
        label = (f"Bayesian rule {k.split(':', 1)[1]} alone" if k != "all"
                 else "All stopping rules")
        spans.append((label, a, a + 1))
    t = Table("operating_characteristics", "Operating characteristics of the stopping rules",
              "True rate of participants with a related SAE", cols, spanners=spans)
    for i, p in enumerate(ds.oc["rates"]):
        cells = []
        for k in keys:
            o = sets[k][i]
            cells += [fmt_num(o.prob_stop, 3), fmt_num(o.expected_treated, 2)]
        t.add(f"{100 * p:g}%", cells)
    mons = _s.plan_monitors(plan)
    others = sorted({m.name for m in mons if m.event != "related_sae"})
    first = [m.name for m in mons if m.event == "related_sae" and set(m.boundary) == {1}]
    t.notes = [f"Exact (dynamic programming over the event counts) for {plan.planned_treated} "
               "participants treated one after another, each one's events known before the "
               "next is treated, the same rate for every participant"
               + (f"; the events of the other rules ({', '.join(others)}) at rate 0" if others
                  else "") + ". The dosing-interval rule pauses nothing and has no operating "
               "characteristics.",
               "Related SAE: a serious adverse event at least possibly related to the cell "
               "product or to a procedure."
               + (f" {', '.join(first)} pauses at the first such event, so the whole set "
                  f"pauses with probability 1 − (1 − rate)^{plan.planned_treated}."
                  if first else "")]
    return t


def boundary_table(ds: Dsmb) -> Table | None:
    """The Bayesian rules' stopping boundaries: participants with the event that pause,
    after n treated."""
    if not ds.oc or not ds.oc["bayes"]:
        return None
    plan = ds.protocol.safety
    n = plan.planned_treated
    t = Table("bayesian_boundary", "Bayesian monitoring: participants with a related SAE "
              "that pause the trial", "Rule", [str(k) for k in range(1, n + 1)],
              spanners=[("Participants treated", 0, n - 1)])
    for r in ds.oc["bayes"]:
        b = r.boundary(n)
        t.add(r.id, [(f"≥ {x}" if x <= k else DASH) for k, x in enumerate(b, start=1)])
    t.notes = [f"{r.id}: pause when P(rate > {r.theta:g} | data) > {r.threshold:g}, prior "
               f"Beta({r.prior_a:g}, {r.prior_b:g}) (Thall & Simon, Biometrics "
               "1994;50:337-349); "
               "—: no number of events can pause." for r in ds.oc["bayes"]]
    return t


def decisions_table(ds: Dsmb) -> Table | None:
    """DSMB decisions recorded by the cut."""
    if ds.decisions.empty:
        return None
    labels = {c: lab[:1].upper() + lab[1:] for c, lab in _vocab.DSMB_DECISION}
    t = Table("dsmb_decisions", "DSMB decisions on the stopping rules", "Date",
              ["Rule", "Decision", "Reason"])
    d = ds.decisions.sort_values(["decided_at", "id"], kind="mergesort")
    for r in d.itertuples(index=False):
        t.add(_local_date(r.decided_at, ds.time_zone),
              [str(r.rule_id), labels.get(r.decision, r.decision), str(r.reason)])
    return t


def enrolment_table(ds: Dsmb, session: str) -> Table:
    """Screening, enrolment, treatment and the participants' status at the cut."""
    groups = ds.groups(session)
    ppl = ds.data.participants
    t = Table("enrolment", "Enrolment and participant status at the data cut", "Participants",
              [f"{g}, N = {len(p)}" for g, p in groups])
    status = ppl["status"].astype(str)
    overall_only = [("Screened", len(ppl)), ("Screen failure", int((status == "screen_failed")
                                                                    .sum())),
                    ("Still in screening", int((status == "screened").sum()))]
    for label, n in overall_only:
        t.add(label, [("" if g != "Overall" else str(n)) for g, _ in groups])
    dosed = set(ds.administrations["participant_id"])
    t.add("Enrolled", [str(len(p)) for _, p in groups])
    t.add("Received the cell product", [fmt_n_pct(len(dosed & set(p)), len(p)) for _, p in groups])
    t.add("Status at the data cut", heading=True)
    for code, label in _STATUS_ROWS:
        cells = []
        for _, p in groups:
            sub = _ids(ds, p)
            cells.append(fmt_n_pct(int((sub["status"].astype(str) == code).sum()), len(p)))
        t.add(label, cells, indent=1)
    d = pd.to_datetime(ds.enrolled["enrolment_date"], errors="coerce")
    period = (f"{_date(d.min())} to {_date(d.max())}" if d.notna().any() else DASH)
    t.add("Enrolment period", ["" if g != "Overall" else period for g, _ in groups])
    t.notes = ["Percentages of the enrolled participants of the column. Screening counts are "
               "not by arm (arms are allocated at enrolment)."
               if len(groups) > 1 else "Percentages of the enrolled participants."]
    return t


def enrolment_month_table(ds: Dsmb, session: str) -> Table | None:
    """Enrolments per calendar month and cumulative (per arm in the closed report)."""
    groups = ds.groups(session)
    per = [(g, enrolment_by_month(_ids(ds, p), as_of=ds.as_of)) for g, p in groups]
    months = per[-1][1]["month"].tolist()
    if not months:
        return None
    cols, spans = _spanned(groups, ["Enrolled", "Cumulative"])
    t = Table("enrolment_by_month", "Enrolment by month", "Month", cols, spanners=spans)
    for m in months:
        cells = []
        for _, f in per:
            row = f[f["month"] == m]
            prev = f[f["month"] < m]
            n = int(row["enrolled"].iloc[0]) if len(row) else 0
            c = (int(row["cumulative"].iloc[0]) if len(row)
                 else int(prev["cumulative"].iloc[-1]) if len(prev) else 0)
            cells += [str(n), str(c)]
        t.add(m, cells)
    return t


def exposure_table(ds: Dsmb, session: str) -> Table:
    """Exposure to the cell product: participants dosed, administrations per participant,
    route of each administration, cells, cells per kg and volume."""
    groups = ds.groups(session)
    adm = ds.administrations
    t = Table("exposure", "Exposure to the cell product", "Characteristic",
              [f"{g}, N = {len(p)}" for g, p in groups])
    dosed = {g: sorted(set(adm["participant_id"]) & set(p)) for g, p in groups}
    t.add("Received the cell product, n (%)",
          [fmt_n_pct(len(dosed[g]), len(p)) for g, p in groups])
    counts = adm["participant_id"].value_counts()
    levels = sorted({int(counts[p]) for p in counts.index})
    if levels:
        t.add("Administrations per participant, n (%)", heading=True)
        for k in levels:
            t.add(str(k), [fmt_n_pct(sum(1 for p in dosed[g] if int(counts.get(p, 0)) == k),
                                     len(dosed[g])) for g, _ in groups], indent=1)
        t.add("Administrations by route, n (%)", heading=True)
        routes = [r for r in _ROUTE_LABEL if (adm["route"] == r).any()]
        for r in routes:
            cells = []
            for g, _ in groups:
                sub = adm[adm["participant_id"].isin(dosed[g])]
                cells.append(fmt_n_pct(int((sub["route"] == r).sum()), len(sub)))
            t.add(_ROUTE_LABEL[r], cells, indent=1)
    enr = ds.enrolled.set_index("participant_id").copy()
    later: list[str] = []
    if "n_administrations" in enr.columns:  # totals that include an administration after the cut
        n_all = pd.to_numeric(enr["n_administrations"], errors="coerce")
        later = sorted(p for p in enr.index if pd.notna(n_all[p])
                       and int(n_all[p]) > int(counts.get(p, 0)) and int(counts.get(p, 0)))
        for col in ("cells_total", "cells_per_kg", "volume_ml"):
            if col in enr.columns:
                enr.loc[later, col] = np.nan
    for col, label, scale, d in (("cells_total", "Cells per participant, ×10⁶", 1e6, 1),
                                 ("cells_per_kg", "Cells per kg, ×10⁶/kg", 1e6, 2),
                                 ("volume_ml", "Volume infused, mL", 1.0, 1)):
        if col not in enr.columns or not any(dosed.values()):
            continue
        vals = {g: pd.to_numeric(enr[col].reindex(dosed[g]), errors="coerce") / scale
                for g, _ in groups}
        if not any(v.notna().any() for v in vals.values()):
            continue
        t.add(label, heading=True)
        t.add("Mean ± SD", [_mean_sd(vals[g], d) for g, _ in groups], indent=1)
        t.add("Median (min, max)", [_median_range(vals[g], d) for g, _ in groups], indent=1)
        if any(v.isna().any() for v in vals.values()):
            t.add("Unknown", [str(int(vals[g].isna().sum())) for g, _ in groups], indent=1)
    t.notes = ["Percentages: of the enrolled participants (received), of the participants who "
               "received the product (administrations per participant) and of the "
               "administrations (route). Cells, cells per kg and volume: totals over each "
               "participant's administrations, among those who received the product; "
               "Unknown: not recorded (cells per kg: a weight missing)."]
    if later:
        t.notes.append(f"Unknown also: {', '.join(later)}, whose recorded totals include an "
                       "administration after the data cut.")
    return t


def _mean_sd(x: pd.Series, d: int) -> str:
    v = x.dropna().to_numpy(dtype=float)
    if not v.size:
        return DASH
    sd = float(np.std(v, ddof=1)) if v.size > 1 else float("nan")
    return fmt_mean_sd(float(v.mean()), sd, d)


def completeness_table(ds: Dsmb, session: str) -> Table | None:
    """Visit completeness: per scheduled visit from baseline on, the visits due, attended,
    missing (with the reasons) and not yet due at the cut."""
    visits = [v for v in ds.summary.get("visits") or []]
    base = ds.summary.get("baseline_visit")
    codes = [str(v["code"]) for v in visits]
    if base in codes:
        visits = visits[codes.index(base):]
    if not visits or ds.enrolled.empty:
        return None
    groups = ds.groups(session)
    vs = visit_status(ds.data.dataset, ds.enrolled, visits, as_of=ds.as_of)
    cols, spans = _spanned(groups, ["Due", "Attended, n (%)", "Missing", "Not yet due"])
    labels = {str(v["code"]): str(v.get("label") or v["code"]) for v in visits}
    t = Table("visit_completeness", "Visit completeness at the data cut", "Visit", cols,
              spanners=spans)
    reasons_seen: set[str] = set()
    for v in visits:
        code = str(v["code"])
        cells = []
        for _, p in groups:
            sub = vs[(vs["visit"] == code) & vs["participant_id"].isin(p)]
            att = int((sub["status"] == "attended").sum())
            pend = int((sub["status"] == "not yet due").sum())
            miss = sub[~sub["status"].isin(["attended", "not yet due"])]
            due = att + len(miss)
            rs = miss["status"].value_counts().sort_index()
            reasons_seen |= set(rs.index)
            mtxt = str(len(miss)) + (" (" + ", ".join(f"{k} {int(n)}" for k, n in rs.items())
                                     + ")" if len(miss) else "")
            cells += [str(due), fmt_n_pct(att, due) if due else "0", mtxt, str(pend)]
        t.add(visit_label(code, labels, baseline=base), cells)
    t.notes = ["Due: the visit's window had closed by the data cut, or the visit was attended; "
               "not yet due: the window closes after the cut (not counted as missing). "
               "Attended: at least one value recorded at the visit. Missing reasons: the "
               "participant died, was transplanted or withdrew; missed otherwise."]
    return t


_OVERVIEW_ROWS = (
    ("Any adverse event", lambda f: pd.Series(True, index=f.index)),
    ("Serious adverse event", lambda f: f["serious"].astype(bool)),
    ("Related to the cell product", lambda f: f["related_product"].isin(_vocab.RELATED_CODES)),
    ("Related to a procedure", lambda f: f["related_procedure"].isin(_vocab.RELATED_CODES)),
    ("Serious and related", lambda f: f["serious"].astype(bool)
     & f["related"].isin(_vocab.RELATED_CODES)),
    ("Suspected unexpected serious adverse reaction (SUSAR)", lambda f: f["susar"].astype(bool)),
    ("Grade 3 or higher", lambda f: f["grade"] >= 3),
    ("Grade 5 (fatal)", lambda f: f["grade"] == 5),
)


def ae_overview_table(ds: Dsmb, session: str) -> Table:
    """Participants with at least one event n (%) and events, per category; deaths from any
    cause."""
    groups = ds.groups(session)
    cols, spans = _spanned(groups, ["Participants, n (%)", "Events"])
    if len(groups) == 1:
        cols = [f"Participants, n (%), N = {len(groups[0][1])}", "Events"]
    t = Table("ae_overview", "Adverse events: overview", "Category", cols, spanners=spans)
    f = ds.aes
    for label, pick in _OVERVIEW_ROWS:
        cells = []
        for _, p in groups:
            sub = f[f["participant_id"].isin(p)] if len(f) else f
            m = pick(sub) if len(sub) else pd.Series(dtype=bool)
            sel = sub[m.to_numpy(dtype=bool)] if len(sub) else sub
            cells += [fmt_n_pct(int(sel["participant_id"].nunique()) if len(sel) else 0, len(p)),
                      str(len(sel))]
        t.add(label, cells)
    dead = set(ds.deaths["participant_id"]) | set(
        ds.enrolled.loc[ds.enrolled["status"].astype(str) == "died", "participant_id"])
    died: list[str] = []
    for _, p in groups:
        died += [fmt_n_pct(len(dead & set(p)), len(p)), ""]
    t.add("Died, any cause", died)
    t.notes = [_RELATED, "SUSAR: serious, at least possibly related to the cell product and "
               "unexpected against the protocol's reference safety information. CTCAE v5.0 "
               "grades; N: enrolled participants."]
    return t


def _soc_records(f: pd.DataFrame, ppl: pd.DataFrame, related: str | None) -> pd.DataFrame:
    g = f if related is None else f.assign(related=f[related])
    return ae_by_soc_term(g[["participant_id", "term", "soc", "grade", "serious", "related",
                             "days"]], participants=ppl, onset="days")


def ae_soc_table(ds: Dsmb, session: str) -> Table | None:
    """Adverse events by system organ class and term. One group (the open report): the
    participants n (%), events, participants by maximum grade, serious, related to the
    product, related to a procedure and days from infusion to onset. Several groups (arms):
    participants n (%), events, serious and related per arm."""
    f = ds.aes
    if f.empty:
        return None
    groups = ds.groups(session)
    notes = Notes()
    m_rel = notes.mark(_RELATED)
    m_max = notes.mark("Each participant is counted once per row, at the highest CTCAE v5.0 "
                       "grade of their events in that row.")
    m_days = notes.mark("Days from the participant's first administration of the cell product "
                        "to onset, median (min, max), over the events with onset on or after "
                        "it.")
    overall = _soc_records(f, _ids(ds, groups[-1][1]), None)
    key = list(zip(overall["level"], overall["soc"], overall["term"], strict=True))
    if len(groups) == 1:
        n = len(groups[0][1])
        prod = _soc_records(f, _ids(ds, groups[0][1]), "related_product")
        proc = _soc_records(f, _ids(ds, groups[0][1]), "related_procedure")
        grades = [g for g in range(1, 6) if int(overall.iloc[0][f"max_grade_{g}"]) > 0]
        cols = [f"Participants, n (%), N = {n}", "Events", *[f"Grade {g}" for g in grades],
                "Serious, n (%)", f"Related to the product, n (%){m_rel}",
                f"Related to a procedure, n (%){m_rel}", f"Days from infusion{m_days}"]
        spans = ([(f"Participants by maximum grade{m_max}", 2, 1 + len(grades))]
                 if grades else [])
        t = Table("ae_by_soc", "Adverse events by system organ class and term",
                  "System organ class and term", cols, spanners=spans)
        for i, r in enumerate(overall.to_dict("records")):
            cells = [fmt_n_pct(int(r["n_participants"]), n), str(int(r["n_events"])),
                     *[str(int(r[f"max_grade_{g}"])) for g in grades],
                     fmt_n_pct(int(r["n_serious"]), n),
                     fmt_n_pct(int(prod.iloc[i]["n_related"]), n),
                     fmt_n_pct(int(proc.iloc[i]["n_related"]), n), _onset(r)]
            _soc_row(t, r, cells)
    else:
        cols, spans = _spanned(groups, ["n (%)", "Events", "Serious", f"Related{m_rel}"])
        t = Table("ae_by_soc", "Adverse events by system organ class and term, by arm",
                  "System organ class and term", cols, spanners=spans)
        per = []
        for _, p in groups:
            sub = f[f["participant_id"].isin(p)]
            recs = _soc_records(sub, _ids(ds, p), None) if len(sub) else None
            per.append({} if recs is None else {
                (r["level"], r["soc"], r["term"]): r for r in recs.to_dict("records")})
        for k, r in zip(key, overall.to_dict("records"), strict=True):
            cells = []
            for (_, p), d in zip(groups, per, strict=True):
                x = d.get(k)
                n = len(p)
                cells += ([fmt_n_pct(int(x["n_participants"]), n), str(int(x["n_events"])),
                           fmt_n_pct(int(x["n_serious"]), n), fmt_n_pct(int(x["n_related"]), n)]
                          if x else [fmt_n_pct(0, n), "0", fmt_n_pct(0, n), fmt_n_pct(0, n)])
            _soc_row(t, r, cells)
        t.notes = notes.lines()[:1]
        t.notes.append("Participants with at least one event n (%) of the enrolled "
                       "participants of the arm; serious, related: participants.")
        return t
    t.notes = notes.lines()
    if (overall["soc"] == NOT_CODED).any():
        t.notes.append("Not coded: terms not in CTCAE v5.0, as recorded.")
    t.notes.append(f"N: {len(groups[0][1])} enrolled participants.")
    return t


def _soc_row(t: Table, r: dict[str, Any], cells: list[str]) -> None:
    if r["level"] == "any":
        t.add("Any adverse event", cells)
    elif r["level"] == "soc":
        t.add(str(r["soc"]), cells)
    else:
        t.add(str(r["term"]), cells, indent=1)


def _onset(r: dict[str, Any]) -> str:
    med = r.get("onset_median")
    if med is None or pd.isna(med):
        return DASH
    d = 0 if float(med).is_integer() else 1
    return f"{fmt_num(med, d)} ({fmt_num(r['onset_min'], 0)}, {fmt_num(r['onset_max'], 0)})"


def sae_listing(ds: Dsmb, session: str) -> Table | None:
    """Every serious adverse event (and every grade-5 event): participant, event, grade,
    onset, relatedness, expectedness, SUSAR, outcome."""
    f = ds.aes
    if f.empty:
        return None
    sae = f[f["serious"].astype(bool) | (f["grade"] == 5)]
    if sae.empty:
        return None
    by_arm = session == "closed" and ds.randomised
    arm = dict(zip(ds.enrolled["participant_id"], ds.enrolled["arm"].astype(str), strict=True))
    labels = {str(a["code"]): str(a.get("label") or a["code"])
              for a in ds.summary.get("arms") or []}
    crit = "criteria" in sae.columns
    cols = (["Arm"] if by_arm else []) + [
        "Event", "Term", "Grade", *(["Seriousness"] if crit else []),
        "Onset (day after infusion)", "Related to the product", "Related to a procedure",
        "Expectedness", "SUSAR", "Outcome", *(["Resolved"] if crit else [])]
    t = Table("sae_listing", "Serious adverse events: listing", "Participant", cols)
    for r in sae.sort_values(["participant_id", "onset", "id"], kind="mergesort").itertuples():
        proc = _REL_LABEL[r.related_procedure] + (
            f" ({_procedure_label(r.procedure)})"
            if r.procedure and _s.is_suspected(r.related_procedure) else "")
        cells = ([labels.get(arm[r.participant_id], arm[r.participant_id])] if by_arm else []) + [
            str(r.id), str(r.term) if r.soc else f"{r.term} (not coded)", str(int(r.grade)),
            *([r.criteria or "Not recorded"] if crit else []),
            _date(r.onset) + ("" if pd.isna(r.days) else f" (day {fmt_num(r.days, 0)})"),
            _REL_LABEL[r.related_product], proc, str(r.expectedness),
            "Yes" if r.susar else "No",
            _OUTCOME_LABEL.get(r.outcome, "Not yet known") if r.outcome else "Not yet known",
            *([_date(r.resolved) if r.resolved else "Not yet"] if crit else [])]
        t.add(str(r.participant_id), cells)
    t.notes = ["Serious: meets an ICH E2A seriousness criterion; grade-5 events are listed "
               "whether or not recorded as serious. Expectedness against the protocol's "
               "reference safety information, for the attribution judged at least possibly "
               "related. Day after infusion: from the participant's first administration (none "
               "shown before it, or when not dosed). Terms: CTCAE v5.0, with their system organ "
               "classes in the adverse-event table. Outcome as known at the data cut."]
    return t


def _procedure_label(code: str) -> str:
    lab = dict(_vocab.SAFETY_PROCEDURE).get(code, code)
    return re.sub(r"\s*\([^)]*\)\s*$", "", lab)


def deaths_table(ds: Dsmb, session: str) -> Table | None:
    """Deaths by the cut: date, days from infusion and the fatal adverse event, if any."""
    dead = dict(zip(ds.deaths["participant_id"], ds.deaths["date"], strict=True))
    st = ds.enrolled[ds.enrolled["status"].astype(str) == "died"]
    for p, d in zip(st["participant_id"], st["status_date"], strict=True):
        dead.setdefault(p, pd.Timestamp(d).date() if pd.notna(d) else None)
    if not dead:
        return None
    by_arm = session == "closed" and ds.randomised
    arm = dict(zip(ds.enrolled["participant_id"], ds.enrolled["arm"].astype(str), strict=True))
    first = _first_dose(ds.administrations)
    t = Table("deaths", "Deaths", "Participant",
              (["Arm"] if by_arm else []) + ["Date", "Days from infusion", "Fatal adverse event"])
    for p in sorted(dead):
        d = dead[p]
        f = ds.aes[(ds.aes["participant_id"] == p) & (ds.aes["grade"] == 5)] if len(ds.aes) \
            else ds.aes
        days = (str((d - first[p]).days) if d is not None and p in first else DASH)
        cause = "; ".join(f["term"].astype(str)) if len(f) else "None recorded"
        t.add(str(p), ([arm.get(p, "")] if by_arm else []) + [_date(d), days, cause])
    return t


def km_summary_table(ds: Dsmb, session: str) -> Table | None:
    """Time to the first related adverse event: participants, events, censoring, competing
    deaths, median and the event-free proportions at landmark days."""
    groups = ds.groups(session)
    tt = ds.ttfe
    if tt.empty:
        return None
    t = Table("ttfe_summary", "Time to the first related adverse event after infusion",
              "Statistic", [f"{g}, n = {int(tt['participant_id'].isin(p).sum())}"
                            for g, p in groups])
    kms = [(g, tt[tt["participant_id"].isin(p)]) for g, p in groups]
    fits = [kaplan_meier(sub["time"], sub["status"] == 1) for _, sub in kms]
    t.add("Participants who received the product", [str(len(sub)) for _, sub in kms])
    t.add("With a related adverse event", [fmt_n_pct(int((s["status"] == 1).sum()), len(s))
                                           for _, s in kms])
    t.add("Died before a related adverse event", [str(int((s["status"] == 2).sum()))
                                                   for _, s in kms])
    t.add("Censored", [str(int((s["status"] == 0).sum())) for _, s in kms])
    reasons = [r for r in ("data cut", "completed", "withdrawn", "transplanted")
               if (tt["reason"] == r).any()]
    label = {"data cut": "At the data cut (in follow-up)", "completed": "Completed follow-up",
             "withdrawn": "Withdrawn", "transplanted": "Transplanted"}
    for r in reasons:
        t.add(label[r], [str(int((s["reason"] == r).sum())) for _, s in kms], indent=1)
    t.add("Follow-up, days, median (min, max)", [_median_range(s["follow_up"], 0)
                                                 for _, s in kms])
    t.add("Median time to event, days (95% CI)", [_km_median(k) for k in fits])
    days = _landmarks(ds)
    deaths = int((tt["status"] == 2).sum())
    for d in days:
        t.add(f"Free of a related adverse event at day {d}, % (95% CI)",
              [_km_at(k, d) for k in fits])
        if deaths:
            t.add(f"Cumulative incidence at day {d}, death competing, %",
                  [_aj_at(s, d) for _, s in kms], indent=1)
    t.notes = ["From the first administration of the cell product to the onset of the first "
               "adverse event at least possibly related to the product or a procedure; "
               "censored at the end of follow-up (the data cut, or completed, withdrawn, "
               "transplanted); death before such an event is a competing event and ends the "
               "time at risk. Kaplan–Meier estimates (Kaplan & Meier 1958) with Greenwood "
               "standard errors and log-transformed 95% CIs (R survival's default); the median "
               "as R survival computes it; —: not estimable (no event, or not reached).",
               "With deaths, 1 − Kaplan–Meier (deaths censored) over-estimates the incidence of "
               "related events; the Aalen–Johansen cumulative incidence treats death as a "
               "competing event." if deaths else
               "No death before a related event: the Kaplan–Meier estimate needs no "
               "competing-risk correction."]
    before = int(tt["events_before_origin"].sum())
    if before:
        t.notes.append(f"{before} related adverse event(s) with onset before the first "
                       "administration (e.g. after marrow aspiration) are not counted here.")
    return t


def _landmarks(ds: Dsmb) -> list[int]:
    days = [7, 28]
    visits = ds.summary.get("visits") or []
    last = max((int(v.get("nominal_day") or 0) for v in visits), default=0)
    if last > 28:
        days.append(last)
    return days


def _km_at(k: KaplanMeier, d: int) -> str:
    if k.n == 0 or (k.max_time < d and k.surv_at(d) > 0):
        return DASH
    tab = k.table[k.table["time"] <= d]
    if tab.empty:
        return "100"
    r = tab.iloc[-1]
    s = fmt_num(100 * r["surv"], 0)
    if pd.isna(r["lower"]):
        return s
    return f"{s} ({fmt_num(100 * r['lower'], 0)}, {fmt_num(100 * r['upper'], 0)})"


def _aj_at(sub: pd.DataFrame, d: int) -> str:
    if sub.empty or sub["time"].max() < d:
        return DASH
    ci = cumulative_incidence(sub["time"], sub["status"], ["event", "death"])
    x = ci[ci["time"] <= d]
    return fmt_num(100 * (float(x["event"].iloc[-1]) if len(x) else 0.0), 0)


def _km_median(k: KaplanMeier) -> str:
    if k.events == 0 or pd.isna(k.median):
        return "Not reached" if k.n else DASH
    lo = DASH if pd.isna(k.median_lower) else fmt_num(k.median_lower, 0)
    hi = DASH if pd.isna(k.median_upper) else fmt_num(k.median_upper, 0)
    return f"{fmt_num(k.median, 0)} ({lo}, {hi})"


def km_table(ds: Dsmb, session: str) -> Table | None:
    """The Kaplan–Meier estimate at each event time (per arm in the closed report)."""
    tt = ds.ttfe
    if tt.empty or not (tt["status"] == 1).any():
        return None
    groups = ds.groups(session)
    t = Table("ttfe_km", "Kaplan–Meier estimate of the time to the first related adverse "
              "event", "Days after infusion", ["At risk", "Events",
                                               "Free of a related adverse event, % (95% CI)"])
    for g, p in groups:
        sub = tt[tt["participant_id"].isin(p)]
        k = kaplan_meier(sub["time"], sub["status"] == 1)
        if len(groups) > 1:
            t.add(g, heading=True)
        if k.table.empty:
            t.add("No participant treated" if k.n == 0 else "No event", ["", "", ""],
                  indent=1 if len(groups) > 1 else 0)
        for r in k.table.to_dict("records"):
            ci = ("" if pd.isna(r["lower"]) else
                  f" ({fmt_num(100 * r['lower'], 0)}, {fmt_num(100 * r['upper'], 0)})")
            t.add(fmt_num(r["time"], 0), [str(int(r["n_risk"])), str(int(r["n_event"])),
                                          fmt_num(100 * r["surv"], 0) + ci],
                  indent=1 if len(groups) > 1 else 0)
    t.notes = ["At each day with an event: participants at risk, first related events, and the "
               "Kaplan–Meier estimate with its log-transformed 95% CI."]
    return t


def dsmb_tables(ds: Dsmb, session: str) -> list[Table]:
    """The tables of one report (``"open"`` or ``"closed"``), in order, numbered."""
    if session not in SESSIONS:
        raise DsmbInputError(f"session {session!r} is not one of {', '.join(SESSIONS)}")
    tabs = [rules_table(ds), oc_table(ds), boundary_table(ds), decisions_table(ds),
            enrolment_table(ds, session), enrolment_month_table(ds, session),
            exposure_table(ds, session), completeness_table(ds, session),
            ae_overview_table(ds, session), ae_soc_table(ds, session), sae_listing(ds, session),
            deaths_table(ds, session), km_summary_table(ds, session), km_table(ds, session)]
    out = [x for x in tabs if x is not None]
    for i, x in enumerate(out, start=1):
        x.number = str(i)
    return out


# ============================================================================ text
def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def rules_sentence(ds: Dsmb) -> str:
    """``No stopping rule triggered.`` or the triggered rules with their state; then the
    dosing-interval gate when it is closed (a routine wait, not a stopping rule)."""
    st = ds.status
    if st is None:
        return "The protocol declares no stopping rules."
    trig = [r for r in st.rules if r.triggered and r.kind != "sentinel"]
    parts = []
    for r in trig:
        state = (f"pauses enrolment and dosing since {_local_date(r.since, ds.time_zone)}"
                 if r.paused else "triggered and resumed by the DSMB")
        text = clinical_text(r.text, ds.codes)
        parts.append(f"{r.rule_id} ({text[:1].lower() + text[1:]}) {state}")
    out = (f"{_plural(len(trig), 'stopping rule')} triggered: " + "; ".join(parts) + "."
           if trig else "No stopping rule triggered.")
    for r in st.rules:
        if r.kind == "sentinel" and r.paused:
            why = "; ".join(clinical_text(x, ds.codes) for x in r.reasons)
            out += f" Dosing gate {r.rule_id} closed: {why}."
    return out


def km_sentence(ds: Dsmb) -> str:
    """The time-to-first-related-AE result in one sentence."""
    tt = ds.ttfe
    if tt.empty:
        return "No participant has received the cell product yet."
    n = len(tt)
    ev = int((tt["status"] == 1).sum())
    if ev == 0:
        dead = int((tt["status"] == 2).sum())
        cens = tt[tt["status"] == 0]
        lo, hi = int(cens["time"].min()) if len(cens) else 0, int(cens["time"].max()) if len(
            cens) else 0
        span = f"day {lo}" if lo == hi else f"days {lo} to {hi}"
        why = sorted(set(cens["reason"]))
        txt = (f"No related adverse event: all {n} participants who received the product "
               f"censored, at {span} after infusion ({', '.join(why)})"
               if not dead else
               f"No related adverse event: {n - dead} participants censored at {span} after "
               f"infusion, {dead} died before any")
        return txt + "."
    k = kaplan_meier(tt["time"], tt["status"] == 1)
    return (f"{ev} of {n} participants who received the product had a related adverse event, "
            f"at days {', '.join(str(int(x)) for x in sorted(tt.loc[tt['status'] == 1, 'time']))}"
            f" after infusion; median time {_km_median(k).lower()} days."
            if not pd.isna(k.median) else
            f"{ev} of {n} participants who received the product had a related adverse event, "
            f"at days {', '.join(str(int(x)) for x in sorted(tt.loc[tt['status'] == 1, 'time']))}"
            " after infusion; the median time is not reached.")


def summary_text(ds: Dsmb) -> str:
    """The report's summary paragraph."""
    enr = len(ds.enrolled)
    dosed = ds.administrations["participant_id"].nunique()
    f = ds.aes
    parts = [f"Data cut {ds.as_of.isoformat()}: {_plural(enr, 'participant')} enrolled, "
             f"{dosed} received the cell product "
             f"({_plural(len(ds.administrations), 'administration')})."]
    if f.empty:
        parts.append("No adverse events were recorded.")
    else:
        k = f["participant_id"].nunique()
        sae = f[f["serious"].astype(bool)]
        rel = f[f["related"].isin(_vocab.RELATED_CODES)]
        parts.append(f"{_plural(len(f), 'adverse event')} in {k} of {enr} participants "
                     f"({fmt_pct(k, enr)}%), {len(rel)} at least possibly related; "
                     + (f"{_plural(len(sae), 'serious adverse event')} in "
                        f"{_plural(sae['participant_id'].nunique(), 'participant')}."
                        if len(sae) else "no serious adverse event."))
    if len(ds.deaths):
        parts.append(f"{_plural(ds.deaths['participant_id'].nunique(), 'participant')} died.")
    parts.append(rules_sentence(ds))
    parts.append(km_sentence(ds))
    return " ".join(parts)


def methods_text(ds: Dsmb, session: str) -> str:
    """What the report contains and how it was computed."""
    s = ["Records known by the end of the data-cut day in the trial's time zone "
         f"({ds.time_zone}) are included: adverse events by onset and recording, "
         "administrations, visits and deaths by date."]
    if session == "open":
        s.append("Open report: all data pooled over arms; for the DSMB's open session.")
    elif ds.randomised:
        s.append("Closed report: every table by arm; for the DSMB's closed session only.")
    else:
        s.append("Closed report of a single-arm trial: there is no allocation to mask, so the "
                 "closed report gives the open report's tables.")
    s.append("Adverse events are coded with CTCAE v5.0 terms, system organ classes and "
             "grades; an event is related when its relatedness to the cell product or to a "
             "trial procedure is possible, probable or definite (each judged separately). "
             "Expectedness is assessed against the protocol's reference safety information; a "
             "SUSAR is serious, related to the product and unexpected (ICH E2A).")
    s.append("The protocol's stopping rules were evaluated on the records at the cut by the "
             "same function that pauses dosing; their operating characteristics are exact "
             "(beta-binomial monitoring, Thall & Simon 1994; dynamic programming over the "
             "event counts).")
    s.append("Time to the first related adverse event: Kaplan–Meier from the first "
             "administration, censored at the end of follow-up, death a competing event "
             "(Aalen–Johansen cumulative incidence shown when deaths occur).")
    s.append("Numbers are rounded half away from zero; negative numbers carry a true minus "
             "sign; percentages as gtsummary.")
    return " ".join(s)


# ============================================================================ figures
def _km_figure(ds: Dsmb, session: str, out: str) -> Any:
    from matplotlib.figure import Figure

    from hepatrial.report import figures as _f

    tt = ds.ttfe
    if tt.empty:
        return None
    groups = ds.groups(session)
    if len(groups) > 1:
        groups = groups[:-1]
    import matplotlib as mpl

    with mpl.rc_context(_f._RC):
        fig = Figure(figsize=(6.4, 3.2))
        ax = fig.subplots()
        tmax = float(tt["time"].max()) or 1.0
        for j, (g, p) in enumerate(groups):
            sub = tt[tt["participant_id"].isin(p)]
            if sub.empty:
                continue
            k = kaplan_meier(sub["time"], sub["status"] == 1)
            x = [0.0, *k.table["time"].tolist(), max(tmax, k.max_time)]
            y = [1.0, *k.table["surv"].tolist()]
            y.append(y[-1])
            color = _f._COLORS[j % len(_f._COLORS)]
            ax.step(x, [100 * v for v in y], where="post", color=color, lw=1.5,
                    label=g if len(groups) > 1 else None)
            ct = sub.loc[sub["status"] != 1, "time"].to_numpy(dtype=float)
            ax.plot(ct, [100 * k.surv_at(c) for c in ct], "|", color=color, ms=9, mew=1.2)
        ax.set_ylim(-2, 103)
        ax.set_xlim(0, tmax * 1.03)
        ax.set_xlabel("Days after infusion")
        ax.set_ylabel("Free of a related AE, %")
        if len(groups) > 1:
            ax.legend(fontsize=7, frameon=False)
        fig.tight_layout()
    return _f._close_after(fig, "svg", "Kaplan–Meier estimate of the time to the first related "
                           "adverse event", out)


def _enrolment_figure(ds: Dsmb, session: str, out: str) -> Any:
    from matplotlib.figure import Figure

    from hepatrial.report import figures as _f

    if ds.enrolled.empty:
        return None
    groups = ds.groups(session)
    import matplotlib as mpl

    with mpl.rc_context(_f._RC):
        fig = Figure(figsize=(6.4, 2.8))
        ax = fig.subplots()
        cut = pd.Timestamp(ds.as_of)
        first = _first_dose(ds.administrations)
        for j, (g, p) in enumerate(groups):
            d = sorted(pd.to_datetime(_ids(ds, p)["enrolment_date"]).dropna())
            if not d:
                continue
            color = _f._COLORS[j % len(_f._COLORS)]
            ax.step([d[0], *d, cut], [0, *range(1, len(d) + 1), len(d)], where="post",
                    color=color, lw=1.5, label=f"{g}: enrolled")
            if len(groups) == 1:
                dd = sorted(pd.Timestamp(first[x]) for x in p if x in first)
                if dd:
                    ax.step([dd[0], *dd, cut], [0, *range(1, len(dd) + 1), len(dd)],
                            where="post", color=color, lw=1.0, ls="--",
                            label=f"{g}: received the product")
        ax.set_ylabel("Participants")
        ax.set_xlabel("Date")
        ax.legend(fontsize=7, frameon=False, loc="upper left")
        fig.autofmt_xdate()
        fig.tight_layout()
    return _f._close_after(fig, "svg", "Cumulative enrolment over time", out)


def dsmb_figures(ds: Dsmb, session: str, out: str = "html") -> dict[str, Any]:
    """``enrolment`` and ``km`` figures (None when there is nothing to draw) as inline HTML
    or PNG bytes."""
    return {"enrolment": _enrolment_figure(ds, session, out), "km": _km_figure(ds, session, out)}


# ============================================================================ documents
_SECTIONS = (
    ("Stopping rules", ["text:rules", "stopping_rules", "dsmb_decisions",
                        "operating_characteristics", "bayesian_boundary"]),
    ("Enrolment", ["enrolment", "figure:enrolment", "enrolment_by_month"]),
    ("Exposure", ["exposure"]),
    ("Visit completeness", ["visit_completeness"]),
    ("Adverse events", ["text:no_events", "ae_overview", "ae_by_soc"]),
    ("Serious adverse events and deaths", ["text:no_sae", "sae_listing", "deaths"]),
    ("Time to the first related adverse event", ["text:km", "ttfe_summary", "figure:km",
                                                 "ttfe_km"]),
)
_FIG_TITLES = {"enrolment": "Figure 1. Cumulative enrolment",
               "km": "Figure 2. Time to the first related adverse event (Kaplan–Meier)"}


def _paragraphs(ds: Dsmb) -> dict[str, str]:
    p = {"text:rules": rules_sentence(ds), "text:km": km_sentence(ds)}
    if ds.aes.empty:
        p["text:no_events"] = "No adverse events were recorded by the data cut."
    if ds.aes.empty or not (ds.aes["serious"].astype(bool) | (ds.aes["grade"] == 5)).any():
        p["text:no_sae"] = "No serious adverse events were recorded by the data cut."
    return p


def _title(ds: Dsmb, session: str) -> str:
    name = ds.summary.get("title") or ds.summary.get("name") or "Trial"
    return (f"DSMB report, {'open' if session == 'open' else 'closed'} session: {name}")


def _provenance(ds: Dsmb) -> list[tuple[str, str]]:
    from hepatrial import __version__

    s = ds.protocol.summary_dict()
    return [("Software", f"hepatrial {__version__}"),
            ("Protocol", f"{s.get('name')} v{s.get('version')}, content hash "
                         f"{s.get('content_hash')}"),
            ("Data cut", f"{ds.as_of.isoformat()} (end of day, {ds.time_zone})"),
            ("Input data", f"SHA-256 of the analysis dataset (CSV) {ds.hashes['dataset']}; "
                           f"of the participants table (CSV) {ds.hashes['participants']}; of "
                           f"the safety records (JSON) {ds.hashes['safety']}"
                           + (f"; of the adverse-event details (CSV) {ds.hashes['ae_details']}"
                              if "ae_details" in ds.hashes else ""))]


def _banner(ds: Dsmb, session: str) -> str:
    if session == "closed":
        return ("CONFIDENTIAL: for the members of the DSMB in closed session only"
                + ("" if ds.randomised else " (single-arm trial: no allocation is unmasked)")
                + ".")
    return "Open session: pooled data, for the DSMB, the sponsor and the investigators."


def build_html(ds: Dsmb, session: str, tables: list[Table], *, run_time: str) -> str:
    """One self-contained HTML page of a report."""
    import jinja2

    figs = dsmb_figures(ds, session, out="html")
    by_id = {t.id: to_html(t) for t in tables}
    paras = _paragraphs(ds)
    sections = []
    for heading, items in _SECTIONS:
        parts = []
        for i in items:
            if i in paras:
                parts.append(f'<p class="{i.replace(":", "-")}">{_html.escape(paras[i])}</p>')
            elif i.startswith("figure:"):
                key = i.split(":", 1)[1]
                if figs.get(key):
                    parts.append(f"<h3>{_html.escape(_FIG_TITLES[key])}</h3>\n{figs[key]}")
            elif i in by_id:
                parts.append(by_id[i])
        if parts:
            sections.append({"heading": heading, "body": "\n".join(parts)})
    text = resources.files("hepatrial.report").joinpath("templates/dsmb.html.j2").read_text(
        encoding="utf-8")
    env = jinja2.Environment(autoescape=False, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    return env.from_string(text).render(
        title=_html.escape(_title(ds, session)), session=session,
        banner=_html.escape(_banner(ds, session)),
        synthetic_label=_html.escape(ds.synthetic_label or ""),
        protocol_line=_html.escape(_protocol_line(ds)),
        summary=_html.escape(summary_text(ds)), methods=_html.escape(methods_text(ds, session)),
        sections=sections,
        provenance=[(_html.escape(k), _html.escape(v)) for k, v in _provenance(ds)],
        run_time=_html.escape(run_time))


def _protocol_line(ds: Dsmb) -> str:
    s = ds.summary
    return (f"Protocol {s.get('name')} v{s.get('version')} ({s.get('registration')}). "
            f"{s.get('reference') or ''}").strip()


def build_word(ds: Dsmb, session: str, tables: list[Table], *, run_time: str) -> bytes:
    """The Word version of a report (same text, tables and figures as the HTML)."""
    from docx import Document
    from docx.oxml.ns import qn
    from docx.shared import Cm, Pt, RGBColor

    from hepatrial.report import word as _w

    figs = dsmb_figures(ds, session, out="png")
    doc = Document()
    st = doc.styles["Normal"]
    st.font.name = "Calibri"
    st.font.size = Pt(10)
    sec = doc.sections[0]
    sec.page_width, sec.page_height = Cm(21.0), Cm(29.7)
    for side in ("left_margin", "right_margin"):
        setattr(sec, side, Cm(2.0))
    cp = doc.core_properties
    cp.title = _title(ds, session)
    cp.author = "hepatrial"
    cp.comments = "generated by hepatrial"
    for tag in ("dcterms:created", "dcterms:modified"):
        el = cp._element.find(qn(tag))
        if el is not None:
            cp._element.remove(el)
    if ds.synthetic_label:
        r = doc.add_paragraph().add_run(ds.synthetic_label)
        r.bold = True
        r.font.color.rgb = RGBColor(0x8A, 0x5A, 0x00)
    r = doc.add_paragraph().add_run(_banner(ds, session))
    r.bold = True
    doc.add_heading(_title(ds, session), level=1)
    doc.add_paragraph(_protocol_line(ds))
    doc.add_heading("Summary", level=2)
    doc.add_paragraph(summary_text(ds))
    doc.add_heading("Methods", level=2)
    doc.add_paragraph(methods_text(ds, session))
    by_id = {t.id: t for t in tables}
    paras = _paragraphs(ds)
    for heading, items in _SECTIONS:
        present = [i for i in items if i in by_id or i in paras or (
            i.startswith("figure:") and figs.get(i.split(":", 1)[1]))]
        if not present:
            continue
        # one page orientation per section where possible: landscape from the heading on when
        # the section's first table is wide, landscape later only for a wide table; back to
        # portrait at the next section whose first table is not wide (no empty pages)
        first = next((by_id[i] for i in present if i in by_id), None)
        _w._landscape(doc, first is not None and _w._is_wide(first))
        doc.add_heading(heading, level=2)
        for i in present:
            if i in paras:
                doc.add_paragraph(paras[i])
            elif i.startswith("figure:"):
                key = i.split(":", 1)[1]
                _w._figure(doc, figs[key], _FIG_TITLES[key])
            else:
                t = by_id[i]
                if _w._is_wide(t):
                    _w._landscape(doc, True)
                landscape = doc.sections[-1].page_width > doc.sections[-1].page_height
                avail = 25.7 if landscape else 17.0
                _w.add_table(doc, t, avail)
                _w._set_widths(doc.tables[-1], _word_widths(t, avail))
    _w._landscape(doc, False)
    doc.add_heading("Provenance", level=2)
    for k, v in _provenance(ds):
        p = doc.add_paragraph()
        p.paragraph_format.space_after = Pt(0)
        p.add_run(f"{k}: ").bold = True
        p.add_run(v)
    doc.add_paragraph(f"Run time: {run_time}")
    buf = io.BytesIO()
    doc.save(buf)
    return _w._deterministic(buf.getvalue())


def dsmb_json(ds: Dsmb) -> dict[str, Any]:
    """The report's key results, JSON-ready (``<stem>_results.json``): provenance, the
    stopping-rule status as :meth:`SafetyStatus.as_dict` gives it, counts, the time to the
    first related adverse event per participant and its Kaplan–Meier estimate."""
    from hepatrial.report.analyze import jsonable

    tt = ds.ttfe
    km = kaplan_meier(tt["time"], tt["status"] == 1)
    f = ds.aes
    return jsonable({
        "as_of": ds.as_of.isoformat(), "time_zone": ds.time_zone,
        "protocol": {k: ds.protocol.summary_dict().get(k)
                     for k in ("name", "version", "content_hash")},
        "input_sha256": dict(ds.hashes),
        "summary": summary_text(ds),
        "enrolled": len(ds.enrolled),
        "treated": int(ds.administrations["participant_id"].nunique()),
        "administrations": len(ds.administrations),
        "adverse_events": len(f),
        "serious_adverse_events": int(f["serious"].astype(bool).sum()) if len(f) else 0,
        "deaths": int(ds.deaths["participant_id"].nunique()),
        "stopping_rules": ds.status.as_dict() if ds.status is not None else None,
        "time_to_first_related_ae": {
            "participants": [{**r, "origin": _date(r["origin"]), "end": _date(r["end"])}
                             for r in tt.to_dict("records")],
            "kaplan_meier": km.as_dict()},
    })


_CM_PER_CHAR = 0.18  # 8.5 pt text, bold headers
_CM_PADDING = 0.45  # Word's default cell margins (0.19 cm each side) and a little air


def _word_widths(t: Table, avail_cm: float) -> list[float]:
    """Word column widths (cm) that break no word and no short value: each column gets at
    least its longest word of a header (bold) or a cell, or its longest cell of up to 12
    characters ("1 (25%)", a date); the rest of the text width goes to the columns with long
    text, in proportion to what they lack for one line."""
    def unbreakable(cells: list[str], header: str) -> float:
        w = [len(x) * _CM_PER_CHAR for x in cells if len(x) <= 12]
        w += [len(p) * _CM_PER_CHAR for x in cells for p in x.split()]
        w += [len(p) * _CM_PER_CHAR * 1.3 for p in header.split()]
        return max(w, default=_CM_PER_CHAR) + _CM_PADDING

    def one_line(cells: list[str]) -> float:
        return max((len(x) for x in cells), default=1) * _CM_PER_CHAR + _CM_PADDING

    stub = [("  " * r.indent) + r.label for r in t.rows]
    cols = [[r.cells[j] for r in t.rows] for j in range(len(t.columns))]
    mins = [unbreakable([], " ".join([*stub, t.stub]))] + [
        unbreakable(c, h) for c, h in zip(cols, t.columns, strict=True)]
    wants = [max(one_line(stub), mins[0])] + [
        max(one_line(c), m) for c, m in zip(cols, mins[1:], strict=True)]
    total_min = sum(mins)
    if total_min >= avail_cm:
        return [m * avail_cm / total_min for m in mins]
    extra = avail_cm - total_min
    lack = [w - m for w, m in zip(wants, mins, strict=True)]
    if sum(lack) <= extra:
        spare = avail_cm - sum(wants)
        return [w + spare * w / sum(wants) for w in wants]
    return [m + extra * k / sum(lack) for m, k in zip(mins, lack, strict=True)]


def _index(tables: list[Table], stem: str) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["table", "title", "file", "footnotes"])
    for t in tables:
        w.writerow([f"Table {t.number}", t.title, f"{stem}_{t.id}.csv", " | ".join(t.notes)])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def write_dsmb_report(
    data: TrialData,
    safety: _s.SafetyData,
    protocol: Any,
    out_dir: str | Path,
    *,
    as_of: _dt.date,
    stem: str = "dsmb",
    run_time: str | None = None,
    oc_rates: Sequence[float] = DEFAULT_OC_RATES,
    synthetic_label: str | None = None,
    ae_details: pd.DataFrame | None = None,
) -> dict[str, Path]:
    """Write the DSMB's open and closed reports into ``out_dir``.

    ``data``: the analysis bundle (dataset, participants, adverse events, protocol summary;
    docs/contracts.md §1-4); ``safety``: the records of the stopping rules (adverse events,
    administrations, labs, DSMB decisions, deaths) — the one source of the adverse-event
    tables, listings and time-to-event analysis; ``protocol``: the
    :class:`~hepatrial.protocol.models.Protocol` the bundle was exported under; ``as_of``:
    the data-cut date. ``run_time``: the text of the run-time line (default: now, UTC).
    ``synthetic_label``: a banner for synthetic data (the demo). ``ae_details``: seriousness
    criteria and resolution dates per adverse event (see :func:`build_dsmb`).

    Inputs, as the store exports them:

    * ``data.dataset``: the analysis dataset (contracts.md §1); ``data.participants``
      (§2): ``participant_id, arm, status, status_date, enrolment_date`` required;
      ``cells_total, cells_per_kg, volume_ml`` shown as exposure when present;
      ``n_administrations``, when present, must count the administration records;
      ``data.adverse_events`` (§3): must have as many events per participant as the safety
      records (it is not otherwise read); ``data.protocol_summary``:
      ``protocol.summary_dict()`` (its content hash must be the protocol's).
    * ``safety = SafetyData.from_frames(adverse_events=…, administrations=…, labs=…,
      decisions=…, deaths=…)``, columns = the record fields of
      :mod:`hepatrial.protocol.safety`: adverse events ``id, participant_id, term, grade,
      serious, related_product, related_procedure, onset`` (date) and optional ``outcome,
      meddra_code, soc, procedure, recorded_at`` (aware datetime); administrations ``id,
      participant_id, date, route``; labs ``participant_id, visit, nominal_day, analyte,
      value, date`` (:func:`hepatrial.analysis.safety_labs_frame` makes them from the
      dataset); decisions ``id, rule_id, decided_at`` (aware), ``decision, reason``; deaths
      ``participant_id, date`` and optional ``recorded_at``.
    * ``ae_details`` (optional): ``id, seriousness_criteria, resolution_date`` and optional
      ``expectedness`` (the sponsor's).

    Writes ``<stem>_open.html``, ``<stem>_open.docx``, ``<stem>_open_<table>.csv``,
    ``<stem>_open_tables.csv`` and the same for ``closed``, and ``<stem>_results.json``
    (:func:`dsmb_json`, pooled); returns ``{"open_html": …, "open_docx": …, "open_tables": …,
    "open:<table id>": …, "closed_…": …, "results": …}``.
    """
    ds = build_dsmb(data, safety, protocol, as_of=as_of, oc_rates=oc_rates,
                    synthetic_label=synthetic_label, ae_details=ae_details)
    if run_time is None:
        run_time = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for session in SESSIONS:
        tables = dsmb_tables(ds, session)
        base = f"{stem}_{session}"
        p = out / f"{base}.html"
        p.write_text(build_html(ds, session, tables, run_time=run_time), encoding="utf-8")
        paths[f"{session}_html"] = p
        p = out / f"{base}.docx"
        p.write_bytes(build_word(ds, session, tables, run_time=run_time))
        paths[f"{session}_docx"] = p
        for t in tables:
            p = out / f"{base}_{t.id}.csv"
            p.write_bytes(to_csv(t))
            paths[f"{session}:{t.id}"] = p
        p = out / f"{base}_tables.csv"
        p.write_bytes(_index(tables, base))
        paths[f"{session}_tables"] = p
    p = out / f"{stem}_results.json"
    p.write_text(json.dumps(dsmb_json(ds), indent=1, sort_keys=True, ensure_ascii=False,
                            allow_nan=False) + "\n", encoding="utf-8")
    paths["results"] = p
    return paths


__all__ += ["build_html", "build_word", "clinical_text", "dsmb_figures", "dsmb_json", "km_sentence",
            "methods_text", "rules_sentence", "summary_text"]
