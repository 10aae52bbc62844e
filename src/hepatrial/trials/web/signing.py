"""Signing and locking pages of the eCRF, through the store's e-signatures and locks
(:mod:`hepatrial.trials.services.signing`).

* **Sign** a visit or a casebook (``sign``: an investigator of the participant's site): the
  page lists what the signature covers, shows the meaning the signer states (21 CFR 11.50,
  e.g. "I reviewed and approve these data") and asks for the password again (11.200(a)); a
  wrong one is refused and counted (5 in a row deactivate the account). Every signature is
  shown with its status recomputed from the ledger: *valid*, or *invalidated by change seq N*
  once a signed record changed.
* **Lock / unlock** a visit or a casebook (``lock``/``unlock``: data manager, admin), each with
  a reason. A locked form says so on every page and the store refuses every write to it
  (:mod:`hepatrial.trials.audit.locks`), whatever the page or path.

The worklist's "waiting for your signature" section lists the visits to sign
(``web.worklist.signatures_section``); its items open the visit, whose signatures page is
linked from every page of the visit (``sign_nav.html``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from hepatrial import errors
from hepatrial.trials.audit import locks as _locks
from hepatrial.trials.models import ClinicalAssessment, LabResult, Lock
from hepatrial.trials.services import signing as svc
from hepatrial.trials.web.access import Access, ecrf_view
from hepatrial.trials.web.common import FieldErrors, store_errors
from hepatrial.trials.web.worklist import Item, Section, register

__all__ = [
    "ENDED",
    "MEANINGS",
    "casebooks_to_sign",
    "lock_casebook",
    "lock_visit",
    "sign_casebook",
    "sign_visit",
    "unlock_casebook",
    "unlock_visit",
    "urlpatterns",
]

#: the meanings an investigator may state when signing (21 CFR 11.50(a)(3))
MEANINGS: tuple[str, ...] = (
    "I reviewed and approve these data",
    "I confirm these data are accurate and complete as recorded in the source documents",
)
#: participant statuses that end the participation: the casebook is ready for signing
ENDED = ("completed", "withdrawn", "died", "transplanted")


def _signatures(p: Any, visit: Any) -> list[dict[str, Any]]:
    out = []
    for s, st in svc.signatures(p):
        if (visit is None and s.level != "participant") or (
                visit is not None and s.visit_id != visit.pk):
            continue
        out.append({"s": s, "status": st, "valid": st.valid})
    return out


def _active(p: Any, visit: Any) -> Any:
    """The active lock covering the visit's (or casebook's) records, or None."""
    return _locks.active_lock([p.pk], [visit.pk] if visit is not None else [])


def _own_lock(p: Any, visit: Any) -> Any:
    """The active lock of exactly this target (visit, or casebook), or None."""
    qs = Lock.objects.filter(unlocked_at__isnull=True, participant=p)
    qs = qs.filter(level="visit", visit=visit) if visit is not None else qs.filter(
        level="participant")
    return qs.select_related("locked_by").first()


def _lock_history(p: Any, visit: Any) -> list[Any]:
    qs = Lock.objects.filter(participant=p).select_related("locked_by", "unlocked_by")
    qs = qs.filter(level="visit", visit=visit) if visit is not None else qs.filter(
        level="participant")
    return list(qs.order_by("-locked_at", "-pk"))


def _covered(p: Any, visit: Any) -> list[dict[str, Any]]:
    """What a signature of the visit (or the casebook) covers, for the signer to read."""
    rows = []
    visits = [visit] if visit is not None else list(p.visits.order_by("nominal_day", "code"))
    for v in visits:
        labs = [f"{lab.analyte} {lab.value_as_entered} {lab.unit_as_entered}"
                for lab in LabResult.objects.filter(visit=v).order_by("analyte")]
        c = ClinicalAssessment.objects.filter(visit=v).first()
        rows.append({"v": v, "labs": labs, "clinical": c})
    return rows


def _context(request: HttpRequest, p: Any, visit: Any, *, errs: FieldErrors | None = None,
             post: Any = None) -> dict[str, Any]:
    access = request.access  # type: ignore[attr-defined]
    active = _active(p, visit)
    own = _own_lock(p, visit)
    signable = visit is None or visit.status != "scheduled"
    return {
        "p": p, "v": visit, "level": "visit" if visit is not None else "participant",
        "signatures": _signatures(p, visit), "covered": _covered(p, visit),
        "meanings": MEANINGS, "active_lock": active,
        "active_lock_text": _locks.describe_lock(active) if active is not None else "",
        "own_lock": own, "locks": _lock_history(p, visit),
        "can_sign": access.may("sign", p) and signable,
        "signable": signable,
        "can_lock": access.may("lock", p) and own is None,
        "can_unlock": access.may("unlock", p) and own is not None,
        "errors": errs or FieldErrors(), "post": post or {},
        "sign_url": reverse("web:sign_visit", kwargs={"study_id": p.study_id,
                                                      "code": visit.code})
        if visit is not None else reverse("web:sign_casebook",
                                          kwargs={"study_id": p.study_id}),
    }


def _target(request: HttpRequest, study_id: str, code: str | None, action: str | None
            ) -> tuple[Any, Any]:
    """The participant and visit (None: the casebook) the user may see; ``action`` is
    checked first (403 before 404, whatever the site)."""
    access = request.access  # type: ignore[attr-defined]
    if action is not None:
        access.require(action)
    p = access.participant(study_id)
    visit = access.visit(p, code) if code is not None else None
    if action is not None:
        access.require(action, p)
    return p, visit


def _redirect(name: str, p: Any, visit: Any) -> HttpResponse:
    if visit is not None:
        return redirect(f"web:{name}_visit", study_id=p.study_id, code=visit.code)
    return redirect(f"web:{name}_casebook", study_id=p.study_id)


# ---------------------------------------------------------------------- worklist
@register(order=35)
def casebooks_to_sign(access: Access, on: Any) -> Section | None:
    """For an investigator: the casebooks of participants whose participation ended
    (completed, withdrawn, died, transplanted) without a valid casebook signature."""
    if not access.may("sign"):
        return None
    from hepatrial.trials import selectors_web
    from hepatrial.trials.models import Participant

    ended = list(Participant.objects.filter(site_id__in=access.site_ids, status__in=ENDED)
                 .order_by("study_id"))
    signed = selectors_web.valid_signatures([p.pk for p in ended])
    items = [Item(f"{p.study_id} casebook", reverse("web:sign_casebook",
                                                    kwargs={"study_id": p.study_id}),
                  f"{p.status} on {p.status_date}", "to sign", "info")
             for p in ended if not signed.get((p.pk, None))]
    return Section("casebooks", "Casebooks waiting for your signature", items,
                   "No ended participation is waiting for your casebook signature.")


# ---------------------------------------------------------------------- signing
def _sign(request: HttpRequest, study_id: str, code: str | None) -> HttpResponse:
    post = request.method == "POST"
    p, visit = _target(request, study_id, code, "sign" if post else None)
    if not post:
        return render(request, "hepatrial/web/sign_page.html", _context(request, p, visit))
    meaning = str(request.POST.get("meaning", "")).strip()
    password = request.POST.get("password", "")
    errs = FieldErrors()
    if meaning not in MEANINGS:
        errs.add("meaning", "choose the meaning of your signature")
    if not password:
        errs.add("password", "enter your password to sign (it is checked again for every "
                             "signature)")
    if not errs:
        try:
            sig = svc.sign(level="visit" if visit is not None else "participant",
                           participant=p, visit_code=visit.code if visit is not None else None,
                           meaning=meaning, user=request.user, password=password)
        except errors.PermissionDenied as exc:
            raise PermissionDenied(str(exc)) from None
        except errors.AuthenticationFailed as exc:
            errs.add("password", str(exc))
        except errors.StoreError as exc:
            errs = store_errors(exc)
        else:
            what = f"visit {visit.code}" if visit is not None else "casebook"
            messages.success(request, f"{p.study_id} {what} signed by {sig.printed_name} "
                             f"({sig.meaning}) at {sig.signed_at:%Y-%m-%d %H:%M:%S} UTC.")
            return _redirect("sign", p, visit)
    return render(request, "hepatrial/web/sign_page.html",
                  _context(request, p, visit, errs=errs, post={"meaning": meaning}),
                  status=400)


@ecrf_view("view")
def sign_visit(request: HttpRequest, study_id: str, code: str) -> HttpResponse:
    """A visit's signatures (GET) and signing it (POST, ``sign``; password re-entered)."""
    return _sign(request, study_id, code)


