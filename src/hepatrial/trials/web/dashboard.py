"""The site dashboard: enrolment over time, the participants × visits matrix coloured by
state, deviations (open queries by age and SDV marks appear when their modules exist)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from hepatrial.trials import selectors_web, services
from hepatrial.trials.web.access import ecrf_view
from hepatrial.trials.web.charts import step_chart
from hepatrial.trials.web.common import optional_module, today

#: cell states of the matrix and their legend, in legend order
STATES: tuple[tuple[str, str], ...] = (
    ("not_due", "not due"),
    ("due", "due (window open)"),
    ("overdue", "overdue (window closed, no date)"),
    ("done", "done"),
    ("missed", "missed / not done"),
)
#: participants per page of the matrix
ROWS_PER_PAGE = 100
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
    from hepatrial.trials.models import Visit

    cells = [c for r in matrix["rows"] for c in r["cells"].values()]
    queries, sdv = optional_module("queries"), optional_module("sdv")
    counts = queries.open_counts([r["participant"].pk for r in matrix["rows"]]) if queries \
        else {}
    marked: set[int] = set()
    if sdv is not None:
        with_marks = selectors_web.visits_with_sdv_marks([c["visit_id"] for c in cells])
        marked = {v.pk for v in Visit.objects.filter(pk__in=with_marks)
                  if sdv.visit_sdv(v).verified}
    for c in cells:
        c["queried"] = counts.get((c["participant_id"], c["visit_id"]), 0) > 0
        c["verified"] = c["visit_id"] in marked


def _cell_rows(matrix: dict[str, Any]) -> list[dict[str, Any]]:
    """The matrix as table rows: per participant the cells in column order (None: no such
    visit), each with its link, text, tooltip and markers (built once, not per template
    lookup: a site of 2,000 participants renders 14,000 cells)."""
    from urllib.parse import quote

    from django.urls import reverse

    pattern = reverse("web:visit", kwargs={"study_id": "S\x00", "code": "C\x00"})
    out = []
    names = {k: label for k, _m, label in MARKERS}
    for r in matrix["rows"]:
        sid = r["participant"].study_id
        cells = []
        for code in matrix["visits"]:
            c = r["cells"].get(code)
            if c is None:
                cells.append(None)
                continue
            d = c["date"]
            cells.append({
                **c, "code": code, "url": pattern.replace(quote("S\x00"), quote(sid)).replace(
                    quote("C\x00"), quote(code)),
                "text": d.strftime("%d %b") if d else "–",
                "title": f"{code}: {c['status']}" + (f" {d.isoformat()}" if d else ""),
                "marks": [(mark, names[k]) for k, mark, _l in MARKERS if c.get(k)],
            })
        out.append({"participant": r["participant"], "cells": cells})
    return out


@ecrf_view("view")
def site_dashboard(request: HttpRequest, code: str) -> HttpResponse:
    """One site: enrolment by month, the matrix, the deviations."""
    access = request.access  # type: ignore[attr-defined]
    site = access.site(code)
    proto = services.active_protocol()
    matrix = selectors_web.site_matrix(proto, site, today())
    counts: dict[str, int] = {}
    for r in matrix["rows"]:
        counts[r["participant"].status] = counts.get(r["participant"].status, 0) + 1
    n_rows = len(matrix["rows"])
    pages = max(1, -(-n_rows // ROWS_PER_PAGE))
    try:
        page = min(max(1, int(request.GET.get("page", "1"))), pages)
    except ValueError:
        page = 1
    matrix["rows"] = matrix["rows"][(page - 1) * ROWS_PER_PAGE: page * ROWS_PER_PAGE]
    _overlay(matrix)
    rows = _cell_rows(matrix)
    queries = optional_module("queries")
    by_age = queries.open_counts_by_age([site.pk], today()) if queries else None
    enrolment = selectors_web.enrolment_by_month([site.pk])
    return render(request, "hepatrial/web/site.html", {
        "site": site, "matrix": matrix, "rows": rows, "page": page, "pages": pages,
        "n_rows": n_rows, "page_range": range(1, pages + 1), "states": STATES, "markers": MARKERS,
        "enrolment": enrolment, "chart": step_chart(enrolment),
        "deviations": selectors_web.deviations([site.pk]),
        "status_counts": sorted(counts.items()), "today": today(),
        "sites": access.sites(), "queries_by_age": by_age,
    })
