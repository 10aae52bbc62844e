"""The worklist: each user's landing page, made of **sections** provided by functions.

A section function takes the request's :class:`~hepatrial.trials.web.access.Access` and today's
date and returns a :class:`Section` (or None when it does not apply to the user's role). The
eCRF's own sections are registered here (overdue, due and due-soon visits with their window
dates; forms missing or incomplete; items waiting for the user's signature). Other pages add
theirs with :func:`register` from their own module, e.g. in ``web/queries.py``::

    from hepatrial.trials.web.worklist import Item, Section, register

    @register(order=40)
    def open_queries(access, today):
        if not access.may("view"):
            return None
        return Section("queries", "Open queries addressed to you", [Item(...), ...])

(modules under ``hepatrial.trials.web`` named in ``web.urls.EXTENSIONS`` are imported with the
URLs, so their sections are registered before any page is served). A section shows what
exists: an empty one says so in one line, never a placeholder.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from hepatrial.trials import selectors_web, services
from hepatrial.trials.web.access import Access, ecrf_view
from hepatrial.trials.web.common import today


@dataclass
class Item:
    """One line of a section: what, where to go, and details (window dates, missing items)."""

    title: str
    url: str = ""
    detail: str = ""
    badge: str = ""
    badge_class: str = "info"


@dataclass
class Section:
    """A titled list of work items (``key`` is the HTML id, ``empty`` the one-line text shown
    when there is nothing to do)."""

    key: str
    title: str
    items: list[Item] = field(default_factory=list)
    empty: str = "Nothing to do."
    total: int | None = None

    @property
    def count(self) -> int:
        """How many things are waiting (``total`` when the list is cut short)."""
        return len(self.items) if self.total is None else self.total


SectionFunction = Callable[[Access, _dt.date], Section | None]
_SECTIONS: list[tuple[int, str, SectionFunction]] = []


def register(order: int = 50) -> Callable[[SectionFunction], SectionFunction]:
    """Decorator: add a section function to every user's worklist (``order``: lower first;
    the eCRF's own sections use 10-30). Registering the same function twice keeps one."""

    def deco(fn: SectionFunction) -> SectionFunction:
        key = f"{fn.__module__}.{fn.__qualname__}"
        _SECTIONS[:] = [s for s in _SECTIONS if s[1] != key]
        _SECTIONS.append((order, key, fn))
        _SECTIONS.sort(key=lambda s: (s[0], s[1]))
        return fn

    return deco


def sections(access: Access, on: _dt.date) -> list[Section]:
    """Every registered section that applies to the user, in order."""
    out = []
    for _order, _key, fn in _SECTIONS:
        s = fn(access, on)
        if s is not None:
            out.append(s)
    return out


def _work(access: Access, on: _dt.date) -> dict[str, list[dict[str, Any]]]:
    """The visits needing work at the user's sites (read once per request)."""
    cache = access.__dict__.setdefault("_worklist", {})
    if on not in cache:
        cache[on] = selectors_web.worklist_visits(services.active_protocol(), access.site_ids,
                                                  on)
    return cache[on]


#: items of one kind listed in a section (the rest is counted, with a link to the dashboards)
SHOWN = 50


def _more(n: int, what: str) -> Item:
    return Item(f"{n} more {what}", reverse("web:sites"),
                "listed on the site dashboards", "more", "info")


def _visit_url(row: dict[str, Any]) -> str:
    return reverse("web:visit", kwargs={"study_id": row["participant"], "code": row["visit"]})


def _window(row: dict[str, Any]) -> str:
    earliest, target, latest = row["window"]
    return f"window {earliest} – {latest} (target {target})"


@register(order=10)
def visits_section(access: Access, on: _dt.date) -> Section | None:
    """Overdue visits, visits due now and visits due within the next two weeks."""
    if access.role is None:
        return None
    w = _work(access, on)
    items = []
    for state, badge, cls in (("overdue", "overdue", "bad"), ("due", "due now", "warn"),
                              ("due_soon", "due soon", "info")):
        for r in w[state][:SHOWN]:
            days = (on - r["window"][2]).days if state == "overdue" else None
            detail = _window(r) + (f"; closed {days} day(s) ago" if days else "")
            items.append(Item(f"{r['participant']} {r['visit']} · {r['label']}",
                              _visit_url(r), detail, badge, cls))
        if len(w[state]) > SHOWN:
            items.append(_more(len(w[state]) - SHOWN, f"{badge} visit(s)"))
    return Section("visits", "Visits overdue, due and due soon", items,
                   f"No visit is overdue or due in the next {selectors_web.DUE_SOON_DAYS} days.",
                   total=sum(len(w[k]) for k in ("overdue", "due", "due_soon")))


@register(order=20)
def forms_section(access: Access, on: _dt.date) -> Section | None:
    """Visits that took place with items neither entered nor recorded as not done."""
    if access.role is None:
        return None
    w = _work(access, on)
    items = [Item(f"{r['participant']} {r['visit']} · {r['label']}", _visit_url(r),
                  "missing: " + ", ".join(r["missing"]), f"{len(r['missing'])} missing", "warn")
             for r in w["incomplete"][:SHOWN]]
    if len(w["incomplete"]) > SHOWN:
        items.append(_more(len(w["incomplete"]) - SHOWN, "incomplete visit(s)"))
    return Section("forms", "Forms missing or incomplete", items,
                   "Every visit that took place has all its items.", total=len(w["incomplete"]))


@register(order=30)
def signatures_section(access: Access, on: _dt.date) -> Section | None:
    """For a user who signs: visits that took place and have no valid signature."""
    if not access.may("sign"):
        return None
    waiting = selectors_web.visits_to_sign(access.site_ids)
    items = [Item(f"{r['participant']} {r['visit']} · {r['label']}", _visit_url(r),
                  f"visit on {r['actual_date']}", "to sign", "info") for r in waiting[:SHOWN]]
    if len(waiting) > SHOWN:
        items.append(_more(len(waiting) - SHOWN, "visit(s) to sign"))
    return Section("signatures", "Waiting for your signature", items,
                   "Nothing is waiting for your signature.", total=len(waiting))


@ecrf_view(None)
def home(request: HttpRequest) -> HttpResponse:
    """The user's worklist (landing page after sign-in)."""
    access = request.access  # type: ignore[attr-defined]
    return render(request, "hepatrial/web/home.html", {
        "role": access.role, "sites": access.sites(),
        "sections": sections(access, today()) if access.role else [],
        "can_screen": access.may("enter_data"),
    })
