"""Tampering with the store behind the application's back: which check catches what.

Each scenario of issue 8 (and a few more) runs against the same small store: the store is
built, an older copy of every table is kept (the "older backup"), more legitimate writes
follow (the last of them a lab import), the checkpoint ``SEQ:HASH`` of the ledger head is
taken (kept outside the database, as ``hepatrial audit checkpoint`` prints it), then the
scenario changes the database with raw SQL, and the test asserts exactly which checks report
it: ``verify`` (``audit.verify()``, i.e. ``hepatrial audit verify``) and ``checkpoint``
(``audit verify --checkpoint SEQ:HASH``). In-process on SQLite here, on PostgreSQL through
tests/_engines/test_store_on_postgresql.py.

What is caught by neither, and why (also asserted below):

* an entry forged *after* the last checkpoint (history row, live row and ledger entry written
  consistently, e.g. with the store's own functions): the chain has no secret, so anyone who
  can write the database can extend it; a checkpoint proves only the entries up to it;
* a consistent rewrite of entries after the last checkpoint, for the same reason.

Both are as good as the database's access control between two checkpoints: take checkpoints
often (after each import, each day) and keep them outside the database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction

from tests.store import _trial
from tests.store.conftest import DAY0


def raw(sql: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cur:
        cur.execute(sql, params or [])


def _q(name: str) -> str:
    return str(connection.ops.quote_name(name))


def _data_tables() -> list[str]:
    """Every table holding data of the store (records, history, ledger, accounts, sign-in
    records, sessions): all but Django's schema catalogue (migrations, content types and the
    permissions it creates from the models)."""
    keep = {"django_migrations", "django_content_type", "auth_permission"}
    return sorted(t for t in connection.introspection.table_names() if t not in keep)


def _copy() -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    out = {}
    with connection.cursor() as cur:
        for t in _data_tables():
            cur.execute(f"SELECT * FROM {_q(t)}")
            out[t] = ([c[0] for c in cur.description], cur.fetchall())
    return out


def _empty() -> None:
    for t in _data_tables():
        raw(f"DELETE FROM {_q(t)}")  # foreign keys are deferred: checked at commit


def _restore(copy: dict[str, tuple[list[str], list[tuple[Any, ...]]]]) -> None:
    _empty()
    with connection.cursor() as cur:
        for t, (cols, rows) in copy.items():
            if rows:
                marks = ", ".join(["%s"] * len(cols))
                cur.executemany(f"INSERT INTO {_q(t)} ({', '.join(_q(c) for c in cols)}) "
                                f"VALUES ({marks})", rows)


def _rechain(from_seq: int = 1) -> None:
    """Recompute the digest of every history row and every chain hash from ``from_seq`` on,
    as an attacker with the store's code and write access to the database would."""
    from django.apps import apps

    from hepatrial.trials import audit
    from hepatrial.trials.models import AuditLedger

    prev = (AuditLedger.objects.filter(seq__lt=from_seq).order_by("-seq")
            .values_list("chain_hash", flat=True).first() or audit.GENESIS)
    for e in AuditLedger.objects.filter(seq__gte=from_seq).order_by("seq"):
        H = apps.get_model(*e.history_model.split("."))
        digest = audit.row_digest(H._base_manager.get(pk=e.history_pk))
        chain = audit.entry_hash(e.format, e.seq, e.history_model, e.history_pk, e.object_pk,
                                 e.history_type, audit.canonical_time(e.recorded_at), digest,
                                 prev)
        raw("UPDATE trials_auditledger SET digest = %s, prev_hash = %s, chain_hash = %s "
            "WHERE seq = %s", [digest, prev, chain, e.seq])
        prev = chain


def _flag(value: bool) -> str:
    return ("true" if value else "false") if connection.vendor == "postgresql" else str(
        int(value))


# ------------------------------------------------------------------------------ scenarios
def raw_grant(w: dict[str, Any]) -> None:
    raw("INSERT INTO auth_user_user_permissions (user_id, permission_id) SELECT %s, id FROM "
        "auth_permission WHERE codename = 'delete_participant'", [w["coord"].pk])


def raw_group_grant(w: dict[str, Any]) -> None:
    raw("INSERT INTO auth_group_permissions (group_id, permission_id) SELECT %s, id FROM "
        "auth_permission WHERE codename = 'change_site'", [w["group"].pk])


