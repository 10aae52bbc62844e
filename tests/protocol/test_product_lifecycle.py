"""The product lifecycle state machine (hepatrial.protocol.product_lifecycle): every step's
conditions, every refusal named, and - property-tested with hypothesis - no sequence of steps
reaches "administered" without a release, and only the machine's edges are ever taken."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hepatrial.protocol.coi import make_coi
from hepatrial.protocol.loader import load_protocol
from hepatrial.protocol.models import Product
from hepatrial.protocol.product_lifecycle import (
    EDGES,
    RELEASE_STATES,
    STATE_DIAGRAM,
    TRANSITIONS,
    Action,
    Facts,
    Signature,
    State,
    TemperatureReading,
    Unmet,
    allowed_actions,
    check_transition,
)
from tests.protocol.test_product_model import PASSING

UTC = dt.UTC
T0 = dt.datetime(2009, 1, 15, 8, 0, tzinfo=UTC)  # harvest
FORMULATED = dt.datetime(2009, 2, 5, 7, 0, tzinfo=UTC)
H = dt.timedelta(hours=1)
COI = make_coi("S01", "K01", T0.date(), 1)
STEPS = {
    "isolation": {"viability": 88.0},
    "expansion": {"passage": 3, "population_doublings": 14.2, "confluence": 80},
    "harvest": {"cell_count": 45e6, "viability": 93.0},
    "formulation": {},
}
QA = Signature("quinn", "qa", "release", FORMULATED + 1 * H)


def _product() -> Product:
    p = load_protocol("kharaziha2009").product
    assert p is not None
    return p


def _facts(**kw: Any) -> Facts:
    base: dict[str, Any] = dict(
        actor="alice", actor_roles=frozenset({"coordinator"}), coi=COI, coi_scanned=COI,
        collected_at=T0, at=T0 + 3 * H, volume_ml=60.0, receipt_temperature_c=20.0,
        operators=frozenset({"mona"}), steps=STEPS, formulated_at=FORMULATED,
        results=PASSING, weight_kg=70.0,
        transit_readings=(TemperatureReading(FORMULATED + 2 * H, 4.0),
                          TemperatureReading(FORMULATED + 3 * H, 5.5)),
    )  # fmt: skip
    base.update(kw)
    return Facts(**base)


RELEASE = dict(actor="quinn", actor_roles=frozenset({"qa"}), signature=QA,
               at=FORMULATED + 1 * H)  # fmt: skip


def _conds(decision: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for u in decision.unmet:
        out.setdefault(u.condition, []).append(u.reason)
    return out


# ---------------------------------------------------------------------- the vein-to-vein path
def test_the_whole_path() -> None:
    pr = _product()
    path = [
        (Action.RECEIVE, _facts(), State.RECEIVED),
        (Action.START_MANUFACTURE, _facts(actor="mona"), State.IN_MANUFACTURE),
        (Action.COMPLETE_MANUFACTURE, _facts(actor="mona", at=FORMULATED), State.QC),
        (Action.SUBMIT_FOR_REVIEW, _facts(actor="lab"), State.QA_REVIEW),
        (Action.RELEASE, _facts(**RELEASE), State.RELEASED),
        (Action.DISPATCH, _facts(at=FORMULATED + 2 * H), State.DISPATCHED),
        (Action.RECEIVE_AT_BEDSIDE, _facts(at=FORMULATED + 3 * H), State.RECEIVED_AT_BEDSIDE),
        (Action.ADMINISTER, _facts(gate_unmet=()), State.ADMINISTERED),
    ]
    state = State.HARVESTED
    for action, facts, want in path:
        d = check_transition(state, action, facts, pr)
        assert d.allowed, d.message()
        assert d.to_state == want and d.deviations == ()
        state = d.to_state
    assert allowed_actions(state) == ()
    assert allowed_actions(State.DESTROYED) == ()


def test_state_diagram_and_edges() -> None:
    assert STATE_DIAGRAM.startswith("harvested --receive--> received")
    assert "qa_review --release--> released" in STATE_DIAGRAM
    assert len(State) == 14 and len(Action) == 14
    # the release states are reached only by the two release actions (and by moving on)
    into_release = {(s, a) for s, a, t in EDGES if t in (State.RELEASED,
                                                        State.EXCEPTIONAL_RELEASE)}
    assert into_release == {(State.QA_REVIEW, Action.RELEASE),
                            (State.QA_REVIEW, Action.RELEASE_EXCEPTIONALLY)}  # fmt: skip
    assert {t for s, a, t in EDGES if a is Action.RESUME} == {
        State.HARVESTED, State.RECEIVED, State.IN_MANUFACTURE, State.QC, State.QA_REVIEW}


def test_wrong_state_is_named() -> None:
    d = check_transition("qc", "release", _facts(**RELEASE), _product())
    assert not d.allowed and d.to_state is None
    assert _conds(d)["state"] == [
        "cannot release a batch that is qc (allowed from: qa_review)"]
    assert "release refused (1 unmet condition(s)):" in d.message()


def test_no_product_in_the_protocol() -> None:
    d = check_transition(State.HARVESTED, Action.RECEIVE, _facts(), None)
    assert _conds(d) == {"protocol": ["the protocol declares no product"]}


# ---------------------------------------------------------------------- receipt
def test_receipt_refusals_all_named() -> None:
    bad = _facts(coi_scanned=COI[:-1] + "Q", at=T0 + 30 * H, receipt_temperature_c=31.0,
                 volume_ml=12.0, actor=None)  # fmt: skip
    c = _conds(check_transition(State.HARVESTED, Action.RECEIVE, bad, _product()))
    assert set(c) == {"coi_scanned", "receipt_time", "receipt_temperature", "starting_volume",
                      "actor"}  # fmt: skip
    assert "check character 'Q' is wrong: expected 'D'" in c["coi_scanned"][0]
    assert c["receipt_time"] == ["received 30.0 h after collection (at most 24 h)"]
    assert c["receipt_temperature"] == ["31 °C at receipt is outside 15 to 25 °C"]
    assert c["starting_volume"] == ["12 mL is outside the accepted 30-100 mL"]
    other = make_coi("S01", "K02", T0.date(), 2)
    c = _conds(check_transition(State.HARVESTED, Action.RECEIVE, _facts(coi_scanned=other),
                                _product()))  # fmt: skip
    assert c == {"coi_scanned": [f"scanned {other!r} is not this batch's chain-of-identity id "
                                 f"{COI!r}"]}  # fmt: skip
    # limits are inclusive: 24 h and 15 °C and 30 mL are accepted
    ok = _facts(at=T0 + 24 * H, receipt_temperature_c=15.0, volume_ml=30.0)
    assert check_transition(State.HARVESTED, Action.RECEIVE, ok, _product()).allowed
    c = _conds(check_transition(State.HARVESTED, Action.RECEIVE,
                                _facts(collected_at=None, receipt_temperature_c=None,
                                       volume_ml=None, coi_scanned=None,
                                       at=dt.datetime(2009, 1, 15, 9)), _product()))
    assert c["receipt_time"] == ["the time of collection is not recorded",
                                 "the time of receipt datetime.datetime(2009, 1, 15, 9, 0) has "
                                 "no time zone"]  # fmt: skip
    assert c["coi_scanned"] == ["the chain-of-identity id was not scanned"]


# ---------------------------------------------------------------------- manufacture and QC
def test_in_process_controls() -> None:
    steps = {**STEPS, "expansion": {"passage": 5, "confluence": 95}}
    del steps["harvest"]
    d = check_transition(State.IN_MANUFACTURE, Action.COMPLETE_MANUFACTURE,
                         _facts(steps=steps, formulated_at=None, at=FORMULATED), _product())
    assert _conds(d) == {
        "in_process_controls": [
            "expansion.passage: 5 1 does not meet the specification 1-4 1",
            "expansion.population_doublings: no result",
            "expansion.confluence: 95 % does not meet the specification 70-90 %",
            "step harvest (Harvest, wash and count) is not recorded",
        ],
        "formulated": ["the time of formulation is not recorded"],
    }
    late = _facts(at=FORMULATED - H)
    assert _conds(check_transition(State.IN_MANUFACTURE, Action.COMPLETE_MANUFACTURE, late,
                                   _product())) == {
        "formulated": ["the time of formulation is after the step"]}  # fmt: skip


def test_submit_for_review_needs_every_result() -> None:
    results = {k: v for k, v in PASSING.items() if k not in ("cd34", "sterility")}
    results["viability"] = "92"
    d = check_transition(State.QC, Action.SUBMIT_FOR_REVIEW, _facts(results=results),
                         _product())
    assert _conds(d) == {"release_results": ["cd34: no result",
                                             "viability: '92' is not a number in %"]}
    # sterility pending on a passed Gram stain, and failing results, may go to QA review
    failing = {**PASSING, "viability": 41.0}
    del failing["sterility"]
    assert check_transition(State.QC, Action.SUBMIT_FOR_REVIEW, _facts(results=failing),
                            _product()).allowed


# ---------------------------------------------------------------------- release
def test_release_four_eyes_and_signature() -> None:
    f = _facts(**{**RELEASE, "operators": frozenset({"quinn", "mona"})})
    assert _conds(check_transition(State.QA_REVIEW, Action.RELEASE, f, _product())) == {
        "four_eyes": ["quinn manufactured this batch and cannot release it (release by an "
                      "independent QA person)"]}  # fmt: skip
    f = _facts(**{**RELEASE, "actor_roles": frozenset({"coordinator"}), "signature": None})
    c = _conds(check_transition(State.QA_REVIEW, Action.RELEASE, f, _product()))
    assert c == {"qa_role": ["a release needs the 'qa' role; quinn has coordinator"],
                 "e_signature": ["the release is not e-signed"]}  # fmt: skip
    f = _facts(**{**RELEASE, "signature": dataclasses.replace(QA, signer="mona")})
    assert _conds(check_transition(State.QA_REVIEW, Action.RELEASE, f, _product())) == {
        "e_signature": ["signed by mona, not by quinn who performs the step"]}


def test_release_refuses_out_of_specification_naming_every_test() -> None:
    bad = {**PASSING, "sterility": "POSITIVE", "viability": 41.0, "endotoxin": 9.5,
           "mycoplasma": "positive"}  # fmt: skip
    d = check_transition(State.QA_REVIEW, Action.RELEASE, _facts(**RELEASE, results=bad),
                         _product())
    assert _conds(d) == {"specification": [
        "viability: 41 % does not meet the specification >= 70 %",
        "sterility: 'POSITIVE' does not meet the specification 'no growth'",
        "endotoxin: 9.5 EU/mL does not meet the specification <= 0.5 EU/mL",
        "mycoplasma: 'positive' does not meet the specification 'negative'",
    ]}


def test_release_on_gram_stain_with_sterility_pending() -> None:
    pending = {k: v for k, v in PASSING.items() if k != "sterility"}
    d = check_transition(State.QA_REVIEW, Action.RELEASE, _facts(**RELEASE, results=pending),
                         _product())
    assert d.allowed and d.to_state is State.RELEASED


def test_release_expired_or_before_formulation() -> None:
    f = _facts(**{**RELEASE, "at": FORMULATED + 6 * H + dt.timedelta(seconds=1)})
    assert _conds(check_transition(State.QA_REVIEW, Action.RELEASE, f, _product())) == {
        "within_shelf_life": ["expired at 2009-02-05T13:00:00+00:00 (6 h after formulation); "
                              "it is now 2009-02-05T13:00:01+00:00"]}  # fmt: skip
    f = _facts(**{**RELEASE, "at": FORMULATED + 6 * H})  # inclusive
    assert check_transition(State.QA_REVIEW, Action.RELEASE, f, _product()).allowed
    f = _facts(**{**RELEASE, "at": FORMULATED - H})
    assert "before the formulation" in _conds(
        check_transition(State.QA_REVIEW, Action.RELEASE, f, _product()))["within_shelf_life"][0]


def test_release_with_per_kg_limits_needs_the_weight() -> None:
    d = check_transition(State.QA_REVIEW, Action.RELEASE, _facts(**RELEASE, weight_kg=None),
                         _product())
    assert _conds(d) == {"specification": [
        "endotoxin: the limit 5 EU/kg per dose needs the participant's weight"]}


def test_exceptional_release() -> None:
    bad = {**PASSING, "viability": 65.0}
    inv = Signature("ivan", "investigator", "medical_justification", FORMULATED + H)
    exc = {**RELEASE, "signature": dataclasses.replace(QA, meaning="exceptional_release")}
    ok = _facts(**exc, results=bad, investigator_signature=inv,
                justification="no alternative treatment; MELD 24 and rising")
    d = check_transition(State.QA_REVIEW, Action.RELEASE_EXCEPTIONALLY, ok, _product())
    assert d.allowed and d.to_state is State.EXCEPTIONAL_RELEASE
    assert len(d.deviations) == 1
    dev = d.deviations[0]
    assert (dev.category, dev.severity) == ("other", "major")
    assert dev.description == (
        "exceptional release of an out-of-specification batch (viability: 65 % does not meet "
        "the specification >= 70 %); medical justification: no alternative treatment; MELD 24 "
        "and rising")
    # normal release of the same batch is refused
    assert not check_transition(State.QA_REVIEW, Action.RELEASE, _facts(**RELEASE, results=bad),
                                _product()).allowed
    # every missing piece of the exceptional release is named
    f = _facts(**{**exc, "operators": frozenset({"quinn"})}, results=bad,
               investigator_signature=dataclasses.replace(inv, signer="quinn", role="qa"))
    c = _conds(check_transition(State.QA_REVIEW, Action.RELEASE_EXCEPTIONALLY, f, _product()))
    assert c == {
        "four_eyes": ["quinn manufactured this batch and cannot release it (release by an "
                      "independent QA person)"],
        "medical_justification": ["an exceptional release needs the investigator's documented "
                                  "medical justification"],
        "investigator_signature": ["quinn signed as 'qa', not as the investigator",
                                   "the investigator and QA must be two different people"],
    }  # fmt: skip
    f = _facts(**exc, results=PASSING, investigator_signature=inv, justification="x")
    c = _conds(check_transition(State.QA_REVIEW, Action.RELEASE_EXCEPTIONALLY, f, _product()))
    assert c == {"out_of_specification": ["the batch meets its specification: release it "
                                          "normally"]}  # fmt: skip
    f = _facts(**exc, results=bad, justification="x")
    c = _conds(check_transition(State.QA_REVIEW, Action.RELEASE_EXCEPTIONALLY, f, _product()))
    assert c == {"investigator_signature": ["the medical justification is not e-signed"]}


# ---------------------------------------------------------------------- custody
def test_transport_excursions_are_named() -> None:
    readings = (TemperatureReading(FORMULATED + 2 * H, 4.0),
                TemperatureReading(FORMULATED + 150 * dt.timedelta(minutes=1), 9.1),
                TemperatureReading(FORMULATED + 155 * dt.timedelta(minutes=1), 1.5))
    f = _facts(at=FORMULATED + 3 * H, transit_readings=readings)
    c = _conds(check_transition(State.DISPATCHED, Action.RECEIVE_AT_BEDSIDE, f, _product()))
    assert c == {"transport_temperature": [
        "2 reading(s) outside 2 to 8 °C: 2009-02-05T09:30:00+00:00 9.1 °C, "
        "2009-02-05T09:35:00+00:00 1.5 °C"]}
    f = _facts(at=FORMULATED + 7 * H, transit_readings=())
    c = _conds(check_transition(State.DISPATCHED, Action.RECEIVE_AT_BEDSIDE, f, _product()))
    assert c["transport_temperature"] == ["no transport temperature record"]
    assert c["within_shelf_life"][0].startswith("expired at 2009-02-05T13:00:00+00:00")


@pytest.mark.parametrize(("celsius", "ok"), [(2.0, True), (8.0, True), (8.1, False),
                                              (1.9, False), (None, True)])
def test_storage_temperature_at_dispatch_and_on_arrival(celsius: float | None,
                                                         ok: bool) -> None:
    """The temperature recorded with dispatch is judged against the storage range (2-8 °C,
    bounds inclusive), the one recorded on arrival at the bedside against the transport
    range; not recorded is not judged (the logger readings are)."""
    f = _facts(at=FORMULATED + 2 * H, step_temperature_c=celsius)
    c = _conds(check_transition(State.RELEASED, Action.DISPATCH, f, _product()))
    assert c == ({} if ok else {"storage_temperature": [
        f"{celsius:g} °C at dispatch is outside the storage range 2 to 8 °C"]})
    readings = (TemperatureReading(FORMULATED + 2 * H, 4.0),)
    f = _facts(at=FORMULATED + 3 * H, transit_readings=readings, step_temperature_c=celsius)
    c = _conds(check_transition(State.DISPATCHED, Action.RECEIVE_AT_BEDSIDE, f, _product()))
    assert c == ({} if ok else {"transport_temperature": [
        f"{celsius:g} °C on arrival at the bedside is outside 2 to 8 °C"]})


def test_administer_carries_the_gate() -> None:
    gate = (Unmet("patient_identifiers", "year_of_birth '1961' does not match the participant's "
                  "record"),)  # fmt: skip
    d = check_transition(State.RECEIVED_AT_BEDSIDE, Action.ADMINISTER, _facts(gate_unmet=gate),
                         _product())
    assert d.unmet == gate
    d = check_transition(State.RECEIVED_AT_BEDSIDE, Action.ADMINISTER, _facts(), _product())
    assert _conds(d) == {"dosing_gate": ["the dosing gate was not run for this administration"]}


def test_quarantine_investigate_resume_destroy() -> None:
    pr = _product()
    qa = dict(actor="quinn", actor_roles=frozenset({"qa"}))
    d = check_transition(State.DISPATCHED, Action.QUARANTINE, _facts(reason=""), pr)
    assert _conds(d) == {"reason": ["give the reason for the quarantine"]}
    d = check_transition(State.DISPATCHED, Action.QUARANTINE,
                         _facts(reason="late sterility culture positive"), pr)
    assert d.to_state is State.QUARANTINED
    d = check_transition(State.QUARANTINED, Action.INVESTIGATE, _facts(reason="INV-7"), pr)
    assert d.to_state is State.UNDER_INVESTIGATION
    # resume: a released product goes back to QA review, a pre-release one where it was
    for frm, back in [(State.DISPATCHED, State.QA_REVIEW), (State.RELEASED, State.QA_REVIEW),
                      (State.RETURNED, State.QA_REVIEW), (State.QC, State.QC),
                      (State.HARVESTED, State.HARVESTED)]:  # fmt: skip
        d = check_transition(State.UNDER_INVESTIGATION, Action.RESUME,
                             _facts(**qa, reason="contaminant excluded", quarantined_from=frm), pr)
        assert d.allowed and d.to_state is back
    d = check_transition(State.UNDER_INVESTIGATION, Action.RESUME, _facts(reason="ok"), pr)
    assert set(_conds(d)) == {"qa_role", "quarantined_from"}
    d = check_transition(State.UNDER_INVESTIGATION, Action.RESUME,
                         _facts(**qa, reason="ok", quarantined_from=State.ADMINISTERED), pr)
    assert _conds(d) == {"quarantined_from": ["a batch is never quarantined from administered"]}
    d = check_transition(State.UNDER_INVESTIGATION, Action.DESTROY, _facts(reason="positive"), pr)
    assert set(_conds(d)) == {"qa_role"}
    d = check_transition(State.RETURNED, Action.DESTROY, _facts(**qa, reason="expired"), pr)
    assert d.to_state is State.DESTROYED
    assert not check_transition(State.ADMINISTERED, Action.QUARANTINE,
                                _facts(reason="x"), pr).allowed  # fmt: skip


# ---------------------------------------------------------------------- properties
# Facts that satisfy every condition of every action, and facts that miss some, so random
# sequences try both; the property holds whatever the facts are.
GOOD: dict[Action, Facts] = {
    Action.RECEIVE: _facts(),
    Action.START_MANUFACTURE: _facts(actor="mona"),
    Action.COMPLETE_MANUFACTURE: _facts(actor="mona", at=FORMULATED),
    Action.SUBMIT_FOR_REVIEW: _facts(),
    Action.RELEASE: _facts(**RELEASE),
    Action.RELEASE_EXCEPTIONALLY: _facts(
        **{**RELEASE, "signature": dataclasses.replace(QA, meaning="exceptional_release")},
        results={**PASSING, "viability": 60.0}, justification="no alternative",
        investigator_signature=Signature("ivan", "investigator", "medical_justification",
                                         FORMULATED + H)),
    Action.DISPATCH: _facts(at=FORMULATED + 2 * H),
    Action.RECEIVE_AT_BEDSIDE: _facts(at=FORMULATED + 3 * H),
    Action.ADMINISTER: _facts(gate_unmet=()),
    Action.QUARANTINE: _facts(reason="suspected contamination"),
    Action.INVESTIGATE: _facts(reason="INV-1"),
    Action.RETURN: _facts(reason="infusion cancelled"),
    Action.DESTROY: _facts(actor="quinn", actor_roles=frozenset({"qa"}), reason="positive"),
}  # fmt: skip
BAD = [
    _facts(actor=None),
    _facts(**{**RELEASE, "operators": frozenset({"quinn"})}),  # four eyes broken
    _facts(**RELEASE, results={**PASSING, "sterility": "POSITIVE"}),
    _facts(gate_unmet=(Unmet("dose_in_range", "too many cells"),)),
    _facts(at=FORMULATED + 48 * H),
    Facts(),
]

steps_strategy = st.lists(
    st.tuples(st.sampled_from(list(Action)), st.booleans(), st.integers(0, len(BAD) - 1),
              st.sampled_from(list(State))),
    max_size=40,
)


def _run(steps: list[tuple[Action, bool, int, State]]) -> list[tuple[State, Action, State]]:
    pr = _product()
    state, quarantined_from = State.HARVESTED, None
    taken = []
    for action, good, bad_i, frm in steps:
        if action is Action.RESUME:
            facts = _facts(actor="quinn", actor_roles=frozenset({"qa"}), reason="closed",
                           quarantined_from=quarantined_from if good else frm)
        else:
            facts = GOOD[action] if good else BAD[bad_i]
        d = check_transition(state, action, facts, pr)
        if d.allowed:
            assert d.to_state is not None
            if d.to_state is State.QUARANTINED:
                quarantined_from = state
            taken.append((state, action, d.to_state))
            state = d.to_state
        else:
            assert d.to_state is None and d.unmet
    return taken


@settings(max_examples=400, deadline=None)
@given(steps_strategy)
def test_no_administration_without_release_and_only_edges(steps: list) -> None:
    taken = _run(steps)
    released = False
    for frm, action, to in taken:
        assert (frm, action, to) in EDGES  # only allowed transitions ever succeed
        assert frm in TRANSITIONS[action][0]
        if action in (Action.RELEASE, Action.RELEASE_EXCEPTIONALLY):
            released = True
        if to is State.QUARANTINED:
            released = False  # a quarantined product is released again only by QA
        if to is State.ADMINISTERED:
            assert released, taken
        if to in RELEASE_STATES:
            assert released, taken


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(State)), st.sampled_from(list(Action)), st.integers(0, len(BAD) - 1))
def test_refusals_never_move(state: State, action: Action, bad_i: int) -> None:
    d = check_transition(state, action, BAD[bad_i], _product())
    if state not in TRANSITIONS[action][0]:
        assert not d.allowed and "state" in _conds(d)
    if not d.allowed:
        assert d.to_state is None


@pytest.mark.parametrize("action", list(Action))
def test_every_action_reachable_with_good_facts(action: Action) -> None:
    # each action succeeds from each of its start states with the right facts
    for state in TRANSITIONS[action][0]:
        if action is Action.RESUME:
            facts = _facts(actor="quinn", actor_roles=frozenset({"qa"}), reason="x",
                           quarantined_from=State.QC)
        else:
            facts = GOOD[action]
        assert check_transition(state, action, facts, _product()).allowed, (state, action)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.booleans(), st.integers(0, len(BAD) - 1)),
                max_size=30))
def test_random_walks_on_the_machine(choices: list[tuple[int, bool, int]]) -> None:
    # walk the machine by the actions allowed from the current state (most succeed, so
    # administered is reached often); every administration has a release before it
    pr = _product()
    state, quarantined_from, released = State.HARVESTED, None, False
    for pick, good, bad_i in choices:
        actions = allowed_actions(state)
        if not actions:
            break
        action = actions[pick % len(actions)]
        if action is Action.RESUME:
            facts = _facts(actor="quinn", actor_roles=frozenset({"qa"}), reason="closed",
                           quarantined_from=quarantined_from)
        else:
            facts = GOOD[action] if good else BAD[bad_i]
        d = check_transition(state, action, facts, pr)
        if not d.allowed:
            continue
        assert (state, action, d.to_state) in EDGES
        if action in (Action.RELEASE, Action.RELEASE_EXCEPTIONALLY):
            released = True
        if d.to_state is State.QUARANTINED:
            quarantined_from, released = state, False
        state = d.to_state  # type: ignore[assignment]
        if state is State.ADMINISTERED:
            assert released


def test_a_walk_of_good_steps_reaches_administered() -> None:
    # the all-good walk that always picks the first allowed action is the main line
    state = State.HARVESTED
    seen = [state]
    while allowed_actions(state) and state is not State.ADMINISTERED:
        action = allowed_actions(state)[0]
        d = check_transition(state, action, GOOD[action], _product())
        assert d.allowed, d.message()
        state = d.to_state  # type: ignore[assignment]
        seen.append(state)
    assert seen == [State.HARVESTED, State.RECEIVED, State.IN_MANUFACTURE, State.QC,
                    State.QA_REVIEW, State.RELEASED, State.DISPATCHED,
                    State.RECEIVED_AT_BEDSIDE, State.ADMINISTERED]  # fmt: skip
