"""Benchmark: exact Wilcoxon signed-rank test with ties and zeros (issue 9, items 4 and 8).

Prints CPU time per test at n = 20, 50, 100, 200 (and 500, 1000) on tied data with zeros:
the exact p-value alone, the whole ``wilcoxon_signed_rank`` call (ranks, exact p, Hodges–Lehmann
estimate and exact CI), a naive pure-Python dynamic programme over the same mid-ranks (identical
p, to show what the vectorisation buys), and coin's time and p on the same data, measured once
with ``benchmarks/r/bench_wilcoxon_coin.R`` (R 4.2.2, coin 1.4.2, CPU time on this machine).

Run: ``uv run python benchmarks/bench_wilcoxon.py [--naive-max-n 200]``.
Data (no random numbers, identical in R): d_i = (37 i mod 23) - 10, i = 1..n.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from hepatrial.analysis.wilcoxon import (
    _exact_two_sided,
    signed_rank_scores,
    wilcoxon_signed_rank,
)

# benchmarks/r/bench_wilcoxon_coin.R, run once: n -> (coin exact p, ms CPU per test)
COIN = {20: (0.42359542846679688, 6.4), 50: (0.26082206096820926, 9.2),
        100: (0.13068035232850719, 17.5), 200: (0.034182965196731717, 55.2),
        500: (0.00095579635446225368, 314.0)}


def data(n: int) -> np.ndarray:
    i = np.arange(1, n + 1)
    return ((37 * i) % 23 - 10).astype(float)


def naive_p(ranks: np.ndarray, positive: np.ndarray) -> float:
    """The same conditional distribution, one Python dict update per state and observation."""
    a = [round(2.0 * float(r)) for r in ranks]
    dist = {0: 1.0}
    for ai in a:
        new: dict[int, float] = {}
        for s, pr in dist.items():
            new[s] = new.get(s, 0.0) + 0.5 * pr
            new[s + ai] = new.get(s + ai, 0.0) + 0.5 * pr
        dist = new
    total = sum(a)
    v = sum(ai for ai, pos in zip(a, positive, strict=True) if pos)
    low = min(v, total - v)
    if 2 * low == total:
        return 1.0
    return min(1.0, 2.0 * sum(pr for s, pr in dist.items() if s <= low))


def cpu_ms(fn: Callable[[], object], budget_s: float = 0.5) -> float:
    """Median CPU milliseconds per call over repeated calls (at least 3, about budget_s)."""
    times: list[float] = []
    start = time.process_time()
    while len(times) < 3 or (time.process_time() - start < budget_s and len(times) < 200):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return 1000.0 * float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--naive-max-n", type=int, default=200)
    args = ap.parse_args()
    print("exact Wilcoxon signed-rank, ties and zeros (d_i = (37 i mod 23) - 10); CPU ms per "
          "test")
    print(f"{'n':>5} {'zeros':>5} {'p (exact)':>22} {'exact p':>9} {'full call':>9} "
          f"{'naive':>9} {'x faster':>8} {'coin':>7} {'p - coin p':>11}")
    for n in (20, 50, 100, 200, 500, 1000):
        d = data(n)
        ranks, positive, n_zero = signed_rank_scores(d)
        p = _exact_two_sided(ranks, positive)
        t_p = cpu_ms(lambda ranks=ranks, positive=positive: _exact_two_sided(ranks, positive))
        t_full = cpu_ms(lambda d=d: wilcoxon_signed_rank(d, exact_max_n=None))
        naive = speedup = "-"
        if n <= args.naive_max_n:
            pn = naive_p(ranks, positive)
            assert abs(pn - p) <= 1e-12 * p, (n, pn, p)
            t_naive = cpu_ms(lambda ranks=ranks, positive=positive: naive_p(ranks, positive),
                             budget_s=1.0)
            naive, speedup = f"{t_naive:9.2f}", f"{t_naive / t_p:7.0f}x"
        coin_p, coin_ms = COIN.get(n, (float("nan"), float("nan")))
        diff = f"{(p - coin_p) / coin_p:+.1e}" if coin_p == coin_p else "-"
        print(f"{n:5d} {n_zero:5d} {p:22.17g} {t_p:9.3f} {t_full:9.3f} {naive:>9} "
              f"{speedup:>8} {coin_ms:7.1f} {diff:>11}")
    print("exact p: the vectorised shift algorithm alone; full call: wilcoxon_signed_rank "
          "(ranking at digits_rank = 9, exact p, Hodges-Lehmann estimate and exact CI); "
          "naive: pure-Python dict DP, same p; coin: wilcoxsign_test(distribution = 'exact'), "
          "benchmarks/r/bench_wilcoxon_coin.R.  Default exact_max_n = 500: above it the "
          "normal approximation is used and reported.")


if __name__ == "__main__":
    main()
