"""``hepatrial lock|unlock|sign`` and ``hepatrial audit signatures``: locks and e-signatures.

Locks (visit, casebook, the whole trial) refuse every write to what they cover until unlocked
with a reason; only data managers and admins lock and unlock. An investigator signs a visit or
a casebook by re-entering the password (21 CFR 11.200): ``--password-stdin`` reads it from
standard input, so scripts need no terminal. Refusals exit non-zero with the reason
(:mod:`hepatrial.cli._errors`: 3 not allowed, 4 wrong password, 5 locked).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from hepatrial.cli._errors import handled
from hepatrial.cli.store import DbOpt, _open, read_password

lock_app = typer.Typer(
    name="lock", help="Lock a visit, a casebook or the trial.", no_args_is_help=True
)
unlock_app = typer.Typer(
    name="unlock", help="Unlock a visit, a casebook or the trial (with a reason).",
    no_args_is_help=True,
)  # fmt: skip
sign_app = typer.Typer(
    name="sign", help="E-sign a visit or a casebook (password re-entered).", no_args_is_help=True
)

UserReq = Annotated[str, typer.Option("--user", help="Who does it (a named account).")]
ParticipantArg = Annotated[str, typer.Argument(help="Participant study id.", show_default=False)]
VisitArg = Annotated[str, typer.Argument(help="Visit code (e.g. W1).", show_default=False)]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (kept in the audit trail).")]
ReasonReq = Annotated[
    str, typer.Option("--reason", help="Why it is unlocked (required; kept in the audit trail).")
]
MeaningReq = Annotated[
    str,
    typer.Option(
        "--meaning",
        help="What the signature means, e.g. 'I reviewed and approve these data' (11.50).",
    ),
]
PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of standard input (no terminal needed: "
        "printf '%s\\n' \"$PW\" | hepatrial sign ... --password-stdin).",
    ),
]


def _utc(dt: Any) -> str:
    import datetime as _dt

    return dt.astimezone(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _do_lock(db: Any, level: str, participant: str | None, visit: str | None, user: str,
             reason: str) -> None:  # fmt: skip
    _open(db)
    from hepatrial.trials import services
    from hepatrial.trials.audit.locks import describe_lock

    with handled():
        lock = services.lock(level=level, participant=participant, visit_code=visit, user=user,
                             reason=reason)  # fmt: skip
    typer.echo(describe_lock(lock).replace(" is locked (", " locked (", 1))


def _do_unlock(db: Any, level: str, participant: str | None, visit: str | None, user: str,
               reason: str) -> None:  # fmt: skip
    _open(db)
    from hepatrial.trials import services

    with handled():
        lock = services.unlock(level=level, participant=participant, visit_code=visit,
                               user=user, reason=reason)  # fmt: skip
    what = {"trial": "the trial", "participant": f"the casebook of participant {participant}",
            "visit": f"visit {visit} of participant {participant}"}[level]  # fmt: skip
    typer.echo(f"{what} unlocked (lock {lock.pk}, by {user} at {_utc(lock.unlocked_at)}: "
               f"{lock.unlock_reason!r})")  # fmt: skip


@lock_app.command("visit")
def lock_visit(participant: ParticipantArg, visit: VisitArg, user: UserReq,
               reason: ReasonOpt = "", db: DbOpt = None) -> None:  # fmt: skip
    """Lock one visit of a participant: its visit record, labs and clinical assessment."""
    _do_lock(db, "visit", participant, visit, user, reason)


@lock_app.command("participant")
def lock_participant(participant: ParticipantArg, user: UserReq, reason: ReasonOpt = "",
                     db: DbOpt = None) -> None:  # fmt: skip
    """Lock a participant's casebook: every record of the participant."""
    _do_lock(db, "participant", participant, None, user, reason)


@lock_app.command("trial")
def lock_trial(user: UserReq, reason: ReasonOpt = "", db: DbOpt = None) -> None:
    """Lock the whole trial (database lock before analysis): every trial record."""
    _do_lock(db, "trial", None, None, user, reason)


@unlock_app.command("visit")
def unlock_visit(participant: ParticipantArg, visit: VisitArg, reason: ReasonReq,
                 user: UserReq, db: DbOpt = None) -> None:  # fmt: skip
    """Unlock a locked visit, with a reason."""
    _do_unlock(db, "visit", participant, visit, user, reason)


