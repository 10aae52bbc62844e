"""The Django admin, table-driven (issue 8): every URL pattern of ``django.contrib.admin.site``
× every identity (each role of the matrix, a coordinator of another site, a superuser made
without the store, a staff account without a role, anonymous) × an object of the own and of
another site, against ``tests/store/_admin_routes.py``.

Every pattern is opened (GET); every page that writes - add, change, delete, the history form
(``/history/<version>/``), an account's password page, every changelist action, the site's
sign-in and password change - is also POSTed a well-formed form: the fields the page shows to
a user who may (parsed from its HTML as a browser submits them) with the values of
:func:`tests.store._admin_routes.forms`. The expected answer follows from the table alone:
anonymous → the sign-in page; a role without the page → 403; an object of a site the role
does not act on → hidden (what the admin answers for an object that does not exist);
otherwise the page (200) or, for a POST, the write - with the user and the reason for change
in the record's history. A refused POST writes nothing: the row count of every table of the
store (records, their histories, the audit ledger, accounts, grants, sign-in records, the
admin's log) and the addressed row are unchanged. Each POST runs in a savepoint rolled back
after it, so every case sees the same world.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test import Client, override_settings

from tests.store._admin_routes import (
    IDENTITIES,
    PAGES,
    PASSWORD,
    SITE_ROUTES,
    Identity,
    Page,
    World,
    build_world,
    forms,
)
from tests.store.test_concurrent_edits import form_of

REASON = "admin walk: source document check"
DELETE_REASON = "admin walk: entered in error"
LOGIN = "/admin/login/"
HOME = "/admin/"
#: the kinds of page that a POST writes on (changelist: its actions)
POSTED = ("add", "change", "delete", "history_form", "password")
PAGE = {p.label: p for p in PAGES}
#: the autocomplete of a consent's participant (Django offers it for every foreign key whose
#: admin has search fields): the participants the user may see, and only those
AUTOCOMPLETE = ("/admin/autocomplete/?app_label=trials&model_name=consent"
                "&field_name=participant&term=K")
#: identity -> (request, expected answer) of every request made, for the counts at the end
RAN: dict[str, list[tuple[str, str]]] = {}


# ------------------------------------------------------------------------- enumeration
def admin_patterns() -> set[tuple[str, str]]:
    """``(model label | "site", kind)`` of every URL pattern of the admin site: the suffix
    of a model page's URL name (``trials_visit_change`` → change; simple_history's
    ``…_simple_history`` → history_form; the user's ``…_password_change`` → password),
    ``redirect`` for the unnamed ``<object_id>/`` redirect, the site's own URL names and
    ``catch_all`` for its final pattern; any other unnamed pattern by its regex."""
    from django.contrib import admin
    from django.urls import URLPattern, URLResolver

    registered = {f"{m._meta.app_label}/{m._meta.model_name}/" for m in admin.site._registry}
    out: set[tuple[str, str]] = set()
    for p in admin.site.get_urls():
        if isinstance(p, URLResolver):
            assert str(p.pattern) in registered, f"admin include {p.pattern} of no model"
            continue
        assert isinstance(p, URLPattern)
        name = p.name or ("catch_all" if str(p.pattern) == "(?P<url>.*)$" else str(p.pattern))
        out.add(("site", name))
    for model, model_admin in admin.site._registry.items():
        prefix = f"{model._meta.app_label}_{model._meta.model_name}_"
        for p in model_admin.get_urls():
            if p.name is None:
                kind = "redirect" if str(p.pattern) == "<path:object_id>/" else str(p.pattern)
            else:
                kind = p.name.removeprefix(prefix)
            kind = {"simple_history": "history_form", "password_change": "password"}.get(
                kind, kind)
            out.add((model._meta.label_lower, kind))
    return out


def table_patterns() -> set[tuple[str, str]]:
    return {(p.label, k) for p in PAGES for k in p.kinds} | {("site", n) for n in SITE_ROUTES}


def test_every_admin_url_is_in_the_table() -> None:
    found, table = admin_patterns(), table_patterns()
    assert found - table == set(), "admin URLs missing from tests/store/_admin_routes.py"
    assert table - found == set(), "admin URLs in tests/store/_admin_routes.py that do not exist"
    assert len(found) > 200  # 29 models, 6 to 8 pages each, and the site's


def _actions_of(page: Page, user: Any) -> set[str]:
    from django.apps import apps
    from django.contrib import admin
    from django.test import RequestFactory

    request = RequestFactory().get(page.url_prefix)
    request.user = user
    return set(admin.site._registry[apps.get_model(page.label)].get_actions(request))


def test_every_admin_action_is_in_the_table(db: Any) -> None:
    """The actions any account is offered on a changelist (a superuser sees them all)."""
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.create_superuser("root_actions", password=None)
    for page in PAGES:
        assert _actions_of(page, root) == set(page.actions), page.label


# ------------------------------------------------------------------------------- world
@pytest.fixture(scope="module")
def world(django_db_setup: Any, django_db_blocker: Any) -> Iterator[World]:
    """One store for the module, rolled back at its end (MD5 hashing: the walk signs in
    and changes passwords)."""
    from hepatrial.trials import services

    hashing = override_settings(
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
    quiet = _quiet_refusals()
    with django_db_blocker.unblock(), hashing, quiet, transaction.atomic():
        w = build_world(services)
        yield w
        transaction.set_rollback(True)


@contextmanager
def _quiet_refusals() -> Iterator[None]:
    """Django logs every 403/404 with its traceback: thousands of expected ones here."""
    import logging

    log = logging.getLogger("django.request")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


_TABLES: list[str] = []


def _tables() -> list[str]:
    """Every table of the store's records, their histories, the ledger, the accounts and their
    grants, django-axes' sign-in records and the admin's log (not the sessions)."""
    if not _TABLES:
        from django.apps import apps

        _TABLES.extend(sorted({
            m._meta.db_table for m in apps.get_models(include_auto_created=True)
            if m._meta.app_label in ("trials", "auth", "axes", "admin")}))
    return _TABLES


def snapshot() -> dict[str, int]:
    """Row count of every table of :func:`_tables` (one query)."""
    tables = _tables()
    q = connection.ops.quote_name
    sql = "SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {q(t)})" for t in tables)
    with connection.cursor() as cur:
        cur.execute(sql)
        return dict(zip(tables, cur.fetchone(), strict=True))


@contextmanager
def rolled_back() -> Iterator[None]:
    """A savepoint undone at the end: the POST's writes do not reach the next case."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


