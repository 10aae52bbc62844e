"""Site isolation and role checks by URL tampering for every route of the REST API.

The routes are read from Django's URL resolver (everything mounted under ``api/``), not from a
list kept by hand: :data:`TABLE` says what each route is and which methods it has, and
``test_the_table_names_every_api_route`` fails when a route (or a method of one) is added
without a row here. Every route × method is then requested by every role (and without a
token), on an object of the account's own site and on one of the other site, by path and by
filter: a site-scoped account gets 404 for the other site's objects — exactly the answer for
an object that does not exist, so their existence is not revealed —, 403 when its role may not
do the action, and the expected success otherwise.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest

from tests.api.conftest import OTHER, OWN

#: values for the path parameters of the routes: own site, other site
PARAMS = {"study_id": (OWN, OTHER), "visit_code": ("W1", "W1")}
#: a lab result every role that may enter data can record at W1
LAB = {"analyte": "sodium", "value": "138", "unit": "mmol/L"}


@dataclass(frozen=True)
class Route:
    """What a route is: ``action`` (the permission it needs; None: none), ``scope``
    (``participant``: one participant's object; ``list``: a list of the participants' records,
    tampered with through a filter (:data:`FILTERS`); ``account``: the caller's own account;
    ``public``: no token needed;
    ``absent``: no operation, always 404) and the status of a success."""

    action: str | None
    scope: str
    success: int = 200
    body: dict[str, Any] | None = None


#: route name -> method -> what it is. A new API route must get its row here.
TABLE: dict[str, dict[str, Route]] = {
    "me": {"GET": Route("view", "account")},
    "list_participants": {"GET": Route("view", "list")},
    "get_participant": {"GET": Route("view", "participant")},
    "list_visits": {"GET": Route("view", "participant")},
    "record_labs": {"POST": Route("enter_data", "participant", 201, LAB)},
    "list_queries": {"GET": Route("view", "list")},
    "openapi-json": {"GET": Route(None, "public")},
    "api-root": {"GET": Route(None, "absent")},
    "not-found": {"GET": Route(None, "absent")},
}
#: the filter of a list route, tampered with to name the other site's participant or site
FILTERS = {"list_participants": "?site=S02", "list_queries": f"?participant={OTHER}"}
#: the key naming a list item's participant
LIST_KEY = {"list_participants": "study_id", "list_queries": "participant"}
#: routes that are not django-ninja operations (their methods cannot be probed)
NOT_OPERATIONS = {"openapi-json", "api-root", "not-found"}


def api_patterns() -> dict[str, str]:
    """``name -> route`` of every URL pattern under ``api/`` in the resolver (nested includes
    flattened); fails for a pattern without a name or an ``api/`` mount other than
    ``/api/v1/``."""
    from django.urls import URLPattern, URLResolver, get_resolver

    out: dict[str, str] = {}

    def walk(patterns: list[Any], prefix: str) -> None:
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                walk(p.url_patterns, route)
            else:
                assert isinstance(p, URLPattern) and p.name, f"unnamed API route {route!r}"
                assert p.name not in out, f"two API routes named {p.name!r}"
                out[p.name] = route

    mounts = [p for p in get_resolver().url_patterns if str(p.pattern).startswith("api")]
    assert [str(p.pattern) for p in mounts] == ["api/v1/"], mounts
    walk(mounts[0].url_patterns, "api/v1/")
    return out


def url_of(name: str, route: str, side: int) -> str:
    """The URL of a route with its parameters filled for the own (0) or other (1) site."""
    if name == "not-found":
        return "/api/v1/no/such/operation"
    missing = set(re.findall(r"<(?:\w+:)?(\w+)>", route)) - set(PARAMS)
    assert not missing, f"route {route!r}: add values for {missing} to PARAMS"
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: PARAMS[m.group(1)][side], route)


def test_the_table_names_every_api_route(api: Any) -> None:
    c, w = api
    found = api_patterns()
    assert set(found) == set(TABLE), (
        f"API routes without a row in TABLE: {sorted(set(found) - set(TABLE))}; "
        f"rows without a route: {sorted(set(TABLE) - set(found))}")
    for name, route in sorted(found.items()):
        if name in NOT_OPERATIONS:
            continue
        r = c.generic("OPTIONS", url_of(name, route, 0), headers=w.auth("admin"))
        assert r.status_code == 405, (name, r.status_code)
        methods = set(r["Allow"].split(", "))
        assert methods == set(TABLE[name]), (name, methods)


def _roles() -> list[str]:
    from hepatrial.trials.services.permissions import ROLES

    return [*ROLES, "anonymous"]


CASES = [(name, method, role, side)
         for name, methods in TABLE.items() for method in methods
         for role in _roles() for side in ("own", "other")]


def expected(route: Route, role: str, side: str) -> int:
    """The status the table says ``role`` gets on ``side``'s object."""
    from hepatrial.trials.services.permissions import ALL_SITES_ROLES, allowed

    if route.scope == "absent":
        return 404
    if route.scope == "public":
        return 200
    if role == "anonymous":
        return 401
    if side == "other" and role not in ALL_SITES_ROLES and route.scope in ("participant",
                                                                             "list"):
        return 404
    assert route.action is not None
    return route.success if allowed(route.action, role) else 403


@pytest.mark.parametrize(("name", "method", "role", "side"), CASES,
                         ids=[f"{n}-{m}-{r}-{s}" for n, m, r, s in CASES])
def test_route_role_site(api: Any, name: str, method: str, role: str, side: str) -> None:
    from hepatrial.trials.services.permissions import ALL_SITES_ROLES

    c, w = api
    route = TABLE[name][method]
    url = url_of(name, api_patterns()[name], 0 if side == "own" else 1)
    if route.scope == "list" and side == "other":
        url += FILTERS[name]  # the filter tampered with
    headers = {} if role == "anonymous" else w.auth(role)
    kwargs: dict[str, Any] = {"headers": headers}
    if route.body is not None:
        kwargs.update(data=json.dumps(route.body), content_type="application/json")
    r = c.generic(method, url, **kwargs)
    want = expected(route, role, side)
    assert r.status_code == want, (url, role, r.content[:300])
    body = r.content.decode()
    if want >= 400:
        assert r["Content-Type"] == "application/problem+json"
        p = json.loads(body)
        assert p["status"] == want and p["instance"] == url.split("?")[0]
    if want == 404 and route.scope in ("participant", "list"):
        # the other site's object answers exactly as one that does not exist
        ghost = c.generic(method, url.replace(OTHER, "K99").replace("S02", "S99"), **kwargs)
        assert ghost.status_code == 404
        assert json.loads(ghost.content)["detail"].replace("K99", "?").replace("S99", "?") == \
            p["detail"].replace(OTHER, "?").replace("S02", "?")
    if role != "anonymous" and role not in ALL_SITES_ROLES and want < 400:
        assert OTHER not in body and "S02" not in body, "another site's data leaked"
    if route.scope == "list" and want == 200:
        ids = [x[LIST_KEY[name]] for x in json.loads(body)["items"]]
        if side == "other":
            assert ids == [OTHER]
        else:
            assert ids == ([OWN, OTHER] if role in ALL_SITES_ROLES else [OWN])


def test_the_table_has_every_case() -> None:
    from hepatrial.trials.services.permissions import ROLES

    assert len(CASES) == sum(len(m) for m in TABLE.values()) * (len(ROLES) + 1) * 2
