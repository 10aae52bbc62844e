"""``hepatrial init|serve|user|site|audit``: the trial store (Django) from the command line.

The database is ``--db PATH`` (SQLite, default ``./hepatrial.sqlite3``) unless the environment
variable ``HEPATRIAL_DATABASE_URL=postgresql://user@host:port/name`` is set.
Writes made here are attributed to ``--user NAME`` or to the built-in ``system`` account.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

DbOpt = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="SQLite file (default ./hepatrial.sqlite3); ignored when HEPATRIAL_DATABASE_URL "
        "is set.",
    ),
]
UserOpt = Annotated[
    str | None, typer.Option("--user", help="Acting username (default: the system account).")
]

user_app = typer.Typer(name="user", help="Manage accounts and their roles.", no_args_is_help=True)
site_app = typer.Typer(name="site", help="Manage sites.", no_args_is_help=True)
audit_app = typer.Typer(name="audit", help="Read and verify the audit trail.", no_args_is_help=True)


def _err(msg: str) -> None:
    typer.secho(msg, fg=typer.colors.RED, err=True)


def _open(db: Path | None, *, migrate: bool = False) -> str:
    from hepatrial.trials import setup

    where = setup(db)
    if migrate:
        from hepatrial.trials import migrate as do_migrate

        do_migrate()
    else:
        from django.db import connection
        from django.db.migrations.executor import MigrationExecutor

        executor = MigrationExecutor(connection)
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            _err(f"database {where} is not initialised or not up to date: run `hepatrial init`")
            raise typer.Exit(2)
    return where


def _acting_user(username: str | None) -> Any:
    from django.contrib.auth import get_user_model

    from hepatrial.trials import services

    if username is None:
        return services.system_user()
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        _err(f"--user: no account {username!r}")
        raise typer.Exit(2)
    return user


def init(
    protocol: Annotated[
        str | None,
        typer.Option(
            "--protocol",
            help="Built-in protocol name or TOML file (default kharaziha2009 for a new store).",
        ),
    ] = None,
    db: DbOpt = None,
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Why the protocol changes (needed for a new version)."),
    ] = None,
    user: UserOpt = None,
) -> None:
    """Create or upgrade the database and load the protocol (sites, arms, randomisation list).

    Re-running with the same protocol changes nothing; another version needs --reason.
    """
    where = _open(db, migrate=True)
    from hepatrial.trials import services
    from hepatrial.trials.base import ChangeReasonRequired
    from hepatrial.trials.models import TrialConfig

    if protocol is None and TrialConfig.objects.exists():
        cfg = TrialConfig.objects.order_by("pk").first()
        typer.echo(f"{where}: schema up to date; protocol {cfg} unchanged")
        return
    try:
        cfg, action = services.install_protocol(
            protocol or "kharaziha2009", user=_acting_user(user), reason=reason
        )
    except ChangeReasonRequired as exc:
        _err(f"error: {exc} (pass --reason)")
        raise typer.Exit(1) from None
    except (services.StoreError, LookupError, ValueError) as exc:
        _err(f"error: {exc}")
        raise typer.Exit(1) from None
    typer.echo(f"{where}: protocol {cfg.name} v{cfg.version} {action} (sha256 {cfg.content_hash})")


def serve(
    db: DbOpt = None,
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    threads: Annotated[int, typer.Option("--threads", help="Worker threads.", min=1)] = 8,
    dev: Annotated[
        bool, typer.Option("--dev", help="Django's development server instead (not for use).")
    ] = False,
) -> None:
    """Serve the eCRF (/), the API (/api/v1/) and the admin (/admin/) with a production WSGI
    server (waitress; static files by WhiteNoise).

    Host names, trusted origins, HTTPS and the secret key come from HEPATRIAL_ALLOWED_HOSTS,
    HEPATRIAL_CSRF_TRUSTED_ORIGINS, HEPATRIAL_HTTPS and HEPATRIAL_SECRET_KEY.
    """
    where = _open(db)
    if dev:
        from django.core.management import call_command

        typer.echo(f"development server for {where} at http://{host}:{port}/ (Ctrl-C to stop)")
        call_command("runserver", f"{host}:{port}", use_reloader=False, use_threading=True,
                     insecure_serving=True, skip_checks=False)
        return
    import waitress
    from django.core.wsgi import get_wsgi_application

    from hepatrial.trials.conf import ENV_PROXY

    app = get_wsgi_application()
    # X-Forwarded-* headers are believed only from the configured reverse proxy (waitress drops
    # them from anyone else): behind a TLS-terminating proxy the request is then seen as HTTPS.
    proxy = os.environ.get(ENV_PROXY, "").strip()
    behind = {"trusted_proxy": proxy, "trusted_proxy_count": 1,
              "trusted_proxy_headers": "x-forwarded-proto x-forwarded-for x-forwarded-host"
              } if proxy else {}
    typer.echo(f"serving {where} at http://{host}:{port}/ with waitress ({threads} threads"
               + (f"; behind the proxy at {proxy}" if proxy else "") + "; Ctrl-C to stop)",
               err=True)
    waitress.serve(app, host=host, port=port, threads=threads, ident="hepatrial",
                   clear_untrusted_proxy_headers=True, **behind)


NO_TERMINAL_HINT = (
    "no terminal to ask for the password: give it on standard input with --password-stdin, "
    "e.g.  printf '%s\\n' \"$PASSWORD\" | {command} --password-stdin"
)


def read_password(password_stdin: bool, *, confirm: bool, command: str) -> str:
    """The password: the first line of standard input with ``--password-stdin``, else asked
    on the terminal (hidden; twice when ``confirm``). Without a terminal and without
    ``--password-stdin`` the command stops (exit 2) and says how to pass it."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            _err("error: --password-stdin: standard input is empty (one line: the password)")
            raise typer.Exit(2)
        return password
    if not sys.stdin.isatty():
        _err("error: " + NO_TERMINAL_HINT.format(command=command))
        raise typer.Exit(2)
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=confirm))


