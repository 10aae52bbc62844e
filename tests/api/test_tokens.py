"""API tokens: made once and stored only as a hash, expiring, revocable with a reason, made and
revoked only by an administrator, audited; and the ``hepatrial user token`` command."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hepatrial.errors import AuthenticationFailed, NotFoundError, PermissionDenied, StoreError

CLI = [sys.executable, "-c", "from hepatrial.cli import app; app()"]


@pytest.fixture
def accounts(db: Any) -> dict[str, Any]:
    from hepatrial.trials import services

    services.install_protocol("kharaziha2009")
    return {
        "coord": services.create_user(username="coord", password=None, role="coordinator",
                                      site_codes=["S01"]),
        "admin": services.create_user(username="boss", password=None, role="admin"),
    }


def test_a_token_is_shown_once_and_stored_only_as_its_sha256(accounts: dict[str, Any]) -> None:
    from django.db import connection

    from hepatrial.trials.models import ApiToken, AuditLedger
    from hepatrial.trials.services import tokens

    row, text = tokens.create_token(account="coord", reason="lab interface")
    assert re.fullmatch(r"hpt_[A-Za-z0-9_-]{43}", text)
    assert row.digest == hashlib.sha256(text.encode()).hexdigest()
    assert row.hint == text[:10] and row.user == accounts["coord"]
    assert row.expires_at - row.created_at == dt.timedelta(days=tokens.DEFAULT_DAYS)
    assert tokens.authenticate(text) == accounts["coord"]
    # the token's text is in no table of the store (rows, history, ledger)
    with connection.cursor() as cur:
        for table in connection.introspection.table_names(cur):
            cur.execute(f'SELECT * FROM "{table}"')
            for values in cur.fetchall():
                assert not any(text[4:] in str(v) for v in values), table
    assert ApiToken.history.filter(id=row.pk).count() == 1
    assert AuditLedger.objects.filter(history_model="trials.historicalapitoken").count() == 1
    _r2, other = tokens.create_token(account="coord")
    assert other != text  # random, never the same


def test_expiry_is_whole_days_from_1_to_3650(accounts: dict[str, Any]) -> None:
    from hepatrial.trials.services import tokens

    row, _t = tokens.create_token(account="coord", days=1)
    assert row.expires_at - row.created_at == dt.timedelta(days=1)
    row, _t = tokens.create_token(account="coord", days=3650)
    for days in (0, -1, 3651, 1.5, True, "7"):
        with pytest.raises(StoreError, match="whole number of days from 1 to 3650"):
            tokens.create_token(account="coord", days=days)  # type: ignore[arg-type]


def test_only_account_managers_make_or_revoke_tokens(accounts: dict[str, Any]) -> None:
    from hepatrial.trials.services import tokens

    with pytest.raises(PermissionDenied, match="manage_accounts"):
        tokens.create_token(account="coord", user=accounts["coord"])
    row, _t = tokens.create_token(account="coord", user=accounts["admin"])
    assert row.created_by == accounts["admin"]
    with pytest.raises(PermissionDenied, match="manage_accounts"):
        tokens.revoke_token(account="coord", token_id=row.pk, reason="x", user=accounts["coord"])


def test_accounts_that_cannot_hold_a_token(accounts: dict[str, Any]) -> None:
    from django.contrib.auth import get_user_model

    from hepatrial.trials.services import system_user, tokens

    with pytest.raises(StoreError, match="system account cannot hold a token"):
        tokens.create_token(account=system_user())
    get_user_model().objects.create(username="norole")  # no profile, no membership
    with pytest.raises(StoreError, match="no role in the trial"):
        tokens.create_token(account="norole")
    coord = accounts["coord"]
    coord.is_active = False
    coord._change_reason = "test: left the trial"
    coord.save()
    with pytest.raises(StoreError, match="deactivated"):
        tokens.create_token(account="coord")
    with pytest.raises(NotFoundError, match="no account 'nobody'"):
        tokens.create_token(account="nobody")


def test_revocation_needs_a_reason_and_is_audited(accounts: dict[str, Any]) -> None:
    from hepatrial.errors import ChangeReasonRequired
    from hepatrial.trials.audit.verify import verify
    from hepatrial.trials.models import ApiToken
    from hepatrial.trials.services import tokens

    row, text = tokens.create_token(account="coord", reason="lab interface",
                                    user=accounts["admin"])
    with pytest.raises(ChangeReasonRequired):
        tokens.revoke_token(account="coord", token_id=row.pk, reason=" ")
    with pytest.raises(NotFoundError, match=f"API token {row.pk + 99} is not one of coord's"):
        tokens.revoke_token(account="coord", token_id=row.pk + 99, reason="x")
    with pytest.raises(NotFoundError, match="not one of boss's tokens"):
        tokens.revoke_token(account="boss", token_id=row.pk, reason="x")
    tokens.revoke_token(account="coord", token_id=row.pk, reason="interface retired",
                        user=accounts["admin"])
    with pytest.raises(StoreError, match="already revoked"):
        tokens.revoke_token(account="coord", token_id=row.pk, reason="again")
    with pytest.raises(AuthenticationFailed, match="revoked"):
        tokens.authenticate(text)
    history = list(ApiToken.history.filter(id=row.pk).order_by("history_id").values_list(
        "history_type", "history_change_reason", "history_user__username", "revoke_reason"))
    assert history == [
        ("+", "API token created for coord (coordinator), valid 90 days: lab interface", "boss",
         ""),
        ("~", "API token revoked: interface retired", "boss", "interface retired")]
    assert tokens.token_status(ApiToken.objects.get(pk=row.pk)) == "revoked"
    assert verify() == []


def test_authenticate_refusals(accounts: dict[str, Any]) -> None:
    from hepatrial.trials.services import tokens

    for bad, why in (("", "not an API token"), ("abc", "not an API token"),
                     ("hpt_" + "A" * 43, "unknown API token"),
                     ("hpt_" + "A" * 300, "not an API token"),
                     ("hpt_\x00\ud800", "unknown API token")):
        with pytest.raises(AuthenticationFailed, match=why):
            tokens.authenticate(bad)


def test_migration_0007_only_adds_the_token_tables() -> None:
    import importlib

    mod = importlib.import_module("hepatrial.trials.migrations.0007_api_tokens")
    ops = mod.Migration.operations
    assert [(type(o).__name__, o.name) for o in ops] == [
        ("CreateModel", "ApiToken"), ("CreateModel", "HistoricalApiToken")]


# ------------------------------------------------------------------------------ the CLI
def _cli(db: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DJANGO_SETTINGS_MODULE", "HEPATRIAL_DATABASE_URL", "HEPATRIAL_DB")}
    return subprocess.run([*CLI, *args, "--db", str(db)], env=env, capture_output=True,
                          text=True, input=stdin, timeout=120)


def test_user_token_command(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite3"
    assert _cli(db, "init").returncode == 0
    r = _cli(db, "user", "add", "alice", "--site", "S01", "--password-stdin",
             stdin="Correct-Horse-Battery-9\n")
    assert r.returncode == 0, r.stderr
    r = _cli(db, "user", "token", "alice", "--reason", "lab interface", "--expires", "30")
    assert r.returncode == 0, r.stderr
    token = r.stdout.split()[-1]  # the last word printed
    assert re.fullmatch(r"hpt_[A-Za-z0-9_-]{43}", token)
    assert "API token 1 for alice (coordinator, S01), valid until" in r.stdout
    assert "shown only now" in r.stdout
    r = _cli(db, "user", "token", "alice", "--revoke", "1")
    assert r.returncode == 1 and "a reason for change is required" in r.stderr
    r = _cli(db, "user", "token", "alice", "--revoke", "1", "--reason", "interface retired")
    assert r.returncode == 0 and "API token 1 of alice revoked" in r.stdout
    r = _cli(db, "user", "token", "alice", "--list")
    assert r.returncode == 0 and token not in r.stdout
    (line,) = r.stdout.splitlines()
    assert line.startswith(f"1\t{token[:10]}…\tmade ")
    assert "\trevoked " in line and line.endswith("by system: interface retired")
    r = _cli(db, "user", "token", "alice", "--user", "alice")
    assert r.returncode == 3 and "manage_accounts" in r.stderr
    r = _cli(db, "user", "token", "alice", "--list", "--revoke", "1")
    assert r.returncode == 2 and "cannot be combined" in r.stderr
