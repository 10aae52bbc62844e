"""Audit trail: history on every model, hash-chained ledger, tamper detection (SQLite)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection


def kinds(problems: list[Any]) -> set[str]:
    return {p.kind for p in problems}


def raw(sql: str, params: list[Any] | None = None) -> None:
    with connection.cursor() as cur:
        cur.execute(sql, params or [])


@pytest.fixture
def trail(enrolled: Any, store: Any) -> Any:
    """K01 with a visit, a lab and a corrected lab; the ledger verifies clean."""
    from hepatrial.trials import audit

    store.record_visit(participant="K01", visit_code="D0", actual_date="2008-01-20")
    lab = store.record_lab(
        participant="K01", visit_code="D0", analyte="bilirubin", value="2.3", unit="mg/dL"
    )
    store.update_lab(lab, value="2.4", reason="transcription error")
    assert audit.verify() == []
    return lab


def test_every_history_row_is_ledgered_in_order(trail: Any) -> None:
    from hepatrial.trials import audit
    from hepatrial.trials.models import AuditLedger

    n_hist = sum(m.history.count() for m in audit.audited_models())
    assert AuditLedger.objects.count() == n_hist
    seqs = list(AuditLedger.objects.values_list("seq", flat=True))
    assert seqs == list(range(1, n_hist + 1))
    first = AuditLedger.objects.get(seq=1)
    assert first.prev_hash == audit.GENESIS
    seq, head = audit.head()
    assert seq == n_hist and head == AuditLedger.objects.get(seq=n_hist).chain_hash
    assert audit.verify(expected_head=head) == []
    assert kinds(audit.verify(expected_head="0" * 64)) == {"head_mismatch"}


def test_raw_update_of_live_row_detected(trail: Any) -> None:
    from hepatrial.trials import audit

    raw("UPDATE trials_labresult SET value_as_entered = '9.9' WHERE id = %s", [trail.pk])
    problems = audit.verify()
    assert kinds(problems) == {"live_edited"}
    assert "value_as_entered: '2.4' → '9.9'" in problems[0].detail


def test_raw_delete_of_live_row_detected(trail: Any) -> None:
    from hepatrial.trials import audit

    raw("DELETE FROM trials_labresult WHERE id = %s", [trail.pk])
    problems = audit.verify()
    assert kinds(problems) == {"live_deleted"}
    assert problems[0].model == "trials.labresult" and problems[0].object_pk == str(trail.pk)


def test_raw_insert_of_live_row_detected(trail: Any) -> None:
    from hepatrial.trials import audit

    raw(
        "INSERT INTO trials_site (code, name, active) VALUES ('X9', 'rogue', %s)", [True]
    )
    assert kinds(audit.verify()) == {"live_unaudited"}


def test_raw_update_of_history_row_detected(trail: Any) -> None:
    from hepatrial.trials import audit

    hid = trail.history.order_by("history_id").first().history_id
    raw(
        "UPDATE trials_historicallabresult SET value_as_entered = '1.0' WHERE history_id = %s",
        [hid],
    )
    assert kinds(audit.verify()) == {"history_edited"}


def test_raw_update_of_history_reason_detected(trail: Any) -> None:
    from hepatrial.trials import audit

    hid = trail.history.order_by("-history_id").first().history_id
    raw(
        "UPDATE trials_historicallabresult SET history_change_reason = 'typo'"
        " WHERE history_id = %s",
        [hid],
    )
    assert kinds(audit.verify()) == {"history_edited"}


def test_raw_delete_of_history_row_detected(trail: Any) -> None:
    from hepatrial.trials import audit

    hid = trail.history.order_by("history_id").first().history_id
    raw("DELETE FROM trials_historicallabresult WHERE history_id = %s", [hid])
    assert kinds(audit.verify()) == {"history_missing"}


def test_deleting_latest_history_row_also_shows_live_mismatch(trail: Any) -> None:
    from hepatrial.trials import audit

    hid = trail.history.order_by("-history_id").first().history_id
    raw("DELETE FROM trials_historicallabresult WHERE history_id = %s", [hid])
    assert kinds(audit.verify()) == {"history_missing", "live_edited"}


def test_ledger_row_deleted_or_edited_detected(trail: Any) -> None:
    from hepatrial.trials import audit

    raw("DELETE FROM trials_auditledger WHERE seq = 3")
    assert kinds(audit.verify()) == {"ledger_gap", "chain_broken", "history_unledgered"}


def test_ledger_digest_edit_detected(trail: Any) -> None:
    from hepatrial.trials import audit

    raw("UPDATE trials_auditledger SET digest = %s WHERE seq = 2", ["f" * 64])
    assert kinds(audit.verify()) == {"ledger_edited", "history_edited"}


def test_ledger_object_pk_edit_detected(trail: Any) -> None:
    from hepatrial.trials import audit

    raw("UPDATE trials_auditledger SET object_pk = '999' WHERE seq = 2")
    assert kinds(audit.verify()) == {"ledger_edited"}


def test_history_row_inserted_outside_ledger_detected(trail: Any) -> None:
    from hepatrial.trials import audit

    h = trail.history.order_by("-history_id").first()
    raw(
        "INSERT INTO trials_historicallabresult (id, participant_id, visit_id, analyte, loinc,"
        " value_as_entered, unit_as_entered, value, unit, laboratory, specimen_date,"
        " history_date, history_type, history_change_reason, history_user_id)"
        " SELECT id, participant_id, visit_id, analyte, loinc, '5', unit_as_entered, value,"
        " unit, laboratory, specimen_date, history_date, '~', 'backdated', history_user_id"
        " FROM trials_historicallabresult WHERE history_id = %s",
        [h.history_id],
    )
    assert "history_unledgered" in kinds(audit.verify())


def test_history_rows_are_insert_only_through_the_orm(trail: Any) -> None:
    from hepatrial.trials.base import AuditTrailImmutable
    from hepatrial.trials.models import AuditLedger

    h = trail.history.first()
    h.history_change_reason = "rewritten"
    with pytest.raises(AuditTrailImmutable):
        h.save()
    with pytest.raises(AuditTrailImmutable):
        h.delete()
    row = AuditLedger.objects.first()
    with pytest.raises(AuditTrailImmutable):
        row.save()
    with pytest.raises(AuditTrailImmutable):
        trail.history.all().delete()
    with pytest.raises(AuditTrailImmutable):
        type(trail).history.filter(id=trail.pk).update(value_as_entered="0")
    with pytest.raises(AuditTrailImmutable):
        type(trail).history.model.objects.all().delete()


def test_bulk_create_is_ledgered(store: Any) -> None:
    from hepatrial.trials import audit
    from hepatrial.trials.models import Site

    created = audit.bulk_create(
        Site, [Site(code=f"B{i}", name="bulk") for i in range(50)], reason="import batch 1"
    )
    assert all(s.pk for s in created)
    assert Site.history.filter(history_change_reason="import batch 1").count() == 50
    assert audit.verify() == []
    for s in created:
        s.name = "renamed"
    with pytest.raises(store.ChangeReasonRequired):
        audit.bulk_update(Site, created, ["name"], reason="")
    assert audit.bulk_update(Site, created, ["name"], reason="rename sites") == 50
    assert audit.verify() == []


def test_bulk_update_stores_values_with_reasoned_history(trail: Any) -> None:
    """audit.bulk_update works (Django's bulk_update -> QuerySet.update() is allowed inside it):
    the new values are stored, each row gets one ``~`` history row with the reason and user,
    the ledger verifies, and the audited queryset still refuses update() outside it."""
    from hepatrial.trials import audit
    from hepatrial.trials.base import ChangeReasonRequired
    from hepatrial.trials.models import AuditLedger, LabResult
    from hepatrial.trials.services import system_user

    extra = trail.__class__(
        participant=trail.participant, visit=trail.visit, analyte="albumin",
        value_as_entered="3.1", unit_as_entered="g/dL", value=31.0, unit="g/L")
    extra.save()
    labs = list(LabResult.objects.order_by("pk"))
    assert len(labs) == 2
    n_hist, n_ledger = LabResult.history.count(), AuditLedger.objects.count()
    labs[0].value_as_entered, labs[0].value = "2.5", 2.5 * 17.1
    labs[1].value_as_entered, labs[1].value = "3.2", 32.0
    with pytest.raises(ChangeReasonRequired):
        audit.bulk_update(LabResult, labs, ["value_as_entered", "value"], reason=" ")
    assert LabResult.objects.get(pk=labs[0].pk).value_as_entered == "2.4"  # nothing written
    n = audit.bulk_update(LabResult, labs, ["value_as_entered", "value"], reason="re-read")
    assert n == 2
    stored = {o.pk: (o.value_as_entered, o.value) for o in LabResult.objects.all()}
    assert stored == {labs[0].pk: ("2.5", 2.5 * 17.1), labs[1].pk: ("3.2", 32.0)}
    new_hist = list(LabResult.history.order_by("history_id")[n_hist:])
    assert [(h.id, h.history_type, h.history_change_reason, h.value_as_entered)
            for h in new_hist] == [(labs[0].pk, "~", "re-read", "2.5"),
                                   (labs[1].pk, "~", "re-read", "3.2")]
    assert all(h.history_user_id == system_user().pk for h in new_hist)
    assert AuditLedger.objects.count() == n_ledger + 2
    assert audit.verify() == []
    with pytest.raises(ChangeReasonRequired):
        LabResult.objects.filter(pk=labs[0].pk).update(value=1.0)


def test_history_entries_show_who_what_why(trail: Any) -> None:
    from hepatrial.trials import audit

    entries = audit.history_entries("K01")
    assert [e["when"] for e in entries] == sorted(e["when"] for e in entries)
    change = [e for e in entries if e["model"] == "labresult" and e["action"] == "changed"]
    assert len(change) == 1
    assert ("value_as_entered", "2.3", "2.4") in change[0]["changes"]
    assert change[0]["reason"] == "transcription error" and change[0]["who"] == "system"
    models = {e["model"] for e in entries}
    assert {"participant", "visit", "labresult", "consent"} <= models
    assert "site" not in models  # only rows that belong to the participant
    with pytest.raises(LookupError):
        audit.history_entries("NOPE")


def test_system_check_passes_for_installed_models(db: Any) -> None:
    from django.core import checks

    assert [m for m in checks.run_checks() if m.id and m.id.startswith("hepatrial")] == []


def test_system_check_fails_for_model_without_history(db: Any) -> None:
    from django.db import models

    from hepatrial.trials.checks import check_models_have_history
    from hepatrial.trials.models import AuditLedger, LabResult

    class Unaudited(models.Model):
        name = models.CharField(max_length=10)

        class Meta:
            app_label = "trials"

    try:
        errors = check_models_have_history(models_to_check=[LabResult, AuditLedger, Unaudited])
        assert [e.id for e in errors] == ["hepatrial.E001"]
        assert "trials.Unaudited has no history" in errors[0].msg
        assert check_models_have_history(models_to_check=[LabResult, AuditLedger]) == []
    finally:
        from django.apps import apps

        apps.all_models["trials"].pop("unaudited", None)
        apps.clear_cache()


def test_user_accounts_are_audited(store: Any) -> None:
    from django.contrib.auth import get_user_model

    from hepatrial.trials import audit

    u = store.create_user(username="coord", password="A-long-passw0rd", site_codes=["S01"])
    User = get_user_model()
    rows = list(User.history.filter(username="coord").order_by("history_id"))
    # created, then the role's admin-page permissions granted (one m2m change, one row)
    assert [h.history_type for h in rows] == ["+", "~"]
    assert rows[0].audit_permissions == "[]" and "trials.view_participant" in \
        rows[1].audit_permissions
    assert "password" not in {f.name for f in User.history.model._meta.fields}
    assert rows[1].audit_password == rows[0].audit_password  # a fingerprint, not the hash
    assert u.password not in {rows[0].audit_password}
    assert audit.verify() == [] and u.site_memberships.count() == 1


def _clinical_visit(enrolled: Any, store: Any) -> Any:
    store.record_visit(participant="K01", visit_code="D0", actual_date="2008-01-20")
    return store.record_clinical(participant="K01", visit_code="D0", ascites="none",
                                 encephalopathy=None)


def test_digest_of_history_rows_from_before_migration_0002_unchanged(enrolled: Any,
                                                                      store: Any) -> None:
    """Columns added by 0002 are left out of the digest while NULL, so a history row written
    before they existed (no such keys) verifies after the migration; a value is covered."""
    import hashlib

    from hepatrial.trials import audit
    from hepatrial.trials.models import ClinicalAssessment

    c = _clinical_visit(enrolled, store)
    h = c.history.get()
    added = set(ClinicalAssessment.audit_added_fields)
    old = {f.attname: getattr(h, f.attname) for f in h._meta.concrete_fields
           if f.attname not in added}
    old["__model__"] = h._meta.label_lower
    assert "encephalopathy" in old and old["encephalopathy"] is None  # 0001 column: kept
    assert audit.row_digest(h) == hashlib.sha256(
        audit.canonical_json(old).encode()).hexdigest()
    store.update_clinical(c, reason="stage from biopsy report", histologic_stage=3,
                          edema="none")
    h2 = c.history.order_by("-history_id").first()
    with_stage = {**old, "history_id": h2.history_id, "history_date": h2.history_date,
                  "history_type": "~", "history_change_reason": "stage from biopsy report",
                  "histologic_stage": 3, "edema": "none"}
    assert audit.row_digest(h2) == hashlib.sha256(
        audit.canonical_json(with_stage).encode()).hexdigest()
    assert audit.verify() == []
    with connection.cursor() as cur:  # NULL -> value by raw SQL is seen
        cur.execute(f"UPDATE {h._meta.db_table} SET hepatomegaly = %s WHERE history_id = %s",
                    [True, h.history_id])
    assert kinds(audit.verify()) == {"history_edited"}


def test_row_digests_equal_row_digest(enrolled: Any, store: Any) -> None:
    """The columnar digests (importers' raw-SQL path) equal audit.row_digest row by row, for
    models with nullable added columns, booleans, decimals, dates and JSON fields."""
    from hepatrial.trials import audit
    from hepatrial.trials.models import ClinicalAssessment, Participant

    c = _clinical_visit(enrolled, store)
    store.update_clinical(c, reason="signs", hepatomegaly=True, spider_angiomata=False,
                          weight_kg="71.5")
    consts = ("history_date", "history_user_id", "history_change_reason", "history_type")
    for model in (ClinicalAssessment, Participant):
        hm = model.history.model
        rows = list(hm._base_manager.order_by("history_id"))
        assert len(rows) >= 2
        for h in rows:
            cols = {f.attname: [getattr(h, f.attname)] for f in hm._meta.concrete_fields
                    if f.attname not in consts}
            const = {k: getattr(h, k) for k in consts}
            assert audit.row_digests(hm, cols, const) == [audit.row_digest(h)], model
    with pytest.raises(ValueError, match="digest needs exactly the columns"):
        audit.row_digests(ClinicalAssessment.history.model, {"id": [1]}, {})
