"""The layer contracts of docs/CONTRIBUTING (pyproject.toml [tool.importlinter]) hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    exe = Path(sys.executable).with_name("lint-imports")
    res = subprocess.run([str(exe), "--no-cache"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "7 kept, 0 broken" in res.stdout


def test_no_tracked_file_points_outside_the_repository() -> None:
    """A user who clones the repository has none of the development machine's shared reference
    folder: no tracked file (code, data, map, test, document) may name it; the reference data
    lives in tests/data/reference and src/hepatrial/data."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    needles = ("../" + "shared", "/work/" + "shared")  # split: this file must not match
    offenders = []
    for name in filter(None, files):
        try:
            text = (REPO / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        offenders += [f"{name}:{i}" for i, line in enumerate(text.splitlines(), 1)
                      if any(n in line for n in needles)]
    assert offenders == []
