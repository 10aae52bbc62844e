"""E-signatures (21 CFR 11.50, 11.70, 11.200): password re-entry, failure count and lockout,
manifest of ledger entries, invalidation by a later change, tampering caught by verify."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.db import connection

from tests.store._trial import PASSWORD, build, fast_passwords

MEANING = "I reviewed and approve these data"


@pytest.fixture
def trial(store: Any, settings: Any) -> dict[str, Any]:
    fast_passwords(settings)
    return build(store)


def _sign_w1(store: Any, **kw: Any) -> Any:
    args = {"level": "visit", "participant": "K01", "visit_code": "W1", "meaning": MEANING,
            "user": "inv", "password": PASSWORD, **kw}  # fmt: skip
    return store.sign(**args)


def test_signature_shows_name_utc_time_meaning_and_covers_the_visit(
    trial: dict[str, Any], store: Any
) -> None:
    from hepatrial.trials import audit
    from hepatrial.trials.audit.signatures import manifest_digest
    from hepatrial.trials.models import AuditLedger, ClinicalAssessment, LabResult, Visit

    before = dt.datetime.now(dt.UTC)
    sig = _sign_w1(store)
    # 11.50: printed name, date and time (UTC), meaning; and the signer's role
    assert (sig.printed_name, sig.role, sig.meaning) == ("Dr Inv", "investigator", MEANING)
    assert sig.signer.username == "inv"
    assert sig.signed_at.utcoffset() == dt.timedelta(0) and before <= sig.signed_at
    # 11.70: the visit and every record of it, each with its ledger entry and digest
    w1 = Visit.objects.get(participant__study_id="K01", code="W1")
    labs = sorted(LabResult.objects.filter(visit=w1).values_list("pk", flat=True))
    clin = ClinicalAssessment.objects.get(visit=w1).pk
    assert [(e[0], e[1]) for e in sig.manifest] == [
        ("trials.clinicalassessment", clin),
        *[("trials.labresult", pk) for pk in labs],
        ("trials.visit", w1.pk),
    ]
    for label, pk, seq, digest in sig.manifest:
        entry = AuditLedger.objects.get(seq=seq)
        assert (entry.object_pk, entry.digest) == (str(pk), digest)
        assert entry.history_model == label.replace("trials.", "trials.historical")
        newest = AuditLedger.objects.filter(history_model=entry.history_model,
                                            object_pk=str(pk)).order_by("-seq").first()  # fmt: skip
        assert newest.seq == seq  # the latest version of the row at signing
    assert sig.manifest_digest == manifest_digest(sig.manifest)
    assert sig.ledger_seq == AuditLedger.objects.get(seq=sig.ledger_seq).seq
    assert AuditLedger.objects.get(seq=sig.ledger_seq).chain_hash == sig.ledger_hash
    assert str(store.signature_status(sig)) == "valid"
    # the signature is itself an audited record, signed by the signer
    h = sig.history.get()
    assert (h.history_user.username, h.history_change_reason) == ("inv", f"signed: {MEANING}")
    assert audit.verify() == []


def test_casebook_signature_covers_every_record_of_the_participant(
    trial: dict[str, Any], store: Any
) -> None:
    from hepatrial.trials.audit.signatures import covered_rows
    from hepatrial.trials.models import LabResult, Participant, Visit

    sig = store.sign(level="participant", participant="K01", meaning=MEANING, user="inv",
                     password=PASSWORD)  # fmt: skip
    k01 = Participant.objects.get(study_id="K01")
    labels = {e[0] for e in sig.manifest}
    assert {"trials.participant", "trials.visit", "trials.labresult",
            "trials.clinicalassessment"} <= labels  # fmt: skip
    n_visits = Visit.objects.filter(participant=k01).count()
    assert sum(e[0] == "trials.visit" for e in sig.manifest) == n_visits == 7
    assert sum(e[0] == "trials.labresult" for e in sig.manifest) == (
        LabResult.objects.filter(participant=k01).count()
    ) == 4
    assert all(e[1] != LabResult.objects.get(participant__study_id="K02").pk
               for e in sig.manifest if e[0] == "trials.labresult")  # fmt: skip
    assert sum(len(v) for v in covered_rows("participant", k01.pk).values()) == len(sig.manifest)
    assert sig.visit is None and str(store.signature_status(sig)) == "valid"


def test_a_later_change_invalidates_the_signature_with_its_ledger_seq(
    trial: dict[str, Any], store: Any
) -> None:
    from hepatrial.trials.models import AuditLedger

    sig = _sign_w1(store)
    other = store.sign(level="visit", participant="K01", visit_code="D0", meaning=MEANING,
                       user="inv", password=PASSWORD)  # fmt: skip
    store.update_lab(trial["labs"]["W1"], value="2.6", reason="transcription error")
    seq = AuditLedger.objects.filter(history_model="trials.historicallabresult",
                                     object_pk=str(trial["labs"]["W1"].pk)).order_by("-seq")[0].seq
    st = store.signature_status(sig)
    assert (st.state, st.change_seq, str(st)) == ("invalidated", seq,
                                                  f"invalidated by change seq {seq}")
    assert not st.valid
    assert str(store.signature_status(other)) == "valid"  # D0 was not changed
    # a second change does not move N: the first change after signing counts
    store.update_lab(trial["labs"]["W1"], value="2.7", reason="second correction")
    assert store.signature_status(sig).change_seq == seq
    # a new signature of the changed visit is valid again
    assert str(store.signature_status(_sign_w1(store))) == "valid"


@pytest.mark.parametrize("change", ["new lab in the visit", "delete a lab", "visit date"])
def test_adding_or_deleting_a_covered_row_invalidates(
    trial: dict[str, Any], store: Any, change: str
) -> None:
    sig = _sign_w1(store)
    if change == "new lab in the visit":
        store.record_lab(participant="K01", visit_code="W1", analyte="albumin", value="30",
                         unit="g/L")  # fmt: skip
    elif change == "delete a lab":
        trial["labs"]["W1"].delete(reason="entered under the wrong visit")
    else:
        store.record_visit(participant="K01", visit_code="W1", actual_date="2008-01-28",
                           reason="wrong date")  # fmt: skip
    st = store.signature_status(sig)
    assert st.state == "invalidated" and st.change_seq > sig.ledger_seq


def test_changes_elsewhere_and_locks_do_not_invalidate(trial: dict[str, Any], store: Any) -> None:
    sig = _sign_w1(store)
    store.update_lab(trial["labs"]["D0"], value="2.4", reason="correction")
    store.update_lab(trial["labs"]["K02"], value="2.0", reason="correction")
    store.lock(level="visit", participant="K01", visit_code="W1", user="dm")
    store.lock(level="trial", user="dm", reason="database lock")
    assert str(store.signature_status(sig)) == "valid"
    # signing a locked record is allowed: a signature changes no data
    assert str(store.signature_status(_sign_w1(store))) == "valid"


def test_wrong_password_refused_counted_and_five_deactivate(
    trial: dict[str, Any], store: Any
) -> None:
    from django.contrib.auth import get_user_model

    from hepatrial.errors import AuthenticationFailed
    from hepatrial.trials import audit
    from hepatrial.trials.models import Signature, UserProfile

    User = get_user_model()
    for n in range(1, 5):
        with pytest.raises(AuthenticationFailed, match=f"wrong password for 'inv' .{n} of 5"):
            _sign_w1(store, password="not-the-password")
        assert UserProfile.objects.get(user__username="inv").failed_signatures == n
    # a right password resets the count (consecutive failures)
    _sign_w1(store)
    assert UserProfile.objects.get(user__username="inv").failed_signatures == 0
    for _ in range(4):
        with pytest.raises(AuthenticationFailed):
            _sign_w1(store, password="")
    with pytest.raises(AuthenticationFailed, match="5 consecutive failures: the account is now "
                                                   "deactivated"):  # fmt: skip
        _sign_w1(store, password="still wrong")
    inv = User.objects.get(username="inv")
    assert not inv.is_active
    assert Signature.objects.count() == 1
    # deactivated: even the right password is refused, and not counted
    with pytest.raises(AuthenticationFailed, match="account 'inv' is deactivated"):
        _sign_w1(store)
    profile = UserProfile.objects.get(user=inv)
    assert profile.failed_signatures == 5
    # every step is audited: the count (with reasons) and the deactivation
    reasons = list(profile.history.order_by("history_id").values_list("history_change_reason",
                                                                      flat=True))  # fmt: skip
    assert reasons[1:5] == [f"wrong password given to sign (failure {n})" for n in range(1, 5)]
    assert reasons[5] == "password re-entered correctly to sign"
    assert reasons[-1] == "wrong password given to sign (failure 5)"
    last = inv.history.order_by("-history_id").first()
    assert last.is_active is False
    assert last.history_change_reason == (
        "account deactivated after 5 consecutive wrong passwords given to sign"
    )
    assert audit.verify() == []
    # an admin reactivates it, with a reason; the count starts again
    store.reactivate_user(user_account="inv", reason="identity confirmed by phone", user="adm")
    inv.refresh_from_db()
    assert inv.is_active and UserProfile.objects.get(user=inv).failed_signatures == 0
    _sign_w1(store)


def test_sql_edit_of_a_signature_row_is_caught_by_verify(
    trial: dict[str, Any], store: Any
) -> None:
    from hepatrial.trials import audit

    sig = _sign_w1(store)
    assert audit.verify() == []
    with connection.cursor() as cur:  # re-date the signature and change its meaning
        cur.execute("UPDATE trials_signature SET meaning = %s, signed_at = %s WHERE id = %s",
                    ["I approve", "2030-01-01 00:00:00", sig.pk])  # fmt: skip
    problems = audit.verify()
    assert [(p.kind, p.model, p.object_pk) for p in problems] == [
        ("live_edited", "trials.signature", str(sig.pk))
    ]
    assert "meaning: 'I reviewed and approve these data' → 'I approve'" in problems[0].detail


def test_sql_edit_of_the_manifest_shows_the_signature_altered(
    trial: dict[str, Any], store: Any
) -> None:
    from hepatrial.trials import audit
    from hepatrial.trials.models import Signature

    sig = _sign_w1(store)
    store.update_lab(trial["labs"]["W1"], value="2.6", reason="transcription error")
    assert store.signature_status(sig).state == "invalidated"
    # someone rewrites the manifest and its digest to hide the change
    from hepatrial.trials.audit.signatures import build_manifest, manifest_digest

    forged = build_manifest("visit", sig.participant_id, sig.visit_id)
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE trials_signature SET manifest = %s, manifest_digest = %s WHERE id = %s",
            [json.dumps(forged), manifest_digest(forged), sig.pk],
        )
    sig = Signature.objects.get(pk=sig.pk)
    # the covered rows' later ledger entries are still after the signature's ledger seq
    assert store.signature_status(sig).state == "invalidated"
    assert {p.kind for p in audit.verify()} == {"live_edited"}
    with connection.cursor() as cur:
        cur.execute("UPDATE trials_signature SET manifest_digest = %s WHERE id = %s",
                    ["0" * 64, sig.pk])  # fmt: skip
    st = store.signature_status(Signature.objects.get(pk=sig.pk))
    assert str(st) == "altered: the manifest does not match its digest"


def test_signing_rules(trial: dict[str, Any], store: Any) -> None:
    from hepatrial.errors import StoreError

    with pytest.raises(StoreError, match="visit W2 of participant K01 is not done yet"):
        store.sign(level="visit", participant="K01", visit_code="W2", meaning=MEANING,
                   user="inv", password=PASSWORD)  # fmt: skip
    with pytest.raises(StoreError, match="meaning of the signature is required"):
        _sign_w1(store, meaning="  ")
    with pytest.raises(StoreError, match="level 'trial'"):
        store.sign(level="trial", participant="K01", meaning=MEANING, user="inv",
                   password=PASSWORD)  # fmt: skip


def test_signatures_listing_with_status(trial: dict[str, Any], store: Any) -> None:
    a = _sign_w1(store)
    b = store.sign(level="participant", participant="K01", meaning=MEANING, user="inv",
                   password=PASSWORD)  # fmt: skip
    store.update_lab(trial["labs"]["D0"], value="2.4", reason="correction")
    rows = store.signatures("K01")
    assert [(s.pk, str(st).split(" seq")[0]) for s, st in rows] == [
        (a.pk, "valid"), (b.pk, "invalidated by change")
    ]
    assert store.signatures("K02") == []
