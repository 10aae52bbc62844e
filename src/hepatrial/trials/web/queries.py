"""The query pages of the eCRF: the list (the open queries addressed to me, by age; every
query of my sites with filters; open counts by age), a query's thread with answer / close /
re-open, and raising a query on any field of a visit; the worklist section "open queries
addressed to you".

Every write goes through :mod:`hepatrial.trials.services.queries` (rules, permissions, audit);
the role and the site are checked on the server: a query of another site is 404, an action
the role may not take is 403 (``raise_query``: monitor, data manager; ``answer_query``:
coordinator, investigator), a step the rules refuse is shown with its reason (400).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from hepatrial import errors
from hepatrial.trials.models import Query
from hepatrial.trials.services import queries as svc
from hepatrial.trials.web.access import Access, ecrf_view
from hepatrial.trials.web.common import FieldErrors, store_errors, today
from hepatrial.trials.web.worklist import Item, Section, register

__all__ = ["open_queries_section", "query_list", "query_new", "query_thread", "urlpatterns"]

_STATUS_FILTERS = ("not_closed", "open", "answered", "closed", "all")
_FILTER_LABELS = (("not_closed", "not closed"), ("open", "open (waiting for the site)"),
                  ("answered", "answered (waiting for the raiser)"), ("closed", "closed"),
                  ("all", "all"))


def _lookup(access: Access, pk: int) -> Query:
    """A query of a participant the user can see, else 404."""
    q = Query.objects.select_related("participant", "participant__site", "visit", "raised_by",
                                     "closed_by").filter(pk=pk).first()
    if q is None or q.participant.site_id not in access.site_ids:
        raise Http404("no such query")
    return q


def _row(q: Query, on: Any) -> dict[str, Any]:
    return {"q": q, "age": svc.age_days(q, on), "waiting_for": svc.waiting_for(q),
            "label": _target_label(q), "url": reverse("web:query", kwargs={"pk": q.pk})}


def _target_label(q: Query) -> str:
    kind = q.model_label.split(".", 1)[-1]
    where = f"{q.visit.code} " if q.visit_id else ""
    if kind == "labresult":
        return f"{where}lab {q.item}"
    if kind == "clinicalassessment":
        return f"{where}clinical {q.item or q.field_name}"
    return f"{where}{kind} {q.field_name}"


# ---------------------------------------------------------------------- worklist
@register(order=40)
def open_queries_section(access: Access, on: Any) -> Section | None:
    """The queries waiting for the user (the site's open ones; the answered ones a monitor
    or data manager has to close or re-open), oldest first, with their age."""
    if access.role is None or not (access.may("answer_query") or access.may("raise_query")):
        return None
    items = []
    for q in svc.addressed_to(access.user, site_ids=access.site_ids):
        age = svc.age_days(q, on)
        badge, cls = (("to answer", "warn") if q.status == "open" else ("to close", "info"))
        items.append(Item(f"{q.participant.study_id} {_target_label(q)}",
                          reverse("web:query", kwargs={"pk": q.pk}),
                          f"{age} day(s) old · {q.get_origin_display()} · {q.text[:120]}",
                          badge, "bad" if age > 14 else cls))
    return Section("queries", "Open queries addressed to you", items,
                   "No query is waiting for you.")


# ---------------------------------------------------------------------- list
@ecrf_view("view")
def query_list(request: HttpRequest) -> HttpResponse:
    """The queries addressed to me (by age) and every query of my sites (filters: status,
    study id, site, visit), with the open counts by age."""
    access = request.access  # type: ignore[attr-defined]
    on = today()
    status = request.GET.get("status", "not_closed")
    if status not in _STATUS_FILTERS:
        status = "not_closed"
    q_text = request.GET.get("q", "").strip()
    site = request.GET.get("site", "").strip()
    visit = request.GET.get("visit", "").strip()
    qs = svc.queries(site_ids=access.site_ids, status={
        "not_closed": svc.OPEN_STATUSES, "all": None}.get(status, status))
    if q_text:
        qs = qs.filter(participant__study_id__icontains=q_text)
    if site:
        qs = qs.filter(participant__site__code=site)
    if visit:
        qs = qs.filter(visit__code=visit)
    mine = [_row(q, on) for q in svc.addressed_to(access.user, site_ids=access.site_ids)]
    return render(request, "hepatrial/web/queries_list.html", {
        "mine": mine, "rows": [_row(q, on) for q in qs[:500]], "n_rows": qs.count(),
        "status": status, "statuses": _FILTER_LABELS, "q": q_text, "site": site,
        "visit": visit, "sites": access.sites(),
        "by_age": svc.open_counts_by_age(access.site_ids, on),
    })


# ---------------------------------------------------------------------- thread
def _thread_context(request: HttpRequest, q: Query, errs: FieldErrors | None = None,
                    post: Any = None) -> dict[str, Any]:
    access = request.access  # type: ignore[attr-defined]
    user = access.user
    p = q.participant
    auto = q.origin != "manual"
    may_raise = access.may("raise_query", p)
    may_conclude = may_raise and (auto or q.raised_by_id == user.pk)
    history_model = q.model_label.split(".", 1)[-1]
    from hepatrial.trials import selectors_web

    record = svc.target_record(q)
    hist_url = ""
    if record is not None and history_model in selectors_web.HISTORY_MODELS:
        hist_url = reverse("web:history", kwargs={"study_id": p.study_id,
                                                  "model": history_model, "pk": record.pk,
                                                  "field": q.field_name})
    return {
        "query": q, "p": p, "label": _target_label(q),
        "thread": list(q.messages.select_related("author").order_by("at", "pk")),
        "age": svc.age_days(q, today()), "waiting_for": svc.waiting_for(q),
        "value_now": svc.current_value(q), "history_url": hist_url,
        "can_answer": access.may("answer_query", p) and q.status != "closed",
        "can_close": may_conclude and q.status != "closed",
        "can_reopen": may_conclude and q.status != "open",
        "errors": errs or FieldErrors(), "post": post or {},
        "visit_url": reverse("web:visit", kwargs={"study_id": p.study_id,
                                                  "code": q.visit.code}) if q.visit_id else "",
    }


@ecrf_view("view")
def query_thread(request: HttpRequest, pk: int) -> HttpResponse:
    """One query: its target (record, field, value then and now), its thread, and the
    answer / close / re-open forms the user may use."""
    access = request.access  # type: ignore[attr-defined]
    q = _lookup(access, pk)
    return render(request, "hepatrial/web/queries_thread.html", _thread_context(request, q))


def _step(request: HttpRequest, pk: int, action: str, fn: Any, done: str) -> HttpResponse:
    access = request.access  # type: ignore[attr-defined]
    access.require(action)
    q = _lookup(access, pk)
    access.require(action, q.participant)
    text = request.POST.get("text", "")
    try:
        with transaction.atomic():
            fn(q, text=text, user=request.user)
    except errors.PermissionDenied as exc:
        raise PermissionDenied(str(exc)) from None
    except errors.StoreError as exc:
        q.refresh_from_db()
        errs = store_errors(exc, fields={"text": "text", "status": "", "": ""})
        return render(request, "hepatrial/web/queries_thread.html",
                      _thread_context(request, q, errs, request.POST), status=400)
    messages.success(request, f"Query {q.pk} {done}.")
    return redirect("web:query", pk=q.pk)


@require_POST
@ecrf_view("view")
def query_answer(request: HttpRequest, pk: int) -> HttpResponse:
    """The site answers (``answer_query``)."""
    return _step(request, pk, "answer_query", svc.answer_query, "answered")


@require_POST
@ecrf_view("view")
def query_close(request: HttpRequest, pk: int) -> HttpResponse:
    """The raiser (automatic query: a monitor or data manager) closes the query."""
    return _step(request, pk, "raise_query", svc.close_query, "closed")


@require_POST
@ecrf_view("view")
def query_reopen(request: HttpRequest, pk: int) -> HttpResponse:
    """The raiser (automatic query: a monitor or data manager) re-opens the query."""
    return _step(request, pk, "raise_query", svc.reopen_query, "re-opened")


# ---------------------------------------------------------------------- raising
def _targets(p: Any, visit: Any) -> list[dict[str, str]]:
    """Every field of the visit a query may name: ``{value, label, current}``, the value
    being ``model:pk:field:item``."""
    from hepatrial.trials import selectors_web
    from hepatrial.trials.services.protocol import active_protocol
    from hepatrial.trials.validators.clinical import CLINICAL_ITEMS

    items = selectors_web.visit_items(active_protocol(), [visit])[visit.pk]
    out = [{"value": f"visit:{visit.pk}:actual_date:", "label": "Visit date",
            "current": str(visit.actual_date or "")}]
    for code in sorted(items.labs):
        lab = items.labs[code]
        out.append({"value": f"labresult:{lab.pk}:value_as_entered:{code}",
                    "label": f"Lab {code}",
                    "current": f"{lab.value_as_entered} {lab.unit_as_entered}"})
    for code in items.missing:
        if code in selectors_web.CLINICAL_MEASUREMENTS:
            continue
        out.append({"value": f"labresult::value_as_entered:{code}",
                    "label": f"Lab {code} (not entered)", "current": ""})
    c = items.clinical
    if c is not None:
        for name in CLINICAL_ITEMS:
            value = getattr(c, name)
            if value is not None:
                out.append({"value": f"clinicalassessment:{c.pk}:{name}:{name}",
                            "label": f"Clinical {name}", "current": str(value)})
    return out


@ecrf_view("view")
def query_new(request: HttpRequest, study_id: str, code: str) -> HttpResponse:
    """Raise a query on a field of one visit (``raise_query``: monitor, data manager)."""
    access = request.access  # type: ignore[attr-defined]
    access.require("raise_query")
    p = access.participant(study_id)
    visit = access.visit(p, code)
    access.require("raise_query", p)
    targets = _targets(p, visit)
    ctx = {"p": p, "v": visit, "targets": targets, "errors": FieldErrors(), "post": {},
           "open": [_row(q, today()) for q in svc.queries(visit=visit,
                                                           status=svc.OPEN_STATUSES)]}
    if request.method != "POST":
        return render(request, "hepatrial/web/queries_new.html", ctx)
    chosen = request.POST.get("target", "")
    errs = FieldErrors()
    if chosen not in {t["value"] for t in targets}:
        errs.add("target", "choose the field the query is about")
    if errs:
        ctx.update(errors=errs, post=request.POST)
        return render(request, "hepatrial/web/queries_new.html", ctx, status=400)
    model, pk, field, item = chosen.split(":", 3)
    try:
        q = svc.raise_query(participant=p, model=model, object_pk=pk or None, field=field,
                            item=item, visit_code=visit.code, text=request.POST.get("text", ""),
                            user=request.user)
    except errors.PermissionDenied as exc:
        raise PermissionDenied(str(exc)) from None
    except errors.StoreError as exc:
        ctx.update(errors=store_errors(exc, fields={"text": "text", "model": "target",
                                                    "object_pk": "target", "field": "target",
                                                    "item": "target", "visit": "target"}),
                   post=request.POST)
        return render(request, "hepatrial/web/queries_new.html", ctx, status=400)
    messages.success(request, f"Query {q.pk} raised on {_target_label(q)}.")
    return redirect("web:query", pk=q.pk)


P = "participants/<str:study_id>/"
V = P + "visits/<str:code>/"

urlpatterns = [
    path("queries/", query_list, name="queries"),
    path("queries/<int:pk>/", query_thread, name="query"),
    path("queries/<int:pk>/answer/", query_answer, name="query_answer"),
    path("queries/<int:pk>/close/", query_close, name="query_close"),
    path("queries/<int:pk>/reopen/", query_reopen, name="query_reopen"),
    path(V + "queries/new/", query_new, name="query_new"),
]
