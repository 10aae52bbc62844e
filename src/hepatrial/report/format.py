"""Number, p-value, unit and label formatting for the report (journal conventions).

Conventions (one place for every table, text and the Word document):

* **Numbers** are rounded half away from zero (as printed in papers, and as gtsummary's
  ``style_number``), negative numbers carry a true minus sign (U+2212 ``−``), never a hyphen,
  and a value that rounds to zero prints without a sign (``0.0``).
* **Confidence limits** (:func:`fmt_bound`): a non-zero limit that would round to zero is
  printed with two significant digits instead (``−0.015``, not ``0.0``), so the side of 0 a
  limit is on — whether the CI excludes "no change" — is never hidden by rounding.
* **p-values** (:func:`fmt_p`), the journal rule (NEJM/Lancet style; AMA Manual of Style 11th ed.
  §19.5 notes the exception for values that rounding would move across the significance
  level): ``<0.001`` below 0.001, ``>0.99`` above 0.99, otherwise **two significant digits**
  (0.0123 → 0.012, 0.256 → 0.26, 0.0012 → 0.0012), rounded half up in decimal.  *Boundary
  rule*: the printed value is on the same side of α as the exact value — below, equal or
  above.  When two digits would put it on α or across it (0.0499 → "0.050" reads as "not
  below 0.05"; 0.05004 → "0.050" reads as "significant at p ≤ 0.05"), significant digits are
  added until it is not: 0.0499 → ``0.0499``, 0.04999 → ``0.04999``, 0.05004 → ``0.05004``.
  Only p = α exactly prints ``0.050``.
* **Percentages** (:func:`fmt_pct`) as gtsummary ``style_percent()``: ≥ 10 % no decimal,
  0.1–10 % one decimal, below 0.1 % ``<0.1``, 0 ``0``.
* **Units** (:func:`unit_label`): µmol/L (not umol/L), ×10⁹/L (not 10^9/L), nothing for
  dimensionless INR and for score points.
* **Visit labels** (:func:`visit_label`): "Baseline", "Week 24" — the protocol's label without
  its parenthetical remark, never the visit code.
"""

from __future__ import annotations

import math
import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

__all__ = [
    "MINUS",
    "SIGNIFICANCE",
    "fmt_bound",
    "fmt_ci",
    "fmt_mean_sd",
    "fmt_n_pct",
    "fmt_num",
    "fmt_p",
    "fmt_pct",
    "fmt_sig",
    "is_missing",
    "minus",
    "outcome_label",
    "p_text",
    "superscript",
    "unit_label",
    "visit_label",
    "visit_word",
]

MINUS = "\u2212"
SIGNIFICANCE = 0.05
DASH = "—"
_SUPER = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def is_missing(x: Any) -> bool:
    """None, NaN or pandas NA."""
    if x is None:
        return True
    try:
        return bool(math.isnan(float(x)))
    except (TypeError, ValueError):
        return False


def minus(text: str) -> str:
    """Replace a leading hyphen-minus of a number by the true minus sign (U+2212)."""
    return MINUS + text[1:] if text.startswith("-") else text


def fmt_num(x: Any, d: int) -> str:
    """Round half away from zero to ``d`` decimals; true minus sign; ``—`` when missing."""
    if is_missing(x):
        return DASH
    v = float(x)
    q = 10.0 ** d
    r = math.floor(abs(v) * q + 0.5 + 1e-9) / q
    if r == 0:
        return f"{0.0:.{d}f}"
    s = f"{r:.{d}f}"
    return MINUS + s if v < 0 else s


def fmt_sig(x: Any, sig: int = 2) -> str:
    """``x`` to ``sig`` significant digits (decimal half-up), true minus sign."""
    if is_missing(x):
        return DASH
    v = float(x)
    if v == 0:
        return "0"
    s = _round_sig(abs(v), sig)
    return MINUS + s if v < 0 else s


def _round_sig(p: float, sig: int) -> str:
    d = Decimal(repr(p))
    exp = d.adjusted()  # floor(log10(p))
    for e in (exp, exp + 1):  # rounding can carry into the next decade (0.0996 -> 0.10)
        quantum = Decimal(1).scaleb(e - sig + 1)
        r = d.quantize(quantum, rounding=ROUND_HALF_UP)
        if r.adjusted() == e:
            return format(r, "f")
    return format(r, "f")  # pragma: no cover - the second pass always matches


def fmt_p(p: Any, *, alpha: float = SIGNIFICANCE) -> str:
    """p-value by the journal rule with the α-boundary rule (see the module docstring)."""
    if is_missing(p):
        return DASH
    p = float(p)
    if p < 0.001:
        return "<0.001"
    if p > 0.99:
        return ">0.99"
    side = _side(p, alpha)
    for sig in range(2, 17):
        s = _round_sig(p, sig)
        if _side(float(s), alpha) == side:
            return s
    return repr(p)  # pragma: no cover - 17 digits always reproduce the float


