"""``audit.verify`` (columnar, streaming): same problems as the former row-by-row
implementation (kept below as the reference), digests equal ``row_digest``, every unreadable row
is a problem (SQLite; PostgreSQL refuses such values), ledger formats 1 and 2, chunked
``append``, and migration 0004 on a store built at 0003 (SQLite and PostgreSQL).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections import defaultdict
from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction

from tests.store import _trial
from tests.store.conftest import enrol, released_batch
from tests.store.test_e2e_cli import backend  # noqa: F401  (fixture: fresh SQLite / PostgreSQL)


def kinds(problems: list[Any]) -> set[str]:
    return {p.kind for p in problems}


def keys(problems: list[Any]) -> set[tuple[str, str, str]]:
    return {(p.kind, p.model, p.object_pk) for p in problems}


def raw(sql: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cur:
        cur.execute(sql, params or [])


def refused_or_done(sql: str, params: list[Any] | None = None) -> bool:
    """Run a tampering statement; True if the database stored it, False if it refused it
    (PostgreSQL checks types, encodings and NUL bytes; SQLite stores anything)."""
    try:
        with transaction.atomic():
            raw(sql, params)
    except DatabaseError:
        return False
    return True


# ------------------------------------------------------------------- the former verify, kept
def reference_verify(expected_head: str | None = None) -> list[Any]:
    """The row-by-row verification this store used before the columnar one (ORM object per
    row, field-by-field comparison), with the ledger hash of each entry's format. Kept to
    prove that the columnar ``audit.verify`` finds the same problems (and as the baseline of
    ``benchmarks/bench_verify.py --reference``)."""
    from hepatrial.trials.audit import Problem
    from hepatrial.trials.audit.base import audited_models
    from hepatrial.trials.audit.chain import (
        GENESIS,
        _canon,
        _history_model,
        _ledger,
        _tracked_pk_attname,
        canonical_time,
        entry_hash,
        row_digest,
    )

    problems: list[Any] = []
    ledger = list(_ledger().objects.order_by("seq").values_list(
        "seq", "history_model", "history_pk", "object_pk", "digest", "prev_hash", "chain_hash",
        "format", "history_type", "recorded_at"))
    prev, expected_seq = GENESIS, 1
    for seq, model, hpk, opk, digest, prev_hash, chain, fmt, htype, rec in ledger:
        if seq != expected_seq:
            problems.append(Problem("ledger_gap", "ledger", str(seq),
                                    f"ledger rows {expected_seq}..{seq - 1} are missing"))
        if prev_hash != prev:
            problems.append(Problem("chain_broken", "ledger", str(seq),
                                    "prev_hash is not the previous chain hash"))
        if entry_hash(fmt, seq, model, hpk, opk, htype, canonical_time(rec), digest,
                      prev_hash) != chain:
            problems.append(Problem("ledger_edited", "ledger", str(seq),
                                    f"chain hash does not recompute ({model}:{hpk})"))
        prev, expected_seq = chain, seq + 1
    if expected_head is not None and prev != expected_head:
        problems.append(Problem("head_mismatch", "ledger", str(expected_seq - 1), "head"))
    ledgered: dict[str, dict[int, tuple[int, str, str]]] = defaultdict(dict)
    for seq, model, hpk, opk, digest, *_ in ledger:
        ledgered[model][int(hpk)] = (seq, digest, opk)
    for model in audited_models():
        hmodel = _history_model(model)
        hlabel = hmodel._meta.label_lower
        pk_att = _tracked_pk_attname(hmodel)
        in_ledger = ledgered.pop(hlabel, {})
        latest: dict[Any, Any] = {}
        seen: set[int] = set()
        for h in hmodel._base_manager.order_by("history_id").iterator():
            seen.add(h.pk)
            entry = in_ledger.get(h.pk)
            obj_pk = getattr(h, pk_att)
            if entry is None:
                problems.append(Problem("history_unledgered", hlabel, str(obj_pk), ""))
            elif row_digest(h) != entry[1]:
                problems.append(Problem("history_edited", hlabel, str(obj_pk), ""))
            elif entry[2] != str(obj_pk):
                problems.append(Problem("ledger_edited", hlabel, str(obj_pk), ""))
            latest[obj_pk] = h
        for hpk, (_seq, _d, opk) in sorted(in_ledger.items()):
            if hpk not in seen:
                problems.append(Problem("history_missing", hlabel, opk, ""))
        tracked = list(hmodel.tracked_fields)
        live_pks: set[Any] = set()
        label = model._meta.label_lower
        for obj in model._base_manager.order_by("pk").iterator():
            live_pks.add(obj.pk)
            h = latest.get(obj.pk)
            if h is None:
                problems.append(Problem("live_unaudited", label, str(obj.pk), ""))
            elif h.history_type == "-":
                problems.append(Problem("live_resurrected", label, str(obj.pk), ""))
            elif any(_canon(getattr(obj, f.attname)) != _canon(getattr(h, f.attname))
                     for f in tracked):
                problems.append(Problem("live_edited", label, str(obj.pk), ""))
        for opk, h in latest.items():
            if h.history_type != "-" and opk not in live_pks:
                problems.append(Problem("live_deleted", label, str(opk), ""))
    for hlabel, rows in sorted(ledgered.items()):
        for _hpk, (_seq, _d, opk) in sorted(rows.items()):
            problems.append(Problem("history_missing", hlabel, opk, ""))
    return problems


@pytest.fixture
def rich(store: Any, settings: Any) -> dict[str, Any]:
    """Participants, visits, labs, clinical signs, accounts of every role, a released batch,
    a group with permissions and members, a corrected lab; verifies clean."""
    from django.contrib.auth.models import Group, Permission

    from hepatrial.trials import audit

    _trial.fast_passwords(settings)
    built = _trial.build(store)
    enrol(store, "K04")
    released_batch(store, "B-K04", participant="K04")
    store.update_lab(built["labs"]["D0"], value="2.4", reason="transcription error")
    g = Group.objects.create(name="readers")
    g.permissions.add(*Permission.objects.filter(codename__in=["view_site", "view_arm"]))
    built["users"]["mon"].groups.add(g)
    assert audit.verify() == []
    built["group"] = g
    return built


# ------------------------------------------------------------------------------ digests
def test_columnar_digests_equal_row_digest_for_every_row(rich: dict[str, Any]) -> None:
    """Every history row of every audited model: the digest verify computes from the stored
    tuples equals audit.row_digest of the ORM object, and every column type is covered."""
    from hepatrial.trials import audit
    from hepatrial.trials.audit.verify import history_digests

    covered: set[str] = set()
    n = 0
    for model in audit.audited_models():
        hm = model.history.model
        orm = {h.pk: audit.row_digest(h) for h in hm._base_manager.all()}
        got = {hid: (d, why) for hid, d, why in history_digests(hm, page=7)}
        assert set(got) == set(orm), hm
        for hid, (d, why) in got.items():
            assert why == "" and d == orm[hid], (hm, hid, why)
        n += len(orm)
        for f in hm._meta.concrete_fields:
            if hm._base_manager.exclude(**{f.attname: None}).exists():
                target = f.target_field if f.is_relation else f
                covered.add(target.get_internal_type())
    assert n > 100
    assert {"CharField", "TextField", "IntegerField", "BigIntegerField", "FloatField",
            "BooleanField", "DateField", "DateTimeField", "JSONField",
            "PositiveSmallIntegerField"} <= covered, covered


# ------------------------------------------------------------- same problems as the reference
TAMPER = {
    "live value": ["UPDATE trials_labresult SET value_as_entered = '9.9' WHERE id = {lab}"],
    "live deleted": ["DELETE FROM trials_labresult WHERE id = {lab}"],
    "live inserted": ["INSERT INTO trials_site (code, name, active) VALUES ('X9', 'r', {true})"],
    "history value": ["UPDATE trials_historicallabresult SET value_as_entered = '1.0' "
                      "WHERE history_id = {first_hist}"],
    "history reason": ["UPDATE trials_historicallabresult SET history_change_reason = 'typo' "
                       "WHERE history_id = {last_hist}"],
    "history deleted": ["DELETE FROM trials_historicallabresult WHERE history_id = {last_hist}"],
    "ledger deleted": ["DELETE FROM trials_auditledger WHERE seq = 3"],
    "ledger digest": ["UPDATE trials_auditledger SET digest = '{f64}' WHERE seq = 2"],
    "ledger object": ["UPDATE trials_auditledger SET object_pk = '999' WHERE seq = 2"],
    "json edited": ["UPDATE trials_participant SET screening_data = '{{\"x\": 1}}' "
                    "WHERE study_id = 'K04'"],
    "flag edited": ["UPDATE auth_user SET is_superuser = {true} WHERE username = 'mon'"],
    "boolean history": ["UPDATE trials_historicalsite SET active = {false}"],
    "resurrected": [],  # a deleted lab inserted again (statements made in the test)
    "several": ["UPDATE trials_visit SET status = 'missed' WHERE id = {visit}",
                "DELETE FROM trials_auditledger WHERE seq = 5",
                "UPDATE trials_historicalparticipant SET sex = 'F' WHERE history_id = 1"],
}


@pytest.mark.parametrize("case", sorted(TAMPER))
def test_columnar_verify_finds_what_the_reference_finds(rich: dict[str, Any], case: str) -> None:
    from hepatrial.trials import audit
    from hepatrial.trials.models import LabResult, Visit

    lab = rich["labs"]["D0"]
    hist = list(LabResult.history.filter(id=lab.pk).order_by("history_id")
                .values_list("history_id", flat=True))
    values = {"lab": lab.pk, "first_hist": hist[0], "last_hist": hist[-1], "f64": "f" * 64,
              "true": "true" if connection.vendor == "postgresql" else "1",
              "false": "false" if connection.vendor == "postgresql" else "0",
              "visit": Visit.objects.order_by("pk").first().pk}
    statements = TAMPER[case]
    if case == "resurrected":
        other = rich["labs"]["K02"]
        cols = [f.column for f in LabResult._meta.concrete_fields]
        stored = LabResult._base_manager.filter(pk=other.pk).values_list(*[
            f.attname for f in LabResult._meta.concrete_fields]).get()
        other.delete(reason="entered for the wrong participant")
        marks = ", ".join(["%s"] * len(cols))
        raw(f"INSERT INTO trials_labresult ({', '.join(cols)}) VALUES ({marks})", list(stored))
        statements = []
    for sql in statements:
        raw(sql.format(**values))
    new = audit.verify()
    old = reference_verify()
    assert new, case
    assert keys(new) == keys(old), (case, [str(p) for p in new], [str(p) for p in old])


def test_live_edit_detail_names_old_and_new(rich: dict[str, Any]) -> None:
    from hepatrial.trials import audit

    lab = rich["labs"]["D0"]
    raw("UPDATE trials_labresult SET value_as_entered = '9.9', value = 1.5 WHERE id = %s",
        [lab.pk])
    (p,) = audit.verify()
    assert p.kind == "live_edited" and p.object_pk == str(lab.pk)
    assert "value_as_entered: '2.4' → '9.9'" in p.detail and "value: '" in p.detail


def test_ledger_history_type_and_time_are_covered(rich: dict[str, Any]) -> None:
    """Format-2 entries: history_type and recorded_at are in the chain hash."""
    from hepatrial.trials import audit
    from hepatrial.trials.models import AuditLedger

    last = AuditLedger.objects.order_by("-seq").first()
    assert last.format == audit.LEDGER_FORMAT == 2
    raw("UPDATE trials_auditledger SET history_type = '-' WHERE seq = %s", [last.seq])
    got = audit.verify()
    assert kinds(got) == {"ledger_edited"}
    assert {p.object_pk for p in got} >= {str(last.seq)}
    raw("UPDATE trials_auditledger SET history_type = %s WHERE seq = %s",
        [last.history_type, last.seq])
    assert audit.verify() == []
    raw("UPDATE trials_auditledger SET recorded_at = %s WHERE seq = %s",
        ["2001-01-01 00:00:00", last.seq])
    assert [(p.kind, p.object_pk) for p in audit.verify()] == [("ledger_edited", str(last.seq))]


def test_format_downgrade_and_unknown_format_detected(rich: dict[str, Any]) -> None:
    from hepatrial.trials import audit
    from hepatrial.trials.models import AuditLedger

    seq = AuditLedger.objects.order_by("-seq").values_list("seq", flat=True).first()
    raw("UPDATE trials_auditledger SET format = NULL WHERE seq = %s", [seq])
    details = [p.detail for p in audit.verify()]
    assert any("format downgraded" in d for d in details), details
    raw("UPDATE trials_auditledger SET format = 7 WHERE seq = %s", [seq])
    assert any("unknown ledger format 7" in p.detail for p in audit.verify())


def test_format_1_entries_still_verify(rich: dict[str, Any]) -> None:
    """An entry written in format 1 (before migration 0004) verifies with the old formula; a
    change of its history type (outside that formula) is still caught by the history row."""
    from hepatrial.trials import audit
    from hepatrial.trials.models import AuditLedger, Site

    site = Site.objects.create(code="OLD", name="old")
    e = AuditLedger.objects.order_by("-seq").first()
    with transaction.atomic():  # rewrite the whole (short) chain in format 1
        prev = audit.GENESIS
        for row in AuditLedger.objects.order_by("seq"):
            chain = audit.chain_hash(row.seq, row.history_model, row.history_pk, row.digest,
                                     prev)
            raw("UPDATE trials_auditledger SET format = NULL, prev_hash = %s, chain_hash = %s "
                "WHERE seq = %s", [prev, chain, row.seq])
            prev = chain
    assert audit.verify() == []
    site.name = "new"
    site.save(reason="renamed")  # a format-2 entry after format-1 ones
    assert AuditLedger.objects.order_by("-seq").first().format == 2
    assert audit.verify() == []
    raw("UPDATE trials_auditledger SET history_type = '-' WHERE seq = %s", [e.seq])
    assert [p.kind for p in audit.verify()] == ["ledger_edited"]


# ------------------------------------------------------------------- rows that cannot be read
UNREADABLE = {
    # case: (statement, table, expected fragment of the reason)
    "impossible date": ("UPDATE trials_historicallabresult SET specimen_date = '2008-02-30' "
                        "WHERE history_id = {h}", "trials_historicallabresult",
                        "specimen_date: not a date: '2008-02-30'"),
    "not a date": ("UPDATE trials_historicalvisit SET actual_date = 'soon' WHERE history_id = "
                   "{hv}", "trials_historicalvisit", "actual_date: not a date: 'soon'"),
    "NUL in a date": ("UPDATE trials_historicallabresult SET specimen_date = "
                      "'2008-01-20' || char(0) WHERE history_id = {h}",
                      "trials_historicallabresult", "specimen_date: not a date"),
    "non-JSON text": ("UPDATE trials_historicalparticipant SET screening_data = '{{not json' "
                      "WHERE history_id = {hp}", "trials_historicalparticipant",
                      "screening_data: not JSON"),
    "not UTF-8": ("UPDATE trials_historicallabresult SET laboratory = CAST(x'c328ff' AS TEXT) "
                  "WHERE history_id = {h}", "trials_historicallabresult",
                  "laboratory: not text: bytes that are not UTF-8"),
    "text in an integer": ("UPDATE trials_historicallabresult SET visit_id = 'abc' WHERE "
                           "history_id = {h}", "trials_historicallabresult",
                           "visit_id: not an integer: str 'abc'"),
    "boolean 2": ("UPDATE trials_historicalsite SET active = 2 WHERE history_id = {hs}",
                  "trials_historicalsite", "active: not a boolean: int 2"),
    "bad history time": ("UPDATE trials_historicallabresult SET history_date = 'someday' "
                         "WHERE history_id = {h}", "trials_historicallabresult",
                         "history_date: not a date and time: 'someday'"),
}
PG_EQUIVALENT = {  # the same tampering in PostgreSQL's SQL: refused by the database
    "NUL in a date": "UPDATE trials_historicallabresult SET laboratory = 'x' || chr(0) "
                     "WHERE history_id = {h}",
    "not UTF-8": "UPDATE trials_historicallabresult SET laboratory = "
                 "convert_from('\\xc328ff'::bytea, 'UTF8') WHERE history_id = {h}",
    "boolean 2": "UPDATE trials_historicalsite SET active = 2 WHERE history_id = {hs}",
}


def _ids() -> dict[str, Any]:
    from hepatrial.trials.models import LabResult, Participant, Site, Visit

    return {
        "h": LabResult.history.order_by("history_id").values_list("history_id", flat=True)[0],
        "hv": Visit.history.exclude(actual_date=None).order_by("history_id")
        .values_list("history_id", flat=True)[0],
        "hp": Participant.history.order_by("history_id").values_list("history_id", flat=True)[0],
        "hs": Site.history.order_by("history_id").values_list("history_id", flat=True)[0],
    }


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_an_unreadable_history_row_is_a_problem_not_a_crash(rich: dict[str, Any],
                                                            case: str) -> None:
    from hepatrial.trials import audit

    sql, table, reason = UNREADABLE[case]
    ids = _ids()
    if connection.vendor != "sqlite":
        stored = refused_or_done(PG_EQUIVALENT.get(case, sql).format(**ids))
        assert not stored, f"{connection.vendor} stored {case!r}"
        assert audit.verify() == []
        return
    raw("PRAGMA ignore_check_constraints = ON")  # the JSON column's json_valid() check
    try:
        raw(sql.format(**ids))
    finally:
        raw("PRAGMA ignore_check_constraints = OFF")
    problems = audit.verify()
    bad = [p for p in problems if p.kind == "unreadable"]
    assert len(bad) == 1, [str(p) for p in problems]
    assert bad[0].detail.startswith(f"{table} row ")
    assert reason in bad[0].detail, bad[0].detail
    # the rest of the store is still verified: a later raw edit elsewhere is reported too
    raw("UPDATE trials_site SET name = 'renamed' WHERE code = 'S02'")
    assert "live_edited" in kinds(audit.verify())


def test_unreadable_live_row_and_ledger_row(rich: dict[str, Any]) -> None:
    from hepatrial.trials import audit
    from hepatrial.trials.models import AuditLedger

    lab = rich["labs"]["W1"]
    seq = AuditLedger.objects.order_by("-seq").values_list("seq", flat=True).first()
    if connection.vendor != "sqlite":
        assert not refused_or_done("UPDATE trials_labresult SET specimen_date = '2008-02-30' "
                                   "WHERE id = %s", [lab.pk])
        assert not refused_or_done("UPDATE trials_auditledger SET recorded_at = 'never' "
                                   "WHERE seq = %s", [seq])
        assert audit.verify() == []
        return
    raw("UPDATE trials_labresult SET specimen_date = '2008-02-30' WHERE id = %s", [lab.pk])
    raw("UPDATE trials_auditledger SET recorded_at = 'never' WHERE seq = %s", [seq])
    raw("UPDATE trials_auditledger SET seq = 'x' WHERE seq = %s", [seq - 1])
    got = {(p.kind, p.model, p.object_pk): p.detail for p in audit.verify()}
    assert "specimen_date: not a date: '2008-02-30'" in got[
        ("unreadable", "trials.labresult", str(lab.pk))]
    assert "specimen_date: " in got[("live_edited", "trials.labresult", str(lab.pk))]
    assert "recorded_at: not a date and time: 'never'" in got[("unreadable", "ledger", str(seq))]
    assert "seq: not an integer: 'x'" in got[("unreadable", "ledger", "x")]


def test_cli_verify_lists_unreadable_rows(tmp_path: Any) -> None:
    """``hepatrial audit verify`` on a store with an impossible date, a NUL byte and non-UTF-8
    text: exit 1, each problem listed, no traceback."""
    db = tmp_path / "s.sqlite3"
    cmd = [sys.executable, "-c", "from hepatrial.cli import app; app()"]
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in ("DJANGO_SETTINGS_MODULE", "HEPATRIAL_DATABASE_URL", "HEPATRIAL_DB")}
    r = subprocess.run([*cmd, "init", "--db", str(db)], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    with sqlite3.connect(db) as con:
        con.execute("UPDATE trials_historicalsite SET name = 'a' || char(0) || 'b'")
        con.execute("UPDATE trials_historicaltrialconfig SET loaded_at = '2008-13-45 10:00:00'")
        con.execute("UPDATE trials_historicalarm SET label = CAST(x'ff' AS TEXT)")
    r = subprocess.run([*cmd, "audit", "verify", "--db", str(db)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "history_edited: trials.historicalsite" in r.stderr
    assert "unreadable: trials.historicaltrialconfig" in r.stderr and "loaded_at" in r.stderr
    assert "unreadable: trials.historicalarm" in r.stderr and "not UTF-8" in r.stderr


# ----------------------------------------------------------------------- append in chunks
def test_append_reads_back_in_chunks_below_the_variable_limit(store: Any) -> None:
    """append() re-reads the history rows in chunks: with SQLite's variable limit lowered to
    999 (the smallest limit SQLite builds have had) an append of 2,500 rows works, where one
    ``pk__in`` query of all rows fails ("too many SQL variables"); PostgreSQL (65,535
    parameters) gets the same chunks."""
    from hepatrial.trials import audit
    from hepatrial.trials.models import AuditLedger, Site

    n = 2500
    with transaction.atomic():
        created = Site.objects.bulk_create([Site(code=f"C{i:04d}", name="c") for i in range(n)],
                                           batch_size=300)
        hist = Site.history.bulk_history_create(created, batch_size=300, default_user=None,
                                                default_change_reason="bulk")
    before = AuditLedger.objects.count()
    assert audit.APPEND_CHUNK < 999
    if connection.vendor == "sqlite":
        connection.ensure_connection()
        dbapi = connection.connection
        old = dbapi.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        dbapi.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
        try:
            with pytest.raises(DatabaseError, match="too many SQL variables"), \
                    transaction.atomic():
                audit.append(hist, chunk=n)  # one query for every row: the former behaviour
            audit.append(hist)
        finally:
            dbapi.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, old)
    else:
        audit.append(hist, chunk=7)
    assert AuditLedger.objects.count() == before + n
    assert audit.verify() == []
    with pytest.raises(ValueError, match="chunk"):
        audit.append(hist[:1], chunk=0)


# ------------------------------------------------------------------------ migration 0004
SCRIPT = r"""
import datetime as dt, json, sys
from hepatrial.trials import setup
setup(sys.argv[1] if len(sys.argv) > 1 else None)
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