@ecrf_view("view")
def sign_casebook(request: HttpRequest, study_id: str) -> HttpResponse:
    """The casebook's signatures (GET) and signing it (POST, ``sign``)."""
    return _sign(request, study_id, None)


# ---------------------------------------------------------------------- locking
def _lock(request: HttpRequest, study_id: str, code: str | None) -> HttpResponse:
    post = request.method == "POST"
    p, visit = _target(request, study_id, code, "lock" if post else None)
    if not post:
        return render(request, "hepatrial/web/lock_page.html", _context(request, p, visit))
    reason = str(request.POST.get("reason", "")).strip()
    errs = FieldErrors()
    if not reason:
        errs.add("reason", "say why the data are locked (e.g. monitoring complete, queries "
                           "closed)")
    else:
        try:
            svc.lock(level="visit" if visit is not None else "participant", participant=p,
                     visit_code=visit.code if visit is not None else None,
                     user=request.user, reason=reason)
        except errors.PermissionDenied as exc:
            raise PermissionDenied(str(exc)) from None
        except errors.StoreError as exc:
            errs = store_errors(exc)
        else:
            what = f"visit {visit.code}" if visit is not None else "casebook"
            messages.success(request, f"{p.study_id} {what} locked: {reason}")
            return _redirect("lock", p, visit)
    return render(request, "hepatrial/web/lock_page.html",
                  _context(request, p, visit, errs=errs, post=request.POST), status=400)


