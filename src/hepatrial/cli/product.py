"""``hepatrial product ...``: the cell product vein to vein from the command line.

Every command writes through the product service (:mod:`hepatrial.trials.services.product`):
each lifecycle step is checked by the state machine under a row lock and stored as an
append-only custody event; an administration goes through the dosing gate. A refusal exits
non-zero (:mod:`hepatrial.cli._errors`: 1 refused, 2 not found, 3 not allowed, 4 wrong
password, 5 locked) and names every unmet condition, one per line.

Times are ISO 8601 with their time zone (``2008-01-20T10:00:00+03:30``, ``...Z``); a time
without a zone is refused, never assumed. The release is an e-signature: the QA user
re-enters the password (``--password-stdin`` reads it from the first line of standard input;
an exceptional release reads the investigator's password from the second line).

The lifecycle, in order::

    product harvest PARTICIPANT ...      prints the chain-of-identity id
    product batch PARTICIPANT --coi ID   receipt at the facility; prints the batch id
    product start | step | complete BATCH
    product qc BATCH ...  (or hepatrial import qc FILE.csv)
    product submit BATCH
    product release BATCH --user QA --password-stdin [--exception ...]
    product ship BATCH --scan ID; product receive BATCH --scan ID --reading TIME=°C ...
    product administer PARTICIPANT --batch ID --scan ID --identifiers ...
    product observe PARTICIPANT --batch ID --minute 0|15|30|60 ...
    product quarantine | investigate | resume | return | destroy BATCH --reason TEXT
    product trace | coa | label | fhir ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from hepatrial.cli._errors import fail, handled
from hepatrial.cli.store import DbOpt, _open

__all__ = ["register"]

product_app = typer.Typer(
    name="product", help="The cell product vein to vein: harvest, manufacture, QC, release, "
    "custody, administration.", no_args_is_help=True,
)  # fmt: skip

BatchArg = Annotated[str, typer.Argument(help="Batch id.", show_default=False)]
ParticipantArg = Annotated[str, typer.Argument(help="Participant study id.", show_default=False)]
UserOpt = Annotated[str | None, typer.Option(
    "--user", help="Who does it (default: the system account).")]
AtOpt = Annotated[str | None, typer.Option(
    "--at", help="When it happened: ISO 8601 with time zone (default: now).")]
ScanOpt = Annotated[str, typer.Option(
    "--scan", help="The chain-of-identity id scanned from the label.")]
ReasonReq = Annotated[str, typer.Option("--reason", help="Why (kept in the chain of custody).")]
LocationOpt = Annotated[str, typer.Option("--location", help="Where.")]
TempOpt = Annotated[float | None, typer.Option("--temperature", help="Temperature, °C.")]
OutReq = Annotated[Path, typer.Option("-o", "--output", help="File to write.")]


def _echo_state(b: Any, what: str) -> None:
    typer.echo(f"batch {b.batch_id}: {what} -> {b.state}")


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    """``NAME=VALUE`` options (repeatable; a comma-separated list is split too)."""
    from hepatrial.errors import InputError

    out: dict[str, str] = {}
    for item in items or []:
        for part in item.split(","):
            if not part.strip():
                continue
            if "=" not in part:
                fail(InputError(f"{what}: {part!r} is not NAME=VALUE"))
            k, v = part.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _number(text: str) -> Any:
    try:
        return float(text) if text.strip() else text
    except ValueError:
        return text


# ---------------------------------------------------------------------- specification
@product_app.command("spec")
def spec(
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list of {test, unit, min, max, "
                                          "expected} (null where not applicable).")] = False,
    protocol: Annotated[str | None, typer.Option(
        "--protocol", help="A built-in protocol name or TOML file (default: the store's).")
    ] = None,
    db: DbOpt = None,
) -> None:
    """The protocol's release specification: every test, its unit and acceptance limit."""
    if protocol is not None:
        from hepatrial.protocol.loader import load_protocol

        with handled():
            try:
                proto = load_protocol(protocol)
            except (LookupError, ValueError, OSError) as exc:
                from hepatrial.errors import NotFoundError

                raise NotFoundError(str(exc)) from None
    else:
        _open(db)
        from hepatrial.trials import services

        with handled():
            proto = services.active_protocol()
    prod = proto.product
    if prod is None:
        from hepatrial.errors import ConfigurationError

        fail(ConfigurationError(f"protocol {proto.name} declares no product"))
    if as_json:
        typer.echo(json.dumps(prod.spec_rows(), indent=1))
        return
    typer.echo(f"{prod.name}: release specification ({len(prod.release_spec)} tests)")
    for t in prod.release_spec:
        line = f"  {t.name:<15} {t.full_criterion}"
        if t.method:
            line += f"  [{t.method}]"
        typer.echo(line)