@user_app.command("add")
def user_add(
    username: Annotated[str, typer.Argument(help="Login name.")],
    site: Annotated[
        list[str] | None,
        typer.Option("--site", help="Site code the user works for (repeat for several)."),
    ] = None,
    role: Annotated[
        str | None,
        typer.Option(
            "--role",
            help="coordinator | investigator | monitor | data-manager | qa | auditor | admin "
            "(default coordinator; admin with --superuser).",
        ),
    ] = None,
    printed_name: Annotated[
        str,
        typer.Option("--printed-name", help="Name shown on the user's e-signatures (11.50)."),
    ] = "",
    superuser: Annotated[bool, typer.Option("--superuser", help="The admin role.")] = False,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read the password from the first line of standard input, so no terminal is "
            "needed: printf '%s\\n' \"$PASSWORD\" | hepatrial user add NAME ... "
            "--password-stdin",
        ),
    ] = False,
    db: DbOpt = None,
    user: UserOpt = None,
) -> None:
    """Create an account with a role: e.g. --role investigator --site S01.

    Site-scoped roles (coordinator, investigator, monitor, qa) need --site; data-manager,
    auditor and admin act on every site. The password is asked on the terminal, or read from
    standard input with --password-stdin (scripts, CI: no terminal needed).
    """
    from hepatrial.cli._errors import handled

    _open(db)
    from hepatrial.trials import services

    acting = _acting_user(user)
    password = read_password(password_stdin, confirm=True,
                             command=f"hepatrial user add {username} ...")  # fmt: skip
    with handled():
        new = services.create_user(
            username=username,
            password=password,
            site_codes=list(site or []),
            superuser=superuser,
            role=role,
            printed_name=printed_name,
            user=acting,
        )
    got = services.role_of(new)
    where = f" for {', '.join(site)}" if site else ", all sites"
    typer.echo(f"user {new.username} created ({got}{where})")


@user_app.command("reactivate")
def user_reactivate(
    username: Annotated[str, typer.Argument(help="Login name.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit trail).")],
    db: DbOpt = None,
    user: UserOpt = None,
) -> None:
    """Reactivate an account (e.g. deactivated after 5 wrong signature passwords)."""
    from hepatrial.cli._errors import handled

    _open(db)
    from hepatrial.trials import services

    acting = _acting_user(user)
    with handled():
        services.reactivate_user(user_account=username, reason=reason, user=acting)
    typer.echo(f"user {username} reactivated")


