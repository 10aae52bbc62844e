"""``import labs`` (and the store access ``import visits`` shares): validate the whole file, then
write all-or-nothing. ``import visits`` is :func:`hepatrial.ingest.visits.import_visits`.

Sequence for both importers:

1. read the file as text (values kept exactly as entered; a repeated or unknown column, a
   ragged row or text that is not UTF-8 refuses the file, :func:`~hepatrial.ingest.validate.
   read_text_csv`); the acting user must exist and may import (``--user``; permission
   ``import_data``);
2. open the import's transaction and take the store's write lock
   (:func:`hepatrial.trials.audit.lock_ledger`: BEGIN IMMEDIATE on SQLite, an advisory lock
   on PostgreSQL), so that two imports of the same file run one after the other: the second
   sees what the first stored and reports those rows *unchanged* - it never fails on the
   first one's rows (a dry run reads without the lock and writes nothing);
3. validate every row against the protocol, the analyte registry and the store
   (:mod:`hepatrial.ingest.validate`, the store's own column-wise rules of
   :mod:`hepatrial.trials.validators` for the visit dates it records); any reject →
   :class:`ImportRefused`, nothing written, the rejects CSV written afterwards (outside the
   transaction; a dry run writes it only when asked for with ``rejects_path``);
4. compare with what is stored: each lab value is *created*, *unchanged* or *changed*; changes
   need ``reason`` (otherwise :class:`ImportRefused` listing those rows, nothing written); an
   active lock on a visit, casebook or the trial the file writes to refuses the import
   (:class:`~hepatrial.errors.RecordLocked`);
5. unless ``dry_run``: participants/visits created as needed (``audit.bulk_create``),
   scheduled visits given their actual date (earliest specimen date, ``~`` history), lab
   results inserted in chunks with history and ledger
   (:func:`hepatrial.ingest.bulk.fast_create_with_history`), changed values written with
   ``audit.bulk_update`` and the reason (``~`` history rows carrying it).

Row numbers in rejects are 1-based data rows (row 1 = the first line after the header).
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hepatrial import errors as _errors
from hepatrial.ingest.report import ImportRefused, ImportResult, write_rejects
from hepatrial.ingest.validate import (
    LAB_COLUMNS,
    LAB_REQUIRED,
    ImportFileError,
    Validation,
    read_text_csv,
    rejects_frame,
    validate_labs,
)

__all__ = ["StoreIndex", "StoreMissing", "acting_user", "import_labs", "refuse_missing_sqlite"]


class StoreMissing(_errors.ConfigurationError, ImportFileError):
    """The SQLite file of the store does not exist (``hepatrial init`` creates it); exit 2."""


# --------------------------------------------------------------------------- store access


def _setup(db: str | Path | None) -> None:
    """Configure the store. An SQLite file that does not exist is refused (run ``hepatrial
    init``), never created: an import, a dry run or an export leaves no file behind."""
    from hepatrial.trials import setup

    setup(db)
    refuse_missing_sqlite()


def refuse_missing_sqlite() -> None:
    """Raise :class:`StoreMissing` when the configured database is an SQLite file that does
    not exist (connecting would create an empty one)."""
    from django.db import connection

    cfg = connection.settings_dict
    name = str(cfg.get("NAME") or "")
    if ("sqlite" in str(cfg.get("ENGINE", "")) and name and name != ":memory:"
            and not name.startswith("file:") and not Path(name).exists()):
        raise StoreMissing(f"database {name} does not exist: run `hepatrial init` first")


@dataclass
class StoreIndex:
    """What validation needs from the store, read once (plain dicts, no ORM objects).

    ``birth_years``/``enrolment`` per study id; ``visit_facts`` per visit id:
    ``(nominal_day, actual_date, status)``.
    """

    protocol: Any
    participants: dict[str, int]
    visits: dict[tuple[str, str], int]
    birth_years: dict[str, int | None] = field(default_factory=dict)
    enrolment: dict[str, _dt.date | None] = field(default_factory=dict)
    visit_facts: dict[int, tuple[int, _dt.date | None, str]] = field(default_factory=dict)

    @classmethod
    def load(cls) -> StoreIndex:
        """Read the configured protocol, participants and visits from the store."""
        from hepatrial.trials.models import Participant, Visit

        protocol = current_protocol()
        participants, birth, enrol = {}, {}, {}
        for sid, pk, yob, day0 in Participant.objects.values_list(
                "study_id", "id", "year_of_birth", "enrolment_date"):
            participants[sid] = pk
            birth[sid] = yob
            enrol[sid] = day0
        visits, facts = {}, {}
        for sid, code, pk, nominal, actual, status in Visit.objects.values_list(
                "participant__study_id", "code", "id", "nominal_day", "actual_date", "status"):
            visits[(sid, code)] = pk
            facts[pk] = (nominal, actual, status)
        return cls(protocol, participants, visits, birth, enrol, facts)


def current_protocol() -> Any:
    """The protocol the store was initialised with (``hepatrial init --protocol``)."""
    from hepatrial.trials.services import StoreError, active_protocol

    try:
        return active_protocol()
    except StoreError as exc:
        raise ImportFileError(str(exc)) from None


def acting_user(name: str | None, *, create_system: bool = True) -> Any:
    """The account an import acts as and is attributed to in the history.

    ``name``: an existing account (:class:`~hepatrial.errors.NotFoundError` otherwise - an
    import never creates accounts) that may import data (``import_data``: data managers and
    admins; :class:`~hepatrial.errors.PermissionDenied` otherwise). ``None``: the store's
    ``system`` account, which ``create_system=False`` (a dry run) does not create: the result
    is then ``None``.
    """
    from hepatrial.trials.services.permissions import require_permission

    if name is None:
        from hepatrial.trials.audit.actors import SYSTEM_USERNAME
        from hepatrial.trials.services import system_user

        if create_system:
            return system_user()
        from django.contrib.auth import get_user_model

        return get_user_model().objects.filter(username=SYSTEM_USERNAME).first()
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(username=str(name)).first()
    if user is None:
        raise _errors.NotFoundError(
            f"--user {name!r}: no such account (an import does not create accounts; add it "
            "with `hepatrial user add NAME --role data-manager`)")
    require_permission(user, "import_data")
    return user


@contextmanager
def import_transaction(dry_run: bool) -> Iterator[None]:
    """The import's transaction with the store's write lock held from its start (see the
    module docstring); a dry run runs without either (it writes nothing)."""
    if dry_run:
        yield
        return
    from django.db import transaction

    from hepatrial.trials.audit import lock_ledger

    with transaction.atomic():
        lock_ledger()
        yield


def refuse_locked(participant_ids: Any, visit_ids: Any, what: str) -> None:
    """:class:`~hepatrial.errors.RecordLocked` (exit 5) when an active lock covers any of these
    participants or visits (or the trial): nothing is written."""
    from hepatrial.trials.audit.locks import active_lock, describe_lock

    lock = active_lock([int(p) for p in participant_ids if p is not None and p > 0],
                       [int(v) for v in visit_ids if v is not None and v > 0])
    if lock is not None:
        raise _errors.RecordLocked(f"{what}: {describe_lock(lock)}; nothing was imported "
                                   "(unlock it with a reason first)")


# --------------------------------------------------------------------------- plan


@dataclass
class LabPlan:
    """Lab rows split into new, changed and unchanged (frames keep the file's row numbers)."""

    new: pd.DataFrame
    changed: pd.DataFrame
    unchanged: int


def plan_labs(frame: pd.DataFrame, visit_ids: dict[tuple[str, str], int], *,
              has_lab_column: bool) -> LabPlan:
    """Compare validated rows with stored lab results (by visit and analyte).

    A stored row is *changed* when the value or unit as entered, the specimen date or (when the
    file has a ``lab`` column) the laboratory differ. Rows of visits not stored yet
    (``visit_id`` -1, several per visit) are new.
    """
    from hepatrial.trials.models import LabResult

    frame = frame.reset_index(drop=True).assign(
        visit_id=_visit_ids_of(frame, visit_ids, missing=-1))
    vid = frame["visit_id"].to_numpy()
    known_vids = np.unique(vid[vid > 0]).tolist()
    if not known_vids:
        return LabPlan(frame, frame.iloc[0:0], 0)
    stored_rows: list[tuple] = []
    qs = LabResult.objects.order_by()
    step = 5000
    for i in range(0, len(known_vids), step):
        stored_rows += list(qs.filter(visit_id__in=known_vids[i:i + step]).values_list(
            "id", "visit_id", "analyte", "value_as_entered", "unit_as_entered", "laboratory",
            "specimen_date"))
    if not stored_rows:
        return LabPlan(frame, frame.iloc[0:0], 0)
    stored = pd.DataFrame(stored_rows, columns=["lab_id", "visit_id", "analyte", "s_value",
                                                "s_unit", "s_lab", "s_date"])
    # many rows may share visit_id -1 (visits the import creates); stored keys are unique
    m = frame.merge(stored, on=["visit_id", "analyte"], how="left", validate="many_to_one")
    exists = m["lab_id"].notna().to_numpy()
    date_new = m["date_parsed"].dt.date
    diff = (m["value"] != m["s_value"]) | (m["unit"] != m["s_unit"]) | (date_new != m["s_date"])
    if has_lab_column:
        diff |= m["lab"] != m["s_lab"]
    diff = diff.to_numpy() & exists
    return LabPlan(new=m.loc[~exists].drop(columns=["lab_id", "s_value", "s_unit", "s_lab",
                                                    "s_date"]),
                   changed=m.loc[diff], unchanged=int((exists & ~diff).sum()))


def _changes_need_reason(changed: pd.DataFrame) -> pd.DataFrame:
    """Reject lines for changed rows when no reason was given."""
    def fmt(r: Any) -> str:
        parts = []
        if r.value != r.s_value or r.unit != r.s_unit:
            parts.append(f"stored {r.s_value} {r.s_unit}")
        if r.date_parsed.date() != r.s_date:
            parts.append(f"stored date {r.s_date}")
        if "lab" in changed.columns and r.lab != r.s_lab:
            parts.append(f"stored lab {r.s_lab!r}")
        return ("differs from the stored value (" + "; ".join(parts or ["stored row"]) +
                "): a change needs --reason")
    return pd.DataFrame({
        "row": changed["row"].to_numpy(),
        "column": "value",
        "value": changed["value"].to_numpy(),
        "reason": [fmt(r) for r in changed.itertuples(index=False)],
    })


def text_limits(model: Any, columns: dict[str, str]) -> dict[str, int | None]:
    """``{file column: max_length}`` of the model fields the columns are written to (the
    declared length, checked before writing so that SQLite and PostgreSQL agree)."""
    return {col: model._meta.get_field(f).max_length for col, f in columns.items()}


def lab_text_limits() -> dict[str, int | None]:
    """Maximum lengths of the text a lab file writes (LabResult's fields)."""
    from hepatrial.trials.models import LabResult

    return text_limits(LabResult, {"value": "value_as_entered", "unit": "unit_as_entered",
                                   "lab": "laboratory", "analyte": "analyte"})


def visit_rejects(frame: pd.DataFrame, index: StoreIndex, protocol: Any, *,
                  today: _dt.date | None) -> pd.DataFrame:
    """Reject lines for the visits the rows refer to, by the store's visit rules
    (:mod:`hepatrial.trials.validators.visit`).

    * a stored visit must have been done (not missed / not done) to have results;
    * a visit the import records - created, or scheduled and not yet dated - is dated on its
      earliest specimen date, which must pass the rules of a visit date
      (:func:`~hepatrial.trials.validators.visit.visit_date_columns`: the participant is
      enrolled, the date is not in the future and not before day 0 unless the visit is a
      screening visit); the problem is reported on the row giving that earliest date.
    """
    from hepatrial.trials.validators.visit import visit_date_columns, visit_done_columns

    ok = frame["date_parsed"].notna().to_numpy() & frame["participant"].isin(
        index.participants.keys()).to_numpy()
    # each distinct (participant, visit) judged once; rows take their pair's verdict
    pair, (sids, codes) = _pairs(frame["participant"], frame["visit"])
    pair_vid = np.array([index.visits.get(k, -1) for k in zip(sids, codes, strict=True)],
                        dtype=np.int64)
    facts = [index.visit_facts.get(int(v)) for v in pair_vid]
    # a visit this import dates: not stored yet, or scheduled without a date
    pair_dated = np.array([f is None or (f[1] is None and f[2] == "scheduled") for f in facts],
                          dtype=bool)
    parts = []
    stored = np.flatnonzero(pair_vid > 0)
    if len(stored):
        known = [index.visit_facts[v] for v in pair_vid[stored].tolist()]
        done = visit_done_columns([f[1] for f in known], [f[2] for f in known])
        pair_why = np.full(len(pair_vid), None, dtype=object)
        pair_bad = np.zeros(len(pair_vid), dtype=bool)
        for i, _name, reason in done.items():
            pair_why[stored[i]] = reason
            pair_bad[stored[i]] = True
        # scheduled without a date: this import records its date (below)
        pair_bad &= ~pair_dated
        bad = pair_bad[pair]
        if bad.any():
            parts.append(pd.DataFrame({"row": frame["row"].to_numpy()[bad], "column": "visit",
                                       "value": frame["visit"].to_numpy(dtype=object)[bad],
                                       "reason": pair_why[pair[bad]]}))
    dated = pair_dated[pair]
    dated &= ok
    if dated.any():
        sub = frame.loc[dated, ["row", "participant", "visit", "date_parsed", "date"]]
        first = sub.sort_values(["date_parsed", "row"], kind="mergesort").drop_duplicates(
            ["participant", "visit"])
        nominal = []
        first_sids = first["participant"].tolist()
        for sid, code in zip(first_sids, first["visit"].tolist(), strict=True):
            pk = index.visits.get((sid, code))
            nominal.append(index.visit_facts[pk][0] if pk else protocol.visit(code).target_day)
        _d, problems = visit_date_columns(
            actual_date=first["date_parsed"].dt.date.to_numpy(dtype=object),
            enrolment_date=[index.enrolment.get(s) for s in first_sids],
            nominal_day=nominal, today=today)
        for i, _name, why in problems.items():
            r = first.iloc[i]
            parts.append(pd.DataFrame({
                "row": [int(r["row"])], "column": ["date"], "value": [r["date"]],
                "reason": [f"visit {r['visit']} would be dated {r['date']} (its earliest "
                           f"specimen date): {why}"]}))
    return rejects_frame(parts)


def _visit_ids_of(frame: pd.DataFrame, visit_ids: dict[tuple[str, str], int], *,
                  missing: int | None = None) -> np.ndarray:
    """The visit id of each row's ``(participant, visit)``, each distinct pair looked up once;
    ``missing`` for a pair ``visit_ids`` does not have (``None``: a ``KeyError``)."""
    pair, (sids, codes) = _pairs(frame["participant"], frame["visit"])
    keys = zip(sids, codes, strict=True)
    ids = ([visit_ids[k] for k in keys] if missing is None
           else [visit_ids.get(k, missing) for k in keys])
    return np.array(ids, dtype=np.int64)[pair]


def _pairs(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, tuple[list[Any], list[Any]]]:
    """The distinct ``(a, b)`` pairs of two columns: ``(code of each row's pair, (a values,
    b values) of the pairs)``, the pairs as Python objects (each converted once, not per row)."""
    ca, ua = pd.factorize(a, use_na_sentinel=False)
    cb, ub = pd.factorize(b, use_na_sentinel=False)
    width = max(len(ub), 1)
    code, key = pd.factorize(ca.astype(np.int64) * width + cb)
    ua_list, ub_list = ua.tolist(), ub.tolist()
    return code, ([ua_list[i] for i in (key // width).tolist()],
                  [ub_list[i] for i in (key % width).tolist()])


# --------------------------------------------------------------------------- writing


def _lab_columns(new: pd.DataFrame, participant_ids: dict[str, int]) -> dict[str, list[Any]]:
    """LabResult column values (attnames) for validated new rows with ``visit_id``."""
    from hepatrial.protocol import analytes as reg

    loinc = {code: a.loinc for code, a in reg.ANALYTES.items()}
    ts = new["date_parsed"]
    uniq = {t: (t.date() if not pd.isna(t) else None) for t in ts.unique()}
    return {
        "participant_id": _per_value(new["participant"], participant_ids.__getitem__, np.int64),
        "visit_id": new["visit_id"].astype("int64").tolist(),
        "analyte": _per_value(new["analyte"]),
        "loinc": _per_value(new["analyte"], lambda a: "" if (c := loinc.get(a)) is None else c),
        "value_as_entered": _per_value(new["value"]),
        "unit_as_entered": _per_value(new["unit"]),
        "value": new["value_canonical"].astype(float).tolist(),
        "unit": _per_value(new["unit_canonical"]),
        "laboratory": _per_value(new["lab"]) if "lab" in new.columns else [""] * len(new),
        "specimen_date": ts.map(uniq).tolist(),  # few distinct dates: each converted once
    }


def _per_value(values: pd.Series, convert: Any = None, dtype: Any = object) -> list[Any]:
    """``values`` as a list of Python objects, each distinct value converted once
    (``convert(value)``, default the value itself) and shared by the rows holding it, instead
    of a Python object made (and looked up) per row."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    out = list(uniques) if convert is None else [convert(u) for u in uniques]
    return np.array(out, dtype=dtype)[codes].tolist()


def insert_labs(new: pd.DataFrame, participant_ids: dict[str, int], *, reason: str, user: Any,
                chunk: int = 50_000) -> int:
    """Insert validated new lab rows (with ``visit_id``) slice by slice, each with its history
    row and ledger entry (one history date for the whole import)."""
    from django.utils import timezone

    from hepatrial.ingest.bulk import fast_create_with_history

    when = timezone.now()
    n = 0
    for start in range(0, len(new), chunk):
        data = _lab_columns(new.iloc[start:start + chunk], participant_ids)
        n += fast_create_with_history(_lab_model(), data, key_columns=("visit_id", "analyte"),
                                      reason=reason, user_id=user.pk, date=when, chunk=chunk)
    return n


def _apply_changes(changed: pd.DataFrame, *, reason: str, user: Any,
                   has_lab_column: bool) -> int:
    from hepatrial.trials import audit
    from hepatrial.trials.models import LabResult

    if changed.empty:
        return 0
    objs = {o.pk: o for o in LabResult.objects.filter(
        pk__in=changed["lab_id"].astype("int64").tolist())}
    out = []
    for r in changed.itertuples(index=False):
        o = objs[int(r.lab_id)]
        o.value_as_entered = r.value
        o.unit_as_entered = r.unit
        o.value = float(r.value_canonical)
        o.unit = r.unit_canonical
        o.specimen_date = r.date_parsed.date()
        if has_lab_column:
            o.laboratory = r.lab
        out.append(o)
    fields = ["value_as_entered", "unit_as_entered", "value", "unit", "specimen_date"]
    if has_lab_column:
        fields.append("laboratory")
    # audit.bulk_update: one UPDATE per batch, a ``~`` history row with the reason and a ledger
    # entry per row, atomically (tests/store/test_audit.py checks it)
    return audit.bulk_update(LabResult, out, fields, reason=reason, user=user)


def _create_visits(missing: pd.DataFrame, protocol: Any, participants: dict[str, int], *,
                   user: Any, reason: str) -> dict[tuple[str, str], int]:
    """Create protocol visits that labs refer to but the store does not have yet.

    ``missing`` has ``participant, visit, date``: the visit's actual date is the earliest
    specimen date of its rows.
    """
    from hepatrial.trials import audit
    from hepatrial.trials.models import Participant, Visit

    if missing.empty:
        return {}
    enrol = dict(Participant.objects.filter(
        study_id__in=missing["participant"].unique().tolist()).values_list(
            "study_id", "enrolment_date"))
    objs = []
    for r in missing.itertuples(index=False):
        pv = protocol.visit(r.visit)
        day0 = enrol.get(r.participant)
        actual = r.date
        objs.append(Visit(
            participant_id=participants[r.participant], code=pv.code, label=pv.label,
            nominal_day=pv.target_day, window_lower=pv.window_lower,
            window_upper=pv.window_upper,
            scheduled_date=(day0 + _dt.timedelta(days=pv.target_day)) if day0 else None,
            actual_date=actual, status=_visit_status(pv, day0, actual)))
    created = audit.bulk_create(Visit, objs, user=user, reason=reason)
    _window_deviations([_VisitDone(o.pk, o.participant_id, o.code, o.nominal_day,
                                   o.window_lower, o.window_upper, o.actual_date, o.status,
                                   enrol.get(r.participant))
                        for r, o in zip(missing.itertuples(index=False), created, strict=True)],
                       user=user, reason=reason)
    return {(r.participant, r.visit): o.pk
            for r, o in zip(missing.itertuples(index=False), created, strict=True)}


@dataclass
class _VisitDone:
    """A visit whose actual date an import records (created, or scheduled and now done)."""

    pk: int
    participant_id: int
    code: str
    nominal_day: int
    window_lower: int
    window_upper: int
    actual_date: _dt.date
    status: str
    day0: _dt.date | None


def _window_deviations(visits: list[_VisitDone], *, user: Any, reason: str) -> int:
    """A ``visit_window`` protocol deviation for each visit done early or late (as
    ``services.record_visit`` does for visits recorded one at a time)."""
    from hepatrial.trials import audit
    from hepatrial.trials.models import ProtocolDeviation

    devs = []
    for v in visits:
        if v.status not in ("early", "late"):
            continue
        day = (v.actual_date - v.day0).days if v.day0 else None
        lo, hi = v.nominal_day + v.window_lower, v.nominal_day + v.window_upper
        devs.append(ProtocolDeviation(
            participant_id=v.participant_id, visit_id=v.pk, category="visit_window",
            description=(f"visit {v.code} on day {day} ({v.actual_date}) is {v.status}: window "
                         f"is day {lo} to {hi} (target {v.nominal_day}); found by import"),
            date=v.actual_date, detected_by="system"))
    audit.bulk_create(ProtocolDeviation, devs, user=user, reason=reason)
    return len(devs)


def _scheduled_without_date(frame: pd.DataFrame, visit_ids: dict[tuple[str, str], int]
                            ) -> list[dict[str, Any]]:
    """Stored visits the file's rows refer to that are still ``scheduled`` without a date."""
    from hepatrial.trials.models import Visit

    pending = {pk: v for pk, v in ((v["id"], v) for v in Visit.objects.filter(
        actual_date__isnull=True, status="scheduled").values(
            "id", "participant_id", "participant__enrolment_date", "code", "nominal_day",
            "window_lower", "window_upper"))}
    if not pending:
        return []
    first = frame.groupby(["participant", "visit"], sort=True)["date_parsed"].min()
    out = []
    for (sid, code), when in first.items():
        pk = visit_ids.get((sid, code))
        if pk is not None and pk in pending:
            out.append({**pending[pk], "actual_date": when.date()})
    return out


def _record_visit_dates(pending: list[dict[str, Any]], *, user: Any, reason: str) -> int:
    """Record actual date (earliest specimen date) and window status of scheduled visits, with
    ``~`` history rows and ledger entries, and their window deviations."""
    from django.utils import timezone

    from hepatrial.ingest.bulk import fast_update_with_history
    from hepatrial.trials.models import Visit

    if not pending:
        return 0
    done = []
    for v in pending:
        day0 = v["participant__enrolment_date"]
        day = (v["actual_date"] - day0).days if day0 else None
        lo, hi = v["nominal_day"] + v["window_lower"], v["nominal_day"] + v["window_upper"]
        status = ("in_window" if day is None or lo <= day <= hi
                  else "early" if day < lo else "late")
        done.append(_VisitDone(v["id"], v["participant_id"], v["code"], v["nominal_day"],
                               v["window_lower"], v["window_upper"], v["actual_date"], status,
                               day0))
    fast_update_with_history(
        Visit, [d.pk for d in done],
        {"actual_date": [d.actual_date for d in done], "status": [d.status for d in done]},
        reason=reason, user_id=user.pk, date=timezone.now())
    _window_deviations(done, user=user, reason=reason)
    return len(done)


def _visit_status(pv: Any, day0: _dt.date | None, actual: _dt.date | None) -> str:
    if actual is None:
        return "scheduled"
    if day0 is None:
        return "in_window"
    day = (actual - day0).days
    status = pv.classify(day)
    return str(getattr(status, "value", status))


# --------------------------------------------------------------------------- labs


def rejects_target(path: Path, rejects_path: str | Path | None, dry_run: bool) -> Path | None:
    """Where a refused import writes its rejects CSV: ``rejects_path``; by default
    ``<FILE>.rejects.csv`` beside the file - except for a dry run, which writes nothing at
    all unless a rejects file is asked for."""
    if rejects_path is not None:
        return Path(rejects_path)
    return None if dry_run else path.with_name(path.name + ".rejects.csv")


def _refuse(rejects: pd.DataFrame, rejects_path: Path | None, message: str,
            result: ImportResult) -> ImportRefused:
    """The refusal (nothing written); :func:`finish_refusal` writes its rejects file."""
    result.rejects = rejects
    result.rejects_path = rejects_path
    return ImportRefused(message, rejects, result)


def finish_refusal(exc: ImportRefused, rejects_path: Path | None) -> ImportRefused:
    """Write the rejects file of a refusal, after the import's transaction is over.

    A rejects file that cannot be written (read-only or full folder) does not hide the
    reasons: the refusal keeps its rejects, and ``exc.rejects_error`` says why the file is
    missing (the command reports it as its own error)."""
    exc.rejects_path = None
    if rejects_path is not None and exc.rejects is not None and not exc.rejects.empty:
        try:
            write_rejects(exc.rejects, rejects_path)
            exc.rejects_path = rejects_path
        except OSError as err:
            exc.rejects_error = err
    if exc.result is not None:
        exc.result.rejects_path = exc.rejects_path
    return exc


def import_labs(
    path: str | Path,
    *,
    db: str | Path | None = None,
    dry_run: bool = False,
    reason: str | None = None,
    user: str | None = None,
    rejects_path: str | Path | None = None,
    chunk: int = 50_000,
    today: _dt.date | None = None,
) -> ImportResult:
    """Import a long lab file (``participant, visit, analyte, value, unit, date[, lab]``).

    Participants must exist; visit codes must be protocol visits (created when missing, with
    the earliest specimen date as actual date) or visits already stored for the participant.
    Raises :class:`ImportRefused` (nothing written) when any row is rejected or when values
    differ from stored ones and no ``reason`` was given; ``RecordLocked`` when a lock covers
    what the file writes; ``NotFoundError``/``PermissionDenied`` for ``user``.
    """
    t0 = time.perf_counter()
    path = Path(path)
    target = rejects_target(path, rejects_path, dry_run)
    frame = read_text_csv(path, required=LAB_REQUIRED, allowed=LAB_COLUMNS)
    _setup(db)
    acting = acting_user(user, create_system=not dry_run)
    result = ImportResult(rows=len(frame), dry_run=dry_run)
    try:
        with import_transaction(dry_run):
            _import_labs(path, frame, result, reason=reason, user=acting, dry_run=dry_run,
                         chunk=chunk, today=today, rejects_path=target)
    except ImportRefused as exc:
        raise finish_refusal(exc, target) from None
    result.seconds = time.perf_counter() - t0
    return result


def _import_labs(path: Path, frame: pd.DataFrame, result: ImportResult, *, reason: str | None,
                 user: Any, dry_run: bool, chunk: int, today: _dt.date | None,
                 rejects_path: Path | None) -> None:
    from hepatrial.ingest.catalog import registry_catalog

    index = StoreIndex.load()
    validation: Validation = validate_labs(
        frame, catalog=registry_catalog(), visits=index.protocol.visit_codes,
        participants=index.participants.keys(), participant_visits=index.visits.keys(),
        today=today, birth_years=index.birth_years, text_limits=lab_text_limits())
    rejects = validation.rejects
    good = validation.frame.loc[~validation.frame["row"].isin(rejects["row"]).to_numpy()]
    rejects = rejects_frame([rejects, visit_rejects(good, index, index.protocol, today=today)])
    if not rejects.empty:
        n = int(rejects["row"].nunique())
        raise _refuse(rejects, rejects_path,
                      f"{n} of {len(frame)} rows rejected; nothing was imported", result)
    has_lab = "lab" in frame.columns
    plan = plan_labs(validation.frame, index.visits, has_lab_column=has_lab)
    reason = (reason or "").strip() or None
    if not plan.changed.empty and reason is None:
        rej = rejects_frame([_changes_need_reason(plan.changed)])
        raise _refuse(rej, rejects_path,
                      f"{len(plan.changed)} row(s) differ from stored values and no --reason was "
                      "given; nothing was imported", result)
    result.created, result.changed, result.unchanged = (len(plan.new), len(plan.changed),
                                                        plan.unchanged)
    new_visits = plan.new.loc[plan.new["visit_id"] < 0]
    missing = (new_visits.groupby(["participant", "visit"], sort=True)["date_parsed"].min()
               .dt.date.rename("date").reset_index())
    result.visits_created = len(missing)
    pending = _scheduled_without_date(validation.frame, index.visits)
    result.visits_dated = len(pending)
    if plan.new.empty and plan.changed.empty and not pending:
        if len(frame):
            result.notes.append("every row is already stored unchanged: nothing to import")
        return
    touched = pd.concat([plan.new["participant"], plan.changed["participant"]])
    refuse_locked([index.participants.get(p) for p in touched.unique().tolist()],
                  [*plan.new["visit_id"].unique().tolist(),
                   *plan.changed["visit_id"].unique().tolist()], f"import labs {path.name}")
    if dry_run:
        return

    create_reason = f"import labs {path.name}"
    visit_ids = dict(index.visits)
    visit_ids.update(_create_visits(missing, index.protocol, index.participants,
                                    user=user, reason=create_reason))
    _record_visit_dates(pending, user=user,
                        reason=f"{create_reason}: visit done on the earliest specimen date")
    new = plan.new
    if not missing.empty:
        new = new.assign(visit_id=_visit_ids_of(new, visit_ids))
    insert_labs(new, index.participants, reason=create_reason, user=user, chunk=chunk)
    if reason is not None:
        _apply_changes(plan.changed, reason=reason, user=user, has_lab_column=has_lab)


def _lab_model() -> Any:
    from hepatrial.trials.models import LabResult

    return LabResult
