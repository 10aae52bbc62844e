"""Cell-product batches and administrations.

Every write of a batch or an administration goes through here and is judged by one validator
(:mod:`hepatrial.trials.validators.product`, :mod:`~hepatrial.trials.validators.administration`)
on creation and on every change; the ``check_*`` functions run the same validator without
writing (the admin forms use them to show each problem on its field).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

from django.db import transaction
from django.db.models import Min

from hepatrial.trials.base import require_reason
from hepatrial.trials.models import (
    Administration,
    CellProductBatch,
    ClinicalAssessment,
    DeviationCategory,
    Participant,
    ProtocolDeviation,
)
from hepatrial.trials.services._common import (
    StoreError,
    _jsonable,
    _participant,
    _user,
)
from hepatrial.trials.services.measurements import _reason_for
from hepatrial.trials.services.protocol import active_protocol
from hepatrial.trials.validators.administration import (
    AdministrationFacts,
    BatchInfo,
    dose_deviation,
    validate_administration,
)
from hepatrial.trials.validators.product import BatchFacts, validate_batch

_BATCH_FIELDS = ("batch_id", "coi_identifier", "release_tests", "released", "release_date")
_ADMIN_FIELDS = (
    "route", "cells_total", "cells_per_kg", "volume_ml", "date", "operator", "batch_id",
)  # fmt: skip


def _product() -> Any:
    return active_protocol().product


# ---------------------------------------------------------------------- batches
def _batch_facts(p: Participant, stored: CellProductBatch | None, batch_id: Any) -> BatchFacts:
    taken = stored is None and CellProductBatch.objects.filter(batch_id=str(batch_id)).exists()
    n, first = 0, None
    if stored is not None:
        agg = Administration.objects.filter(batch_id=stored.batch_id).aggregate(first=Min("date"))
        n = Administration.objects.filter(batch_id=stored.batch_id).count()
        first = agg["first"]
    return BatchFacts(
        participant=p.study_id,
        participant_status=p.status,
        screening_date=p.screening_date,
        product=_product(),
        batch_id_taken=taken,
        stored_batch_id=None if stored is None else stored.batch_id,
        stored_participant=None if stored is None else stored.participant.study_id,
        stored_released=False if stored is None else stored.released,
        n_administrations=n,
        first_administration=first,
    )


def check_product_batch(
    *,
    batch_id: Any,
    participant: Participant | str,
    coi_identifier: Any = "",
    release_tests: Any = None,
    released: Any = False,
    release_date: Any = None,
    batch: CellProductBatch | None = None,
) -> tuple[Participant, dict[str, Any]]:
    """Judge a batch's state without writing: ``(participant, typed values)`` or
    :class:`~hepatrial.trials.validators.RuleViolation` with every problem.

    ``batch`` is the stored batch when the state is a change of it (None: registration).
    """
    p = _participant(participant)
    values = {
        "batch_id": batch_id,
        "coi_identifier": coi_identifier,
        "release_tests": {} if release_tests is None else release_tests,
        "released": released,
        "release_date": release_date,
    }
    return p, validate_batch(values, _batch_facts(p, batch, batch_id))


def register_product_batch(
    *,
    batch_id: str,
    participant: Participant | str,
    coi_identifier: str = "",
    release_tests: Mapping[str, Any] | None = None,
    user: Any = None,
) -> CellProductBatch:
    """Register an autologous cell-product batch for its one participant (chain of identity).

    A batch is registered unreleased; ``release_tests`` may already hold results (each a valid
    result of a test of the protocol's release specification). Release it with
    :func:`release_product_batch`.
    """
    p, ok = check_product_batch(
        batch_id=batch_id,
        participant=participant,
        coi_identifier=coi_identifier,
        release_tests=_jsonable(release_tests if release_tests is not None else {}),
    )
    b = CellProductBatch(participant=p, **ok)
    b.save(user=_user(user))
    return b


def _stored_batch(batch: CellProductBatch | str) -> CellProductBatch:
    if isinstance(batch, CellProductBatch):
        return CellProductBatch.objects.select_related("participant").get(pk=batch.pk)
    b = CellProductBatch.objects.select_related("participant").filter(batch_id=batch).first()
    if b is None:
        raise StoreError(f"batch {batch!r} does not exist")
    return b


def release_product_batch(
    *,
    batch_id: str,
    release_date: Any,
    release_tests: Mapping[str, Any] | None = None,
    reason: str = "QA release",
    user: Any = None,
) -> CellProductBatch:
    """Release a batch (a workflow action, recorded with its reason): the only way a batch
    becomes ``released``.

    ``release_tests`` are added to the results already recorded (a result given again replaces
    the earlier one, which stays in the history). Refused unless the participant is enrolled,
    the release date is given and every test of the protocol's release specification has a
    result meeting it (see :mod:`hepatrial.trials.validators.product`).
    """
    reason = require_reason(reason, f"releasing batch {batch_id}")
    with transaction.atomic():
        b = _stored_batch(batch_id)
        if b.released:
            raise StoreError(f"batch {b.batch_id}: already released on {b.release_date}")
        tests = _jsonable(release_tests if release_tests is not None else {})
        if isinstance(tests, dict):  # added to the results on record (else refused below)
            tests = {**b.release_tests, **tests}
        _p, ok = check_product_batch(
            batch_id=b.batch_id,
            participant=b.participant,
            coi_identifier=b.coi_identifier,
            release_tests=tests,
            released=True,
            release_date=release_date,
            batch=b,
        )
        for k in _BATCH_FIELDS:
            setattr(b, k, ok[k])
        b.save(user=_user(user), reason=reason)
    return b


def update_product_batch(
    batch: CellProductBatch | str, *, reason: str | None = None, user: Any = None,
    **changes: Any,
) -> CellProductBatch:
    """Correct a batch: ``participant`` (not once given), ``coi_identifier``, ``release_tests``
    (replaced as a whole), ``release_date`` (of a released batch).

    The batch's new state is judged by the same rules as registration and release (a released
    batch keeps meeting the release specification). Release only through
    :func:`release_product_batch`; nothing un-releases a batch. A reason is needed unless only
    empty values are filled (the first entry of a value, e.g. a new release-test result, is
    data entry).
    """
    allowed = {"participant", "coi_identifier", "release_tests", "release_date"}
    bad = sorted(set(changes) - allowed)
    what = f"batch {getattr(batch, 'batch_id', batch)}"
    if bad:
        raise StoreError(
            f"{what}: field(s) {', '.join(bad)} cannot be changed here (allowed: "
            f"{', '.join(sorted(allowed))}; release with release_product_batch)"
        )
    with transaction.atomic():
        b = _stored_batch(batch)
        state: dict[str, Any] = {k: getattr(b, k) for k in _BATCH_FIELDS}
        state["participant"] = b.participant
        for k, val in changes.items():
            state[k] = _jsonable(val) if k == "release_tests" else val
        p, ok = check_product_batch(**state, batch=b)
        old = {k: getattr(b, k) for k in _BATCH_FIELDS} | {"participant": b.participant.study_id}
        why = _reason_for(old, ok | {"participant": p.study_id}, reason, what)
        if why is not None:
            b.participant = p
            for k in _BATCH_FIELDS:
                setattr(b, k, ok[k])
            b.save(user=_user(user), reason=why)
    return b


# ---------------------------------------------------------------------- administrations
def _administration_facts(p: Participant, batch_id: Any) -> AdministrationFacts:
    b = (
        CellProductBatch.objects.select_related("participant")
        .filter(batch_id=str(batch_id).strip())
        .first()
        if batch_id is not None
        else None
    )
    return AdministrationFacts(
        participant=p.study_id,
        enrolment_date=p.enrolment_date,
        status=p.status,
        status_date=p.status_date,
        product=_product(),
        batch=None
        if b is None
        else BatchInfo(b.batch_id, b.participant.study_id, b.released, b.release_date),
    )


def _administration_values(
    participant: Participant | str, values: Mapping[str, Any]
) -> tuple[Participant, dict[str, Any]]:
    p = _participant(participant)
    return p, validate_administration(values, _administration_facts(p, values.get("batch_id")))


def check_administration(
    *,
    participant: Participant | str,
    route: str,
    cells_total: Any,
    date: Any,
    batch_id: str,
    cells_per_kg: Any = None,
    volume_ml: Any = None,
    operator: Any = None,
) -> tuple[Participant, str, float, _dt.date]:
    """Judge an administration without writing it: ``(participant, route, cells, date)`` or
    :class:`~hepatrial.trials.validators.RuleViolation` with every problem (route, dose,
    enrolment, and the chain of identity: the batch exists, is this participant's and is
    released, and the date is not before its release).

    A thin wrapper of :func:`hepatrial.trials.validators.administration.validate_administration`
    kept for its callers; ``volume_ml`` and ``operator`` are checked when given.
    """
    values = {
        "route": route,
        "cells_total": cells_total,
        "cells_per_kg": cells_per_kg,
        "volume_ml": 1 if volume_ml is None else volume_ml,
        "date": date,
        "operator": "-" if operator is None else operator,
        "batch_id": batch_id,
    }
    p, ok = _administration_values(participant, values)
    return p, ok["route"], ok["cells_total"], ok["date"]


def _with_per_kg(p: Participant, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with ``cells_per_kg`` derived (when missing) as ``cells_total`` / the latest
    weight recorded on or before the date (else the first weight); unchanged when cells, date
    or a weight are missing or unreadable (the validator then says what is wrong)."""
    if values.get("cells_per_kg") is not None:
        return values
    try:
        cells = float(values["cells_total"])
        d = _dt.date.fromisoformat(str(values["date"])[:10])
    except (KeyError, TypeError, ValueError):
        return values
    if isinstance(values["cells_total"], bool) or not cells > 0:
        return values
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
    return values if c is None else {**values, "cells_per_kg": cells / float(c.weight_kg)}