# ---------------------------------------------------------------------- harvest, batch
@product_app.command("harvest")
def harvest(
    participant: ParticipantArg,
    collected_at: Annotated[str, typer.Option("--collected-at", help="Time of collection.")],
    operator: Annotated[str, typer.Option("--operator", help="Who collected it.")],
    volume_ml: Annotated[str, typer.Option("--volume-ml", help="Volume collected, mL.")],
    anticoagulant_lot: Annotated[str, typer.Option("--anticoagulant-lot")] = "",
    container: Annotated[str, typer.Option("--container")] = "",
    transport: Annotated[str, typer.Option("--transport", help="How it is transported.")] = "",
    collection_site: Annotated[str, typer.Option("--collection-site",
                                                 help="e.g. iliac crest")] = "",
    site: Annotated[str | None, typer.Option("--site", help="Site code (default: the "
                                             "participant's).")] = None,
    user: UserOpt = None,
    db: DbOpt = None,
) -> None:
    """Record the harvest of the starting material; prints the chain-of-identity id."""
    _open(db)
    from hepatrial.trials import services

    with handled():
        h = services.record_harvest(
            participant=participant, collected_at=collected_at, operator=operator,
            volume_ml=volume_ml, anticoagulant_lot=anticoagulant_lot, container=container,
            transport=transport, collection_site=collection_site, site=site, user=user)
    typer.echo(h.coi)


@product_app.command("batch")
def batch(
    participant: ParticipantArg,
    coi: Annotated[str, typer.Option("--coi", help="The chain-of-identity id scanned from the "
                                     "harvest's container.")],
    batch_id: Annotated[str | None, typer.Option("--batch-id", help="Default: B-<coi>.")] = None,
    facility: Annotated[str, typer.Option("--facility")] = "",
    received_at: Annotated[str | None, typer.Option("--received-at")] = None,
    temperature: TempOpt = None,
    volume_ml: Annotated[str | None, typer.Option("--volume-ml", help="Volume received "
                                                  "(default: as harvested).")] = None,
    user: UserOpt = None,
    db: DbOpt = None,
) -> None:
    """Register the batch at the receipt of the starting material; prints the batch id."""
    _open(db)
    from hepatrial.trials import services

    with handled():
        b = services.register_batch(participant=participant, coi=coi, batch_id=batch_id,
                                    facility=facility, received_at=received_at,
                                    receipt_temperature_c=temperature, volume_ml=volume_ml,
                                    user=user)
    typer.echo(b.batch_id)


# ---------------------------------------------------------------------- manufacture, QC
@product_app.command("start")
def start(batch_id: BatchArg, at: AtOpt = None, user: UserOpt = None, db: DbOpt = None) -> None:
    """Start manufacturing a received batch."""
    _open(db)
    from hepatrial.trials import services

    with handled():
        _echo_state(services.start_manufacture(batch_id, at=at, user=user), "start_manufacture")


@product_app.command("step")
def step(
    batch_id: BatchArg,
    step_code: Annotated[str, typer.Option("--step", help="The protocol's step code.")],
    started_at: Annotated[str, typer.Option("--started-at")],
    completed_at: Annotated[str, typer.Option("--completed-at")],
    operator: Annotated[str, typer.Option("--operator")],
    reagent: Annotated[list[str] | None, typer.Option(
        "--reagent", help="NAME=LOT (repeat for several).")] = None,
    control: Annotated[list[str] | None, typer.Option(
        "--control", help="In-process control result NAME=VALUE (repeat).")] = None,
    user: UserOpt = None,
    db: DbOpt = None,
) -> None:
    """Record a manufacturing step with its reagents and in-process control results."""
    _open(db)
    from hepatrial.trials import services

    reagents = [{"name": k, "lot": v} for k, v in _pairs(reagent, "--reagent").items()]
    controls = {k: _number(v) for k, v in _pairs(control, "--control").items()}
    with handled():
        s = services.record_manufacturing_step(
            batch_id, step=step_code, started_at=started_at, completed_at=completed_at,
            operator=operator, reagents=reagents, controls=controls, user=user)
    typer.echo(f"batch {batch_id}: step {s.step} recorded ({len(controls)} control(s))")


