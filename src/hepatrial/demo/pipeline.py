"""``hepatrial demo``: reconstruct the model trial, load it into a fresh store, analyse, report.

Everything the demo produces is a **synthetic reconstruction, not patient data**.

Steps: :func:`hepatrial.demo.cohort.reconstruct` → long lab CSV + participants CSV →
a fresh SQLite store through the same commands users run (``hepatrial init --protocol
kharaziha2009``; participants through :mod:`hepatrial.trials.services` — screening, consent,
eligibility, enrolment, administration, completion; ``hepatrial import labs``) →
:func:`hepatrial.ingest.export.trial_data` → :func:`hepatrial.report.analyze` →
:func:`hepatrial.report.write_report` (HTML, Word, one CSV per table).

The store step is the ``loader`` argument of :func:`run_demo` (default
:func:`load_into_store`), so the pipeline can run without a database (``loader=None`` builds
the bundle directly from the CSVs; used by tests of the report).

Django is configured once per process: run the demo in its own process (the CLI does).
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hepatrial.demo import cohort as _cohort
from hepatrial.demo import published as pub

PROTOCOL = "kharaziha2009"
LABS_CSV = "kharaziha2009_synthetic_labs.csv"
PARTICIPANTS_CSV = "kharaziha2009_synthetic_participants.csv"
DB_NAME = "kharaziha2009_synthetic.sqlite3"
REPORT_HTML = "kharaziha2009_synthetic_report.html"
RESULTS_JSON = "kharaziha2009_synthetic_results.json"
#: Visits whose values were not published (interpolated + noise in the reconstruction).
NOT_PUBLISHED = ("W1", "W2", "W4", "W8")
#: synthetic release-test results of every demo batch, meeting the protocol's release
#: specification ([[product.release_spec]]: ISCT 2006 markers, viability, sterility, ...);
#: the viability and the cell count of each batch are :data:`VIABILITY` and the cells given
RELEASE_TESTS = {
    "cd73": 98.5, "cd90": 99.1, "cd105": 97.0, "cd45": 0.4, "cd34": 0.6, "cd14_or_cd11b": 0.8,
    "cd79a_or_cd19": 0.3, "hla_dr": 1.2, "viability": 92.0, "sterility": "no growth",
    "endotoxin": 0.1, "mycoplasma": "negative", "gram_stain": "no organisms seen",
    "cell_count": 40e6,
}  # fmt: skip
#: synthetic body weight (kg) at day 0 and release viability (%) of each demo participant, in
#: the cohort's order (the paper reports neither): weights give the dose per kg, and the
#: endotoxin limit per kg the release judges
WEIGHT_KG = ("68.5", "74.0", "61.2", "80.3", "77.8", "59.6", "83.1", "70.4")
VIABILITY = (92.0, 88.5, 95.1, 90.2, 86.7, 93.8, 89.4, 91.6)
#: the demo's QA and DSMB accounts (synthetic; their passwords are e-signature inputs)
QA_USER, QA_PASSWORD = "qa", "synthetic QA release"
DSMB_USER, DSMB_PASSWORD = "dsmb", "synthetic DSMB review"
#: the DSMB's sentinel review of the previous participant is dated this many days before the
#: next participant's dose (12:00 UTC), between the two doses
REVIEW_DAYS_BEFORE = 1


@dataclass
class DemoResult:
    """Paths and objects produced by :func:`run_demo`."""

    out_dir: Path
    labs_csv: Path
    participants_csv: Path
    db: Path | None
    report: Path
    results_json: Path
    cohort: Any
    results: dict[str, Any]
    seconds: float
    #: the Word version of the report and every table as CSV (``write_report`` paths)
    files: dict[str, Path] | None = None


def write_csvs(c: _cohort.Cohort, out_dir: Path) -> tuple[Path, Path]:
    """Write the long lab CSV (participant, visit, analyte, value, unit, date) and the
    participants CSV; byte-identical for the same cohort."""
    labs = c.labs.rename(columns={"participant_id": "participant"})
    labs = labs.assign(value=[_fmt_value(a, v) for a, v in zip(labs["analyte"], labs["value"],
                                                               strict=True)])
    lp = out_dir / LABS_CSV
    labs.to_csv(lp, index=False, lineterminator="\n")
    pp = out_dir / PARTICIPANTS_CSV
    c.participants.to_csv(pp, index=False, lineterminator="\n", float_format="%.6g")
    return lp, pp


def _fmt_value(analyte: str, v: float) -> str:
    d = pub.ENTRY_DECIMALS[analyte]
    return f"{v:.{d}f}"


def _screening_data(row: Any, labs: pd.DataFrame) -> dict[str, Any]:
    d0 = labs[(labs["participant_id"] == row.participant_id) & (labs["visit"] == "D0")]
    values = dict(zip(d0["analyte"], d0["value"], strict=True))
    return {  # typed by the protocol's eligibility inputs: labs with their unit
        "age": float(row.age),
        "cirrhosis": True,
        "bilirubin": {"value": float(values["bilirubin"]), "unit": "umol/L"},
        "creatinine": {"value": float(values["creatinine"]), "unit": "umol/L"},
        "inr": float(values["inr"]),
        "albumin": {"value": float(values["albumin"]), "unit": "g/L"},
        "portal_vein_patent": True,
        "hcc": False,
        "active_infection": False,
        "pregnant": False,
    }


def load_into_store(c: _cohort.Cohort, labs_csv: Path, db: Path) -> Any:
    """Fresh SQLite store ← the synthetic cohort, through the library functions behind
    ``hepatrial init`` and ``hepatrial import labs`` and the store's services; returns the
    exported TrialData bundle.

    The demo always uses this fresh SQLite file: ``HEPATRIAL_DATABASE_URL`` is removed from
    this process's environment so that synthetic data never reach a configured server, and
    a process whose Django is already bound to another database is refused.
    """
    import os

    os.environ.pop("HEPATRIAL_DATABASE_URL", None)
    from django.conf import settings

    if settings.configured:
        name = str(settings.DATABASES["default"].get("NAME", ""))
        if Path(name).resolve() != db.resolve():
            raise RuntimeError(f"Django in this process already uses {name!r}; run the demo in "
                               "a fresh process (e.g. `hepatrial demo`)")
    if db.exists():
        db.unlink()
    # the built-in protocol as users get it; each participant's eligibility is assessed by the
    # store below and a synthetic participant it would exclude stops the demo
    from hepatrial.trials import migrate, setup

    setup(db)  # what `hepatrial init --protocol kharaziha2009 --db DB` does
    migrate()
    from hepatrial.trials import services

    services.install_protocol(PROTOCOL)

    user = services.system_user()
    for i, r in enumerate(c.participants.itertuples(index=False)):
        d0 = _dt.date.fromisoformat(r.enrolment_date)
        scr = d0 - _dt.timedelta(days=14)
        services.screen_participant(
            study_id=r.participant_id, site=r.site, sex=r.sex,
            year_of_birth=_year_of_birth(r), etiology=r.etiology, screening_date=scr,
            screening_data=_screening_data(r, c.labs), user=user)
        services.record_consent(participant=r.participant_id, version="1.0", date=scr,
                                user=user)
        a = services.assess_eligibility(participant=r.participant_id, assessed_on=scr,
                                        user=user)
        if a.eligible is not True:
            failed = [k for k, v in a.criteria.items() if v.get("passes") is False]
            raise _cohort.ReconstructionError(
                f"{r.participant_id} (age {r.age:g}) is not eligible under the installed "
                f"protocol: failed {', '.join(failed) or 'undecided'}")
        services.enrol_participant(participant=r.participant_id, enrolment_date=d0, user=user)
        _manufacture(services, r, i, user)
    _release_and_infuse(services, c, user)
    from hepatrial.ingest.importer import import_labs

    result = import_labs(labs_csv, db=db)  # what `hepatrial import labs FILE --db DB` does
    print(f"import labs {labs_csv.name}: {result.rows} rows: {result.summary()}")
    for r in c.participants.itertuples(index=False):
        services.change_status(participant=r.participant_id, status="completed",
                               date=_dt.date.fromisoformat(r.status_date),
                               reason="completed 24-week follow-up", user=user)
    from hepatrial.ingest.export import trial_data

    return trial_data(db)


def _year_of_birth(r: Any) -> int:
    """The year of birth stored for a synthetic participant: screening year minus age."""
    scr = _dt.date.fromisoformat(r.enrolment_date) - _dt.timedelta(days=14)
    return scr.year - int(r.age)


def _utc(day: _dt.date, hour: int, minute: int = 0) -> _dt.datetime:
    return _dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=_dt.UTC)


def _manufacture(services: Any, r: Any, i: int, user: Any) -> None:
    """One participant's product up to QA review, through the product service: the weight at
    day 0, the marrow harvest 12-14 days before (its chain-of-identity id), receipt at the
    laboratory, the four manufacturing steps with their in-process controls, formulation at
    06:30 on day 0 and QC within the specification (synthetic values)."""
    p = r.participant_id
    d0 = _dt.date.fromisoformat(r.enrolment_date)
    scr = d0 - _dt.timedelta(days=14 - i % 3)  # the harvest: 0-2 days after screening
    services.record_visit(participant=p, visit_code="D0", actual_date=d0, user=user)
    services.record_clinical(participant=p, visit_code="D0", weight_kg=WEIGHT_KG[i], user=user)
    h = services.record_harvest(
        participant=p, collected_at=_utc(scr, 9), operator="synthetic haematologist",
        volume_ml=str(50 + 5 * i), anticoagulant_lot="HEP-SYN-1", container="heparinised "
        "syringes", transport="insulated box, room temperature", collection_site="iliac crest",
        user=user)  # fmt: skip
    b = services.register_batch(participant=p, coi=h.coi, facility="synthetic GMP laboratory",
                                received_at=_utc(scr, 13), receipt_temperature_c=21.0,
                                user=user)
    services.start_manufacture(b, at=_utc(scr, 14), user=user)
    cells = float(r.cells_total)
    steps = (
        ("isolation", _utc(scr, 14), _utc(scr, 18), {"viability": 85.0}),
        ("expansion", _utc(scr + _dt.timedelta(days=1), 9), _utc(d0 - _dt.timedelta(days=2), 9),
         {"passage": 2, "population_doublings": 10.5, "confluence": 80.0}),
        ("harvest", _utc(d0 - _dt.timedelta(days=1), 9), _utc(d0, 6),
         {"cell_count": round(cells * 1.15), "viability": VIABILITY[i]}),
        ("formulation", _utc(d0, 6), _utc(d0, 6, 30), {}),
    )  # fmt: skip
    for code, start, end, controls in steps:
        services.record_manufacturing_step(
            b, step=code, started_at=start, completed_at=end, operator="synthetic technician",
            reagents=[{"name": "alpha-MEM", "lot": "MEM-SYN-1"}, {"name": "foetal bovine serum",
                                                                  "lot": "FBS-SYN-1"}],
            controls=controls, user=user)  # fmt: skip
    services.complete_manufacture(b, formulated_at=_utc(d0, 6, 30), user=user)
    results = {**RELEASE_TESTS, "viability": VIABILITY[i], "cell_count": cells}
    services.record_qc_results(b, [{"test": t, "result": v, "analyst": "synthetic analyst",
                                    "tested_on": d0} for t, v in results.items()], user=user)
    services.submit_for_review(b, at=_utc(d0, 7, 30), user=user)


def _release_and_infuse(services: Any, c: _cohort.Cohort, user: Any) -> None:
    """QA releases the 8 batches in one signing session (e-signature, password re-entered
    once: 21 CFR 11.200(a)(1)(i)); each batch is dispatched at 08:30, received at the bedside
    at 09:00 with its transport log and given at 10:00 through the dosing gate — within the
    6 h shelf life — in the order of enrolment (day 0s at least 14 days apart:
    :data:`hepatrial.demo.cohort.DOSING_INTERVAL_DAYS`), the DSMB recording the sentinel
    review of the previous participant's safety data (a signed ``resume`` on SR-SENTINEL)
    dated the day before the next is dosed, at 12:00 UTC (:data:`REVIEW_DAYS_BEFORE`): the
    dosing gate judges each dose as of its own date, so each review counts for one dose."""
    from hepatrial.trials.models.product import CellProductBatch
    from hepatrial.trials.services import safety

    services.create_user(username=QA_USER, password=QA_PASSWORD, site_codes=["S01"],
                         role="qa", printed_name="Synthetic QA officer", user=user)
    ppl = list(c.participants.itertuples(index=False))
    batches = {b.participant.study_id: b for b in CellProductBatch.objects.select_related(
        "participant").filter(participant__study_id__in=[r.participant_id for r in ppl])}
    services.release_batches(
        [batches[r.participant_id] for r in ppl], user=QA_USER, password=QA_PASSWORD,
        released_at={batches[r.participant_id].batch_id: _utc(_dt.date.fromisoformat(
            r.enrolment_date), 8) for r in ppl})  # fmt: skip
    dsmb = False
    for r in ppl:
        d0 = _dt.date.fromisoformat(r.enrolment_date)
        b = batches[r.participant_id]
        services.dispatch_batch(b, scanned_coi=b.coi_identifier, at=_utc(d0, 8, 30),
                                location="synthetic GMP laboratory", temperature_c=5.0,
                                user=user)
        services.receive_at_bedside(b, scanned_coi=b.coi_identifier, at=_utc(d0, 9),
                                    location="synthetic ward",
                                    readings=[(_utc(d0, 8, 35), 4.8), (_utc(d0, 8, 55), 5.1)],
                                    user=user)
        pause = safety.dosing_pause(str(r.participant_id), at=_utc(d0, 10))
        if pause is not None and pause.rule == "SR-SENTINEL":
            if not dsmb:
                services.create_user(username=DSMB_USER, password=DSMB_PASSWORD, role="dsmb",
                                     printed_name="Synthetic DSMB chair", user=user)
                dsmb = True
            safety.resume_stopping_rule(
                "SR-SENTINEL", decision="the previous participant's safety data were "
                "reviewed: the next participant may be dosed", user=DSMB_USER,
                password=DSMB_PASSWORD,
                at=_utc(d0 - _dt.timedelta(days=REVIEW_DAYS_BEFORE), 12))  # fmt: skip
        services.record_administration(
            participant=r.participant_id, batch_id=b.batch_id, scanned_coi=b.coi_identifier,
            identifiers={"study_id": r.participant_id, "year_of_birth": str(_year_of_birth(r))},
            route=r.route, cells_total=float(r.cells_total), volume_ml=r.volume_ml,
            administered_at=_utc(d0, 10), operator="synthetic nurse", user=user)


def bundle_without_store(c: _cohort.Cohort) -> Any:
    """The TrialData bundle built directly from the cohort (no database): measured rows plus
    the MELD variants computed by :func:`hepatrial.scores.meld`. For tests and benchmarks."""
    from hepatrial.analysis import TrialData
    from hepatrial.protocol.loader import load_protocol

    ps = load_protocol(PROTOCOL).summary_dict()
    days = {v["code"]: v["nominal_day"] for v in ps["visits"]}
    labs = c.labs.copy()
    enrol = dict(zip(c.participants["participant_id"], c.participants["enrolment_date"],
                     strict=True))
    labs["actual_day"] = [(pd.Timestamp(d) - pd.Timestamp(enrol[p])).days
                          for p, d in zip(labs["participant_id"], labs["date"], strict=True)]
    rows = [labs.assign(source="measured")]
    wide = labs.pivot_table(index=["participant_id", "visit", "actual_day"], columns="analyte",
                            values="value").reset_index()
    for variant in ("kamath2001", "continuous", "optn2002"):
        m = _cohort.meld_si(wide["bilirubin"], wide["creatinine"], wide["inr"], variant)
        rows.append(wide[["participant_id", "visit", "actual_day"]].assign(
            analyte=f"meld_{variant}", value=m, unit="points", source="derived"))
    ds = pd.concat(rows, ignore_index=True)
    ds["site"] = "S01"
    ds["arm"] = "single"
    ds["nominal_day"] = ds["visit"].map(days).astype(int)
    ds = ds[["participant_id", "site", "arm", "visit", "nominal_day", "actual_day", "analyte",
             "value", "unit", "source"]]
    ds = ds.sort_values(["participant_id", "nominal_day", "visit", "analyte"],
                        kind="mergesort").reset_index(drop=True)
    ae = pd.DataFrame({k: pd.Series(dtype=object) for k in (
        "participant_id", "term", "grade", "serious", "related", "onset_day", "resolved_day",
        "outcome")})
    ppl = c.participants.copy()
    return TrialData(ds, ppl, ae, ps)


def run_demo(
    out_dir: str | Path = "hepatrial-demo",
    *,
    seed: int = _cohort.SEED,
    loader: Callable[[_cohort.Cohort, Path, Path], Any] | None = load_into_store,
    run_time: str | None = None,
) -> DemoResult:
    """Reconstruct, store, export, analyse and report; returns where everything is."""
    import json

    from hepatrial.report import analyze, write_report

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    c = _cohort.reconstruct(seed=seed)
    c.feasibility = _cohort.meld_variant_feasibility(_cohort.cohort_meld(c.labs), seed=seed)
    labs_csv, ppl_csv = write_csvs(c, out)
    db = out / DB_NAME if loader is not None else None
    td = loader(c, labs_csv, db) if loader is not None and db is not None \
        else bundle_without_store(c)
    results = analyze(td, meld_variant=c.meld_variant)
    results["demo"] = demo_section(c)
    # HTML, Word and one CSV per table, side by side
    files = write_report(td, results, out, REPORT_HTML.removesuffix(".html"), run_time=run_time)
    report = files["html"]
    rj = out / RESULTS_JSON
    rj.write_text(json.dumps(results, indent=1, sort_keys=True, allow_nan=False) + "\n",
                  encoding="utf-8")
    return DemoResult(out, labs_csv, ppl_csv, db, report, rj, c, results,
                      time.perf_counter() - t0, files)


def demo_section(c: _cohort.Cohort) -> dict[str, Any]:
    """What the report says about the reconstruction (published vs reproduced, variants)."""
    from hepatrial.report.analyze import jsonable

    return jsonable({
        "label": c.label,
        "reference": pub.REFERENCE,
        "seed": c.seed,
        "attempts": c.attempts,
        "meld_variant": c.meld_variant,
        "verification": c.verification,
        "feasibility": c.feasibility,
        "not_published_visits": list(NOT_PUBLISHED),
        "notes": list(c.notes),
    })
