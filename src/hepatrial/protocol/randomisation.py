"""Randomisation: seeded permuted blocks stratified by site, as a pure function.

The store (``hepatrial.trials.services.generate_randomisation``) persists the list this module
computes and reveals one entry per enrolment; nothing here touches a database.

Algorithm (permuted-block randomisation, Zelen 1974 / ICH E9 §2.3.1; blocks of randomly varied
size so that the next allocation cannot be guessed at the end of a block, Matts & Lachin 1988):
for each site a separate stream ``random.Random(int(sha256(f"{seed}:{site}")[:16], 16))`` picks a
block size from ``block_sizes`` (``rng.choice``), fills the block with each arm repeated
``size // sum(ratio) * ratio[arm]`` times in the ratio's order, shuffles it (``rng.shuffle``),
and repeats until at least ``n`` allocations exist (whole blocks). The same seed, site, block
sizes and ratio always give the same list, on every platform (Python's Mersenne Twister and
``random.shuffle`` are specified and stable).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hepatrial.errors import ProtocolError as _ProtocolErrorBase

__all__ = ["Allocation", "RandomisationError", "allocation_list", "site_stream"]


class RandomisationError(_ProtocolErrorBase):
    """The randomisation settings cannot produce a list (e.g. block size vs ratio)."""


@dataclass(frozen=True)
class Allocation:
    """One concealed allocation: 1-based ``sequence`` within the site, ``block`` number, arm."""

    site: str
    sequence: int
    block: int
    arm: str


def site_stream(seed: int, site: str) -> random.Random:
    """The site's own random stream: ``Random(int(sha256(f"{seed}:{site}")[:16], 16))``."""
    digest = hashlib.sha256(f"{seed}:{site}".encode()).hexdigest()
    return random.Random(int(digest[:16], 16))


def _block(rng: random.Random, size: int, ratio: Mapping[str, int]) -> list[str]:
    total = sum(ratio.values())
    if total <= 0 or any(r < 0 for r in ratio.values()):
        raise RandomisationError(f"ratio {dict(ratio)} must have non-negative weights, not all 0")
    if size % total:
        raise RandomisationError(f"block size {size} is not a multiple of the ratio total {total}")
    block = [code for code, r in ratio.items() for _ in range(size // total * r)]
    rng.shuffle(block)
    return block


def allocation_list(
    *,
    seed: int,
    sites: Sequence[str],
    block_sizes: Sequence[int],
    ratio: Mapping[str, int],
    per_site: int,
) -> list[Allocation]:
    """Allocation lists for ``sites`` (in the order given), ``per_site`` allocations each,
    rounded up to whole blocks. Deterministic for the same arguments."""
    if not block_sizes:
        raise RandomisationError("no block sizes")
    out: list[Allocation] = []
    for site in sites:
        rng = site_stream(seed, site)
        seq, block_no = 0, 0
        while seq < per_site:
            block_no += 1
            size = rng.choice(list(block_sizes))
            for code in _block(rng, int(size), ratio):
                seq += 1
                out.append(Allocation(site=site, sequence=seq, block=block_no, arm=code))
    return out
