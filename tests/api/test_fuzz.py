"""schemathesis against the OpenAPI document of a real ``hepatrial serve``, on SQLite and on
PostgreSQL: no 5xx on any input, and every response valid against the document (status code,
media type, headers, body schema); invalid requests are refused with a 4xx.

Each operation is fuzzed with data that fits the document (random path values, and the test
trial's own participant and visit so that real records are read and written) and with data
that does not (schemathesis's negative mode), seeded (``derandomize``) so a run is repeatable.
:data:`EXAMPLES` per operation and mode keeps the whole fuzz under about a minute per backend.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api._served import Served, served, store_env  # noqa: F401  (fixtures)

#: examples per operation, per variant (positive random / positive on real records / negative)
EXAMPLES = 40
#: the real records the second positive variant addresses
REAL = {"study_id": "K01", "visit_code": "W1"}
#: a body the store accepts at the real visit (the first call records it: a 201 to validate)
VALID = [{"analyte": "sodium", "value": "138", "unit": "mmol/L"},
         {"analyte": "albumin", "value": 3.5, "unit": "g/dL", "date": "2008-01-27"}]

pytestmark = pytest.mark.slow


def _checks() -> list[Any]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [not_a_server_error, status_code_conformance, content_type_conformance,
            response_headers_conformance, response_schema_conformance, negative_data_rejection]


def _fuzz(strategy: Any, key: str, base: str, headers: dict[str, str], checks: list[Any],
          calls: dict[str, int], statuses: dict[int, int]) -> None:
    """Run :data:`EXAMPLES` cases of ``strategy``, each validated by ``checks``."""
    from hypothesis import HealthCheck, given, settings

    @given(case=strategy)
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        calls[key] += 1
        r = case.call_and_validate(base_url=base, headers=headers, checks=checks)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

    run()


def test_schemathesis_no_5xx_and_every_response_as_documented(served: Served) -> None:  # noqa: F811
    import schemathesis
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(served.base + "/api/v1/openapi.json")
    checks = _checks()
    headers = {"Authorization": f"Bearer {served.tokens['coord_a']}"}
    calls: dict[str, int] = {}
    statuses: dict[int, int] = {}
    ops = [r.ok() for r in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in ops} == {
        "GET /api/v1/me", "GET /api/v1/participants", "GET /api/v1/participants/{study_id}",
        "GET /api/v1/queries",
        "GET /api/v1/participants/{study_id}/visits",
        "POST /api/v1/participants/{study_id}/visits/{visit_code}/labs"}
    for op in ops:
        names = {p.name for p in op.path_parameters}
        has_input = bool(names or list(op.query) or op.body)
        real = {k: v for k, v in REAL.items() if k in names}
        variants: list[tuple[str, Any, dict[str, Any]]] = [
            ("positive", GenerationMode.POSITIVE, {})]
        if names:
            variants.append(("real", GenerationMode.POSITIVE, {"path_parameters": real}))
        if op.body:
            variants.append(("valid", GenerationMode.POSITIVE,
                             {"path_parameters": real, "body": VALID}))
        if has_input:
            variants.append(("negative", GenerationMode.NEGATIVE, {}))
        for label, mode, fixed in variants:
            key = f"{op.method.upper()} {op.path} [{label}]"
            calls[key] = 0
            strategy = op.as_strategy(generation_mode=mode, **fixed)
            _fuzz(strategy, key, served.base, headers, checks, calls, statuses)
    total = sum(calls.values())
    print(f"\nschemathesis: {total} cases on {served.base}: "
          + json.dumps(calls, indent=1) + "\nstatuses: " + json.dumps(statuses))
    assert all(n > 0 for n in calls.values()), calls
    assert not any(code >= 500 for code in statuses)
    assert statuses.get(201, 0) > 0, "no lab was ever recorded: the fuzz missed the write path"
    assert statuses.get(200, 0) > 0 and statuses.get(404, 0) > 0 and statuses.get(422, 0) > 0


def test_the_served_api_scopes_and_writes(served: Served) -> None:  # noqa: F811
    coord, dm = served.tokens["coord_a"], served.tokens["dm"]
    status, _h, body = served.request("GET", "/api/v1/participants", coord)
    assert status == 200
    assert [p["study_id"] for p in json.loads(body)["items"]] == ["K01"]
    status, _h, body = served.request("GET", "/api/v1/participants", dm)
    assert [p["study_id"] for p in json.loads(body)["items"]] == ["K01", "K02"]
    status, headers, body = served.request("GET", "/api/v1/participants/K02", coord)
    assert status == 404 and headers["Content-Type"] == "application/problem+json"
    labs = json.dumps([{"analyte": "albumin", "value": 3.50, "unit": "g/dL"},
                       {"analyte": "albumin", "value": 35, "unit": "g/L"}]).encode()
    status, _h, body = served.request("POST", "/api/v1/participants/K02/visits/D0/labs", dm,
                                      labs)
    assert status == 422  # the same analyte twice: nothing recorded
    assert [e["index"] for e in json.loads(body)["errors"]] == [1]
    status, _h, body = served.request("POST", "/api/v1/participants/K02/visits/D0/labs", dm,
                                      b'{"analyte": "albumin", "value": 3.50, "unit": "g/dL"}')
    assert status == 201, body
    assert json.loads(body)["items"][0]["value_as_entered"] == "3.50"
    status, headers, _b = served.request("GET", "/api/v1/me", "hpt_" + "x" * 43)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    status, _h, _b = served.request("GET", "/api/v1/participants/K%0001", coord)
    assert status == 404


def test_concurrent_posts_of_one_value_record_it_once(served: Served) -> None:  # noqa: F811
    """Eight requests recording the same analyte at the same visit at the same time: exactly
    one is recorded (201); every other is refused as already recorded (422) or as a concurrent
    edit (409) — never a 5xx, never two rows."""
    from concurrent.futures import ThreadPoolExecutor

    dm = served.tokens["dm"]
    body = b'{"analyte": "creatinine", "value": "1.10", "unit": "mg/dL"}'
    url = "/api/v1/participants/K02/visits/W1/labs"
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda _i: served.request("POST", url, dm, body), range(8)))
    codes = sorted(status for status, _h, _b in got)
    assert codes.count(201) == 1 and set(codes) <= {201, 409, 422}, codes
    status, _h, raw = served.request("GET", "/api/v1/participants/K02/visits", dm)
    assert status == 200
    w1 = next(v for v in json.loads(raw) if v["code"] == "W1")
    assert [lab["analyte"] for lab in w1["labs"]].count("creatinine") == 1
