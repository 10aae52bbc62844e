"""hepatrial.analysis must not import Django or the ORM (docs/contracts.md §4)."""

from __future__ import annotations

import subprocess
import sys


def test_analysis_imports_no_django() -> None:
    code = (
        "import sys, hepatrial.analysis, hepatrial.analysis.lmm, hepatrial.analysis.safety; "
        "bad = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.') "
        "or m.startswith('hepatrial.trials')); print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""
