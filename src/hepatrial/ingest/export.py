"""Read the trial store into the tables of docs/contracts.md (§1 dataset, §2 participants,
§3 adverse events, §4 bundle) and write the dataset deterministically.

All functions take ``db`` (SQLite path; ``HEPATRIAL_DATABASE_URL`` wins) and configure Django
themselves; with ``db=None`` an already configured store (e.g. under pytest-django) is used.
Rows come out in a fixed order, so the same store always gives byte-identical files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from hepatrial import errors as _errors
from hepatrial.ingest.dataset import assemble_dataset, sort_dataset
from hepatrial.protocol.models import UNSCHEDULED
from hepatrial.vocab import ADVERSE_EVENT_COLUMNS as AE_COLUMNS
from hepatrial.vocab import DATASET_COLUMNS, PARTICIPANT_COLUMNS

__all__ = [
    "AE_COLUMNS",
    "DATASET_COLUMNS",
    "PARTICIPANT_COLUMNS",
    "adverse_events",
    "dataset",
    "participants",
    "trial_data",
    "write_dataset",
    "write_participants",
]

UNSCHEDULED_PREFIX = "UNS-D"


class OutputNameError(_errors.InputError):
    """The output file name cannot be written to (not .csv/.parquet, a directory)."""


def _setup(db: str | Path | None) -> None:
    from django.conf import settings

    from hepatrial.ingest.importer import refuse_missing_sqlite

    if db is None and settings.configured:
        from django.apps import apps

        if apps.ready:
            refuse_missing_sqlite()
            return
    from hepatrial.trials import setup

    setup(db)
    refuse_missing_sqlite()


def _display_visits(frame: pd.DataFrame) -> pd.DataFrame:
    """Stored unscheduled codes ``UNS-D<day>`` are shown as the protocol's ``UNS``."""
    is_uns = frame["visit"].str.startswith(UNSCHEDULED_PREFIX)
    if is_uns.any():
        frame = frame.copy()
        frame.loc[is_uns, "visit"] = UNSCHEDULED
        frame = sort_dataset(frame)
    return frame


def dataset(db: str | Path | None = None, *, derived: bool = True) -> pd.DataFrame:
    """The analysis dataset (contracts.md §1): measured rows in canonical units (lab results,
    weight, and the assessed clinical items of
    :data:`hepatrial.trials.selectors.CLINICAL_ANALYTES` - ``ascites``, ``hepatomegaly``,
    ``spiders``, ``edema``, ``histologic_stage``, unit ``1``) plus, with
    ``derived``, every score :func:`hepatrial.scores.score_columns` can compute per visit from
    that visit's labs, clinical assessment and the participant's sex and age
    (``source = derived``, unit ``points``). Everything is read through
    :mod:`hepatrial.trials.selectors`."""
    _setup(db)
    from hepatrial.trials import selectors

    return _dataset(selectors.participants_frame(), derived=derived)


def _dataset(ppl: pd.DataFrame, *, derived: bool) -> pd.DataFrame:
    from hepatrial.trials import selectors

    visits = selectors.visits_frame()
    clin = selectors.clinical_frame().rename(columns={"dialysis_last_week": "dialysis"})
    measured = selectors.measurements_frame()
    out = assemble_dataset(measured, visits, ppl, clin, derived=derived)
    return _display_visits(out)


def participants(db: str | Path | None = None) -> pd.DataFrame:
    """Participants table (contracts.md §2): :func:`hepatrial.trials.selectors.participants_frame`
    (age at consent in whole years; dose = total cells over all administrations, with their
    count ``n_administrations``), one row per participant, sorted by id."""
    _setup(db)
    from hepatrial.trials import selectors

    return selectors.participants_frame()


