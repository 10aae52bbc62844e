"""Issue 7 §1 for lab results and clinical assessments: every case refused on every write path
(service create, service update, admin add, admin change), naming record, field and reason; the
column-wise rule functions the importers call are the same rules."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest

from tests.store._rules_helpers import (
    FUTURE,
    assert_problem,
    assert_refused_on_page,
    page,
    root_client,
)
from tests.store.conftest import DAY0

LAB = "participant K01 visit D0 lab bilirubin"


@pytest.fixture
def d0(enrolled: Any, store: Any) -> Any:
    """K01 with D0 done on day 0 (W1 still scheduled)."""
    return store.record_visit(participant="K01", visit_code="D0", actual_date=DAY0)


def _lab_form(**over: Any) -> dict[str, Any]:
    from hepatrial.trials.models import Visit

    v = Visit.objects.get(participant__study_id="K01", code="D0")
    data = {"participant": v.participant_id, "visit": v.pk, "analyte": "bilirubin",
            "value_as_entered": "2.3", "unit_as_entered": "mg/dL", "laboratory": "",
            "specimen_date": DAY0.isoformat(), "change_reason": ""}
    data.update({k: (x.isoformat() if isinstance(x, dt.date) else x) for k, x in over.items()})
    return data


#: (case, lab values, field, reason)
LAB_CASES = [
    ("specimen date in the future", {"specimen_date": FUTURE}, "specimen_date",
     f"{FUTURE} is in the future"),
    ("impossible value (mg/dL far outside the hard limits)", {"value": "2300"}, "value",
     "bilirubin: 2300.0 mg/dL = 39330 umol/L is outside the plausible range 0-1500 umol/L"),
    ("unit not accepted", {"unit": "mg/L"}, "unit",
     "bilirubin: unit 'mg/L' is not accepted (accepted units: umol/L, mg/dL)"),
    ("not a number", {"value": "2,3"}, "value",
     "'2,3' contains ','; use a point as the decimal mark"),
]
IDS = [c[0] for c in LAB_CASES]
_FORM = {"value": "value_as_entered", "unit": "unit_as_entered", "specimen_date": "specimen_date"}


@pytest.mark.parametrize(("case", "values", "field", "reason"), LAB_CASES, ids=IDS)
def test_lab_refused_on_every_path(
    d0: Any, store: Any, case: str, values: dict[str, Any], field: str, reason: str
) -> None:
    from hepatrial.trials.models import LabResult
    from hepatrial.trials.validators import RuleViolation

    good = {"value": "2.3", "unit": "mg/dL"}
    with pytest.raises(RuleViolation) as exc:  # service create
        store.record_lab(participant="K01", visit_code="D0", analyte="bilirubin",
                         **{**good, **values})
    assert_problem(exc.value, LAB, field, reason)
    client = root_client(store)
    form_values = {_FORM[k]: v for k, v in values.items()}
    r = client.post("/admin/trials/labresult/add/", _lab_form(**form_values))  # admin add
    assert_refused_on_page(r, LAB, field, reason)
    assert not LabResult.objects.exists()
    lab = store.record_lab(participant="K01", visit_code="D0", analyte="bilirubin", **good)
    with pytest.raises(RuleViolation) as exc:  # service update
        store.update_lab(lab, reason="re-issued report", **values)
    assert_problem(exc.value, LAB, field, reason)
    r = client.post(f"/admin/trials/labresult/{lab.pk}/change/",  # admin change
                    _lab_form(**form_values, change_reason="re-issued report"))
    assert_refused_on_page(r, LAB, field, reason)
    lab.refresh_from_db()
    assert (lab.value_as_entered, lab.unit_as_entered, lab.history.count()) == ("2.3", "mg/dL", 1)


def test_labs_of_a_visit_not_done_refused_on_every_path(d0: Any, store: Any) -> None:
    """Issue 7: the admin accepted labs for a visit not yet done."""
    from hepatrial.trials.models import LabResult, Visit
    from hepatrial.trials.validators import RuleViolation

    w1 = Visit.objects.get(participant__study_id="K01", code="W1")
    record = "participant K01 visit W1 lab inr"
    with pytest.raises(RuleViolation) as exc:  # service create: no actual date
        store.record_lab(participant="K01", visit_code="W1", analyte="inr", value=1.4, unit="1")
    assert_problem(exc.value, record, "visit", "the visit has not been done yet (no actual "
                   "date): record the visit first")
    client = root_client(store)
    r = client.post("/admin/trials/labresult/add/",  # admin add
                    _lab_form(visit=w1.pk, analyte="inr", value_as_entered="1.4",
                              unit_as_entered="1", specimen_date=""))
    assert_refused_on_page(r, record, "visit", "the visit has not been done yet")
    store.mark_visit_not_done(participant="K01", visit_code="W2", reason="patient travelling")
    with pytest.raises(RuleViolation) as exc:  # a missed visit has no results
        store.record_lab(participant="K01", visit_code="W2", analyte="inr", value=1.4, unit="1")
    assert_problem(exc.value, "participant K01 visit W2 lab inr", "visit",
                   "the visit is missed: a visit that did not take place has no results")
    assert not LabResult.objects.exists()
    # a result whose visit lost its date (corrected behind the services' back) cannot change
    store.record_visit(participant="K01", visit_code="W1", actual_date="2008-01-27")
    lab = store.record_lab(participant="K01", visit_code="W1", analyte="inr", value=1.4,
                           unit="1")
    Visit.objects.filter(pk=w1.pk).update_with_reason("test: date withdrawn", actual_date=None,
                                                      status="scheduled")
    with pytest.raises(RuleViolation) as exc:  # service update
        store.update_lab(lab, value="1.5", reason="re-issued report")
    assert_problem(exc.value, record, "visit", "the visit has not been done yet")
    r = client.post(f"/admin/trials/labresult/{lab.pk}/change/",  # admin change
                    {"value_as_entered": "1.5", "unit_as_entered": "1", "laboratory": "",
                     "specimen_date": "2008-01-27", "change_reason": "re-issued report"})
    assert_refused_on_page(r, record, "visit", "the visit has not been done yet")
    lab.refresh_from_db()
    assert lab.value_as_entered == "1.4"


def test_admin_lab_add_converts_through_the_service(d0: Any, store: Any) -> None:
    from hepatrial.trials.models import LabResult

    client = root_client(store)
    r = client.post("/admin/trials/labresult/add/", _lab_form(specimen_date=""))
    assert r.status_code == 302, page(r)[:3000]
    lab = LabResult.objects.get()
    assert (lab.value_as_entered, lab.unit_as_entered, lab.unit) == ("2.3", "mg/dL", "umol/L")
    assert lab.value == pytest.approx(2.3 * 17.1) and lab.specimen_date == DAY0
    # first entry of the laboratory: data entry, no reason; a changed value needs one
    r = client.post(f"/admin/trials/labresult/{lab.pk}/change/",
                    _lab_form(laboratory="Central lab"))
    assert r.status_code == 302, page(r)[:3000]
    lab.refresh_from_db()
    assert lab.laboratory == "Central lab"
    assert "data entry" in lab.history.order_by("-history_id").first().history_change_reason
    r = client.post(f"/admin/trials/labresult/{lab.pk}/change/",
                    _lab_form(laboratory="Central lab", value_as_entered="2.4"))
    assert "A reason for change is required." in page(r)
    with pytest.raises(store.ChangeReasonRequired):
        store.update_lab(lab, value="2.4")
    assert store.update_lab(lab, laboratory="Central lab").history.count() == 2  # no change


def test_second_result_for_the_same_visit_and_analyte_is_refused(d0: Any, store: Any) -> None:
    from hepatrial.trials.validators import RuleViolation

    store.record_lab(participant="K01", visit_code="D0", analyte="bilirubin", value=40,
                     unit="umol/L")
    with pytest.raises(RuleViolation) as exc:
        store.record_lab(participant="K01", visit_code="D0", analyte="bilirubin", value=41,
                         unit="umol/L")
    assert_problem(exc.value, LAB, "analyte", "already recorded for this visit")


# ---------------------------------------------------------------------- column-wise
def test_lab_rules_column_wise_equal_the_registry() -> None:
    """The importers' form: one call for every row; the hard limits are the registry's."""
    from hepatrial.protocol import analytes
    from hepatrial.trials.validators.lab import lab_columns

    canonical, problems = lab_columns(
        analyte=np.array(["bilirubin", "bilirubin", "creatinine", "inr", "unobtainium",
                          "albumin"], dtype=object),
        value=np.array(["2.7", "2300", "1.3", "1.2", "1", "abc"], dtype=object),
        unit=np.array(["mg/dL", "mg/dL", "umol/L", "1", "g/L", "g/L"], dtype=object),
        specimen_date=["2008-01-20", "2008-01-20", FUTURE.isoformat(), None, None, None],
        visit_date=["2008-01-20"] * 5 + [None],
        visit_status=["in_window"] * 5 + ["scheduled"],
    )
    assert canonical[0] == analytes.to_canonical("bilirubin", 2.7, "mg/dL")
    assert canonical[3] == 1.2 and np.isnan(canonical[1])
    got = [(i, f) for i, f, _r in problems.items()]
    assert got == [(1, "value"), (2, "value"), (2, "specimen_date"), (4, "analyte"),
                   (5, "value"), (5, "visit")]
    reasons = {(i, f): r for i, f, r in problems.items()}
    with pytest.raises(analytes.RangeError) as exc:
        analytes.to_canonical("creatinine", 1.3, "umol/L")
    assert reasons[(2, "value")] == str(exc.value)
    assert reasons[(5, "value")] == "'abc' is not a number"
    assert list(np.flatnonzero(problems.bad())) == [1, 2, 4, 5]


def test_lab_rules_column_wise_on_many_rows() -> None:
    from hepatrial.trials.validators.lab import lab_columns

    n = 20_000
    values = np.where(np.arange(n) % 1000 == 7, "9999", "1.5").astype(object)
    canonical, problems = lab_columns(analyte="bilirubin", value=values, unit="mg/dL",
                                      check_visit=False)
    assert list(np.flatnonzero(problems.bad())) == list(range(7, n, 1000))
    assert np.allclose(canonical[problems.bad() == 0], 1.5 * 17.1)


# ---------------------------------------------------------------------- clinical
CLIN = "participant K01 visit D0 clinical"


def _clin_form(**over: Any) -> dict[str, Any]:
    from hepatrial.trials.models import Visit

    v = Visit.objects.get(participant__study_id="K01", code="D0")
    data = {"participant": v.participant_id, "visit": v.pk, "ascites": "", "encephalopathy": "",
            "dialysis_last_week": "", "weight_kg": "80", "ascites_present": "unknown",
            "hepatomegaly": "unknown", "spider_angiomata": "unknown", "edema": "",
            "histologic_stage": "", "change_reason": ""}
    data.update(over)
    return data


@pytest.mark.parametrize("weight", ["7", "22.6", "340.3", "700"])
def test_implausible_weight_refused_on_every_path(d0: Any, store: Any, weight: str) -> None:
    """Issue 7: the admin accepted a weight of 7 kg (plausible adult range 22.7-340.2 kg,
    Chan & Raffa 2017)."""
    from hepatrial.trials.models import ClinicalAssessment
    from hepatrial.trials.validators import RuleViolation

    reason = f"{weight} kg is outside the plausible adult range 22.7-340.2 kg"
    with pytest.raises(RuleViolation) as exc:  # service create
        store.record_clinical(participant="K01", visit_code="D0", weight_kg=weight)
    assert_problem(exc.value, CLIN, "weight_kg", reason)
    client = root_client(store)
    r = client.post("/admin/trials/clinicalassessment/add/", _clin_form(weight_kg=weight))
    assert_refused_on_page(r, CLIN, "weight_kg", reason)  # admin add
    assert not ClinicalAssessment.objects.exists()
    c = store.record_clinical(participant="K01", visit_code="D0", weight_kg="80")
    with pytest.raises(RuleViolation) as exc:  # service update
        store.update_clinical(c, weight_kg=weight, reason="re-weighed")
    assert_problem(exc.value, CLIN, "weight_kg", reason)
    r = client.post(f"/admin/trials/clinicalassessment/{c.pk}/change/",  # admin change
                    _clin_form(weight_kg=weight, change_reason="re-weighed"))
    assert_refused_on_page(r, CLIN, "weight_kg", reason)
    c.refresh_from_db()
    assert str(c.weight_kg) == "80.00" and c.history.count() == 1


@pytest.mark.parametrize("weight", ["22.7", "340.2", "80.55"])
def test_plausible_weight_boundaries_accepted(d0: Any, store: Any, weight: str) -> None:
    c = store.record_clinical(participant="K01", visit_code="D0", weight_kg=weight)
    c.refresh_from_db()
    assert float(c.weight_kg) == float(weight)


def test_weight_is_never_rounded_silently(d0: Any, store: Any) -> None:
    from hepatrial.trials.validators import RuleViolation

    with pytest.raises(RuleViolation) as exc:
        store.record_clinical(participant="K01", visit_code="D0", weight_kg="80.125")
    assert_problem(exc.value, CLIN, "weight_kg", "80.125 kg has more than 2 decimals")


def test_clinical_assessment_of_a_visit_not_done_refused(d0: Any, store: Any) -> None:
    from hepatrial.trials.models import Visit
    from hepatrial.trials.validators import RuleViolation

    with pytest.raises(RuleViolation) as exc:
        store.record_clinical(participant="K01", visit_code="W1", weight_kg="80")
    assert_problem(exc.value, "participant K01 visit W1 clinical", "visit",
                   "the visit has not been done yet")
    w1 = Visit.objects.get(participant__study_id="K01", code="W1")
    r = root_client(store).post("/admin/trials/clinicalassessment/add/", _clin_form(visit=w1.pk))
    assert_refused_on_page(r, "participant K01 visit W1 clinical", "visit",
                           "the visit has not been done yet")


def test_admin_clinical_goes_through_the_services(d0: Any, store: Any) -> None:
    from hepatrial.trials.models import ClinicalAssessment

    client = root_client(store)
    r = client.post("/admin/trials/clinicalassessment/add/", _clin_form(hepatomegaly="true"))
    assert r.status_code == 302, page(r)[:3000]
    c = ClinicalAssessment.objects.get()
    assert (str(c.weight_kg), c.hepatomegaly, c.encephalopathy) == ("80.00", True, None)
    # encephalopathy not assessed before: its first entry needs no reason
    r = client.post(f"/admin/trials/clinicalassessment/{c.pk}/change/",
                    _clin_form(hepatomegaly="true", encephalopathy="none"))
    assert r.status_code == 302, page(r)[:3000]
    c.refresh_from_db()
    assert c.encephalopathy == "none"
    r = client.post(f"/admin/trials/clinicalassessment/{c.pk}/change/",
                    _clin_form(hepatomegaly="true", encephalopathy="none", weight_kg="81"))
    assert "A reason for change is required." in page(r)
    r = client.post(f"/admin/trials/clinicalassessment/{c.pk}/change/",
                    _clin_form(hepatomegaly="true", encephalopathy="none", weight_kg="81",
                               change_reason="re-weighed"))
    assert r.status_code == 302
    c.refresh_from_db()
    h = c.history.order_by("-history_id").first()
    assert (str(c.weight_kg), h.history_change_reason, h.history_user.username) == (
        "81.00", "re-weighed", "root")


def test_clinical_rules_column_wise() -> None:
    from hepatrial.trials.validators.clinical import clinical_columns

    typed, problems = clinical_columns(
        {"weight_kg": ["80", "7", None], "edema": ["none", "0.5", None],
         "histologic_stage": [2, 5, None]},
        visit_date=["2008-01-20", "2008-01-20", None], visit_status=["in_window"] * 2 + ["missed"],
    )
    assert [str(x) for x in typed["weight_kg"]] == ["80.00", "None", "None"]
    assert [(i, f) for i, f, _r in problems.items()] == [
        (1, "weight_kg"), (1, "edema"), (1, "histologic_stage"), (2, "visit")]


@pytest.mark.parametrize(("value", "reason"), [
    ("4_6", "contains '_'"),
    ("١٢", "non-ASCII digit"),
    ("1e999", "too large"),
    ([1], "is not a number"),
    ("1" * 51, "51 characters long; at most 50"),
    ("2\x003", "control character NUL"),
])
def test_lab_value_text_rules(value: Any, reason: str) -> None:
    """One number parser (hepatrial.scores.numbers) and the stored text's limits, before the
    database sees the value (identical on SQLite and PostgreSQL)."""
    from hepatrial.trials.validators import RuleViolation
    from hepatrial.trials.validators.lab import validate_lab

    with pytest.raises(RuleViolation) as exc:
        validate_lab(record="participant K01 visit D0 lab bilirubin", analyte="bilirubin",
                     value=value, unit="umol/L")
    assert any(p.field == "value" and reason in p.reason for p in exc.value.problems), \
        exc.value.problems
