"""Bayesian safety monitoring: beta-binomial posterior, stopping boundaries and exact
operating characteristics of one stopping rule or of a set of them.

The rule (Thall PF, Simon R. Practical Bayesian guidelines for phase IIB clinical trials.
Biometrics 1994;50:337-349; Thall PF, Simon RM, Estey EH. Bayesian sequential monitoring
designs for single-arm clinical trials with multiple outcomes. Stat Med 1995;14:357-379):
with a Beta(a, b) prior on the true rate p of the monitored event (here: a participant with
an SAE at least possibly related to the product or the procedure) and x participants with the
event among n treated, the posterior is Beta(a + x, b + n - x), and the trial pauses as soon as

    P(p > theta | x, n) = 1 - I_theta(a + x, b + n - x) > c,

``I`` the regularised incomplete beta function (scipy.special.betainc). Because the posterior
probability increases with x for fixed n, the rule is a boundary: after n participants, stop
when x >= b_n, the least such x (:func:`stopping_boundary`). Evaluated after every participant
this is continuous monitoring in the sense of Ivanova A, Qaqish BF, Schell MJ. Continuous
toxicity monitoring in phase II trials in oncology. Biometrics 2005;61:540-545, whose
operating characteristics (probability of stopping, expected number treated) are computed
here exactly, by dynamic programming over the distribution of the event counts, not by
simulation: the results are deterministic to the last bit for the same inputs.

A *set* of stopping rules is a list of :class:`Monitor` objects, each watching one event type
with its own boundary (a first-event rule is the boundary 1, 1, 1, ...; "at least k of the first
m participants" counts only the first m). Event types occur independently in each participant
with their own probabilities; the set stops at the first participant after whom any monitor's
count reaches its boundary. Assumptions (stated with every result): participants are treated
one after another and each one's events are known before the next is treated (the protocol's
sentinel interval makes this hold for events within that interval), the event probability is
the same for every participant, and different event types are independent.

numpy and scipy only (the ``design`` layer is pure).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.special import betainc

__all__ = [
    "Monitor",
    "OperatingCharacteristics",
    "bayesian_monitor",
    "count_monitor",
    "oc_table",
    "operating_characteristics",
    "posterior_exceeds",
    "stopping_boundary",
]

def _check_prior(a: float, b: float) -> None:
    for name, v in (("a", a), ("b", b)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"prior {name} = {v!r}: a Beta prior parameter is a number > 0")


def _check_unit(name: str, v: float, *, open_: bool = True) -> None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or (open_ and not 0 < v < 1) or (not open_ and not 0 <= v <= 1):
        raise ValueError(f"{name} = {v!r}: must be a number in "
                         f"{'(0, 1)' if open_ else '[0, 1]'}")


def posterior_exceeds(
    x: int | np.ndarray, n: int | np.ndarray, theta: float, a: float, b: float
) -> float | np.ndarray:
    """P(p > theta | x events in n participants) under a Beta(a, b) prior on p.

    The posterior is Beta(a + x, b + n - x) (conjugacy); the value is
    ``1 - betainc(a + x, b + n - x, theta)``. Vectorised over ``x`` and ``n``.
    Source: Thall & Simon 1994 (module docstring).
    """
    _check_prior(a, b)
    _check_unit("theta", theta)
    xa = np.asarray(x)
    na = np.asarray(n)
    if np.any(xa < 0) or np.any(na < xa):
        raise ValueError("events x must satisfy 0 <= x <= n")
    out = 1.0 - betainc(a + xa, b + na - xa, theta)
    return float(out) if np.ndim(out) == 0 else out


def stopping_boundary(
    theta: float, threshold: float, a: float, b: float, n_max: int, *, min_n: int = 1
) -> np.ndarray:
    """Least event count x that stops after n participants, for n = 1..n_max.

    ``boundary[n - 1]`` is the smallest x in 0..n with P(p > theta | x, n) > threshold; it is
    ``n + 1`` (cannot stop) when no x qualifies or when n < ``min_n`` (monitoring starts at
    ``min_n`` participants). The comparison is strict (``>``), as the rule "pause when the
    posterior probability exceeds c".
    """
    _check_unit("threshold", threshold)
    if not isinstance(n_max, int) or n_max < 1:
        raise ValueError(f"n_max = {n_max!r}: a positive number of participants")
    out = np.empty(n_max, dtype=np.int64)
    for n in range(1, n_max + 1):
        xs = np.arange(n + 1)
        probs = np.asarray(posterior_exceeds(xs, np.full(n + 1, n), theta, a, b))
        hit = np.flatnonzero(probs > threshold)
        out[n - 1] = n + 1 if (n < min_n or hit.size == 0) else int(hit[0])
    return out


@dataclass(frozen=True)
class Monitor:
    """One stopping rule as a boundary on the count of one event type.

    ``boundary[n - 1]``: the count (participants with the event) that stops the trial after the
    n-th participant (a value above n cannot be reached). ``count_first``: count only the
    events of the first m participants (None: all).
    """

    name: str
    event: str
    boundary: tuple[int, ...]
    count_first: int | None = None

    @property
    def key(self) -> tuple[str, int | None]:
        """The count this monitor reads: (event type, counting window)."""
        return (self.event, self.count_first)


def bayesian_monitor(
    name: str, event: str, theta: float, threshold: float, a: float, b: float, n_max: int,
    *, min_n: int = 1,
) -> Monitor:
    """The beta-binomial rule as a :class:`Monitor` (boundary from :func:`stopping_boundary`)."""
    bd = stopping_boundary(theta, threshold, a, b, n_max, min_n=min_n)
    return Monitor(name, event, tuple(int(v) for v in bd))


def count_monitor(
    name: str, event: str, count: int, n_max: int, *, count_first: int | None = None
) -> Monitor:
    """A rule that stops when ``count`` participants had the event (among the first
    ``count_first``, if given): ``count = 1`` is a first-event rule."""
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count = {count!r}: a positive number of participants")
    return Monitor(name, event, (count,) * n_max, count_first)


@dataclass(frozen=True)
class OperatingCharacteristics:
    """Exact operating characteristics of a set of monitors at given event probabilities.

    ``prob_stop_at[n - 1]`` = P(the set stops right after participant n);
    ``prob_stop`` = their sum; ``expected_treated`` = E[participants treated] =
    sum(n * P(stop after n)) + n_max * P(never stops); ``prob_stop_by_rule``: the
    probability that each monitor is the first to stop the trial (monitors stopping at the
    same participant are credited to the one listed first).
    """

    rates: Mapping[str, float]
    n_max: int
    prob_stop: float
    expected_treated: float
    prob_stop_at: tuple[float, ...]
    prob_stop_by_rule: Mapping[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        return {
            "rates": dict(self.rates),
            "n_max": self.n_max,
            "prob_stop": self.prob_stop,
            "expected_treated": self.expected_treated,
            "prob_stop_at": list(self.prob_stop_at),
            "prob_stop_by_rule": dict(self.prob_stop_by_rule),
        }


def operating_characteristics(
    monitors: Sequence[Monitor], rates: Mapping[str, float], n_max: int
) -> OperatingCharacteristics:
    """P(stop), E[number treated] and P(stop after n) of a set of monitors, exactly.

    ``rates`` gives each event type's probability per participant (every monitor's event must
    be there; rates of 0 and 1 are allowed). Dynamic programming over the joint distribution
    of the monitors' counts, participant by participant (counts are capped at the largest
    boundary, which does not change any stopping decision). Assumptions in the module
    docstring.
    """
    if not isinstance(n_max, int) or n_max < 1:
        raise ValueError(f"n_max = {n_max!r}: a positive number of participants")
    if not monitors:
        raise ValueError("no monitors")
    names = [m.name for m in monitors]
    if len(set(names)) != len(names):
        raise ValueError("monitor names must be unique")
    for m in monitors:
        if len(m.boundary) < n_max:
            raise ValueError(f"monitor {m.name!r}: boundary has {len(m.boundary)} values, "
                             f"n_max is {n_max}")
        if m.event not in rates:
            raise ValueError(f"monitor {m.name!r} watches {m.event!r}, which has no rate")
    for ev, r in rates.items():
        _check_unit(f"rate of {ev!r}", r, open_=False)

    keys = sorted({m.key for m in monitors}, key=lambda k: (k[0], -1 if k[1] is None else k[1]))
    events = sorted({k[0] for k in keys})
    cap = {k: max(m.boundary[n] for m in monitors if m.key == k for n in range(n_max))
           for k in keys}
    kidx = {k: i for i, k in enumerate(keys)}
    outcomes = []  # (probability, set of events that happen) for one participant
    for combo in itertools.product((False, True), repeat=len(events)):
        pr = 1.0
        for ev, happens in zip(events, combo, strict=True):
            pr *= float(rates[ev]) if happens else 1.0 - float(rates[ev])
        if pr > 0.0:
            outcomes.append((pr, {ev for ev, h in zip(events, combo, strict=True) if h}))

    alive: dict[tuple[int, ...], float] = {tuple(0 for _ in keys): 1.0}
    stop_at = [0.0] * n_max
    by_rule = dict.fromkeys(names, 0.0)
    for n in range(1, n_max + 1):
        nxt: dict[tuple[int, ...], float] = {}
        for state, ps in alive.items():
            for po, happened in outcomes:
                new = list(state)
                for k in keys:
                    ev, window = k
                    if ev in happened and (window is None or n <= window):
                        i = kidx[k]
                        new[i] = min(new[i] + 1, cap[k])
                t = tuple(new)
                nxt[t] = nxt.get(t, 0.0) + ps * po
        alive = {}
        for state, ps in sorted(nxt.items()):
            hit = next((m for m in monitors if state[kidx[m.key]] >= m.boundary[n - 1]), None)
            if hit is None:
                alive[state] = ps
            else:
                stop_at[n - 1] += ps
                by_rule[hit.name] += ps
    p_stop = math.fsum(stop_at)
    p_never = math.fsum(alive.values())
    exp_n = math.fsum(n * s for n, s in enumerate(stop_at, start=1)) + n_max * p_never
    return OperatingCharacteristics(
        rates=dict(sorted(rates.items())), n_max=n_max, prob_stop=p_stop,
        expected_treated=exp_n, prob_stop_at=tuple(stop_at), prob_stop_by_rule=by_rule)


def oc_table(
    monitors: Sequence[Monitor], event: str, grid: Iterable[float], n_max: int,
    other_rates: Mapping[str, float] | None = None,
) -> list[OperatingCharacteristics]:
    """:func:`operating_characteristics` for each rate of ``event`` in ``grid`` (other event
    types at ``other_rates``, default 0)."""
    others = dict(other_rates or {})
    for m in monitors:
        if m.event != event:
            others.setdefault(m.event, 0.0)
    return [operating_characteristics(monitors, {**others, event: float(p)}, n_max)
            for p in grid]