# --------------------------------------------------------------------------- the walk
def _model(label: str) -> Any:
    from django.apps import apps

    return apps.get_model(label)


def _user(ident: Identity) -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username=ident.username)


def client_of(ident: Identity) -> Client:
    c = Client()
    if ident.username is not None:
        c.force_login(_user(ident), backend="django.contrib.auth.backends.ModelBackend")
    return c


def url_of(page: Page, kind: str, pk: Any) -> str:
    from django.urls import reverse

    base = f"admin:{page.app_label}_{page.model_name}"
    if kind in ("changelist", "add"):
        return reverse(f"{base}_{kind}")
    if kind == "redirect":
        return f"{page.url_prefix}{pk}/"
    if kind == "history_form":
        version = _model(page.label).history.filter(
            **{_model(page.label)._meta.pk.attname: pk}).order_by("-history_id").first()
        return reverse(f"{base}_simple_history", args=[pk, version.history_id])
    if kind == "password":
        return reverse(f"{base}_password_change", args=[pk])
    return reverse(f"{base}_{kind}", args=[pk])


def readers(page: Page) -> frozenset[str]:
    return page.read | page.change


def expected(page: Page, kind: str, method: str, ident: Identity, which: str,
             action: str | None = None) -> str:
    """What the admin answers ``ident`` for this request, from the table alone: ``login``,
    ``403``, ``hidden`` (as for an object that does not exist), ``ok`` (the page),
    ``to_change`` (the object redirect), ``written``, ``invalid`` (the form shown again with
    its errors: the add names a participant of a site the role does not act on) or ``back``
    (a changelist action the role is not offered: back to the list)."""
    if ident.username is None:
        return "login"
    role = ident.role
    visible = page.scope is None or ident.acts_on(which)
    if kind == "redirect":
        return "to_change"
    if kind == "changelist":
        if role not in readers(page):
            return "403"
        if action is None:
            return "ok"
        return "written" if role in page.actions.get(action, ()) else "back"
    if kind == "add":
        if role not in page.add:
            return "403"
        if method == "GET":
            return "ok"
        return "written" if page.scope != "participant" or ident.acts_on("own") else "invalid"
    if kind == "history_form" and method == "POST":
        return "403"  # reverting is off for everybody
    if kind == "change":
        needed = page.change if method == "POST" else readers(page)
    elif kind == "delete":
        needed = page.delete
    elif kind == "password":
        needed = page.change
    else:  # history, history form
        needed = readers(page)
    if role not in needed:
        return "403"
    if not visible:
        return "hidden"
    return "written" if method == "POST" else "ok"


