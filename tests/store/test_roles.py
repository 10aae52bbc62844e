"""Roles and permissions checked by the services (not only by the pages), and locks,
e-signatures and roles end to end through the CLI on SQLite and PostgreSQL (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.store._trial import PASSWORD, build, fast_passwords
from tests.store.test_e2e_cli import backend  # noqa: F401  (the backend fixture)

MEANING = "I reviewed and approve these data"


@pytest.fixture
def trial(store: Any, settings: Any) -> dict[str, Any]:
    fast_passwords(settings)
    return build(store)


# --------------------------------------------------------------------------- the matrix


#: who may do the workflow actions (the brief): anything else is refused
EXPECTED = {
    "sign": {"investigator"},
    "lock": {"data-manager", "admin"},
    "unlock": {"data-manager", "admin"},
    "manage_accounts": {"admin"},
    "manage_sites": {"admin"},
    "enter_data": {"coordinator", "investigator", "data-manager"},
    "release_product": {"qa"},
}


def test_permission_matrix_is_one_table_over_the_vocabulary_roles() -> None:
    from hepatrial import vocab
    from hepatrial.trials.services import permissions as perm

    assert perm.ROLES == vocab.codes(vocab.ROLES)
    for action, (roles, text) in perm.PERMISSIONS.items():
        assert roles <= set(perm.ROLES) and roles and text, action
    for action, roles in EXPECTED.items():
        assert {r for r in perm.ROLES if perm.allowed(action, r)} == roles, action
    assert {r for r in perm.ROLES if perm.allowed("view", r)} == set(perm.ROLES)
    assert not any(perm.allowed(a, "auditor") for a in perm.ACTIONS
                   if a not in ("view", "view_audit"))  # fmt: skip
    # the system account: everything but the personal acts
    assert {a for a in perm.ACTIONS if not perm.allowed(a, "system")} == {
        "lock", "unlock", "sign", "report_sae", "assess_sae", "dsmb_decide", "review_lab_ae"}
    assert not perm.allowed("sign", None)
    with pytest.raises(KeyError):
        perm.allowed("launch", "admin")


def test_roles_are_stored_and_audited(trial: dict[str, Any], store: Any) -> None:
    from hepatrial.trials import audit
    from hepatrial.trials.models import SiteMembership, UserProfile

    inv = trial["users"]["inv"]
    profile = UserProfile.objects.get(user=inv)
    assert (profile.role, profile.printed_name, profile.failed_signatures) == (
        "investigator", "Dr Inv", 0)  # fmt: skip
    h = profile.history.get()
    assert (h.history_type, h.history_user.username, h.role) == ("+", "system", "investigator")
    m = SiteMembership.objects.get(user=inv)
    assert (m.site.code, m.role) == ("S01", "investigator")
    assert store.role_of(inv) == "investigator"
    assert store.role_of(trial["users"]["adm"]) == "admin" and trial["users"]["adm"].is_superuser
    assert not SiteMembership.objects.filter(user=trial["users"]["dm"]).exists()
    # a role change needs a reason and is kept in the history, with who did it
    store.change_role(user_account="coord", role="investigator", reason="appointed sub-I",
                      user="adm")  # fmt: skip
    p = UserProfile.objects.get(user__username="coord")
    last = p.history.order_by("-history_id").first()
    assert (p.role, last.history_change_reason, last.history_user.username) == (
        "investigator", "appointed sub-I", "adm")  # fmt: skip
    assert SiteMembership.objects.get(user__username="coord").role == "investigator"
    assert audit.verify() == []


def test_account_rules(trial: dict[str, Any], store: Any) -> None:
    from hepatrial.errors import PermissionDenied, StoreError

    with pytest.raises(StoreError, match="role 'nurse' is not one of coordinator"):
        store.create_user(username="x1", password=None, role="nurse", site_codes=["S01"])
    with pytest.raises(StoreError, match="a monitor works for sites: give --site"):
        store.create_user(username="x2", password=None, role="monitor")
    with pytest.raises(StoreError, match="--superuser is the admin role"):
        store.create_user(username="x3", password=None, role="qa", superuser=True,
                          site_codes=["S01"])  # fmt: skip
    with pytest.raises(StoreError, match="site 'S09' does not exist"):
        store.create_user(username="x4", password=None, site_codes=["S09"])
    with pytest.raises(StoreError, match="user 'inv' already exists"):
        store.create_user(username="inv", password=None, site_codes=["S01"])
    # accounts and sites are managed by admins (and the system account of the CLI)
    with pytest.raises(PermissionDenied, match="user 'dm' is data-manager; only admin may"):
        store.create_user(username="x5", password=None, site_codes=["S01"], user="dm")
    with pytest.raises(PermissionDenied, match="manage_sites: user 'coord' is coordinator"):
        store.create_site(code="S05", user="coord")
    store.create_site(code="S05", user="adm")
    assert store.role_of(store.create_user(username="x6", password=None, role="auditor",
                                           user="adm")) == "auditor"  # fmt: skip


@pytest.mark.parametrize("name", ["coord", "mon", "dm", "qa", "aud", "adm"])
def test_a_role_that_may_not_sign_is_refused_and_not_counted(
    trial: dict[str, Any], store: Any, name: str
) -> None:
    from hepatrial.errors import PermissionDenied
    from hepatrial.trials.models import Signature, UserProfile

    role = store.role_of(trial["users"][name])
    with pytest.raises(PermissionDenied, match=f"sign: user '{name}' is {role}; only "
                                               "investigator may e-sign"):  # fmt: skip
        store.sign(level="visit", participant="K01", visit_code="W1", meaning=MEANING,
                   user=name, password="wrong")  # fmt: skip
    assert UserProfile.objects.get(user__username=name).failed_signatures == 0
    assert not Signature.objects.exists()


def test_an_investigator_signs_only_at_own_sites(trial: dict[str, Any], store: Any) -> None:
    from hepatrial.errors import PermissionDenied

    with pytest.raises(PermissionDenied, match=r"user 'inv2' \(investigator\) is not a member "
                                               r"of site S01 \(participant K01\)"):  # fmt: skip
        store.sign(level="participant", participant="K01", meaning=MEANING, user="inv2",
                   password=PASSWORD)  # fmt: skip
    store.record_visit(participant="K03", visit_code="D0", actual_date="2008-01-20")
    sig = store.sign(level="visit", participant="K03", visit_code="D0", meaning=MEANING,
                     user="inv2", password=PASSWORD)  # fmt: skip
    assert sig.participant.site.code == "S02"


@pytest.mark.parametrize("name", ["coord", "inv", "mon", "qa", "aud", None])
def test_a_role_that_may_not_unlock_or_lock_is_refused(
    trial: dict[str, Any], store: Any, name: str | None
) -> None:
    from hepatrial.errors import PermissionDenied
    from hepatrial.trials.models import Lock

    store.lock(level="participant", participant="K01", user="dm", reason="complete")
    who = "the system account cannot unlock" if name is None else f"user '{name}' is"
    with pytest.raises(PermissionDenied, match=f"unlock: {who}"):
        store.unlock(level="participant", participant="K01", user=name, reason="late data")
    with pytest.raises(PermissionDenied, match="lock: "):
        store.lock(level="trial", user=name)
    assert list(Lock.objects.values_list("level", "unlocked_at")) == [("participant", None)]
    store.unlock(level="participant", participant="K01", user="adm", reason="late data")


def test_require_permission_for_every_other_service(trial: dict[str, Any], store: Any) -> None:
    from django.contrib.auth import get_user_model

    from hepatrial.errors import PermissionDenied
    from hepatrial.trials.services import require_permission, system_user

    users = trial["users"]
    # the system account (CLI and imports without --user) keeps entering data
    assert require_permission(system_user(), "enter_data", "K01") == "system"
    assert require_permission(system_user(), "import_data") == "system"
    store.record_lab(participant="K01", visit_code="D0", analyte="albumin", value="30",
                     unit="g/L")  # fmt: skip
    # site-scoped roles: their sites' participants only; data managers: every site
    assert require_permission(users["coord"], "enter_data", "K01") == "coordinator"
    with pytest.raises(PermissionDenied, match=r"not a member of site S02 \(participant K03\)"):
        require_permission(users["coord"], "enter_data", "K03")
    with pytest.raises(PermissionDenied, match="acts on its sites' participants only"):
        require_permission(users["coord"], "enter_data")
    assert require_permission(users["coord"], "enter_data", site="S01") == "coordinator"
    assert require_permission(users["dm"], "enter_data", "K03") == "data-manager"
    with pytest.raises(PermissionDenied, match="only qa may release"):
        require_permission(users["coord"], "release_product", "K01")
    assert require_permission(users["qa"], "release_product", "K01") == "qa"
    with pytest.raises(PermissionDenied, match="user 'mon' is monitor; only coordinator, "
                                               "data-manager, investigator may enter"):  # fmt: skip
        require_permission(users["mon"], "enter_data", "K01")
    assert require_permission(users["aud"], "view", "K03") == "auditor"
    # accounts without a role, deactivated accounts
    nobody = get_user_model().objects.create_user("nobody")
    with pytest.raises(PermissionDenied, match="account 'nobody' has no role"):
        require_permission(nobody, "view", "K01")
    users["coord"].is_active = False
    with pytest.raises(PermissionDenied, match="account 'coord' is deactivated"):
        require_permission(users["coord"], "view", "K01")
    with pytest.raises(KeyError, match="unknown action"):
        require_permission(users["dm"], "delete_everything")


def test_accounts_from_before_roles(trial: dict[str, Any], store: Any) -> None:
    from django.contrib.auth import get_user_model

    from hepatrial.trials.models import Site, SiteMembership

    User = get_user_model()
    root = User.objects.create_superuser("root", password=None)
    old = User.objects.create_user("oldcoord")
    SiteMembership(user=old, site=Site.objects.get(code="S01")).save()  # role default
    assert store.role_of(root) == "admin"
    assert store.role_of(old) == "coordinator"
    assert store.require_permission(old, "enter_data", "K01") == "coordinator"


# --------------------------------------------------------------------------- CLI, both backends

SETUP_SCRIPT = r"""
import datetime as dt, json, sys
from hepatrial.trials import setup
setup(sys.argv[1] if len(sys.argv) > 1 else None)
from hepatrial.trials import services as s
from hepatrial.trials.models import Arm, Participant, Site
day0 = dt.date(2008, 1, 20)
for sid, site in (("K01", "S01"), ("K02", "S02")):
    p = Participant(study_id=sid, site=Site.objects.get(code=site), sex="F", year_of_birth=1965,
                    etiology="HCV", screening_date=day0 - dt.timedelta(days=14),
                    screening_data={}, status="enrolled", status_date=day0,
                    arm=Arm.objects.get(), enrolment_date=day0)
    p.save(user=s.system_user())
    s.schedule_visits(participant=p)
    s.record_visit(participant=sid, visit_code="D0", actual_date=day0)
