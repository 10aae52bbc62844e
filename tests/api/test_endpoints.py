"""Every endpoint of the REST API with Django's test client: values, site scoping, the lab POST
(as entered, all-or-nothing, every problem with its index), locks, signatures, and the
RFC 9457 problem of every refusal."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from tests.api.conftest import DAY0, OTHER, OWN, World

PROBLEM = "application/problem+json"
LABS = f"/api/v1/participants/{OWN}/visits/W1/labs"


def get(api: Any, url: str, role: str | None = "coordinator", **kw: Any) -> Any:
    c, w = api
    return c.get(url, headers=w.auth(role) if role else {}, **kw)


def post(api: Any, body: Any, role: str = "coordinator", url: str = LABS, raw: bool = False,
         ) -> Any:
    c, w = api
    data = body if raw else json.dumps(body)
    return c.post(url, data=data, content_type="application/json", headers=w.auth(role))


def problem(r: Any, status: int, kind: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem of ``kind``; returns it."""
    assert r.status_code == status, r.content
    assert r["Content-Type"] == PROBLEM
    p = json.loads(r.content)
    assert p["type"] == f"urn:hepatrial:problem:{kind}"
    assert p["status"] == status and p["title"] and p["detail"]
    assert p["instance"] == r.wsgi_request.path
    return p


def lab_rows() -> list[tuple[str, str, str, str, str]]:
    from hepatrial.trials.models import LabResult

    return sorted(LabResult.objects.values_list("participant__study_id", "visit__code",
                                                "analyte", "value_as_entered",
                                                "unit_as_entered"))


# ------------------------------------------------------------------------------- reads
def test_me(api: Any) -> None:
    r = get(api, "/api/v1/me")
    assert r.status_code == 200
    assert json.loads(r.content) == {"username": "coordinator_a", "role": "coordinator",
                                     "sites": ["S01"]}
    me = json.loads(get(api, "/api/v1/me", "data-manager").content)
    assert me["role"] == "data-manager" and me["sites"] == ["S01", "S02"]


def test_participants_are_scoped_to_the_callers_sites(api: Any) -> None:
    r = get(api, "/api/v1/participants")
    assert r.status_code == 200 and r["Content-Type"].startswith("application/json")
    page = json.loads(r.content)
    assert page == {"count": 1, "limit": 100, "offset": 0, "items": [{
        "study_id": OWN, "site": "S01", "arm": "single", "sex": "F", "year_of_birth": 1965,
        "etiology": "HCV", "age": 43, "status": "enrolled", "status_date": "2008-01-20",
        "status_reason": "enrolled", "screening_date": "2008-01-06",
        "enrolment_date": "2008-01-20"}]}
    every = json.loads(get(api, "/api/v1/participants", "data-manager").content)
    assert [p["study_id"] for p in every["items"]] == [OWN, OTHER] and every["count"] == 2
    assert [p["site"] for p in every["items"]] == ["S01", "S02"]


def test_participant_filters_and_pages(api: Any) -> None:
    dm = "data-manager"
    assert [p["study_id"] for p in json.loads(get(
        api, "/api/v1/participants?site=S02", dm).content)["items"]] == [OTHER]
    page = json.loads(get(api, "/api/v1/participants?limit=1&offset=1", dm).content)
    assert page["count"] == 2 and page["limit"] == 1 and page["offset"] == 1
    assert [p["study_id"] for p in page["items"]] == [OTHER]
    assert json.loads(get(api, "/api/v1/participants?status=withdrawn", dm).content)[
        "items"] == []
    assert json.loads(get(api, "/api/v1/participants?status=enrolled&site=S01",
                          dm).content)["count"] == 1


def test_filter_on_another_site_is_404_like_an_unknown_site(api: Any) -> None:
    a = problem(get(api, "/api/v1/participants?site=S02"), 404, "not-found")
    b = problem(get(api, "/api/v1/participants?site=S99"), 404, "not-found")
    assert a["detail"] == "no site 'S02'" and b["detail"] == "no site 'S99'"
    assert a["errors"] == b["errors"] == []


