"""Migration 0003 on a store built at 0002, on SQLite and PostgreSQL.

At 0002 ``Administration.batch_id`` was free text, so a store may hold an administration that
names a batch nobody registered. 0003 makes it a foreign key to ``CellProductBatch.batch_id``
(same column) and registers each such batch, not released, with its history row and ledger
entry. The store is built at 0002 in a subprocess with the models of that migration state
(rows, history rows and ledger entries exactly as the store of that time wrote them), then
migrated to the latest migration; after it the batch exists (not released), no stored value
changed (every row of every table of the store is still there, identical; the only new rows are
the batch, its history row and its ledger entry) and ``audit.verify()`` reports no problem,
also after a new write.
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

AT = ("trials", "0002_clinical_signs_optional_items")
call_command("migrate", "trials", AT[1], verbosity=0)
executor = MigrationExecutor(connection)
assert [k for k in executor.loader.applied_migrations if k[0] == "trials"] == [
    ("trials", "0001_initial"), AT]
apps = executor.loader.project_state(AT).apps
from hepatrial.trials.audit.chain import GENESIS, chain_hash, row_digest

Ledger = apps.get_model("trials", "AuditLedger")
now = timezone.now()
ledger = {"seq": 0, "prev": GENESIS}


def write(model, **values):
    # a row, its "+" history row and its ledger entry, as the store at 0002 wrote them
    M = apps.get_model("trials", model)
    H = apps.get_model("trials", "Historical" + model)
    obj = M.objects.create(**values)
    h = H.objects.create(**{f.attname: getattr(obj, f.attname) for f in M._meta.concrete_fields},
                         history_date=now, history_type="+", history_user=None,
                         history_change_reason=None)
    h = H.objects.get(pk=h.pk)
    ledger["seq"] += 1
    label, digest = h._meta.label_lower, row_digest(h)
    chain = chain_hash(ledger["seq"], label, h.pk, digest, ledger["prev"])
    Ledger.objects.create(seq=ledger["seq"], history_model=label, history_pk=h.pk,
                          object_pk=str(obj.pk), history_type="+", digest=digest,
                          prev_hash=ledger["prev"], chain_hash=chain, recorded_at=now)
    ledger["prev"] = chain
    return obj


site = write("Site", code="S01", name="Tehran")
people = {}
for sid in ("K01", "K02"):
    people[sid] = write("Participant", study_id=sid, site_id=site.pk, sex="M",
                        year_of_birth=1960, etiology="HBV", screening_date=dt.date(2008, 1, 6),
                        screening_data={"cirrhosis": True}, status="enrolled",
                        status_date=dt.date(2008, 1, 20), status_reason="",
                        enrolment_date=dt.date(2008, 1, 20))
write("CellProductBatch", batch_id="B-K01", participant_id=people["K01"].pk,
      coi_identifier="A0001", release_tests={"sterility": "no growth"}, released=True,
      release_date=dt.date(2008, 1, 19))
for sid, batch in (("K01", "B-K01"), ("K02", "B-LOST"), ("K02", "B-LOST")):
    write("Administration", participant_id=people[sid].pk, route="portal_vein",
          cells_total=4e7, cells_per_kg=None, volume_ml="10.00", date=dt.date(2008, 1, 20),
          operator="op", batch_id=batch)


def snapshot():
    out = {}
    with connection.cursor() as cur:
        for table in sorted(t for t in connection.introspection.table_names()
                            if t.startswith("trials_")):  # the store's own tables
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
changed, new = [], {}
for table, rows in before.items():
    kept = []
    for old in rows:
        o = json.loads(old)
        match = [r for r in after.get(table, [])
                 if {k: json.loads(r).get(k) for k in o} == o]
        if not match:
            changed.append(f"{table}: {old}")
    grown = len(after.get(table, [])) - len(rows)
    if grown:
        new[table] = grown

from hepatrial.trials import audit, services
from hepatrial.trials.models import Administration, CellProductBatch

b = CellProductBatch.objects.get(batch_id="B-LOST")
h = b.history.get()
problems = [str(p) for p in audit.verify()]
services.create_site(code="S02", name="after the migration")
problems_after_write = [str(p) for p in audit.verify()]
print(json.dumps({
    "batches": list(CellProductBatch.objects.order_by("batch_id").values_list(
        "batch_id", "participant__study_id", "released", "release_date", "coi_identifier")),
    "lost_history": [h.history_type, h.released, h.history_change_reason],
    "administration_batches": [[a.participant.study_id, a.batch.batch_id, a.batch_id]
                               for a in Administration.objects.order_by("pk")],
    "changed": changed, "new": new,
    "problems": problems, "problems_after_write": problems_after_write,
}, default=str))
"""


def test_migration_0003_registers_unknown_batches_and_keeps_the_audit_trail(
    backend: dict[str, Any],  # noqa: F811
) -> None:
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, *backend["script_args"]],
        env=backend["env"], capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    # the unknown batch exists now, for the participant of its first administration, unreleased
    assert out["batches"] == [
        ["B-K01", "K01", True, "2008-01-19", "A0001"],
        ["B-LOST", "K02", False, None, ""],
    ]
    assert out["lost_history"] == [
        "+", False,
        "registered by migration 0003: named by an administration but never registered",
    ]  # fmt: skip
    assert out["administration_batches"] == [
        ["K01", "B-K01", "B-K01"], ["K02", "B-LOST", "B-LOST"], ["K02", "B-LOST", "B-LOST"],
    ]  # fmt: skip
    # no stored value changed; the only new trial rows: one batch, its history row, its ledger
    # entry (later migrations may add rows of their own models, never to these)
    assert out["changed"] == []
    for table in ("trials_cellproductbatch", "trials_historicalcellproductbatch",
                  "trials_auditledger"):  # fmt: skip
        assert out["new"].get(table) == 1, out["new"]
    for table in ("trials_site", "trials_participant", "trials_administration",
                  "trials_historicaladministration", "trials_historicalparticipant"):
        assert table not in out["new"], out["new"]
    assert out["problems"] == []
    assert out["problems_after_write"] == []