def _side(x: float, alpha: float) -> int:
    return (x > alpha) - (x < alpha)


def p_text(p: Any, *, alpha: float = SIGNIFICANCE) -> str:
    """``P = 0.012``, ``P < 0.001``, ``P > 0.99`` for running text."""
    s = fmt_p(p, alpha=alpha)
    if s == DASH:
        return "P not estimable"
    if s[0] in "<>":
        return f"P {s[0]} {s[1:]}"
    return f"P = {s}"


def fmt_bound(x: Any, d: int) -> str:
    """A confidence limit: ``d`` decimals, or two significant digits when a non-zero limit
    would otherwise round to zero (the side of 0 stays visible)."""
    if is_missing(x):
        return DASH
    s = fmt_num(x, d)
    if float(x) != 0 and float(s.replace(MINUS, "-")) == 0:
        return fmt_sig(x, 2)
    return s


def fmt_ci(low: Any, high: Any, d: int, sep: str = ", ") -> str:
    """``low, high`` (each by :func:`fmt_bound`)."""
    return f"{fmt_bound(low, d)}{sep}{fmt_bound(high, d)}"


def fmt_mean_sd(mean: Any, sd: Any, d: int) -> str:
    """``mean ± SD`` with ``d`` decimals (``mean`` alone when the SD is missing)."""
    if is_missing(mean):
        return DASH
    return f"{fmt_num(mean, d)} ± {fmt_num(sd, d)}" if not is_missing(sd) else fmt_num(mean, d)


def fmt_pct(k: int, n: int) -> str:
    """Percentage as gtsummary ``style_percent()`` (≥ 10: 0 decimals; ≥ 0.1: 1; else <0.1)."""
    if not n:
        return DASH
    x = 100.0 * k / n
    if x == 0:
        return "0"
    if x >= 10:
        return fmt_num(x, 0)
    if x >= 0.1:
        return fmt_num(x, 1)
    return "<0.1"


def fmt_n_pct(k: int, n: int) -> str:
    """``n (p%)``."""
    return f"{int(k)} ({fmt_pct(k, n)}%)" if n else str(int(k))


def superscript(n: int) -> str:
    """Footnote mark: 1 → ¹."""
    return str(n).translate(_SUPER)


_UNIT_TEXT = (("umol", "µmol"), ("uL", "µL"), ("ug", "µg"), ("10^9", "×10⁹"), ("10^6", "×10⁶"),
              ("10^3", "×10³"), ("10^12", "×10¹²"))


def unit_label(unit: Any) -> str:
    """Display unit: ``umol/L`` → ``µmol/L``, ``10^9/L`` → ``×10⁹/L``; ``""`` for the
    dimensionless ``1`` and for score ``points``."""
    if is_missing(unit):
        return ""
    u = str(unit).strip()
    if u in ("", "1", "points", "ratio"):
        return ""
    for a, b in _UNIT_TEXT:
        u = u.replace(a, b)
    return u.replace("××", "×")


def outcome_label(outcome: dict[str, Any], *, with_unit: bool = True) -> str:
    """``Creatinine, µmol/L``; ``INR``; ``MELD (Kamath 2001, continuous)``."""
    label = str(outcome.get("label") or outcome.get("analyte"))
    u = unit_label(outcome.get("reported_unit") or outcome.get("unit"))
    return f"{label}, {u}" if with_unit and u else label


_CODE_LABEL = ((r"^W(\d+)$", "Week {}"), (r"^D(\d+)$", "Day {}"), (r"^M(\d+)$", "Month {}"),
               (r"^Y(\d+)$", "Year {}"))


def visit_label(code: str, labels: dict[str, str] | None = None, *,
                baseline: str | None = None) -> str:
    """Clinical visit label for tables: ``Baseline`` for the baseline visit, else the
    protocol's label without a trailing parenthetical (``Week 24 (end of follow-up)`` →
    ``Week 24``), else one built from the code (``W24`` → ``Week 24``)."""
    if baseline is not None and code == baseline:
        return "Baseline"
    lab = (labels or {}).get(code)
    if lab:
        return re.sub(r"\s*\([^)]*\)\s*$", "", str(lab)).strip() or str(lab)
    if code == "UNS":
        return "Unscheduled"
    if code == "SCR":
        return "Screening"
    for pat, fmt in _CODE_LABEL:
        m = re.match(pat, str(code))
        if m:
            return fmt.format(int(m.group(1)))
    return str(code)


def visit_word(code: str, labels: dict[str, str] | None = None, *,
               baseline: str | None = None) -> str:
    """Visit label for running text: ``week 24``, ``baseline``."""
    lab = visit_label(code, labels, baseline=baseline)
    return lab[:1].lower() + lab[1:] if re.match(r"^(Week|Day|Month|Year|Baseline|Screening|"
                                                  r"Unscheduled)\b", lab) else lab
