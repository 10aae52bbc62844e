"""Benchmark: import N synthetic lab rows through the real `import labs` path.

    uv run python benchmarks/bench_import.py [--rows 1000000] [--seed 20090101] [--tracemalloc]

Setup (not timed): a fresh SQLite store in a temporary directory (or, with
``HEPATRIAL_DATABASE_URL`` set, that PostgreSQL database, which must be empty), migrated, protocol
``kharaziha2009`` installed, a synthetic cohort of ``ceil(rows / 56)`` participants registered
and their 7 protocol visits recorded as done (bulk, with history and audit ledger), as happens
at enrolment and at the visits. The lab file (8 analytes x 7 visits per participant, mixed
conventional and SI units, values as text with 1-3 decimals, seeded) is written to CSV.

Timed: :func:`hepatrial.ingest.importer.import_labs` on that file - read, whole-file validation,
comparison with the store, then one transaction writing every lab result with its history row
(reason + user) and its audit-ledger entry. Afterwards the counts are checked and, with
``--verify``, the whole audit chain is recomputed (``hepatrial.trials.audit.verify``).

Prints rows/s and peak memory: process peak RSS (``resource.getrusage``), and with
``--tracemalloc`` the peak of Python allocations during the import (slower run).
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

VISITS = ("SCR", "D0", "W1", "W2", "W4", "W8", "W24")
DAYS = (-14, 0, 7, 14, 28, 56, 168)
# analyte, unit as written, mean, sd, decimals, clip low, clip high (values in that unit)
ANALYTES = (
    ("bilirubin", "mg/dL", 2.5, 1.0, 2, 0.3, 30.0),
    ("creatinine", "umol/L", 95.0, 25.0, 0, 30.0, 600.0),
    ("inr", "1", 1.5, 0.3, 2, 0.8, 6.0),
    ("albumin", "g/dL", 3.1, 0.4, 1, 1.5, 5.5),
    ("sodium", "mmol/L", 136.0, 4.0, 0, 115.0, 155.0),
    ("ast", "U/L", 70.0, 25.0, 0, 8.0, 900.0),
    ("alt", "U/L", 55.0, 20.0, 0, 6.0, 900.0),
    ("platelets", "10^9/L", 120.0, 40.0, 0, 15.0, 600.0),
)
DAY0 = dt.date(2024, 1, 8)


def make_file(path: Path, rows: int, seed: int) -> int:
    """Write the synthetic long lab file; returns the number of participants."""
    rng = np.random.default_rng(seed)
    per = len(VISITS) * len(ANALYTES)
    n_part = math.ceil(rows / per)
    pid = np.repeat(np.array([f"X{i:06d}" for i in range(1, n_part + 1)]), per)[:rows]
    vidx = np.tile(np.repeat(np.arange(len(VISITS)), len(ANALYTES)), n_part)[:rows]
    aidx = np.tile(np.arange(len(ANALYTES)), n_part * len(VISITS))[:rows]
    values = np.empty(rows, dtype=object)
    units = np.empty(rows, dtype=object)
    for k, (_code, unit, mean, sd, dec, lo, hi) in enumerate(ANALYTES):
        m = aidx == k
        v = np.clip(rng.normal(mean, sd, m.sum()), lo, hi)
        values[m] = np.char.mod(f"%.{dec}f", v)
        units[m] = unit
    days = np.array(DAYS)[vidx] + rng.integers(0, 2, rows) * (np.array(DAYS)[vidx] > 0)
    dates = pd.to_datetime(DAY0) + pd.to_timedelta(days, unit="D")
    frame = pd.DataFrame({
        "participant": pid,
        "visit": np.array(VISITS)[vidx],
        "analyte": np.array([a[0] for a in ANALYTES])[aidx],
        "value": values,
        "unit": units,
        "date": dates.strftime("%Y-%m-%d"),
        "lab": "central",
    })
    frame.to_csv(path, index=False, lineterminator="\n")
    return n_part


def make_store(db: Path, n_part: int) -> None:
    """Fresh store with the cohort and its scheduled visits (bulk, audited)."""
    from hepatrial.trials import setup

    setup(db)
    from django.db import transaction

    from hepatrial.trials import audit, migrate, services
    from hepatrial.trials.models import Arm, Participant, Site, Visit

    migrate()
    services.install_protocol("kharaziha2009")
    proto = services.active_protocol()
    site = Site.objects.get(code="S01")
    arm_id = Arm.objects.get().pk
    user = services.system_user()
    # the account the import is recorded under (an import does not create accounts)
    services.create_user(username="benchmark", password=None, role="data-manager")
    with transaction.atomic():
        ppl = audit.bulk_create(Participant, [
            Participant(study_id=f"X{i:06d}", site=site, sex="MF"[i % 2],
                        year_of_birth=1950 + i % 40, etiology="HBV", screening_date=DAY0,
                        status="enrolled", status_date=DAY0, arm_id=arm_id,
                        enrolment_date=DAY0, screening_data={})
            for i in range(1, n_part + 1)], user=user, reason="benchmark cohort",
            batch_size=2000)
        visits = [Visit(participant_id=p.pk, code=v.code, label=v.label,
                        nominal_day=v.target_day, window_lower=v.window_lower,
                        window_upper=v.window_upper,
                        scheduled_date=DAY0 + dt.timedelta(days=v.target_day),
                        actual_date=DAY0 + dt.timedelta(days=v.target_day),
                        status="in_window")
                  for p in ppl for v in proto.visits]
        audit.bulk_create(Visit, visits, user=user, reason="benchmark schedule",
                          batch_size=2000)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=20090101)
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: temp)")
    ap.add_argument("--tracemalloc", action="store_true",
                    help="also trace Python allocations (slower; reports their peak)")
    ap.add_argument("--verify", action="store_true", help="recompute the audit chain after")
    ap.add_argument("--setup-only", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.setup_only is not None:  # child process: write the file, build the store, exit
        t = time.perf_counter()
        n_part = make_file(args.dir / "labs.csv", args.rows, args.seed)
        print(f"file: {args.dir / 'labs.csv'} ({args.rows} rows, {n_part} participants, "
              f"{(args.dir / 'labs.csv').stat().st_size / 2**20:.1f} MiB) "
              f"in {time.perf_counter() - t:.1f} s", flush=True)
        t = time.perf_counter()
        make_store(args.dir / "bench.sqlite3", n_part)
        print(f"store: {n_part} participants, {n_part * len(VISITS)} visits done, "
              f"in {time.perf_counter() - t:.1f} s", flush=True)
        return 0

    work = args.dir or Path(tempfile.mkdtemp(prefix="hepatrial-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    csv, db = work / "labs.csv", work / "bench.sqlite3"
    if db.exists():
        db.unlink()
    # file and store are made in a child process so that peak RSS below is the import's own
    subprocess.run([sys.executable, __file__, "--dir", str(work), "--rows", str(args.rows),
                    "--seed", str(args.seed), "--setup-only", "1"], check=True)

    from hepatrial.trials import setup

    setup(db)
    from hepatrial.ingest.importer import import_labs
    from hepatrial.trials.models import AuditLedger, LabResult

    LabResult.objects.exists()  # connect and load Django before measuring
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.tracemalloc:
        tracemalloc.start()
    cpu = time.process_time()
    t = time.perf_counter()
    result = import_labs(csv, user="benchmark", today=dt.date(2030, 1, 1))
    seconds = time.perf_counter() - t
    cpu = time.process_time() - cpu
    traced = None
    if args.tracemalloc:
        traced = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    n = LabResult.objects.count()
    assert n == args.rows == result.created, (n, result.created)
    assert LabResult.history.count() == args.rows
    print(f"import: {result.summary()}")
    print(f"rows: {args.rows}  time: {seconds:.2f} s  rate: {args.rows / seconds:,.0f} rows/s  "
          f"(CPU {cpu:.2f} s: {args.rows / cpu:,.0f} rows per CPU-second)")
    print(f"peak RSS: {rss:,.0f} MiB (before import: {rss_before:,.0f} MiB)"
          + (f"  tracemalloc peak: {traced:,.0f} MiB" if traced is not None else ""))
    from django.db import connection

    size = (f"db size: {db.stat().st_size / 2**20:,.0f} MiB" if db.exists()
            else f"database: {connection.vendor}")
    print(f"ledger rows: {AuditLedger.objects.count()}  {size}")
    if args.verify:
        from hepatrial.trials import audit

        t = time.perf_counter()
        problems = audit.verify()
        print(f"audit.verify: {len(problems)} problem(s) in {time.perf_counter() - t:.1f} s")
        if problems:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
