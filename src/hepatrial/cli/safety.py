"""``hepatrial ae|sae|safety|dsmb``: adverse events, the SAE chain, the stopping rules and the
DSMB's reports.

* ``hepatrial ae record PARTICIPANT --term TERM --grade G --onset DATE …`` records an adverse
  event coded to CTCAE v5.0 (``hepatrial ae terms TEXT`` finds a term, ``hepatrial ae grades
  TERM`` shows the definition of each grade); ``ae update ID … --reason TEXT`` follows it up
  or corrects it; ``ae list``/``ae show``; ``ae proposals``/``ae confirm``/``ae dismiss``
  for the events proposed from lab grades.
* ``hepatrial sae report ID --kind initial …`` and ``sae assess ID --as sponsor …`` sign a
  step of the SAE chain (the password is re-entered: ``--password-stdin``); ``sae list``
  is the worklist of due and overdue reports; ``sae form ID -o DIR`` writes the CIOMS-I
  form (HTML and PDF).
* ``hepatrial safety status [--json]`` evaluates the stopping rules now; ``safety resume RULE
  --decision TEXT`` records a signed DSMB decision that lifts a pause; ``safety scan``
  proposes lab-derived adverse events and evaluates the rules; ``safety notifications``.
* ``hepatrial dsmb report -o DIR`` writes the DSMB's open and closed reports.

Every refusal exits non-zero and names each reason (:mod:`hepatrial.cli._errors`: 1 refused
by a rule, 2 not found, 3 not allowed, 4 wrong password, 5 locked).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from hepatrial.cli._errors import exit_code, handled
from hepatrial.cli.store import DbOpt, _open, read_password

ae_app = typer.Typer(name="ae", help="Record and follow up adverse events (CTCAE v5.0).",
                     no_args_is_help=True)  # fmt: skip
sae_app = typer.Typer(name="sae", help="The SAE chain: signed reports, causality, worklist.",
                      no_args_is_help=True)  # fmt: skip
safety_app = typer.Typer(name="safety", help="Stopping rules: status, DSMB resume, lab scan.",
                         no_args_is_help=True)  # fmt: skip
dsmb_app = typer.Typer(name="dsmb", help="The DSMB's open and closed reports.",
                       no_args_is_help=True)  # fmt: skip

UserReq = Annotated[str, typer.Option("--user", help="Who does it (a named account).")]
UserOpt = Annotated[str | None, typer.Option(
    "--user", help="Acting account (default: the system account).")]
IdArg = Annotated[str, typer.Argument(help="Adverse event id (12 or AE-12).", show_default=False)]
PasswordStdin = Annotated[bool, typer.Option(
    "--password-stdin", help="Read the password from the first line of standard input.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON instead of text.")]
Term = Annotated[str | None, typer.Option(
    "--term", help="CTCAE v5.0 term, or '<SOC> - Other, specify' with --specify.")]
Specify = Annotated[str | None, typer.Option(
    "--specify", help="The event's name for an 'Other, specify' term.")]
Meddra = Annotated[str | None, typer.Option(
    "--meddra", help="MedDRA code of the term (checked against it).")]
Grade = Annotated[int | None, typer.Option("--grade", help="CTCAE grade 1-5.")]
Onset = Annotated[str | None, typer.Option("--onset", help="Onset date YYYY-MM-DD.")]
Resolved = Annotated[str | None, typer.Option(
    "--resolved", help="Resolution date YYYY-MM-DD (outcome fatal: the date of death).")]
Outcome = Annotated[str | None, typer.Option(
    "--outcome", help="recovered | recovering | not_recovered | recovered_with_sequelae | "
    "fatal | unknown.")]
Serious = Annotated[list[str] | None, typer.Option(
    "--serious", help="ICH E2A seriousness criterion (repeat): death, life_threatening, "
    "hospitalisation, disability, congenital_anomaly, important_medical_event.")]
RelProduct = Annotated[str | None, typer.Option(
    "--relatedness-product", help="Relatedness to the cell product: not_related | unlikely | "
    "possible | probable | definite.")]
RelProcedure = Annotated[str | None, typer.Option(
    "--relatedness-procedure", help="Relatedness to a trial procedure (same codes).")]
Procedure = Annotated[str | None, typer.Option(
    "--procedure", help="bone_marrow_aspiration | portal_vein_injection | peripheral_infusion "
    "| hepatic_artery_injection.")]
Action = Annotated[str | None, typer.Option(
    "--action", help="Action taken with the product: none | infusion_interrupted | "
    "infusion_stopped | dose_reduced | next_dose_delayed | not_applicable | unknown.")]
Aware = Annotated[str | None, typer.Option(
    "--aware", help="When the site became aware: 'YYYY-MM-DD HH:MM' (wall clock).")]
TimeZone = Annotated[str | None, typer.Option(
    "--time-zone", help="IANA time zone of --aware/--submitted (default: the trial's).")]
Fold = Annotated[int | None, typer.Option(
    "--fold", help="For a time that happened twice (clocks went back): 0 first, 1 second.")]


def _fail(exc: BaseException) -> None:
    """Print every problem of a refusal (one per line) and exit with its code."""
    from hepatrial.errors import HepatrialError

    problems = getattr(exc, "problems", None)
    if problems:
        for p in problems:
            typer.secho(f"error: {p}", fg=typer.colors.RED, err=True)
    else:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(exit_code(exc) if isinstance(exc, HepatrialError) else 1)


def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    from hepatrial.errors import HepatrialError

    try:
        return fn(*args, **kwargs)
    except HepatrialError as exc:
        _fail(exc)


def _values(term: str | None, specify: str | None, meddra: str | None, grade: int | None,
            onset: str | None, resolved: str | None, outcome: str | None,
            serious: list[str] | None, rel_product: str | None, rel_procedure: str | None,
            procedure: str | None, action: str | None, aware: str | None,
            time_zone: str | None, fold: int | None) -> dict[str, Any]:  # fmt: skip
    given = {"term": term, "specify": specify, "meddra_code": meddra, "grade": grade,
             "onset_date": onset, "resolution_date": resolved, "outcome": outcome,
             "relatedness_product": rel_product, "relatedness_procedure": rel_procedure,
             "procedure": procedure, "action_taken": action}  # fmt: skip
    out = {k: v for k, v in given.items() if v is not None}
    if serious is not None:
        out["seriousness_criteria"] = list(serious)
        out["serious"] = bool(serious)
    if aware is not None:
        out["aware_local"] = aware
        out["aware_time_zone"] = time_zone
        out["aware_fold"] = fold
    return out


def _ae_dict(ae: Any) -> dict[str, Any]:
    from hepatrial.trials import selectors

    return {
        "id": selectors.ae_record_id(ae.pk), "participant": ae.participant.study_id,
        "term": ae.term, "specify": ae.specify, "meddra_code": ae.meddra_code, "soc": ae.soc,
        "ctcae_version": ae.ctcae_version, "grade": ae.grade,
        "grade_definition": ae.grade_definition, "serious": ae.serious,
        "seriousness_criteria": ae.seriousness_criteria, "onset_date": str(ae.onset_date),
        "resolution_date": None if ae.resolution_date is None else str(ae.resolution_date),
        "outcome": ae.outcome, "action_taken": ae.action_taken,
        "relatedness_product": ae.relatedness_product,
        "relatedness_procedure": ae.relatedness_procedure, "procedure": ae.procedure,
        "relatedness": ae.relatedness, "expectedness_product": ae.expectedness_product,
        "expectedness_procedure": ae.expectedness_procedure,
        "aware_at": None if ae.aware_at is None else ae.aware_at.isoformat(),
        "aware_local": ae.aware_local, "aware_time_zone": ae.aware_time_zone,
    }


def _ae_line(ae: Any) -> str:
    d = _ae_dict(ae)
    crit = f", serious ({', '.join(d['seriousness_criteria'] or [])})" if d["serious"] else ""
    return (f"{d['id']} {d['participant']}: {ae.label} grade {d['grade']} "
            f"({d['grade_definition'] or 'not coded'}), onset {d['onset_date']}, "
            f"outcome {d['outcome']}{crit}; related to product {d['relatedness_product']}, "
            f"procedure {d['relatedness_procedure']}"
            + (f" ({d['procedure']})" if d["procedure"] else ""))


# ============================================================================ hepatrial ae
@ae_app.command("record")
def ae_record(
    participant: Annotated[str, typer.Argument(help="Participant study id.")],
    term: Term = None, grade: Grade = None, onset: Onset = None,
    relatedness_product: RelProduct = None, relatedness_procedure: RelProcedure = None,
    user: UserReq = "", specify: Specify = None, meddra: Meddra = None,
    outcome: Outcome = "unknown", resolved: Resolved = None, serious: Serious = None,
    procedure: Procedure = None, action: Action = None, aware: Aware = None,
    time_zone: TimeZone = None, fold: Fold = None, db: DbOpt = None,
) -> None:
    """Record an adverse event: CTCAE term and grade, onset, causality (product and procedure
    judged separately), action taken; serious with its ICH E2A criteria and the time the site
    became aware. Grade 5 is fatal and serious (criterion death) and makes the participant
    died on the date of death (--resolved). Every problem is named."""
    _open(db)
    from hepatrial.trials.services import safety

    values = _values(term, specify, meddra, grade, onset, resolved, outcome, serious or [],
                     relatedness_product, relatedness_procedure, procedure, action, aware,
                     time_zone, fold)
    values.setdefault("serious", False)
    for k in ("term", "grade", "onset_date", "relatedness_product", "relatedness_procedure",
              "action_taken"):
        values.setdefault(k, None)
    ae = _run(safety.record_adverse_event, participant=participant, user=user or None,
              **values)
    typer.echo(f"recorded {_ae_line(ae)}")
    _status_line()


@ae_app.command("update")
def ae_update(
    event: IdArg, reason: Annotated[str, typer.Option(
        "--reason", help="Why (required to change a stored value; kept in the audit trail).")]
    = "", user: UserReq = "", term: Term = None, specify: Specify = None, meddra: Meddra = None,
    grade: Grade = None, onset: Onset = None, resolved: Resolved = None,
    outcome: Outcome = None, serious: Serious = None,
    not_serious: Annotated[bool, typer.Option("--not-serious",
                                              help="Not serious (no criteria).")] = False,
    relatedness_product: RelProduct = None, relatedness_procedure: RelProcedure = None,
    procedure: Procedure = None, action: Action = None, aware: Aware = None,
    time_zone: TimeZone = None, fold: Fold = None, db: DbOpt = None,
) -> None:
    """Follow up or correct an adverse event: only the options given change; the new state is
    judged by the same rules as a new event. The first entry of a value needs no reason."""
    _open(db)
    from hepatrial.trials.services import safety

    changes = _values(term, specify, meddra, grade, onset, resolved, outcome, serious,
                      relatedness_product, relatedness_procedure, procedure, action, aware,
                      time_zone, fold)
    if not_serious:
        changes.update(serious=False, seriousness_criteria=[])
    if not changes:
        _fail(_input_error("ae update: nothing to change (give the options to change)"))
    ae = _run(safety.update_adverse_event, event, reason=reason or None, user=user or None,
              **changes)
    typer.echo(f"updated {_ae_line(ae)}")
    _status_line()


def _input_error(text: str) -> Any:
    from hepatrial.errors import InputError

    return InputError(text)


@ae_app.command("list")
def ae_list(participant: Annotated[str | None, typer.Option(
        "--participant", help="Only this participant's events.")] = None,
        as_json: JsonOpt = False, db: DbOpt = None) -> None:  # fmt: skip
    """List the adverse events (by id)."""
    _open(db)
    from hepatrial.trials.models import AdverseEvent

    qs = AdverseEvent.objects.select_related("participant").order_by("pk")
    if participant:
        qs = qs.filter(participant__study_id=participant)
    rows = list(qs)
    if as_json:
        typer.echo(json.dumps([_ae_dict(a) for a in rows], indent=2, ensure_ascii=False))
        return
    for a in rows:
        typer.echo(_ae_line(a))
    if not rows:
        typer.echo("no adverse events")


@ae_app.command("show")
def ae_show(event: IdArg, as_json: JsonOpt = False, db: DbOpt = None) -> None:
    """One adverse event with its CTCAE coding, causality, expectedness and SAE chain."""
    _open(db)
    from hepatrial.trials.services import safety

    ae = _run(safety.adverse_event, event)
    d = _ae_dict(ae)
    d["sae_reports"] = [{"kind": r.kind, "submitted_at": r.submitted_at.isoformat(),
                         "deadline": r.deadline.isoformat() if r.deadline else None,
                         "on_time": r.on_time, "signed_by": r.printed_name}
                        for r in ae.sae_reports.order_by("submitted_at", "pk")]
    d["assessments"] = [{"assessor": a.assessor, "relatedness_product": a.relatedness_product,
                         "relatedness_procedure": a.relatedness_procedure,
                         "expectedness": a.expectedness, "susar": a.susar,
                         "signed_by": a.printed_name, "signed_at": a.signed_at.isoformat()}
                        for a in ae.sae_assessments.order_by("signed_at", "pk")]
    if as_json:
        typer.echo(json.dumps(d, indent=2, ensure_ascii=False))
        return
    for k, v in d.items():
        typer.echo(f"{k}: {v}")


@ae_app.command("terms")
def ae_terms(text: Annotated[str, typer.Argument(help="Part of a term, e.g. 'thromb'.")],
             soc: Annotated[str | None, typer.Option("--soc", help="Only this SOC.")] = None
             ) -> None:  # fmt: skip
    """Search the CTCAE v5.0 terms: MedDRA code, SOC, term, grades that exist."""
    from hepatrial.protocol import ctcae_terms as ct

    hits = [t for t in ct.search(text) if soc is None or t.soc.casefold() == soc.casefold()]
    for t in hits:
        typer.echo(f"{t.meddra_code}  {t.term}  [{t.soc}]  grades "
                   f"{','.join(map(str, t.allowed_grades))}")
    if not hits:
        typer.echo(f"no CTCAE v5.0 term contains {text!r}")
        raise typer.Exit(2)


@ae_app.command("grades")
def ae_grades(term: Annotated[str, typer.Argument(help="A CTCAE v5.0 term.")]) -> None:
    """The CTCAE v5.0 definition of each grade of a term (what --grade means)."""
    from hepatrial.protocol import ctcae_terms as ct

    with handled():
        t = ct.term(term)
    typer.echo(f"{t.term} (MedDRA {t.meddra_code}, {t.soc})")
    for g in range(1, 6):
        text = t.grades[g - 1]
        typer.echo(f"  grade {g}: {text if text is not None else '- (does not exist)'}")


@ae_app.command("proposals")
def ae_proposals(all_: Annotated[bool, typer.Option("--all", help="Also decided ones.")] = False,
                 as_json: JsonOpt = False, db: DbOpt = None) -> None:  # fmt: skip
    """The adverse events proposed from lab grades that rose from baseline, to confirm or
    dismiss (``hepatrial safety scan`` proposes them)."""
    _open(db)
    from hepatrial.trials.models.safety import LabAEProposal

    qs = LabAEProposal.objects.select_related("participant").order_by("pk")
    if not all_:
        qs = qs.filter(status="proposed")
    rows = [{"id": p.pk, "participant": p.participant.study_id, "term": p.term,
             "grade": p.grade, "baseline_grade": p.baseline_grade, "visit": p.visit_code,
             "specimen_date": str(p.specimen_date), "value": p.value, "unit": p.unit,
             "baseline_value": p.baseline_value, "status": p.status, "reason": p.reason}
            for p in qs]  # fmt: skip
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for r in rows:
        typer.echo(f"{r['id']} {r['participant']} {r['visit']} ({r['specimen_date']}): "
                   f"{r['term']} grade {r['grade']} (baseline grade {r['baseline_grade']}: "
                   f"{r['baseline_value']:g} -> {r['value']:g} {r['unit']}) {r['status']}")
    if not rows:
        typer.echo("no proposals")


@ae_app.command("confirm")
def ae_confirm(
    proposal: Annotated[int, typer.Argument(help="Proposal id (hepatrial ae proposals).")],
    user: UserReq, relatedness_product: RelProduct = None,
    relatedness_procedure: RelProcedure = None, action: Action = None,
    outcome: Outcome = "unknown", resolved: Resolved = None, serious: Serious = None,
    procedure: Procedure = None, grade: Grade = None, onset: Onset = None,
    aware: Aware = None, time_zone: TimeZone = None, fold: Fold = None, db: DbOpt = None,
) -> None:
    """Confirm a proposal as an adverse event (term, grade and onset from the lab unless
    given); the investigator judges its causality."""
    _open(db)
    from hepatrial.trials.services import safety

    values = _values(None, None, None, grade, onset, resolved, outcome, serious or [],
                     relatedness_product, relatedness_procedure, procedure, action, aware,
                     time_zone, fold)
    for k in ("relatedness_product", "relatedness_procedure", "action_taken"):
        values.setdefault(k, None)
    ae = _run(safety.confirm_lab_proposal, proposal, user=user, **values)
    typer.echo(f"proposal {proposal} confirmed: {_ae_line(ae)}")


@ae_app.command("dismiss")
def ae_dismiss(proposal: Annotated[int, typer.Argument(help="Proposal id.")], user: UserReq,
               reason: Annotated[str, typer.Option("--reason", help="Why (required).")] = "",
               db: DbOpt = None) -> None:  # fmt: skip
    """Dismiss a proposal with the investigator's reason."""
    _open(db)
    from hepatrial.trials.services import safety

    p = _run(safety.dismiss_lab_proposal, proposal, reason=reason, user=user)
    typer.echo(f"proposal {p.pk} dismissed: {p.reason}")


