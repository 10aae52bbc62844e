"""URL tampering, table-driven: every route of the ``web`` namespace × every role × an object
of the user's own site and of another site (``tests/web/routes.py``).

For each request the expected answer follows from the role matrix alone
(:mod:`hepatrial.trials.services.permissions`): not signed in → the sign-in page; a role
without the route's permission → 403; an object of a site the role does not act on → 404
(it does not exist for the user, whatever the URL); otherwise the page answers (200, a
redirect after a write, or 400/409 for an empty form). A refused request writes nothing:
the audit ledger's length is unchanged. Every POST without a CSRF token is refused (403).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import get_resolver, reverse

from hepatrial.trials.services import permissions
from tests.web.routes import PUBLIC, ROUTES, Route

ROLES = (*permissions.ROLES, "none")
ALLOWED_STATUS = {200, 302, 400, 409}


def _web_names() -> set[str]:
    resolver = get_resolver()
    ns = resolver.namespace_dict["web"][1]
    return {name for name in ns.reverse_dict if isinstance(name, str)}


def test_every_route_is_in_the_table() -> None:
    names = _web_names()
    known = {r.name for r in ROUTES} | PUBLIC
    assert names - known == set(), "routes missing from tests/web/routes.py"
    assert known - names == set(), "routes in tests/web/routes.py that do not exist"


def _ledger_len() -> int:
    from hepatrial.trials.models import AuditLedger

    return int(AuditLedger.objects.count())


def expected(route: Route, role: str | None, which: str) -> str:
    """``login`` / ``403`` / ``404`` / ``ok`` for a request by ``role`` (None: anonymous)."""
    if role is None:
        return "login"
    if route.action is None:
        return "ok"
    if role == "none" or not permissions.allowed(route.action, role):
        return "403"
    if route.scoped and which == "other" and role not in permissions.ALL_SITES_ROLES:
        return "404"
    return "ok"


def _request(client: Client, route: Route, url: str) -> Any:
    return client.post(url, {}) if route.method == "POST" else client.get(url)


def _user(world: Any, role: str) -> Any:
    if role == "none":
        from django.contrib.auth import get_user_model

        return get_user_model().objects.create_user("no_role_user")
    return world.users[role]


def _check(client: Client, world: Any, role: str | None) -> list[str]:
    failures = []
    for route in ROUTES:
        for which in (("own", "other") if route.scoped else ("own",)):
            url = reverse(f"web:{route.name}", kwargs=route.target(world, which))
            before = _ledger_len()
            r = _request(client, route, url)
            want = expected(route, role, which)
            got = r.status_code
            ok = {
                "login": got == 302 and r["Location"].startswith("/login/"),
                "403": got == 403,
                "404": got == 404,
                "ok": got in ALLOWED_STATUS,
            }[want]
            if want != "ok" and _ledger_len() != before:
                failures.append(f"{route.method} {url} as {role}: refused ({got}) but wrote")
            if not ok:
                failures.append(f"{route.method} {url} as {role} ({which} site): expected "
                                f"{want}, got {got}")
    return failures


@pytest.mark.parametrize("role", ROLES)
def test_route_table_by_role(world: Any, client: Client, role: str) -> None:
    client.force_login(_user(world, role), backend="django.contrib.auth.backends.ModelBackend")
    assert _check(client, world, role) == []


def test_route_table_anonymous(world: Any, client: Client) -> None:
    assert _check(client, world, None) == []


def _linked(page: Any) -> set[str]:
    """Study ids of the participants a page links to (casebook, CRF or screening links)."""
    text = page if isinstance(page, str) else page.content.decode()
    return set(re.findall(r'href="/participants/([A-Za-z0-9_.-]+)/', text))


def test_other_site_coordinator_sees_nothing_of_site_a(world: Any, client: Client) -> None:
    """coord_b (S02) by search and filter: none of S01's participants, its site is 404."""
    client.force_login(world.other, backend="django.contrib.auth.backends.ModelBackend")
    assert _linked(client.get("/participants/", {"q": "A"})) == set()
    page = client.get("/participants/", {"site": "S01"}).content.decode()
    assert "No participant found." in page and _linked(page) == set()
    assert _linked(client.get("/participants/")) == {"B1"}
    assert client.get("/sites/S01/").status_code == 404
    assert client.get("/sites/").status_code == 302  # one site: straight to S02
    a1 = world.participant("A1")
    # a record of site A under the participant of site B
    url = reverse("web:history", kwargs={"study_id": "B1", "model": "participant",
                                         "pk": a1.pk, "field": "status"})
    assert client.get(url).status_code == 404
    assert _linked(client.get("/")) <= {"B1"}


def test_history_of_unknown_model_or_field_is_404(world: Any, login: Any) -> None:
    c = login("coordinator")
    a1 = world.participant("A1")
    for model, field in (("user", "password"), ("participant", "nope"),
                         ("participant", "site")):
        url = reverse("web:history", kwargs={"study_id": "A1", "model": model, "pk": a1.pk,
                                             "field": field})
        assert c.get(url).status_code == (200 if field == "site" else 404), (model, field)


def test_every_post_needs_the_csrf_token(world: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.users["coordinator"],
                       backend="django.contrib.auth.backends.ModelBackend")
    for route in ROUTES:
        if route.method != "POST":
            continue
        url = reverse(f"web:{route.name}", kwargs=route.target(world, "own"))
        before = _ledger_len()
        r = client.post(url, {"reason": "x"})
        assert r.status_code == 403, (url, r.status_code)
        assert b"CSRF" in r.content
        assert _ledger_len() == before
