"""Benchmark: the eCRF under load - N simulated coordinators and investigators on the real
production server (``hepatrial serve``: waitress + WhiteNoise) over a store of a multi-site trial.

    uv run python benchmarks/bench_web.py [--participants 2000] [--users 20] [--seconds 30]
                                          [--think 1.0] [--threads 8] [--sqlite] [--quick]

Setup (not timed, in a child process): a scratch PostgreSQL database with a unique name on
``--pg`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``, or
``HEPATRIAL_TEST_PG_URL``; dropped at the end), or with ``--sqlite`` a SQLite file in a
temporary folder; migrated, protocol ``kharaziha2009`` installed, ``users // 5`` sites (at least
one), ``participants`` enrolled participants spread over the sites with day 0 from 0 to 220
days ago, their consent and the 7 protocol visits: visits whose window has closed done (one in
ten left overdue), visits in their window done one in two, later ones scheduled; every done
visit with the lab panel the protocol asks for (SI units, seeded values in the expected
ranges). Written in bulk with history rows and audit-ledger entries
(:func:`hepatrial.trials.audit.bulk_create`, the importers' path). One account per simulated
user (``services.create_user``; coordinators and investigators alternating, each of one site).

Timed: ``hepatrial serve`` in a subprocess on a free port; each simulated user is a thread
with its own HTTP session (``requests``) that signs in on the eCRF sign-in page (Django
session, CSRF token from the form), then until the time is up: opens the casebook of a random
participant of its share of the site's participants (the users of a site share them out, as
coordinators share their patients), opens the CRF of one of its done visits, saves the CRF
through the form (the lab panel as the page lists it, with the form's hidden fields; new values
with a reason for the change; POST, then the redirect back to the CRF, counted as a CRF GET)
and every fourth round opens its worklist, waiting ``--think`` seconds (exponential, mean)
between requests. Sign-in and a first round per user are a warm-up, not counted.

Prints, per page kind, the latency seen by the client on the loopback (server time plus the
loopback; includes waiting for a free server thread): p50/p95/p99 and max in ms, and requests/s
over the timed window; PASS/FAIL against the target p95 < 150 ms for the casebook and the
CRF save; the server's CPU time per request and the machine's load average (the latencies are
only as good as the CPU the server got). Exit status 1 when a request failed (an unexpected
status), else 0.
Synthetic data, not patient data.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

PASSWORD = "bench-web correct horse 2026"
PG_ADMIN_URL = os.environ.get("HEPATRIAL_TEST_PG_URL",
                              "postgresql://postgres@127.0.0.1:5432/postgres")
TARGET_MS = 150.0
KINDS = ("casebook GET", "CRF GET", "CRF save POST", "worklist GET")
TARGETED = ("casebook GET", "CRF save POST")
#: SI values drawn for the lab panel: analyte -> (low, high, decimals), inside the expected
#: (soft) range of the analyte registry, so that no save needs a confirmation
VALUES = {"bilirubin": (20.0, 80.0, 0), "creatinine": (60.0, 140.0, 0), "inr": (1.1, 2.0, 2),
          "albumin": (25.0, 40.0, 0), "sodium": (128.0, 142.0, 0), "ast": (30.0, 120.0, 0),
          "alt": (25.0, 100.0, 0), "platelets": (60.0, 200.0, 0)}


def _value(rng: random.Random, analyte: str, lo: float, hi: float) -> str:
    a, b, dec = VALUES.get(analyte, (lo + (hi - lo) * 0.2, lo + (hi - lo) * 0.4, 1))
    return f"{rng.uniform(a, b):.{dec}f}"


# ---------------------------------------------------------------------- setup (child process)
def build_store(n: int, n_users: int, seed: int, db: str | None) -> dict[str, Any]:
    """The synthetic trial in the store named by ``HEPATRIAL_DATABASE_URL`` (or SQLite ``db``);
    returns the plan of the load phase: ``{users: [{username, site}], sites: {code:
    [[study_id, [visit codes done]], ...]}}``."""
    from hepatrial.trials import migrate, setup

    setup(db)
    migrate()
    from django.db import transaction

    from hepatrial.protocol import analytes
    from hepatrial.trials import audit, services
    from hepatrial.trials.models import Arm, Consent, LabResult, Participant, Site, Visit
    from hepatrial.trials.validators._common import today as store_today

    rng = random.Random(seed)
    today = store_today()
    services.install_protocol("kharaziha2009")
    proto = services.active_protocol()
    n_sites = max(1, min(n, n_users // 5))
    codes = [f"S{k:02d}" for k in range(1, n_sites + 1)]
    for code in codes[1:]:
        services.create_site(code=code, name=f"benchmark site {code}")
    sites = {s.code: s for s in Site.objects.filter(code__in=codes)}
    arm_id = Arm.objects.order_by("pk").first().pk
    sysu = services.system_user()
    plan: dict[str, Any] = {"users": [], "sites": {c: [] for c in codes}}
    with transaction.atomic():
        ppl = []
        for i in range(n):
            day0 = today - dt.timedelta(days=rng.randrange(0, 221))
            scr = day0 - dt.timedelta(days=14)
            ppl.append(Participant(
                study_id=f"W{i + 1:05d}", site=sites[codes[i % n_sites]], sex="MF"[i % 2],
                year_of_birth=1950 + i % 40, etiology=("HBV", "HCV", "alcohol")[i % 3],
                screening_date=scr, status="enrolled", status_date=day0, arm_id=arm_id,
                enrolment_date=day0, screening_data={}))
        ppl = audit.bulk_create(Participant, ppl, user=sysu, reason="benchmark cohort",
                                batch_size=2000)
        audit.bulk_create(Consent, [Consent(participant_id=p.pk, version="1.0",
                                            date=p.screening_date) for p in ppl],
                          user=sysu, reason="benchmark consent", batch_size=2000)
        visits, done = [], {}
        for p in ppl:
            offset = (today - p.enrolment_date).days
            for v in proto.visits:
                lo, hi = v.target_day + v.window_lower, v.target_day + v.window_upper
                when = p.enrolment_date + dt.timedelta(days=v.target_day)
                take = (v.target_day <= 0 or (hi < offset and rng.random() < 0.9)
                        or (lo <= offset <= hi and v.target_day <= offset
                            and rng.random() < 0.5))
                visits.append(Visit(
                    participant_id=p.pk, code=v.code, label=v.label, nominal_day=v.target_day,
                    window_lower=v.window_lower, window_upper=v.window_upper,
                    scheduled_date=when, actual_date=when if take else None,
                    status="in_window" if take else "scheduled"))
        visits = audit.bulk_create(Visit, visits, user=sysu, reason="benchmark schedule",
                                   batch_size=2000)
        labs = []
        for v in visits:
            if v.actual_date is None:
                continue
            due = [a for a in proto.visit(v.code).measurements if a in analytes.ANALYTES
                   and a != "weight"]
            for a in due:
                reg = analytes.analyte(a)
                text = _value(rng, a, *reg.expected)
                labs.append(LabResult(participant_id=v.participant_id, visit_id=v.pk,
                                      analyte=a, value_as_entered=text,
                                      unit_as_entered=reg.unit, value=float(text),
                                      unit=reg.unit, specimen_date=v.actual_date))
            if due and v.nominal_day > 0:
                done.setdefault(v.participant_id, []).append(v.code)
        audit.bulk_create(LabResult, labs, user=sysu, reason="benchmark labs",
                          batch_size=2000)
    for p in ppl:
        if p.pk in done:
            plan["sites"][p.site.code].append([p.study_id, done[p.pk]])
    for u in range(n_users):
        role = ("coordinator", "investigator")[u % 2]
        site = codes[u % n_sites]
        name = f"bench_{role[:5]}_{u + 1:02d}"
        services.create_user(username=name, password=PASSWORD, role=role, site_codes=[site],
                             printed_name=f"Bench {role} {u + 1}")
        plan["users"].append({"username": name, "site": site, "role": role})
    plan["counts"] = {"participants": len(ppl), "visits": len(visits),
                      "visits_done": sum(v.actual_date is not None for v in visits),
                      "labs": len(labs), "sites": n_sites}
    return plan


# ---------------------------------------------------------------------- load (parent)
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
FORM = re.compile(r'<form[^>]*id="crf-form".*?</form>', re.S)
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
PANEL = re.compile(r'id="lab-panel".*?</table>', re.S)
ANALYTE = re.compile(r'data-analyte="([a-z0-9_]+)"')
DATE = re.compile(r'name="actual_date"[^>]*value="([0-9-]*)"')


class User(threading.Thread):
    """One simulated user: signs in, then casebook, CRF, save, (worklist) until ``stop``."""

    def __init__(self, base: str, spec: dict[str, Any], people: list[list[Any]],
                 args: argparse.Namespace, seed: int, start_at: threading.Event,
                 stop_at: list[float]) -> None:
        super().__init__(daemon=True)
        import requests

        self.base, self.spec, self.people, self.args = base, spec, people, args
        self.rng = random.Random(seed)
        self.session = requests.Session()
        self.start_at, self.stop_at = start_at, stop_at
        self.samples: list[tuple[str, float, float]] = []  # (kind, t_end, ms)
        self.errors: list[str] = []
        self.ready = threading.Event()

    def _req(self, kind: str | None, method: str, path: str, want: tuple[int, ...],
             **kw: Any) -> Any:
        t0 = time.perf_counter()
        r = self.session.request(method, self.base + path, allow_redirects=False, timeout=60,
                                 **kw)
        t1 = time.perf_counter()
        if r.status_code not in want:
            self.errors.append(f"{self.spec['username']} {method} {path}: {r.status_code} "
                               f"{r.text[:300]!r}")
            return None
        if kind is not None and self.start_at.is_set():
            self.samples.append((kind, t1, (t1 - t0) * 1000))
        return r

    def _think(self) -> None:
        if self.args.think > 0:
            time.sleep(min(self.rng.expovariate(1 / self.args.think), 5 * self.args.think))

    def login(self) -> bool:
        r = self._req(None, "GET", "/login/", (200,))
        if r is None:
            return False
        token = CSRF.search(r.text)
        r = self._req(None, "POST", "/login/", (302,), data={
            "csrfmiddlewaretoken": token.group(1) if token else "",
            "username": self.spec["username"], "password": PASSWORD, "next": "/"},
            headers={"Referer": self.base + "/login/"})
        return r is not None

    def round(self, k: int) -> None:
        study_id, codes = self.rng.choice(self.people)
        code = self.rng.choice(codes)
        if self._req("casebook GET", "GET", f"/participants/{study_id}/", (200,)) is None:
            return
        self._think()
        crf = f"/participants/{study_id}/visits/{code}/"
        r = self._req("CRF GET", "GET", crf, (200,))
        if r is None:
            return
        self._think()
        m = FORM.search(r.text)
        page = m.group(0) if m else ""
        panel, date = PANEL.search(page), DATE.search(page)
        form = dict(HIDDEN.findall(page))  # the CSRF token, the form's version field
        form.update({"actual_date": date.group(1) if date else "", "action": "draft",
                     "reason": "benchmark: corrected against the source document"})
        from hepatrial.protocol import analytes

        for a in ANALYTE.findall(panel.group(0) if panel else ""):
            reg = analytes.analyte(a)
            form[f"lab-{a}"] = _value(self.rng, a, *reg.expected)
            form[f"lab-{a}-unit"] = reg.unit
        if self._req("CRF save POST", "POST", crf, (302,), data=form,
                     headers={"Referer": self.base + crf}) is None:
            return
        self._req("CRF GET", "GET", crf, (200,))  # the redirect back to the saved CRF
        if k % 4 == 3:
            self._think()
            self._req("worklist GET", "GET", "/", (200,))
        self._think()

    def run(self) -> None:
        try:
            if not self.login():
                return
            self.round(3)  # warm-up (not counted): every page kind once
            self.ready.set()
            self.start_at.wait()
            k = 0
            while time.perf_counter() < self.stop_at[0]:
                self.round(k)
                k += 1
        except Exception as exc:  # a broken connection is a failed request
            self.errors.append(f"{self.spec['username']}: {type(exc).__name__}: {exc}")
        finally:
            self.ready.set()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process so far (Linux ``/proc``; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def report(users: list[User], t0: float, t1: float, cpu: float | None = None) -> bool:
    """Print the figures (``cpu``: the server's CPU seconds over the window); True when every
    targeted page meets the target."""
    window = t1 - t0
    rows: dict[str, list[float]] = {k: [] for k in KINDS}
    for u in users:
        for kind, t_end, ms in u.samples:
            if t0 <= t_end <= t1:
                rows[kind].append(ms)
    total = sum(len(v) for v in rows.values())
    print(f"{'page':<15} {'n':>6} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>8}")
    ok = True
    for kind in KINDS:
        v = rows[kind]
        p95 = _pct(v, 95)
        verdict = ""
        if kind in TARGETED:
            passed = bool(v) and p95 < TARGET_MS
            ok = ok and passed
            verdict = f"  {'PASS' if passed else 'FAIL'} (target p95 < {TARGET_MS:.0f} ms)"
        print(f"{kind:<15} {len(v):>6} {len(v) / window:>7.1f} {_pct(v, 50):>8.1f} "
              f"{p95:>8.1f} {_pct(v, 99):>8.1f} {max(v, default=float('nan')):>8.1f}{verdict}")
    print(f"{'all':<15} {total:>6} {total / window:>7.1f}  over {window:.1f} s")
    if cpu is not None and total:
        print(f"server CPU: {cpu:.1f} s over the window ({cpu / window:.0%} of one core), "
              f"{cpu / total * 1000:.0f} ms per request; machine load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPU(s)")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--participants", type=int, default=2000)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--think", type=float, default=1.0,
                    help="mean pause of a user between requests, seconds (0: none)")
    ap.add_argument("--threads", type=int, default=8, help="server threads (hepatrial serve)")
    ap.add_argument("--seed", type=int, default=20090101)
    ap.add_argument("--sqlite", action="store_true", help="a SQLite file instead of PostgreSQL")
    ap.add_argument("--pg", default=PG_ADMIN_URL, help="PostgreSQL server (any database on it)")
    ap.add_argument("--quick", action="store_true",
                    help="a small run: 20 participants, 2 users, 3 seconds")
    ap.add_argument("--setup-only", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--reuse", nargs=2, metavar=("DATABASE_URL", "PLAN"), default=None,
                    help=argparse.SUPPRESS)  # development: a store built before, kept
    args = ap.parse_args(argv)
    if args.quick:
        args.participants, args.users, args.seconds = 20, 2, 3.0
    if args.setup_only is not None:  # child: build the store, write the plan, exit
        plan = build_store(args.participants, args.users, args.seed,
                           os.environ.get("BENCH_WEB_SQLITE") or None)
        Path(args.setup_only).write_text(json.dumps(plan), encoding="utf-8")
        return 0

    work = Path(tempfile.mkdtemp(prefix="hepatrial-bench-web-"))
    env = {k: v for k, v in os.environ.items()
           if k not in ("HEPATRIAL_DATABASE_URL", "HEPATRIAL_DB", "DJANGO_SETTINGS_MODULE")}
    env["HEPATRIAL_SECRET_KEY"] = uuid.uuid4().hex * 2
    if args.reuse:
        env["HEPATRIAL_DATABASE_URL"] = args.reuse[0]
        try:
            return run_load(args, env, [], json.loads(Path(args.reuse[1]).read_text()), work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    admin, name, db_args = None, "", []
    try:
        if args.sqlite:
            db = work / "bench.sqlite3"
            env["BENCH_WEB_SQLITE"] = str(db)
            db_args = ["--db", str(db)]
            where = f"SQLite {db}"
        else:
            import psycopg

            admin = psycopg.connect(args.pg, autocommit=True, connect_timeout=5)
            name = f"hepatrial_bench_web_{uuid.uuid4().hex[:10]}"
            admin.execute(f'CREATE DATABASE "{name}"')
            env["HEPATRIAL_DATABASE_URL"] = urlunsplit(urlsplit(args.pg)._replace(
                path="/" + name))
            where = f"PostgreSQL database {name} (scratch, dropped at the end)"
        t = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--participants", str(args.participants),
                        "--users", str(args.users), "--seed", str(args.seed),
                        "--setup-only", str(work / "plan.json")], env=env, check=True)
        plan = json.loads((work / "plan.json").read_text(encoding="utf-8"))
        c = plan["counts"]
        print(f"store: {where}: {c['participants']} participants at {c['sites']} site(s), "
              f"{c['visits']} visits ({c['visits_done']} done), {c['labs']} lab results, "
              f"{len(plan['users'])} accounts; built in {time.perf_counter() - t:.1f} s "
              "(not timed)", flush=True)
        return run_load(args, env, db_args, plan, work)
    finally:
        if admin is not None:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.close()
        shutil.rmtree(work, ignore_errors=True)


def run_load(args: argparse.Namespace, env: dict[str, str], db_args: list[str],
             plan: dict[str, Any], work: Path) -> int:
    """Start the server, run the users, print the figures; the exit status."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = (work / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-c", "from hepatrial.cli import app; app()", "serve", *db_args,
         "--port", str(port), "--threads", str(args.threads)],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        import requests

        deadline = time.monotonic() + 120
        while True:
            try:
                if requests.get(base + "/login/", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                print("hepatrial serve did not start:\n"
                      + (work / "serve.log").read_text(errors="replace"), file=sys.stderr)
                return 1
            time.sleep(0.3)
        start, stop_at = threading.Event(), [float("inf")]
        users = []
        for i, spec in enumerate(plan["users"][:args.users]):
            # each user works on its own share of its site's participants (two users saving
            # the same visit at once is refused as a concurrent edit: not what is measured)
            mates = [u["username"] for u in plan["users"][:args.users]
                     if u["site"] == spec["site"]]
            people = plan["sites"][spec["site"]][mates.index(spec["username"])::len(mates)]
            if not people:
                continue
            users.append(User(base, spec, people, args, args.seed + i, start, stop_at))
        for u in users:
            u.start()
        for u in users:
            u.ready.wait(timeout=300)
        print(f"server: hepatrial serve (waitress, {args.threads} threads) at {base}; "
              f"{len(users)} users signed in and warmed up; measuring {args.seconds:g} s "
              f"(think time {args.think:g} s mean)", flush=True)
        cpu0 = _cpu_seconds(server.pid)
        t0 = time.perf_counter()
        stop_at[0] = t0 + args.seconds
        start.set()
        time.sleep(args.seconds)
        cpu1 = _cpu_seconds(server.pid)
        for u in users:
            u.join(timeout=120)
        ok = report(users, t0, stop_at[0], None if cpu0 is None or cpu1 is None
                    else cpu1 - cpu0)
        errors = [e for u in users for e in u.errors]
        print(f"target (p95 < {TARGET_MS:.0f} ms for casebook and CRF save): "
              f"{'PASS' if ok else 'FAIL'}")
        print(f"failed requests: {len(errors)}")
        for e in errors[:10]:
            print("  " + e)
        return 1 if errors or not users else 0
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)
        log.close()


if __name__ == "__main__":
    sys.exit(main())
