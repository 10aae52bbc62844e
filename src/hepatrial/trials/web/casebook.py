"""The participant list and the participant casebook (header, MELD trajectory, visit schedule
with window dates, each visit's forms and their status, deviations, status actions), and the
history of any field (who, when, old -> new, why) one click away."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from hepatrial import vocab
from hepatrial.trials import selectors_web, services
from hepatrial.trials.web.access import ecrf_view
from hepatrial.trials.web.charts import sparkline
from hepatrial.trials.web.common import (
    STATUS_ACTIONS,
    FieldErrors,
    hx,
    optional_module,
    today,
)


@ecrf_view("view")
def participant_list(request: HttpRequest) -> HttpResponse:
    """The participants the user can see; search by study id, filter by site and status
    (only the user's sites exist: a filter on another site finds nothing)."""
    access = request.access  # type: ignore[attr-defined]
    q = request.GET.get("q", "")
    site = request.GET.get("site", "")
    st = request.GET.get("status", "")
    rows = selectors_web.participants(access.site_ids, q=q, site_code=site, status=st)
    return render(request, "hepatrial/web/participants.html", {
        "rows": rows, "q": q, "site": site, "status": st, "sites": access.sites(),
        "statuses": vocab.PARTICIPANT_STATUS, "can_screen": access.may("enter_data"),
    })


def casebook_context(request: HttpRequest, p: Any) -> dict[str, Any]:
    """Everything the casebook page shows of participant ``p``."""
    access = request.access  # type: ignore[attr-defined]
    proto = services.active_protocol()
    variant = proto.analysis.meld_variant
    locks = selectors_web.active_locks_by_visit([p.pk])
    signatures = selectors_web.valid_signatures([p.pk])
    rows = selectors_web.visit_rows(proto, p, today(), locks=locks, signatures=signatures)
    trajectory = selectors_web.meld_trajectory(p, variant, visit_rows=rows)
    spark = sparkline([(r["day"], r["value"], r["visit"]) for r in trajectory],
                      label=f"MELD ({variant}) by study day")
    queries = optional_module("queries")
    counts = queries.open_counts([p.pk]) if queries is not None else {}
    for r in rows:
        r["open_queries"] = counts.get((p.pk, r["visit"].pk), 0)
    sigs = signatures.get((p.pk, None), [])
    trial_locked, locked_p, _v = locks
    return {
        "p": p, "proto": proto, "meld_variant": variant, "trajectory": trajectory,
        "sparkline": spark, "visits": rows,
        "consents": selectors_web.consents(p),
        "assessment": selectors_web.latest_assessment(p),
        "deviations": selectors_web.deviations(access.site_ids, participant=p),
        "casebook_signatures": sigs,
        "casebook_locked": trial_locked or p.pk in locked_p,
        "can_enter": access.may("enter_data", p),
        "status_actions": STATUS_ACTIONS, "today": today(),
    }


def casebook_response(request: HttpRequest, p: Any, *, status_errors: FieldErrors | None = None,
                      status: int = 200) -> HttpResponse:
    """The casebook page (with the errors of a refused status change)."""
    ctx = casebook_context(request, p)
    ctx["status_errors"] = status_errors or FieldErrors()
    ctx["status_post"] = request.POST if request.method == "POST" else {}
    return render(request, "hepatrial/web/casebook.html", ctx, status=status)


@ecrf_view("view")
def casebook(request: HttpRequest, study_id: str) -> HttpResponse:
    """A participant's casebook."""
    p = request.access.participant(study_id)  # type: ignore[attr-defined]
    return casebook_response(request, p)


@ecrf_view("view")
def field_history(request: HttpRequest, study_id: str, model: str, pk: int, field: str
                  ) -> HttpResponse:
    """The history of one field of one record of the participant: every value with who,
    when and the reason (a page, or the fragment an htmx click shows beside the field)."""
    p = request.access.participant(study_id)  # type: ignore[attr-defined]
    if model not in selectors_web.HISTORY_MODELS:
        raise Http404("no such record")
    cls, _att = selectors_web.HISTORY_MODELS[model]
    if selectors_web.history_owner(model, pk) != p.pk:
        raise Http404("no such record")
    try:
        f = cls._meta.get_field(field)
    except Exception:  # FieldDoesNotExist
        raise Http404("no such field") from None
    if f.is_relation and not f.many_to_one:
        raise Http404("no such field")
    rows = selectors_web.field_history(model, pk, field)
    ctx = {"p": p, "model": model, "pk": pk, "field": field,
           "label": getattr(f, "verbose_name", field), "rows": rows}
    template = "hepatrial/web/_history.html" if hx(request) else "hepatrial/web/history.html"
    return render(request, template, ctx)