# ============================================================================ hepatrial sae
@sae_app.command("report")
def sae_report(
    event: IdArg,
    kind: Annotated[str, typer.Option("--kind", help="initial | follow_up | susar_7_day | "
                                      "susar_15_day | susar_follow_up.")],
    narrative: Annotated[str, typer.Option("--narrative", help="The report's narrative.")],
    user: UserReq,
    submitted: Annotated[str | None, typer.Option(
        "--submitted", help="When it was sent, 'YYYY-MM-DD HH:MM' (default now).")] = None,
    time_zone: TimeZone = None, fold: Fold = None,
    final: Annotated[bool, typer.Option("--final", help="The final follow-up (resolved).")]
    = False,
    meaning: Annotated[str | None, typer.Option("--meaning", help="Signature meaning.")] = None,
    password_stdin: PasswordStdin = False, db: DbOpt = None,
) -> None:
    """Sign and record one report of an SAE (password re-entered): its deadline and whether
    it met it are stored; the next report due is shown."""
    _open(db)
    from hepatrial.trials.services import safety

    password = read_password(password_stdin, confirm=False, command="hepatrial sae report ...")
    r = _run(safety.report_sae, event, kind=kind, narrative=narrative, user=user,
             password=password, submitted=submitted, time_zone=time_zone, fold=fold,
             final=final, meaning=meaning)
    late = "" if r.on_time is not False else " LATE"
    typer.echo(f"{r.kind} report of AE-{r.adverse_event_id} signed by {r.printed_name} "
               f"({r.signer_role}) at {r.signed_at:%Y-%m-%d %H:%M} UTC; submitted "
               f"{r.submitted_at:%Y-%m-%d %H:%M} UTC, due {_when(r.deadline)}{late}")
    _worklist(event)