def raw_superuser(w: dict[str, Any]) -> None:
    raw(f"UPDATE auth_user SET is_superuser = {_flag(True)} WHERE id = %s", [w["coord"].pk])


def copied_password_hash(w: dict[str, Any]) -> None:
    raw("UPDATE auth_user SET password = (SELECT password FROM auth_user WHERE id = %s) "
        "WHERE id = %s", [w["adm"].pk, w["coord"].pk])


def renamed_permission(w: dict[str, Any]) -> None:
    """Swap two codenames: the coordinator's view permission becomes a delete permission."""
    raw("UPDATE auth_permission SET codename = 'tmp' WHERE codename = 'view_labresult'")
    raw("UPDATE auth_permission SET codename = 'view_labresult' WHERE codename = "
        "'delete_labresult'")
    raw("UPDATE auth_permission SET codename = 'delete_labresult' WHERE codename = 'tmp'")


def edit_value(w: dict[str, Any]) -> None:
    raw("UPDATE trials_labresult SET value_as_entered = '9.9' WHERE id = %s", [w["lab"].pk])


def edit_value_and_history(w: dict[str, Any]) -> None:
    """Live row and its history row rewritten, the ledger left alone."""
    edit_value(w)
    raw("UPDATE trials_historicallabresult SET value_as_entered = '9.9' WHERE id = %s",
        [w["lab"].pk])


def ledger_time_edited(w: dict[str, Any]) -> None:
    raw("UPDATE trials_auditledger SET recorded_at = %s WHERE seq = %s",
        ["2001-01-01 00:00:00", w["seq"]])


def ledger_type_edited(w: dict[str, Any]) -> None:
    raw("UPDATE trials_auditledger SET history_type = '-' WHERE seq = %s", [w["seq"]])


def erase_last_import(w: dict[str, Any]) -> None:
    """The lab rows of the last import, their history rows and their ledger entries (the tail
    of the chain) deleted: what is left is a consistent, shorter store."""
    from hepatrial.trials.models import AuditLedger

    ids = w["imported"]
    marks = ", ".join(["%s"] * len(ids))
    hist = list(w["H"]._base_manager.filter(id__in=ids).values_list("history_id", flat=True))
    raw(f"DELETE FROM trials_labresult WHERE id IN ({marks})", ids)
    raw(f"DELETE FROM trials_historicallabresult WHERE history_id IN "
        f"({', '.join(['%s'] * len(hist))})", hist)
    raw(f"DELETE FROM trials_auditledger WHERE history_model = 'trials.historicallabresult' "
        f"AND history_pk IN ({', '.join(['%s'] * len(hist))})", hist)
    assert AuditLedger.objects.order_by("-seq").first().seq < w["seq"]


def rewrite_and_rechain(w: dict[str, Any]) -> None:
    """A stored value, its history row, the entry's digest and every later chain hash."""
    edit_value_and_history(w)
    _rechain()


def rewrite_after_checkpoint(w: dict[str, Any]) -> None:
    """The same, but of a row written after the checkpoint (so only later entries change)."""
    from hepatrial.trials import audit

    lab = w["services"].record_lab(participant="K01", visit_code="W1", analyte="albumin",
                                   value="3.1", unit="g/dL")
    first_new = w["seq"] + 1
    raw("UPDATE trials_labresult SET value_as_entered = '4.4' WHERE id = %s", [lab.pk])
    raw("UPDATE trials_historicallabresult SET value_as_entered = '4.4' WHERE id = %s",
        [lab.pk])
    _rechain(first_new)
    assert audit.verify() == []


def forge_appended_entry(w: dict[str, Any]) -> None:
    """A backdated "correction" in another user's name: live row, history row and ledger
    entry, written with the store's own code (anyone who can write the database can)."""
    edit_value(w)
    H = w["H"]
    stored = type(w["lab"])._base_manager.get(pk=w["lab"].pk)
    H(**{f.attname: getattr(stored, f.attname) for f in H.tracked_fields},
      history_date=dt.datetime(2008, 2, 1, 9, 0, tzinfo=dt.UTC), history_type="~",
      history_user_id=w["coord"].pk, history_change_reason="transcription error").save()


def empty_every_table(w: dict[str, Any]) -> None:
    _empty()


def restore_older_backup(w: dict[str, Any]) -> None:
    _restore(w["older"])


