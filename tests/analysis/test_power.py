"""Power for the follow-up trial: analysis-notes P1-P3 and R12."""

from __future__ import annotations

import pytest

from hepatrial.analysis import (
    AnalysisInputError,
    paired_power,
    paired_sample_size,
    sd_inflation_factor,
    sd_of_difference,
)


def test_p1_sample_size_delta1_sd1p5() -> None:
    n = paired_sample_size(0.8, delta=1.0, sd=1.5)
    assert n == pytest.approx(19.66695, abs=1e-5)  # statsmodels = R strict=TRUE (19.66693)
    assert n == pytest.approx(19.66697, abs=5e-5)  # R power.t.test default


def test_p2_power_n8() -> None:
    p = paired_power(8, delta=1.0, sd=1.5)
    assert p == pytest.approx(0.370667594, rel=1e-8)  # R strict=TRUE
    assert p == pytest.approx(0.3705248, abs=2e-4)  # R default strict=FALSE ignores far tail


def test_p3_sample_size_d05() -> None:
    assert paired_sample_size(0.8, effect_size=0.5) == pytest.approx(33.36713, abs=1e-5)


def test_r12_pilot_sd_inflation() -> None:
    assert sd_inflation_factor(8, 0.8) == pytest.approx(1.3533, abs=1e-4)
    assert sd_inflation_factor(8, 0.9) == pytest.approx(1.5719, abs=1e-4)
    assert sd_inflation_factor(8, 0.95) == pytest.approx(1.7972, abs=1e-4)
    assert sd_inflation_factor(8, 0.8) ** 2 == pytest.approx(1.8313, abs=1e-4)


def test_sd_of_difference_and_errors() -> None:
    assert sd_of_difference(2.0, 2.0, 0.5) == pytest.approx(2.0)
    with pytest.raises(AnalysisInputError):
        paired_power(8, delta=1.0)
    with pytest.raises(AnalysisInputError):
        paired_sample_size(0.8, delta=1.0, sd=1.0, effect_size=1.0)
