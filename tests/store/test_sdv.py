"""Source-data verification in the store: marks on items and whole forms, cleared by a later
change (computed from the ledger, like signatures), every rule, permissions, tampering.

The trial (``tests/store/_trial.py``): K01's W1 has bilirubin 2.3 mg/dL, INR 1.5 and a
clinical assessment (ascites slight); accounts coord, inv, mon (S01), inv2 (S02), dm, ...
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.store._trial import build, fast_passwords
from tests.store.conftest import DAY0


@pytest.fixture
def trial(store: Any, settings: Any) -> dict[str, Any]:
    fast_passwords(settings)
    return build(store)


def _u(trial: dict[str, Any], name: str) -> Any:
    return trial["users"][name]


def _mark(trial: dict[str, Any], form: str, item: str = "", who: str = "mon",
          participant: str = "K01", visit: str = "W1", **kw: Any) -> Any:
    from hepatrial.trials.services import sdv

    return sdv.verify_source(participant=participant, visit_code=visit, form=form, item=item,
                             user=_u(trial, who) if who else None, **kw)


def _w1() -> Any:
    from hepatrial.trials.models import Visit

    return Visit.objects.get(participant__study_id="K01", code="W1")


def _states(form: str) -> dict[str, str]:
    from hepatrial.trials.services import sdv

    return {i.item: (i.state if i.state != "cleared" else f"cleared {i.change_seq}")
            for i in sdv.visit_sdv(_w1()).forms[form].items}


def _last_seq(obj: Any) -> int:
    from hepatrial.trials.models import AuditLedger

    h = obj.history.model._meta.label_lower
    return int(AuditLedger.objects.filter(history_model=h, object_pk=str(obj.pk))
               .order_by("-seq").values_list("seq", flat=True).first())


def test_whole_lab_form_is_verified_with_its_manifest(trial: dict[str, Any], store: Any
                                                       ) -> None:
    from hepatrial.trials.audit.chain import head
    from hepatrial.trials.models import LabResult
    from hepatrial.trials.services import sdv

    labs = {lab.analyte: lab for lab in LabResult.objects.filter(visit=_w1())}
    m = _mark(trial, "labs", note="lab report p. 3")
    assert (m.form, m.item, m.verified_by.get_username(), m.note) == (
        "labs", "", "mon", "lab report p. 3")
    assert [e[0:2] + e[4:] for e in m.manifest] == [
        ["trials.labresult", labs["bilirubin"].pk, "bilirubin", "", ""],
        ["trials.labresult", labs["inr"].pk, "inr", "", ""]]
    assert [e[2] for e in m.manifest] == [_last_seq(labs["bilirubin"]), _last_seq(labs["inr"])]
    assert m.manifest_digest == sdv.manifest_digest(m.manifest)
    assert m.ledger_seq == head()[0] - 1  # the head before the mark's own entry
    assert str(sdv.status(m)) == "verified"
    assert _states("labs") == {"bilirubin": "verified", "inr": "verified"}
    assert _states("clinical") == {"ascites": "not_verified",
                                   "dialysis_last_week": "not_verified"}
    v = sdv.visit_sdv(_w1())
    assert (v.forms["labs"].state, v.forms["clinical"].state, v.verified) == (
        "verified", "not_verified", False)


def test_a_later_change_clears_the_form_mark_and_only_that_item(trial: dict[str, Any],
                                                                store: Any) -> None:
    from hepatrial.trials.services import sdv

    m = _mark(trial, "labs")
    lab = trial["labs"]["W1"]
    store.update_lab(lab, value="2.4", unit="mg/dL", reason="transcription error")
    seq = _last_seq(lab)
    assert str(sdv.status(m)) == f"cleared by change seq {seq}"
    assert sdv.status(m).change_seq == seq
    assert _states("labs") == {"bilirubin": f"cleared {seq}", "inr": "verified"}
    assert sdv.visit_sdv(_w1()).forms["labs"].state == "partly"
    # re-verified after the change: verified again
    _mark(trial, "labs", "bilirubin")
    assert _states("labs") == {"bilirubin": "verified", "inr": "verified"}
    assert str(sdv.status(m)).startswith("cleared")  # the old mark stays cleared


def test_a_new_row_in_the_form_clears_the_form_mark(trial: dict[str, Any], store: Any) -> None:
    from hepatrial.trials.services import sdv

    m = _mark(trial, "labs")
    new = store.record_lab(participant="K01", visit_code="W1", analyte="albumin", value="30",
                           unit="g/L")
    assert str(sdv.status(m)) == f"cleared by change seq {_last_seq(new)}"
    assert _states("labs") == {"albumin": "not_verified", "bilirubin": "verified",
                               "inr": "verified"}


def test_an_item_mark_is_not_cleared_by_another_item(trial: dict[str, Any], store: Any) -> None:
    from hepatrial.trials.models import LabResult
    from hepatrial.trials.services import sdv

    m = _mark(trial, "labs", "inr")
    assert [e[4] for e in m.manifest] == ["inr"]
    store.update_lab(trial["labs"]["W1"], value="2.5", unit="mg/dL", reason="corrected")
    store.record_lab(participant="K01", visit_code="W1", analyte="albumin", value="30",
                     unit="g/L")
    assert str(sdv.status(m)) == "verified"
    inr = LabResult.objects.get(visit=_w1(), analyte="inr")
    store.update_lab(inr, laboratory="central lab", reason="laboratory named")
    assert str(sdv.status(m)) == f"cleared by change seq {_last_seq(inr)}"


def test_a_deleted_and_reentered_value_is_not_verified(trial: dict[str, Any], store: Any
                                                       ) -> None:
    from hepatrial.trials.models import AuditLedger, LabResult
    from hepatrial.trials.services import sdv

    m = _mark(trial, "labs", "inr")
    inr = LabResult.objects.get(visit=_w1(), analyte="inr")
    pk = inr.pk
    inr.delete(reason="entered for the wrong visit")
    deleted = int(AuditLedger.objects.filter(object_pk=str(pk),
                                             history_model="trials.historicallabresult",
                                             history_type="-").values_list("seq", flat=True)
                  .get())
    assert str(sdv.status(m)) == f"cleared by change seq {deleted}"
    assert "inr" not in _states("labs")
    again = store.record_lab(participant="K01", visit_code="W1", analyte="inr", value="1.5",
                             unit="1")
    assert _states("labs")["inr"] == f"cleared {deleted}"
    assert again.pk != pk


def test_clinical_items_are_cleared_only_by_their_own_change(trial: dict[str, Any],
                                                             store: Any) -> None:
    from hepatrial.trials.models import ClinicalAssessment
    from hepatrial.trials.services import sdv

    item = _mark(trial, "clinical", "ascites")
    assert [e[4:] for e in item.manifest] == [["ascites", "ascites", '"slight"']]
    form = _mark(trial, "clinical")
    assert sorted(e[4] for e in form.manifest) == ["", "ascites", "dialysis_last_week"]
    c = ClinicalAssessment.objects.get(visit=_w1())
    store.update_clinical(c, encephalopathy="none")  # first entry of an item: no reason
    seq = _last_seq(c)
    assert str(sdv.status(item)) == "verified"
    assert str(sdv.status(form)) == f"cleared by change seq {seq}"
    assert _states("clinical") == {"ascites": "verified", "dialysis_last_week": "verified",
                                   "encephalopathy": "not_verified"}
    store.update_clinical(c, ascites="moderate", reason="re-examined")
    seq2 = _last_seq(c)
    assert str(sdv.status(item)) == f"cleared by change seq {seq2}"
    assert _states("clinical")["ascites"] == f"cleared {seq2}"


def test_a_change_and_back_still_clears(trial: dict[str, Any], store: Any) -> None:
    """The first change after the mark decides, even when a later one restores the value."""
    from hepatrial.trials.models import ClinicalAssessment
    from hepatrial.trials.services import sdv

    m = _mark(trial, "clinical", "ascites")
    c = ClinicalAssessment.objects.get(visit=_w1())
    store.update_clinical(c, ascites="moderate", reason="typo")
    first = _last_seq(c)
    store.update_clinical(c, ascites="slight", reason="typo undone")
    assert str(sdv.status(m)) == f"cleared by change seq {first}"


@pytest.mark.parametrize(("kw", "fields"), [
    ({"form": "vitals"}, ["form"]),
    ({"form": "labs", "item": "nonsense"}, ["item"]),
    ({"form": "labs", "item": "albumin"}, ["item"]),
    ({"form": "clinical", "item": "weight_kg"}, ["item"]),
    ({"form": "labs", "visit": "W2"}, ["visit"]),
    ({"form": "labs", "participant": "K02", "visit": "W1"}, ["visit"]),
    ({"form": "clinical", "participant": "K02", "visit": "D0"}, ["form"]),
    ({"form": "labs", "who": None}, [""]),
])
def test_sdv_rules(trial: dict[str, Any], store: Any, kw: dict[str, Any],
                   fields: list[str]) -> None:
    from hepatrial.trials.models import SourceVerification
    from hepatrial.trials.validators import RuleViolation

    with pytest.raises(RuleViolation) as e:
        _mark(trial, **kw)
    assert list(e.value.by_field()) == fields
    assert not SourceVerification.objects.exists()


def test_a_valid_mark_is_not_repeated(trial: dict[str, Any], store: Any) -> None:
    from hepatrial.trials.validators import RuleViolation

    _mark(trial, "labs")
    with pytest.raises(RuleViolation, match="already verified"):
        _mark(trial, "labs")
    with pytest.raises(RuleViolation, match="already verified"):
        _mark(trial, "labs", "inr")  # covered by the form mark
    store.update_lab(trial["labs"]["W1"], value="2.4", unit="mg/dL", reason="typo")
    assert _mark(trial, "labs", who="dm").verified_by.get_username() == "dm"


@pytest.mark.parametrize("who", ["coord", "inv", "qa", "aud", "adm", "inv2"])
def test_only_monitors_and_data_managers_verify(trial: dict[str, Any], store: Any,
                                               who: str) -> None:
    from hepatrial.errors import PermissionDenied

    with pytest.raises(PermissionDenied):
        _mark(trial, "labs", who=who)


def test_a_monitor_of_another_site_cannot_verify(trial: dict[str, Any], store: Any) -> None:
    from hepatrial.errors import PermissionDenied

    store.record_visit(participant="K03", visit_code="D0", actual_date=DAY0)
    store.record_lab(participant="K03", visit_code="D0", analyte="inr", value="1.2", unit="1")
    with pytest.raises(PermissionDenied, match="not a member of site S02"):
        _mark(trial, "labs", participant="K03", visit="D0")
    assert _mark(trial, "labs", who="dm", participant="K03", visit="D0").form == "labs"


def test_sdv_on_a_locked_visit_is_allowed_and_writes_no_data(trial: dict[str, Any],
                                                            store: Any) -> None:
    store.lock(level="visit", participant="K01", visit_code="W1", user="dm", reason="done")
    assert _mark(trial, "labs").form == "labs"


def test_an_edited_manifest_is_reported(trial: dict[str, Any], store: Any) -> None:
    from django.db import connection

    from hepatrial.trials import audit
    from hepatrial.trials.services import sdv

    m = _mark(trial, "labs")
    with connection.cursor() as cur:
        cur.execute("UPDATE trials_sourceverification SET manifest = %s WHERE id = %s",
                    ["[]", m.pk])
    m.refresh_from_db()
    assert str(sdv.status(m)) == "altered: the manifest does not match its digest"
    assert [(p.kind, p.model) for p in audit.verify()] == [
        ("live_edited", "trials.sourceverification")]


def test_sdv_after_a_visit_date_change_is_kept(trial: dict[str, Any], store: Any) -> None:
    """The lab form's mark covers the lab rows, not the visit date."""
    from hepatrial.trials.services import sdv

    m = _mark(trial, "labs")
    store.record_visit(participant="K01", visit_code="W1",
                       actual_date=DAY0 + dt.timedelta(days=8), reason="date corrected")
    assert str(sdv.status(m)) == "verified"
