"""Migration 0005_product_lifecycle on a store built at the migration before it (0004), on
SQLite and PostgreSQL.

The store is built at 0004 in a subprocess with the models of that migration state: a
released batch (free-JSON release tests, ``released`` flag) and its administration, each row
with its ``+`` history row and its ledger entry exactly as the store of that time wrote them
(ledger format 2). Then every migration is applied: no stored value changed (every row of
every table of the store is identical), ``audit.verify()`` reports no problem — the columns
added to the batch and the administration are NULL in the old rows and left out of their
digests (``audit_added_fields``) — also after new writes: the old batch corrected through
the audit trail and a new product lifecycle recorded beside it.
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
applied = sorted(k for k in executor.loader.applied_migrations if k[0] == "trials")
assert applied[-1] == AT and ("trials", "0005_product_lifecycle") not in applied, applied
apps = executor.loader.project_state(AT).apps
from hepatrial.trials.audit.chain import GENESIS, canonical_time, entry_hash, row_digest

Ledger = apps.get_model("trials", "AuditLedger")
now = timezone.now()
ledger = {"seq": 0, "prev": GENESIS}


def write(model, **values):
    # a row, its "+" history row and its (format 2) ledger entry, as the store at 0004 did
    M = apps.get_model("trials", model)
    H = apps.get_model("trials", "Historical" + model)
    obj = M.objects.create(**values)
    h = H.objects.create(**{f.attname: getattr(obj, f.attname) for f in M._meta.concrete_fields},
                         history_date=now, history_type="+", history_user=None,
                         history_change_reason=None)
    h = H.objects.get(pk=h.pk)
    ledger["seq"] += 1
    label, digest = h._meta.label_lower, row_digest(h)
    chain = entry_hash(2, ledger["seq"], label, h.pk, str(obj.pk), "+", canonical_time(now),
                       digest, ledger["prev"])
    Ledger.objects.create(seq=ledger["seq"], history_model=label, history_pk=h.pk,
                          object_pk=str(obj.pk), history_type="+", digest=digest,
                          prev_hash=ledger["prev"], chain_hash=chain, recorded_at=now,
                          format=2)
    ledger["prev"] = chain
    return obj


site = write("Site", code="S01", name="Tehran")
p = write("Participant", study_id="K01", site_id=site.pk, sex="M", year_of_birth=1960,
          etiology="HBV", screening_date=dt.date(2008, 1, 6),
          screening_data={"cirrhosis": True}, status="enrolled",
          status_date=dt.date(2008, 1, 20), status_reason="", enrolment_date=dt.date(2008, 1, 20))
write("CellProductBatch", batch_id="B-K01", participant_id=p.pk, coi_identifier="A0001",
      release_tests={"sterility": "no growth", "viability": 92.0}, released=True,
      release_date=dt.date(2008, 1, 19))
write("Administration", participant_id=p.pk, route="portal_vein", cells_total=4e7,
      cells_per_kg=None, volume_ml="10.00", date=dt.date(2008, 1, 20), operator="op",
      batch_id="B-K01")


def snapshot():
    out = {}
    with connection.cursor() as cur:
        for table in sorted(t for t in connection.introspection.table_names()
                            if t.startswith("trials_")):
            cur.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            cols = [c[0] for c in cur.description]
            out[table] = sorted(
                json.dumps(dict(zip(cols, row)), default=str, sort_keys=True)
                for row in cur.fetchall()
            )
    return out


before = snapshot()
call_command("migrate", verbosity=0)
after = snapshot()
changed = []
for table, rows in before.items():
    for old in rows:
        o = json.loads(old)
        if not [r for r in after.get(table, []) if {k: json.loads(r).get(k) for k in o} == o]:
            changed.append(f"{table}: {old}")
added = {t: [c for c in json.loads(after[t][0]) if c not in json.loads(before[t][0])]
         for t in ("trials_cellproductbatch", "trials_administration")}

from hepatrial.trials import audit, selectors, services
from hepatrial.trials.models import Administration, CellProductBatch

problems = [str(x) for x in audit.verify() if x.kind != "unreadable"]
services.install_protocol("kharaziha2009")
b = CellProductBatch.objects.get(batch_id="B-K01")
b.coi_identifier = "A0001-corrected"
b.save(reason="label re-read")
services.record_harvest(participant="K01", collected_at="2008-02-01T08:00:00Z",
                        operator="Dr A", volume_ml="60")
problems_after = [str(x) for x in audit.verify() if x.kind != "unreadable"]
ppl = selectors.participants_frame()
print(json.dumps({
    "changed": changed, "added": added, "problems": problems, "problems_after": problems_after,
    "old_batch": [b.state, b.harvest_id, b.released, str(b.release_date)],
    "old_administration": [a.administered_at for a in Administration.objects.all()],
    "cells_total": float(ppl.set_index("participant_id").loc["K01", "cells_total"]),
    "products": len(selectors.products_frame()),
}, default=str))
"""


def test_migration_0005_keeps_an_older_store_verifying(backend: dict[str, Any]) -> None:  # noqa: F811
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, *backend["script_args"]],
        env=backend["env"], capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["changed"] == []
    assert set(out["added"]["trials_cellproductbatch"]) == {
        "harvest_id", "state", "facility", "received_at", "formulated_at",
        "formulated_volume_ml", "released_at", "quarantined_from"}
    assert set(out["added"]["trials_administration"]) == {
        "administered_at", "scanned_coi", "identifiers_checked", "dose_override_reason"}
    assert out["problems"] == []
    assert out["problems_after"] == []
    assert out["old_batch"] == [None, None, True, "2008-01-19"]
    assert out["old_administration"] == [None]
    assert out["cells_total"] == 4e7  # the old administration still counts (contracts §2)
    assert out["products"] == 0  # no lifecycle batch yet: the harvest alone makes none