@user_app.command("password")
def user_password(
    username: Annotated[str, typer.Argument(help="Login name of the account.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why the password changes (kept in the audit trail).")
    ],
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read the new password from the first line of standard input (no terminal "
            "needed): printf '%s\\n' \"$PASSWORD\" | hepatrial user password NAME --reason "
            "TEXT --password-stdin",
        ),
    ] = False,
    db: DbOpt = None,
    user: UserOpt = None,
) -> None:
    """Set a new password for an account (a reset by an administrator, or the holder's own
    change with --user NAME), with a reason; audited."""
    from hepatrial.cli._errors import handled

    _open(db)
    from hepatrial.trials.services import accounts

    acting = _acting_user(user)
    with handled():
        accounts.account(username)  # an unknown name is refused before asking
    password = read_password(password_stdin, confirm=True,
                             command=f"hepatrial user password {username} --reason ...")
    with handled():
        accounts.change_password(user_account=username, password=password, reason=reason,
                                 user=acting)
    typer.echo(f"password of {username} changed")


@user_app.command("unlock")
def user_unlock(
    username: Annotated[str, typer.Argument(help="Login name of the account.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit trail).")],
    db: DbOpt = None,
    user: UserOpt = None,
) -> None:
    """Reset the lockout of an account after repeated failed sign-ins (django-axes); audited."""
    from hepatrial.cli._errors import handled

    _open(db)
    from hepatrial.trials.services import accounts

    acting = _acting_user(user)
    with handled():
        n = accounts.unlock_account(user_account=username, reason=reason, user=acting)
    if n:
        typer.echo(f"user {username} unlocked ({n} failed sign-in record(s) cleared)")
    else:
        typer.echo(f"user {username} was not locked out (nothing changed)")


@user_app.command("token")
def user_token(
    username: Annotated[str, typer.Argument(help="Login name of the account.")],
    expires: Annotated[
        int | None,
        typer.Option("--expires", metavar="DAYS", min=1, max=3650,
                     help="Days the new token is valid (default 90, at most 3650)."),
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option("--reason",
                     help="Why (kept in the audit trail): optional for a new token, required "
                     "with --revoke."),
    ] = None,
    revoke: Annotated[
        int | None,
        typer.Option("--revoke", metavar="ID", help="Revoke the account's token ID (see --list)."),
    ] = None,
    list_: Annotated[
        bool, typer.Option("--list", help="List the account's tokens (id, start, dates, status).")
    ] = False,
    db: DbOpt = None,
    user: UserOpt = None,
) -> None:
    """Make a REST API token for an account (its last word printed; shown once, stored only as
    a hash), --list its tokens, or --revoke ID one with --reason. Audited.

    The token acts as the account (its role and sites) with 'Authorization: Bearer TOKEN' on
    /api/v1/, e.g. TOKEN=$(hepatrial user token alice | tail -n 1).
    """
    from hepatrial.cli._errors import handled

    if list_ and revoke is not None:
        _err("error: --list and --revoke cannot be combined")
        raise typer.Exit(2)
    if expires is not None and (list_ or revoke is not None):
        _err("error: --expires is for a new token (not with --list or --revoke)")
        raise typer.Exit(2)
    _open(db)
    from hepatrial.trials.services import permissions, tokens

    acting = _acting_user(user)
    if list_:
        with handled():
            rows = tokens.list_tokens(username)
        if not rows:
            typer.echo(f"{username} has no API tokens")
        for t in rows:
            state = tokens.token_status(t)
            if state == "revoked":
                state += f" {t.revoked_at:%Y-%m-%d %H:%M} by {t.revoked_by}: {t.revoke_reason}"
            typer.echo(f"{t.pk}\t{t.hint}…\tmade {t.created_at:%Y-%m-%d %H:%M} by "
                       f"{t.created_by}\texpires {t.expires_at:%Y-%m-%d %H:%M} UTC\t{state}")
        return
    if revoke is not None:
        with handled():
            t = tokens.revoke_token(account=username, token_id=revoke, reason=reason or "",
                                    user=acting)
        typer.echo(f"API token {t.pk} of {username} revoked")
        return
    with handled():
        t, text = tokens.create_token(account=username, days=expires or tokens.DEFAULT_DAYS,
                                      reason=reason or "", user=acting)
    holder = t.user
    sites = ", ".join(sorted(holder.site_memberships.values_list("site__code", flat=True)))
    role = permissions.role_of(holder)
    typer.echo(f"API token {t.pk} for {username} ({role}{', ' + sites if sites else ''}), valid "
               f"until {t.expires_at:%Y-%m-%d %H:%M} UTC. It is shown only now (the store "
               "keeps a hash): copy it. Use it as 'Authorization: Bearer TOKEN'.")
    typer.echo(text)