@sae_app.command("assess")
def sae_assess(
    event: IdArg,
    assessor: Annotated[str, typer.Option("--as", help="investigator | sponsor.")],
    relatedness_product: RelProduct = None, relatedness_procedure: RelProcedure = None,
    comment: Annotated[str, typer.Option("--comment", help="The rationale (required).")] = "",
    user: UserReq = "", procedure: Procedure = None,
    expectedness: Annotated[str | None, typer.Option(
        "--expectedness", help="Sponsor: expected | unexpected (reference safety "
        "information).")] = None,
    password_stdin: PasswordStdin = False, db: DbOpt = None,
) -> None:
    """Sign the investigator's or the sponsor's causality assessment of an SAE (and the
    sponsor's expectedness); the SUSAR decision is shown."""
    _open(db)
    from hepatrial.trials.services import safety

    password = read_password(password_stdin, confirm=False, command="hepatrial sae assess ...")
    a = _run(safety.assess_sae, event, assessor=assessor,
             relatedness_product=relatedness_product,
             relatedness_procedure=relatedness_procedure, procedure=procedure,
             expectedness=expectedness, comment=comment, user=user, password=password)
    typer.echo(f"{a.assessor} assessment of AE-{a.adverse_event_id} signed by "
               f"{a.printed_name}: product {a.relatedness_product}, procedure "
               f"{a.relatedness_procedure}, expectedness {a.expectedness or '-'}; "
               f"{'SUSAR' if a.susar else 'not a SUSAR'}")
    _worklist(event)


