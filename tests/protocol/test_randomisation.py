"""The pure permuted-block randomisation (hepatrial.protocol.randomisation)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hepatrial.protocol.randomisation import RandomisationError, allocation_list


def test_known_sequences_are_stable() -> None:
    # golden values: the list the store has generated since issue 3 (same algorithm)
    a = allocation_list(seed=20240101, sites=["S01", "S02"], block_sizes=[2, 4],
                        ratio={"A": 1, "B": 1}, per_site=8)
    s01 = [x for x in a if x.site == "S01"]
    assert "".join(x.arm for x in s01) == "AABBBAABBA"
    assert [x.block for x in s01] == [1, 1, 1, 1, 2, 2, 3, 3, 3, 3]
    assert [x.sequence for x in s01] == list(range(1, 11))
    assert "".join(x.arm for x in a if x.site == "S02") == "ABABABAB"
    b = allocation_list(seed=7, sites=["X"], block_sizes=[3, 6], ratio={"T": 2, "C": 1},
                        per_site=12)
    assert "".join(x.arm for x in b) == "CTTCTTTCTCTT"


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**40),
    sizes=st.lists(st.sampled_from([2, 4, 6, 8]), min_size=1, max_size=3, unique=True),
    n=st.integers(1, 60),
)
def test_every_block_is_balanced_and_lists_are_deterministic(seed: int, sizes: list[int],
                                                             n: int) -> None:
    a = allocation_list(seed=seed, sites=["S1", "S2"], block_sizes=sizes,
                        ratio={"A": 1, "B": 1}, per_site=n)
    assert a == allocation_list(seed=seed, sites=["S1", "S2"], block_sizes=sizes,
                                ratio={"A": 1, "B": 1}, per_site=n)
    for site in ("S1", "S2"):
        rows = [x for x in a if x.site == site]
        assert len(rows) >= n and len(rows) - n < max(sizes)
        for block in {x.block for x in rows}:
            counts = Counter(x.arm for x in rows if x.block == block)
            assert counts["A"] == counts["B"]


def test_block_size_must_fit_the_ratio() -> None:
    with pytest.raises(RandomisationError, match="block size 3 is not a multiple of the ratio "
                                                  "total 2"):
        allocation_list(seed=1, sites=["S"], block_sizes=[3], ratio={"A": 1, "B": 1},
                        per_site=4)