@site_app.command("add")
def site_add(
    code: Annotated[str, typer.Argument(help="Site code, e.g. S02.")],
    name: Annotated[str, typer.Option("--name", help="Site name.")] = "",
    db: DbOpt = None,
    user: UserOpt = None,
) -> None:
    """Add a recruiting site (centre)."""
    from hepatrial.cli._errors import handled

    _open(db)
    from hepatrial.trials import services

    acting = _acting_user(user)
    with handled():
        site = services.create_site(code=code, name=name, user=acting)
    typer.echo(f"site {site.code} created" + (f" ({site.name})" if site.name else ""))


def _fmt(v: Any) -> str:
    if v is None:
        return "∅"
    s = str(v)
    return s if len(s) <= 60 else s[:57] + "..."


@audit_app.command("log")
def audit_log(
    participant: Annotated[
        str | None, typer.Option("--participant", help="Only this participant's records.")
    ] = None,
    db: DbOpt = None,
) -> None:
    """Print the audit trail: when, who, what, field changes old → new, reason."""
    from rich.console import Console
    from rich.table import Table

    _open(db)
    from hepatrial.trials import audit

    try:
        entries = audit.history_entries(participant)
    except LookupError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(1) from None
    table = Table(title=f"audit log{' for ' + participant if participant else ''}")
    for col in ("when (UTC)", "who", "model", "object", "action", "changes", "reason"):
        table.add_column(col, overflow="fold")
    for e in entries:
        changes = "\n".join(f"{f}: {_fmt(o)} → {_fmt(n)}" for f, o, n in e["changes"])
        table.add_row(
            e["when"].strftime("%Y-%m-%d %H:%M:%S.%f"),
            e["who"],
            e["model"],
            e["object"],
            e["action"],
            changes,
            e["reason"],
        )
    Console(width=200).print(table)
    typer.echo(f"{len(entries)} entries")


@audit_app.command("verify")
def audit_verify(
    db: DbOpt = None,
    expect_head: Annotated[
        str | None,
        typer.Option("--expect-head", help="Chain hash recorded earlier outside the database."),
    ] = None,
    checkpoint: Annotated[
        list[str] | None,
        typer.Option(
            "--checkpoint",
            help="SEQ:HASH printed earlier by `hepatrial audit checkpoint` (repeatable): the "
            "ledger must still contain it.",
        ),
    ] = None,
) -> None:
    """Check the audit trail; exit 1 and list the problems when anything was tampered with."""
    import time

    where = _open(db)
    from hepatrial.trials import audit
    from hepatrial.trials.audit.checkpoint import (
        CheckpointError,
        check_checkpoints,
        parse_checkpoint,
    )

    try:
        wanted = [parse_checkpoint(c) for c in checkpoint or []]
    except CheckpointError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(2) from None
    t0 = time.perf_counter()
    problems = audit.verify(expected_head=expect_head) + check_checkpoints(wanted)
    seq, head = audit.head()
    elapsed = time.perf_counter() - t0
    if problems:
        _err(f"{where}: audit trail FAILED verification ({len(problems)} problems):")
        for p in problems:
            _err(f"  {p}")
        raise typer.Exit(1)
    typer.echo(f"{where}: audit trail OK: {seq} ledger entries, head {head} ({elapsed:.2f} s)")


@audit_app.command("checkpoint")
def audit_checkpoint(
    db: DbOpt = None,
    seq: Annotated[
        int | None, typer.Option("--seq", help="Ledger entry (default: the last one).")
    ] = None,
) -> None:
    """Print SEQ:HASH of the ledger head: keep it outside the database, and pass it to
    `hepatrial audit verify --checkpoint SEQ:HASH` later."""
    _open(db)
    from hepatrial.trials.audit.checkpoint import CheckpointError, format_checkpoint

    try:
        typer.echo(format_checkpoint(seq))
    except CheckpointError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(1) from None


def register(app: typer.Typer) -> None:
    """Add ``init``, ``serve``, ``user add|reactivate|password|unlock``, ``site add``,
    ``audit log|verify|checkpoint`` to ``app``."""
    app.command("init")(init)
    app.command("serve")(serve)
    app.add_typer(user_app, name="user")
    app.add_typer(site_app, name="site")
    if not any(g.typer_instance is audit_app for g in app.registered_groups):
        app.add_typer(audit_app, name="audit")  # (cli.locks adds ``audit signatures`` to it)
