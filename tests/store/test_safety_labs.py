"""Lab-derived adverse events (issue 12): a CTCAE v5.0 lab grade that rises above the
baseline grade proposes an adverse event for the investigator to confirm or dismiss.

The grades are :func:`hepatrial.scores.ctcae.ctcae_grade` with the store's reference ranges
(bilirubin ULN 21 umol/L, ALT ULN 40 U/L, INR ULN 1.2, albumin LLN 35 g/L, platelets LLN
150 x 10^9/L): a value proposes when its grade is above the baseline's and above the value
before it (a new rise or a worsening; the same grade again continues the event).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.store._safety import DAY0, fast_passwords, safety_trial

ONE = dt.timedelta(days=1)
DAYS = {"D0": 0, "W1": 7, "W2": 14, "W4": 28, "W8": 56, "W24": 168}
UNITS = {"alt": "U/L", "bilirubin": "umol/L", "platelets": "10^9/L", "albumin": "g/L",
         "inr": "1", "creatinine": "umol/L"}  # fmt: skip


@pytest.fixture
def trial(store: Any, settings: Any) -> dict[str, Any]:
    fast_passwords(settings)
    t = safety_trial(store, 1)
    for v, d in DAYS.items():
        store.record_visit(participant="K01", visit_code=v, actual_date=DAY0 + d * ONE)
    return t


def labs(store: Any, analyte: str, values: dict[str, str]) -> dict[str, Any]:
    return {v: store.record_lab(participant="K01", visit_code=v, analyte=analyte, value=x,
                                unit=UNITS[analyte]) for v, x in values.items()}


def proposals() -> list[tuple[Any, ...]]:
    from hepatrial.trials.models.safety import LabAEProposal

    return list(LabAEProposal.objects.order_by("pk").values_list(
        "term", "visit_code", "grade", "baseline_grade", "status"))


def test_rises_worsening_recurrence_and_the_uln_boundary(trial: Any, store: Any) -> None:
    from hepatrial.trials.services import safety

    labs(store, "alt", {"D0": "30", "W1": "40", "W2": "41", "W4": "130", "W8": "125",
                        "W24": "50"})
    new = safety.propose_lab_adverse_events("K01")
    t = "Alanine aminotransferase increased"
    assert proposals() == [(t, "W2", 1, 0, "proposed"),      # 40 = ULN is grade 0; 41 > ULN
                           (t, "W4", 2, 0, "proposed")]      # > 3 x ULN: worse
    assert [p.specimen_date for p in new] == [DAY0 + 14 * ONE, DAY0 + 28 * ONE]
    assert new[0].reference == {"uln": 40.0, "unit": "U/L"}
    assert safety.propose_lab_adverse_events("K01") == []    # each (lab, grade) once
    # W8 125 continues W4's grade 2, W24 50 (grade 1) improves: no proposal; a recurrence
    # after a normal value is one
    labs(store, "inr", {"D0": "1.10", "W1": "1.30", "W2": "1.10", "W4": "1.21"})
    safety.propose_lab_adverse_events("K01")
    assert proposals()[2:] == [("INR increased", "W1", 1, 0, "proposed"),
                               ("INR increased", "W4", 1, 0, "proposed")]


def test_abnormal_baseline_and_low_value_terms(trial: Any, store: Any) -> None:
    from hepatrial.trials.services import safety

    # bilirubin: baseline 40 (grade 2, > 1.5 x ULN); 45 is grade 1 (x baseline): no rise;
    # 130 is > 3 x baseline: grade 3
    labs(store, "bilirubin", {"D0": "40", "W1": "45", "W2": "130"})
    labs(store, "platelets", {"D0": "160", "W1": "74"})           # < 75: grade 2
    labs(store, "albumin", {"D0": "36", "W1": "30", "W2": "29"})  # < LLN 1, < 30 g/L 2
    labs(store, "creatinine", {"W1": "300"})                      # no baseline: nothing
    safety.propose_lab_adverse_events("K01")
    assert proposals() == [
        ("Blood bilirubin increased", "W2", 3, 2, "proposed"),
        ("Platelet count decreased", "W1", 2, 0, "proposed"),
        ("Hypoalbuminemia", "W1", 1, 0, "proposed"),
        ("Hypoalbuminemia", "W2", 2, 0, "proposed"),
    ]


def test_a_corrected_lab_withdraws_its_proposal(trial: Any, store: Any) -> None:
    from hepatrial.trials.services import safety

    got = labs(store, "alt", {"D0": "30", "W1": "41", "W2": "130"})
    safety.propose_lab_adverse_events("K01")
    store.update_lab(got["W2"], value="100", reason="transcription error: 100 U/L")
    safety.propose_lab_adverse_events("K01")
    assert proposals() == [("Alanine aminotransferase increased", "W1", 1, 0, "proposed"),
                           ("Alanine aminotransferase increased", "W2", 2, 0, "withdrawn")]


def test_confirm_or_dismiss_with_a_reason(trial: Any, store: Any) -> None:
    from hepatrial.errors import ChangeReasonRequired, PermissionDenied
    from hepatrial.trials import audit
    from hepatrial.trials.models.safety import LabAEProposal
    from hepatrial.trials.services import safety

    labs(store, "alt", {"D0": "30", "W1": "41", "W2": "130"})
    safety.propose_lab_adverse_events("K01")
    g1, g2 = LabAEProposal.objects.order_by("pk")
    kw = {"relatedness_product": "possible", "relatedness_procedure": "not_related",
          "action_taken": "none"}
    with pytest.raises(PermissionDenied, match="only investigator may"):
        safety.confirm_lab_proposal(g1, user="coord", **kw)
    ae = safety.confirm_lab_proposal(g1, user="inv", **kw)
    assert (ae.term, ae.grade, ae.onset_date, ae.meddra_code, ae.grade_definition) == (
        "Alanine aminotransferase increased", 1, DAY0 + 7 * ONE, 10001551,
        ">ULN - 3.0 x ULN if baseline was normal; 1.5 - 3.0 x baseline if baseline was "
        "abnormal")
    g1.refresh_from_db()
    assert (g1.status, g1.adverse_event_id, g1.decided_by.username) == ("confirmed", ae.pk,
                                                                        "inv")
    with pytest.raises(ChangeReasonRequired):
        safety.dismiss_lab_proposal(g2, reason=" ", user="inv")
    safety.dismiss_lab_proposal(g2, reason="same event as AE-1: its grade is updated",
                                user="inv")  # fmt: skip
    g2.refresh_from_db()
    assert (g2.status, g2.reason) == ("dismissed", "same event as AE-1: its grade is updated")
    with pytest.raises(safety.StoreError, match="is dismissed: only a proposed one"):
        safety.dismiss_lab_proposal(g2, reason="again", user="inv")
    assert audit.verify() == []
