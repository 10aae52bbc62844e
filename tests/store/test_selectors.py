"""Selectors: plain pandas tables in the shapes of docs/contracts.md."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from tests.store._product import administer
from tests.store.conftest import DAY0, enrol, released_batch


@pytest.fixture
def trial(store: Any) -> Any:
    enrol(store, "K02")
    enrol(store, "K01")
    for sid in ("K01", "K02"):
        store.record_visit(participant=sid, visit_code="D0", actual_date="2008-01-20")
        store.record_visit(participant=sid, visit_code="W1", actual_date="2008-01-28")
        store.record_lab(participant=sid, visit_code="D0", analyte="inr", value="1.5", unit="1")
        store.record_lab(participant=sid, visit_code="D0", analyte="albumin", value="3.0",
                         unit="g/dL")  # fmt: skip
        store.record_lab(participant=sid, visit_code="W1", analyte="albumin", value="31",
                         unit="g/L")  # fmt: skip
    store.record_clinical(participant="K01", visit_code="D0", ascites="none",
                          encephalopathy="none", weight_kg="72.5")  # fmt: skip
    released_batch(store, "B1", "K01", release_date=DAY0)  # product lifecycle to the bedside
    administer(store, "K01", "B1", DAY0, cells=5e7, route="portal_vein")
    store.record_adverse_event(participant="K01", term="Fever", grade=1, serious=False,
                               relatedness_product="possible", relatedness_procedure="not_related",
                               action_taken="none", onset_date="2008-01-21",
                               resolution_date="2008-01-23", outcome="recovered")  # fmt: skip
    store.change_status(participant="K02", status="withdrawn", date="2008-02-10",
                        reason="moved away")  # fmt: skip
    return store


def test_measurements_frame_contract(trial: Any) -> None:
    from hepatrial.trials import selectors

    df = selectors.measurements_frame()
    assert list(df.columns) == [
        "participant_id", "site", "arm", "visit", "nominal_day", "actual_day", "analyte",
        "value", "unit", "source",
    ]  # fmt: skip
    assert list(df.itertuples(index=False, name=None))[:4] == [
        ("K01", "S01", "single", "D0", 0, 0, "albumin", 30.0, "g/L", "measured"),
        ("K01", "S01", "single", "D0", 0, 0, "inr", 1.5, "1", "measured"),
        ("K01", "S01", "single", "D0", 0, 0, "weight", 72.5, "kg", "measured"),
        ("K01", "S01", "single", "W1", 7, 8, "albumin", 31.0, "g/L", "measured"),
    ]
    assert len(df) == 7 and df["actual_day"].dtype == "Int64"


def test_participants_and_adverse_events_contract(trial: Any) -> None:
    from hepatrial import vocab
    from hepatrial.trials import selectors

    p = selectors.participants_frame()
    assert tuple(p.columns) == selectors.PARTICIPANT_COLUMNS == vocab.PARTICIPANT_COLUMNS
    assert list(p["participant_id"]) == ["K01", "K02"]
    k1 = p.iloc[0]
    assert k1["route"] == "portal_vein" and k1["cells_total"] == 5e7
    assert k1["n_administrations"] == 1
    assert k1["cells_per_kg"] == pytest.approx(5e7 / 72.5)
    assert k1["age"] == 48  # consent 2008-01-06 (year 2008) - born 1960
    assert p["age"].dtype == "Int64"
    k2 = p.iloc[1]
    assert (k2["status"], k2["status_reason"]) == ("withdrawn", "moved away")
    assert k2["route"] == "NA" and k2["n_administrations"] == 0 and pd.isna(k2["cells_total"])
    ae = selectors.adverse_events_frame()
    assert tuple(ae.columns) == selectors.ADVERSE_EVENT_COLUMNS == vocab.ADVERSE_EVENT_COLUMNS
    assert ae.iloc[0].to_dict() == {
        "participant_id": "K01", "term": "Fever", "grade": 1, "serious": False,
        "related": "possible", "onset_day": 1, "resolved_day": 3, "outcome": "recovered",
    }  # fmt: skip


def test_visits_and_status_history(trial: Any) -> None:
    from hepatrial.trials import selectors

    v = selectors.visits_frame()
    k1 = v[v["participant_id"] == "K01"].set_index("visit")
    assert list(k1.index) == ["SCR", "D0", "W1", "W2", "W4", "W8", "W24"]
    assert k1.loc["W1", "actual_day"] == 8 and k1.loc["W1", "status"] == "in_window"
    assert pd.isna(k1.loc["W2", "actual_day"])
    s = selectors.status_history_frame()
    assert list(s[s["participant_id"] == "K02"]["status"]) == ["screened", "enrolled", "withdrawn"]
    rec = selectors.protocol_record()
    assert rec["name"] == "kharaziha2009" and len(rec["content_hash"]) == 64