@product_app.command("complete")
def complete(
    batch_id: BatchArg,
    formulated_at: Annotated[str, typer.Option("--formulated-at", help="End of formulation: "
                                               "the start of the shelf life.")],
    volume_ml: Annotated[str | None, typer.Option("--volume-ml")] = None,
    at: AtOpt = None, user: UserOpt = None, db: DbOpt = None,
) -> None:
    """Complete manufacture (every step recorded, every in-process control met)."""
    _open(db)
    from hepatrial.trials import services

    with handled():
        _echo_state(services.complete_manufacture(batch_id, formulated_at=formulated_at,
                                                  volume_ml=volume_ml, at=at, user=user),
                    "complete_manufacture")


@product_app.command("qc")
def qc(
    batch_id: BatchArg,
    test: Annotated[str, typer.Option("--test", help="Release test (hepatrial product spec).")],
    result: Annotated[str, typer.Option("--result", help="As on the lab report.")],
    analyst: Annotated[str, typer.Option("--analyst")],
    date: Annotated[str, typer.Option("--date", help="Date tested, YYYY-MM-DD.")],
    unit: Annotated[str | None, typer.Option("--unit", help="Default: the test's unit.")] = None,
    method: Annotated[str, typer.Option("--method")] = "",
    reason: Annotated[str | None, typer.Option(
        "--reason", help="Needed to change a result already recorded.")] = None,
    user: UserOpt = None,
    db: DbOpt = None,
) -> None:
    """Record a QC (release-test) result as entered."""
    _open(db)
    from hepatrial.trials import services

    with handled():
        q = services.record_qc_result(batch_id, test=test, result=result, unit=unit,
                                      analyst=analyst, tested_on=date, method=method,
                                      reason=reason, user=user)
    typer.echo(f"batch {batch_id}: {q.test} = {q.value_as_entered} {q.unit}".rstrip())


@product_app.command("submit")
def submit(batch_id: BatchArg, at: AtOpt = None, user: UserOpt = None, db: DbOpt = None) -> None:
    """Submit a batch for QA review (every release test has a valid result)."""
    _open(db)
    from hepatrial.trials import services

    with handled():
        _echo_state(services.submit_for_review(batch_id, at=at, user=user), "submit_for_review")


# ---------------------------------------------------------------------- release
def _stdin_lines(n: int) -> list[str]:
    from hepatrial.errors import InputError

    lines = [sys.stdin.readline().rstrip("\r\n") for _ in range(n)]
    if not all(lines):
        fail(InputError(f"--password-stdin: standard input needs {n} line(s): "
                        + ("the QA password, then the investigator's" if n == 2
                           else "the password")), "error")
    return lines


@product_app.command("release")
def release(
    batch_id: BatchArg,
    user: Annotated[str, typer.Option("--user", help="The QA user who signs.")],
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the password(s) from standard input (line 1: QA; with "
        "--exception line 2: the investigator).")] = False,
    exception: Annotated[bool, typer.Option(
        "--exception", help="Exceptional release of an out-of-specification batch.")] = False,
    justification: Annotated[str, typer.Option(
        "--justification", help="The medical justification (exceptional release).")] = "",
    investigator: Annotated[str | None, typer.Option(
        "--investigator", help="The investigator who signs the justification.")] = None,
    released_at: Annotated[str | None, typer.Option("--released-at")] = None,
    db: DbOpt = None,
) -> None:
    """Release a batch: the QA user's e-signature (password re-entered); refused unless every
    test meets its limit. --exception: signed by QA and the investigator, records a major
    deviation."""
    from hepatrial.errors import InputError

    if exception and not investigator:
        fail(InputError("--exception needs --investigator NAME (the investigator signs the "
                        "medical justification)"))
    _open(db)
    from hepatrial.trials import services

    if password_stdin:
        pw = _stdin_lines(2 if exception else 1)
    else:
        from hepatrial.cli.store import read_password

        pw = [read_password(False, confirm=False, command="hepatrial product release")]
        if exception:
            pw.append(read_password(False, confirm=False, command="hepatrial product release"))
    with handled():
        if exception:
            b = services.release_batch_exceptionally(
                batch_id, user=user, password=pw[0], justification=justification,
                investigator=investigator, investigator_password=pw[1],
                released_at=released_at)
        else:
            b = services.release_batch(batch_id, user=user, password=pw[0],
                                       released_at=released_at)
    _echo_state(b, "release_exceptionally" if exception else "release")


