"""Exact Wilcoxon signed-rank, digits_rank and Hodges–Lehmann against R.

References: ``tests/analysis/r/wilcoxon_reference.R`` (R 4.2.2, coin 1.4.2, MASS 7.3-58)
computed ``coin::wilcoxsign_test(distribution = "exact")`` (zero.method "Wilcoxon" and "Pratt"),
``wilcox.test`` (exact, asymptotic with and without continuity correction, ``conf.int``,
``digits.rank``), ``signif``, ``psignrank`` and ``qsignrank`` on 36 paired data sets R ships
(sleep, MASS shoes/anorexia/immer/cats/survey, ChickWeight, attitude, trees, ...) and two
literal examples; n = 9 .. 272, with ties, zeros and none.  The numbers live in
``tests/data/analysis/wilcoxon_*.csv``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from hepatrial.analysis.wilcoxon import (
    hodges_lehmann,
    psignrank,
    qsignrank,
    signif,
    wilcoxon_signed_rank,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "analysis"
EXACT_REL = 1e-12  # exact p vs coin (observed worst 1.1e-14)
ASYM_REL = 1e-12  # normal approximation vs wilcox.test (observed worst 6e-15)
UNIROOT_TOL = 1e-4  # R finds asymptotic CI limits with uniroot(tol = 1e-4)


def _load() -> tuple[pd.DataFrame, dict[tuple[str, str], dict[str, float]]]:
    data = pd.read_csv(DATA / "wilcoxon_data.csv")
    ref = pd.read_csv(DATA / "wilcoxon_reference.csv", dtype={"digits_rank": str})
    table: dict[tuple[str, str], dict[str, float]] = {}
    for (case, dr), g in ref.groupby(["case", "digits_rank"], sort=False):
        table[(str(case), str(dr))] = dict(zip(g["quantity"], g["value"].astype(float),
                                               strict=True))
    return data, table


DATA_FRAME, REF = _load()
KEYS = sorted(REF)


def _diff(case: str) -> np.ndarray:
    g = DATA_FRAME[DATA_FRAME["case"] == case].sort_values("i")
    return g["y"].to_numpy(dtype=float) - g["x"].to_numpy(dtype=float)  # R: y - x


def _digits(dr: str) -> int | None:
    return None if dr == "Inf" else int(dr)


def _run(case: str, dr: str, **kw: Any) -> dict[str, Any]:
    return wilcoxon_signed_rank(_diff(case), digits_rank=_digits(dr), exact_max_n=None, **kw)


def test_reference_covers_the_brief() -> None:
    cases = {c for c, _ in KEYS}
    assert len(cases) == 38
    n = {c: int(REF[(c, "Inf")]["n_pairs"]) for c in cases}
    assert min(n.values()) <= 10 and max(n.values()) >= 272
    assert sum(14 <= v <= 60 for v in n.values()) >= 25
    with_ties = [c for c in cases if REF[(c, "Inf")]["ties"] == 1]
    with_zeros = [c for c in cases if REF[(c, "Inf")]["n_zero"] > 0]
    assert len(with_ties) >= 25 and len(with_zeros) >= 10


@pytest.mark.parametrize("key", KEYS, ids=lambda k: f"{k[0]}-digits{k[1]}")
def test_exact_p_equals_coin(key: tuple[str, str]) -> None:
    case, dr = key
    ref = REF[key]
    w = _run(case, dr)
    assert w["V"] == ref["V"]
    assert w["n_zero"] == ref["n_zero"] and w["ties"] == bool(ref["ties"])
    assert w["method_used"] == "exact"
    assert w["method"] == ("exact" if not w["ties"] and not w["n_zero"] else "exact permutation")
    assert w["p"] == pytest.approx(ref["p_coin_exact_wilcoxon"], rel=EXACT_REL)
    pratt = _run(case, dr, zero_method="pratt")
    assert pratt["p"] == pytest.approx(ref["p_coin_exact_pratt"], rel=EXACT_REL)
    if "p_exact_r" in ref:  # no ties, no zeros: R's own exact p-value
        assert w["p"] == pytest.approx(ref["p_exact_r"], rel=EXACT_REL)


@pytest.mark.parametrize("key", KEYS, ids=lambda k: f"{k[0]}-digits{k[1]}")
def test_asymptotic_p_equals_wilcox_test(key: tuple[str, str]) -> None:
    case, dr = key
    ref = REF[key]
    cc = _run(case, dr, method="asymptotic")
    assert cc["p"] == pytest.approx(ref["p_asymptotic_cc"], rel=ASYM_REL)
    assert cc["method"] == "asymptotic, continuity-corrected" and cc["method_used"] == "asymptotic"
    plain = _run(case, dr, method="asymptotic", correction=False)
    assert plain["p"] == pytest.approx(ref["p_asymptotic"], rel=ASYM_REL)
    # coin's asymptotic Pratt test (no continuity correction); coin's variance is summed in
    # another order, which moves p ~ 1e-9 by 1e-7 relative
    pratt = _run(case, dr, method="asymptotic", correction=False, zero_method="pratt")
    assert pratt["p"] == pytest.approx(ref["p_coin_asymptotic_pratt"], rel=1e-6)


def _walsh(x: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(x.size)
    return np.sort((x[i] + x[j]) / 2.0)


HL_KEYS = [k for k in KEYS if "hl_asymptotic_cc_low" in REF[k]]


@pytest.mark.parametrize("key", HL_KEYS, ids=lambda k: f"{k[0]}-digits{k[1]}")
def test_hodges_lehmann_matches_wilcox_test(key: tuple[str, str]) -> None:
    case, dr = key
    ref = REF[key]
    d = _diff(case)
    exact = _run(case, dr)
    w = _walsh(d[d != 0])  # R drops zero differences before estimating; so does "wilcoxon"
    assert exact["hl_estimate"] == float(np.median(w))
    if "hl_exact_low" in ref:  # R's exact interval (no ties, no zeros; forced for n >= 50)
        assert exact["hl_estimate"] == pytest.approx(ref["hl_exact_estimate"], rel=1e-14)
        assert exact["hl_ci_low"] == pytest.approx(ref["hl_exact_low"], rel=1e-14)
        assert exact["hl_ci_high"] == pytest.approx(ref["hl_exact_high"], rel=1e-14)
        assert exact["hl_ci_method"] == "exact (Walsh-average order statistics)"
        # achieved level 1 - 2 P(V <= k - 1); R reports the requested 0.95 when achievable
        n = exact["n_used"]
        k = qsignrank(0.025, n)
        assert exact["hl_ci_level"] == 1 - 2 * psignrank(k - 1, n)
        assert ref["hl_exact_level"] == 0.95 and exact["hl_ci_level"] >= 0.95
    for correct, name in ((True, "hl_asymptotic_cc"), (False, "hl_asymptotic")):
        asy = _run(case, dr, method="asymptotic", correction=correct)
        # our limits are the Walsh averages where the statistic jumps across the quantile;
        # R's uniroot stops within its tolerance of them
        for side in ("low", "high"):
            ours = asy[f"hl_ci_{side}"]
            assert ours in w
            assert ours == pytest.approx(ref[f"{name}_{side}"], abs=UNIROOT_TOL)
        assert asy["hl_ci_level"] == ref[f"{name}_level"]
        # R's estimate is a uniroot point of the flat piece of the statistic around the
        # median of the Walsh averages: between the two middle Walsh averages
        mid = (w.size - 1) // 2, w.size // 2
        assert w[mid[0]] - UNIROOT_TOL <= ref[f"{name}_estimate"] <= w[mid[1]] + UNIROOT_TOL


ALL_KEYS = [k for k in KEYS if "hl_all_asymptotic_cc_low" in REF[k]]


@pytest.mark.parametrize("key", ALL_KEYS, ids=lambda k: k[0])
def test_hodges_lehmann_of_all_differences_with_pratt(key: tuple[str, str]) -> None:
    """zero_method="pratt" keeps the zeros in the estimate; R on d - c (no zeros), + c."""
    case, dr = key
    ref = REF[key]
    d = _diff(case)
    assert (d == 0).any()
    exact = _run(case, dr, zero_method="pratt")
    assert exact["hl_estimate"] == float(np.median(_walsh(d)))
    if "hl_all_exact_low" in ref:
        assert exact["hl_estimate"] == pytest.approx(ref["hl_all_exact_estimate"], abs=1e-12)
        assert exact["hl_ci_low"] == pytest.approx(ref["hl_all_exact_low"], abs=1e-12)
        assert exact["hl_ci_high"] == pytest.approx(ref["hl_all_exact_high"], abs=1e-12)
    asy = _run(case, dr, zero_method="pratt", method="asymptotic")
    assert asy["hl_ci_low"] == pytest.approx(ref["hl_all_asymptotic_cc_low"], abs=UNIROOT_TOL)
    assert asy["hl_ci_high"] == pytest.approx(ref["hl_all_asymptotic_cc_high"], abs=UNIROOT_TOL)


def test_sleep_s5_hodges_lehmann() -> None:
    """analysis-notes S5: R wilcox.test(conf.int = TRUE) on sleep, 1.4000208 (1.0500180,
    2.9499208) — R's uniroot values; the exact limits are the Walsh averages 1.4, 1.05, 2.95."""
    d = _diff("sleep")
    asy = hodges_lehmann(d[d != 0], method="asymptotic")
    assert asy["estimate"] == pytest.approx(1.4000208, abs=UNIROOT_TOL)
    assert asy["ci_low"] == pytest.approx(1.0500180, abs=UNIROOT_TOL)
    assert asy["ci_high"] == pytest.approx(2.9499208, abs=UNIROOT_TOL)
    assert (asy["estimate"], asy["ci_low"], asy["ci_high"]) == pytest.approx((1.4, 1.05, 2.95),
                                                                            rel=1e-14)
    exact = wilcoxon_signed_rank(d)  # exact interval: here the same limits, level 0.961
    assert (exact["hl_estimate"], exact["hl_ci_low"], exact["hl_ci_high"]) == pytest.approx(
        (1.4, 1.05, 2.95), rel=1e-14)
    assert exact["hl_ci_level"] == 1 - 2 * 10 / 512  # n = 9: k = 6, P(V <= 5) = 10/512
    assert "conservative" in exact["hl_ci_method"]  # sleep has tied differences


