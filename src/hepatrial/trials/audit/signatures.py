"""Electronic signatures linked to the records they sign (21 CFR 11.50, 11.70, 11.200).

A signature covers a visit (the visit and every record of that visit: labs, clinical
assessment, deviations) or a casebook (every record of the participant) — the same rows that a
lock of that level covers (``lock_scope``, :mod:`hepatrial.trials.audit.locks`). At signing,
its **manifest** lists every covered row as ``[model label, pk, ledger seq, digest]`` of the
row's latest history row in the audit ledger; ``manifest_digest`` is the sha256 of the
manifest's canonical JSON and ``ledger_seq``/``ledger_hash`` are the ledger head then.

Because the signature names the ledger entries of what was signed (11.70: the signature cannot
be cut out and copied to other records), any later write to a covered row — a change, a
deletion, a row moved into or out of the visit, a new row in the visit or casebook — appears in
the ledger after ``ledger_seq``, and :func:`status` reports the signature as *invalidated by
change seq N* (N the first such ledger entry). The signature row itself is an audited record:
an edit by SQL is caught by :func:`hepatrial.trials.audit.verify`; :func:`status` also
re-checks the manifest against its digest and the ledger.

The pure part is :func:`manifest_digest`; :class:`SignatureStatus` is a plain value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.db import models, transaction
from django.utils import timezone

from hepatrial.errors import AuditIntegrityError, StoreError
from hepatrial.trials.audit.chain import _canon, _dumps, head, lock_ledger
from hepatrial.trials.audit.locks import locked_models, scope_of

__all__ = [
    "SignatureStatus",
    "build_manifest",
    "covered_rows",
    "manifest_digest",
    "status",
    "write_signature",
]

_CHUNK = 500


def _ledger() -> Any:
    return apps.get_model("trials", "AuditLedger")


def _history_label(model: type[models.Model]) -> str:
    return model.history.model._meta.label_lower  # type: ignore[attr-defined]


def covered_rows(
    level: str, participant_pk: int, visit_pk: int | None = None
) -> dict[type[models.Model], list[int]]:
    """Primary keys of the rows a signature (or lock) of ``level`` covers, per model.

    ``visit``: every row whose ``lock_scope`` visit is ``visit_pk`` (the visit itself and its
    records); ``participant``: every row whose ``lock_scope`` participant is
    ``participant_pk``. Stable order (by pk).
    """
    if level not in ("visit", "participant"):
        raise StoreError(f"signature: level {level!r} is not visit or participant")
    if level == "visit" and visit_pk is None:
        raise StoreError("signature: a visit signature needs a visit")
    out: dict[type[models.Model], list[int]] = {}
    for model in locked_models():
        scope = scope_of(model)
        assert scope is not None
        att = scope.visit if level == "visit" else scope.participant
        if att is None:
            continue
        key = visit_pk if level == "visit" else participant_pk
        field = "pk" if att == "pk" else att
        pks = sorted(model._base_manager.filter(**{field: key}).values_list("pk", flat=True))
        if pks:
            out[model] = [int(p) for p in pks]
    return out


def _latest_entries(
    hlabel: str, pks: Sequence[int]
) -> dict[str, tuple[int, str, str]]:
    """``object pk (str) -> (seq, digest, history type)`` of each object's last ledger entry."""
    Ledger = _ledger()
    out: dict[str, tuple[int, str, str]] = {}
    keys = [str(p) for p in pks]
    for start in range(0, len(keys), _CHUNK):
        rows = (
            Ledger.objects.filter(history_model=hlabel, object_pk__in=keys[start : start + _CHUNK])
            .order_by("seq")
            .values_list("object_pk", "seq", "digest", "history_type")
        )
        for opk, seq, digest, htype in rows:
            out[opk] = (int(seq), str(digest), str(htype))
    return out


def build_manifest(level: str, participant_pk: int, visit_pk: int | None = None) -> list[list[Any]]:
    """``[[model label, pk, ledger seq, digest], ...]`` of every covered row, sorted.

    Raises :class:`~hepatrial.errors.AuditIntegrityError` for a covered row with no ledger
    entry (written behind the application's back: run ``hepatrial audit verify``)."""
    manifest: list[list[Any]] = []
    for model, pks in covered_rows(level, participant_pk, visit_pk).items():
        label = model._meta.label_lower
        latest = _latest_entries(_history_label(model), pks)
        for pk in pks:
            entry = latest.get(str(pk))
            if entry is None:
                raise AuditIntegrityError(
                    f"{label} {pk} has no entry in the audit ledger; run `hepatrial audit "
                    "verify` before signing"
                )
            manifest.append([label, pk, entry[0], entry[1]])
    manifest.sort(key=lambda e: (e[0], e[1]))
    return manifest