def test_bad_query_parameters_are_422_naming_the_parameter(api: Any) -> None:
    p = problem(get(api, "/api/v1/participants?limit=0&status=asleep"), 422, "validation")
    fields = {e["field"]: e for e in p["errors"]}
    assert set(fields) == {"limit", "status"}
    assert fields["limit"]["location"] == "query" and fields["limit"]["pointer"] is None
    assert "greater than or equal to 1" in fields["limit"]["reason"]
    problem(get(api, "/api/v1/participants?offset=10000000000"), 422, "validation")
    problem(get(api, "/api/v1/participants?limit=abc"), 422, "validation")


def test_unknown_query_parameters_are_refused_not_ignored(api: Any) -> None:
    p = problem(get(api, "/api/v1/participants?sites=S01&stauts=withdrawn"), 422, "validation")
    assert [(e["location"], e["field"]) for e in p["errors"]] == [("query", "sites"),
                                                                   ("query", "stauts")]
    assert "this operation has: limit, offset, site, status" in p["detail"]
    p = problem(get(api, f"/api/v1/participants/{OWN}?verbose=1"), 422, "validation")
    assert "this operation has: none" in p["detail"]


def test_participant(api: Any) -> None:
    r = get(api, f"/api/v1/participants/{OWN}")
    assert r.status_code == 200
    p = json.loads(r.content)
    assert p["study_id"] == OWN and p["site"] == "S01" and p["age"] == 43


def test_another_sites_participant_is_404_exactly_like_a_missing_one(api: Any) -> None:
    a = problem(get(api, f"/api/v1/participants/{OTHER}"), 404, "not-found")
    b = problem(get(api, "/api/v1/participants/K99"), 404, "not-found")
    assert a["detail"].replace(OTHER, "X") == b["detail"].replace("K99", "X")
    for url in (f"/api/v1/participants/{OTHER}/visits",):
        problem(get(api, url), 404, "not-found")
    assert get(api, f"/api/v1/participants/{OTHER}", "data-manager").status_code == 200


def test_visits_with_window_dates_and_labs_as_entered(api: Any) -> None:
    r = get(api, f"/api/v1/participants/{OWN}/visits")
    assert r.status_code == 200
    visits = json.loads(r.content)
    assert [v["code"] for v in visits] == ["SCR", "D0", "W1", "W2", "W4", "W8", "W24"]
    w1 = visits[2]
    assert w1 == {"code": "W1", "label": "Week 1", "nominal_day": 7, "window_lower": -2,
                  "window_upper": 2, "earliest_date": "2008-01-25", "target_date": "2008-01-27",
                  "latest_date": "2008-01-29", "actual_date": "2008-01-27", "actual_day": 7,
                  "status": "in_window", "labs": []}
    d0 = visits[1]
    assert d0["labs"] == [{
        "analyte": "bilirubin", "value_as_entered": "2.30", "unit_as_entered": "mg/dL",
        "value": pytest.approx(2.30 * 17.1), "unit": "umol/L", "loinc": "1975-2",
        "laboratory": "", "specimen_date": "2008-01-20", "range_flag": "ok"}]
    assert visits[3]["status"] == "scheduled" and visits[3]["actual_date"] is None


def test_queries_open_by_default_scoped_with_their_thread(api: Any) -> None:
    r = get(api, "/api/v1/queries")
    assert r.status_code == 200
    page = json.loads(r.content)
    assert page["count"] == 1 and page["limit"] == 100 and page["offset"] == 0
    (q,) = page["items"]
    assert {k: q[k] for k in ("participant", "site", "visit", "record", "field", "item",
                              "origin", "status", "text", "value_at_raise", "raised_by",
                              "closed_by", "closed_at")} == {
        "participant": OWN, "site": "S01", "visit": "D0", "record": "trials.labresult",
        "field": "value", "item": "bilirubin", "origin": "manual", "status": "open",
        "text": "please confirm against the lab report", "value_at_raise": "2.30 mg/dL",
        "raised_by": "data-manager_a", "closed_by": None, "closed_at": None}
    assert [(m["step"], m["author"]) for m in q["messages"]] == [("raised", "data-manager_a")]
    every = json.loads(get(api, "/api/v1/queries", "data-manager").content)
    assert [x["participant"] for x in every["items"]] == [OWN, OTHER]
    assert json.loads(get(api, "/api/v1/queries?status=closed").content)["count"] == 0
    mine = json.loads(get(api, f"/api/v1/queries?participant={OWN}&limit=1").content)
    assert mine["count"] == 1 and mine["limit"] == 1


