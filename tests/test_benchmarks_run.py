"""The store benchmarks still run (issue 8): each one that builds a store, at a size that takes
seconds, as a user runs it (a subprocess of this Python). ``bench_import`` broke once unnoticed
(its ``--user benchmark`` account was never created once imports stopped creating accounts);
the figures themselves belong to the full-size runs, not to tests."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests._serving import cli_env

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize(("script", "args", "expect"), [
    ("bench_import.py", ["--rows", "3000", "--verify"],
     [r"import: 3000 created, 0 changed, 0 unchanged", r"rate: [\d,]+ rows/s",
      r"audit\.verify: 0 problem\(s\)"]),
])
def test_benchmark_runs(script: str, args: list[str], expect: list[str], tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, str(BENCH / script), "--dir", str(tmp_path), *args],
                       env=cli_env(), capture_output=True, text=True, timeout=600,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    for pattern in expect:
        assert re.search(pattern, r.stdout), (pattern, r.stdout)
