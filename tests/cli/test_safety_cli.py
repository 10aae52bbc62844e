"""``hepatrial ae|sae|safety|dsmb`` end to end, in subprocesses on SQLite files (issue 12).

* the demo's store (8 patients, no adverse event): ``safety status`` says no stopping rule is
  triggered, ``dsmb report`` writes the open and closed reports;
* a scenario store where a rule triggers: an SAE recorded with the CLI pauses enrolment and
  dosing (``safety status`` names the rules), refusals exit non-zero naming each reason, the
  SAE is reported and signed, the DSMB resumes one rule by a signed decision, the DSMB
  report and the CIOMS form are written.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CLI = [sys.executable, "-m", "hepatrial"]
PASSWORD = "Correct-horse-9-battery"
pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DJANGO_SETTINGS_MODULE", "HEPATRIAL_DATABASE_URL", "HEPATRIAL_DB")}
    env["HEPATRIAL_EMAIL_BACKEND"] = "dummy"
    return env


ENV: dict[str, str] = {}


def run(*args: str, stdin: str | None = None) -> Any:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, input=stdin,
                          env={**_env(), **ENV}, timeout=600)  # fmt: skip


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    r = run("demo", "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    return out / "kharaziha2009_synthetic.sqlite3"


def _copy(db: Path, to: Path) -> Path:
    to.mkdir(parents=True, exist_ok=True)
    for f in db.parent.glob(db.name + "*"):
        shutil.copy(f, to / f.name)
    return to / db.name


def test_demo_no_stopping_rule_triggered_and_a_dsmb_report(demo_db: Path, tmp_path: Path
                                                           ) -> None:  # fmt: skip
    db = _copy(demo_db, tmp_path / "store")
    r = run("safety", "status", "--db", str(db))
    assert r.returncode == 0, r.stderr
    assert "no stopping rule triggered: enrolment and dosing allowed" in r.stdout
    assert "all 8 staggered participants are dosed" in r.stdout
    assert "0 of the first 4 treated with a rise >= 5 by W4, 2 needed" in r.stdout
    assert "0 of 8 treated with a counted event: P(rate > 0.2) = 0.0114 <= 0.8" in r.stdout
    r = run("safety", "status", "--oc", "--db", str(db))
    assert ("SR-BAYES pauses after n treated (n = 1..8) at x participants with the event >= "
            "-, 2, 2, 3, 3, 3, 3, 4") in r.stdout
    assert ("  SR-BAYES alone: 0.05 -> 0.010, 7.96; 0.10 -> 0.043, 7.82; 0.20 -> 0.187, 7.30; "
            "0.30 -> 0.398, 6.50; 0.40 -> 0.617, 5.58; 0.50 -> 0.797, 4.66") in r.stdout
    # a rule that pauses at the first event, alone: P = 1 - (1 - p)^8, E[treated] = P / p
    rates = (0.05, 0.10, 0.20, 0.30, 0.40, 0.50)
    assert ("  SR-PORTAL alone (rate of its own event): " + "; ".join(
        f"{p:.2f} -> {1 - (1 - p) ** 8:.3f}, {(1 - (1 - p) ** 8) / p:.2f}" for p in rates)
        ) in r.stdout, r.stdout
    assert "  SR-MELD alone (rate of its own event): 0.05 -> 0.014" in r.stdout
    j = json.loads(run("safety", "status", "--json", "--db", str(db)).stdout)
    assert (j["pausing_rules"], j["dosing_allowed"], j["enrolment_allowed"], j["latched"]) == (
        [], True, True, [])
    assert [x["rule_id"] for x in j["rules"]] == ["SR-DEATH-SAE", "SR-PORTAL", "SR-INFUSION",
                                                  "SR-MELD", "SR-SENTINEL", "SR-BAYES"]
    out = tmp_path / "dsmb"
    r = run("dsmb", "report", "--db", str(db), "-o", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "stopping rules: no stopping rule triggered" in r.stdout
    for name in ("dsmb_open.html", "dsmb_open.docx", "dsmb_closed.html", "dsmb_closed.docx",
                 "dsmb_open_tables.csv", "dsmb_closed_tables.csv"):
        assert (out / name).stat().st_size > 0, name
    html = (out / "dsmb_open.html").read_text(encoding="utf-8")
    assert "SR-SENTINEL" in html and "SR-BAYES" in html
    r = run("sae", "list", "--db", str(db))
    assert r.returncode == 0 and "no serious adverse events" in r.stdout
    r = run("ae", "list", "--db", str(db))
    assert r.returncode == 0 and "no adverse events" in r.stdout


SCENARIO = r"""
import datetime as dt, sys
from hepatrial.trials import setup
setup(sys.argv[1])
from hepatrial.trials import services
from hepatrial.trials.models import Administration, CellProductBatch, Participant