def adverse_events(db: str | Path | None = None) -> pd.DataFrame:
    """Adverse events (contracts.md §3): :func:`hepatrial.trials.selectors.adverse_events_frame`,
    sorted by participant, onset day, term; days from day 0 (NA when not enrolled or not
    resolved); ``related`` is the relatedness category."""
    _setup(db)
    from hepatrial.trials import selectors

    return selectors.adverse_events_frame()


def trial_data(db: str | Path | None = None, *, derived: bool = True) -> Any:
    """The analysis bundle (contracts.md §4): ``hepatrial.analysis.TrialData(dataset,
    participants, adverse_events, protocol_summary)``, every table read through
    :mod:`hepatrial.trials.selectors` (the participants table is read once and used both as
    the bundle's table and for the ages of the derived scores)."""
    _setup(db)
    from hepatrial.analysis import TrialData
    from hepatrial.trials import selectors
    from hepatrial.trials.services import active_protocol

    ppl = selectors.participants_frame()
    return TrialData(_dataset(ppl, derived=derived), ppl, selectors.adverse_events_frame(),
                     active_protocol().summary_dict(), selectors.products_frame())


def _atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then move it into place.

    The temporary file is created with mode 0666 less the umask (as ``open()`` would), not
    ``mkstemp``'s 0600, so the output gets the user's normal permissions."""
    import secrets

    parent = path.parent if str(path.parent) else Path(".")
    tmp = parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _check_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise OutputNameError(f"{path}: output must end in .csv or .parquet")
    if path.exists() and not path.is_file():
        raise OutputNameError(f"{path}: is a directory (give a file name ending in {suffix})")
    return suffix


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell passed through :func:`hepatrial.textrules.csv_cell`
    (a text a spreadsheet would run as a formula gets a leading ``'``; numbers untouched)."""
    from hepatrial.textrules import FORMULA_PATTERN, csv_cell

    out = None
    for col in frame.columns:
        if not (pd.api.types.is_object_dtype(frame[col].dtype)
                or pd.api.types.is_string_dtype(frame[col].dtype)):
            continue
        risky = frame[col].map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        if not risky.any():
            continue
        text = frame[col].where(risky, "")
        hit = text.astype(str).str.match(FORMULA_PATTERN).to_numpy(dtype=bool)
        if hit.any():
            out = frame.copy() if out is None else out
            out[col] = [csv_cell(v) if h else v for v, h in zip(frame[col], hit, strict=True)]
    return frame if out is None else out


def _write_frame(frame: pd.DataFrame, path: Path, suffix: str) -> None:
    def write(tmp: str) -> None:
        if suffix == ".csv":
            csv_safe(frame).to_csv(tmp, index=False, lineterminator="\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            pq.write_table(table, tmp, compression="zstd")

    _atomic_write(path, write)


def write_dataset(path: str | Path, db: str | Path | None = None, *,
                  derived: bool = True) -> pd.DataFrame:
    """Write :func:`dataset` to ``path`` (``.csv`` or ``.parquet``), atomically and
    deterministically (same store → same bytes). Returns the frame written."""
    path = Path(path)
    suffix = _check_suffix(path)
    frame = dataset(db, derived=derived)
    if tuple(frame.columns) != DATASET_COLUMNS:  # pragma: no cover - contract guard
        raise ValueError(f"dataset columns {list(frame.columns)} are not {DATASET_COLUMNS}")
    _write_frame(frame, path, suffix)
    return frame


def write_participants(path: str | Path, db: str | Path | None = None) -> pd.DataFrame:
    """Write :func:`participants` to ``path`` (``.csv`` or ``.parquet``), atomically and
    deterministically; dates as ``YYYY-MM-DD``, missing values empty. Returns the frame."""
    path = Path(path)
    suffix = _check_suffix(path)
    frame = participants(db)
    out = frame.copy()
    for c in ("status_date", "enrolment_date"):
        out[c] = out[c].dt.strftime("%Y-%m-%d").astype(object).where(out[c].notna(), None)
    _write_frame(out, path, suffix)
    return frame