def _writer(page: Page, kind: str, which: str) -> Identity | None:
    """The first identity that may write this page's ``kind`` on ``which`` site's object."""
    roles = {"add": page.add, "delete": page.delete}.get(kind, page.change)
    for ident in IDENTITIES:
        if ident.role in roles and ident.username is not None and (
                page.scope is None or ident.acts_on("own" if kind == "add" else which)):
            return ident
    return None


def _stored_fields(obj: Any) -> dict[str, Any]:
    """A record's editable fields as a form would post them, one text changed (for the pages
    nobody may write: a POST that would change the record if it were accepted)."""
    data: dict[str, Any] = {}
    changed = False
    for f in obj._meta.concrete_fields:
        if f.primary_key or not f.editable:
            continue
        value = getattr(obj, f.attname)
        if value is None:
            value = ""
        elif isinstance(value, bool):
            value = "on" if value else ""
        elif isinstance(value, (dict, list)):
            import json

            value = json.dumps(value)
        elif hasattr(value, "isoformat"):
            value = value.isoformat()
        if not changed and f.get_internal_type() in ("CharField", "TextField") and value:
            value, changed = f"{value} (walk)", True
        data[f.name] = str(value)
    return data


class NoForm(Exception):
    """A user who may write a page is not shown its form."""


_FORMS: dict[tuple[str, str, str], dict[str, Any]] = {}
_CLIENTS: dict[str, Client] = {}


def session(ident: Identity) -> Client:
    if ident.name not in _CLIENTS:
        _CLIENTS[ident.name] = client_of(ident)
    return _CLIENTS[ident.name]


def form_data(world: World, page: Page, kind: str, which: str) -> dict[str, Any]:
    """The POST of ``kind`` (``history_form``: the change form): the form as a user who may
    sees it, with the values of :func:`forms` and the reason; for pages nobody may write, the
    record's stored fields with one text changed."""
    key = (page.label, kind, which)
    if key in _FORMS:
        return _FORMS[key]
    form_kind = "change" if kind == "history_form" else kind
    pk = world.obj(page.label, which, form_kind)
    writer = _writer(page, form_kind, which)
    if writer is None:
        model = _model(page.label)
        source = model._base_manager.get(pk=world.obj(page.label, which))
        data = _stored_fields(source) if form_kind != "delete" else {"post": "yes"}
    else:
        r = session(writer).get(url_of(page, form_kind, pk))
        form_id = "" if form_kind == "delete" else (
            "user_form" if form_kind == "password" else f"{page.model_name}_form")
        try:
            data = form_of(r, form_id)
        except AssertionError:
            text = re.sub(r"<[^>]+>", " ", r.content.decode(errors="replace"))
            found = re.search(r"(Cannot delete|would require deleting|not have permission)"
                              r".{0,300}", text, re.S)
            why = " ".join(found.group(0).split()) if found else ""
            raise NoForm(f"{writer.name} gets no {form_kind} form of {page.label} "
                         f"{which}: {r.status_code} {why}") from None
        fill = forms().get((page.label, form_kind))
        if fill is not None:
            data.update({k: str(v) for k, v in fill(world, which).items()})
    data["change_reason"] = DELETE_REASON if form_kind == "delete" else REASON
    _FORMS[key] = data
    return data