def test_queries_follow_the_workflow(api: Any) -> None:
    from hepatrial.trials.models.queries import Query
    from hepatrial.trials.services.queries import answer_query

    _c, w = api
    q = Query.objects.get(participant__study_id=OWN)
    answer_query(q, text="checked: the report says 2.30 mg/dL", user=w.users["coordinator"])
    assert json.loads(get(api, "/api/v1/queries").content)["count"] == 0
    (got,) = json.loads(get(api, "/api/v1/queries?status=answered").content)["items"]
    assert [m["step"] for m in got["messages"]] == ["raised", "answered"]
    assert got["messages"][1]["text"] == "checked: the report says 2.30 mg/dL"


def test_queries_of_another_sites_participant_are_404(api: Any) -> None:
    a = problem(get(api, f"/api/v1/queries?participant={OTHER}"), 404, "not-found")
    b = problem(get(api, "/api/v1/queries?participant=K99"), 404, "not-found")
    assert a["detail"].replace(OTHER, "?") == b["detail"].replace("K99", "?")
    problem(get(api, "/api/v1/queries?status=all"), 422, "validation")


# ---------------------------------------------------------------------------- lab POST
def test_one_lab_kept_as_entered(api: Any) -> None:
    r = post(api, '{"analyte": "bilirubin", "value": 2.30, "unit": "mg/dL", '
                  '"date": "2008-01-27", "laboratory": "central lab"}', raw=True)
    assert r.status_code == 201, r.content
    out = json.loads(r.content)
    assert out["participant"] == OWN and out["visit"] == "W1"
    (lab,) = out["items"]
    assert lab["value_as_entered"] == "2.30"  # the JSON number as written, not 2.3
    assert lab["value"] == pytest.approx(39.33) and lab["unit"] == "umol/L"
    assert lab["laboratory"] == "central lab" and lab["specimen_date"] == "2008-01-27"
    assert (OWN, "W1", "bilirubin", "2.30", "mg/dL") in lab_rows()


def test_values_as_text_integers_and_exponents_are_kept_as_written(api: Any) -> None:
    r = post(api, '[{"analyte": "sodium", "value": 138, "unit": "mmol/L"},'
                  ' {"analyte": "inr", "value": "1.50", "unit": "1"},'
                  ' {"analyte": "platelets", "value": 1.2E2, "unit": "10^9/L"}]', raw=True)
    assert r.status_code == 201, r.content
    got = {x["analyte"]: x["value_as_entered"] for x in json.loads(r.content)["items"]}
    assert got == {"sodium": "138", "inr": "1.50", "platelets": "1.2E+2"}
    assert json.loads(r.content)["items"][2]["value"] == 120.0
    # the specimen date defaults to the visit's date
    assert {x["specimen_date"] for x in json.loads(r.content)["items"]} == {"2008-01-27"}