# ---------------------------------------------------------------------- distribution
@product_app.command("ship")
def ship(batch_id: BatchArg, scan: ScanOpt, at: AtOpt = None, location: LocationOpt = "",
         temperature: TempOpt = None, user: UserOpt = None, db: DbOpt = None) -> None:
    """Dispatch a released batch to the bedside (label scanned, within shelf life)."""
    _open(db)
    from hepatrial.trials import services

    with handled():
        _echo_state(services.dispatch_batch(batch_id, scanned_coi=scan, at=at,
                                            location=location, temperature_c=temperature,
                                            user=user), "dispatch")


@product_app.command("receive")
def receive(
    batch_id: BatchArg, scan: ScanOpt,
    reading: Annotated[list[str] | None, typer.Option(
        "--reading", help="A transport logger reading TIME=°C (repeat for each).")] = None,
    at: AtOpt = None, location: LocationOpt = "", temperature: TempOpt = None,
    user: UserOpt = None, db: DbOpt = None,
) -> None:
    """Receive a dispatched batch at the bedside with its transport record."""
    _open(db)
    from hepatrial.trials import services

    readings = []
    for r in reading or []:
        t, _, c = r.rpartition("=")
        readings.append((t, c))
    with handled():
        _echo_state(services.receive_at_bedside(batch_id, scanned_coi=scan, readings=readings,
                                                at=at, location=location,
                                                temperature_c=temperature, user=user),
                    "receive_at_bedside")


@product_app.command("administer")
def administer(
    participant: ParticipantArg,
    batch_id: Annotated[str, typer.Option("--batch", help="The batch given.")],
    scan: ScanOpt,
    identifiers: Annotated[list[str], typer.Option(
        "--identifiers", help="Patient identifiers checked: study_id=K01,year_of_birth=1960 "
        "(at least two).")],
    route: Annotated[str, typer.Option("--route")],
    cells: Annotated[str, typer.Option("--cells", help="Cells given.")],
    volume_ml: Annotated[str, typer.Option("--volume-ml")],
    date: Annotated[str, typer.Option("--date", help="Start of the infusion: ISO 8601 date "
                                      "and time with zone, e.g. 2008-01-20T10:00Z.")],
    operator: Annotated[str, typer.Option("--operator")],
    override_reason: Annotated[str, typer.Option(
        "--override-reason", help="Give an out-of-range dose deliberately (records a major "
        "deviation).")] = "",
    user: UserOpt = None,
    db: DbOpt = None,
) -> None:
    """Record an infusion through the dosing gate (refused with every unmet condition)."""
    _open(db)
    from hepatrial.trials import services

    ids = _pairs(identifiers, "--identifiers")
    with handled():
        a = services.record_administration(
            participant=participant, batch_id=batch_id, scanned_coi=scan, identifiers=ids,
            route=route, cells_total=cells, volume_ml=volume_ml, administered_at=date,
            operator=operator, dose_override_reason=override_reason, user=user)
    per = f", {a.cells_per_kg:.4g} cells/kg" if a.cells_per_kg else ""
    typer.echo(f"participant {participant}: {a.cells_total:.4g} cells{per} of batch "
               f"{a.batch_id} by {a.route} at {a.administered_at.isoformat()}")