def _when(t: Any) -> str:
    return "-" if t is None else f"{t:%Y-%m-%d %H:%M} UTC"


def _worklist(event: str | None = None, *, overdue: bool = False,
              as_json: bool = False) -> None:  # fmt: skip
    from hepatrial.trials.services import safety

    cases = safety.sae_worklist(overdue_only=overdue)
    if event is not None:
        ae = safety.adverse_event(event)
        cases = [c for c in cases if c["adverse_event"].pk == ae.pk]
    if as_json:
        out = [{"id": c["id"], "participant": c["participant_id"], "term": c["term"],
                "grade": c["grade"], "susar": c["susar"],
                "fatal_or_life_threatening": c["fatal_or_life_threatening"],
                "problem": c["problem"],
                "reports": [{"kind": r["kind"], "due_date": str(r["due_date"]),
                             "deadline": r["deadline"].isoformat(), "status": r["status"],
                             "submitted_at": None if r["submitted_at"] is None
                             else r["submitted_at"].isoformat(), "basis": r["basis"]}
                            for r in c["reports"]]} for c in cases]  # fmt: skip
        typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    for c in cases:
        flag = " SUSAR" if c["susar"] else ""
        typer.echo(f"{c['id']} {c['participant_id']}: {c['term']} grade {c['grade']}{flag}")
        if c["problem"]:
            typer.echo(f"    {c['problem']}")
        for r in c["reports"]:
            status = "OVERDUE" if r["status"] == "overdue" else r["status"]
            typer.echo(f"    {r['kind']:<16} due {r['due_date']} ({_when(r['deadline'])}): "
                       f"{status}")
    if not cases:
        typer.echo("no overdue SAE reports" if overdue else "no serious adverse events")