AT = ("trials", "0003_store_rules_locks_signatures_roles")
call_command("migrate", "trials", AT[1], verbosity=0)
executor = MigrationExecutor(connection)
apps = executor.loader.project_state(AT).apps
from hepatrial.trials.audit.chain import GENESIS, chain_hash, row_digest

Ledger = apps.get_model("trials", "AuditLedger")
User = apps.get_model("auth", "User")
Group = apps.get_model("auth", "Group")
Permission = apps.get_model("auth", "Permission")
now = timezone.now()
ledger = {"seq": 0, "prev": GENESIS}


def history(model, obj, app="trials"):
    # the "+" history row and its (format-1) ledger entry, as the store at 0003 wrote them
    H = apps.get_model("trials", "Historical" + model)
    h = H.objects.create(**{f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields
                            if f.attname != "password"},
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


Site = apps.get_model("trials", "Site")
history("Site", Site.objects.create(code="S01", name="Tehran"))
alice = User.objects.create(username="alice", password="pbkdf2_sha256$1$salt$hash",
                            is_staff=True)
history("User", alice)
alice.user_permissions.add(Permission.objects.get(codename="view_site"))
group = Group.objects.create(name="monitors")  # groups had no history before 0004
group.permissions.add(Permission.objects.get(codename="view_arm"))
alice.groups.add(group)

call_command("migrate", verbosity=0)
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group as G, Permission as P
from hepatrial.trials import audit
from hepatrial.trials.models import AuditLedger

out = {"formats": list(AuditLedger.objects.order_by("seq").values_list("format", flat=True)),
       "problems": [str(p) for p in audit.verify()]}
u = get_user_model().objects.get(username="alice")
h = u.history.order_by("-history_id").first()
out["baseline"] = [h.history_type, h.audit_permissions, h.audit_groups,
                   h.history_change_reason]
u.user_permissions.add(P.objects.get(codename="view_participant"))
out["after_grant"] = [str(p) for p in audit.verify()]
with connection.cursor() as cur:
    cur.execute("INSERT INTO auth_user_user_permissions (user_id, permission_id) "
                "SELECT %s, id FROM auth_permission WHERE codename = 'delete_participant'",
                [u.pk])
    out["raw_grant"] = [p.kind + " " + p.detail for p in audit.verify()]
    cur.execute("DELETE FROM auth_user_user_permissions WHERE permission_id IN "
                "(SELECT id FROM auth_permission WHERE codename = 'delete_participant')")
    cur.execute("UPDATE trials_auditledger SET history_type = '~' WHERE seq = 1")
    out["v1_type_edit"] = [p.kind for p in audit.verify()]
print(json.dumps(out))
"""


def test_migration_0004_keeps_old_entries_and_starts_auditing_grants(
    backend: dict[str, Any],  # noqa: F811
) -> None:
    r = subprocess.run([sys.executable, "-c", SCRIPT, *backend["script_args"]],
                       env=backend["env"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["problems"] == []
    # the two format-1 entries written at 0003, then the baseline: alice's row, the group's
    assert out["formats"][:2] == [None, None] and set(out["formats"][2:]) == {2}
    assert len(out["formats"]) == 4
    assert out["baseline"] == [
        "~", '["trials.view_site"]', '["monitors"]',
        "audit of the account's password, permissions and groups started (migration 0004)",
    ]
    assert out["after_grant"] == []
    assert len(out["raw_grant"]) == 1
    assert out["raw_grant"][0] == ("live_edited auth tables differ from its history: "
                                   "permissions: +trials.delete_participant")
    assert out["v1_type_edit"] == ["ledger_edited"]


def test_problem_kinds_are_documented() -> None:
    from hepatrial.trials.audit import Problem

    doc = Problem.__doc__ or ""
    for kind in ("unreadable", "permission_edited", "ledger_edited", "live_edited"):
        assert f"``{kind}``" in doc
    assert json.dumps(str(Problem("unreadable", "m", "1", "d"))) == '"unreadable: m 1: d"'