@product_app.command("observe")
def observe(
    participant: ParticipantArg,
    batch_id: Annotated[str, typer.Option("--batch", help="The batch given.")],
    minute: Annotated[int, typer.Option("--minute", help="0, 15, 30 or 60 after the start.")],
    at: Annotated[str, typer.Option("--at", help="When observed (ISO 8601 with zone).")],
    observer: Annotated[str, typer.Option("--observer")],
    heart_rate: Annotated[str | None, typer.Option("--heart-rate", help="/min")] = None,
    systolic_bp: Annotated[str | None, typer.Option("--systolic", help="mmHg")] = None,
    diastolic_bp: Annotated[str | None, typer.Option("--diastolic", help="mmHg")] = None,
    respiratory_rate: Annotated[str | None, typer.Option("--respiratory-rate",
                                                         help="/min")] = None,
    temperature: Annotated[str | None, typer.Option("--temperature", help="°C")] = None,
    spo2: Annotated[str | None, typer.Option("--spo2", help="%")] = None,
    reaction: Annotated[bool, typer.Option("--reaction", help="An infusion reaction: opens an "
                                           "adverse event.")] = False,
    description: Annotated[str, typer.Option("--description")] = "",
    term: Annotated[str | None, typer.Option("--term", help="CTCAE term of the reaction.")
                    ] = None,
    grade: Annotated[int | None, typer.Option("--grade", help="CTCAE grade 1-5.")] = None,
    user: UserOpt = None,
    db: DbOpt = None,
) -> None:
    """Record the vital signs after an infusion (at 0, 15, 30 and 60 min); an infusion
    reaction opens its adverse event."""
    _open(db)
    from hepatrial.errors import NotFoundError
    from hepatrial.trials import services
    from hepatrial.trials.models.product import Administration

    a = Administration.objects.filter(participant__study_id=participant,
                                      batch_id=batch_id).first()
    if a is None:
        fail(NotFoundError(f"participant {participant} has no administration of batch "
                           f"{batch_id!r}"))
    with handled():
        o = services.record_observation(
            a, minute=minute, observed_at=at, observer=observer, heart_rate=heart_rate,
            systolic_bp=systolic_bp, diastolic_bp=diastolic_bp,
            respiratory_rate=respiratory_rate, temperature_c=temperature, spo2=spo2,
            reaction=reaction, reaction_description=description, reaction_term=term,
            reaction_grade=grade, user=user)
    ae = f"; adverse event {o.adverse_event_id} opened" if o.adverse_event_id else ""
    typer.echo(f"participant {participant}: observation at +{o.minute} min recorded{ae}")


def _exception_step(name: str, fn_name: str, doc: str) -> None:
    def cmd(batch_id: BatchArg, reason: ReasonReq, at: AtOpt = None, user: UserOpt = None,
            db: DbOpt = None) -> None:
        _open(db)
        from hepatrial.trials import services

        with handled():
            _echo_state(getattr(services, fn_name)(batch_id, reason=reason, at=at, user=user),
                        name)

    cmd.__doc__ = doc
    cmd.__name__ = f"{name}_cmd"
    product_app.command(name)(cmd)


_exception_step("quarantine", "quarantine_batch", "Quarantine a batch, with the reason.")
_exception_step("investigate", "investigate_batch", "Open the investigation of a quarantined "
                "batch.")
_exception_step("resume", "resume_batch", "Close an investigation (QA): back to the state "
                "before quarantine, or QA review after a release.")
_exception_step("return", "return_batch", "Return a dispatched batch, with the reason.")
_exception_step("destroy", "destroy_batch", "Destroy a quarantined, investigated or returned "
                "batch (QA).")


# ---------------------------------------------------------------------- outputs
def _record(batch_id: str) -> dict[str, Any]:
    from hepatrial.errors import NotFoundError
    from hepatrial.trials import selectors

    rec = selectors.product_record(batch_id)
    if rec is None:
        fail(NotFoundError(f"batch {batch_id!r} does not exist"))
    return rec


def _t(text: str | None) -> Any:
    import datetime as _dt

    return None if text is None else _dt.datetime.fromisoformat(text)


def _timeline(rec: dict[str, Any]) -> Any:
    from hepatrial.report.product import TimelineEvent, vein_to_vein

    kinds = {"harvest": ("harvest", "harvest"), "receive": ("receipt", "receipt at the facility"),
             "complete_manufacture": ("formulation", "formulation"),
             "release": ("release", "QA release"),
             "release_exceptionally": ("release", "exceptional release"),
             "dispatch": ("dispatch", "dispatch"),
             "receive_at_bedside": ("bedside", "receipt at the bedside"),
             "administer": ("infusion", "infusion")}
    events = []
    for e in rec["custody"]:
        if e["action"] not in kinds:
            continue
        kind, label = kinds[e["action"]]
        when = e["at"]
        if e["action"] == "complete_manufacture" and rec["formulated_at"]:
            when = rec["formulated_at"]
        events.append(TimelineEvent(kind, label, _t(when)))
    return vein_to_vein(rec["participant"], events)