def manifest_digest(manifest: Iterable[Sequence[Any]]) -> str:
    """Pure: sha256 of the manifest's canonical JSON (sorted keys, no spaces)."""
    text = _dumps(_canon([list(e) for e in manifest]))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class SignatureStatus:
    """The state of one signature now: ``valid``, ``invalidated`` (``change_seq`` = the first
    ledger entry that changed a signed row) or ``altered`` (the signature's own manifest no
    longer matches its digest or the ledger)."""

    state: str
    change_seq: int | None = None
    detail: str = ""

    @property
    def valid(self) -> bool:
        """True when nothing covered changed since signing."""
        return self.state == "valid"

    def __str__(self) -> str:
        if self.state == "invalidated":
            return f"invalidated by change seq {self.change_seq}"
        if self.state == "altered":
            return f"altered: {self.detail}"
        return "valid"


def status(signature: Any) -> SignatureStatus:
    """Recompute a signature's status from the ledger (never stored)."""
    manifest = signature.manifest or []
    if manifest_digest(manifest) != signature.manifest_digest:
        return SignatureStatus("altered", detail="the manifest does not match its digest")
    Ledger = _ledger()
    hlabels = {m._meta.label_lower: _history_label(m) for m in locked_models()}
    # the manifest's entries must be the ledger's (seq, model, object, digest)
    by_seq = {int(e[2]): e for e in manifest}
    seqs = sorted(by_seq)
    for start in range(0, len(seqs), _CHUNK):
        rows = Ledger.objects.filter(seq__in=seqs[start : start + _CHUNK]).values_list(
            "seq", "history_model", "object_pk", "digest"
        )
        found = {int(s): (h, o, d) for s, h, o, d in rows}
        for seq in seqs[start : start + _CHUNK]:
            label, pk, _seq, digest = by_seq[seq]
            if found.get(seq) != (hlabels.get(label), str(pk), digest):
                return SignatureStatus(
                    "altered", detail=f"manifest entry {label} {pk} is not ledger #{seq}"
                )
    covered = {(hlabels.get(e[0], e[0]), str(e[1])) for e in manifest}
    visit_pk = signature.visit_id if signature.level == "visit" else None
    for model, pks in covered_rows(signature.level, signature.participant_id, visit_pk).items():
        covered |= {(_history_label(model), str(p)) for p in pks}
    by_label: dict[str, list[str]] = {}
    for hl, opk in covered:
        by_label.setdefault(hl, []).append(opk)
    first: int | None = None
    for hl, opks in sorted(by_label.items()):
        opks.sort()
        for start in range(0, len(opks), _CHUNK):
            seq = (
                Ledger.objects.filter(
                    seq__gt=signature.ledger_seq,
                    history_model=hl,
                    object_pk__in=opks[start : start + _CHUNK],
                )
                .order_by("seq")
                .values_list("seq", flat=True)
                .first()
            )
            if seq is not None and (first is None or seq < first):
                first = int(seq)
    if first is not None:
        return SignatureStatus("invalidated", change_seq=first)
    return SignatureStatus("valid")


def write_signature(
    *,
    level: str,
    participant: Any,
    visit: Any,
    signer: Any,
    printed_name: str,
    role: str,
    meaning: str,
) -> Any:
    """Write a ``Signature`` of the visit/casebook as it is now (manifest, ledger head, UTC
    time), in one transaction under the ledger lock. The caller has checked the signer's
    permission and password (:mod:`hepatrial.trials.services.signing`)."""
    Signature = apps.get_model("trials", "Signature")
    text = str(meaning or "").strip()
    if not text:
        raise StoreError("sign: the meaning of the signature is required (e.g. 'I reviewed "
                         "and approve these data')")
    if len(text) > Signature._meta.get_field("meaning").max_length:
        raise StoreError("sign: the meaning is longer than 300 characters")
    with transaction.atomic():
        lock_ledger()
        manifest = build_manifest(
            level, participant.pk, visit.pk if level == "visit" and visit is not None else None
        )
        seq, chain = head()
        sig = Signature(
            level=level,
            participant=participant,
            visit=visit if level == "visit" else None,
            signer=signer,
            printed_name=printed_name,
            role=role,
            meaning=text,
            signed_at=timezone.now(),
            ledger_seq=seq,
            ledger_hash=chain,
            manifest=manifest,
            manifest_digest=manifest_digest(manifest),
        )
        sig.save(user=signer, reason=f"signed: {text}")
    return sig
