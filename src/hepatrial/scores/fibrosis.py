"""Non-invasive fibrosis indices: FIB-4 and APRI.

* FIB-4: Sterling RK et al. Development of a simple noninvasive index to predict significant
  fibrosis in patients with HIV/HCV coinfection. Hepatology 2006;43:1317-1325.
  ``FIB-4 = age [years] × AST [U/L] / (platelets [10⁹/L] × √ALT [U/L])``. Unbounded, inputs
  not floored. Cut-offs (not applied here): < 1.45 and > 3.25 (Sterling); 1.30 and 2.67 in
  NAFLD (McPherson 2017).
* APRI: Wai CT et al. A simple noninvasive index can predict both significant fibrosis and
  cirrhosis in patients with chronic hepatitis C. Hepatology 2003;38:518-526.
  ``APRI = (AST / AST upper limit of normal) / platelets [10⁹/L] × 100``. The ULN must be the
  laboratory's own; hepatrial has no default for it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hepatrial.scores._core import Errors, broadcast, check_errors, finish, lab


def fib4(age: Any, ast: Any, alt: Any, platelets: Any, *, errors: Errors = "raise") -> Any:
    """FIB-4 index (Sterling 2006): ``age × AST / (platelets × √ALT)``.

    age in years, AST and ALT in U/L, platelets in 10⁹/L (= 10³/µL). All must be > 0.
    """
    check_errors(errors)
    a = lab(age, "age", errors)
    s = lab(ast, "ast", errors)
    t = lab(alt, "alt", errors)
    p = lab(platelets, "platelets", errors)
    a, s, t, p = broadcast(a, s, t, p)
    return finish(a * s / (p * np.sqrt(t)))


def apri(ast: Any, platelets: Any, *, ast_uln: Any, errors: Errors = "raise") -> Any:
    """AST-to-platelet ratio index (Wai 2003): ``(AST / AST_ULN) / platelets × 100``.

    AST and its upper limit of normal in U/L, platelets in 10⁹/L. All must be > 0.
    """
    check_errors(errors)
    s = lab(ast, "ast", errors)
    u = lab(ast_uln, "ast_uln", errors)
    p = lab(platelets, "platelets", errors)
    s, u, p = broadcast(s, u, p)
    return finish(s / u / p * 100.0)
