"""Benchmark: the stopping rules on a store of N participants (what every safety-relevant write
and the dosing gate pay).

    uv run python benchmarks/bench_safety.py [--participants 200] [--events 600]

Setup (not timed): a fresh SQLite store in a temporary directory, migrated, protocol
``kharaziha2009`` installed; ``participants`` enrolled participants written as audited rows,
each with one administration on its day 0 (one in four by portal vein), visits D0 and W4 done
with bilirubin, creatinine and INR (the inputs of the MELD lab-rise rule), and ``events``
coded adverse events (one in ten serious, none related: no rule pauses), seeded.

Timed (best of 3): reading the safety records (``selectors.safety_data``, MELD computed per
visit), the pure evaluation (``evaluate_stopping_rules``), ``services.safety.safety_status``
(both, plus the latches), ``dosing_pause`` (now, and for a participant's dose dated an hour
ago: what the dosing gate of every administration pays), ``refresh_safety_status``
(evaluation, latching, notification checks) and one ``record_adverse_event`` through the
service (validation, write, refresh). Prints seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _best(fn: Any, n: int = 3) -> float:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--participants", type=int, default=200)
    ap.add_argument("--events", type=int, default=600)
    ap.add_argument("--seed", type=int, default=20090101)
    a = ap.parse_args(argv)
    rng = random.Random(a.seed)
    tmp = Path(tempfile.mkdtemp(prefix="hepatrial-bench-safety-"))
    from hepatrial.trials import migrate, setup

    setup(tmp / "bench.sqlite3")
    migrate()
    from hepatrial.protocol import safety as ps
    from hepatrial.trials import selectors, services
    from hepatrial.trials.models import (
        Administration,
        AdverseEvent,
        Arm,
        CellProductBatch,
        Consent,
        LabResult,
        Participant,
        Site,
        Visit,
    )
    from hepatrial.trials.services import safety

    services.install_protocol("kharaziha2009")
    sysu = services.system_user()
    site, arm = Site.objects.get(code="S01"), Arm.objects.order_by("pk").first()
    t0 = time.perf_counter()
    day0 = dt.date(2008, 1, 20)
    for i in range(a.participants):
        d0 = day0 + dt.timedelta(days=15 * i)
        p = Participant(study_id=f"B{i:04d}", site=site, sex="M", year_of_birth=1960,
                        etiology="HBV", screening_date=d0 - dt.timedelta(days=14),
                        screening_data={}, status="enrolled", status_date=d0, arm=arm,
                        enrolment_date=d0)
        p.save(user=sysu)
        Consent(participant=p, version="1.0", date=d0 - dt.timedelta(days=14)).save(user=sysu)
        services.schedule_visits(participant=p)
        b = CellProductBatch(batch_id=f"BB{i:04d}", participant=p, coi_identifier="",
                             release_tests={}, released=True, release_date=d0)
        b.save(user=sysu)
        Administration(participant=p, route="portal_vein" if i % 4 == 0 else "peripheral_vein",
                       cells_total=4e7, volume_ml="10.00", date=d0, operator="op",
                       batch=b).save(user=sysu)
        for code, day in (("D0", 0), ("W4", 28)):
            v = Visit.objects.get(participant=p, code=code)
            v.actual_date, v.status = d0 + dt.timedelta(days=day), "done"
            v.save(user=sysu, reason="bench")
            for an, val, unit in (("bilirubin", 40 + rng.random() * 20, "umol/L"),
                                  ("creatinine", 90 + rng.random() * 20, "umol/L"),
                                  ("inr", 1.4 + rng.random() * 0.3, "1")):
                LabResult(participant=p, visit=v, analyte=an, value_as_entered=f"{val:.2f}",
                          unit_as_entered=unit, value=round(val, 2), unit=unit,
                          specimen_date=v.actual_date).save(user=sysu)
    ids = list(Participant.objects.values_list("pk", "enrolment_date"))
    for k in range(a.events):
        pk, d0 = ids[rng.randrange(len(ids))]
        serious = k % 10 == 0
        AdverseEvent(participant_id=pk, term="Fever", grade=1 + (k % 2), serious=serious,
                     relatedness="not_related", relatedness_product="not_related",
                     relatedness_procedure="not_related", onset_date=d0 + dt.timedelta(
                         days=rng.randrange(1, 60)), outcome="unknown", meddra_code=10016558,
                     soc="General disorders and administration site conditions",
                     ctcae_version="5.0", seriousness_criteria=["hospitalisation"] if serious
                     else [], action_taken="none").save(user=sysu)
    setup_s = time.perf_counter() - t0
    proto = services.active_protocol()
    now = dt.datetime.now(dt.UTC)
    data = selectors.safety_data(proto)
    first = Participant.objects.order_by("pk").first()
    rows = {"safety_data (read + MELD per visit)": lambda: selectors.safety_data(proto),
            "evaluate_stopping_rules (pure)": lambda: ps.evaluate_stopping_rules(proto, data,
                                                                                 now),
            "safety_status": safety.safety_status,
            "dosing_pause": safety.dosing_pause,
            "dosing_pause (a dose dated 1 h ago: the gate)": lambda: safety.dosing_pause(
                first, at=now - dt.timedelta(hours=1)),
            "refresh_safety_status": safety.refresh_safety_status}
    print(f"store: {a.participants} participants, {a.events} adverse events, "
          f"{len(data.labs)} MELD values (setup {setup_s:.1f} s, not timed)")
    for name, fn in rows.items():
        print(f"  {name:<46} {_best(fn):8.3f} s")
    i = [0]

    def record() -> None:
        i[0] += 1
        safety.record_adverse_event(
            participant=first, term="Chills", grade=1, onset_date=first.enrolment_date
            + dt.timedelta(days=i[0]), relatedness_product="not_related",
            relatedness_procedure="not_related", action_taken="none")

    print(f"  {'record_adverse_event (write + refresh)':<46} {_best(record):8.3f} s")
    st = safety.safety_status()
    print(f"pausing: {', '.join(st.pausing_rules) or 'none'}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
