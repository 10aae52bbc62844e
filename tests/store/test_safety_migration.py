"""Migration 0005_safety_records on a store built at 0004, on SQLite and PostgreSQL.

The store is built at 0004 in a subprocess with the models of that migration state (rows,
history rows and format-2 ledger entries exactly as the store of that time wrote them): two
adverse events with the single relatedness of that time and a free-text term, one of them
serious. After migrating to the latest migration: each event's relatedness to the product is
its old relatedness, with a ``~`` history row and its ledger entry; no other stored value
changed; ``audit verify`` is clean; the pre-coding events keep working (a follow-up of an
uncoded term with no procedure relatedness, seriousness criteria, awareness or action taken
is accepted, and its term stays as entered; coding it is a change with a reason), and after
new writes the audit trail still verifies.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from tests.store.test_e2e_cli import backend  # noqa: F401  (fixture: fresh SQLite / PostgreSQL)

SCRIPT = r"""
import datetime as dt, json, sys
from hepatrial.trials import setup
setup(sys.argv[1] if len(sys.argv) > 1 else None)
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

AT = ("trials", "0004_audit_accounts_ledger_format")
call_command("migrate", "trials", AT[1], verbosity=0)
executor = MigrationExecutor(connection)
apps = executor.loader.project_state(AT).apps
from hepatrial.trials.audit.chain import (GENESIS, LEDGER_FORMAT, canonical_time, entry_hash,
                                          row_digest)

Ledger = apps.get_model("trials", "AuditLedger")
now = timezone.now()
last = Ledger.objects.order_by("-seq").values_list("seq", "chain_hash").first()
ledger = {"seq": last[0] if last else 0, "prev": last[1] if last else GENESIS}


def write(model, **values):
    # a row, its "+" history row and its (format-2) ledger entry, as the store at 0004 wrote
    M = apps.get_model("trials", model)
    H = apps.get_model("trials", "Historical" + model)
    obj = M.objects.create(**values)
    h = H.objects.create(**{f.attname: getattr(obj, f.attname) for f in M._meta.concrete_fields},
                         history_date=now, history_type="+", history_user=None,
                         history_change_reason=None)
    h = H.objects.get(pk=h.pk)
    ledger["seq"] += 1
    label, digest = h._meta.label_lower, row_digest(h)
    chain = entry_hash(LEDGER_FORMAT, ledger["seq"], label, h.pk, str(obj.pk), "+",
                       canonical_time(now), digest, ledger["prev"])
    Ledger.objects.create(seq=ledger["seq"], history_model=label, history_pk=h.pk,
                          object_pk=str(obj.pk), history_type="+", digest=digest,
                          prev_hash=ledger["prev"], chain_hash=chain, recorded_at=now,
                          format=LEDGER_FORMAT)
    ledger["prev"] = chain
    return obj


site = write("Site", code="S01", name="Tehran")
p = write("Participant", study_id="K01", site_id=site.pk, sex="M", year_of_birth=1960,
          etiology="HBV", screening_date=dt.date(2008, 1, 6), screening_data={},
          status="enrolled", status_date=dt.date(2008, 1, 20), status_reason="",
          enrolment_date=dt.date(2008, 1, 20))
write("Consent", participant_id=p.pk, version="1.0", date=dt.date(2008, 1, 6))
write("CellProductBatch", batch_id="B-K01", participant_id=p.pk, coi_identifier="",
      release_tests={}, released=True, release_date=dt.date(2008, 1, 20))
write("Administration", participant_id=p.pk, route="portal_vein", cells_total=4e7,
      cells_per_kg=None, volume_ml="10.00", date=dt.date(2008, 1, 20), operator="op",
      batch_id="B-K01")
write("AdverseEvent", participant_id=p.pk, term="fever after the infusion", grade=1,
      serious=False, relatedness="probable", onset_date=dt.date(2008, 1, 20),
      resolution_date=None, outcome="recovering")
write("AdverseEvent", participant_id=p.pk, term="Hepatic failure", grade=4, serious=True,
      relatedness="unlikely", onset_date=dt.date(2008, 2, 1), resolution_date=None,
      outcome="not_recovered")