@sae_app.command("list")
def sae_list(overdue: Annotated[bool, typer.Option("--overdue", help="Only overdue reports.")]
             = False, as_json: JsonOpt = False, db: DbOpt = None) -> None:  # fmt: skip
    """The SAE worklist: every report each serious adverse event owes, its due date and
    status (submitted, late, pending, OVERDUE)."""
    _open(db)
    _worklist(overdue=overdue, as_json=as_json)


@sae_app.command("form")
def sae_form(event: IdArg, out: Annotated[Path, typer.Option("-o", "--out", help="Folder.")],
             pdf: Annotated[bool, typer.Option("--pdf/--no-pdf", help="Also the PDF.")] = True,
             db: DbOpt = None) -> None:  # fmt: skip
    """Write the CIOMS-I-style form of an adverse event (HTML, and PDF)."""
    _open(db)
    from hepatrial.report import sae_form as form
    from hepatrial.trials import selectors
    from hepatrial.trials.services import active_protocol, safety

    ae = _run(safety.adverse_event, event)
    data = form.SaeForm.from_dict(selectors.sae_form_record(ae.pk, active_protocol()))
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"sae_form_{data.report_id}"
    html = stem.with_suffix(".html")
    form.write_text(html, form.render_sae_form_html(data))
    typer.echo(f"wrote {html}")
    if pdf:
        p = stem.with_suffix(".pdf")
        p.write_bytes(form.render_sae_form_pdf(data))
        typer.echo(f"wrote {p}")