def test_a_list_is_all_or_nothing_with_every_problem_indexed(api: Any) -> None:
    from hepatrial.trials.models import AuditLedger

    before, seq = lab_rows(), AuditLedger.objects.count()
    body = [
        {"analyte": "bilirubin", "value": "2.3", "unit": "mg/dL"},          # fine
        {"analyte": "inr", "value": "abc", "unit": "1"},                   # not a number
        {"analyte": "albumin", "value": 35, "unit": "furlongs"},           # unit
        {"analyte": "creatinine", "value": 1.1, "unit": "mg/dL", "units": "x"},  # unknown key
        {"analyte": "sodium", "value": 138, "unit": "mmol/L",
         "date": (dt.date.today() + dt.timedelta(days=3)).isoformat()},   # future date
        "bilirubin",                                                        # not an object
        {"analyte": "bilirubin", "value": "2.4", "unit": "mg/dL"},          # duplicate of [0]
        {"analyte": "kryptonite", "value": 1, "unit": "g/L"},               # unknown analyte
        {"value": 1, "unit": "g/L"},                                        # analyte missing
    ]
    p = problem(post(api, body), 422, "validation")
    assert lab_rows() == before and AuditLedger.objects.count() == seq  # nothing written
    got = [(e["index"], e["field"], e["pointer"]) for e in p["errors"]]
    assert got == [
        (1, "value", "/1/value"), (2, "unit", "/2/unit"), (3, "units", "/3/units"),
        (4, "date", "/4/date"), (5, "", "/5"), (6, "analyte", "/6/analyte"),
        (7, "analyte", "/7/analyte"), (8, "analyte", "/8/analyte")]
    reasons = {e["index"]: e["reason"] for e in p["errors"]}
    assert reasons[1] == "'abc' is not a number"
    assert "furlongs" in reasons[2] and "Extra inputs" in reasons[3]
    assert "in the future" in reasons[4] and reasons[5] == "not an object"
    assert "already recorded" in reasons[6] and "unknown analyte 'kryptonite'" in reasons[7]
    assert reasons[8] == "Field required"
    assert all(e["location"] == "body" for e in p["errors"])
    records = {e["index"]: e["record"] for e in p["errors"]}
    assert records[1] == f"participant {OWN} visit W1 lab inr" and records[3] is None
    assert p["detail"].startswith("nothing recorded: 8 of 9 lab results were refused: [1] "
                                  "value: 'abc' is not a number")


def test_a_single_object_has_pointers_without_an_index(api: Any) -> None:
    p = problem(post(api, {"analyte": "bilirubin", "value": 900, "unit": "mg/dL"}), 422,
                "validation")
    (e,) = p["errors"]
    assert e["index"] is None and e["pointer"] == "/value" and e["field"] == "value"
    assert "limits" in e["reason"] or "outside" in e["reason"], e["reason"]
    assert p["detail"].startswith("nothing recorded: the lab result was refused")


def test_a_value_outside_the_expected_range_needs_confirmation_and_opens_a_query(
        api: Any) -> None:
    high = {"analyte": "sodium", "value": "170", "unit": "mmol/L"}
    p = problem(post(api, high), 422, "validation")
    (e,) = p["errors"]
    assert e["field"] == "value" and "higher than expected" in e["reason"]
    assert "confirmed_out_of_range" in e["reason"]
    p = problem(post(api, {**high, "confirmed_out_of_range": "yes"}), 422, "validation")
    assert p["errors"][0]["field"] == "confirmed_out_of_range"
    r = post(api, {**high, "confirmed_out_of_range": True})
    assert r.status_code == 201, r.content
    assert json.loads(r.content)["items"][0]["range_flag"] == "high"
    got = json.loads(get(api, f"/api/v1/queries?participant={OWN}").content)["items"]
    assert [(q["origin"], q["item"], q["visit"]) for q in got] == [
        ("manual", "bilirubin", "D0"), ("soft_range", "sodium", "W1")]


def test_pointers_escape_keys_as_rfc_6901_says(api: Any) -> None:
    p = problem(post(api, [{"analyte": "inr", "value": 1, "unit": "1", "a/b~c": 1}]), 422,
                "validation")
    assert [e["pointer"] for e in p["errors"]] == ["/0/a~1b~0c"]


def test_an_analyte_already_recorded_is_refused(api: Any) -> None:
    url = f"/api/v1/participants/{OWN}/visits/D0/labs"
    p = problem(post(api, {"analyte": "bilirubin", "value": "2.4", "unit": "mg/dL"}, url=url),
                422, "validation")
    assert "already recorded" in p["errors"][0]["reason"]
    assert (OWN, "D0", "bilirubin", "2.30", "mg/dL") in lab_rows()  # not overwritten