def _unlock(request: HttpRequest, study_id: str, code: str | None) -> HttpResponse:
    p, visit = _target(request, study_id, code, "unlock")
    reason = str(request.POST.get("reason", "")).strip()
    try:
        svc.unlock(level="visit" if visit is not None else "participant", participant=p,
                   visit_code=visit.code if visit is not None else None, user=request.user,
                   reason=reason)
    except errors.PermissionDenied as exc:
        raise PermissionDenied(str(exc)) from None
    except (errors.StoreError, errors.NotFoundError) as exc:
        errs = FieldErrors()
        if isinstance(exc, errors.ChangeReasonRequired):
            errs.add("unlock-reason", "say why the data are unlocked (it is kept in the audit "
                                      "trail)")
        else:
            errs.add(None, str(exc))
        return render(request, "hepatrial/web/lock_page.html",
                      _context(request, p, visit, errs=errs, post=request.POST), status=400)
    what = f"visit {visit.code}" if visit is not None else "casebook"
    messages.success(request, f"{p.study_id} {what} unlocked: {reason}")
    return _redirect("lock", p, visit)


@ecrf_view("view")
def lock_visit(request: HttpRequest, study_id: str, code: str) -> HttpResponse:
    """A visit's lock state and history (GET) and locking it with a reason (POST, ``lock``)."""
    return _lock(request, study_id, code)


@ecrf_view("view")
def lock_casebook(request: HttpRequest, study_id: str) -> HttpResponse:
    """The casebook's lock state (GET) and locking it with a reason (POST, ``lock``)."""
    return _lock(request, study_id, None)


@require_POST
@ecrf_view("view")
def unlock_visit(request: HttpRequest, study_id: str, code: str) -> HttpResponse:
    """Unlock a visit with a reason (POST, ``unlock``)."""
    return _unlock(request, study_id, code)


@require_POST
@ecrf_view("view")
def unlock_casebook(request: HttpRequest, study_id: str) -> HttpResponse:
    """Unlock a casebook with a reason (POST, ``unlock``)."""
    return _unlock(request, study_id, None)


P = "participants/<str:study_id>/"
V = P + "visits/<str:code>/"

urlpatterns = [
    path(V + "sign/", sign_visit, name="sign_visit"),
    path(P + "sign/", sign_casebook, name="sign_casebook"),
    path(V + "lock/", lock_visit, name="lock_visit"),
    path(V + "unlock/", unlock_visit, name="unlock_visit"),
    path(P + "lock/", lock_casebook, name="lock_casebook"),
    path(P + "unlock/", unlock_casebook, name="unlock_casebook"),
]