# ============================================================================ hepatrial safety
def _status_line() -> None:
    from hepatrial.trials.services import safety

    st = safety.safety_status()
    if st.error:
        typer.secho(f"stopping rules: {st.error}", fg=typer.colors.RED, err=True)
    elif st.pausing_rules:
        typer.echo(f"stopping rules: paused by {', '.join(st.pausing_rules)} "
                   f"(hepatrial safety status)")


def _status_text(st: Any, protocol: Any) -> list[str]:
    plan = protocol.safety
    tz = plan.reporting.tz if plan is not None else None
    if st.evaluation is None and st.error is None:
        return [f"protocol {protocol.name}: no [safety] section, no stopping rules"]
    lines = []
    if st.evaluation is not None:
        at = st.evaluation.as_of
        lines.append(f"stopping rules of {protocol.name} as of {at:%Y-%m-%d %H:%M} UTC "
                     f"({at.astimezone(tz):%Y-%m-%d %H:%M} {tz})")
    if st.error:
        lines.append(f"ERROR: {st.error}: dosing and enrolment are paused until it is fixed")
    for r in st.rules:
        latched = r.rule_id in st.latched
        if r.paused or latched:
            since = r.since or None
            state = "PAUSED" + (f" since {since:%Y-%m-%d %H:%M} UTC" if since else "") + (
                " (latched until a signed DSMB decision)" if latched and not r.paused else "")
        elif r.triggered:
            state = "triggered, resumed"
        else:
            state = "not triggered"
        lines.append(f"  {r.rule_id:<14} {r.kind:<9} {state}")
        lines.append(f"      {r.text}")
        for x in r.reasons:
            lines.append(f"      - {x}")
        for x in r.undetermined:
            lines.append(f"      ? {x}")
    if st.evaluation is not None and st.evaluation.uncoded_events:
        lines.append("  uncoded adverse events (match no term rule): "
                     + "; ".join(st.evaluation.uncoded_events))
    if not st.pausing_rules and st.error is None:
        lines.append("no stopping rule triggered: enrolment and dosing allowed")
    else:
        lines.append("enrolment: " + ("allowed" if st.enrolment_allowed else
                                      f"PAUSED ({', '.join(st.enrolment_pausing_rules)})"))
        lines.append("dosing: " + ("allowed" if st.dosing_allowed else
                                   f"PAUSED ({', '.join(st.pausing_rules) or 'error'})"))
    return lines


def _oc(protocol: Any) -> dict[str, Any]:
    """The operating characteristics of the plan's stopping rules (exact; Thall & Simon 1994)
    for ``planned_treated`` participants at the true rates of participants with a related SAE
    of the DSMB report (:data:`hepatrial.report.dsmb.DEFAULT_OC_RATES`), and each Bayesian
    rule's boundary."""
    from hepatrial.protocol import safety as ps
    from hepatrial.report.dsmb import DEFAULT_OC_RATES as OC_RATES

    plan = protocol.safety
    sets = ps.plan_operating_characteristics(plan, OC_RATES)
    return {
        "planned_treated": plan.planned_treated,
        "boundaries": {r.id: list(r.boundary(plan.planned_treated)) for r in
                       plan.stopping_rules if isinstance(r, ps.BayesianRule)},
        "sets": {k: [{"rate": rate, "prob_stop": round(o.prob_stop, 6),
                      "expected_treated": round(o.expected_treated, 4)}
                     for rate, o in zip(OC_RATES, v, strict=True)] for k, v in sets.items()},
    }