@unlock_app.command("participant")
def unlock_participant(participant: ParticipantArg, reason: ReasonReq, user: UserReq,
                       db: DbOpt = None) -> None:  # fmt: skip
    """Unlock a locked casebook, with a reason."""
    _do_unlock(db, "participant", participant, None, user, reason)


@unlock_app.command("trial")
def unlock_trial(reason: ReasonReq, user: UserReq, db: DbOpt = None) -> None:
    """Unlock the trial, with a reason."""
    _do_unlock(db, "trial", None, None, user, reason)


def _do_sign(db: Any, level: str, participant: str, visit: str | None, meaning: str, user: str,
             password_stdin: bool) -> None:  # fmt: skip
    _open(db)
    from hepatrial.trials import services

    password = read_password(password_stdin, confirm=False, command="hepatrial sign ...")
    with handled():
        sig = services.sign(level=level, participant=participant, visit_code=visit,
                            meaning=meaning, user=user, password=password)  # fmt: skip
    what = (f"visit {visit} of participant {participant}" if level == "visit"
            else f"the casebook of participant {participant}")  # fmt: skip
    typer.echo(
        f"{what} signed by {sig.printed_name} ({sig.role}) at {_utc(sig.signed_at)}: "
        f"{sig.meaning!r} (signature {sig.pk}: {len(sig.manifest)} records, ledger seq "
        f"{sig.ledger_seq})"
    )


@sign_app.command("visit")
def sign_visit(participant: ParticipantArg, visit: VisitArg, meaning: MeaningReq,
               user: UserReq, password_stdin: PasswordStdin = False,
               db: DbOpt = None) -> None:  # fmt: skip
    """Sign one visit (the visit and every record of it) as USER, re-entering the password."""
    _do_sign(db, "visit", participant, visit, meaning, user, password_stdin)


@sign_app.command("participant")
def sign_participant(participant: ParticipantArg, meaning: MeaningReq, user: UserReq,
                     password_stdin: PasswordStdin = False,
                     db: DbOpt = None) -> None:  # fmt: skip
    """Sign a participant's casebook (every record of the participant), re-entering the
    password."""
    _do_sign(db, "participant", participant, None, meaning, user, password_stdin)


def audit_signatures(
    participant: Annotated[
        str | None, typer.Option("--participant", help="Only this participant's signatures.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
    db: DbOpt = None,
) -> None:
    """List the e-signatures, each with its status now: valid, or invalidated by change seq N.

    N is the first audit-ledger entry that changed a signed record after signing.
    """
    _open(db)
    from hepatrial.trials import services

    with handled():
        rows = services.signatures(participant)
    out = [
        {
            "id": s.pk,
            "level": s.level,
            "participant": s.participant.study_id,
            "visit": s.visit.code if s.visit_id else None,
            "signer": s.signer.get_username(),
            "printed_name": s.printed_name,
            "role": s.role,
            "meaning": s.meaning,
            "signed_at": _utc(s.signed_at),
            "ledger_seq": s.ledger_seq,
            "records": len(s.manifest),
            "status": str(st),
            "valid": st.valid,
            "change_seq": st.change_seq,
        }
        for s, st in rows
    ]
    if as_json:
        typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="e-signatures" + (f" of {participant}" if participant else ""))
    for col in ("id", "signed", "signed by", "meaning", "when", "records", "status"):
        table.add_column(col, overflow="fold")
    for r in out:
        table.add_row(
            str(r["id"]),
            f"{r['participant']} {r['visit']}" if r["visit"] else f"{r['participant']} casebook",
            f"{r['printed_name']} ({r['signer']}, {r['role']})",
            r["meaning"],
            r["signed_at"],
            str(r["records"]),
            r["status"],
        )
    Console(width=200).print(table)
    typer.echo(f"{len(out)} signatures, {sum(not r['valid'] for r in out)} not valid")


def _group(app: typer.Typer, name: str) -> typer.Typer | None:
    for info in app.registered_groups:
        if info.name == name and info.typer_instance is not None:
            return info.typer_instance
    return None


def register(app: typer.Typer) -> None:
    """Add ``lock``, ``unlock``, ``sign`` and ``audit signatures`` to ``app``."""
    from hepatrial.cli.store import audit_app

    app.add_typer(lock_app, name="lock")
    app.add_typer(unlock_app, name="unlock")
    app.add_typer(sign_app, name="sign")
    if not any(c.name == "signatures" for c in audit_app.registered_commands):
        audit_app.command("signatures")(audit_signatures)
    if _group(app, "audit") is None:  # store's ``audit`` group, whichever registers first
        app.add_typer(audit_app, name="audit")
