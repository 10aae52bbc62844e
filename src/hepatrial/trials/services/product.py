"""Cell-product batches and administrations."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction

from hepatrial.trials.base import require_reason
from hepatrial.trials.models import (
    Administration,
    CellProductBatch,
    ClinicalAssessment,
    DeviationCategory,
    Participant,
    ProtocolDeviation,
    Route,
)
from hepatrial.trials.services._common import (
    StoreError,
    _apply_changes,
    _choice,
    _date,
    _full_clean,
    _jsonable,
    _participant,
    _user,
)
from hepatrial.trials.services.protocol import active_protocol


def register_product_batch(
    *,
    batch_id: str,
    participant: Participant | str,
    coi_identifier: str = "",
    release_tests: Mapping[str, Any] | None = None,
    user: Any = None,
) -> CellProductBatch:
    """Register an autologous cell-product batch for its one participant (chain of identity)."""
    p = _participant(participant)
    if CellProductBatch.objects.filter(batch_id=batch_id).exists():
        raise StoreError(f"batch {batch_id!r} already exists")
    b = CellProductBatch(
        batch_id=str(batch_id),
        participant=p,
        coi_identifier=str(coi_identifier),
        release_tests=_jsonable(dict(release_tests or {})),
    )
    b.save(user=_user(user))
    return b


def release_product_batch(
    *,
    batch_id: str,
    release_date: Any,
    release_tests: Mapping[str, Any] | None = None,
    reason: str = "QA release",
    user: Any = None,
) -> CellProductBatch:
    """Mark a batch released (a workflow action, recorded with its reason)."""
    b = CellProductBatch.objects.filter(batch_id=batch_id).first()
    if b is None:
        raise StoreError(f"batch {batch_id!r} does not exist")
    b.released = True
    b.release_date = _date(release_date, f"batch {batch_id} release_date")
    if release_tests:
        b.release_tests = {**b.release_tests, **_jsonable(dict(release_tests))}
    b.save(user=_user(user), reason=require_reason(reason))
    return b


def _dec(value: Any, what: str) -> Decimal:
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        raise StoreError(f"{what}: {value!r} is not a number") from None


def check_administration(
    *, participant: Participant | str, route: str, cells_total: Any, date: Any, batch_id: str
) -> tuple[Participant, str, float, _dt.date]:
    """Validate an administration before it is stored (also used by the admin form).

    Returns ``(participant, route, cells, date)``; raises :class:`StoreError` for a route the
    protocol does not allow, a non-positive dose, a participant not enrolled, or a batch that
    belongs to another participant (chain of identity) or is not released.
    """
    p = _participant(participant)
    what = f"participant {p} administration"
    proto = active_protocol()
    route = _choice(route, Route, f"{what} route")
    if proto.product is not None and route not in proto.product.routes:
        raise StoreError(
            f"{what} route: {route!r} is not allowed by the protocol "
            f"({', '.join(proto.product.routes)})"
        )
    try:
        cells = float(cells_total)
    except (TypeError, ValueError):
        raise StoreError(f"{what} cells_total: {cells_total!r} is not a number") from None
    if not cells > 0:
        raise StoreError(f"{what} cells_total: {cells_total!r} must be positive")
    d = _date(date, f"{what} date")
    if p.enrolment_date is None:
        raise StoreError(f"{what}: participant is not enrolled")
    batch = CellProductBatch.objects.filter(batch_id=batch_id).first()
    if batch is not None:
        if batch.participant_id != p.pk:
            raise StoreError(
                f"{what}: batch {batch_id!r} belongs to participant {batch.participant} "
                "(chain of identity)"
            )
        if not batch.released:
            raise StoreError(f"{what}: batch {batch_id!r} has not been released")
    return p, route, cells, d


def record_administration(
    *,
    participant: Participant | str,
    route: str,
    cells_total: float,
    volume_ml: Any,
    date: Any,
    operator: str,
    batch_id: str,
    cells_per_kg: float | None = None,
    user: Any = None,
) -> Administration:
    """Record a cell administration.

    The route must be one the protocol allows; a dose outside the protocol's
    ``cells_min``–``cells_max`` is stored and creates a ``dosing`` deviation. ``cells_per_kg``
    defaults to ``cells_total`` / the latest recorded weight on or before ``date``. When a
    :class:`CellProductBatch` with ``batch_id`` exists it must belong to this participant
    (chain of identity) and be released.
    """
    p, route, cells, d = check_administration(
        participant=participant,
        route=route,
        cells_total=cells_total,
        date=date,
        batch_id=batch_id,
    )
    what = f"participant {p} administration"
    user = _user(user)
    proto = active_protocol()
    if cells_per_kg is None:
        c = (
            ClinicalAssessment.objects.filter(
                participant=p, weight_kg__isnull=False, visit__actual_date__lte=d
            )
            .order_by("-visit__actual_date")
            .first()
        )
        if c is None:
            c = (
                ClinicalAssessment.objects.filter(participant=p, weight_kg__isnull=False)
                .order_by("visit__nominal_day")
                .first()
            )
        cells_per_kg = cells / float(c.weight_kg) if c is not None else None
    with transaction.atomic():
        a = Administration(
            participant=p,
            route=route,
            cells_total=cells,
            cells_per_kg=cells_per_kg,
            volume_ml=_dec(volume_ml, f"{what} volume_ml"),
            date=d,
            operator=str(operator),
            batch_id=str(batch_id),
        )
        _full_clean(a, what)
        a.save(user=user)
        prod = proto.product
        if (
            prod is not None
            and prod.dose_basis == "total"
            and not prod.cells_min <= cells <= prod.cells_max
        ):
            ProtocolDeviation(
                participant=p,
                category=DeviationCategory.DOSING,
                description=(
                    f"dose {cells:.4g} cells outside protocol range "
                    f"{prod.cells_min:.4g}-{prod.cells_max:.4g}"
                ),
                date=d,
                major=True,
                detected_by="system",
            ).save(user=user)
    return a


def update_administration(
    administration: Administration, *, reason: str, user: Any = None, **changes: Any
) -> Administration:
    """Correct an administration (route, cells_total, cells_per_kg, volume_ml, date, operator,
    batch_id)."""
    reason = require_reason(reason, f"changing {administration}")
    what = str(administration)
    if "route" in changes:
        _choice(changes["route"], Route, f"{what} route")
    if "date" in changes:
        changes["date"] = _date(changes["date"], f"{what} date")
    if "volume_ml" in changes:
        changes["volume_ml"] = _dec(changes["volume_ml"], f"{what} volume_ml")
    allowed = {"route", "cells_total", "cells_per_kg", "volume_ml", "date", "operator", "batch_id"}
    if _apply_changes(administration, changes, allowed, what):
        administration.save(user=_user(user), reason=reason)
    return administration