def _rows(page: Page, pk: Any) -> list[dict[str, Any]]:
    return list(_model(page.label)._base_manager.filter(pk=pk).values())


def _errors(r: Any) -> str:
    text = r.content.decode(errors="replace")
    found = re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', text, re.S)
    found += re.findall(r'<li class="error">(.*?)</li>', text, re.S)
    return " | ".join(re.sub(r"<[^>]+>", " ", e).strip() for e in found)[:600]


def _status_ok(want: str, r: Any, url: str, pk: Any) -> bool:
    got, where = r.status_code, r.get("Location", "")
    return {
        "login": got == 302 and where.startswith(LOGIN),
        "403": got == 403,
        "404": got == 404,
        "405": got == 405,
        "ok": got == 200,
        "home": got == 302 and where == HOME,
        "hidden": got == 403 or (got == 302 and where == HOME),
        "to_change": got == 302 and where.endswith(f"/{pk}/change/"),
        "written": got == 302 and not where.startswith(LOGIN) and where != HOME,
        "invalid": got == 200,
        "signed_out": got == 302 and where == settings.LOGOUT_REDIRECT_URL,
        "back": got == 302 and where == url,
    }[want]


def check_written(page: Page, kind: str, ident: Identity, pk: Any, before: dict[str, int],
                  data: dict[str, Any]) -> str | None:
    """The write of an accepted POST: the record added, changed or deleted, its newest history
    row by ``ident`` with the reason typed (an add needs none). None when all is well."""
    model = _model(page.label)
    after = snapshot()
    if after == before:
        return "accepted but nothing was written"
    history = getattr(model, "history", None)
    if history is None:
        return "written, but the record has no history"
    row = history.order_by("-history_id").first()
    if kind == "delete" or (kind == "changelist" and data.get("action") == "delete_selected"):
        if model._base_manager.filter(pk=pk).exists():
            return "delete accepted, record still there"
        want_type, reason = "-", DELETE_REASON
    elif kind == "add":
        want_type, reason = "+", None
    else:
        want_type, reason = "~", REASON
    if row is None or row.history_type != want_type:
        return f"newest history row is {row and row.history_type!r}, not {want_type!r}"
    if kind != "add" and str(getattr(row, model._meta.pk.attname)) != str(pk):
        return f"newest history row is of record {getattr(row, model._meta.pk.attname)}"
    if row.history_user_id != _user(ident).pk:
        return f"history row by user id {row.history_user_id}, not {ident.username}"
    if reason is not None and reason not in (row.history_change_reason or ""):
        return f"history row's reason is {row.history_change_reason!r}, not {reason!r}"
    return None