#: scenario -> (tampering, checks that catch it, problem kinds verify reports)
SCENARIOS: dict[str, tuple[Callable[[dict[str, Any]], None], set[str], set[str]]] = {
    "raw-SQL permission grant": (raw_grant, {"verify"}, {"live_edited"}),
    "raw-SQL group permission grant": (raw_group_grant, {"verify"}, {"live_edited"}),
    "raw-SQL superuser flag": (raw_superuser, {"verify"}, {"live_edited"}),
    "copied password hash": (copied_password_hash, {"verify"}, {"live_edited"}),
    "renamed (swapped) permission": (renamed_permission, {"verify"},
                                     {"permission_edited", "live_edited"}),
    "value edited": (edit_value, {"verify"}, {"live_edited"}),
    "value and history edited": (edit_value_and_history, {"verify"}, {"history_edited"}),
    "ledger recorded_at edited": (ledger_time_edited, {"verify"}, {"ledger_edited"}),
    "ledger history_type edited": (ledger_type_edited, {"verify"}, {"ledger_edited"}),
    "erase the last import": (erase_last_import, {"checkpoint"}, set()),
    "rewrite a value and recompute the chain": (rewrite_and_rechain, {"checkpoint"}, set()),
    "empty every table": (empty_every_table, {"checkpoint"}, set()),
    "restore an older backup": (restore_older_backup, {"checkpoint"}, set()),
    "forge an appended entry": (forge_appended_entry, set(), set()),
    "rewrite after the last checkpoint": (rewrite_after_checkpoint, set(), set()),
}


@pytest.fixture
def world(store: Any, settings: Any) -> dict[str, Any]:
    """Accounts, participants, labs, a group; an older copy of every table; then more writes
    ending with a lab import; the checkpoint of the head."""
    from django.contrib.auth.models import Group, Permission

    from hepatrial.trials import audit
    from hepatrial.trials.audit.checkpoint import format_checkpoint
    from hepatrial.trials.models import LabResult, Visit

    _trial.fast_passwords(settings)
    built = _trial.build(store)
    g = Group.objects.create(name="readers")
    g.permissions.add(Permission.objects.get(codename="view_site"))
    older = _copy()
    store.update_lab(built["labs"]["D0"], value="2.4", reason="transcription error")
    visit = Visit.objects.get(participant__study_id="K01", code="W1")
    imported = audit.bulk_create(LabResult, [
        LabResult(participant_id=visit.participant_id, visit=visit, analyte=a, value_as_entered=v,
                  unit_as_entered=u, value=float(v), unit=u, laboratory="central",
                  specimen_date=DAY0 + dt.timedelta(days=7))
        for a, v, u in (("sodium", "137", "mmol/L"), ("ast", "60", "U/L"), ("alt", "41", "U/L"))
    ], reason="import labs_w1.csv")
    assert audit.verify() == []
    cp = format_checkpoint()
    return {"services": store, "coord": built["users"]["coord"], "adm": built["users"]["adm"],
            "group": g, "lab": built["labs"]["D0"], "H": LabResult.history.model,
            "imported": [o.pk for o in imported], "older": older, "checkpoint": cp,
            "seq": int(cp.split(":")[0])}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_which_check_catches_each_tampering(world: dict[str, Any], name: str) -> None:
    from hepatrial.trials import audit
    from hepatrial.trials.audit.checkpoint import check_checkpoints

    tamper, catchers, verify_kinds = SCENARIOS[name]
    with transaction.atomic():
        tamper(world)
    found = audit.verify()
    at_checkpoint = check_checkpoints([world["checkpoint"]])
    caught = {"verify"} if found else set()
    caught |= {"checkpoint"} if at_checkpoint else set()
    assert caught == catchers, (name, [str(p) for p in found + at_checkpoint])
    assert {p.kind for p in found} == verify_kinds, [str(p) for p in found]
    if "checkpoint" in catchers:
        assert {p.kind for p in at_checkpoint} <= {"checkpoint_missing", "checkpoint_mismatch"}


def test_the_scenarios_of_issue_8_are_all_here() -> None:
    named = {"raw-SQL permission grant", "copied password hash", "renamed (swapped) permission",
             "erase the last import", "rewrite a value and recompute the chain",
             "forge an appended entry", "empty every table", "restore an older backup"}
    assert named <= set(SCENARIOS)
