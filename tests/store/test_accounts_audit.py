"""The audit trail of accounts: grants (m2m), groups, password changes and resets, sign-in
attempts, lockouts and unlocks; raw-SQL changes to the auth tables caught by ``audit verify``.
In-process tests run on SQLite here and on PostgreSQL through tests/_engines/test_store_on_postgresql.py; the
command-line test runs on both engines."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from django.db import connection

from tests.store import _trial
from tests.store.test_e2e_cli import backend, cli  # noqa: F401  (fixture, helper)


def kinds(problems: list[Any]) -> set[str]:
    return {p.kind for p in problems}


def raw(sql: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cur:
        cur.execute(sql, params or [])


@pytest.fixture
def accounts(store: Any, settings: Any) -> dict[str, Any]:
    """An admin ``adm`` and a coordinator ``coord`` at S01 (fast password hashing)."""
    from hepatrial.trials import audit

    _trial.fast_passwords(settings)
    out = {
        "adm": store.create_user(username="adm", password=_trial.PASSWORD, role="admin"),
        "coord": store.create_user(username="coord", password=_trial.PASSWORD,
                                   role="coordinator", site_codes=["S01"]),
    }
    assert audit.verify() == []
    return out


def _last(user: Any) -> Any:
    return type(user).history.filter(id=user.pk).order_by("-history_id").first()


def _names(text: str) -> list[str]:
    import json

    return list(json.loads(text))


# ------------------------------------------------------------------------ grants by the ORM
def test_every_change_of_grants_writes_a_ledgered_history_row(accounts: dict[str, Any]) -> None:
    from django.contrib.auth.models import Group, Permission

    from hepatrial.trials import audit

    coord = accounts["coord"]
    p = Permission.objects.get(content_type__app_label="trials", codename="delete_participant")
    n = type(coord).history.count()

    coord.user_permissions.add(p)
    h = _last(coord)
    assert h.history_type == "~" and "trials.delete_participant" in _names(h.audit_permissions)
    assert h.history_change_reason == "user permissions granted"
    coord.user_permissions.remove(p)
    assert "trials.delete_participant" not in _names(_last(coord).audit_permissions)
    p.user_set.add(coord)  # the reverse side
    assert "trials.delete_participant" in _names(_last(coord).audit_permissions)
    p.user_set.clear()  # reverse clear: the holders are recorded before
    assert "trials.delete_participant" not in _names(_last(coord).audit_permissions)
    assert audit.verify() == []

    g = Group.objects.create(name="monitors")
    assert g.history.get().history_type == "+"
    g.permissions.add(p)
    assert _names(g.history.order_by("-history_id").first().audit_permissions) == [
        "trials.delete_participant"]
    coord._change_reason = "joins the monitoring group"
    coord.groups.add(g)
    h = _last(coord)
    assert _names(h.audit_groups) == ["monitors"]
    assert h.history_change_reason == "joins the monitoring group"
    assert audit.verify() == []
    g.delete()  # memberships go with the group: its members' rows record it
    assert _names(_last(coord).audit_groups) == []
    assert Group.history.filter(name="monitors").order_by("-history_id").first(
        ).history_type == "-"
    coord.user_permissions.clear()
    assert _names(_last(coord).audit_permissions) == []
    assert audit.verify() == []
    assert type(coord).history.count() == n + 7  # every change one row, nothing else
    log = [e for e in audit.history_entries() if e["model"] == "user"
           and e["object_pk"] == coord.pk and e["action"] == "changed"]
    assert any(f == "permissions" for e in log for f, _o, _n in e["changes"])
    assert any(f == "groups" and new == '["monitors"]' for e in log for f, _o, new in e["changes"])


# --------------------------------------------------------------------- raw SQL on auth tables
RAW = {
    # case: (statements, kind, model, fragment of the detail)
    "user permission granted": (
        ["INSERT INTO auth_user_user_permissions (user_id, permission_id) SELECT {coord}, id "
         "FROM auth_permission WHERE codename = 'delete_participant'"],
        "live_edited", "auth.user", "permissions: +trials.delete_participant"),
    "user permission withdrawn": (
        ["DELETE FROM auth_user_user_permissions WHERE user_id = {coord} AND permission_id IN "
         "(SELECT id FROM auth_permission WHERE codename = 'view_participant')"],
        "live_edited", "auth.user", "permissions: -trials.view_participant"),
    "group membership": (
        ["INSERT INTO auth_group (name) VALUES ('rogue')",
         "INSERT INTO auth_user_groups (user_id, group_id) SELECT {coord}, id FROM auth_group "
         "WHERE name = 'rogue'"],
        "live_edited", "auth.user", "groups: +rogue"),
    "group permission": (
        ["INSERT INTO auth_group_permissions (group_id, permission_id) SELECT {group}, id "
         "FROM auth_permission WHERE codename = 'delete_site'"],
        "live_edited", "auth.group", "permissions: +trials.delete_site"),
    "superuser flag": (["UPDATE auth_user SET is_superuser = {true} WHERE id = {coord}"],
                       "live_edited", "auth.user", "is_superuser: False → True"),
    "active flag": (["UPDATE auth_user SET is_active = {false} WHERE id = {coord}"],
                    "live_edited", "auth.user", "is_active: True → False"),
    "copied password hash": (
        ["UPDATE auth_user SET password = (SELECT password FROM auth_user WHERE id = {adm}) "
         "WHERE id = {coord}"],
        "live_edited", "auth.user", "password hash: differs from the audited one"),
    "new password hash": (
        ["UPDATE auth_user SET password = 'md5$salt$00000000000000000000000000000000' "
         "WHERE id = {coord}"],
        "live_edited", "auth.user", "password hash: differs"),
    "renamed codename": (
        ["UPDATE auth_permission SET codename = 'export_participant' WHERE codename = "
         "'view_participant'"],
        "permission_edited", "auth.permission", "not a permission of trials.participant"),
    "renamed codename, as its holders see it": (
        ["UPDATE auth_permission SET codename = 'export_participant' WHERE codename = "
         "'view_participant'"],
        "live_edited", "auth.user", "permissions: +trials.export_participant, "
        "-trials.view_participant"),
    "renamed permission name": (
        ["UPDATE auth_permission SET name = 'Can do anything' WHERE codename = 'view_site'"],
        "permission_edited", "auth.permission", "is named 'Can do anything', not 'Can view "
        "site'"),
    "swapped codenames": (
        ["UPDATE auth_permission SET codename = 'tmp_x' WHERE codename = 'view_consent'",
         "UPDATE auth_permission SET codename = 'view_consent' WHERE codename = "
         "'delete_consent'",
         "UPDATE auth_permission SET codename = 'delete_consent' WHERE codename = 'tmp_x'"],
        "permission_edited", "auth.permission", "is named 'Can view consent', not 'Can delete "
        "consent'"),
}


@pytest.mark.parametrize("case", sorted(RAW))
def test_raw_sql_on_the_auth_tables_is_caught(accounts: dict[str, Any], case: str) -> None:
    from django.contrib.auth.models import Group, Permission

    from hepatrial.trials import audit

    g = Group.objects.create(name="readers")
    g.permissions.add(Permission.objects.get(codename="view_site"))
    assert audit.verify() == []
    statements, kind, model, fragment = RAW[case]
    pg = connection.vendor == "postgresql"
    values = {"coord": accounts["coord"].pk, "adm": accounts["adm"].pk, "group": g.pk,
              "true": "true" if pg else "1", "false": "false" if pg else "0"}
    for sql in statements:
        raw(sql.format(**values))
    got = [p for p in audit.verify() if p.kind == kind and p.model == model]
    assert any(fragment in p.detail for p in got), [str(p) for p in audit.verify()]


def test_a_coordinator_with_raw_grants_is_named(accounts: dict[str, Any]) -> None:
    from hepatrial.trials import audit

    coord = accounts["coord"]
    raw("INSERT INTO auth_user_user_permissions (user_id, permission_id) SELECT %s, id FROM "
        "auth_permission WHERE codename IN ('delete_participant', 'delete_labresult')",
        [coord.pk])
    (p,) = audit.verify()
    assert (p.kind, p.model, p.object_pk) == ("live_edited", "auth.user", str(coord.pk))
    assert p.detail.endswith("permissions: +trials.delete_labresult, +trials.delete_participant")


# ------------------------------------------------------------------------------- passwords
def store_user(name: str) -> Any:
    from hepatrial.trials.services.accounts import create_user

    return create_user(username=name, password=_trial.PASSWORD, role="data-manager")


def test_change_password_service(accounts: dict[str, Any]) -> None:
    from hepatrial.errors import ChangeReasonRequired, PermissionDenied, StoreError
    from hepatrial.trials import audit
    from hepatrial.trials.services.accounts import change_password

    adm, coord = accounts["adm"], accounts["coord"]
    before = _last(coord).audit_password
    with pytest.raises(ChangeReasonRequired):
        change_password(user_account="coord", password="Another-9-horse", reason=" ",
                        user=coord)
    long = store_user("coordinator-smith")
    with pytest.raises(StoreError, match="too similar to the username"):
        change_password(user_account=long, password="coordinator-smith1", reason="new",
                        user=long)
    with pytest.raises(StoreError, match="too short"):
        change_password(user_account="coord", password="Ab-1", reason="new", user=coord)
    with pytest.raises(PermissionDenied, match="manage_accounts: user 'coord'"):
        change_password(user_account="adm", password="Another-9-horse", reason="x",
                        user=coord)
    assert _last(coord).audit_password == before  # nothing written

    change_password(user_account="coord", password="Another-9-horse", reason="quarterly",
                    user=coord)
    h = _last(coord)
    assert h.history_change_reason == "password changed: quarterly"
    assert h.history_user_id == coord.pk and h.audit_password != before
    coord.refresh_from_db()
    assert coord.check_password("Another-9-horse")
    change_password(user_account=coord, password="Third-9-horse-x", reason="forgot it",
                    user=adm)
    assert _last(coord).history_change_reason == "password reset: forgot it"
    change_password(user_account="coord", password=None, reason="left the trial", user=adm)
    coord.refresh_from_db()
    assert not coord.has_usable_password()
    assert _last(coord).history_change_reason == "password sign-in disabled: left the trial"
    assert audit.verify() == []
    changes = [c for e in audit.history_entries() if e["model"] == "user"
               and e["object_pk"] == coord.pk for c in e["changes"]]
    assert ("password", "(hash)", "(new hash)") in changes
    assert not any(coord.password in str(c) for c in changes)


def test_admin_password_page_needs_a_reason_and_uses_the_service(accounts: dict[str, Any],
                                                                 client: Any) -> None:
    from django.urls import reverse

    from hepatrial.trials import audit

    adm, coord = accounts["adm"], accounts["coord"]
    client.force_login(adm)
    url = reverse("admin:auth_user_password_change", args=[coord.pk])
    form = {"password1": "Fresh-9-horse-y", "password2": "Fresh-9-horse-y",
            "usable_password": "true"}
    r = client.post(url, form)
    assert r.status_code == 200 and "This field is required" in r.content.decode()
    coord.refresh_from_db()
    assert coord.check_password(_trial.PASSWORD)
    r = client.post(url, {**form, "change_reason": "locked out, identity checked by phone"})
    assert r.status_code == 302, r.content.decode()[:2000]
    coord.refresh_from_db()
    assert coord.check_password("Fresh-9-horse-y")
    h = _last(coord)
    assert h.history_change_reason == "password reset: locked out, identity checked by phone"
    assert h.history_user_id == adm.pk
    assert audit.verify() == []


# --------------------------------------------------------------------------- sign-in events
def _events() -> list[tuple[str, str, str, str | None]]:
    from hepatrial.trials.models import LoginEvent

    return [(e.kind, e.username, e.source, e.account.username if e.account else None)
            for e in LoginEvent.objects.order_by("pk")]


def test_sign_in_attempts_lockout_and_unlock_are_recorded(accounts: dict[str, Any],
                                                          client: Any) -> None:
    from hepatrial.errors import ChangeReasonRequired, PermissionDenied
    from hepatrial.trials import audit
    from hepatrial.trials.models import LoginEvent
    from hepatrial.trials.services.accounts import unlock_account

    for _ in range(5):
        client.post("/login/", {"username": "coord", "password": "wrong"})
    assert _events() == [("failure", "coord", "127.0.0.1", "coord")] * 5 + [
        ("lockout", "coord", "127.0.0.1", "coord")]
    r = client.post("/login/", {"username": "coord", "password": _trial.PASSWORD})
    assert r.status_code == 403  # locked out: even the right password is refused
    e = LoginEvent.objects.order_by("-pk").first()
    assert (e.kind, e.detail) == ("failure", "refused: the account is locked out")
    assert LoginEvent.objects.filter(kind="lockout").count() == 1  # recorded once
    with pytest.raises(ChangeReasonRequired):
        unlock_account(user_account="coord", reason="", user=accounts["adm"])
    with pytest.raises(PermissionDenied):
        unlock_account(user_account="coord", reason="x", user=accounts["coord"])
    assert unlock_account(user_account="coord", reason="identity checked",
                          user=accounts["adm"]) >= 1
    u = LoginEvent.objects.order_by("-pk").first()
    assert (u.kind, u.account, u.history.get().history_change_reason) == (
        "unlock", accounts["coord"], "identity checked")
    assert unlock_account(user_account="coord", reason="again", user=accounts["adm"]) == 0
    r = client.post("/login/", {"username": "coord", "password": _trial.PASSWORD})
    assert r.status_code == 302
    assert _events()[-1] == ("success", "coord", "127.0.0.1", "coord")
    from django.test import Client

    Client().post("/login/", {"username": "nobody\x07", "password": "x"})  # not signed in
    assert _events()[-1] == ("failure", "nobody\\x07", "127.0.0.1", None)
    # each event is an audited, ledgered record; a deleted one is missed
    assert all(e.history.count() == 1 for e in LoginEvent.objects.all())
    assert audit.verify() == []
    first = LoginEvent.objects.order_by("pk").first()
    raw("DELETE FROM trials_loginevent WHERE id = %s", [first.pk])
    assert [(p.kind, p.model) for p in audit.verify()] == [("live_deleted", "trials.loginevent")]


def test_login_event_names_are_stored_escaped_on_every_engine(accounts: dict[str, Any]) -> None:
    """A name with NUL and control characters (an API client, a script) is stored escaped:
    PostgreSQL text cannot hold NUL, and the log must not be ambiguous."""
    from hepatrial.errors import StoreError
    from hepatrial.trials.services.accounts import record_login_event

    e = record_login_event("failure", "eve\x00\t\\x00", source="10.0.0.1\n")
    e.refresh_from_db()
    assert e.username == "eve\\x00\\x09\\x5cx00" and e.source == "10.0.0.1\\x0a"
    assert e.account is None
    with pytest.raises(StoreError, match="kind 'hack'"):
        record_login_event("hack", "eve")


def test_admin_sign_in_is_recorded_too(accounts: dict[str, Any], client: Any) -> None:
    client.post("/admin/login/", {"username": "adm", "password": "wrong"})
    client.post("/admin/login/", {"username": "adm", "password": _trial.PASSWORD})
    assert [k for k, *_ in _events()] == ["failure", "success"]


# ------------------------------------------------------------------------- the command line
def test_cli_user_password_and_unlock(backend: dict[str, Any]) -> None:  # noqa: F811
    assert cli(backend, "init").returncode == 0
    r = cli(backend, "user", "add", "alice", "--site", "S01", "--password-stdin",
            stdin="Correct-horse-9-battery\n")
    assert r.returncode == 0, r.stderr
    r = cli(backend, "user", "add", "alice-wonderland", "--role", "auditor",
            "--password-stdin", stdin="Correct-horse-9-battery\n")
    assert r.returncode == 0, r.stderr
    r = cli(backend, "user", "password", "alice", "--reason", "rotated", "--password-stdin",
            stdin="Other-horse-9-battery\n")
    assert r.returncode == 0 and "password of alice changed" in r.stdout, r.stderr
    r = cli(backend, "user", "password", "alice", "--password-stdin", stdin="x\n")
    assert r.returncode == 2 and "--reason" in r.stderr  # the reason is required
    r = cli(backend, "user", "password", "alcie", "--reason", "x", "--password-stdin",
            stdin="Other-horse-9-battery\n")
    assert r.returncode == 2 and "no account 'alcie'" in r.stderr
    r = cli(backend, "user", "password", "alice-wonderland", "--reason", "x",
            "--password-stdin", stdin="alice-wonderland1\n")
    assert r.returncode == 1 and "too similar" in r.stderr
    r = cli(backend, "user", "unlock", "alice", "--reason", "helpdesk")
    assert r.returncode == 0 and "was not locked out" in r.stdout, r.stderr
    lock = (r"import sys; from hepatrial.trials import setup; "
            r"setup(sys.argv[1] if len(sys.argv) > 1 else None); "
            r"from django.utils import timezone; from axes.models import AccessAttempt; "
            r"AccessAttempt.objects.create(username='alice', ip_address='10.0.0.9', "
            r"user_agent='t', failures_since_start=5, attempt_time=timezone.now(), "
            r"get_data='', post_data='', http_accept='', path_info='/login/')")
    r = subprocess.run([sys.executable, "-c", lock, *backend["script_args"]],
                       env=backend["env"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = cli(backend, "user", "unlock", "alice", "--reason", "identity checked by phone")
    assert r.returncode == 0 and "user alice unlocked (1 failed" in r.stdout, r.stderr
    r = cli(backend, "audit", "verify")
    assert r.returncode == 0, r.stderr
    r = cli(backend, "audit", "log")
    assert "lockout reset" in r.stdout or "identity checked by phone" in r.stdout
    assert "password reset: rotated" in r.stdout
