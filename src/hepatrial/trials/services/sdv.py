"""Source-data verification (SDV): a monitor marks items or whole forms of a visit verified
against the source documents; a later change of a verified value clears the mark.

ICH E6(R3) 3.11.4 (monitoring: source data verification) and 21 CFR 11.10(e) (an attributable,
time-stamped record). A mark (:class:`~hepatrial.trials.models.SourceVerification`) is an
audited record naming, like an e-signature (:mod:`hepatrial.trials.audit.signatures`), the
ledger entry and digest of every row it verified, and the ledger head then. Its status is
recomputed from the ledger, never stored (:func:`status`):

* ``verified`` — nothing verified changed since;
* ``cleared by change seq N`` — N is the first ledger entry after the mark that changed a
  verified value: for a lab result any change of the row (value, unit, laboratory, specimen
  date) or its deletion; for a clinical item a change of that item's value; for a whole form
  also a row added to the form (a new lab result of the visit);
* ``altered`` — the mark's own manifest no longer matches its digest or the ledger (an edit
  behind the application's back; ``hepatrial audit verify`` reports it too).

The forms of a visit are its lab results (``labs``, items: the analytes) and its clinical
assessment (``clinical``, items: the fields of
:data:`hepatrial.trials.validators.clinical.CLINICAL_ITEMS`). The rules of a new mark are
:func:`hepatrial.trials.validators.sdv.validate_sdv`; who may mark is ``verify_source`` in the
role matrix (monitor, data manager).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from hepatrial.errors import AuditIntegrityError
from hepatrial.trials.audit.chain import _canon, _dumps, head, lock_ledger
from hepatrial.trials.models import (
    AuditLedger,
    ClinicalAssessment,
    LabResult,
    Participant,
    SourceVerification,
    Visit,
)
from hepatrial.trials.services._common import _participant, _visit
from hepatrial.trials.services.accounts import acting_user
from hepatrial.trials.services.permissions import require_permission, role_of
from hepatrial.trials.validators.clinical import CLINICAL_ITEMS
from hepatrial.trials.validators.sdv import FORMS, validate_sdv

__all__ = [
    "FORMS",
    "FormSdv",
    "ItemSdv",
    "SdvStatus",
    "VisitSdv",
    "form_items",
    "manifest_digest",
    "marks",
    "status",
    "verify_source",
    "visit_sdv",
]

_LAB = "trials.labresult"
_CLINICAL = "trials.clinicalassessment"
_MODELS: dict[str, type[models.Model]] = {_LAB: LabResult, _CLINICAL: ClinicalAssessment}


def _hlabel(label: str) -> str:
    return _MODELS[label].history.model._meta.label_lower


def _canon_text(value: Any) -> str:
    return _dumps(_canon(value))


def manifest_digest(manifest: Iterable[Iterable[Any]]) -> str:
    """Pure: sha256 of the manifest's canonical JSON."""
    text = _dumps(_canon([list(e) for e in manifest]))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------- the items of a form
def form_items(visit: Visit) -> dict[str, dict[str, Any]]:
    """``{form: {item: row}}`` of what is entered now: ``labs`` → analyte → lab result,
    ``clinical`` → item → clinical assessment (items with a value)."""
    labs = {lab.analyte: lab for lab in LabResult.objects.filter(visit=visit).order_by(
        "analyte", "pk")}
    c = ClinicalAssessment.objects.filter(visit=visit).first()
    clinical = {} if c is None else {k: c for k in CLINICAL_ITEMS if getattr(c, k) is not None}
    return {"labs": labs, "clinical": clinical}


def _known(form: str) -> list[str]:
    from hepatrial.protocol import analytes

    return sorted(analytes.ANALYTES) if form == "labs" else list(CLINICAL_ITEMS)


