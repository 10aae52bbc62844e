"""Synthetic reconstruction of the model trial from its published summary statistics.

**Synthetic reconstruction, not patient data.** The individual values produced here are
invented. They are constrained so that, *as entered* (INR to 2 decimals, creatinine,
albumin and bilirubin as integers), their sample means and SDs (ddof = 1) print as the
published ones (Kharaziha et al., Eur J Gastroenterol Hepatol 2009;21:1199; see
:mod:`hepatrial.demo.published`), MELD computed from them by :func:`hepatrial.scores.meld`
prints as the published MELD, and the significance pattern vs baseline is the published one
(MELD, INR, creatinine P < 0.05; albumin, bilirubin not significant) under both the paired t
test and the exact Wilcoxon signed-rank test.

Method
------
1. A seeded RNG draws a latent severity per patient and candidate baseline / week-24 labs
   (log-normal bilirubin, albumin falling with severity, improvement at week 24 larger in
   sicker patients).
2. A constrained least-squares problem (``scipy.optimize.minimize``, SLSQP) moves the
   candidates as little as possible so that every published mean and SD and the MELD mean and
   SD hold exactly, the paired t statistic is clearly significant (|t| ≥ 3) or clearly not
   (|t| ≤ 1.5), and every value stays inside its physiological range.
3. The solution is rounded to the entry precision and repaired by a deterministic greedy
   integer search (single-value steps and mean-preserving transfers) until every rounded
   statistic prints as published, with margins, and the exact Wilcoxon p agrees too.
4. Weeks 1-8 (not published) are a smooth exponential approach from baseline to week 24 plus
   seeded noise, rounded the same way.
5. :func:`verify` recomputes everything from the entered values with
   :func:`hepatrial.scores.meld` and :func:`hepatrial.analysis.paired.paired_test` and raises if
   any published statistic is not reproduced.

:func:`meld_variant_feasibility` explains the variant choice: only ``kamath2001`` (the
continuous 10·R without floors) can reproduce the published MELD. With the OPTN floors
(``continuous``) the smallest attainable mean MELD given the published labs is above the
published value at both visits, and the integer ``optn2002`` MELD cannot have a mean of 10.7
with 8 patients at all (8 integers average to …​.625 or …​.75).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from hepatrial import errors as _errors
from hepatrial.demo import published as pub
from hepatrial.scores import meld as _meld

SEED = 20090901
LABS = pub.LAB_ORDER  # inr, creatinine, albumin, bilirubin
VISITS_MAIN = (pub.BASELINE, pub.FOLLOWUP)
INTERIM = {"W1": 7, "W2": 14, "W4": 28, "W8": 56}
NOMINAL_DAY = {"D0": 0, **INTERIM, "W24": 168}
SCALE = {"inr": 100, "creatinine": 1, "albumin": 1, "bilirubin": 1}  # entry steps per unit
#: published significance at W24 vs D0, from the published table (one source of truth)
SIGNIFICANT = {
    s.analyte: bool(s.significant) for s in (*pub.LABS, *pub.MELD) if s.visit == pub.FOLLOWUP
}
T_SIG, T_NS = 3.0, 1.5  # continuous-stage targets for |t| (df = 7: p ≈ 0.020 and 0.18)
P_SIG, P_NS = 0.045, 0.10  # integer-stage requirements on the p values (margins around 0.05)
MELD_MIN_BASELINE = 10.0  # inclusion criterion MELD >= 10, checked per patient at D0
MARGIN = 0.8  # rounded statistics must lie within 0.8 half-units of the published value
N = pub.N_PATIENTS
#: minimum days between consecutive participants' day 0 (their first and only dose): the
#: sentinel rule of kharaziha2009 (SR-SENTINEL, ``min_interval_days = 14`` for the first 8);
#: the reconstruction's day 0s are staggered by at least this much (:func:`_staggered`)
DOSING_INTERVAL_DAYS = 14


class ReconstructionError(_errors.HepatrialError, RuntimeError):
    """The synthetic cohort could not be made to reproduce the published statistics."""


def meld_si(bilirubin: Any, creatinine: Any, inr: Any, variant: str) -> np.ndarray:
    """MELD from SI labs through :func:`hepatrial.scores.meld` (the package's calculator)."""
    return np.asarray(
        _meld(bilirubin, creatinine, inr, variant=variant, units="si"), dtype=float
    )


# ----------------------------------------------------------------------------- exact tests

_SIGNS = {k: np.array(list(itertools.product((0.0, 1.0), repeat=k))) for k in range(1, N + 1)}


def exact_wilcoxon_p(d: np.ndarray) -> float:
    """Two-sided exact Wilcoxon signed-rank p (zeros dropped, mid-ranks for ties, complete
    enumeration of the 2^n sign vectors: SciPy's exact / permutation rule for n ≤ 13)."""
    d = d[np.abs(d) > 1e-12]
    k = d.size
    if k == 0:
        return 1.0
    r = stats.rankdata(np.abs(d))
    t_obs = r[d > 0].sum()
    dist = _SIGNS[k] @ r
    lo = np.mean(dist <= t_obs + 1e-9)
    hi = np.mean(dist >= t_obs - 1e-9)
    return float(min(1.0, 2.0 * min(lo, hi)))


def paired_t(d: np.ndarray) -> tuple[float, float]:
    """Paired t statistic and two-sided p of differences ``d``."""
    sd = d.std(ddof=1)
    if sd == 0:
        return (float("inf") if d.mean() else 0.0), (0.0 if d.mean() else 1.0)
    t = d.mean() / (sd / np.sqrt(d.size))
    return float(t), float(2 * stats.t.sf(abs(t), d.size - 1))


# ----------------------------------------------------------------------------- stage 1


def _candidates(rng: np.random.Generator) -> dict[tuple[str, str], np.ndarray]:
    """Seeded candidate labs with clinically sensible correlations."""
    sev = np.sort(rng.standard_normal(N))[rng.permutation(N)]
    resp = 0.6 * sev + 0.8 * rng.standard_normal(N)  # sicker patients improve more (regression)
    e = {a: rng.standard_normal((2, N)) for a in LABS}
    c: dict[tuple[str, str], np.ndarray] = {}
    c[("D0", "inr")] = 1.9 + 0.4 * (0.8 * sev + 0.6 * e["inr"][0])
    c[("D0", "creatinine")] = 114 + 35 * (0.6 * sev + 0.8 * e["creatinine"][0])
    c[("D0", "albumin")] = 30 - 5 * (0.6 * sev + 0.8 * e["albumin"][0])
    c[("D0", "bilirubin")] = np.exp(np.log(40) + 0.6 * (0.7 * sev + 0.7 * e["bilirubin"][0]))
    c[("W24", "inr")] = c[("D0", "inr")] - 0.5 - 0.2 * resp + 0.1 * e["inr"][1]
    c[("W24", "creatinine")] = c[("D0", "creatinine")] * 0.7 - 5 * resp + 8 * e["creatinine"][1]
    c[("W24", "albumin")] = c[("D0", "albumin")] + 3 + 2 * resp + 4 * e["albumin"][1]
    c[("W24", "bilirubin")] = c[("D0", "bilirubin")] * np.exp(-0.1 - 0.2 * resp
                                                             + 0.4 * e["bilirubin"][1])
    for (_, a), v in c.items():
        lo, hi = pub.PLAUSIBLE[a]
        v[:] = np.clip(v, lo * 1.05, hi * 0.9)
    return c


def _unpack(x: np.ndarray) -> dict[tuple[str, str], np.ndarray]:
    x = x.reshape(2, len(LABS), N)
    return {(v, a): x[i, j] for i, v in enumerate(VISITS_MAIN) for j, a in enumerate(LABS)}


def _pack(c: dict[tuple[str, str], np.ndarray]) -> np.ndarray:
    return np.concatenate([c[(v, a)] for v in VISITS_MAIN for a in LABS])


def _standardise(z: np.ndarray) -> np.ndarray:
    """Map raw shapes (batch x (2·4·8)) to values with exactly the published means and SDs
    per analyte and visit: ``mean + sd * (z - mean(z)) / sd(z)``."""
    z = z.reshape(z.shape[0], 2 * len(LABS), N)
    m = np.array([pub.lab_stat(a, v).mean for v in VISITS_MAIN for a in LABS])[None, :, None]
    s = np.array([pub.lab_stat(a, v).sd for v in VISITS_MAIN for a in LABS])[None, :, None]
    zc = z - z.mean(axis=2, keepdims=True)
    return (m + s * zc / zc.std(axis=2, ddof=1, keepdims=True)).reshape(z.shape[0], -1)


def _tstat(d: np.ndarray) -> np.ndarray:
    return d.mean(axis=1) / (d.std(axis=1, ddof=1) / np.sqrt(N) + 1e-12)


def _continuous_solution(
    cand: dict[tuple[str, str], np.ndarray], variant: str
) -> tuple[np.ndarray, bool]:
    """Least-squares fit of the MELD moments, the t-test margins, the MELD >= 10 inclusion
    criterion and the plausibility bounds (hard residuals) with a weak pull towards the seeded
    candidates; the lab means and SDs hold by construction (:func:`_standardise`)."""
    x0 = _pack(cand)
    scale = np.concatenate([np.full(N, pub.lab_stat(a, v).sd) for v in VISITS_MAIN for a in LABS])
    lo = np.concatenate([np.full(N, pub.PLAUSIBLE[a][0] + 0.05 * pub.lab_stat(a, "D0").sd)
                         for _ in VISITS_MAIN for a in LABS])
    hi = np.concatenate([np.full(N, pub.PLAUSIBLE[a][1] * 0.9) for _ in VISITS_MAIN for a in LABS])
    z0 = (x0 - _pack({k: np.full(N, pub.lab_stat(k[1], k[0]).mean) for k in cand})) / scale
    ia, ic, ib = (LABS.index(a) for a in ("inr", "creatinine", "bilirubin"))
    melds_pub = [pub.lab_stat("meld", v) for v in VISITS_MAIN]

    def hard(zz: np.ndarray) -> np.ndarray:  # zz: batch x 64
        x = _standardise(zz * scale)
        xc = np.maximum(x, 0.5 * lo).reshape(-1, 2, len(LABS), N)  # logs defined
        m = meld_si(xc[:, :, ib], xc[:, :, ic], xc[:, :, ia], variant)  # batch x 2 x N
        out = []
        for k, s in enumerate(melds_pub):
            out += [(m[:, k].mean(axis=1) - s.mean) / s.half_unit,
                    (m[:, k].std(axis=1, ddof=1) - s.sd) / s.half_unit]
        cols = [np.stack(out, axis=1), np.maximum(0.0, MELD_MIN_BASELINE + 0.5 - m[:, 0])]
        diffs = {"meld": m[:, 1] - m[:, 0]}
        diffs.update({a: xc[:, 1, j] - xc[:, 0, j] for j, a in enumerate(LABS)})
        tcols = []
        for a, d in diffs.items():
            t = np.abs(_tstat(d))
            tcols.append(np.maximum(0.0, T_SIG - t) if SIGNIFICANT[a]
                         else np.maximum(0.0, t - T_NS))
        cols.append(np.stack(tcols, axis=1))
        cols.append(np.maximum(0.0, (lo - x) / scale) + np.maximum(0.0, (x - hi) / scale))
        return np.concatenate(cols, axis=1)

    def resid_batch(zz: np.ndarray) -> np.ndarray:
        # hard residuals only: trust-region steps from the seeded candidates stay close to them
        return hard(zz)

    eps = 1e-6

    def jac(z: np.ndarray) -> np.ndarray:
        zz = np.vstack([z[None, :], z[None, :] + eps * np.eye(z.size)])
        r = resid_batch(zz)
        return ((r[1:] - r[0]) / eps).T

    res = optimize.least_squares(lambda z: resid_batch(z[None, :])[0], z0, jac=jac,
                                 method="trf", max_nfev=60, ftol=1e-12, xtol=1e-12, gtol=1e-12)
    ok = float(np.abs(hard(res.x[None, :])).max()) < 0.05
    return _standardise((res.x * scale)[None, :])[0], ok


# ----------------------------------------------------------------------------- stage 2


def _violation(ints: np.ndarray, variant: str) -> float:
    """Total violation of the published statistics by integer-coded labs (0 = all hold)."""
    vals = ints.reshape(2, len(LABS), N) / np.array([SCALE[a] for a in LABS])[None, :, None]
    viol = 0.0
    melds = []
    for i, v in enumerate(VISITS_MAIN):
        for j, a in enumerate(LABS):
            s = pub.lab_stat(a, v)
            h = s.half_unit * MARGIN
            viol += max(0.0, abs(vals[i, j].mean() - s.mean) - h) / s.half_unit
            viol += max(0.0, abs(vals[i, j].std(ddof=1) - s.sd) - h) / s.half_unit
        m = meld_si(vals[i, 3], vals[i, 1], vals[i, 0], variant)
        melds.append(m)
        s = pub.lab_stat("meld", v)
        h = s.half_unit * MARGIN
        viol += max(0.0, abs(m.mean() - s.mean) - h) / s.half_unit
        viol += max(0.0, abs(m.std(ddof=1) - s.sd) - h) / s.half_unit
    viol += 10 * float(np.maximum(0.0, MELD_MIN_BASELINE - melds[0]).sum())
    diffs = {"meld": melds[1] - melds[0]}
    diffs.update({a: vals[1, j] - vals[0, j] for j, a in enumerate(LABS)})
    for a, d in diffs.items():
        _, p_t = paired_t(d)
        p_w = exact_wilcoxon_p(d)
        for p in (p_t, p_w):
            viol += 20 * (max(0.0, p - P_SIG) if SIGNIFICANT[a] else max(0.0, P_NS - p))
    return viol


def _repair(x: np.ndarray, variant: str, max_iter: int = 400) -> tuple[np.ndarray, float]:
    """Round to entry precision, then greedy integer repair of the violations."""
    steps = np.concatenate([np.full(N, SCALE[a]) for _ in VISITS_MAIN for a in LABS])
    lo = np.concatenate([np.full(N, pub.PLAUSIBLE[a][0] * SCALE[a]) for _ in VISITS_MAIN
                         for a in LABS])
    hi = np.concatenate([np.full(N, pub.PLAUSIBLE[a][1] * SCALE[a]) for _ in VISITS_MAIN
                         for a in LABS])
    cur = np.clip(np.round(x * steps), lo, hi)
    best = _violation(cur, variant)
    moves: list[tuple[int, int, int]] = []  # (index, other index or -1, delta)
    for g in range(2 * len(LABS)):
        idx = range(g * N, (g + 1) * N)
        for i in idx:
            for dlt in (1, -1, 3, -3):
                moves.append((i, -1, dlt))
        for i, j in itertools.permutations(idx, 2):
            moves.append((i, j, 1))
    for _ in range(max_iter):
        if best == 0.0:
            break
        improved = False
        for i, j, dlt in moves:
            trial = cur.copy()
            trial[i] += dlt
            if j >= 0:
                trial[j] -= dlt
            if trial[i] < lo[i] or trial[i] > hi[i] or (j >= 0 and (trial[j] < lo[j]
                                                                     or trial[j] > hi[j])):
                continue
            val = _violation(trial, variant)
            if val < best - 1e-12:
                cur, best, improved = trial, val, True
                break  # first improvement, deterministic order
        if not improved:
            break
    return cur / steps, best


# ----------------------------------------------------------------------------- public API


@dataclass
class Cohort:
    """The synthetic cohort: participants, long lab table and verification results."""

    participants: pd.DataFrame
    labs: pd.DataFrame
    meld_variant: str
    seed: int
    attempts: int
    verification: dict[str, Any] = field(default_factory=dict)
    feasibility: dict[str, Any] = field(default_factory=dict)
    label: str = "Synthetic reconstruction, not patient data"
    notes: list[str] = field(default_factory=list)


def _main_visits(variant: str, seed: int, max_attempts: int = 40) -> tuple[dict, int]:
    for attempt in range(max_attempts):
        rng = np.random.default_rng([seed, attempt])
        cand = _candidates(rng)
        x, ok = _continuous_solution(cand, variant)
        if not ok:
            continue
        vals, viol = _repair(x, variant)
        if viol == 0.0:
            return _unpack(vals), attempt + 1
    raise ReconstructionError(
        f"no reconstruction reproduces the published statistics under MELD variant {variant!r} "
        f"after {max_attempts} seeded attempts"
    )


def _round_lab(a: str, v: np.ndarray) -> np.ndarray:
    lo, hi = pub.PLAUSIBLE[a]
    return np.round(np.clip(v, lo, hi), pub.ENTRY_DECIMALS[a])


def _interim(main: dict, rng: np.random.Generator) -> dict[tuple[str, str], np.ndarray]:
    """Weeks 1-8: exponential approach (time constant 6 weeks) plus noise; not published."""
    noise = {"inr": 0.08, "creatinine": 7.0, "albumin": 1.5, "bilirubin": 0.12}
    out = {}
    for a in LABS:
        b, f = main[("D0", a)], main[("W24", a)]
        for visit, day in INTERIM.items():
            frac = (1 - np.exp(-day / 42.0)) / (1 - np.exp(-168 / 42.0))
            mid = b + frac * (f - b)
            e = rng.standard_normal(N)
            val = mid * np.exp(noise[a] * e) if a == "bilirubin" else mid + noise[a] * e
            out[(visit, a)] = _round_lab(a, val)
    return out


def _ages(rng: np.random.Generator) -> np.ndarray:
    """Ages at enrolment in years to one decimal: min 38.0, max 67.0, mean 55.625 (prints as
    55.63 with half-up rounding, Kim 2015, and as 55.6) and SD in [10.45, 10.455) (prints as
    10.45, Kim 2015, and as 10.5 at one decimal).

    Whole-year ages cannot do both: 8 integers summing to 445 have an odd sum of squares, so
    their SD is 10.4463 (prints 10.45 but 10.4) or 10.4599.
    """
    total = round(pub.AGE_MEAN * N * 10)  # 4450 tenths: mean 55.625
    lo, hi = pub.AGE_MIN * 10, pub.AGE_MAX * 10
    for _ in range(50):
        inner = rng.integers(lo, hi + 1, size=(100_000, N - 3))
        last = total - lo - hi - inner.sum(axis=1)
        a = np.column_stack([np.full(len(inner), lo), inner, last, np.full(len(inner), hi)])
        ok = (last >= lo) & (last <= hi)
        sd = a.std(axis=1, ddof=1) / 10
        ok &= (sd >= pub.AGE_SD) & (sd < pub.AGE_SD + 0.005)
        if ok.any():
            ages = a[np.flatnonzero(ok)[0]] / 10
            return ages[rng.permutation(N)]
    raise ReconstructionError("no ages reproduce 55.63 ± 10.45 (38-67)")  # pragma: no cover


def _staggered(days: Any) -> list[int]:
    """Sorted day offsets moved later, where needed, to at least :data:`DOSING_INTERVAL_DAYS`
    after the previous one (the protocol's sentinel interval); the random draw is unchanged,
    so the rest of the reconstruction is too."""
    out: list[int] = []
    for d in days:
        out.append(max(int(d), out[-1] + DOSING_INTERVAL_DAYS) if out else int(d))
    return out


def _participants(rng: np.random.Generator) -> pd.DataFrame:
    ids = [f"KH{i:02d}" for i in range(1, N + 1)]
    sex = np.array(["M"] * pub.SEX["M"] + ["F"] * pub.SEX["F"])[rng.permutation(N)]
    etiology = np.array([e for e, k in pub.ETIOLOGY.items() for _ in range(k)])[rng.permutation(N)]
    route = np.array([r for r, k in pub.ROUTE.items() for _ in range(k)])[rng.permutation(N)]
    cells = rng.integers(int(pub.CELLS_MIN / 1e6), int(pub.CELLS_MAX / 1e6) + 1, N) * 1e6
    start = pd.Timestamp("2007-03-05")
    enrol = [start + pd.Timedelta(days=d) for d in _staggered(np.sort(rng.integers(0, 300, N)))]
    ages = _ages(rng)
    return pd.DataFrame({
        "participant_id": ids,
        "site": "S01",
        "arm": "single",
        "sex": sex,
        "age": ages,
        "etiology": etiology,
        "status": "completed",
        "status_date": [(d + pd.Timedelta(days=168)).date().isoformat() for d in enrol],
        "status_reason": "",
        "enrolment_date": [d.date().isoformat() for d in enrol],
        "route": route,
        "cells_total": cells,
        "cells_per_kg": np.nan,
        "volume_ml": pub.VOLUME_ML,
    })


def _long_labs(values: dict, participants: pd.DataFrame) -> pd.DataFrame:
    rows = []
    enrol = dict(zip(participants["participant_id"], participants["enrolment_date"], strict=True))
    for i, pid in enumerate(participants["participant_id"]):
        d0 = pd.Timestamp(enrol[pid])
        for visit, day in NOMINAL_DAY.items():
            for a in LABS:
                v = float(values[(visit, a)][i])
                rows.append({
                    "participant_id": pid,
                    "visit": visit,
                    "analyte": a,
                    "value": v,
                    "unit": pub.UNITS[a],
                    "date": (d0 + pd.Timedelta(days=day)).date().isoformat(),
                })
    return pd.DataFrame(rows)


def cohort_meld(labs: pd.DataFrame) -> dict[str, list[tuple[float, float]]]:
    """(mean, SD) of MELD at D0 and W24 under each variant, from the entered labs."""
    out = {}
    for variant in ("kamath2001", "continuous", "optn2002"):
        out[variant] = []
        for v in VISITS_MAIN:
            m = meld_si(_wide(labs, v, "bilirubin"), _wide(labs, v, "creatinine"),
                        _wide(labs, v, "inr"), variant)
            out[variant].append((float(m.mean()), float(m.std(ddof=1))))
    return out


def reconstruct(seed: int = SEED, meld_variant: str = "kamath2001") -> Cohort:
    """Build the seeded synthetic cohort and verify it (raises :class:`ReconstructionError`).

    Same ``seed`` → identical output. Every value is entered at laboratory precision and every
    published statistic is checked on the entered values by :func:`verify`.
    """
    main, attempts = _main_visits(meld_variant, seed)
    main = {k: _round_lab(k[1], v) for k, v in main.items()}
    rng = np.random.default_rng([seed, 999])
    values = {**main, **_interim(main, rng)}
    participants = _participants(rng)
    labs = _long_labs(values, participants)
    cohort = Cohort(participants, labs, meld_variant, seed, attempts)
    cohort.verification = verify(labs, participants, meld_variant)
    return cohort


def _wide(labs: pd.DataFrame, visit: str, analyte: str) -> np.ndarray:
    sel = labs[(labs["visit"] == visit) & (labs["analyte"] == analyte)]
    return sel.sort_values("participant_id")["value"].to_numpy(dtype=float)


def verify(labs: pd.DataFrame, participants: pd.DataFrame, meld_variant: str) -> dict[str, Any]:
    """Recompute every published statistic from the entered values; raise if any fails.

    Returns a dict with, per analyte and visit, the mean, SD and whether they print as
    published, and per analyte the paired t and exact Wilcoxon p at week 24.
    """
    from hepatrial.analysis.paired import paired_test

    out: dict[str, Any] = {"stats": [], "tests": [], "failures": []}
    series: dict[tuple[str, str], np.ndarray] = {}
    for v in VISITS_MAIN:
        for a in LABS:
            series[(v, a)] = _wide(labs, v, a)
        series[(v, "meld")] = meld_si(series[(v, "bilirubin")], series[(v, "creatinine")],
                                      series[(v, "inr")], meld_variant)
    for s in (*pub.LABS, *pub.MELD):
        x = series[(s.visit, s.analyte)]
        m, sd = float(x.mean()), float(x.std(ddof=1))
        ok = s.reproduces(m, sd)
        out["stats"].append({"analyte": s.analyte, "visit": s.visit, "mean": m, "sd": sd,
                             "published_mean": s.mean, "published_sd": s.sd,
                             "decimals": s.decimals, "reproduced": ok})
        if not ok:
            out["failures"].append(f"{s.analyte} {s.visit}: {m:.4f} ± {sd:.4f} does not print "
                                   f"as {s.mean} ± {s.sd}")
    for a in ("meld", *LABS):
        res = paired_test(series[("D0", a)], series[("W24", a)], wilcoxon="exact")
        sig_pub = SIGNIFICANT[a]
        agree = all((p < 0.05) == sig_pub for p in (res["p_t"], res["p_wilcoxon"]))
        out["tests"].append({"analyte": a, "p_t": res["p_t"], "p_wilcoxon": res["p_wilcoxon"],
                             "published_significant": sig_pub, "agrees": agree})
        if not agree:
            out["failures"].append(f"{a}: p_t={res['p_t']:.4f}, p_wilcoxon="
                                   f"{res['p_wilcoxon']:.4f}, published significant={sig_pub}")
    low = series[("D0", "meld")] < MELD_MIN_BASELINE
    if low.any():
        out["failures"].append(f"{int(low.sum())} patient(s) with baseline MELD < 10")
    for a in LABS:
        lo, hi = pub.PLAUSIBLE[a]
        x = labs.loc[labs["analyte"] == a, "value"]
        if x.min() < lo or x.max() > hi:
            out["failures"].append(f"{a} outside {lo}-{hi}")
        dec = pub.ENTRY_DECIMALS[a]
        if not np.allclose(x, x.round(dec)):
            out["failures"].append(f"{a} not entered at {dec} decimals")
    ages = participants["age"].to_numpy(dtype=float)
    age_ok = (abs(ages.mean() - pub.AGE_MEAN) <= 0.005 + 1e-9
              and pub.AGE_SD <= ages.std(ddof=1) < pub.AGE_SD + 0.005
              and ages.min() == pub.AGE_MIN and ages.max() == pub.AGE_MAX)
    counts_ok = (participants["sex"].value_counts().to_dict() == pub.SEX
                 and participants["etiology"].value_counts().to_dict() == pub.ETIOLOGY
                 and participants["route"].value_counts().to_dict() == pub.ROUTE)
    if not age_ok:
        out["failures"].append("age does not reproduce 55.63 ± 10.45 (38-67)")
    if not counts_ok:
        out["failures"].append("sex / aetiology / route counts differ from the publication")
    if out["failures"]:
        raise ReconstructionError("; ".join(out["failures"]))
    return out


# ----------------------------------------------------------------------------- variants


_MELD_TERMS = {  # analyte: (coefficient of ln, SI units per mg/dL) -- Kamath 2001, x10 scaling
    "creatinine": (9.57, 88.4),
    "bilirubin": (3.78, 17.1),
    "inr": (11.2, 1.0),
}
MELD_INTERCEPT = 6.43


def lowest_mean_meld(variant: str, visit: str, seed: int = SEED, restarts: int = 24) -> float:
    """Smallest mean MELD attainable over 8 patients whose INR, creatinine and bilirubin have
    exactly the published mean and SD at ``visit`` and stay inside the plausibility bounds.

    The mean of ``kamath2001`` / ``continuous`` MELD is separable,
    ``6.43 + Σ_analyte mean(k·ln(x))`` (with the OPTN floors at 1.0 and the creatinine cap at
    4.0 mg/dL for ``continuous``), so the minimum is the sum of three 8-variable problems, each
    solved by multi-start SLSQP (equality constraints on mean and SD, box bounds).
    """
    total = MELD_INTERCEPT
    for a, (k, per) in _MELD_TERMS.items():
        s = pub.lab_stat(a, visit)
        lo, hi = pub.PLAUSIBLE[a]

        cap = 4.0 if a == "creatinine" else np.inf

        def g(x: np.ndarray, k: float = k, per: float = per, cap: float = cap) -> float:
            y = x / per
            if variant != "kamath2001":
                y = np.clip(y, 1.0, cap)
            return float(np.mean(k * np.log(y)))

        def g_jac(x: np.ndarray, k: float = k, per: float = per, cap: float = cap) -> np.ndarray:
            d = k / (N * x)
            if variant != "kamath2001":
                y = x / per
                d = np.where((y > 1.0) & (y < cap), d, 0.0)
            return d

        def c_fun(x: np.ndarray, s: pub.PublishedStat = s) -> np.ndarray:
            return np.array([(x.mean() - s.mean) / s.sd, (x.std(ddof=1) - s.sd) / s.sd])

        def c_jac(x: np.ndarray, s: pub.PublishedStat = s) -> np.ndarray:
            sd = x.std(ddof=1)
            return np.vstack([np.full(N, 1.0 / (N * s.sd)),
                              (x - x.mean()) / ((N - 1) * sd * s.sd)])

        cons = [{"type": "eq", "fun": c_fun, "jac": c_jac}]
        best = np.inf
        for r in range(restarts):
            rng = np.random.default_rng([seed, 11, r])
            z = rng.standard_normal(N) if r % 2 else rng.standard_gamma(0.5 + r / 8, N)
            z = (z - z.mean()) / z.std(ddof=1)
            x0 = np.clip(s.mean + s.sd * z, lo, hi)
            res = optimize.minimize(g, x0, jac=g_jac, method="SLSQP", bounds=[(lo, hi)] * N,
                                    constraints=cons, options={"maxiter": 300, "ftol": 1e-12})
            if np.abs(cons[0]["fun"](res.x)).max() < 1e-7:
                best = min(best, g(res.x))
        total += best
    return float(total)


def meld_variant_feasibility(cohort_meld: dict[str, Any] | None = None,
                             seed: int = SEED, restarts: int = 4) -> dict[str, Any]:
    """Which MELD variant can reproduce the published MELD (17.9 ± 5.6 → 10.7 ± 6.3)?

    Per variant and visit: ``lowest_mean`` (:func:`lowest_mean_meld`; for ``optn2002`` the
    ``continuous`` bound minus 0.5, since rounding lowers a score by at most 0.5), whether the
    published mean is attainable, and for the reproducing variant the synthetic cohort's
    (mean, SD) from ``cohort_meld`` (:func:`cohort_meld`). ``optn2002`` also fails
    arithmetically at week 24: the mean of 8 integer scores is a multiple of 0.125, and none
    prints as 10.7 (10.625 → 10.6, 10.75 → 10.8).
    """
    out: dict[str, Any] = {}
    cont = {v: lowest_mean_meld("continuous", v, seed, restarts) for v in VISITS_MAIN}
    kam = {v: lowest_mean_meld("kamath2001", v, seed, restarts) for v in VISITS_MAIN}
    for variant in ("kamath2001", "continuous", "optn2002"):
        res_v: dict[str, Any] = {}
        for v in VISITS_MAIN:
            t = pub.lab_stat("meld", v)
            low = {"kamath2001": kam[v], "continuous": cont[v],
                   "optn2002": cont[v] - 0.5}[variant]
            attainable = low < t.mean + t.half_unit
            reason = "" if attainable else (
                f"the lowest attainable mean is {low:.2f} > {t.mean + t.half_unit:.2f}")
            if variant == "optn2002":
                k = np.arange(0, 400)
                printable = [x / N for x in k if t.reproduces(x / N, t.sd)]
                if not printable:
                    attainable = False
                    near = sorted({math.floor(t.mean * N) / N, math.ceil(t.mean * N) / N})
                    reason = ("no mean of 8 integers prints as "
                              f"{t.mean} (nearest: {', '.join(f'{x:g}' for x in near)})"
                              + (f"; {reason}" if reason else ""))
            entry: dict[str, Any] = {"lowest_mean": low, "published_mean": t.mean,
                                     "published_sd": t.sd, "attainable": bool(attainable),
                                     "reason": reason}
            if cohort_meld and variant in cohort_meld:
                m, sd = cohort_meld[variant][VISITS_MAIN.index(v)]
                entry.update(cohort_mean=m, cohort_sd=sd, reproduced=t.reproduces(m, sd))
            res_v[v] = entry
        res_v["feasible"] = all(res_v[v]["attainable"] for v in VISITS_MAIN)
        out[variant] = res_v
    return out
