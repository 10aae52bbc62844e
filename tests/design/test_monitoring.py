"""hepatrial.design.monitoring against independent values.

R numbers: tests/design/r/monitoring_reference.R (output beside it), which uses pbeta() and
brute-force enumeration of every outcome sequence; closed forms for the first-event and the
k-of-first-m rules.
"""

from __future__ import annotations

import ast
import itertools
import math
from pathlib import Path

import pytest
from scipy.stats import binom

from hepatrial.design import monitoring as m

R_POSTERIOR = [  # (x, n, theta, a, b, R pbeta upper tail)
    (0, 1, 0.2, 0.2, 1.8, 0.112313256020767),
    (1, 1, 0.2, 0.2, 1.8, 0.742507302790272),
    (2, 3, 0.2, 0.2, 1.8, 0.868546112144173),
    (3, 8, 0.2, 0.2, 1.8, 0.784641048590502),
    (4, 8, 0.2, 0.2, 1.8, 0.934365422018664),
    (2, 2, 0.3, 1, 1, 0.973),
    (5, 20, 0.15, 0.5, 0.5, 0.890317532710618),
]

R_OC = [  # p, P(stop), E[N treated]; theta 0.2, c 0.8, Beta(0.2, 1.8), n_max 8
    (0.05, 0.00956040000000004, 7.95751252187499),
    (0.1, 0.0434062, 7.82463080000004),
    (0.2, 0.1873536, 7.2972544),
    (0.3, 0.3983094, 6.50348360000003),
    (0.4, 0.6174208, 5.5795712),
    (0.5, 0.796875, 4.65625),
]


@pytest.mark.parametrize(("x", "n", "theta", "a", "b", "expected"), R_POSTERIOR)
def test_posterior_matches_r_pbeta(x: int, n: int, theta: float, a: float, b: float,
                                   expected: float) -> None:
    assert m.posterior_exceeds(x, n, theta, a, b) == pytest.approx(expected, rel=1e-12)


def test_posterior_closed_form_integer_parameters() -> None:
    # Beta(alpha, beta) integer: P(p > t) = P(Binomial(alpha + beta - 1, t) <= alpha - 1)
    for x, n, t in [(0, 3, 0.1), (2, 5, 0.25), (4, 9, 0.4), (7, 7, 0.9)]:
        alpha, beta_ = 1 + x, 1 + n - x
        closed = binom.cdf(alpha - 1, alpha + beta_ - 1, t)
        assert m.posterior_exceeds(x, n, t, 1, 1) == pytest.approx(closed, rel=1e-12)


def test_boundaries_match_r() -> None:
    assert m.stopping_boundary(0.2, 0.8, 0.2, 1.8, 8).tolist() == [2, 2, 2, 3, 3, 3, 3, 4]
    assert m.stopping_boundary(0.3, 0.9, 1, 1, 10).tolist() == [1, 2, 2, 3, 3, 4, 4, 4, 5, 5]
    # min_n: no stop before 3 participants
    assert m.stopping_boundary(0.3, 0.9, 1, 1, 4, min_n=3).tolist() == [2, 3, 2, 3]


def test_boundary_is_the_strict_threshold() -> None:
    # x = 2 of n = 2 with Beta(1, 1), theta 0.3: posterior exactly 0.973 (R). c = 0.973 does
    # not stop (strict >), a c just below does.
    post = m.posterior_exceeds(2, 2, 0.3, 1, 1)
    assert m.stopping_boundary(0.3, float(post), 1, 1, 2).tolist()[1] == 3
    assert m.stopping_boundary(0.3, float(post) - 1e-9, 1, 1, 2).tolist()[1] == 2


@pytest.mark.parametrize(("p", "p_stop", "e_n"), R_OC)
def test_bayesian_oc_matches_r_enumeration(p: float, p_stop: float, e_n: float) -> None:
    mon = m.bayesian_monitor("bayes", "related_sae", 0.2, 0.8, 0.2, 1.8, 8)
    oc = m.operating_characteristics([mon], {"related_sae": p}, 8)
    assert oc.prob_stop == pytest.approx(p_stop, abs=1e-12)
    assert oc.expected_treated == pytest.approx(e_n, abs=1e-12)
    assert math.fsum(oc.prob_stop_at) == pytest.approx(oc.prob_stop, abs=1e-15)
    assert oc.prob_stop_at[0] == 0.0  # one participant cannot stop this rule


def _enumerate(boundary: tuple[int, ...], p: float, n_max: int) -> tuple[float, float]:
    ps = en = 0.0
    for seq in itertools.product((0, 1), repeat=n_max):
        pr = math.prod(p if y else 1 - p for y in seq)
        c, stop = 0, None
        for i, y in enumerate(seq, start=1):
            c += y
            if c >= boundary[i - 1]:
                stop = i
                break
        ps += pr if stop else 0.0
        en += pr * (stop or n_max)
    return ps, en


