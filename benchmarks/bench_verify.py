"""Benchmark: ``hepatrial audit verify`` of a store with ≥ 1M ledger entries.

    uv run python benchmarks/bench_verify.py [--rows 1000000] [--dir DIR] [--reuse]
                                             [--reference] [--tamper]

Setup (not timed): ``benchmarks/bench_import.py --rows N`` builds the store in DIR (default: a
temporary directory; with ``HEPATRIAL_DATABASE_URL`` set, that empty PostgreSQL database): a
synthetic cohort of ``ceil(N / 56)`` participants with their 7 visits, then N lab results
imported through ``import labs`` — N + 8 N / 56 + N / 56 ledger entries (1.14M for N = 1M).
``--reuse`` keeps a store made earlier in DIR.

Timed, each in a fresh process (so that the peak RSS is the verification's own):
:func:`hepatrial.trials.audit.verify` (columnar, streaming), and with ``--reference`` the
former row-by-row implementation kept in ``tests/store/test_audit_verify.py``. Prints wall
seconds, CPU seconds of the process (the machine may be shared: CPU time is the steadier
figure), peak RSS and the RSS before verifying, the ledger entries per second, the problems.

``--tamper`` (SQLite): on a copy of the store, a few raw-SQL edits (a live value, a history
row, a ledger digest, a deleted ledger entry, a raw grant); both implementations must list the
same problems (kind, model, object) — except the grant, which only the new one covers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

MEASURE = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[3])
from hepatrial.trials import setup
setup(sys.argv[1])
from hepatrial.trials.models import AuditLedger
n = AuditLedger.objects.count()
if sys.argv[2] == "reference":
    from tests.store.test_audit_verify import reference_verify as run
else:
    from hepatrial.trials.audit import verify as run
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t, c = time.perf_counter(), time.process_time()
problems = run()
wall, cpu = time.perf_counter() - t, time.process_time() - c
print(json.dumps({"wall": wall, "cpu": cpu, "ledger": n, "rss_before": rss0,
                  "rss_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "problems": sorted({(p.kind, p.model, p.object_pk) for p in problems})}))
"""

TAMPER = [
    "UPDATE trials_labresult SET value_as_entered = '9.9' WHERE id = 1000",
    "UPDATE trials_historicallabresult SET value = 1.5 WHERE history_id = 500000",
    "UPDATE trials_auditledger SET digest = '" + "f" * 64 + "' WHERE seq = 700000",
    "DELETE FROM trials_auditledger WHERE seq = 900000",
    "INSERT INTO auth_user_user_permissions (user_id, permission_id) SELECT u.id, p.id FROM "
    "auth_user u, auth_permission p WHERE u.username = 'system' AND p.codename = 'delete_site'",
]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}


def measure(db: Path, impl: str) -> dict:
    """Run one verification in a fresh process; its figures."""
    r = subprocess.run([sys.executable, "-c", MEASURE, str(db), impl, str(REPO)],
                       env=_env(), capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"{impl} verification failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def report(name: str, m: dict) -> None:
    """Print one measurement."""
    print(f"{name}: {m['ledger']:,} ledger entries  {m['wall']:.2f} s wall  {m['cpu']:.2f} s "
          f"CPU  ({m['ledger'] / m['cpu']:,.0f} entries per CPU-second)  peak RSS "
          f"{m['rss_peak']:,.0f} MiB (before verifying {m['rss_before']:,.0f} MiB)  "
          f"problems: {len(m['problems'])}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="lab rows imported")
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: temp)")
    ap.add_argument("--reuse", action="store_true", help="keep a store made earlier in --dir")
    ap.add_argument("--reference", action="store_true",
                    help="also time the former row-by-row verify (slow, ~2.5 GiB)")
    ap.add_argument("--tamper", action="store_true",
                    help="SQLite: tamper with a copy; both implementations must agree")
    args = ap.parse_args(argv)
    work = args.dir or Path(tempfile.mkdtemp(prefix="hepatrial-bench-verify-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / "bench.sqlite3"
    pg = bool(os.environ.get("HEPATRIAL_DATABASE_URL", "").strip())
    if not (args.reuse and (db.exists() or pg)):
        print(f"building the store: bench_import.py --rows {args.rows} --dir {work}", flush=True)
        subprocess.run([sys.executable, str(HERE / "bench_import.py"), "--rows",
                        str(args.rows), "--dir", str(work)], env=_env(), check=True)
    new = measure(db, "columnar")
    report("audit.verify (columnar)", new)
    if new["problems"]:
        print("  unexpected problems:", new["problems"][:5])
        return 1
    if args.reference:
        ref = measure(db, "reference")
        report("reference (row by row)", ref)
        print(f"speed-up: {ref['wall'] / new['wall']:.1f}x wall, {ref['cpu'] / new['cpu']:.1f}x "
              f"CPU; memory: {ref['rss_peak'] - ref['rss_before']:,.0f} MiB -> "
              f"{new['rss_peak'] - new['rss_before']:,.0f} MiB above the process's start")
    if args.tamper:
        if pg:
            print("--tamper: SQLite only (skipped)")
            return 0
        import sqlite3

        copy = work / "tampered.sqlite3"
        shutil.copyfile(db, copy)
        with sqlite3.connect(copy) as con:
            for sql in TAMPER:
                con.execute(sql)
        a, b = measure(copy, "columnar"), measure(copy, "reference")
        report("tampered, audit.verify", a)
        report("tampered, reference", b)
        extra = {tuple(p) for p in a["problems"]} - {tuple(p) for p in b["problems"]}
        missing = {tuple(p) for p in b["problems"]} - {tuple(p) for p in a["problems"]}
        print(f"  found by both: {len(a['problems']) - len(extra)}; only the new one (auth "
              f"tables): {sorted(extra)}; only the reference: {sorted(missing)}")
        if missing or {k for k, *_ in extra} - {"live_edited"}:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
