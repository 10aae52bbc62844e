"""The source-data verification page of a visit: every entered item of its forms (labs,
clinical) with its state (verified by whom and when / cleared by change seq N / not
verified), the marks with their status, and - for a monitor or data manager
(``verify_source``) - a button per item and per form to mark it verified against source.

Writes go through :func:`hepatrial.trials.services.sdv.verify_source` (rules, permission,
ledger manifest); the states are recomputed from the ledger on every view.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path

from hepatrial import errors, vocab
from hepatrial.trials.services import sdv as svc
from hepatrial.trials.web.access import ecrf_view
from hepatrial.trials.web.common import FieldErrors, store_errors

__all__ = ["sdv_visit", "urlpatterns"]

_FORM_LABELS = dict(vocab.SDV_FORM)
_STATE_LABELS = {"verified": "verified", "partly": "partly verified",
                 "not_verified": "not verified", "empty": "nothing entered"}


def _context(request: HttpRequest, p: Any, visit: Any, errs: FieldErrors | None = None
             ) -> dict[str, Any]:
    access = request.access  # type: ignore[attr-defined]
    state = svc.visit_sdv(visit)
    entered = svc.form_items(visit)
    forms = []
    for code, fs in state.forms.items():
        rows = []
        for i in fs.items:
            row = entered[code][i.item]
            rows.append({"item": i, "value": (f"{row.value_as_entered} {row.unit_as_entered}"
                                              if code == "labs" else getattr(row, i.item))})
        forms.append({"code": code, "label": _FORM_LABELS[code], "state": fs.state,
                      "state_label": _STATE_LABELS[fs.state],
                      "n_verified": fs.n_verified, "n_items": len(fs.items), "rows": rows,
                      "marks": fs.marks})
    return {"p": p, "v": visit, "forms": forms, "verified": state.verified,
            "can_verify": access.may("verify_source", p) and visit.status in (
                "in_window", "early", "late"),
            "errors": errs or FieldErrors()}


@ecrf_view("view")
def sdv_visit(request: HttpRequest, study_id: str, code: str) -> HttpResponse:
    """GET: the SDV state of the visit's forms; POST (``verify_source``): mark an item
    (``target=labs:bilirubin``) or a whole form (``target=labs:``) verified."""
    access = request.access  # type: ignore[attr-defined]
    if request.method == "POST":
        access.require("verify_source")
    p = access.participant(study_id)
    visit = access.visit(p, code)
    if request.method != "POST":
        return render(request, "hepatrial/web/sdv_visit.html", _context(request, p, visit))
    access.require("verify_source", p)
    form, _sep, item = str(request.POST.get("target", "")).partition(":")
    try:
        mark = svc.verify_source(participant=p, visit_code=visit.code, form=form, item=item,
                                 note=request.POST.get("note", ""), user=request.user)
    except errors.PermissionDenied as exc:
        raise PermissionDenied(str(exc)) from None
    except errors.StoreError as exc:
        errs = store_errors(exc, fields={"form": "", "item": "", "visit": ""})
        return render(request, "hepatrial/web/sdv_visit.html",
                      _context(request, p, visit, errs), status=400)
    what = f"{_FORM_LABELS[mark.form]}: {mark.item}" if mark.item else (
        f"{_FORM_LABELS[mark.form]} (whole form)")
    messages.success(request, f"{p.study_id} {visit.code} {what} verified against source.")
    return redirect("web:sdv", study_id=p.study_id, code=visit.code)


P = "participants/<str:study_id>/"
V = P + "visits/<str:code>/"

urlpatterns = [
    path(V + "sdv/", sdv_visit, name="sdv"),
]