def snapshot():
    out = {}
    with connection.cursor() as cur:
        for table in sorted(t for t in connection.introspection.table_names()
                            if t.startswith("trials_")):
            cur.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            cols = [c[0] for c in cur.description]
            out[table] = sorted(json.dumps(dict(zip(cols, row)), default=str, sort_keys=True)
                                for row in cur.fetchall())
    return out


before = snapshot()
call_command("migrate", verbosity=0)
after = snapshot()
changed = []
for table, rows in before.items():
    for old in rows:
        o = json.loads(old)
        if not any({k: json.loads(r).get(k) for k in o} == o for r in after.get(table, [])):
            changed.append(table)
from hepatrial.trials import audit, services
from hepatrial.trials.models import AdverseEvent

services.install_protocol("kharaziha2009")
events = list(AdverseEvent.objects.order_by("pk"))
mapped = [[a.term, a.relatedness, a.relatedness_product, a.relatedness_procedure,
           a.meddra_code] for a in events]
hist = [[h.history_type, h.relatedness_product, h.history_change_reason]
        for h in events[0].history.order_by("history_id")]
problems = [str(x) for x in audit.verify()]
from hepatrial.trials.services import safety

# a follow-up of the pre-coding events: no reason needed for a first entry
a = safety.update_adverse_event(events[0], outcome="recovered",
                                resolution_date="2008-01-22", reason="resolved at W1")
b = safety.update_adverse_event(events[1], aware_local="2008-02-01 12:00")
followed = [[a.term, a.outcome, a.meddra_code, a.ctcae_version],
            [b.term, b.meddra_code, b.soc, b.aware_at.isoformat(),
             b.history.order_by("-history_id").first().history_change_reason]]
status = safety.safety_status()
try:
    safety.update_adverse_event(events[0], term="Fever")
    coded_without_reason = "accepted"
except Exception as e:
    coded_without_reason = type(e).__name__
c = safety.update_adverse_event(events[0], term="Fever", reason="coded to CTCAE v5.0")
problems_after = [str(x) for x in audit.verify()]
print(json.dumps({
    "changed": sorted(set(changed)), "mapped": mapped, "history": hist,
    "problems": problems, "followed": followed,
    "uncoded": list(status.evaluation.uncoded_events),
    "pausing": list(status.pausing_rules),
    "coded_without_reason": coded_without_reason,
    "coded": [c.term, c.meddra_code, c.soc, c.grade_definition],
    "problems_after": problems_after,
}, default=str))
"""


def test_migration_0005_maps_relatedness_to_the_product_and_keeps_the_audit_trail(
    backend: dict[str, Any],  # noqa: F811
) -> None:
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, *backend["script_args"]],
        env=backend["env"], capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    # no stored value changed (the new column relatedness_product is filled)
    assert out["changed"] == [], out["changed"]
    assert out["mapped"] == [
        ["fever after the infusion", "probable", "probable", None, None],
        ["Hepatic failure", "unlikely", "unlikely", None, None],
    ]
    assert out["history"] == [
        ["+", None, None],
        ["~", "probable", "migration 0005: the relatedness recorded before the product and the "
                          "procedure were judged separately is the relatedness to the cell "
                          "product"],
    ]
    assert out["problems"] == []
    # pre-coding events keep working; a valid CTCAE term is coded at the next write
    assert out["followed"] == [
        ["fever after the infusion", "recovered", None, None],
        ["Hepatic failure", 10019663, "Hepatobiliary disorders", "2008-02-01T08:30:00+00:00",
         "data entry: aware_at entered"],
    ]
    assert out["uncoded"] == ["AE-1 (K01: 'fever after the infusion')"]
    # the serious event is not related (old relatedness 'unlikely'): SR-DEATH-SAE does not
    # pause; the one participant dosed is not followed by another, so the sentinel is open
    # only after its review: it pauses dosing (it needs a recorded DSMB review)
    assert out["pausing"] == ["SR-SENTINEL"]
    assert out["coded_without_reason"] == "ChangeReasonRequired"
    assert out["coded"] == ["Fever", 10016558, "General disorders and administration site "
                            "conditions", "38.0 - 39.0 degrees C (100.4 - 102.2 degrees F)"]
    assert out["problems_after"] == []
