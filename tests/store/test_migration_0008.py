"""Migration 0008 (queries and SDV marks) on a store built at 0007, on SQLite and PostgreSQL.

0008 only adds tables (queries, their messages, SDV marks and their history tables). A store is
built at 0007 in a subprocess (participants, visits, labs, a signature, a lock and unlock),
migrated to the latest migration; then every table of the store holds exactly the rows it held
(same content), ``audit.verify()`` reports no problem, and the new records (a query, its
answer, an SDV mark) are written and verify too; the signature made at 0007 is still valid.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.store.test_e2e_cli import backend  # noqa: F401  (fixture: fresh SQLite / PostgreSQL)

SCRIPT = r"""
import datetime as dt, hashlib, json, sys
from hepatrial.trials import setup
setup(sys.argv[1] if len(sys.argv) > 1 else None)
from django.core.management import call_command
from django.db import connection

call_command("migrate", verbosity=0)  # every app at its latest, then trials back to 0007
call_command("migrate", "trials", "0007_api_tokens", verbosity=0)
tables = set(connection.introspection.table_names())
assert "trials_query" not in tables and "trials_sourceverification" not in tables, tables

from hepatrial.trials import audit, services as s
from hepatrial.trials.services import signing
D0 = dt.date(2008, 1, 20)
s.install_protocol("kharaziha2009")
inv = s.create_user(username="inv", password="Correct-horse-9-battery", role="investigator",
                    site_codes=["S01"], printed_name="Dr Inv")
mon = s.create_user(username="mon", password=None, role="monitor", site_codes=["S01"])
coord = s.create_user(username="coord", password=None, role="coordinator", site_codes=["S01"])
dm = s.create_user(username="dm", password=None, role="data-manager")
s.screen_participant(study_id="K01", site="S01", sex="M", year_of_birth=1960, etiology="HBV",
    screening_date=D0 - dt.timedelta(days=14), screening_data={
        "cirrhosis": True, "bilirubin": {"value": 40.0, "unit": "umol/L"},
        "creatinine": {"value": 100.0, "unit": "umol/L"}, "inr": 1.6, "dialysis": False,
        "portal_vein_patent": True, "hcc": False, "active_infection": False,
        "pregnant": False})
s.record_consent(participant="K01", version="1.0", date=D0 - dt.timedelta(days=14))
s.assess_eligibility(participant="K01")
s.enrol_participant(participant="K01", enrolment_date=D0)
s.record_visit(participant="K01", visit_code="D0", actual_date=D0)
lab = s.record_lab(participant="K01", visit_code="D0", analyte="bilirubin", value="2.3",
                   unit="mg/dL")
sig = signing.sign(level="visit", participant="K01", visit_code="D0",
                   meaning="I reviewed and approve these data", user=inv,
                   password="Correct-horse-9-battery")
signing.lock(level="visit", participant="K01", visit_code="D0", user=dm, reason="done")
signing.unlock(level="visit", participant="K01", visit_code="D0", user=dm, reason="query")


def snapshot():
    out = {}
    with connection.cursor() as cur:
        for t in sorted(connection.introspection.table_names()):
            if not t.startswith("trials_"):
                continue
            cur.execute(f"SELECT * FROM {t}")
            rows = sorted(json.dumps([str(v) for v in r]) for r in cur.fetchall())
            out[t] = hashlib.sha256("\n".join(rows).encode()).hexdigest() + f":{len(rows)}"
    return out


before = snapshot()
problems_before = [str(p) for p in audit.verify()]
call_command("migrate", verbosity=0)
after = snapshot()
new_tables = sorted(set(after) - set(before))
changed = sorted(t for t in before if before[t] != after.get(t))
problems_after = [str(p) for p in audit.verify()]
from hepatrial.trials.services import queries, sdv
q = queries.raise_query(participant="K01", model="labresult", object_pk=lab.pk,
                        field="value_as_entered", text="check", user=mon)
queries.answer_query(q, text="ok", user=coord)
mark = sdv.verify_source(participant="K01", visit_code="D0", form="labs", user=mon)
print(json.dumps({
    "new_tables": new_tables, "changed": changed, "new_rows": {t: after[t] for t in new_tables},
    "problems_before": problems_before, "problems_after": problems_after,
    "problems_end": [str(p) for p in audit.verify()],
    "signature": str(signing.signature_status(sig)), "sdv": str(sdv.status(mark)),
}))
"""


def test_migration_0008_on_a_store_built_at_0007(backend: dict[str, Any]) -> None:  # noqa: F811
    r = subprocess.run([sys.executable, "-c", SCRIPT, *backend["script_args"]],
                       env=backend["env"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["new_tables"] == [
        "trials_historicalquery", "trials_historicalquerymessage",
        "trials_historicalsourceverification", "trials_query", "trials_querymessage",
        "trials_sourceverification"]
    assert all(v.endswith(":0") for v in got["new_rows"].values()), got["new_rows"]
    assert got["changed"] == []  # every table of 0007 holds the same rows
    # at 0007 the only problems are the tables 0008 adds, not there yet
    assert {p.split(":")[1].split()[0] for p in got["problems_before"]} <= {
        "trials.historicalquery", "trials.historicalquerymessage",
        "trials.historicalsourceverification", "trials.query", "trials.querymessage",
        "trials.sourceverification"}, got["problems_before"]
    assert all(p.startswith("unreadable: ") for p in got["problems_before"])
    assert got["problems_after"] == got["problems_end"] == []
    assert (got["signature"], got["sdv"]) == ("valid", "verified")
