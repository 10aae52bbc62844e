"""The site dashboard: enrolment over time, the participants × visits matrix coloured by
state, deviations (open queries by age and SDV marks appear when their modules exist)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from hepatrial.trials import selectors_web, services
from hepatrial.trials.web.access import ecrf_view
from hepatrial.trials.web.charts import step_chart
from hepatrial.trials.web.common import today

#: cell states of the matrix and their legend, in legend order
STATES: tuple[tuple[str, str], ...] = (
    ("not_due", "not due"),
    ("due", "due (window open)"),
    ("overdue", "overdue (window closed, no date)"),
    ("done", "done"),
    ("missed", "missed / not done"),
)
#: markers a cell may carry besides its state
MARKERS: tuple[tuple[str, str, str], ...] = (
    ("signed", "S", "signed by the investigator (signature valid)"),
    ("locked", "L", "locked"),
    ("queried", "Q", "open query"),
    ("verified", "V", "source data verified"),
)


@ecrf_view("view")
def site_list(request: HttpRequest) -> HttpResponse:
    """The sites the user acts on (one site: straight to its dashboard)."""
    sites = request.access.sites()  # type: ignore[attr-defined]
    if len(sites) == 1:
        return redirect("web:site", code=sites[0].code)
    rows = selectors_web.site_counts(sites)
    return render(request, "hepatrial/web/sites.html", {"rows": rows})


def _overlay(matrix: dict[str, Any]) -> None:
    """Mark cells ``queried`` (a query not closed on the visit) and ``verified`` (every entered
    item verified against source) when the query and SDV services are installed."""
    from hepatrial.trials.web.common import optional_module

    cells = [c for r in matrix["rows"] for c in r["cells"].values()]
    queries, sdv = optional_module("queries"), optional_module("sdv")
    counts = queries.open_counts([r["participant"].pk for r in matrix["rows"]]) if queries \
        else {}
    marked: set[int] = set()
    if sdv is not None:
        with_marks = selectors_web.visits_with_sdv_marks([c["visit"].pk for c in cells])
        marked = {c["visit"].pk for c in cells
                  if c["visit"].pk in with_marks and sdv.visit_sdv(c["visit"]).verified}
    for c in cells:
        v = c["visit"]
        c["queried"] = counts.get((v.participant_id, v.pk), 0) > 0
        c["verified"] = v.pk in marked


@ecrf_view("view")
def site_dashboard(request: HttpRequest, code: str) -> HttpResponse:
    """One site: enrolment by month, the matrix, the deviations."""
    access = request.access  # type: ignore[attr-defined]
    site = access.site(code)
    proto = services.active_protocol()
    matrix = selectors_web.site_matrix(proto, site, today())
    _overlay(matrix)
    from hepatrial.trials.web.common import optional_module

    queries = optional_module("queries")
    by_age = queries.open_counts_by_age([site.pk], today()) if queries else None
    enrolment = selectors_web.enrolment_by_month([site.pk])
    counts: dict[str, int] = {}
    for r in matrix["rows"]:
        counts[r["participant"].status] = counts.get(r["participant"].status, 0) + 1
    return render(request, "hepatrial/web/site.html", {
        "site": site, "matrix": matrix, "states": STATES, "markers": MARKERS,
        "enrolment": enrolment, "chart": step_chart(enrolment),
        "deviations": selectors_web.deviations([site.pk]),
        "status_counts": sorted(counts.items()), "today": today(),
        "sites": access.sites(), "queries_by_age": by_age,
    })