def _latest(label: str, pks: Iterable[int]) -> dict[str, tuple[int, str]]:
    """``object pk -> (seq, digest)`` of each row's last ledger entry."""
    out: dict[str, tuple[int, str]] = {}
    for opk, seq, digest in AuditLedger.objects.filter(
            history_model=_hlabel(label), object_pk__in=[str(p) for p in pks]
    ).order_by("seq").values_list("object_pk", "seq", "digest"):
        out[opk] = (int(seq), str(digest))
    return out


def _manifest(form: str, item: str, entered: dict[str, dict[str, Any]]) -> list[list[Any]]:
    """``[[model label, pk, seq, digest, item, field, value], ...]`` of what a new mark
    verifies (``field`` empty: the whole row)."""
    rows = entered[form]
    label = _LAB if form == "labs" else _CLINICAL
    chosen = {item: rows[item]} if item else rows
    latest = _latest(label, {r.pk for r in chosen.values()})
    out: list[list[Any]] = []
    for name, row in sorted(chosen.items()):
        entry = latest.get(str(row.pk))
        if entry is None:
            raise AuditIntegrityError(f"{label} {row.pk} has no entry in the audit ledger; run "
                                      "`hepatrial audit verify` before verifying it")
        seq, digest = entry
        if form == "labs":
            out.append([label, row.pk, seq, digest, name, "", ""])
        else:
            out.append([label, row.pk, seq, digest, name, name,
                        _canon_text(getattr(row, name))])
    if form == "clinical" and not item and chosen:
        row = next(iter(chosen.values()))
        seq, digest = latest[str(row.pk)]
        out.append([label, row.pk, seq, digest, "", "", ""])
    out.sort(key=lambda e: (e[0], e[1], e[4], e[5]))
    return out


# ---------------------------------------------------------------------- status
@dataclass(frozen=True)
class SdvStatus:
    """``verified``, ``cleared`` (``change_seq``: the first ledger entry that changed a
    verified value) or ``altered`` (the mark's manifest no longer matches)."""

    state: str
    change_seq: int | None = None
    detail: str = ""

    @property
    def verified(self) -> bool:
        """True while nothing verified changed."""
        return self.state == "verified"

    def __str__(self) -> str:
        if self.state == "cleared":
            return f"cleared by change seq {self.change_seq}"
        if self.state == "altered":
            return f"altered: {self.detail}"
        return "verified"


class _Changes:
    """The first change after a ledger seq, per row and per field, read once per row."""

    def __init__(self, after: int) -> None:
        self.after = after
        self._entries: dict[tuple[str, str], list[tuple[int, int, str]]] = {}

    def load(self, label: str, pks: Iterable[str]) -> None:
        want = sorted({p for p in pks if (label, p) not in self._entries})
        if not want:
            return
        for p in want:
            self._entries[(label, p)] = []
        for opk, seq, hpk, htype in AuditLedger.objects.filter(
                history_model=_hlabel(label), object_pk__in=want, seq__gt=self.after
        ).order_by("seq").values_list("object_pk", "seq", "history_pk", "history_type"):
            self._entries[(label, opk)].append((int(seq), int(hpk), str(htype)))

    def first(self, label: str, pk: str, fld: str = "", value: str = "") -> int | None:
        """First seq after ``after`` changing row ``pk`` (``fld``: changing that field away
        from ``value``, or deleting the row)."""
        self.load(label, [pk])
        entries = self._entries[(label, pk)]
        if not entries:
            return None
        if not fld:
            return entries[0][0]
        hist = _MODELS[label].history.model
        rows = {h.pk: h for h in hist.objects.filter(pk__in=[e[1] for e in entries])}
        for seq, hpk, htype in entries:
            h = rows.get(hpk)
            if htype == "-" or h is None or _canon_text(getattr(h, fld)) != value:
                return seq
        return None