@product_app.command("trace")
def trace(
    key: Annotated[str, typer.Argument(help="Batch id or participant study id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Everything stored, as JSON.")] = False,
    db: DbOpt = None,
) -> None:
    """The chain of identity and custody of a batch (or of every batch of a participant):
    each event with who, when, where and temperature, and the vein-to-vein legs."""
    _open(db)
    from hepatrial.errors import NotFoundError
    from hepatrial.trials import selectors

    ids = selectors.product_batch_ids(key)
    if not ids:
        fail(NotFoundError(f"{key!r} is neither a batch nor a participant with a batch"))
    recs = [_record(b) for b in ids]
    if as_json:
        out = []
        for rec in recs:
            tl = _timeline(rec)
            out.append({**rec, "signature_status": {
                str(r["signature_pk"]): _signature_status(r["signature_pk"])
                for r in rec["releases"]}, "timeline": {
                "legs": [{"from": g.start, "to": g.end, "hours": round(g.hours, 4)}
                         for g in tl.legs],
                "vein_to_vein_hours": None if tl.total_hours is None
                else round(tl.total_hours, 4)}})
        typer.echo(json.dumps(out, indent=1, sort_keys=True, default=str))
        return
    for rec in recs:
        typer.echo(f"batch {rec['batch_id']}  participant {rec['participant']}  chain of "
                   f"identity {rec['coi']}  state {rec['state']}")
        for e in rec["custody"]:
            extra = [x for x in (e["location"], "" if e["temperature_c"] is None
                                 else f"{e['temperature_c']:g} °C",
                                 f"scanned {e['scanned_coi']}" if e["scanned_coi"] else "",
                                 e["reason"]) if x]
            typer.echo(f"  #{e['seq']} {e['at']} {e['action']}: {e['from_state'] or '-'} -> "
                       f"{e['to_state']} by {e['actor']}" + (f" ({'; '.join(extra)})"
                                                             if extra else ""))
        for r in rec["releases"]:
            typer.echo(f"  {'exceptional release' if r['exceptional'] else 'release'} at "
                       f"{r['released_at']}: e-signed by {r['released_by']} "
                       f"({r['meaning']}), signature {_signature_status(r['signature_pk'])}; "
                       f"{r['conclusion']}")
        tl = _timeline(rec)
        for g in tl.legs:
            typer.echo(f"  {g.start} -> {g.end}: {g.text}")
        if tl.total_hours is not None:
            typer.echo(f"  vein to vein: {tl.total_text}")


def _signature_status(pk: int) -> str:
    """``valid`` / ``invalidated by change seq N`` / ``altered: ...`` (recomputed)."""
    from hepatrial.trials.models.product import ProductSignature
    from hepatrial.trials.services.product import product_signature_status

    return product_signature_status(ProductSignature.objects.get(pk=pk))


def _certificate(rec: dict[str, Any], proto: Any) -> Any:
    from hepatrial.report.product import CertificateData, QcResult, ReleaseRecord

    results = {q["test"]: QcResult(q["value"], q["analyst"], _d(q["tested_on"]), q["method"])
               for q in rec["qc"]}
    rel = rec["releases"][-1] if rec["releases"] else None
    release = None if rel is None else ReleaseRecord(
        rel["released_by"], _t(rel["released_at"]), rel["meaning"], rel["exceptional"],
        rel["justification"], rel["investigator"], rel["deviation"])
    formulated = _t(rec["formulated_at"])
    prod = proto.product
    return CertificateData(
        batch_id=rec["batch_id"], coi=rec["coi"], participant=rec["participant"],
        protocol=f"{proto.name} v{proto.version}", results=results,
        weight_kg=rel["weight_kg"] if rel else None, volume_ml=rec["formulated_volume_ml"],
        manufactured_by=tuple(sorted({s["operator"] for s in rec["steps"]})),
        formulated_at=formulated,
        expires_at=prod.expiry(formulated) if formulated is not None else None,
        release=release, issued_at=_t(rel["released_at"]) if rel else None,
    )  # fmt: skip


def _d(text: str | None) -> Any:
    import datetime as _dt

    return None if not text else _dt.date.fromisoformat(text)


def _write(path: Path, data: str | bytes) -> None:
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent if str(path.parent)
                               else ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _protocol() -> Any:
    from hepatrial.trials import services

    with handled():
        return services.active_protocol()


