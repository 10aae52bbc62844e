"""Adverse events (issue 12): one validator on every write path.

Every rule of :mod:`hepatrial.trials.validators.adverse_event` is refused on every path that
writes an adverse event - service create and update, admin add and change, CLI ``ae record``
and ``ae update`` - naming the record, the field and the reason, with nothing written; and
the accepted states: CTCAE coding (MedDRA code, SOC, the grade's definition), "Other,
specify", expectedness against the reference safety information, the awareness time stored
in UTC, and grade 5 = fatal + serious + participant died on the date of death in one
transaction (undone when corrected).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client

from tests.store._safety import DAY0, PASSWORD, fast_passwords, safety_trial
from tests.store.conftest import ELIGIBLE, enrol

ONE = dt.timedelta(days=1)
BASE: dict[str, Any] = {
    "term": "Fever", "grade": 2, "serious": False, "seriousness_criteria": [],
    "relatedness_product": "unlikely", "relatedness_procedure": "not_related",
    "onset_date": DAY0 + ONE, "resolution_date": None, "outcome": "unknown",
    "action_taken": "none",
}  # fmt: skip
AWARE = {"aware_local": "2008-01-22 10:00"}
FATAL = {"term": "Hepatic failure", "grade": 5, "serious": True,
         "seriousness_criteria": ["death"], "outcome": "fatal", **AWARE}  # fmt: skip

#: case -> (participant, values over BASE, field, reason, True or the paths that cannot type
#: it: the CLI sets ``serious`` from the ``--serious`` criteria given; the admin derives the
#: MedDRA code from the term, it is not entered there)
CASES: dict[str, tuple[str, dict[str, Any], str, str, Any]] = {
    "unknown_term": ("K01", {"term": "Fevre"}, "term", "'Fevre' is not a CTCAE v5.0 term", True),
    "grade_the_term_lacks": ("K01", {"term": "Death NOS", "grade": 3}, "grade",
                             "CTCAE v5.0 term 'Death NOS' has no grade 3 (grades: 5)", True),
    "other_specify_without_text": (
        "K01", {"term": "Hepatobiliary disorders - Other, specify"}, "specify",
        "'Hepatobiliary disorders - Other, specify' needs the name of the event", True),
    "specify_on_a_ctcae_term": (
        "K01", {"specify": "high fever"}, "specify",
        "only an 'Other, specify' term takes a specify text; 'Fever' is a CTCAE term", True),
    "meddra_code_of_another_term": (
        "K01", {"meddra_code": "10036206"}, "meddra_code",
        "10036206 is 'Portal vein thrombosis', not 'Fever' (10016558)", "admin"),
    "grade5_outcome_not_fatal": (
        "K01", {**FATAL, "outcome": "recovered", "resolution_date": DAY0 + 3 * ONE},
        "outcome", "grade 5 (death related to the adverse event, CTCAE v5.0) requires outcome "
        "'fatal', got 'recovered'", True),
    "grade5_not_serious": (
        "K01", {**FATAL, "serious": False, "seriousness_criteria": [],
                "resolution_date": DAY0 + 3 * ONE}, "serious",
        "grade 5 (death) is a serious adverse event (ICH E2A): serious must be true", True),
    "fatal_not_grade5": (
        "K01", {**FATAL, "term": "Fever", "grade": 2, "resolution_date": DAY0 + 3 * ONE},
        "grade", "outcome 'fatal' is grade 5 (death related to the adverse event, CTCAE v5.0), "
        "got grade 2", True),
    "fatal_without_criterion_death": (
        "K01", {**FATAL, "seriousness_criteria": ["hospitalisation"],
                "resolution_date": DAY0 + 3 * ONE}, "seriousness_criteria",
        "a fatal event (grade 5 / outcome fatal) meets the criterion 'death'", True),
    "fatal_without_date_of_death": (
        "K01", FATAL, "resolution_date",
        "outcome 'fatal' needs the date of death (resolution date)", True),
    "serious_without_criteria": (
        "K01", {"serious": True, **AWARE}, "seriousness_criteria",
        "a serious event needs at least one criterion (ICH E2A)", "cli"),
    "criteria_but_not_serious": (
        "K01", {"seriousness_criteria": ["hospitalisation"]}, "serious",
        "criteria hospitalisation make the event serious", "cli"),
    "serious_without_awareness": (
        "K01", {"serious": True, "seriousness_criteria": ["hospitalisation"]}, "aware_at",
        "a serious adverse event needs the date and time the site became aware", True),
    "aware_before_onset": (
        "K01", {"serious": True, "seriousness_criteria": ["hospitalisation"],
                "aware_local": "2008-01-20 10:00"}, "aware_at",
        "the site became aware on 2008-01-20 (trial time zone), before the onset on "
        "2008-01-21", True),
    "aware_skipped_by_the_clock_change": (
        "K01", {"serious": True, "seriousness_criteria": ["hospitalisation"],
                "aware_local": "2008-03-21 00:30"}, "aware_at",
        "2008-03-21 00:30:00 does not exist in Asia/Tehran (clocks were put forward)", True),
    "aware_at_a_repeated_hour": (
        "K01", {"serious": True, "seriousness_criteria": ["hospitalisation"],
                "aware_local": "2008-09-20 23:30"}, "aware_at",
        "2008-09-20 23:30:00 happened twice in Asia/Tehran (clocks went back): say which", True),
    "related_to_product_before_the_dose": (
        "K01", {"onset_date": DAY0 - ONE, "relatedness_product": "probable"},
        "relatedness_product", "'probable' related to the cell product, but the onset "
        "2008-01-19 is before any administration (the first administration is on 2008-01-20)",
        True),
    "related_to_product_never_dosed": (
        "K05", {"onset_date": DAY0 - 5 * ONE, "relatedness_product": "possible"},
        "relatedness_product", "before any administration (no administration is recorded)",
        True),
    "procedure_relatedness_without_procedure": (
        "K01", {"relatedness_procedure": "possible"}, "procedure",
        "relatedness to a procedure is 'possible': name the procedure", True),
    "related_to_an_infusion_never_given": (
        "K01", {"relatedness_procedure": "possible", "procedure": "peripheral_infusion"},
        "relatedness_procedure", "'possible' related to the peripheral_infusion, but no "
        "administration by peripheral_vein is recorded on or before the onset 2008-01-21",
        True),
    "onset_before_screening": (
        "K01", {"onset_date": DAY0 - 20 * ONE}, "onset_date",
        "2007-12-31 is before the participant's screening on 2008-01-06", True),
    "onset_before_consent": (
        "K05", {"onset_date": DAY0 - 12 * ONE}, "onset_date",
        "2008-01-08 is before the participant's informed consent on 2008-01-10", True),
    "onset_in_the_future": (
        "K01", {"onset_date": dt.date(2999, 1, 1)}, "onset_date", "2999-01-01 is in the future",
        True),
    "onset_after_death": (
        "K06", {"onset_date": DAY0 + 40 * ONE}, "onset_date",
        "2008-02-29 is after the participant's death on 2008-02-19", True),
    "fatal_on_another_date_of_death": (
        "K06", {**FATAL, "resolution_date": DAY0 + 25 * ONE}, "resolution_date",
        "the participant died on 2008-02-19: a fatal event's date of death is that date, not "
        "2008-02-14", True),
    "resolved_before_onset": (
        "K01", {"resolution_date": DAY0, "outcome": "recovered"}, "resolution_date",
        "2008-01-20 is before the onset on 2008-01-21", True),
    "recovered_without_resolution_date": (
        "K01", {"outcome": "recovered"}, "resolution_date",
        "outcome 'recovered' needs the resolution date", True),
    "resolution_date_with_outcome_not_recovered": (
        "K01", {"outcome": "not_recovered", "resolution_date": DAY0 + 2 * ONE}, "outcome",
        "'not_recovered' does not go with a resolution date (2008-01-22)", True),
    "action_taken_missing": (
        "K01", {"action_taken": None}, "action_taken",
        "is required (one of none, infusion_interrupted", "cli_update"),
}  # fmt: skip
PATHS = ["service_create", "service_update", "admin_add", "admin_change", "cli_record",
         "cli_update"]


@pytest.fixture
def fx(store: Any, settings: Any) -> dict[str, Any]:
    """K01 enrolled 2008-01-20 (screened and consented 2008-01-06) and dosed by portal vein
    that day, K02 dosed 2008-02-10; K05 screened 2008-01-06, consented 2008-01-10, not enrolled;
    K06 enrolled 2008-01-20, died 2008-02-19; one adverse event each of K01, K05, K06; the
    safety accounts; a data manager's admin client."""
    fast_passwords(settings)
    t = safety_trial(store, 2)
    store.screen_participant(study_id="K05", site="S01", sex="F", year_of_birth=1970,
                             etiology="HCV", screening_date=DAY0 - 14 * ONE,
                             screening_data=ELIGIBLE)  # fmt: skip
    store.record_consent(participant="K05", version="1.0", date=DAY0 - 10 * ONE)
    enrol(store, "K06")
    from hepatrial.trials.services import safety

    events = {
        "K01": safety.record_adverse_event(participant="K01", **BASE),
        "K05": safety.record_adverse_event(participant="K05", **{**BASE,
                                                                 "onset_date": DAY0 - 5 * ONE}),
        "K06": safety.record_adverse_event(participant="K06", **BASE),
    }  # fmt: skip
    store.change_status(participant="K06", status="died", date=DAY0 + 30 * ONE,
                        reason="died at home (hepatic encephalopathy)")
    c = Client()
    c.force_login(t["users"]["dm"])
    return {**t, "events": events, "client": c}