def _check_manifest(mark: SourceVerification) -> str | None:
    """Why the manifest does not match its digest or the ledger (None when it does)."""
    manifest = mark.manifest or []
    if manifest_digest(manifest) != mark.manifest_digest:
        return "the manifest does not match its digest"
    seqs = sorted({int(e[2]) for e in manifest})
    found = {int(s): (h, o, d) for s, h, o, d in AuditLedger.objects.filter(
        seq__in=seqs).values_list("seq", "history_model", "object_pk", "digest")}
    for e in manifest:
        label, pk, seq, digest = e[0], e[1], int(e[2]), e[3]
        if label not in _MODELS or found.get(seq) != (_hlabel(label), str(pk), digest):
            return f"manifest entry {label} {pk} is not ledger #{seq}"
    return None


def _added_rows(mark: SourceVerification, changes: _Changes) -> int | None:
    """For a whole-form mark: the first entry of a row of the form not in the manifest."""
    if mark.item:
        return None
    label = _LAB if mark.form == "labs" else _CLINICAL
    model = _MODELS[label]
    listed = {str(e[1]) for e in mark.manifest if e[0] == label}
    now = {str(p) for p in model._base_manager.filter(visit_id=mark.visit_id).values_list(
        "pk", flat=True)}
    firsts = [changes.first(label, p) for p in sorted(now - listed)]
    seqs = [s for s in firsts if s is not None]
    return min(seqs) if seqs else None


def status(mark: SourceVerification) -> SdvStatus:
    """Recompute a mark's status from the ledger (see the module docstring)."""
    why = _check_manifest(mark)
    if why is not None:
        return SdvStatus("altered", detail=why)
    changes = _Changes(int(mark.ledger_seq))
    for label in _MODELS:
        changes.load(label, [str(e[1]) for e in mark.manifest if e[0] == label])
    seqs = [changes.first(e[0], str(e[1]), e[5], e[6]) for e in mark.manifest
            if mark.form != "clinical" or mark.item or e[5] == ""]
    seqs.append(_added_rows(mark, changes))
    found = [s for s in seqs if s is not None]
    if found:
        return SdvStatus("cleared", change_seq=min(found))
    return SdvStatus("verified")


# ---------------------------------------------------------------------- a visit's SDV state
@dataclass
class ItemSdv:
    """The SDV state of one entered item: ``verified`` / ``cleared`` / ``not_verified``, with
    the newest mark that covers it."""

    form: str
    item: str
    state: str
    mark: SourceVerification | None = None
    change_seq: int | None = None

    def __str__(self) -> str:
        if self.state == "verified" and self.mark is not None:
            return (f"verified by {self.mark.verified_by.get_username()} "
                    f"{self.mark.verified_at:%Y-%m-%d %H:%M} UTC")
        if self.state == "cleared":
            return f"cleared by change seq {self.change_seq}"
        return "not verified"


@dataclass
class FormSdv:
    """A form's SDV state: how many entered items are verified, and its marks."""

    form: str
    items: list[ItemSdv] = field(default_factory=list)
    marks: list[tuple[SourceVerification, SdvStatus]] = field(default_factory=list)

    @property
    def n_verified(self) -> int:
        """Entered items verified now."""
        return sum(i.state == "verified" for i in self.items)

    @property
    def state(self) -> str:
        """``verified`` (every entered item), ``partly``, ``not_verified`` or ``empty``."""
        if not self.items:
            return "empty"
        if self.n_verified == len(self.items):
            return "verified"
        return "partly" if self.n_verified or any(i.state == "cleared" for i in self.items) \
            else "not_verified"


@dataclass
class VisitSdv:
    """Every form of a visit."""

    visit: Visit
    forms: dict[str, FormSdv]

    @property
    def verified(self) -> bool:
        """True when every entered item of every form is verified (and something is)."""
        entered = [f for f in self.forms.values() if f.items]
        return bool(entered) and all(f.state == "verified" for f in entered)


def marks(visit: Visit) -> list[SourceVerification]:
    """The visit's marks, newest first."""
    return list(SourceVerification.objects.filter(visit=visit).select_related(
        "verified_by").order_by("-verified_at", "-pk"))