def run_case(world: World, ident: Identity, page: Page, kind: str, method: str, which: str,
             failures: list[str], action: str | None = None) -> None:
    client = session(ident)
    pk = world.obj(page.label, which, kind) if kind != "add" else None
    url = url_of(page, kind, pk if kind not in ("changelist",) else None)
    want = expected(page, kind, method, ident, which, action)
    label = f"{method} {url}{f' action={action}' if action else ''} as {ident.name}"
    RAN.setdefault(ident.name, []).append((label, want))
    if method == "GET":
        r = client.get(url)
        if not _status_ok(want, r, url, pk):
            failures.append(f"{label} ({which} site): expected {want}, got {r.status_code} "
                            f"{r.get('Location', '')}")
        return
    if kind == "changelist":
        data = {"action": action, "_selected_action": [world.obj(page.label, "own")],
                "index": "0", "post": "yes"}
        target = world.obj(page.label, "own")
    else:
        try:
            data = form_data(world, page, kind, which)
        except NoForm as exc:
            failures.append(f"{label}: {exc}")
            return
        target = pk
    cookies = client.cookies
    with rolled_back():
        before, row = snapshot(), _rows(page, target) if target is not None else []
        client.cookies = cookies.__class__(cookies)  # a password page cycles the session key
        r = client.post(url, data)
        if not _status_ok(want, r, url, pk):
            failures.append(f"{label} ({which} site): expected {want}, got {r.status_code} "
                            f"{r.get('Location', '')} {_errors(r)}")
        if want == "written":
            problem = check_written(page, kind, ident, target, before, data)
            if problem:
                failures.append(f"{label} ({which} site): {problem}")
        elif snapshot() != before or (target is not None and _rows(page, target) != row):
            diff = {t: (n, snapshot()[t]) for t, n in before.items() if snapshot()[t] != n}
            failures.append(f"{label} ({which} site): refused ({r.status_code}) but wrote "
                            f"{diff or 'the record'}")
    client.cookies = cookies  # the session as it was (its rows are rolled back)


def walk_pages(world: World, ident: Identity) -> list[str]:
    failures: list[str] = []
    for page in PAGES:
        for kind in page.kinds:
            if kind in ("changelist", "add"):
                run_case(world, ident, page, kind, "GET", "own", failures)
                if kind == "add":
                    run_case(world, ident, page, kind, "POST", "own", failures)
                for action in sorted(page.actions):
                    run_case(world, ident, page, kind, "POST", "own", failures, action)
                continue
            for which in page.targets():
                run_case(world, ident, page, kind, "GET", which, failures)
                if kind in POSTED:
                    run_case(world, ident, page, kind, "POST", which, failures)
    return failures


# ------------------------------------------------------------------- the site's own URLs
def _app_pages(app: str, ident: Identity) -> bool:
    return any(p.app_label == app and ident.role in readers(p) | p.add for p in PAGES)


