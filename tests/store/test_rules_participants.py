"""Issue 7 §1 for participants, screening data, consent and eligibility: every case refused on
every write path (service create, service update, admin add, admin change), each refusal naming
the record, the field and the reason."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from tests.store._rules_helpers import (
    FUTURE,
    assert_problem,
    assert_refused_on_page,
    page,
    root_client,
)
from tests.store.conftest import ELIGIBLE, enrol

SCREENED_ON = dt.date(2008, 1, 6)


def _screen(store: Any, study_id: str = "K09", **over: Any) -> Any:
    kw: dict[str, Any] = dict(study_id=study_id, site="S01", sex="M", year_of_birth=1960,
                              etiology="HBV", screening_date=SCREENED_ON, screening_data=ELIGIBLE)
    kw.update(over)
    return store.screen_participant(**kw)


def _admin_data(**over: Any) -> dict[str, Any]:
    from hepatrial.trials.models import Site

    data: dict[str, Any] = {
        "study_id": "K09", "site": Site.objects.get(code="S01").pk, "sex": "M",
        "year_of_birth": 1960, "etiology": "HBV", "screening_date": SCREENED_ON.isoformat(),
        "screening_data": json.dumps(ELIGIBLE), "change_reason": "",
    }
    data.update(over)
    return data


#: (case, participant values, field, reason)
PARTICIPANT_CASES = [
    ("year of birth in the future", {"year_of_birth": FUTURE.year + 1}, "year_of_birth",
     f"{FUTURE.year + 1} is in the future"),
    ("year of birth after screening", {"year_of_birth": 2009}, "year_of_birth",
     "2009 is after the screening date 2008-01-06"),
    ("screening date in the future", {"screening_date": FUTURE}, "screening_date",
     f"{FUTURE} is in the future"),
    ('"hcc": "yes"', {"screening_data": {**ELIGIBLE, "hcc": "yes"}}, "screening_data.hcc",
     "'yes' is not a boolean (true or false)"),
    ("hcc 1", {"screening_data": {**ELIGIBLE, "hcc": 1}}, "screening_data.hcc",
     "1 is not a boolean"),
    ("lab without its unit (mg/dL read as umol/L)",
     {"screening_data": {**ELIGIBLE, "bilirubin": 2.7}}, "screening_data.bilirubin",
     "a lab value is entered with its unit"),
    ("lab in an impossible range (mg/dL typed, umol/L named)",
     {"screening_data": {**ELIGIBLE, "creatinine": {"value": 1.3, "unit": "umol/L"}}},
     "screening_data.creatinine", "outside the plausible range 5-2500 umol/L"),
    ("unit not accepted", {"screening_data": {**ELIGIBLE, "bilirubin_mg_l": 27}},
     "screening_data.bilirubin_mg_l", "not an eligibility input"),
    ("not an input of the protocol", {"screening_data": {**ELIGIBLE, "sodium": 135}},
     "screening_data.sodium", "not an eligibility input of protocol kharaziha2009"),
    ("consent typed into screening data", {"screening_data": {**ELIGIBLE,
                                                              "informed_consent": True}},
     "screening_data.informed_consent", "the store takes it from the consent record"),
    ("exact age disagreeing with the year of birth",
     {"screening_data": {**ELIGIBLE, "age": 30}}, "screening_data.age",
     "30 years disagrees with the year of birth 1960"),
]
IDS = [c[0] for c in PARTICIPANT_CASES]


@pytest.mark.parametrize(("case", "values", "field", "reason"), PARTICIPANT_CASES, ids=IDS)
def test_participant_refused_on_service_create(
    store: Any, case: str, values: dict[str, Any], field: str, reason: str
) -> None:
    from hepatrial.trials.models import Participant
    from hepatrial.trials.validators import RuleViolation

    with pytest.raises(RuleViolation) as exc:
        _screen(store, **values)
    assert_problem(exc.value, "participant K09", field, reason)
    assert not Participant.objects.exists()


@pytest.mark.parametrize(("case", "values", "field", "reason"), PARTICIPANT_CASES, ids=IDS)
def test_participant_refused_on_service_update(
    store: Any, case: str, values: dict[str, Any], field: str, reason: str
) -> None:
    from hepatrial.trials.validators import RuleViolation

    p = _screen(store)
    n = p.history.count()
    with pytest.raises(RuleViolation) as exc:
        store.update_participant("K09", reason="source document check", **values)
    assert_problem(exc.value, "participant K09", field, reason)
    p.refresh_from_db()
    assert p.year_of_birth == 1960 and p.screening_data["hcc"] is False
    assert p.history.count() == n


def _admin_value(values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in values.items():
        out[k] = json.dumps(v) if k == "screening_data" else (
            v.isoformat() if isinstance(v, dt.date) else v)
    return out


@pytest.mark.parametrize(("case", "values", "field", "reason"), PARTICIPANT_CASES, ids=IDS)
def test_participant_refused_on_admin_add(
    store: Any, case: str, values: dict[str, Any], field: str, reason: str
) -> None:
    from hepatrial.trials.models import Participant

    r = root_client(store).post("/admin/trials/participant/add/",
                                _admin_data(**_admin_value(values)))
    assert_refused_on_page(r, "participant K09", field, reason)
    assert not Participant.objects.exists()


@pytest.mark.parametrize(("case", "values", "field", "reason"), PARTICIPANT_CASES, ids=IDS)
def test_participant_refused_on_admin_change(
    store: Any, case: str, values: dict[str, Any], field: str, reason: str
) -> None:
    p = _screen(store)
    n = p.history.count()
    data = _admin_data(**_admin_value(values), change_reason="source document check")
    del data["study_id"]  # read-only once saved
    r = root_client(store).post(f"/admin/trials/participant/{p.pk}/change/", data)
    assert_refused_on_page(r, "participant K09", field, reason)
    p.refresh_from_db()
    assert p.year_of_birth == 1960 and p.history.count() == n


def test_codes_refused_by_the_services(store: Any) -> None:
    """Codes the admin offers as select lists (sex, etiology, site) are checked by the
    services too (CLI, import, API)."""
    from hepatrial.trials.validators import RuleViolation

    with pytest.raises(RuleViolation) as exc:
        _screen(store, sex="X", etiology="NASH", site="S99")
    assert_problem(exc.value, "participant K09", "sex", "'X' is not one of F, M")
    assert_problem(exc.value, "participant K09", "etiology", "'NASH' is not one of HBV")
    assert_problem(exc.value, "participant K09", "site", "'S99' is not a site of the trial")
    _screen(store)
    with pytest.raises(RuleViolation) as exc:
        _screen(store)
    assert_problem(exc.value, "participant K09", "study_id", "already exists")


def test_admin_add_screens_through_the_service_with_typed_data(store: Any) -> None:
    from hepatrial.trials.models import Participant

    data = _admin_data(screening_data=json.dumps({**ELIGIBLE, "bilirubin_mg_dl": "2.7",
                                                  "bilirubin": None}))
    r = root_client(store).post("/admin/trials/participant/add/", data)
    assert r.status_code == 302, page(r)[:3000]
    p = Participant.objects.get(study_id="K09")
    assert (p.status, p.status_date) == ("screened", SCREENED_ON)
    # kept as entered (value text and unit), under the input's name
    assert p.screening_data["bilirubin"] == {"value": "2.7", "unit": "mg/dL"}
    assert p.history.get().history_user.username == "root"


def test_mg_dl_screening_labs_are_converted_not_misread(store: Any) -> None:
    """Issue 7: bilirubin 2.7 and creatinine 1.3 typed in mg/dL were read as umol/L (MELD 9,
    screen failed). With their unit they are converted: MELD(OPTN 2002) = round(3.78 ln 2.7 +
    11.2 ln 1.3 + 9.57 ln 1.3 + 6.43) = round(15.63) = 16, eligible."""
    data = {**ELIGIBLE, "inr": 1.3}
    del data["bilirubin"], data["creatinine"]
    _screen(store, screening_data={**data, "bilirubin_mg_dl": 2.7,
                                   "creatinine": {"value": "1.3", "unit": "mg/dL"}})
    store.record_consent(participant="K09", version="1.0", date=SCREENED_ON)
    a = store.assess_eligibility(participant="K09")
    assert a.criteria["INC-MELD"]["value"] == 16.0
    assert a.criteria["INC-MELD"]["passes"] is True and a.eligible is True
    assert a.screening_data["bilirubin"] == pytest.approx(2.7 * 17.1)
    assert a.screening_data["creatinine"] == pytest.approx(1.3 * 88.4)


def test_first_entry_of_a_screening_value_needs_no_reason(store: Any) -> None:
    """Adding an input not given before is data entry; changing a stored one needs a reason."""
    data = {k: v for k, v in ELIGIBLE.items() if k != "pregnant"}
    p = _screen(store, screening_data=data)
    p = store.update_participant("K09", screening_data={**data, "pregnant": False})
    assert p.screening_data["pregnant"] is False
    assert "data entry" in p.history.order_by("-history_id").first().history_change_reason
    with pytest.raises(store.ChangeReasonRequired, match=r"screening_data\.pregnant"):
        store.update_participant("K09", screening_data={**data, "pregnant": True})


# ---------------------------------------------------------------------- consent
#: the admin's own form fields already refuse a blank version and a date it cannot read
CONSENT_CASES = [
    ("date in the future", {"date": FUTURE}, "date", f"{FUTURE} is in the future"),
    ("date before birth", {"date": dt.date(1959, 12, 31)}, "date",
     "1959-12-31 is before the year of birth 1960"),
]


@pytest.mark.parametrize(("case", "values", "field", "reason"), CONSENT_CASES,
                         ids=[c[0] for c in CONSENT_CASES])
def test_consent_refused_on_every_path(
    store: Any, case: str, values: dict[str, Any], field: str, reason: str
) -> None:
    from hepatrial.trials.models import Consent
    from hepatrial.trials.services import participants as svc
    from hepatrial.trials.validators import RuleViolation

    p = _screen(store)
    good = {"version": "1.0", "date": SCREENED_ON}
    with pytest.raises(RuleViolation) as exc:  # service create
        store.record_consent(participant="K09", **{**good, **values})
    assert_problem(exc.value, "participant K09 consent", field, reason)
    c = store.record_consent(participant="K09", **good)
    with pytest.raises(RuleViolation) as exc:  # service update
        svc.update_consent(c, reason="typo", **values)
    assert_problem(exc.value, "participant K09 consent", field, reason)
    client = root_client(store)
    form = {k: (v.isoformat() if isinstance(v, dt.date) else v)
            for k, v in {**good, **values}.items()}
    r = client.post("/admin/trials/consent/add/", {"participant": p.pk, **form})  # admin add
    assert_refused_on_page(r, "participant K09 consent", field, reason)
    r = client.post(f"/admin/trials/consent/{c.pk}/change/",  # admin change
                    {**form, "change_reason": "typo"})
    assert_refused_on_page(r, "participant K09 consent", field, reason)
    assert Consent.objects.count() == 1 and Consent.objects.get().date == SCREENED_ON


def test_consent_text_rules_on_the_services(store: Any) -> None:
    from hepatrial.trials.validators import RuleViolation

    _screen(store)
    with pytest.raises(RuleViolation) as exc:
        store.record_consent(participant="K09", version="  ", date="06/01/2008")
    assert_problem(exc.value, "participant K09 consent", "version", "missing")
    assert_problem(exc.value, "participant K09 consent", "date", "not a date (YYYY-MM-DD)")


def test_admin_consent_add_and_change_go_through_the_services(store: Any) -> None:
    from hepatrial.trials.models import Consent

    p = _screen(store)
    client = root_client(store)
    r = client.post("/admin/trials/consent/add/",
                    {"participant": p.pk, "version": "1.0", "date": "2008-01-06"})
    assert r.status_code == 302, page(r)[:2000]
    c = Consent.objects.get()
    r = client.post(f"/admin/trials/consent/{c.pk}/change/",
                    {"version": "1.1", "date": "2008-01-06", "change_reason": ""})
    assert "A reason for change is required." in page(r)
    r = client.post(f"/admin/trials/consent/{c.pk}/change/",
                    {"version": "1.1", "date": "2008-01-06", "change_reason": "form v1.1"})
    assert r.status_code == 302
    c.refresh_from_db()
    assert c.version == "1.1"
    h = c.history.order_by("-history_id").first()
    assert (h.history_change_reason, h.history_user.username) == ("form v1.1", "root")


# ---------------------------------------------------------------------- eligibility
def test_assessment_is_made_only_by_evaluating_the_protocol(store: Any) -> None:
    """Issue 7: an assessment added in the admin was empty (never evaluated)."""
    from hepatrial.trials.models import EligibilityAssessment
    from hepatrial.trials.validators import RuleViolation

    p = _screen(store)
    store.record_consent(participant="K09", version="1.0", date=SCREENED_ON)
    # a direct save (not through services.assess_eligibility) is refused by the model
    with pytest.raises(store.StoreError, match="participant K09 eligibility: an eligibility "
                       "assessment can only be made by evaluating the protocol"):
        EligibilityAssessment(participant=p, assessed_on=SCREENED_ON, protocol_version="1.0.0",
                              eligible=True).save()
    # admin add: only participant and date are asked; the service evaluates the protocol
    client = root_client(store)
    add = client.get("/admin/trials/eligibilityassessment/add/")
    assert 'name="criteria"' not in page(add) and 'name="eligible"' not in page(add)
    r = client.post("/admin/trials/eligibilityassessment/add/",
                    {"participant": p.pk, "assessed_on": "2008-01-07", "eligible": "false",
                     "criteria": "{}"})
    assert r.status_code == 302, page(r)[:2000]
    a = EligibilityAssessment.objects.get()
    assert a.eligible is True and a.assessed_on == dt.date(2008, 1, 7)
    assert len(a.criteria) == 9 and a.criteria["EXC-HCC"]["passes"] is True
    assert a.history.get().history_user.username == "root"
    # admin add with a date in the future: refused, naming record, field, reason
    r = client.post("/admin/trials/eligibilityassessment/add/",
                    {"participant": p.pk, "assessed_on": FUTURE.isoformat()})
    assert_refused_on_page(r, "participant K09 eligibility", "assessed_on",
                           f"{FUTURE} is in the future")
    with pytest.raises(RuleViolation) as exc:  # service create
        store.assess_eligibility(participant="K09", assessed_on=FUTURE)
    assert_problem(exc.value, "participant K09 eligibility", "assessed_on",
                   f"{FUTURE} is in the future")
    assert EligibilityAssessment.objects.count() == 1


def test_hcc_yes_never_passes_the_exclusion(store: Any) -> None:
    """Issue 7: ``"hcc": "yes"`` passed EXC-HCC (compared with True) and the patient was
    enrolled. Typed input refuses it on entry; the protocol never compares it."""
    from hepatrial.protocol import load_protocol
    from hepatrial.trials.validators import RuleViolation

    with pytest.raises(RuleViolation, match=r"screening_data\.hcc: 'yes' is not a boolean"):
        _screen(store, screening_data={**ELIGIBLE, "hcc": "yes"})
    r = next(x for x in load_protocol("kharaziha2009").screen({"hcc": "yes"}).results
             if x.criterion_id == "EXC-HCC")
    assert (r.met, r.passes, r.reason) == (None, None, "hcc: 'yes' is not a boolean (true or "
                                           "false)")
    _screen(store, screening_data={**ELIGIBLE, "hcc": "true"})  # text true/false is a boolean
    store.record_consent(participant="K09", version="1.0", date=SCREENED_ON)
    a = store.assess_eligibility(participant="K09")
    assert a.eligible is False and a.criteria["EXC-HCC"]["passes"] is False
    with pytest.raises(RuleViolation, match="status: 'screen_failed'; only screened"):
        store.enrol_participant(participant="K09", enrolment_date="2008-01-20")


def test_assessment_cannot_be_edited_or_refiled_on_any_path(store: Any) -> None:
    """Issue 7: an eligible assessment re-filed under an ineligible participant, who could then
    be enrolled."""
    from hepatrial.trials.models import EligibilityAssessment, Participant
    from hepatrial.trials.validators import RuleViolation

    good = enrol(store, "K01")
    a = EligibilityAssessment.objects.get(participant=good)
    _screen(store, "K09", screening_data={**ELIGIBLE, "pregnant": True})
    store.record_consent(participant="K09", version="1.0", date=SCREENED_ON)
    bad_a = store.assess_eligibility(participant="K09")
    assert bad_a.eligible is False
    bad = Participant.objects.get(study_id="K09")
    store.change_status(participant="K09", status="screened", date=SCREENED_ON,
                        reason="re-screening")
    # the model (service layer and any code): no change, no re-filing
    a.participant = bad
    with pytest.raises(store.StoreError, match="participant K09 eligibility: an eligibility "
                       "assessment cannot be changed"):
        a.save(reason="filed under the wrong participant")
    a = EligibilityAssessment.objects.get(pk=a.pk)
    a.eligible = False
    with pytest.raises(store.StoreError, match="cannot be changed"):
        a.save(reason="x")
    with pytest.raises(store.StoreError, match="cannot be changed"):
        EligibilityAssessment.objects.filter(pk=a.pk).update_with_reason("x", participant=bad)
    # admin change: view only (no change permission), nothing changes
    client = root_client(store)
    url = f"/admin/trials/eligibilityassessment/{a.pk}/change/"
    assert client.get(url).status_code == 200
    assert 'name="participant"' not in page(client.get(url))
    r = client.post(url, {"participant": bad.pk, "assessed_on": "2008-01-06",
                          "change_reason": "re-filed"})
    assert r.status_code == 403
    assert EligibilityAssessment.objects.get(pk=a.pk).participant_id == good.pk
    with pytest.raises(RuleViolation) as exc:
        store.enrol_participant(participant="K09", enrolment_date="2008-01-20")
    assert_problem(exc.value, "participant K09", "eligibility", "it is ineligible")


def test_enrolment_needs_an_assessment_of_the_current_screening_data(store: Any) -> None:
    from hepatrial.trials.validators import RuleViolation

    _screen(store)
    store.record_consent(participant="K09", version="1.0", date=SCREENED_ON)
    assert store.assess_eligibility(participant="K09").eligible is True
    store.update_participant("K09", screening_data={**ELIGIBLE, "hcc": True},
                             reason="biopsy result")
    with pytest.raises(RuleViolation) as exc:
        store.enrol_participant(participant="K09", enrolment_date="2008-01-20")
    assert_problem(exc.value, "participant K09", "eligibility",
                   "was made on other screening data than the participant has now")
    assert store.assess_eligibility(participant="K09").eligible is False


def test_unrelated_correction_of_a_participant_with_legacy_screening_data(store: Any) -> None:
    """Screening data stored before they were typed (or by an older importer) do not block a
    correction of other fields; they are judged again when they, the year of birth or the
    screening date change (and before any assessment)."""
    from hepatrial.trials.models import Participant
    from hepatrial.trials.validators import RuleViolation

    p = _screen(store)
    Participant.objects.filter(pk=p.pk).update_with_reason(
        "test: legacy data", screening_data={"bilirubin": 40.0, "source": "old import"})
    p = store.update_participant("K09", etiology="HCV", reason="serology result")
    assert p.etiology == "HCV"
    with pytest.raises(RuleViolation) as exc:
        store.update_participant("K09", year_of_birth=1961, reason="source document check")
    assert_problem(exc.value, "participant K09", "screening_data.bilirubin",
                   "a lab value is entered with its unit")
    assert_problem(exc.value, "participant K09", "screening_data.source",
                   "not an eligibility input")
    with pytest.raises(RuleViolation, match=r"screening_data\.source"):
        store.assess_eligibility(participant="K09")