def test_a_visit_not_done_names_the_visit(api: Any) -> None:
    url = f"/api/v1/participants/{OWN}/visits/W2/labs"
    p = problem(post(api, {"analyte": "bilirubin", "value": "2.4", "unit": "mg/dL"}, url=url),
                422, "validation")
    (e,) = p["errors"]
    assert e["location"] == "path" and e["field"] == "visit_code" and e["pointer"] is None


def test_unknown_visit_and_participant_are_404(api: Any) -> None:
    body = {"analyte": "bilirubin", "value": "2.4", "unit": "mg/dL"}
    p = problem(post(api, body, url=f"/api/v1/participants/{OWN}/visits/W99/labs"), 404,
                "not-found")
    assert "no visit 'W99'" in p["detail"] and "W24" in p["detail"]
    problem(post(api, body, url=f"/api/v1/participants/{OTHER}/visits/W1/labs"), 404,
            "not-found")
    problem(post(api, body, url="/api/v1/participants/K99/visits/W1/labs"), 404, "not-found")


@pytest.mark.parametrize(("raw", "why"), [
    ("", "the body is empty"),
    ("{", "the body is not JSON"),
    ('{"analyte": "inr", "value": NaN, "unit": "1"}', "NaN is not a JSON number"),
    (b"\xff\xfe", "the body is not UTF-8"),
    ("[" * 100_000, "the body is not JSON"),
])
def test_malformed_bodies_are_400(api: Any, raw: Any, why: str) -> None:
    p = problem(post(api, raw, raw=True), 400, "malformed-body")
    assert why in p["detail"]


def test_a_body_larger_than_the_server_accepts_is_413(api: Any) -> None:
    from django.conf import settings

    big = json.dumps([{"analyte": "inr", "value": 1, "unit": "1", "laboratory": "x" * 150}]
                     * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 150))
    p = problem(post(api, big, raw=True), 413, "too-large")
    assert "larger than the server accepts" in p["detail"]


@pytest.mark.parametrize(("body", "why"), [
    ('"bilirubin"', "a lab result (a JSON object) or a list"),
    ("[]", "empty"),
    (json.dumps([{"analyte": "inr", "value": 1, "unit": "1"}] * 101), "at most 100"),
])
def test_bodies_of_the_wrong_shape_are_422(api: Any, body: str, why: str) -> None:
    p = problem(post(api, body, raw=True), 422, "validation")
    assert why in p["detail"]


@pytest.mark.parametrize(("field", "value", "why"), [
    ("laboratory", "lab\x00one", "NUL"),
    ("laboratory", "x" * 201, "at most 200"),
    ("unit", "mg/dL\x1b", "ESCAPE"),
    ("analyte", "bili\x00rubin", "NUL"),
    ("value", "1" * 51, "at most 50"),
    ("value", "\ud800", "surrogate"),
    ("date", "2008-01\n27", "LINE FEED"),
    ("date", 20080127, "valid string"),
])
def test_texts_the_store_cannot_keep_are_refused_before_writing(
        api: Any, field: str, value: Any, why: str) -> None:
    body = {"analyte": "bilirubin", "value": "2.3", "unit": "mg/dL", field: value}
    p = problem(post(api, body), 422, "validation")
    (e,) = p["errors"]
    assert e["field"] == field and why in e["reason"], e


def test_the_value_rule_is_the_stores(api: Any) -> None:
    for value, why in ((True, "is not a number"), (None, "is not a number"),
                       ("1,5", "'1,5' contains ','; use a point as the decimal mark")):
        p = problem(post(api, {"analyte": "inr", "value": value, "unit": "1"}), 422,
                    "validation")
        assert why in p["errors"][0]["reason"], (value, p)
        assert p["errors"][0]["record"] == f"participant {OWN} visit W1 lab inr"
    for value in ([1], [1, 2], {"value": 1}):  # one value, not several
        p = problem(post(api, {"analyte": "inr", "value": value, "unit": "1"}), 422,
                    "validation")
        assert p["errors"][0]["field"] == "value"
        assert "not an array or an object" in p["errors"][0]["reason"]