def _dosing_deviation(a: Administration, user: Any, corrected: str = "") -> None:
    desc = dose_deviation(a.cells_total, a.cells_per_kg, _product())
    if desc is None:
        return
    ProtocolDeviation(
        participant=a.participant,
        category=DeviationCategory.DOSING,
        description=f"{desc} (administration of {a.date}{corrected})",
        date=a.date,
        major=True,
        detected_by="system",
    ).save(user=user)


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

    The validator refuses a participant not enrolled, a route the protocol does not allow, a
    non-positive dose, and a batch that does not exist, belongs to another participant (chain
    of identity), is not released or was released after ``date``. A dose outside the
    protocol's ``cells_min``-``cells_max`` is stored and creates a major ``dosing`` deviation.
    ``cells_per_kg`` defaults to ``cells_total`` / the latest recorded weight on or before
    ``date``.
    """
    user = _user(user)
    values = {
        "route": route, "cells_total": cells_total, "cells_per_kg": cells_per_kg,
        "volume_ml": volume_ml, "date": date, "operator": operator, "batch_id": batch_id,
    }  # fmt: skip
    with transaction.atomic():
        p = _participant(participant)
        p, ok = _administration_values(p, _with_per_kg(p, values))
        a = Administration(participant=p, **ok)
        a.save(user=user)
        _dosing_deviation(a, user)
    return a


def update_administration(
    administration: Administration, *, reason: str | None = None, user: Any = None,
    **changes: Any,
) -> Administration:
    """Correct an administration (route, cells_total, cells_per_kg, volume_ml, date, operator,
    batch_id).

    The corrected state is judged by the same validator as a new administration (chain of
    identity, release, enrolment, route), and the same dose rule runs: a corrected dose outside
    the protocol's range records a major ``dosing`` deviation. ``cells_per_kg=None`` derives it
    again from the recorded weight; it is not changed unless given. A reason is needed unless
    only empty values are filled (data entry).
    """
    what = str(administration)
    bad = sorted(set(changes) - set(_ADMIN_FIELDS))
    if bad:
        raise StoreError(
            f"{what}: field(s) {', '.join(bad)} cannot be changed here "
            f"(allowed: {', '.join(_ADMIN_FIELDS)})"
        )
    user = _user(user)
    with transaction.atomic():
        a = Administration.objects.select_related("participant").get(pk=administration.pk)
        state = {k: getattr(a, k) for k in _ADMIN_FIELDS}
        state.update(changes)
        if "cells_per_kg" in changes:  # None: derive it again from the recorded weight
            state = _with_per_kg(a.participant, state)
        _p, ok = _administration_values(a.participant, state)
        old_dose = (a.cells_total, a.cells_per_kg)
        why = _reason_for({k: getattr(a, k) for k in _ADMIN_FIELDS}, ok, reason, what)
        if why is None:
            return administration
        for k in _ADMIN_FIELDS:
            setattr(a, k, ok[k])
        a.save(user=user, reason=why)
        if (a.cells_total, a.cells_per_kg) != old_dose:
            _dosing_deviation(a, user, f", corrected from {old_dose[0]:.4g} cells")
    administration.refresh_from_db()
    return administration