def _form(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        if k == "serious":
            if v:
                out[k] = "on"  # an unticked checkbox is not posted
        elif k == "seriousness_criteria":
            out[k] = list(v or [])
        else:
            out[k] = "" if v is None else str(v)
    return out


_CLI = {"term": "--term", "specify": "--specify", "meddra_code": "--meddra", "grade": "--grade",
        "onset_date": "--onset", "resolution_date": "--resolved", "outcome": "--outcome",
        "relatedness_product": "--relatedness-product",
        "relatedness_procedure": "--relatedness-procedure", "procedure": "--procedure",
        "action_taken": "--action", "aware_local": "--aware"}  # fmt: skip


def cli_args(values: dict[str, Any]) -> list[str]:
    """The ``hepatrial ae record/update`` options of a state."""
    args: list[str] = []
    for k, opt in _CLI.items():
        if values.get(k) is not None:
            args += [opt, str(values[k])]
    for c in values.get("seriousness_criteria") or []:
        args += ["--serious", c]
    return args


def cli(*args: str, input: str | None = None) -> Any:
    """Run ``hepatrial`` in process (the test's database)."""
    from typer.testing import CliRunner

    from hepatrial.cli import app

    return CliRunner().invoke(app, list(args), input=input)


def _write(fx: dict[str, Any], path: str, participant: str, values: dict[str, Any]) -> Any:
    from hepatrial.trials.models import Participant
    from hepatrial.trials.services import safety

    ae = fx["events"][participant]
    if path == "service_create":
        return safety.record_adverse_event(participant=participant, **values)
    if path == "service_update":
        return safety.update_adverse_event(ae, reason="follow-up", **values)
    if path == "admin_add":
        data = {**_form(values), "participant": Participant.objects.get(study_id=participant).pk}
        return fx["client"].post("/admin/trials/adverseevent/add/", data)
    if path == "admin_change":
        return fx["client"].post(f"/admin/trials/adverseevent/{ae.pk}/change/",
                                 {**_form(values), "change_reason": "follow-up"})
    if path == "cli_record":
        return cli("ae", "record", participant, *cli_args(values), "--user", "inv")
    extra = ["--not-serious"] if not values.get("serious") and not values.get(
        "seriousness_criteria") else []
    return cli("ae", "update", str(ae.pk), *cli_args(values), *extra, "--reason", "follow-up",
               "--user", "inv")


def _state() -> list[tuple[Any, ...]]:
    from hepatrial.trials.models import AdverseEvent, Participant

    return [*AdverseEvent.objects.order_by("pk").values_list(
        "grade", "outcome", "term", "resolution_date", "serious", "aware_at"),
            *Participant.objects.order_by("pk").values_list("status", "status_date")]


def _refused(fx: dict[str, Any], case: str, path: str) -> str | None:
    """None when ``case`` is refused on ``path`` as it must be, else what went wrong."""
    from hepatrial.trials import audit
    from hepatrial.trials.models import AdverseEvent
    from hepatrial.trials.validators import RuleViolation

    participant, over, field, reason, _cli = CASES[case]
    values = {**BASE, **over}
    before, n_hist = _state(), AdverseEvent.history.count()
    record = f"participant {participant} adverse event {values['term']!r}"
    if path.startswith("service"):
        try:
            _write(fx, path, participant, values)
        except RuleViolation as e:
            if not any(reason in r for r in e.by_field().get(field, [])):
                return f"{e.by_field()}"
            if f"{record} {field}: " not in str(e):
                return f"record not named: {e}"
        else:
            return "not refused"
    elif path.startswith("admin"):
        r = _write(fx, path, participant, values)
        text = r.content.decode().replace("&#x27;", "'").replace("&quot;", '"')
        if r.status_code != 200 or f"{record} {field}: " not in text or reason not in text:
            return f"status {r.status_code}; problem not shown"
    else:
        r = _write(fx, path, participant, values)
        line = next((ln for ln in r.output.splitlines() if f"{record} {field}: " in ln), "")
        if r.exit_code != 1 or reason not in line or not line.startswith("error: "):
            return f"exit {r.exit_code}: {r.output}"
    if AdverseEvent.history.count() != n_hist or _state() != before:
        return "something was written"
    if audit.verify() != []:
        return "audit trail broken"
    return None


@pytest.mark.parametrize("path", PATHS)
def test_every_rule_is_refused_on_every_path(fx: Any, path: str) -> None:
    """Each case of :data:`CASES` that the path can type (one store for all: a refusal
    writes nothing, which each case checks)."""
    cases = [c for c in CASES if CASES[c][4] is True or not path.startswith(CASES[c][4])]
    wrong = {c: w for c in cases if (w := _refused(fx, c, path)) is not None}
    assert wrong == {}
    assert len(cases) == {"cli_record": 27, "cli_update": 26, "admin_add": 28,
                          "admin_change": 28}.get(path, 29)


@pytest.mark.parametrize("path", PATHS)
def test_grade5_is_fatal_serious_and_the_participant_died_in_one_transaction(
        fx: Any, path: str) -> None:  # fmt: skip
    from hepatrial.trials import audit
    from hepatrial.trials.models import AdverseEvent, Participant

    values = {**BASE, **FATAL, "onset_date": DAY0 + 10 * ONE,
              "resolution_date": DAY0 + 12 * ONE, "aware_local": "2008-02-01 10:00"}
    r = _write(fx, path, "K01", values)
    if path.startswith("admin"):
        assert r.status_code == 302, r.content.decode()[:3000]
    elif path.startswith("cli"):
        assert r.exit_code == 0, r.output
        assert "Hepatic failure grade 5 (Death)" in r.output
    ae = AdverseEvent.objects.get(participant__study_id="K01", grade=5)
    assert (ae.term, ae.meddra_code, ae.soc, ae.grade_definition, ae.ctcae_version) == (
        "Hepatic failure", 10019663, "Hepatobiliary disorders", "Death", "5.0")
    assert (ae.serious, ae.seriousness_criteria, ae.outcome, ae.resolution_date) == (
        True, ["death"], "fatal", DAY0 + 12 * ONE)
    assert ae.aware_at == dt.datetime(2008, 2, 1, 6, 30, tzinfo=dt.UTC)  # 10:00 Tehran
    p = Participant.objects.get(study_id="K01")
    assert (p.status, p.status_date) == ("died", DAY0 + 12 * ONE)
    assert p.status_reason == f"died: adverse event AE-{ae.pk} (Hepatic failure, grade 5)"
    # the death and the event are one transaction: the status history row is written with it
    h = p.history.order_by("-history_id").first()
    assert h.history_change_reason == f"died: fatal adverse event AE-{ae.pk} (Hepatic failure)"
    assert audit.verify() == []


def test_a_fatal_event_corrected_gives_the_status_back(fx: Any) -> None:
    from hepatrial.trials import audit
    from hepatrial.trials.models import Participant
    from hepatrial.trials.services import safety

    ae = safety.record_adverse_event(participant="K01", **{
        **BASE, **FATAL, "onset_date": DAY0 + 10 * ONE, "resolution_date": DAY0 + 12 * ONE,
        "aware_local": "2008-02-01 10:00"})
    safety.update_adverse_event(ae, reason="date of death was the 13th", resolution_date=DAY0
                                + 13 * ONE)  # fmt: skip
    p = Participant.objects.get(study_id="K01")
    assert (p.status, p.status_date) == ("died", DAY0 + 13 * ONE)
    safety.update_adverse_event(ae, reason="wrong patient: K01 is alive", grade=4,
                                outcome="not_recovered", resolution_date=None,
                                seriousness_criteria=["life_threatening"])  # fmt: skip
    p.refresh_from_db()
    assert (p.status, p.status_date, p.status_reason) == ("enrolled", DAY0, "enrolled")
    assert p.history.order_by("-history_id").first().history_change_reason == (
        f"death recorded by adverse event AE-{ae.pk} withdrawn (the event is no longer fatal): "
        "wrong patient: K01 is alive")
    assert audit.verify() == []


def test_coding_other_specify_expectedness_and_awareness(fx: Any) -> None:
    from hepatrial.trials.services import safety

    oth = safety.record_adverse_event(participant="K01", **{
        **BASE, "term": "hepatobiliary disorders - other, specify", "specify": "biloma"})
    assert (oth.term, oth.specify, oth.meddra_code, oth.label) == (
        "Hepatobiliary disorders - Other, specify", "biloma", 10019805,
        "Hepatobiliary disorders - Other, specify: biloma")
    # expectedness against the RSI, per suspected cause: fever expected up to grade 2
    fever2 = safety.record_adverse_event(participant="K01", **{
        **BASE, "relatedness_product": "probable"})
    fever3 = safety.record_adverse_event(participant="K01", **{
        **BASE, "grade": 3, "relatedness_product": "probable"})
    pain = safety.record_adverse_event(participant="K01", **{
        **BASE, "term": "Abdominal pain", "relatedness_procedure": "definite",
        "procedure": "portal_vein_injection"})
    assert [(e.expectedness_product, e.expectedness_procedure, e.relatedness) for e in (
        fever2, fever3, pain, oth)] == [("expected", None, "probable"),
                                        ("unexpected", None, "probable"),
                                        (None, "expected", "definite"), (None, None, "unlikely")]
    assert fever2.grade_definition == ">39.0 - 40.0 degrees C (102.3 - 104.0 degrees F)"
    assert fever3.grade_definition == ">40.0 degrees C (>104.0 degrees F) for <=24 hrs"
    # awareness entered in another zone is stored in UTC with the text and zone as entered
    sae = safety.record_adverse_event(participant="K01", **{
        **BASE, "serious": True, "seriousness_criteria": ["hospitalisation"],
        "aware_local": "2008-01-21 23:15", "aware_time_zone": "Europe/London"})
    assert (sae.aware_at, sae.aware_local, sae.aware_time_zone) == (
        dt.datetime(2008, 1, 21, 23, 15, tzinfo=dt.UTC), "2008-01-21 23:15", "Europe/London")
    fold = safety.record_adverse_event(participant="K01", **{
        **BASE, "serious": True, "seriousness_criteria": ["hospitalisation"],
        "aware_local": "2008-09-20 23:30", "aware_fold": 1})
    assert fold.aware_at == dt.datetime(2008, 9, 20, 20, 0, tzinfo=dt.UTC)  # second: +03:30


def test_every_problem_at_once_and_nothing_is_coerced(fx: Any) -> None:
    from hepatrial.trials.services import safety
    from hepatrial.trials.validators import RuleViolation

    with pytest.raises(RuleViolation) as e:
        safety.record_adverse_event(
            participant="K01", term=" ", grade=2.5, serious="yes", seriousness_criteria=None,
            relatedness_product="maybe", relatedness_procedure=None, onset_date="21/01/2008",
            resolution_date="2008-13-01", outcome="dead", action_taken="none")
    assert e.value.by_field() == {
        "term": ["is required"],
        "grade": ["2.5 is not 1-5 (CTCAE grade)"],
        "serious": ["'yes' is not true or false"],
        "relatedness_product": ["'maybe' is not one of not_related, unlikely, possible, "
                                "probable, definite"],
        "relatedness_procedure": ["is required (one of not_related, unlikely, possible, "
                                  "probable, definite)"],
        "outcome": ["'dead' is not one of recovered, recovering, not_recovered, "
                    "recovered_with_sequelae, fatal, unknown"],
        "onset_date": ["'21/01/2008' is not a date (YYYY-MM-DD)"],
        "resolution_date": ["'2008-13-01' is not a date (YYYY-MM-DD)"],
    }  # fmt: skip
    with pytest.raises(safety.StoreError, match="relatedness is judged separately"):
        safety.check_adverse_event(participant="K01", relatedness="possible", **{
            k: v for k, v in BASE.items() if not k.startswith("relatedness")})
    with pytest.raises(safety.StoreError, match="relatedness is judged separately"):
        safety.update_adverse_event(fx["events"]["K01"], reason="x", relatedness="possible")


def test_reasons_for_change_and_the_first_entry(fx: Any) -> None:
    from hepatrial.errors import ChangeReasonRequired
    from hepatrial.trials.services import safety

    ae = fx["events"]["K01"]
    with pytest.raises(safety.StoreError, match=r"field\(s\) participant cannot be changed"):
        safety.update_adverse_event(ae, reason="x", participant="K05")
    with pytest.raises(ChangeReasonRequired, match=r"\(grade\)"):
        safety.update_adverse_event(ae, grade=3)
    ae = safety.update_adverse_event(ae, resolution_date=DAY0 + 3 * ONE, outcome="recovered",
                                     reason="follow-up visit")  # fmt: skip
    assert (ae.outcome, ae.resolution_date) == ("recovered", DAY0 + 3 * ONE)
    n = ae.history.count()
    safety.update_adverse_event(ae, outcome="recovered")
    assert ae.history.count() == n  # nothing changed: nothing written
    # the first entry of the awareness time is data entry
    ae = safety.update_adverse_event(ae, aware_local="2008-01-22 08:00")
    h = ae.history.order_by("-history_id").first()
    assert h.history_change_reason == "data entry: aware_at entered"
    with pytest.raises(ChangeReasonRequired, match="aware_at"):
        safety.update_adverse_event(ae, aware_local="2008-01-22 09:00")


def test_data_entry_is_checked_against_the_role_matrix(fx: Any, store: Any) -> None:
    from hepatrial.errors import PermissionDenied
    from hepatrial.trials.services import safety

    store.create_site(code="S02", name="second")
    store.create_user(username="coord2", password=PASSWORD, site_codes=["S02"],
                      role="coordinator")
    with pytest.raises(PermissionDenied, match="not a member of site S01"):
        safety.record_adverse_event(participant="K01", user="coord2", **BASE)
    with pytest.raises(PermissionDenied, match="only coordinator, data-manager, investigator"):
        safety.record_adverse_event(participant="K01", user="dsmb", **BASE)
    r = cli("ae", "record", "K01", *cli_args(BASE), "--user", "coord2")
    assert r.exit_code == 3 and "not a member of site S01" in r.output


def test_admin_change_form_shows_the_coding_and_needs_a_reason(fx: Any) -> None:
    ae = fx["events"]["K01"]
    c = fx["client"]
    url = f"/admin/trials/adverseevent/{ae.pk}/change/"
    page = c.get(url).content.decode()
    assert 'name="participant"' not in page
    assert "&gt;39.0 - 40.0 degrees C (102.3 - 104.0 degrees F)" in page  # Fever grade 2
    assert "10016558" in page  # MedDRA code of Fever
    r = c.post(url, {**_form({**BASE, "grade": 3}), "change_reason": ""})
    assert r.status_code == 200 and "A reason for change is required." in r.content.decode()
    ae.refresh_from_db()
    assert ae.grade == 2
    r = c.post(url, {**_form({**BASE, "resolution_date": DAY0 + 2 * ONE,
                              "outcome": "recovered"}), "change_reason": "resolved"})
    assert r.status_code == 302, r.content.decode()[:2000]
    ae.refresh_from_db()
    assert (ae.outcome, ae.resolution_date) == ("recovered", DAY0 + 2 * ONE)
    assert ae.history.order_by("-history_id").first().history_user.username == "dm"
