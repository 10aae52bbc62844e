"""Small inline SVG charts of the eCRF (no JavaScript, no image files, printable).

Pure functions: data in, SVG markup out (escaped; the same data give the same bytes).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from django.utils.safestring import SafeString, mark_safe


def _fmt(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def sparkline(points: Sequence[tuple[float, float, str]], *, width: int = 220,
              height: int = 48, label: str = "") -> SafeString:
    """A line of ``(x, y, name)`` points (x = study day, y = value), each point with a tooltip
    ``name: value``; the first and last values are written at the ends. Empty: ``""``."""
    if not points:
        return mark_safe("")
    pad_l, pad_r, pad_y = 28, 28, 8
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 1, y1 + 1

    def px(x: float) -> float:
        return pad_l + (0.5 if x1 == x0 else (x - x0) / (x1 - x0)) * (width - pad_l - pad_r)

    def py(y: float) -> float:
        return height - pad_y - (y - y0) / (y1 - y0) * (height - 2 * pad_y)

    path = " ".join(f"{_fmt(px(x))},{_fmt(py(y))}" for x, y, _n in points)
    dots = "".join(
        f'<circle cx="{_fmt(px(x))}" cy="{_fmt(py(y))}" r="2.5"><title>{escape(n)}: '
        f'{y:.1f}</title></circle>' for x, y, n in points)
    first, last = points[0], points[-1]
    svg = (
        f'<svg class="spark" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="{escape(label)}">'
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{path}"/>'
        f'{dots}'
        f'<text x="{pad_l - 4}" y="{_fmt(py(first[1]) + 4)}" text-anchor="end">'
        f'{first[1]:.1f}</text>'
        f'<text x="{width - pad_r + 4}" y="{_fmt(py(last[1]) + 4)}">{last[1]:.1f}</text>'
        '</svg>'
    )
    return mark_safe(svg)


def step_chart(rows: Sequence[dict[str, object]], *, width: int = 560, height: int = 140
               ) -> SafeString:
    """Cumulative enrolment by month (``rows`` of :func:`~hepatrial.trials.selectors_web.
    enrolment_by_month`) as bars of the monthly count and a line of the running total."""
    if not rows:
        return mark_safe("")
    pad_l, pad_b, pad_t = 30, 22, 10
    n = len(rows)
    top = max(int(r["cumulative"]) for r in rows) or 1  # type: ignore[call-overload]
    bw = (width - pad_l - 10) / n
    parts = []
    pts = []
    for i, r in enumerate(rows):
        x = pad_l + i * bw
        h = int(r["n"]) / top * (height - pad_b - pad_t)  # type: ignore[call-overload]
        y = height - pad_b - h
        parts.append(f'<rect class="bar" x="{_fmt(x + 1)}" y="{_fmt(y)}" '
                     f'width="{_fmt(max(bw - 2, 1))}" height="{_fmt(h)}"><title>'
                     f'{escape(str(r["month"]))}: {r["n"]} enrolled, {r["cumulative"]} in total'
                     '</title></rect>')
        cy = height - pad_b - int(r["cumulative"]) / top * (  # type: ignore[call-overload]
            height - pad_b - pad_t)
        pts.append(f"{_fmt(x + bw / 2)},{_fmt(cy)}")
    step = max(1, n // 8)
    labels = "".join(
        f'<text x="{_fmt(pad_l + i * bw + bw / 2)}" y="{height - 6}" text-anchor="middle">'
        f'{escape(str(rows[i]["month"]))}</text>' for i in range(0, n, step))
    svg = (
        f'<svg class="chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="enrolment by month">'
        f'<line x1="{pad_l}" y1="{height - pad_b}" x2="{width - 10}" y2="{height - pad_b}" '
        'stroke="#9aa5b1"/>'
        f'<text x="{pad_l - 4}" y="{pad_t + 4}" text-anchor="end">{top}</text>'
        f'<text x="{pad_l - 4}" y="{height - pad_b}" text-anchor="end">0</text>'
        f'{"".join(parts)}'
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" '
        f'points="{" ".join(pts)}"/>{labels}</svg>'
    )
    return mark_safe(svg)