def test_oc_equals_python_enumeration_on_other_designs() -> None:
    for theta, c, a, b, n in [(0.3, 0.9, 1, 1, 10), (0.15, 0.7, 0.5, 2.5, 9)]:
        mon = m.bayesian_monitor("x", "e", theta, c, a, b, n)
        for p in (0.0, 0.12, 0.35, 1.0):
            oc = m.operating_characteristics([mon], {"e": p}, n)
            ps, en = _enumerate(mon.boundary, p, n)
            assert oc.prob_stop == pytest.approx(ps, abs=1e-12)
            assert oc.expected_treated == pytest.approx(en, abs=1e-12)


def test_first_event_rule_closed_form_and_rule_set() -> None:
    first = m.count_monitor("first", "related_sae", 1, 8)
    bayes = m.bayesian_monitor("bayes", "related_sae", 0.2, 0.8, 0.2, 1.8, 8)
    for p in (0.01, 0.1, 0.3):
        oc = m.operating_characteristics([first, bayes], {"related_sae": p}, 8)
        assert oc.prob_stop == pytest.approx(1 - (1 - p) ** 8, abs=1e-13)
        assert oc.expected_treated == pytest.approx((1 - (1 - p) ** 8) / p, abs=1e-12)
        assert oc.prob_stop_by_rule == {"first": pytest.approx(oc.prob_stop), "bayes": 0.0}
    # R enumeration, p = 0.1
    oc = m.operating_characteristics([first, bayes], {"related_sae": 0.1}, 8)
    assert (oc.prob_stop, oc.expected_treated) == (
        pytest.approx(0.56953279, abs=1e-12), pytest.approx(5.6953279, abs=1e-11))


def test_k_of_first_m_closed_form_and_two_event_types() -> None:
    meld = m.count_monitor("meld", "meld_rise", 2, 8, count_first=4)
    for q in (0.05, 0.2, 0.5):
        oc = m.operating_characteristics([meld], {"meld_rise": q}, 8)
        assert oc.prob_stop == pytest.approx(1 - binom.cdf(1, 4, q), abs=1e-13)
        assert sum(oc.prob_stop_at[4:]) == 0.0  # cannot stop after the 4th participant
    # R enumeration of two independent event types, n_max 6
    first = m.count_monitor("first", "A", 1, 6)
    meld = m.count_monitor("meld", "B", 2, 6, count_first=4)
    oc = m.operating_characteristics([first, meld], {"A": 0.05, "B": 0.2}, 6)
    assert oc.prob_stop == pytest.approx(0.397812723199998, abs=1e-12)
    assert oc.expected_treated == pytest.approx(4.88573286400001, abs=1e-11)
    assert math.fsum(oc.prob_stop_by_rule.values()) == pytest.approx(oc.prob_stop)


def test_edge_rates_and_determinism() -> None:
    mon = m.bayesian_monitor("b", "e", 0.2, 0.8, 0.2, 1.8, 8)
    assert m.operating_characteristics([mon], {"e": 0.0}, 8).prob_stop == 0.0
    one = m.operating_characteristics([mon], {"e": 1.0}, 8)
    assert one.prob_stop == 1.0 and one.expected_treated == 2.0
    t1 = [oc.as_dict() for oc in m.oc_table([mon], "e", [0.1, 0.2], 8)]
    t2 = [oc.as_dict() for oc in m.oc_table([mon], "e", [0.1, 0.2], 8)]
    assert t1 == t2 and t1[1]["rates"] == {"e": 0.2}


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="prior a"):
        m.posterior_exceeds(1, 2, 0.2, 0, 1)
    with pytest.raises(ValueError, match="theta"):
        m.posterior_exceeds(1, 2, 1.0, 1, 1)
    with pytest.raises(ValueError, match="0 <= x <= n"):
        m.posterior_exceeds(3, 2, 0.2, 1, 1)
    mon = m.count_monitor("f", "e", 1, 4)
    with pytest.raises(ValueError, match="has no rate"):
        m.operating_characteristics([mon], {"x": 0.1}, 4)
    with pytest.raises(ValueError, match="boundary has 4 values"):
        m.operating_characteristics([mon], {"e": 0.1}, 5)
    with pytest.raises(ValueError, match=r"rate of 'e'"):
        m.operating_characteristics([mon], {"e": 1.5}, 4)


def test_design_layer_is_pure() -> None:
    # the design layer imports numpy/scipy and the standard library only
    pkg = Path(m.__file__).resolve().parent
    allowed = {"numpy", "scipy", "__future__", "itertools", "math", "collections", "dataclasses",
               "typing", "functools"}
    for f in sorted(pkg.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= allowed, f"{f.name} imports {roots - allowed}"