@product_app.command("coa")
def coa(batch_id: BatchArg, output: OutReq, db: DbOpt = None) -> None:
    """The certificate of analysis of a batch: HTML, or PDF when FILE ends in .pdf."""
    _open(db)
    from hepatrial.report.product import render_coa_html, render_coa_pdf

    rec = _record(batch_id)
    proto = _protocol()
    data = _certificate(rec, proto)
    if output.suffix.lower() == ".pdf":
        _write(output, render_coa_pdf(proto.product, data))
    else:
        _write(output, render_coa_html(proto.product, data))
    typer.echo(f"{output}: certificate of analysis of batch {batch_id}")


def _cells(rec: dict[str, Any]) -> float | None:
    q = next((q for q in rec["qc"] if q["test"] == "cell_count"), None)
    return float(q["value"]) if q is not None and isinstance(q["value"], int | float) else None


@product_app.command("label")
def label(batch_id: BatchArg, output: OutReq, db: DbOpt = None) -> None:
    """The product label (HTML page): chain-of-identity id with its QR code, two patient
    identifiers, FOR AUTOLOGOUS USE ONLY, contents, formulation and expiry."""
    _open(db)
    from hepatrial.errors import InputError
    from hepatrial.report.product import LabelData, PatientIdentifier, render_label_html

    rec = _record(batch_id)
    proto = _protocol()
    prod = proto.product
    formulated = _t(rec["formulated_at"])
    data = LabelData(
        coi=rec["coi"], batch_id=rec["batch_id"], product_name=prod.name,
        identifiers=(PatientIdentifier("Study id", rec["participant"]),
                     PatientIdentifier("Year of birth", str(rec["year_of_birth"]))),
        protocol=f"{proto.name} v{proto.version}", cells_total=_cells(rec),
        volume_ml=rec["formulated_volume_ml"], vehicle=prod.vehicle, formulated_at=formulated,
        expires_at=prod.expiry(formulated) if formulated is not None else None,
        storage=prod.storage_temp_c.text if prod.storage_temp_c is not None else "",
        container=(rec["harvest"] or {}).get("container", ""), site=rec["site"],
    )  # fmt: skip
    try:
        page = render_label_html(data)
    except ValueError as exc:
        fail(InputError(str(exc)))
    _write(output, page)
    typer.echo(f"{output}: label of batch {batch_id} ({rec['coi']})")


@product_app.command("fhir")
def fhir(batch_id: BatchArg, output: OutReq, db: DbOpt = None) -> None:
    """The batch as a FHIR R5 BiologicallyDerivedProduct (JSON)."""
    _open(db)
    import datetime as _dt

    from hepatrial.errors import InputError
    from hepatrial.fhir import ProductRecord, biologically_derived_product, to_json

    rec = _record(batch_id)
    proto = _protocol()
    prod = proto.product
    formulated = _t(rec["formulated_at"])
    expires = prod.expiry(formulated) if formulated is not None else None
    in_date = expires is None or _dt.datetime.now(_dt.UTC) <= expires
    viability = next((float(q["value"]) for q in rec["qc"] if q["test"] == "viability"
                      and isinstance(q["value"], int | float)), None)
    h = rec["harvest"] or {}
    r = ProductRecord(
        batch_id=rec["batch_id"], coi=rec["coi"], participant=rec["participant"],
        product_name=prod.name,
        available=rec["state"] in ("released", "exceptional_release", "dispatched",
                                   "received_at_bedside") and in_date,
        collected_at=_t(h.get("collected_at")), collector=h.get("operator", ""),
        processing_facility=rec["facility"], expires_at=expires,
        storage_min_c=prod.storage_temp_c.min_c if prod.storage_temp_c else None,
        storage_max_c=prod.storage_temp_c.max_c if prod.storage_temp_c else None,
        cells_total=_cells(rec), viability_pct=viability, volume_ml=rec["formulated_volume_ml"],
        lifecycle_state=rec["state"] or "",
    )  # fmt: skip
    try:
        resource = biologically_derived_product(r)
    except ValueError as exc:
        fail(InputError(str(exc)))
    _write(output, to_json(resource))
    typer.echo(f"{output}: FHIR R5 BiologicallyDerivedProduct of batch {batch_id}")


def register(app: typer.Typer) -> None:
    """Add the ``product`` group to the ``hepatrial`` command."""
    app.add_typer(product_app, name="product")