def test_roles_that_may_not_enter_data_get_403(api: Any) -> None:
    body = {"analyte": "bilirubin", "value": "2.3", "unit": "mg/dL"}
    for role in ("monitor", "qa", "auditor"):
        p = problem(post(api, body, role=role), 403, "forbidden")
        assert "enter_data" in p["detail"]
    for role in ("coordinator", "investigator", "data-manager"):
        r = post(api, {**body, "analyte": {"coordinator": "sodium", "investigator": "inr",
                                           "data-manager": "albumin"}[role],
                       "value": {"coordinator": "138", "investigator": "1.2",
                                 "data-manager": "35"}[role],
                       "unit": {"coordinator": "mmol/L", "investigator": "1",
                                "data-manager": "g/L"}[role]}, role=role)
        assert r.status_code == 201, (role, r.content)


def test_a_locked_visit_is_409_and_nothing_is_written(api: Any) -> None:
    from hepatrial.trials import services

    _c, w = api
    services.lock(level="visit", participant=OWN, visit_code="W1", user=w.users["data-manager"],
                  reason="monitoring visit done")
    before = lab_rows()
    p = problem(post(api, [{"analyte": "sodium", "value": "138", "unit": "mmol/L"}]), 409,
                "record-locked")
    assert "locked" in p["detail"] and lab_rows() == before
    services.unlock(level="visit", participant=OWN, visit_code="W1",
                    user=w.users["data-manager"], reason="correction needed")
    assert post(api, [{"analyte": "sodium", "value": "138", "unit": "mmol/L"}]).status_code \
        == 201


def test_a_new_lab_invalidates_the_visits_signature(api: Any) -> None:
    from hepatrial.trials import services

    pwd = "Sign-Here-Please-42"
    inv = services.create_user(username="inv_sign", password=pwd, role="investigator",
                               site_codes=["S01"])
    sig = services.sign(level="visit", participant=OWN, visit_code="W1",
                        meaning="I reviewed and approve these data", user=inv, password=pwd)
    assert services.signature_status(sig).valid
    assert post(api, {"analyte": "sodium", "value": "138", "unit": "mmol/L"}).status_code == 201
    status = services.signature_status(sig)
    assert not status.valid, status


# ------------------------------------------------------------------------ authentication
def test_no_or_bad_tokens_are_401_with_a_bearer_challenge(api: Any) -> None:
    c, _w = api
    cases = {
        "none": {},
        "basic": {"Authorization": "Basic Y29vcmQ6cHc="},
        "empty": {"Authorization": "Bearer "},
        "unknown": {"Authorization": "Bearer hpt_" + "x" * 43},
        "not ours": {"Authorization": "Bearer abc.def.ghi"},
    }
    for name, headers in cases.items():
        r = c.get("/api/v1/participants", headers=headers)
        p = problem(r, 401, "unauthenticated")
        assert r["WWW-Authenticate"].startswith('Bearer realm="hepatrial"'), name
        if name in ("unknown", "not ours", "empty"):
            assert 'error="invalid_token"' in r["WWW-Authenticate"], name
        assert "hpt_" not in p["detail"] or name in ("not ours", "empty")
    problem(c.post(LABS, data="{}", content_type="application/json"), 401, "unauthenticated")


def test_revoked_expired_and_deactivated_are_401(api: Any) -> None:
    from django.utils import timezone

    from hepatrial.trials import services
    from hepatrial.trials.models import ApiToken
    from hepatrial.trials.services import tokens

    c, _w = api
    user = services.create_user(username="coord_tmp", password=None, role="coordinator",
                                site_codes=["S01"])
    row, text = tokens.create_token(account=user)
    headers = {"Authorization": f"Bearer {text}"}
    assert c.get("/api/v1/me", headers=headers).status_code == 200
    ApiToken.objects.filter(pk=row.pk).update_with_reason(
        "test: token expired", expires_at=timezone.now() - dt.timedelta(seconds=1))
    p = problem(c.get("/api/v1/me", headers=headers), 401, "unauthenticated")
    assert "expired" in p["detail"]
    ApiToken.objects.filter(pk=row.pk).update_with_reason(
        "test: valid again", expires_at=timezone.now() + dt.timedelta(days=1))
    assert c.get("/api/v1/me", headers=headers).status_code == 200
    user.is_active = False
    user._change_reason = "test: deactivated"
    user.save()
    p = problem(c.get("/api/v1/me", headers=headers), 401, "unauthenticated")
    assert "deactivated" in p["detail"]
    user.is_active = True
    user._change_reason = "test: reactivated"
    user.save()
    tokens.revoke_token(account=user, token_id=row.pk, reason="test: leaver")
    p = problem(c.get("/api/v1/me", headers=headers), 401, "unauthenticated")
    assert "revoked" in p["detail"]


