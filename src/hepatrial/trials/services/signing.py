"""Locking, unlocking and e-signing: the workflow services (permissions, password, audit).

The rules are in :mod:`hepatrial.trials.audit.locks` (what a lock covers, enforcement on every
write path) and :mod:`hepatrial.trials.audit.signatures` (manifest, invalidation); who may do
it is :mod:`hepatrial.trials.services.permissions` (``lock``/``unlock``: data-manager, admin;
``sign``: investigator of the participant's site). Every function is one transaction except
:func:`sign`, which first commits the outcome of the password check (a wrong password is
counted even though the signature is refused).
"""

from __future__ import annotations

from typing import Any

from hepatrial.errors import AuthenticationFailed, StoreError
from hepatrial.trials.audit import locks as _locks
from hepatrial.trials.audit import signatures as _signatures
from hepatrial.trials.audit.signatures import SignatureStatus
from hepatrial.trials.models import Lock, Participant, Signature, VisitStatus
from hepatrial.trials.services._common import _participant, _visit
from hepatrial.trials.services.accounts import (
    acting_user,
    check_signing_password,
    printed_name_of,
)
from hepatrial.trials.services.permissions import require_permission, role_of

__all__ = [
    "LOCK_LEVELS",
    "SIGNATURE_LEVELS",
    "SignatureStatus",
    "active_locks",
    "lock",
    "sign",
    "signature_status",
    "signatures",
    "unlock",
]

LOCK_LEVELS = _locks.LEVELS
SIGNATURE_LEVELS = ("visit", "participant")


def _target(level: str, participant: Any, visit_code: str | None) -> tuple[Any, Any]:
    if level not in LOCK_LEVELS:
        raise StoreError(f"level {level!r} is not one of {', '.join(LOCK_LEVELS)}")
    if level == "trial":
        if participant is not None or visit_code is not None:
            raise StoreError("a trial lock names no participant or visit")
        return None, None
    if participant is None:
        raise StoreError(f"{level}: a participant is required")
    p = _participant(participant)
    if level == "participant":
        if visit_code is not None:
            raise StoreError("a casebook (participant) lock or signature names no visit")
        return p, None
    if visit_code is None:
        raise StoreError(f"participant {p}: a visit code is required")
    return p, _visit(p, visit_code)


def lock(
    *,
    level: str,
    participant: Participant | str | None = None,
    visit_code: str | None = None,
    user: Any,
    reason: str = "",
) -> Lock:
    """Lock a visit (``level="visit"``, participant + visit code), a participant's casebook
    (``"participant"``) or the whole trial (``"trial"``: the database lock before analysis).

    Needs ``lock`` (data-manager, admin; not the system account). Audited workflow event: a
    new ``Lock`` row with its history and ledger entry; a target already locked is refused.
    """
    acting = acting_user(user)
    p, v = _target(level, participant, visit_code)
    require_permission(acting, "lock", participant=p)
    return _locks.create_lock(level=level, participant=p, visit=v, user=acting, reason=reason)


def unlock(
    *,
    level: str,
    participant: Participant | str | None = None,
    visit_code: str | None = None,
    user: Any,
    reason: str,
) -> Lock:
    """Unlock a locked visit, casebook or trial, with a reason (``unlock``: data-manager,
    admin). Audited workflow event: the lock row's change, with the reason."""
    acting = acting_user(user)
    p, v = _target(level, participant, visit_code)
    require_permission(acting, "unlock", participant=p)
    return _locks.release_lock(level=level, participant=p, visit=v, user=acting, reason=reason)


def active_locks(participant: Participant | str | None = None) -> list[Lock]:
    """The active locks (all, or the trial lock and those of ``participant``), oldest first."""
    qs = Lock.objects.filter(unlocked_at__isnull=True).select_related(
        "participant", "visit", "locked_by"
    )
    if participant is not None:
        p = _participant(participant)
        qs = qs.filter(participant__isnull=True) | qs.filter(participant=p)
    return list(qs.order_by("locked_at", "pk"))


def sign(
    *,
    level: str,
    participant: Participant | str,
    visit_code: str | None = None,
    meaning: str,
    user: Any,
    password: str | None,
) -> Signature:
    """E-sign a visit (``level="visit"``) or a participant's casebook (``"participant"``).

    21 CFR Part 11: the signer re-enters the password (11.200(a); a wrong one is refused,
    counted and, at 5 in a row, deactivates the account: see
    :func:`~hepatrial.trials.services.accounts.check_signing_password`); the signature shows
    the printed name, the UTC date and time and the meaning (11.50) and records the ledger
    entry and digest of every signed row (11.70; see :mod:`hepatrial.trials.audit.signatures`).
    Needs ``sign`` (an investigator of the participant's site). A visit not done yet (still
    ``scheduled``) cannot be signed (11.10(f): operational sequence). Signing a locked record
    is allowed (a signature changes no data).
    """
    if level not in SIGNATURE_LEVELS:
        raise StoreError(f"sign: level {level!r} is not one of {', '.join(SIGNATURE_LEVELS)}")
    acting = acting_user(user)
    p, v = _target(level, participant, visit_code)
    if not acting.is_active and role_of(acting) != "system":
        raise AuthenticationFailed(
            f"sign: account {acting.get_username()!r} is deactivated (an admin can reactivate "
            "it: hepatrial user reactivate NAME --reason TEXT)"
        )
    role = require_permission(acting, "sign", participant=p)
    if v is not None and v.status == VisitStatus.SCHEDULED:
        raise StoreError(
            f"sign: visit {v.code} of participant {p} is not done yet (status scheduled): "
            "record it or mark it missed first"
        )
    text = str(meaning or "").strip()
    if not text:
        raise StoreError(
            "sign: the meaning of the signature is required (e.g. 'I reviewed and approve "
            "these data')"
        )
    check_signing_password(acting, password)
    return _signatures.write_signature(
        level=level,
        participant=p,
        visit=v,
        signer=acting,
        printed_name=printed_name_of(acting),
        role=role,
        meaning=text,
    )


def signature_status(signature: Signature) -> SignatureStatus:
    """``valid`` / ``invalidated by change seq N`` / ``altered: ...`` (recomputed now)."""
    return _signatures.status(signature)


def signatures(
    participant: Participant | str | None = None,
) -> list[tuple[Signature, SignatureStatus]]:
    """Every signature (or ``participant``'s) with its status, oldest first."""
    qs = Signature.objects.select_related("participant", "visit", "signer")
    if participant is not None:
        qs = qs.filter(participant=_participant(participant))
    return [(s, _signatures.status(s)) for s in qs.order_by("signed_at", "pk")]
