"""Deterministic matplotlib figures (no pyplot state) as inline SVG / base64 PNG.

Determinism: fixed ``svg.hashsalt``, no ``Date``/``Creator`` metadata, text kept as text
(``svg.fonttype = "none"``, so no font files are embedded or fetched), fixed sizes and DPI.
"""

from __future__ import annotations

import base64
import io
import textwrap
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from hepatrial.report.format import outcome_label

__all__ = ["flow_diagram", "to_inline", "to_png", "trajectories", "waterfall"]

_RC = {
    "svg.hashsalt": "hepatrial",
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
MAX_SVG_LINES = 150  # above this many participants, trajectories are PNG
_COLORS = ("black", "#d95f02", "#1b9e77", "#7570b3")


def to_inline(fig: Any, fmt: str = "svg", alt: str = "") -> str:
    """Render ``fig`` to an inline ``<svg>`` or ``<img src="data:image/png;base64,...">``."""
    buf = io.BytesIO()
    with mpl.rc_context(_RC):
        if fmt == "svg":
            fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None},
                        bbox_inches="tight")
            text = buf.getvalue().decode("utf-8")
            start = text.index("<svg")
            out = text[start:]
            return f'<figure class="fig" role="img" aria-label="{alt}">{out}</figure>'
        fig.savefig(buf, format="png", dpi=110, metadata={"Software": None},
                    bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<figure class="fig"><img alt="{alt}" src="data:image/png;base64,{data}"></figure>'


def to_png(fig: Any, dpi: int = 150) -> bytes:
    """PNG bytes of ``fig`` (no metadata: same figure, same bytes), e.g. for the Word report."""
    buf = io.BytesIO()
    with mpl.rc_context(_RC):
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None},
                    bbox_inches="tight")
    return buf.getvalue()


def _close_after(fig: Any, fmt: str, alt: str, out: str = "html") -> Any:
    """``out="html"``: inline SVG/PNG markup; ``out="png"``: PNG bytes; ``"figure"``: the
    matplotlib figure."""
    if out == "figure":
        return fig
    if out == "png":
        return to_png(fig)
    return to_inline(fig, fmt, alt)