# ----------------------------------------------------------------------- other answers
def test_unknown_paths_and_methods_are_problems(api: Any) -> None:
    c, w = api
    for url in ("/api/v1/", "/api/v1/nothing", "/api/v1/participants/K01/labs",
                "/api/v1/participants/a%2Fb"):
        p = problem(c.get(url, headers=w.auth("coordinator")), 404, "not-found")
        assert "openapi.json" in p["detail"]
    r = c.delete(f"/api/v1/participants/{OWN}", headers=w.auth("coordinator"))
    p = problem(r, 405, "method-not-allowed")
    assert r["Allow"] == "GET"
    r = c.post("/api/v1/nothing", data="{}", content_type="application/json")
    problem(r, 404, "not-found")  # no CSRF page: the API has no cookies to protect


def test_keys_the_store_cannot_hold_are_404_not_500(api: Any) -> None:
    for url in ("/api/v1/participants/K%0001", "/api/v1/participants/" + "K" * 41,
                "/api/v1/participants?site=S%0001",
                f"/api/v1/participants/{OWN}/visits/W%001/labs"):
        r = get(api, url) if not url.endswith("/labs") else post(api, {}, url=url)
        problem(r, 404, "not-found")


def test_openapi_document(api: Any) -> None:
    c, _w = api
    r = c.get("/api/v1/openapi.json")  # public: it describes the API, not the data
    assert r.status_code == 200
    doc = json.loads(r.content)
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {
        "/api/v1/me", "/api/v1/participants", "/api/v1/queries", "/api/v1/participants/{study_id}",
        "/api/v1/participants/{study_id}/visits",
        "/api/v1/participants/{study_id}/visits/{visit_code}/labs"}
    post_op = doc["paths"]["/api/v1/participants/{study_id}/visits/{visit_code}/labs"]["post"]
    assert set(post_op["responses"]) == {"201", "400", "401", "403", "404", "409", "413", "422",
                                         "503"}
    for code, resp in post_op["responses"].items():
        media = set(resp.get("content", {}))
        assert media == ({"application/json"} if code == "201" else {PROBLEM}), code
    assert post_op["security"] == [{"BearerToken": []}]
    assert doc["components"]["securitySchemes"]["BearerToken"] == {"type": "http",
                                                                   "scheme": "bearer"}
    lab_in = doc["components"]["schemas"]["LabIn"]
    assert lab_in["additionalProperties"] is False
    assert set(lab_in["required"]) == {"analyte", "value", "unit"}
    assert "bilirubin" in lab_in["properties"]["analyte"]["enum"]


def test_a_refused_request_writes_nothing_to_the_audit_trail(api: Any, world: World) -> None:
    from hepatrial.trials.audit.verify import verify
    from hepatrial.trials.models import AuditLedger

    n = AuditLedger.objects.count()
    for body in ([{"analyte": "sodium", "value": "138", "unit": "mmol/L"},
                  {"analyte": "inr", "value": "x", "unit": "1"}], "{", []):
        assert post(api, body, raw=isinstance(body, str)).status_code in (400, 422)
    assert AuditLedger.objects.count() == n
    assert post(api, {"analyte": "sodium", "value": "138", "unit": "mmol/L"}).status_code == 201
    assert AuditLedger.objects.count() > n
    assert verify() == []
    assert DAY0  # the world's day 0 (used by the visit dates above)