ELIGIBLE = {"cirrhosis": True, "bilirubin": {"value": 40.0, "unit": "umol/L"},
            "creatinine": {"value": 100.0, "unit": "umol/L"}, "inr": 1.6, "dialysis": False,
            "portal_vein_patent": True, "hcc": False, "active_infection": False,
            "pregnant": False}
for i, sid in enumerate(("K01", "K02")):
    d0 = dt.date(2008, 1, 20) + dt.timedelta(days=21 * i)
    services.screen_participant(study_id=sid, site="S01", sex="M", year_of_birth=1960,
                                etiology="HBV", screening_date=d0 - dt.timedelta(days=14),
                                screening_data=ELIGIBLE)
    services.record_consent(participant=sid, version="1.0", date=d0 - dt.timedelta(days=14))
    services.assess_eligibility(participant=sid)
    p = services.enrol_participant(participant=sid, enrolment_date=d0)
    b = CellProductBatch(batch_id=f"B-{sid}", participant=p, coi_identifier="",
                         release_tests={}, released=True, release_date=d0)
    b.save(user=services.system_user())
    Administration(participant=p, route="portal_vein" if i == 0 else "peripheral_vein",
                   cells_total=4e7, volume_ml="10.00", date=d0, operator="op",
                   batch=b).save(user=services.system_user())
for name, role, sites in (("inv", "investigator", ["S01"]), ("coord", "coordinator", ["S01"]),
                          ("dsmb", "dsmb", []), ("sponsor", "sponsor", [])):
    services.create_user(username=name, password=sys.argv[2], site_codes=sites, role=role,
                         printed_name=f"Dr {name}")