lab = s.record_lab(participant="K01", visit_code="D0", analyte="bilirubin", value="2.3",
                   unit="mg/dL")
print(json.dumps({"lab": lab.pk}))
"""

CHANGE_SCRIPT = r"""
import json, sys
from hepatrial.trials import setup
setup(sys.argv[2] if len(sys.argv) > 2 else None)
from hepatrial.errors import RecordLocked
from hepatrial.trials import services as s
from hepatrial.trials.models import AuditLedger, LabResult
lab = LabResult.objects.get(pk=int(sys.argv[1]))
try:
    new = f"{float(lab.value_as_entered) + 0.1:.1f}"  # a different value each run
    s.update_lab(lab, value=new, reason="transcription error")
except RecordLocked as exc:
    print(json.dumps({"refused": str(exc)}))
else:
    seq = AuditLedger.objects.filter(history_model="trials.historicallabresult",
                                     object_pk=str(lab.pk)).order_by("-seq")[0].seq
    print(json.dumps({"seq": seq}))
"""


def run(backend: dict[str, Any], *args: str, stdin: str | None = None) -> Any:  # noqa: F811
    """``hepatrial ARGS --db ...`` in a subprocess (stdin a pipe, never a terminal)."""
    cmd = [sys.executable, "-c", "from hepatrial.cli import app; app()", *args,
           *backend["db_args"]]  # fmt: skip
    return subprocess.run(cmd, env=backend["env"], capture_output=True, text=True,
                          input=stdin if stdin is not None else "", timeout=300)  # fmt: skip


def run_script(backend: dict[str, Any], source: str, tmp_path: Path, *args: str) -> Any:  # noqa: F811
    f = tmp_path / "s.py"
    f.write_text(source)
    r = subprocess.run([sys.executable, str(f), *args, *backend["script_args"]],
                       env=backend["env"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(bool(os.environ.get("HEPATRIAL_DATABASE_URL")),
                    reason="runs once per suite (it tests both backends itself)")  # fmt: skip
def test_cli_lock_unlock_sign_and_roles(backend: dict[str, Any], tmp_path: Path) -> None:  # noqa: F811
    assert run(backend, "init").returncode == 0
    r = run(backend, "site", "add", "S02", "--name", "second site")
    assert r.returncode == 0 and "site S02 created (second site)" in r.stdout, r.stderr
    lab = run_script(backend, SETUP_SCRIPT, tmp_path)["lab"]

    # accounts: without a terminal the password comes from stdin, and the error says so
    r = run(backend, "user", "add", "dm", "--role", "data-manager")
    assert r.returncode == 2
    assert "no terminal" in r.stderr and "--password-stdin" in r.stderr
    assert "printf '%s\\n' \"$PASSWORD\" | hepatrial user add dm ... --password-stdin" in r.stderr
    pw = PASSWORD + "\n"
    for args in (["dm", "--role", "data-manager"],
                 ["inv", "--role", "investigator", "--site", "S01", "--printed-name",
                  "Dr Ines Vaz"],
                 ["coord", "--site", "S01"]):  # fmt: skip
        r = run(backend, "user", "add", *args, "--password-stdin", stdin=pw)
        assert r.returncode == 0, r.stderr
    assert "user dm2 created (data-manager, all sites)" in run(
        backend, "user", "add", "dm2", "--role", "data-manager", "--password-stdin", stdin=pw
    ).stdout
    r = run(backend, "user", "add", "x", "--role", "nurse", "--site", "S01", "--password-stdin",
            stdin=pw)  # fmt: skip
    assert r.returncode == 1 and "role 'nurse' is not one of" in r.stderr

    # lock a visit: writes refused (exit 5 from the CLI's mapping; RecordLocked in Python)
    r = run(backend, "lock", "visit", "K01", "D0", "--user", "dm", "--reason", "SDV done")
    assert r.returncode == 0, r.stderr
    assert "visit D0 of participant K01 locked (lock 1, by dm at " in r.stdout
    out = run_script(backend, CHANGE_SCRIPT, tmp_path, str(lab))
    assert "visit D0 of participant K01 is locked (lock 1, by dm" in out["refused"]
    r = run(backend, "lock", "visit", "K01", "D0", "--user", "dm")
    assert r.returncode == 1 and "visit D0 of participant K01 is already locked (lock 1" in r.stderr
    r = run(backend, "lock", "trial", "--user", "coord")
    assert r.returncode == 3 and "lock: user 'coord' is coordinator" in r.stderr
    r = run(backend, "lock", "trial")
    assert r.returncode == 2 and "--user" in r.stderr  # a named user is required
    # unlock: a reason and a role allowed to unlock
    r = run(backend, "unlock", "visit", "K01", "D0", "--user", "dm")
    assert r.returncode == 2 and "--reason" in r.stderr
    r = run(backend, "unlock", "visit", "K01", "D0", "--reason", "query", "--user", "coord")
    assert r.returncode == 3 and "only admin, data-manager may unlock" in r.stderr
    r = run(backend, "unlock", "visit", "K01", "D0", "--reason", "query on bilirubin",
            "--user", "dm")  # fmt: skip
    assert r.returncode == 0 and "unlocked (lock 1, by dm at" in r.stdout, r.stderr

    # sign: only an investigator of the site, with the password re-entered
    sign = ["sign", "visit", "K01", "D0", "--meaning", MEANING]
    r = run(backend, *sign, "--user", "coord", "--password-stdin", stdin=pw)
    assert r.returncode == 3 and "only investigator may e-sign" in r.stderr
    r = run(backend, *sign, "--user", "inv")
    assert r.returncode == 2 and "no terminal" in r.stderr
    r = run(backend, *sign, "--user", "inv", "--password-stdin", stdin="wrong-password\n")
    assert r.returncode == 4 and "wrong password for 'inv' (1 of 5" in r.stderr
    r = run(backend, *sign, "--user", "inv", "--password-stdin", stdin=pw)
    assert r.returncode == 0, r.stderr
    assert "visit D0 of participant K01 signed by Dr Ines Vaz (investigator) at " in r.stdout
    assert f"UTC: '{MEANING}' (signature 1: 2 records" in r.stdout
    r = run(backend, "audit", "signatures", "--json")
    assert r.returncode == 0, r.stderr
    (s1,) = json.loads(r.stdout)
    assert (s1["status"], s1["printed_name"], s1["signer"], s1["visit"]) == (
        "valid", "Dr Ines Vaz", "inv", "D0")  # fmt: skip
    # a change after signing invalidates the signature, naming the ledger entry
    seq = run_script(backend, CHANGE_SCRIPT, tmp_path, str(lab))["seq"]
    r = run(backend, "audit", "signatures", "--participant", "K01")
    assert r.returncode == 0, r.stderr
    assert f"invalidated by change seq {seq}" in r.stdout
    assert "1 signatures, 1 not valid" in r.stdout
    # the database lock before analysis; the casebook can still be signed
    r = run(backend, "lock", "trial", "--user", "dm", "--reason", "database lock")
    assert r.returncode == 0 and "the trial locked (lock 2" in r.stdout, r.stderr
    assert "the trial is locked (lock 2" in run_script(backend, CHANGE_SCRIPT, tmp_path,
                                                       str(lab))["refused"]  # fmt: skip
    r = run(backend, "sign", "participant", "K01", "--meaning", MEANING, "--user", "inv",
            "--password-stdin", stdin=pw)  # fmt: skip
    assert r.returncode == 0 and "the casebook of participant K01 signed by" in r.stdout, r.stderr
    r = run(backend, "sign", "participant", "K02", "--meaning", MEANING, "--user", "inv",
            "--password-stdin", stdin=pw)  # fmt: skip
    assert r.returncode == 3 and "not a member of site S02" in r.stderr
    r = run(backend, "audit", "verify")
    assert r.returncode == 0 and "audit trail OK" in r.stdout, r.stderr

    # a signature row edited by SQL is caught by verify
    assert backend["sql"]("UPDATE trials_signature SET printed_name = 'Dr Somebody Else' "
                          "WHERE id = 1") == 1  # fmt: skip
    r = run(backend, "audit", "verify")
    assert r.returncode == 1 and "live_edited: trials.signature 1" in r.stderr
    assert "printed_name: 'Dr Ines Vaz' → 'Dr Somebody Else'" in r.stderr


@pytest.mark.skipif(bool(os.environ.get("HEPATRIAL_DATABASE_URL")),
                    reason="subprocess CLI test: runs once per suite")  # fmt: skip
def test_cli_exit_codes_come_from_one_mapping() -> None:
    from hepatrial import errors
    from hepatrial.cli._errors import EXIT_CODES, exit_code

    assert exit_code(errors.RecordLocked("x")) == 5
    assert exit_code(errors.PermissionDenied("x")) == 3
    assert exit_code(errors.AuthenticationFailed("x")) == 4
    assert exit_code(errors.NotFoundError("x")) == 2
    assert exit_code(errors.ChangeReasonRequired("x")) == 1
    assert exit_code(errors.RangeError("x")) == 1  # an InputError
    assert exit_code(RuntimeError("x")) == 1
    assert all(issubclass(c, errors.HepatrialError) for c in EXIT_CODES)
    # the CLI module imports no Django/pandas at module level
    code = ("import sys, hepatrial.cli.locks, hepatrial.cli._errors; "
            "print(sorted(m for m in ('django', 'pandas', 'numpy') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"