@safety_app.command("status")
def safety_status(as_json: JsonOpt = False, oc: Annotated[bool, typer.Option(
        "--oc", help="Also the rules' operating characteristics and Bayesian boundaries.")]
        = False, db: DbOpt = None) -> None:  # fmt: skip
    """Evaluate the protocol's stopping rules now (and latch and notify a new pause, as every
    write does): each rule's state with its reasons; whether enrolment and dosing are
    allowed. Exit 0 either way (a pause is a state, not an error)."""
    _open(db)
    from hepatrial.trials.services import active_protocol, safety

    st = _run(safety.refresh_safety_status)
    protocol = active_protocol()
    chars = _oc(protocol) if oc and protocol.safety is not None else None
    if as_json:
        out = st.as_dict()
        if chars is not None:
            out["operating_characteristics"] = chars
        typer.echo(json.dumps(out, indent=2, ensure_ascii=False, sort_keys=True))
        return
    for line in _status_text(st, protocol):
        typer.echo(line)
    if chars is not None:
        n = chars["planned_treated"]
        for rid, b in chars["boundaries"].items():
            least = ", ".join("-" if x > i + 1 else str(x) for i, x in enumerate(b))
            typer.echo(f"{rid} pauses after n treated (n = 1..{n}) at x participants with the "
                       f"event >= {least}")
        typer.echo(f"operating characteristics ({n} planned), true rate of participants with "
                   "a related SAE -> P(stop), expected treated:")
        for name, rows in chars["sets"].items():
            label = ("all rules" if name == "all" else name.split(":", 1)[1] + " alone"
                     + (" (rate of its own event)" if name.startswith("rule:") else ""))
            typer.echo(f"  {label}: " + "; ".join(
                f"{r['rate']:.2f} -> {r['prob_stop']:.3f}, {r['expected_treated']:.2f}"
                for r in rows))


DecidedAt = Annotated[str | None, typer.Option(
    "--decided-at", help="When the DSMB decided (its meeting or review), ISO 8601 with a time "
    "zone, e.g. 2008-02-02T12:00:00+00:00; default now. The signature keeps the time it is "
    "signed; the stopping rules count the decision from this time.")]


@safety_app.command("resume")
def safety_resume(
    rule: Annotated[str, typer.Argument(help="Stopping rule id, e.g. SR-DEATH-SAE.")],
    decision: Annotated[str, typer.Option("--decision", help="The DSMB's decision and its "
                                          "reason (required; kept with the signature).")],
    user: UserReq,
    modified: Annotated[bool, typer.Option(
        "--modified", help="Resume with a protocol modification.")] = False,
    decided_at: DecidedAt = None,
    password_stdin: PasswordStdin = False, db: DbOpt = None,
) -> None:
    """Resume a paused stopping rule by a signed DSMB decision (a DSMB member re-enters the
    password). Refused, naming why, for a rule that does not pause or was terminated."""
    _open(db)
    from hepatrial.trials.services import safety

    password = read_password(password_stdin, confirm=False, command="hepatrial safety resume ...")
    d = _run(safety.resume_stopping_rule, rule, decision=decision, user=user,
             password=password, modified=modified, at=decided_at)
    typer.echo(f"{d.rule_id} resumed by DSMB decision DSMB-{d.pk} ({d.decision}), signed by "
               f"{d.printed_name} at {d.signed_at:%Y-%m-%d %H:%M} UTC: {d.reason}")
    st = safety.safety_status()
    typer.echo("enrolment " + ("allowed" if st.enrolment_allowed else "still PAUSED by "
                               + ", ".join(st.enrolment_pausing_rules))
               + "; dosing " + ("allowed" if st.dosing_allowed else "still PAUSED by "
                                + ", ".join(st.pausing_rules)))


@safety_app.command("decide")
def safety_decide(
    rule: Annotated[str, typer.Argument(help="Stopping rule id.")],
    decision: Annotated[str, typer.Option("--decision", help="resume | resume_modified | "
                                          "continue_pause | terminate.")],
    reason: Annotated[str, typer.Option("--reason", help="The DSMB's reason (required).")],
    user: UserReq, decided_at: DecidedAt = None, password_stdin: PasswordStdin = False,
    db: DbOpt = None,
) -> None:
    """Record any signed DSMB decision on a stopping rule (``terminate`` pauses it for good)."""
    _open(db)
    from hepatrial.trials.services import safety

    password = read_password(password_stdin, confirm=False, command="hepatrial safety decide ...")
    d = _run(safety.record_dsmb_decision, rule_id=rule, decision=decision, reason=reason,
             user=user, password=password, at=decided_at)
    typer.echo(f"DSMB decision DSMB-{d.pk} on {d.rule_id}: {d.decision}, signed by "
               f"{d.printed_name}: {d.reason}")