def _item_state(mark: SourceVerification, form: str, item: str, row: Any,
                changes: _Changes) -> tuple[bool, int | None]:
    """``(covers, first change)`` of ``mark`` for one entered item."""
    entries = [e for e in mark.manifest if e[4] == item]
    if not entries:
        return False, None
    seqs = [changes.first(e[0], str(e[1]), e[5], e[6]) for e in entries]
    if all(str(e[1]) != str(row.pk) for e in entries):  # the item's row is another one now
        label = _LAB if form == "labs" else _CLINICAL
        seqs.append(changes.first(label, str(row.pk)))
    found = [s for s in seqs if s is not None]
    return True, (min(found) if found else None)


def visit_sdv(visit: Visit) -> VisitSdv:
    """The SDV state of every entered item of the visit's forms (recomputed from the ledger)."""
    entered = form_items(visit)
    all_marks = marks(visit)
    by_mark: dict[int, _Changes] = {}
    forms: dict[str, FormSdv] = {}
    for form in FORMS:
        fs = FormSdv(form)
        fmarks = [m for m in all_marks if m.form == form]
        fs.marks = [(m, status(m)) for m in fmarks]
        for item, row in sorted(entered[form].items()):
            state = ItemSdv(form, item, "not_verified")
            for m in fmarks:  # newest first: the newest mark covering the item decides
                ch = by_mark.setdefault(m.pk, _Changes(int(m.ledger_seq)))
                covers, seq = _item_state(m, form, item, row, ch)
                if covers:
                    state = ItemSdv(form, item, "verified" if seq is None else "cleared", m,
                                    seq)
                    break
            fs.items.append(state)
        forms[form] = fs
    return VisitSdv(visit, forms)


# ---------------------------------------------------------------------- marking
def verify_source(
    *,
    participant: Participant | str,
    visit_code: str,
    form: str,
    item: str = "",
    note: str = "",
    user: Any,
) -> SourceVerification:
    """Mark ``item`` (an analyte, a clinical item) or, with ``item`` empty, the whole ``form``
    (``labs``, ``clinical``) of a visit verified against source (``verify_source``: monitor,
    data manager of the participant's site; a named person). One transaction under the
    ledger lock; raises :class:`~hepatrial.trials.validators.RuleViolation` for an unmet
    rule (:func:`hepatrial.trials.validators.sdv.validate_sdv`)."""
    acting = acting_user(user)
    p = _participant(participant)
    require_permission(acting, "verify_source", p)
    v = _visit(p, visit_code)
    item = str(item or "").strip()
    form = str(form or "").strip()
    with transaction.atomic():
        lock_ledger()
        v = Visit.objects.get(pk=v.pk)
        entered = form_items(v) if form in FORMS else {}
        already = None
        if form in FORMS:
            if item and item in entered[form]:
                st = visit_sdv(v).forms[form]
                hit = next((i for i in st.items if i.item == item), None)
                if hit is not None and hit.state == "verified":
                    already = str(hit)
            elif not item:
                newest = next((m for m in marks(v) if m.form == form and not m.item), None)
                if newest is not None and status(newest).verified:
                    already = (f"by {newest.verified_by.get_username()} "
                               f"{newest.verified_at:%Y-%m-%d %H:%M} UTC")
        validate_sdv(
            record=f"participant {p} visit {v.code} {form or 'form'}"
                   + (f" {item}" if item else ""),
            form=form, item=item, known_items=_known(form) if form in FORMS else [],
            entered_items=list(entered.get(form, {})), visit_status=v.status,
            named_person=role_of(acting) != "system", already=already,
        )
        manifest = _manifest(form, item, entered)
        seq, chain = head()
        mark = SourceVerification(
            participant=p, visit=v, form=form, item=item, verified_by=acting,
            verified_at=timezone.now(), note=str(note or "").strip(), ledger_seq=seq,
            ledger_hash=chain, manifest=manifest, manifest_digest=manifest_digest(manifest))
        mark.save(user=acting)
    return mark