def walk_site(world: World, ident: Identity) -> list[str]:
    """The site's URLs: index, sign-in (and an anonymous sign-in), sign-out, the own password
    change (written with a reason), autocomplete (no admin uses it: refused), the JavaScript
    catalogue, view-on-site (no record has a public URL), each app's index, the catch-all."""
    from django.contrib.contenttypes.models import ContentType

    from hepatrial.trials.models import LoginEvent, Participant

    failures: list[str] = []
    anon = ident.username is None
    client = session(ident)
    ct = ContentType.objects.get_for_model(Participant).pk
    gets = {
        "index": (HOME, "login" if anon else "ok"),
        "login": (LOGIN, "ok" if anon else "home"),
        "logout": ("/admin/logout/", "home" if anon else "405"),
        "password_change": ("/admin/password_change/", "login" if anon else "ok"),
        "password_change_done": ("/admin/password_change/done/", "login" if anon else "ok"),
        "autocomplete": (AUTOCOMPLETE, "login" if anon else (
            "ok" if ident.role in readers(PAGE["trials.participant"]) else "403")),
        "jsi18n": ("/admin/jsi18n/", "login" if anon else "ok"),
        "view_on_site": (f"/admin/r/{ct}/{world.obj('trials.participant', 'other')}/",
                         "login" if anon else "404"),
        "catch_all": ("/admin/no-such-page/", "login" if anon else "404"),
    }
    for app in ("auth", "axes", "trials"):
        gets[f"app_list {app}"] = (f"/admin/{app}/", "login" if anon else (
            "ok" if _app_pages(app, ident) else "404"))
    assert {n.split()[0] for n in gets} == set(SITE_ROUTES)
    for name, (url, want) in gets.items():
        RAN.setdefault(ident.name, []).append((f"GET {url} ({name}) as {ident.name}", want))
        r = client.get(url)
        if not _status_ok(want, r, url, None):
            failures.append(f"GET {url} as {ident.name}: expected {want}, got "
                            f"{r.status_code} {r.get('Location', '')}")
        elif name == "autocomplete" and want == "ok":
            shown = {int(x["id"]) for x in r.json()["results"]}
            sites = set(Participant.objects.filter(pk__in=shown).values_list(
                "site__code", flat=True))
            if not shown or not sites <= ident.sites:
                failures.append(f"GET {url} as {ident.name}: participants of {sorted(sites)}")

    def post(url: str, data: dict[str, Any], want: str) -> tuple[Any, dict[str, int]]:
        """POST from a new session of ``ident`` (signing in, out and a new password end it)."""
        RAN.setdefault(ident.name, []).append((f"POST {url} as {ident.name}", want))
        c = client_of(ident)
        before = snapshot()
        r = c.post(url, data)
        if not _status_ok(want, r, url, None):
            failures.append(f"POST {url} as {ident.name}: expected {want}, got "
                            f"{r.status_code} {r.get('Location', '')} {_errors(r)}")
        return r, before

    with rolled_back():  # signing in: an audited sign-in event, whoever was signed in
        r, before = post(LOGIN, {"username": "u_monitor", "password": PASSWORD,
                                 "next": HOME}, "home")
        diff = {t: n - before[t] for t, n in snapshot().items() if n != before[t]}
        if diff.get(LoginEvent._meta.db_table) != 1:
            failures.append(f"POST {LOGIN} as {ident.name}: no sign-in event recorded")
    with rolled_back():  # signing out writes nothing of the store
        r, before = post("/admin/logout/", {}, "home" if anon else "signed_out")
        if snapshot() != before:
            failures.append(f"POST /admin/logout/ as {ident.name}: wrote to the store")
    with rolled_back():  # the own password: the account's history, with a reason
        new = "Walk-own-password-99"
        data = {"old_password": PASSWORD, "new_password1": new, "new_password2": new,
                "change_reason": REASON}
        r, before = post("/admin/password_change/", data, "login" if anon else "written")
        if anon:
            if snapshot() != before:
                failures.append(f"POST /admin/password_change/ as {ident.name}: wrote")
        else:
            user = _user(ident)
            row = user.history.order_by("-history_id").first()
            if not user.check_password(new):
                failures.append(f"password change as {ident.name}: password not changed")
            elif REASON not in (row.history_change_reason or ""):
                failures.append(f"password change as {ident.name}: history row's reason is "
                                f"{row.history_change_reason!r}, not the one typed")
    return failures


# ------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("ident", IDENTITIES, ids=[i.name for i in IDENTITIES])
def test_admin_walk(world: World, db: Any, ident: Identity) -> None:
    t = time.perf_counter()
    RAN.pop(ident.name, None)
    _CLIENTS.pop(ident.name, None)
    failures = walk_pages(world, ident) + walk_site(world, ident)
    n = len(RAN[ident.name])
    print(f"\nadmin walk as {ident.name}: {n} requests in {time.perf_counter() - t:.1f} s")
    assert failures == [], "\n".join(failures)
    assert n >= len(admin_patterns())


def test_walk_covered_every_pattern_for_every_identity() -> None:
    """Run after the walk (same module): every pattern × every identity was requested."""
    if set(RAN) != {i.name for i in IDENTITIES}:
        pytest.skip("the walk did not run for every identity (run the whole module)")
    patterns = len(admin_patterns())
    total = sum(len(v) for v in RAN.values())
    posts = sum(1 for v in RAN.values() for req, _ in v if req.startswith("POST"))
    answers = Counter(want for v in RAN.values() for _, want in v)
    print(f"\nadmin walk: {patterns} URL patterns x {len(IDENTITIES)} identities: {total} "
          f"requests ({posts} POST); expected answers {dict(sorted(answers.items()))}")
    assert total >= patterns * len(IDENTITIES)
    assert answers["written"] >= 50 and answers["hidden"] >= 50 and answers["403"] >= 1000