def trajectories(
    data: pd.DataFrame,
    outcomes: list[dict[str, Any]],
    visits: list[str],
    days: dict[str, int],
    *,
    note_visits: tuple[str, ...] = (),
    out: str = "html",
) -> Any:
    """One panel per outcome: each participant's trajectory (thin grey) and mean ± SD (black)
    by visit; x = nominal week. ``note_visits`` are marked as not published. ``out``: see
    :func:`_close_after`."""
    n_out = len(outcomes)
    ncol = min(3, max(1, n_out))
    nrow = int(np.ceil(n_out / ncol))
    n_part = data["participant_id"].nunique()
    with mpl.rc_context(_RC):
        fig = Figure(figsize=(3.4 * ncol, 2.7 * nrow))
        axes = fig.subplots(nrow, ncol, squeeze=False)
        for k, o in enumerate(outcomes):
            ax = axes[k // ncol][k % ncol]
            sub = data[(data["analyte"] == o["analyte"]) & data["visit"].isin(visits)]
            wide = sub.pivot_table(index="participant_id", columns="visit", values="value",
                                   aggfunc="first").reindex(columns=visits)
            x = np.array([days[v] / 7.0 for v in visits])
            segs = []
            for row in wide.to_numpy(dtype=float):
                ok = ~np.isnan(row)
                if ok.sum() >= 2:
                    segs.append(np.column_stack([x[ok], row[ok]]))
            alpha = 0.6 if n_part <= 20 else max(0.03, 6.0 / n_part)
            ax.add_collection(LineCollection(segs, colors="0.55", linewidths=0.7, alpha=alpha))
            arms = sorted(sub["arm"].dropna().astype(str).unique()) if "arm" in sub else []
            groups = [(None, wide)] if len(arms) <= 1 else [
                (a, wide.loc[wide.index.isin(sub.loc[sub["arm"] == a, "participant_id"])])
                for a in arms]
            for j, (a, w) in enumerate(groups):
                mean = w.mean(axis=0).to_numpy(dtype=float)
                sd = w.std(axis=0, ddof=1).to_numpy(dtype=float)
                off = 0.0 if a is None else (j - (len(groups) - 1) / 2) * 0.35
                ax.errorbar(x + off, mean, yerr=sd, color=_COLORS[j % len(_COLORS)] if a else
                            "black", marker="o", ms=3.5, lw=1.6, capsize=3, zorder=3,
                            label="mean ± SD" if a is None else f"{a}: mean ± SD")
            if len(groups) > 1 and k == 0:
                ax.legend(fontsize=7, frameon=False)
            for v in note_visits:
                if v in visits:
                    ax.axvspan(days[v] / 7.0 - 0.4, days[v] / 7.0 + 0.4, color="#f3d9a4",
                               alpha=0.5, lw=0, zorder=0)
            ax.set_title(outcome_label(o), fontsize=9)
            ax.set_xlabel("week")
            ax.autoscale_view()
        for k in range(n_out, nrow * ncol):
            axes[k // ncol][k % ncol].axis("off")
        if note_visits:
            fig.text(0.01, -0.01, "Shaded weeks: values not published (synthetic interpolation).",
                     fontsize=8)
        fig.tight_layout()
    fmt = "svg" if n_part <= MAX_SVG_LINES else "png"
    return _close_after(fig, fmt, "Outcomes over time: individual trajectories and mean ± SD",
                        out)


def waterfall(change: pd.Series, label: str, unit: str, *, out: str = "html") -> Any:
    """Per-participant change (sorted bars), e.g. MELD at the last visit minus baseline."""
    ch = change.dropna().sort_values(ascending=False, kind="mergesort")
    n = len(ch)
    with mpl.rc_context(_RC):
        fig = Figure(figsize=(min(9.0, 2.5 + 0.35 * max(n, 1)) if n <= 60 else 7.5, 2.9))
        ax = fig.subplots()
        colors = np.where(ch.to_numpy() < 0, "#2c7bb6", "#d7191c")
        ax.bar(np.arange(n), ch.to_numpy(), color=colors, width=0.8 if n <= 60 else 1.0)
        ax.axhline(0, color="black", lw=0.8)
        if n <= 30:
            ax.set_xticks(np.arange(n), list(ch.index), rotation=90, fontsize=7)
        else:
            ax.set_xticks([])
            ax.set_xlabel(f"{n} participants, sorted")
        ax.set_ylabel(f"change in {label}" + (f" ({unit})" if unit else ""))
        fig.tight_layout()
    return _close_after(fig, "svg" if n <= MAX_SVG_LINES else "png",
                        f"Waterfall of the change in {label} per participant", out)


def _box(ax: Any, x: float, y: float, text: str, w: float = 0.42, h: float = 0.075,
         side: bool = False) -> None:
    lines = "\n".join(textwrap.fill(t, 46 if not side else 40) for t in text.split("\n"))
    ax.text(x, y, lines, ha="center", va="center", fontsize=7.5,
            bbox={"boxstyle": "square,pad=0.4", "fc": "#f7f7f7" if side else "white",
                  "ec": "black", "lw": 0.8})


def flow_diagram(flow: dict[str, Any], labels: dict[str, str] | None = None, *,
                 out: str = "html") -> Any:
    """CONSORT-style participant flow: screened → eligible → enrolled → treated → each visit,
    with exclusions, losses (reasons) and, at an interim, participants not yet due in side
    boxes. ``labels``: visit code → label for the boxes."""
    steps: list[tuple[str, str | None]] = []
    reasons = flow.get("screen_fail_reasons") or {}
    excl = f"Excluded (screen failure) n = {flow['screen_failed']}"
    if reasons:
        excl += "\n" + "\n".join(f"{k}: {v}" for k, v in reasons.items())
    if flow.get("still_screening"):
        excl += f"\nStill in screening: {flow['still_screening']}"
    steps.append((f"Assessed for eligibility n = {flow['screened']}", excl))
    steps.append((f"Eligible and enrolled n = {flow['enrolled']}", None))
    nt = flow.get("not_treated", 0)
    steps.append((f"Received cell infusion n = {flow['treated']}",
                  f"Not treated n = {nt}" if nt else None))
    prev_lost = 0
    for v in flow.get("visits", []):
        lost = {"died": v.get("missing_died") or 0,
                "transplanted": v.get("missing_transplanted") or 0,
                "withdrawn": v.get("missing_withdrawn") or 0,
                "missed visit": v.get("missing_missed") or 0}
        side_parts = []
        if v.get("missing"):
            side_parts.append("Missing n = {}: {}".format(
                v["missing"], ", ".join(f"{k} {n}" for k, n in lost.items() if n)))
        if v.get("not_yet_due"):
            side_parts.append(f"Not yet due n = {v['not_yet_due']}")
        side = "\n".join(side_parts) or None
        name = (labels or {}).get(v["visit"], v["visit"])
        steps.append((f"{name}: attended n = {v['observed']} of {v['expected']}", side))
        prev_lost = v.get("missing") or prev_lost
    if flow.get("lost_reasons"):
        steps.append((f"Completed follow-up n = {flow.get('completed', 0)}",
                      "Left the study:\n" + "\n".join(flow["lost_reasons"][:8])
                      + ("\n…" if len(flow["lost_reasons"]) > 8 else "")))
    else:
        steps.append((f"Completed follow-up n = {flow.get('completed', 0)}", None))
    n = len(steps)
    with mpl.rc_context(_RC):
        fig = Figure(figsize=(7.2, 0.62 * n + 0.4))
        ax = fig.subplots()
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.axis("off")
        ys = np.linspace(0.95, 0.05, n) if n > 1 else np.array([0.5])
        for k, (main, side) in enumerate(steps):
            _box(ax, 0.3, ys[k], main)
            if side:
                _box(ax, 0.78, ys[k], side, side=True)
                ax.annotate("", xy=(0.555, ys[k]), xytext=(0.52, ys[k]),
                            arrowprops={"arrowstyle": "->", "lw": 0.8})
            if k + 1 < n:
                ax.annotate("", xy=(0.3, ys[k + 1] + 0.035), xytext=(0.3, ys[k] - 0.035),
                            arrowprops={"arrowstyle": "->", "lw": 0.8})
    return _close_after(fig, "svg", "Participant flow diagram", out)