def test_issue9_examples() -> None:
    """ChickWeight day 0 vs 2 (n = 50, ties): exact 4.4e-14 where the old fallback printed the
    normal approximation 1.1e-9; tied ordinal scores n = 20: exact 0.059 vs 0.048 (the
    decision at 0.05 flips)."""
    cw = _run("chickweight_0_2", "Inf")
    assert cw["p"] == pytest.approx(4.4408920985006262e-14, rel=EXACT_REL)
    assert REF[("chickweight_0_2", "Inf")]["p_asymptotic_cc"] == pytest.approx(1.13218e-9,
                                                                               rel=1e-5)
    o = wilcoxon_signed_rank(_diff("ordinal_20"))
    assert o["p"] == pytest.approx(0.059478759765625, rel=EXACT_REL)
    assert o["method"] == "exact permutation" and o["n_used"] == 17 and o["n_zero"] == 3
    assert wilcoxon_signed_rank(_diff("ordinal_20"), method="asymptotic")["p"] == pytest.approx(
        0.04812810716340029, rel=ASYM_REL)


def test_digits_rank_restores_recorded_ties() -> None:
    """fp_ties: changes recorded as +0.3 (11 times), -0.3, +0.2, +0.1 (twice), -0.1.  In binary
    floating point most +0.3 differ in the last bits; R's digits.rank = 9 (our default) ties
    them again and changes V and p; digits_rank=None ranks the raw doubles (R's default)."""
    d = _diff("fp_ties")
    assert np.unique(d).size > 5  # the recorded ties are not ties in floating point
    raw = wilcoxon_signed_rank(d, digits_rank=None)
    rounded = wilcoxon_signed_rank(d)
    assert rounded["digits_rank"] == 9
    assert raw["V"] == REF[("fp_ties", "Inf")]["V"] == 127.5
    assert rounded["V"] == REF[("fp_ties", "9")]["V"] == 123.5
    assert raw["p"] == pytest.approx(0.00091552734375, rel=EXACT_REL)
    assert rounded["p"] == pytest.approx(0.001953125, rel=EXACT_REL)
    recorded = np.round(d, 1)  # the changes as recorded: same ranks as digits_rank=9
    assert wilcoxon_signed_rank(recorded, digits_rank=None)["p"] == rounded["p"]


def test_r_signif() -> None:
    ref = pd.read_csv(DATA / "wilcoxon_signif.csv")
    for digits, g in ref.groupby("digits"):
        got = signif(g["x"].to_numpy(dtype=float), int(digits))
        np.testing.assert_array_equal(got, g["signif"].to_numpy(dtype=float),
                                      err_msg=f"digits={digits}")


def test_psignrank_qsignrank_match_r() -> None:
    ref = pd.read_csv(DATA / "wilcoxon_signrank.csv")
    for row in ref.itertuples(index=False):
        assert psignrank(int(row.q), int(row.n)) == pytest.approx(float(row.psignrank),
                                                                  rel=1e-13, abs=1e-300)
    per_n = ref.drop_duplicates("n")
    for row in per_n.itertuples(index=False):
        assert qsignrank(0.025, int(row.n)) == int(row[3])  # qsignrank_0.025
        assert qsignrank(0.005, int(row.n)) == int(row[4])  # qsignrank_0.005
    assert math.isclose(psignrank(0, 60), 2.0**-60, rel_tol=1e-13)