@safety_app.command("scan")
def safety_scan(user: UserOpt = None, as_json: JsonOpt = False, db: DbOpt = None) -> None:
    """Propose adverse events from lab grades that rose from baseline (every participant),
    evaluate the stopping rules and list the overdue SAE reports."""
    _open(db)
    from hepatrial.trials.models import Participant
    from hepatrial.trials.services import active_protocol, safety

    new = []
    for p in Participant.objects.order_by("study_id"):
        new += _run(safety.propose_lab_adverse_events, p, user=user)
    st = _run(safety.refresh_safety_status, user=user)
    overdue = safety.sae_worklist(overdue_only=True)
    if as_json:
        typer.echo(json.dumps({
            "new_proposals": [{"id": x.pk, "participant": x.participant.study_id,
                               "term": x.term, "grade": x.grade, "visit": x.visit_code}
                              for x in new],
            "status": st.as_dict(),
            "overdue": [{"id": c["id"], "reports": [r["kind"] for r in c["reports"]]}
                        for c in overdue]}, indent=2, ensure_ascii=False, sort_keys=True))
        return
    typer.echo(f"{len(new)} new lab-derived adverse event proposal(s)")
    for x in new:
        typer.echo(f"  {x.pk} {x.participant.study_id} {x.visit_code}: {x.term} grade {x.grade} "
                   f"(baseline grade {x.baseline_grade})")
    for line in _status_text(st, active_protocol()):
        typer.echo(line)
    for c in overdue:
        typer.echo(f"OVERDUE: {c['id']} {', '.join(r['kind'] for r in c['reports'])}")


@safety_app.command("notifications")
def safety_notifications(send_pending: Annotated[bool, typer.Option(
        "--send-pending", help="Send the notifications still pending.")] = False,
        as_json: JsonOpt = False, db: DbOpt = None) -> None:  # fmt: skip
    """The safety notifications written (who, what, delivery status)."""
    _open(db)
    from hepatrial.trials.models.safety import SafetyNotification
    from hepatrial.trials.services import safety

    if send_pending:
        typer.echo(f"{safety.deliver_pending()} pending notification(s) sent")
    rows = [{"id": n.pk, "key": n.key, "event": n.event, "subject": n.subject,
             "status": n.status, "recipients": n.recipients, "error": n.error,
             "sent_at": None if n.sent_at is None else n.sent_at.isoformat()}
            for n in SafetyNotification.objects.order_by("pk")]  # fmt: skip
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for r in rows:
        to = "; ".join(f"{k}: {', '.join(v) or '(no address)'}" for k, v in r["recipients"].items())
        typer.echo(f"{r['id']} {r['status']:<10} {r['subject']} -> {to}"
                   + (f" [{r['error']}]" if r["error"] else ""))
    if not rows:
        typer.echo("no notifications")


# ============================================================================ hepatrial dsmb
@dsmb_app.command("report")
def dsmb_report(
    out: Annotated[Path, typer.Option("-o", "--out", help="Folder of the reports.")],
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="Data-cut date YYYY-MM-DD (default today in the trial's time zone).")]
    = None,
    stem: Annotated[str, typer.Option("--stem", help="File name stem.")] = "dsmb",
    db: DbOpt = None,
) -> None:
    """Write the DSMB's open and closed reports (HTML, Word, tables as CSV) from the store:
    stopping-rule status and operating characteristics, enrolment, exposure, visit
    completeness, AEs by SOC and term, SAE listing, deaths, Kaplan-Meier time to the first
    related adverse event."""
    import datetime as _dt

    where = _open(db)
    from hepatrial.errors import InputError
    from hepatrial.ingest.export import trial_data
    from hepatrial.report.dsmb import write_dsmb_report
    from hepatrial.trials import selectors
    from hepatrial.trials.services import active_protocol

    protocol = _run(active_protocol)
    if as_of:
        try:
            cut = _dt.date.fromisoformat(as_of)
        except ValueError:
            _fail(InputError(f"--as-of: {as_of!r} is not a date (YYYY-MM-DD)"))
    else:
        tz = protocol.safety.reporting.tz if protocol.safety is not None else _dt.UTC
        cut = _dt.datetime.now(tz).date()
    data = trial_data()
    safety = selectors.safety_data(protocol)
    details = selectors.ae_details_frame()
    paths = _run(write_dsmb_report, data, safety, protocol, out, as_of=cut, stem=stem,
                 ae_details=details)
    typer.echo(f"DSMB reports of {where} as of {cut}:")
    for key in ("open_html", "open_docx", "closed_html", "closed_docx"):
        if key in paths:
            typer.echo(f"  {paths[key]}")
    from hepatrial.protocol import safety as ps

    if protocol.safety is not None:
        st = ps.evaluate_stopping_rules(protocol, safety, cut)
        typer.echo("stopping rules: " + (f"paused by {', '.join(st.pausing_rules)}"
                                         if st.pausing_rules else "no stopping rule triggered"))


def register(app: typer.Typer) -> None:
    """Add ``ae``, ``sae``, ``safety`` and ``dsmb`` to the ``hepatrial`` command."""
    app.add_typer(ae_app, name="ae")
    app.add_typer(sae_app, name="sae")
    app.add_typer(safety_app, name="safety")
    app.add_typer(dsmb_app, name="dsmb")