print("ok")
"""


@pytest.fixture
def mailbox(tmp_path: Path) -> Any:
    """Notifications through Django's file e-mail backend into ``tmp_path/mail``; the sponsor
    and the DSMB have configured addresses."""
    box = tmp_path / "mail"
    ENV.update({"HEPATRIAL_EMAIL_BACKEND": "file", "HEPATRIAL_EMAIL_FILE_PATH": str(box),
                "HEPATRIAL_EMAIL_RECIPIENTS": "sponsor=pv@sponsor.example;"
                                              "dsmb=chair@dsmb.example"})
    yield box
    ENV.clear()


def test_scenario_where_a_rule_triggers(tmp_path: Path, mailbox: Path) -> None:
    db = tmp_path / "trial.sqlite3"
    assert run("init", "--protocol", "kharaziha2009", "--db", str(db)).returncode == 0
    r = subprocess.run([sys.executable, "-c", SCENARIO, str(db), PASSWORD], env=_env(),
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    d = ["--db", str(db)]
    # a refusal names each reason, one per line, and writes nothing
    r = run("ae", "record", "K01", "--term", "Fevre", "--grade", "9", "--user", "inv", *d)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "error: participant K01 adverse event 'Fevre' grade: 9 is not 1-5 (CTCAE grade)",
        "error: participant K01 adverse event 'Fevre' term: 'Fevre' is not a CTCAE v5.0 term "
        "(use the exact term, or the SOC's '<SOC> - Other, specify' term with a specify text)",
        "error: participant K01 adverse event 'Fevre' relatedness_product: is required (one of "
        "not_related, unlikely, possible, probable, definite)",
        "error: participant K01 adverse event 'Fevre' relatedness_procedure: is required (one "
        "of not_related, unlikely, possible, probable, definite)",
        "error: participant K01 adverse event 'Fevre' action_taken: is required (one of none, "
        "infusion_interrupted, infusion_stopped, dose_reduced, next_dose_delayed, "
        "not_applicable, unknown)",
        "error: participant K01 adverse event 'Fevre' onset_date: is required (a date, "
        "YYYY-MM-DD)",
    ]
    assert "no adverse events" in run("ae", "list", *d).stdout
    # an SAE: portal-vein thrombosis 9 days after the portal injection
    r = run("ae", "record", "K01", "--term", "portal vein thrombosis", "--grade", "3",
            "--onset", "2008-01-29", "--serious", "hospitalisation", "--relatedness-product",
            "possible", "--relatedness-procedure", "probable", "--procedure",
            "portal_vein_injection", "--action", "not_applicable", "--outcome",
            "not_recovered", "--aware", "2008-01-29 10:00", "--user", "inv", *d)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "recorded AE-1 K01: Portal vein thrombosis grade 3 (Medical intervention indicated), "
        "onset 2008-01-29, outcome not_recovered, serious (hospitalisation); related to "
        "product possible, procedure probable (portal_vein_injection)",
        "stopping rules: paused by SR-DEATH-SAE, SR-PORTAL, SR-SENTINEL (hepatrial safety "
        "status)"]
    r = run("safety", "status", *d)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert any(ln.startswith("  SR-DEATH-SAE   event     PAUSED since 20") for ln in lines)
    assert "enrolment: PAUSED (SR-DEATH-SAE, SR-PORTAL)" in lines
    assert "dosing: PAUSED (SR-DEATH-SAE, SR-PORTAL, SR-SENTINEL)" in lines
    j = json.loads(run("safety", "status", "--json", *d).stdout)
    assert j["latched"] == ["SR-DEATH-SAE", "SR-PORTAL"] and j["dosing_allowed"] is False
    # the SAE chain: the worklist flags the overdue initial report; signing needs the password
    r = run("sae", "list", "--overdue", *d)
    assert "initial          due 2008-01-30 (2008-01-30 06:30 UTC): OVERDUE" in r.stdout
    args = ["sae", "report", "AE-1", "--kind", "initial", "--narrative", "PVT on day 9",
            "--submitted", "2008-01-29 18:00", "--password-stdin", *d]
    r = run(*args, "--user", "inv", stdin="wrong\n")
    assert r.returncode == 4 and "wrong password for 'inv'" in r.stderr
    r = run(*args, "--user", "coord", stdin=PASSWORD + "\n")
    assert r.returncode == 3 and "only investigator may" in r.stderr
    r = run(*args, "--user", "inv", stdin=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    assert "initial report of AE-1 signed by Dr inv (investigator)" in r.stdout
    assert "submitted 2008-01-29 14:30 UTC, due 2008-01-30 06:30 UTC" in r.stdout
    assert "susar_15_day" in r.stdout  # unexpected PVT related to the product: a SUSAR
    # the DSMB resumes one rule by a signed decision; a rule that does not pause is refused
    resume = ["safety", "resume", "--user", "dsmb", "--password-stdin", *d]
    r = run(*resume[:2], "SR-INFUSION", *resume[2:], "--decision", "x", stdin=PASSWORD + "\n")
    assert r.returncode == 1
    assert "SR-INFUSION does not pause enrolment or dosing now" in r.stderr
    r = run(*resume[:2], "SR-PORTAL", *resume[2:], "--decision",
            "PVT anticoagulated; portal route kept with Doppler at day 7",
            stdin=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    assert "SR-PORTAL resumed by DSMB decision DSMB-1 (resume), signed by Dr dsmb" in r.stdout
    assert "enrolment still PAUSED by SR-DEATH-SAE" in r.stdout
    # the DSMB report and the CIOMS form
    # data cut: today in the trial's time zone (Asia/Tehran), the default
    r = run("dsmb", "report", "-o", str(tmp_path / "dsmb"), *d)
    assert r.returncode == 0, r.stderr
    from zoneinfo import ZoneInfo

    today = dt.datetime.now(ZoneInfo("Asia/Tehran")).date()
    assert f"as of {today}:" in r.stdout
    assert "stopping rules: paused by SR-DEATH-SAE, SR-SENTINEL" in r.stdout
    assert "Portal vein thrombosis" in (tmp_path / "dsmb" / "dsmb_open.html").read_text(
        encoding="utf-8")
    r = run("sae", "form", "1", "-o", str(tmp_path / "form"), *d)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "form" / "sae_form_AE-1.pdf").read_bytes().startswith(b"%PDF-")
    # follow-up; the notifications were sent (file backend) and logged
    r = run("ae", "update", "1", "--outcome", "recovered", "--resolved", "2008-02-20",
            "--reason", "recanalised", "--user", "inv", *d)
    assert r.returncode == 0 and "outcome recovered" in r.stdout, r.stderr
    r = run("safety", "notifications", *d)
    assert ("sent       [hepatrial] Stopping rule SR-DEATH-SAE pauses enrolment and dosing -> "
            "investigator: (no address); coordinator: (no address); sponsor: "
            "pv@sponsor.example; dsmb: chair@dsmb.example") in r.stdout
    mails = "".join(f.read_text(encoding="utf-8") for f in sorted(mailbox.iterdir()))
    for subject in ("[hepatrial] Stopping rule SR-DEATH-SAE pauses enrolment and dosing",
                    "[hepatrial] Stopping rule SR-PORTAL resumed by the DSMB",
                    "[hepatrial] SUSAR AE-1 (K01: Portal vein thrombosis, grade 3)"):
        assert f"Subject: {subject}" in mails, subject
    assert run("audit", "verify", *d).returncode == 0


def test_terms_and_grades() -> None:
    r = run("ae", "terms", "portal vein")
    assert r.returncode == 0
    assert "10036206  Portal vein thrombosis  [Hepatobiliary disorders]  grades 2,3,4,5" in (
        r.stdout.splitlines())
    r = run("ae", "grades", "Death NOS")
    assert r.stdout.splitlines()[1:] == ["  grade 1: - (does not exist)",
                                         "  grade 2: - (does not exist)",
                                         "  grade 3: - (does not exist)",
                                         "  grade 4: - (does not exist)", "  grade 5: Death"]
    r = run("ae", "terms", "zzz")
    assert r.returncode == 2 and "no CTCAE v5.0 term contains 'zzz'" in r.stdout
