"""The dosing gate judges the sentinel rule (SR-SENTINEL of kharaziha2009: the next participant
only 14 days or more after the previous participant's first dose, and only after a review
recorded as a DSMB ``resume`` on the rule) as of the administration's time, not as of now:
a back-dated administration meets the rule as it stood on its date (issue 12, note 12).

Real database; doses under test go through ``services.record_administration`` (the product's
dosing gate); the previous participants' doses are written as audited rows
(``tests.store._safety.dose``), as if entered earlier."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from tests.store._product import administer, at, ready_batch
from tests.store._safety import DAY0, PASSWORD, dose, fast_passwords, safety_trial
from tests.store.conftest import enrol

ONE = dt.timedelta(days=1)


def _review(when: dt.datetime | None) -> Any:
    """The sentinel review: a signed DSMB ``resume`` on SR-SENTINEL dated ``when``."""
    from hepatrial.trials.services import safety

    return safety.resume_stopping_rule("SR-SENTINEL", decision="the previous participant's "
                                       "safety data reviewed", user="dsmb", password=PASSWORD,
                                       at=when)


def _n_admins(participant: str) -> int:
    from hepatrial.trials.models import Administration

    return Administration.objects.filter(participant__study_id=participant).count()


@pytest.fixture
def k01_dosed(store: Any, settings: Any) -> Any:
    """K01 dosed on DAY0 (2008-01-20), K02 enrolled (day 0 = DAY0 + 14); the safety
    accounts (``dsmb``)."""
    fast_passwords(settings)
    safety_trial(store, 0)
    enrol(store, "K01", day0=DAY0)
    enrol(store, "K02", day0=DAY0 + 13 * ONE)
    dose(store, "K01", DAY0, "portal_vein")
    return store


def test_13_days_after_the_previous_dose_is_refused_naming_the_rule_and_the_dates(
        k01_dosed: Any) -> None:  # fmt: skip
    store = k01_dosed
    _review(at(DAY0 + 12 * ONE, 12))  # reviewed: only the interval is short
    ready_batch(store, "B-K02", "K02", DAY0 + 13 * ONE)
    with pytest.raises(store.StoreError) as e:
        administer(store, "K02", "B-K02", DAY0 + 13 * ONE, review=False)
    msg = str(e.value)
    assert "dosing_not_paused: dosing is paused by stopping rule SR-SENTINEL" in msg
    assert ("K01 was dosed on 2008-01-20: the next participant may be dosed from 2008-02-03 "
            "(14 days; 13 elapsed)") in msg
    assert "no review recorded" not in msg
    assert _n_admins("K02") == 0


def test_14_days_after_with_a_review_between_is_allowed(k01_dosed: Any) -> None:
    store = k01_dosed
    d = _review(at(DAY0 + 13 * ONE, 12))
    assert d.rule_status["decided_at"] == "2008-02-02T12:00:00+00:00"
    assert d.signed_at.date() > dt.date(2020, 1, 1)  # the signature keeps its own time
    ready_batch(store, "B-K02", "K02", DAY0 + 14 * ONE)
    a = administer(store, "K02", "B-K02", DAY0 + 14 * ONE, review=False)
    assert (a.participant.study_id, a.date) == ("K02", DAY0 + 14 * ONE)
    assert _n_admins("K02") == 1


@pytest.mark.parametrize("when", ["after_the_dose", "today"])
def test_14_days_after_without_a_review_between_is_refused(k01_dosed: Any, when: str) -> None:
    """A review dated after the dose being recorded (11:00, the dose at 10:00), or recorded
    today without a date, is not a review before the dose."""
    store = k01_dosed
    _review(at(DAY0 + 14 * ONE, 11) if when == "after_the_dose" else None)
    ready_batch(store, "B-K02", "K02", DAY0 + 14 * ONE)
    with pytest.raises(store.StoreError) as e:
        administer(store, "K02", "B-K02", DAY0 + 14 * ONE, review=False)
    msg = str(e.value)
    assert "stopping rule SR-SENTINEL" in msg
    assert "no review recorded since K01's dose on 2008-01-20" in msg
    assert "may be dosed from" not in msg  # the interval itself is kept
    assert _n_admins("K02") == 0


def test_a_review_dated_before_the_previous_dose_does_not_count(store: Any,
                                                                settings: Any) -> None:
    """K01 dosed 30 days before K02, reviewed once between them; K03 14 days after K02 with
    only that review (dated before K02's dose) is refused."""
    fast_passwords(settings)
    safety_trial(store, 0)
    enrol(store, "K01", day0=DAY0 - 30 * ONE)
    enrol(store, "K02", day0=DAY0)
    enrol(store, "K03", day0=DAY0 + 14 * ONE)
    dose(store, "K01", DAY0 - 30 * ONE)
    _review(at(DAY0 - ONE, 12))
    dose(store, "K02", DAY0)
    ready_batch(store, "B-K03", "K03", DAY0 + 14 * ONE)
    with pytest.raises(store.StoreError) as e:
        administer(store, "K03", "B-K03", DAY0 + 14 * ONE, review=False)
    assert "no review recorded since K02's dose on 2008-01-20" in str(e.value)
    _review(at(DAY0 + 13 * ONE, 12))
    assert administer(store, "K03", "B-K03", DAY0 + 14 * ONE, review=False).date == (
        DAY0 + 14 * ONE)


def test_a_review_dated_today_does_not_allow_a_dose_dated_last_month(store: Any,
                                                                      settings: Any) -> None:
    from hepatrial.trials.services import safety

    fast_passwords(settings)
    safety_trial(store, 0)
    today = dt.datetime.now(dt.UTC).date()
    enrol(store, "K01", day0=today - 45 * ONE)
    enrol(store, "K02", day0=today - 30 * ONE)
    dose(store, "K01", today - 45 * ONE)
    _review(None)  # recorded now: counts for a dose from now on only
    assert safety.dosing_pause("K02") is None  # K02 dosed today would be allowed
    ready_batch(store, "B-K02", "K02", today - 30 * ONE)
    with pytest.raises(store.StoreError) as e:
        administer(store, "K02", "B-K02", today - 30 * ONE, review=False)
    assert (f"no review recorded since K01's dose on {today - 45 * ONE}") in str(e.value)
    assert _n_admins("K02") == 0


def test_the_second_dose_of_a_dosed_participant_is_not_subject_to_the_sentinel(
        k01_dosed: Any) -> None:  # fmt: skip
    from hepatrial.trials.services import safety

    store = k01_dosed
    enrol(store, "K03", day0=DAY0 + 20 * ONE)
    dose(store, "K02", DAY0 + 14 * ONE)  # K02's first dose (its review is not this test's)
    ready_batch(store, "B-K02b", "K02", DAY0 + 20 * ONE)
    # 6 days after K02's first dose, no review: K03's first dose would be refused ...
    p = safety.dosing_pause("K03", at=at(DAY0 + 20 * ONE, 10))
    assert p is not None and p.rule == "SR-SENTINEL" and "6 elapsed" in p.reason
    # ... K02's second dose is not
    a = administer(store, "K02", "B-K02b", DAY0 + 20 * ONE, review=False)
    assert (a.participant.study_id, _n_admins("K02")) == ("K02", 2)
    # a first dose back-dated before the participant's recorded dose is subject to it
    p = safety.dosing_pause("K02", at=at(DAY0 + 5 * ONE, 10))
    assert p is not None and p.rule == "SR-SENTINEL" and "5 elapsed" in p.reason


def test_a_correction_is_judged_without_the_administration_itself(store: Any,
                                                                  settings: Any) -> None:
    """K02 dosed first through the gate; K01's earlier dose (the day before) entered later.
    Correcting K02's administration goes through the gate as of its time without itself:
    K02 is then the next participant after K01, 1 day later, with no review: refused."""
    fast_passwords(settings)
    safety_trial(store, 0)
    enrol(store, "K01", day0=DAY0 - ONE)
    enrol(store, "K02", day0=DAY0)
    ready_batch(store, "B-K02", "K02", DAY0)
    a = administer(store, "K02", "B-K02", DAY0, review=False)  # nobody dosed before: allowed
    a = store.update_administration(a, reason="operator's full name", operator="nurse one")
    assert a.operator == "nurse one"
    dose(store, "K01", DAY0 - ONE)
    with pytest.raises(store.StoreError) as e:
        store.update_administration(a, reason="volume re-read", volume_ml="9.5")
    msg = str(e.value)
    assert "stopping rule SR-SENTINEL" in msg
    assert "K01 was dosed on 2008-01-19: the next participant may be dosed from 2008-02-02" in msg
    a.refresh_from_db()
    assert str(a.volume_ml) == "10.00"


def test_a_pause_in_force_now_refuses_doses_within_it_not_before(store: Any,
                                                                 settings: Any) -> None:
    """A portal-vein thrombosis (onset DAY0 + 9) entered now latches SR-DEATH-SAE and
    SR-PORTAL: a dose dated after the onset is refused, one dated before it is not (the cells
    were given before anything paused the trial)."""
    from hepatrial.trials.models.safety import StoppingRuleState
    from hepatrial.trials.services import safety

    fast_passwords(settings)
    safety_trial(store, 0)
    enrol(store, "K01", day0=DAY0)
    dose(store, "K01", DAY0, "portal_vein")
    safety.record_adverse_event(
        participant="K01", term="Portal vein thrombosis", grade=3, onset_date=DAY0 + 9 * ONE,
        serious=True, seriousness_criteria=["hospitalisation"],
        aware_local=f"{DAY0 + 9 * ONE} 12:00", relatedness_product="not_related",
        relatedness_procedure="probable", procedure="portal_vein_injection",
        action_taken="none")
    assert set(StoppingRuleState.objects.filter(paused=True).values_list(
        "rule_id", flat=True)) == {"SR-DEATH-SAE", "SR-PORTAL"}
    # K01's own later doses (the sentinel does not apply to them)
    assert safety.dosing_pause("K01", at=at(DAY0 + 5 * ONE, 10)) is None
    p = safety.dosing_pause("K01", at=at(DAY0 + 10 * ONE, 10))
    assert p is not None and p.rule == "SR-DEATH-SAE, SR-PORTAL"
    assert "in force now, and its evidence dates from before this dose of 2008-01-30" in p.reason
    p = safety.dosing_pause("K01")
    assert p is not None and p.rule == "SR-DEATH-SAE, SR-PORTAL"


def test_cli_dates_the_dsmb_review(k01_dosed: Any) -> None:
    """``hepatrial safety resume --decided-at`` dates the sentinel review (entered after the
    meeting): dated between the doses it allows the next dose; a date in the future or without
    a time zone is refused naming the option's field; the signature keeps its own time."""
    from typer.testing import CliRunner

    from hepatrial.cli import app
    from hepatrial.trials.models.safety import DSMBDecision

    store = k01_dosed
    runner = CliRunner()
    base = ["safety", "resume", "SR-SENTINEL", "--decision", "K01's safety data reviewed",
            "--user", "dsmb", "--password-stdin"]
    for bad, why in (("2008-02-02T12:00:00", "has no time zone"),
                     ("2999-01-01T00:00:00+00:00", "future")):
        r = runner.invoke(app, [*base, "--decided-at", bad], input=PASSWORD + "\n")
        assert r.exit_code == 1, r.output
        assert "decided_at" in r.output and why in r.output, r.output
    assert not DSMBDecision.objects.exists()
    r = runner.invoke(app, [*base, "--decided-at", "2008-02-02T12:00:00+00:00"],
                      input=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    assert "SR-SENTINEL resumed by DSMB decision" in r.output
    d = DSMBDecision.objects.get()
    assert d.rule_status["decided_at"] == "2008-02-02T12:00:00+00:00"
    assert d.signed_at.year >= 2026  # signed now, decided then
    ready_batch(store, "B-K02", "K02", DAY0 + 14 * ONE)
    administer(store, "K02", "B-K02", DAY0 + 14 * ONE, review=False)
    assert _n_admins("K02") == 1
