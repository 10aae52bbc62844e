"""One self-contained HTML report from a TrialData bundle and :func:`analyze` results.

Tables are rendered with great_tables (fixed table ids, no external CSS/JS/fonts), figures
are inline SVG/PNG (:mod:`hepatrial.report.figures`), the page is a Jinja2 template shipped
as package data (``templates/report.html.j2``). The same inputs give byte-identical HTML
except for the single line carrying the run time (``<p class="runtime">``).
"""

from __future__ import annotations

import datetime as _dt
import html as _html
import math
from importlib import resources
from typing import Any

import great_tables as gt
import jinja2
import numpy as np
import pandas as pd

from hepatrial import __version__
from hepatrial.report import figures

__all__ = ["build_report", "fmt_mean_sd", "fmt_p"]

#: (table decimals, text decimals) per analyte; text decimals = the published precision.
DECIMALS = {"inr": (2, 1), "creatinine": (1, 0), "albumin": (1, 0), "bilirubin": (1, 0),
            "sodium": (1, 0), "platelets": (0, 0), "weight": (1, 0)}
MELD_VARIANT_TEXT = {
    "kamath2001": "the continuous Kamath 2001 model 10·R = 9.57 ln(creatinine) + 3.78 "
                  "ln(bilirubin) + 11.2 ln(INR) + 6.43 (mg/dL) with no floors, caps or rounding",
    "continuous": "10·R with the OPTN/UNOS rules (laboratory values below 1.0 set to 1.0, "
                  "creatinine capped at 4.0 mg/dL), not rounded",
    "optn2002": "the OPTN/UNOS allocation MELD 2002-2016 (floors and cap as above, rounded "
                "to an integer, bounded 6-40)",
}
TEST_NAMES = {"t": "paired t", "wilcoxon": "exact Wilcoxon",
              "ancova": "ANCOVA (arm difference in change, adjusted for baseline)"}
VISIT_WORD = {"D0": "baseline", "W1": "week 1", "W2": "week 2", "W4": "week 4", "W8": "week 8",
              "W24": "week 24"}


def _decimals(analyte: str) -> tuple[int, int]:
    if analyte.startswith("meld") or analyte in ("albi", "child_pugh_points"):
        return (1, 1)
    return DECIMALS.get(analyte, (2, 2))


def fmt_num(x: Any, d: int) -> str:
    """Round half away from zero to ``d`` decimals (as printed in papers); ``—`` for missing."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    q = 10.0 ** d
    v = math.floor(abs(float(x)) * q + 0.5 + 1e-9) / q
    v = math.copysign(v, float(x)) if v != 0 else 0.0
    return f"{v:.{d}f}"


def fmt_mean_sd(mean: Any, sd: Any, d: int) -> str:
    """``mean ± SD`` with ``d`` decimals."""
    if mean is None:
        return "—"
    return f"{fmt_num(mean, d)} ± {fmt_num(sd, d)}" if sd is not None else fmt_num(mean, d)


def fmt_p(p: Any) -> str:
    """gtsummary ``style_pvalue(digits = 2)``: ``<0.001``, 3 decimals below 0.1, 2 decimals
    from 0.1, ``>0.99``; ``—`` when missing."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "—"
    p = float(p)
    if p < 0.001:
        return "<0.001"
    if p > 0.99:
        return ">0.99"
    if round(p, 3) >= 0.1:
        return f"{round(p, 2):.2f}"
    return f"{round(p, 3):.3f}"


def _p_text(p: Any) -> str:
    s = fmt_p(p)
    return f"P{s}" if s[0] in "<>" else f"P={s}"


def _gt_html(df: pd.DataFrame, tid: str, title: str, *, rowname: str | None = None,
             group: str | None = None, notes: list[str] | None = None,
             subtitle: str | None = None) -> str:
    t = gt.GT(df, rowname_col=rowname, groupname_col=group, id=tid)
    t = t.tab_header(title=title, subtitle=subtitle) if subtitle else t.tab_header(title=title)
    for n in notes or []:
        t = t.tab_source_note(n)
    return t.as_raw_html()


# ----------------------------------------------------------------------------- Table 1


def _cat_rows(series: pd.Series, name: str, order: list[str] | None = None) -> list[dict]:
    n = series.notna().sum()
    counts = series.value_counts()
    levels = order or sorted(counts.index.astype(str))
    rows = []
    for lv in levels:
        k = int(counts.get(lv, 0))
        rows.append({"group": name, "row": f"  {lv}",
                     "value": f"{k} ({fmt_num(100 * k / n if n else float('nan'), 0)}%)"})
    return rows


def _cont_rows(x: pd.Series, name: str, d: int) -> list[dict]:
    v = x.dropna().to_numpy(dtype=float)
    if v.size == 0:
        return [{"group": name, "row": "mean ± SD", "value": "—"}]
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    sd = v.std(ddof=1) if v.size > 1 else float("nan")
    return [
        {"group": name, "row": "mean ± SD", "value": fmt_mean_sd(v.mean(), sd, d)},
        {"group": name, "row": "median [IQR]",
         "value": f"{fmt_num(med, d)} [{fmt_num(q1, d)}, {fmt_num(q3, d)}]"},
        {"group": name, "row": "range", "value": f"{fmt_num(v.min(), d)} – {fmt_num(v.max(), d)}"},
    ]


def _categorical(ppl: pd.DataFrame) -> dict[str, pd.Series]:
    out = {"Sex, n (%)": ppl["sex"].map({"F": "female", "M": "male"}).fillna(ppl["sex"]),
           "Aetiology, n (%)": ppl["etiology"]}
    if "route" in ppl and ppl["route"].notna().any():
        out["Route, n (%)"] = ppl["route"].astype(str).str.replace("_", " ")
    return out


def _table1_column(ppl: pd.DataFrame, base: pd.DataFrame, outcomes: list[dict],
                   levels: dict[str, list[str]]) -> list[dict]:
    rows = [{"group": "Participants", "row": "n", "value": str(len(ppl))}]
    rows += _cont_rows(ppl["age"], "Age, years", 1)
    for name, series in _categorical(ppl).items():
        rows += _cat_rows(series, name, levels[name])
    if "cells_total" in ppl and ppl["cells_total"].notna().any():
        rows += _cont_rows(ppl["cells_total"] / 1e6, "Cells infused, ×10^6", 1)
    for o in outcomes:
        vals = base.loc[base["analyte"] == o["analyte"]].set_index("participant_id")["value"]
        vals = vals.reindex(ppl["participant_id"])
        rows += _cont_rows(vals, f"{o['label']} at baseline, {o.get('reported_unit') or ''}",
                           _decimals(o["analyte"])[0])
    return rows


def table1(td: Any, results: dict[str, Any]) -> str:
    """Baseline characteristics (by arm when there is more than one)."""
    ppl = td.participants
    ppl = ppl[~ppl["status"].isin(["screened", "screen_failed"])]
    ds = td.dataset
    base = ds[ds["visit"] == results["baseline_visit"]]
    arms = sorted(ppl["arm"].dropna().astype(str).unique())
    levels = {k: sorted(v.dropna().astype(str).unique()) for k, v in _categorical(ppl).items()}
    cols: dict[str, list[dict]] = {}
    if len(arms) > 1:
        for a in arms:
            cols[f"{a} (n={int((ppl['arm'] == a).sum())})"] = _table1_column(
                ppl[ppl["arm"] == a], base, results["outcomes"], levels)
    cols[f"Overall (n={len(ppl)})"] = _table1_column(ppl, base, results["outcomes"], levels)
    first = next(iter(cols.values()))
    df = pd.DataFrame({"group": [r["group"] for r in first], "row": [r["row"] for r in first]})
    for name, rows in cols.items():
        df[name] = [r["value"] for r in rows]
    return _gt_html(df, "table1", "Table 1. Baseline characteristics", rowname="row",
                    group="group", notes=["Continuous: mean ± SD, median [IQR] and range; "
                                          "categorical: n (%). Enrolled participants."])


# ----------------------------------------------------------------------------- outcomes


def outcomes_table(results: dict[str, Any]) -> str:
    """Each outcome at each visit: n, mean ± SD, change from baseline (95% CI), pairs used,
    paired t and exact Wilcoxon p vs baseline."""
    desc = pd.DataFrame(results["describe"])
    paired = pd.DataFrame(results["paired"])
    rows = []
    arms = results.get("arms") or []
    per_arm = "arm" in desc.columns
    for o, arm in [(o, arm) for o in results["outcomes"] for arm in (arms if per_arm else [None])]:
        a = o["analyte"]
        d = _decimals(a)[0]
        dsub = desc[desc["outcome"] == a] if len(desc) else desc
        psub = paired[paired["outcome"] == a] if len(paired) else paired
        if arm is not None:
            dsub = dsub[dsub["arm"] == arm]
            psub = psub[psub["arm"] == arm]
        for r in dsub.to_dict(orient="records"):
            v = r["visit"]
            pr: dict[str, Any] = {}
            if len(psub):
                m = psub[psub["visit"] == v]
                pr = m.iloc[0].to_dict() if len(m) else {}
            change = "—"
            if r.get("mean_change") is not None and not _isnan(r.get("mean_change")):
                change = (f"{fmt_num(r['mean_change'], d)} ({fmt_num(r['change_ci_low'], d)}, "
                          f"{fmt_num(r['change_ci_high'], d)})")
            label = f"{o['label']} ({o.get('reported_unit') or o.get('unit')})"
            rows.append({
                "outcome": label if arm is None else f"{label}, arm {arm}",
                "visit": v,
                "n": str(int(r["n"])),
                "mean ± SD": fmt_mean_sd(r["mean"], r["sd"], d),
                "change (95% CI)": change,
                "pairs": str(int(pr["n_pairs"])) if pr else "—",
                "P (paired t)": fmt_p(pr.get("p_t")) if pr else "—",
                "P (Wilcoxon)": fmt_p(pr.get("p_wilcoxon")) if pr else "—",
            })
    df = pd.DataFrame(rows)
    if df.empty:
        return "<p>No outcome data.</p>"
    notes = [
        f"Change = visit − {results['baseline_visit']}, mean (t-based 95% CI) over participants "
        "with both values (pairs); participants missing either value are excluded from that "
        "comparison and counted in the flow diagram.",
        "P values unadjusted, two-sided: paired t test and exact Wilcoxon signed-rank test "
        "(zero differences dropped; exact permutation distribution when there are ties).",
    ]
    uns = results.get("unscheduled") or {}
    if uns.get("visits"):
        notes.append(f"{uns['visits']} unscheduled visit(s) of {uns['participants']} "
                     f"participant(s) ({uns['measurements']} measurements, visit code "
                     f"{'/'.join(uns['codes'])}) have no nominal visit and are not in this "
                     "table; they are kept in the dataset.")
    demo = results.get("demo")
    if demo:
        notes.append("Weeks " + ", ".join(demo["not_published_visits"]) + " were not published: "
                     "their synthetic values are a smooth interpolation plus noise.")
    return _gt_html(df, "outcomes", "Table 2. Outcomes by visit and comparison with baseline",
                    rowname="visit", group="outcome", notes=notes)


def _isnan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def multiplicity_table(results: dict[str, Any]) -> str:
    """Fixed-sequence (or other) confirmatory testing, one row per hypothesis and test."""
    mult = results["multiplicity"]
    rows = []
    for test, recs in mult.get("by_test", {}).items():
        for r in recs:
            rows.append({"test": TEST_NAMES.get(test, test),
                         "order": str(r["order"]), "hypothesis": str(r["test"]),
                         "P": fmt_p(r["p"]), "decision": r["status"]})
    if not rows:
        return ""
    return _gt_html(pd.DataFrame(rows), "multiplicity",
                    f"Confirmatory testing: {mult['rule']} at α = {mult['alpha']}",
                    rowname="order", group="test",
                    notes=["Each hypothesis is tested at the full α only while every earlier "
                           "one was rejected; the first non-rejection stops the sequence."])


def ancova_table(results: dict[str, Any]) -> str:
    """Between-arm comparison per outcome and visit (randomised trials)."""
    rows = []
    labels = {o["analyte"]: o["label"] for o in results["outcomes"]}
    for r in results.get("ancova") or []:
        d = _decimals(r["outcome"])[0]
        rows.append({"outcome": labels.get(r["outcome"], r["outcome"]), "visit": r["visit"],
                     "comparison": f"{r['arm']} − {r['reference_arm']}",
                     "difference (95% CI)": f"{fmt_num(r['estimate'], d)} "
                                            f"({fmt_num(r['ci_low'], d)}, "
                                            f"{fmt_num(r['ci_high'], d)})",
                     "n": str(int(r["n_used"])), "P": fmt_p(r["p"])})
    if not rows:
        return ""
    return _gt_html(pd.DataFrame(rows), "ancova",
                    "Between-arm comparison: ANCOVA of the change from baseline",
                    rowname="visit", group="outcome",
                    notes=["Change from baseline regressed on arm and baseline value; "
                           "participants without both values are excluded (n used)."])


def lmm_table(results: dict[str, Any]) -> str:
    """Supportive linear mixed model: fixed effects per outcome (GLS SEs, Wald z)."""
    rows = []
    labels = {o["analyte"]: o["label"] for o in results["outcomes"]}
    for m in results.get("lmm") or []:
        if "error" in m:
            rows.append({"outcome": labels.get(m["outcome"], m["outcome"]), "term": "—",
                         "estimate (SE)": m["error"], "P": "—"})
            continue
        d = _decimals(m["outcome"])[0] + 1
        for fe in m["fixed_effects"]:
            rows.append({"outcome": labels.get(m["outcome"], m["outcome"]) +
                         ("" if m["converged"] else " (NOT converged)"),
                         "term": str(fe["term"]),
                         "estimate (SE)": f"{fmt_num(fe['estimate'], d)} ({fmt_num(fe['se'], d)})",
                         "P": fmt_p(fe["p"])})
    if not rows:
        return ""
    return _gt_html(pd.DataFrame(rows), "lmm",
                    "Supportive analysis: linear mixed model (all visits)", rowname="term",
                    group="outcome",
                    notes=["Visit as a categorical fixed effect (reference: baseline), random "
                           "intercept per participant, REML; standard errors by GLS, Wald z "
                           "tests (no small-sample degrees of freedom). Above 300 participants "
                           "only the primary outcome is modelled."])


# ----------------------------------------------------------------------------- safety


def safety_html(results: dict[str, Any]) -> str:
    """AE overview, AEs by term/grade/seriousness/relatedness, CTCAE lab grade shifts."""
    s = results["safety"]
    parts = []
    if s["n_events"] == 0:
        parts.append("<p class='safety-none'>No adverse events were recorded.</p>")
    else:
        ov = pd.DataFrame(s["overview"])
        ov = ov.astype(str)
        parts.append(_gt_html(ov, "ae_overview", "Adverse events: overview"))
        sm = pd.DataFrame(s["summary"])
        if len(sm):
            sm = sm.assign(pct=sm["pct"].map(lambda x: fmt_num(x, 1)))
            parts.append(_gt_html(sm.astype(str), "ae_summary",
                                  "Adverse events by term, grade, seriousness and relatedness",
                                  notes=[f"Denominator: {s['n_participants']} treated "
                                         "participants; n_participants = with ≥ 1 such event."]))
    sh = pd.DataFrame(s["shifts"])
    if len(sh):
        piv = sh.pivot_table(index=["term", "baseline_grade"], columns="worst_grade",
                             values="n", aggfunc="sum", fill_value=0)
        piv.columns = [f"worst {c}" for c in piv.columns]
        piv = piv.reset_index().rename(columns={"baseline_grade": "baseline grade"})
        piv = piv.astype(str)
        rr = s["reference_ranges"]
        ranges = "; ".join(f"{a}: " + ", ".join(f"{k.upper()} {v['uln' if k == 'uln' else 'lln']}"
                                               for k in ("uln", "lln") if k in v) + f" {v['unit']}"
                           for a, v in rr.items())
        parts.append(_gt_html(piv, "lab_shifts",
                              "CTCAE v5.0 laboratory grade shifts (baseline → worst post-baseline)",
                              rowname="baseline grade", group="term",
                              notes=[f"Reference ranges (assumed, adult SI): {ranges}. INR graded "
                                     "on the absolute value (patients not anticoagulated)."]))
    return "\n".join(parts)


# ----------------------------------------------------------------------------- text


def _describe_row(results: dict, analyte: str, visit: str, arm: str | None = None) -> dict | None:
    for r in results["describe"]:
        if r["outcome"] == analyte and r["visit"] == visit and r.get("arm") == arm:
            return r
    return None


def _paired_row(results: dict, analyte: str, visit: str, arm: str | None = None) -> dict | None:
    for r in results["paired"]:
        if r["outcome"] == analyte and r["visit"] == visit and r.get("arm") == arm:
            return r
    return None


def methods_text(results: dict[str, Any]) -> str:
    """Methods paragraph: MELD variant, tests, multiplicity and the Holm feasibility note."""
    plan = results["plan"]
    v = plan.get("meld_variant")
    s = []
    if v:
        s.append(f"MELD was computed by hepatrial.scores.meld, variant “{v}”: "
                 f"{MELD_VARIANT_TEXT.get(v, v)}.")
        pv = plan.get("protocol_meld_variant")
        if pv and pv != v:
            s.append(f"The protocol's analysis plan names variant “{pv}”; “{v}” is used here "
                     "because only it reproduces the published MELD (see the MELD-variant "
                     "table); the other variants are shown as supportive rows.")
    base = VISIT_WORD.get(results["baseline_visit"], results["baseline_visit"])
    tests = ["the paired t test" if t == "t" else "the exact Wilcoxon signed-rank test"
             for t in plan.get("tests", [])]
    s.append(f"Each post-baseline visit was compared with {base} ({results['baseline_visit']}) "
             f"by {' and '.join(tests) or 'paired tests'} (two-sided); only participants with "
             "both values contribute to a comparison, and the number of pairs is reported.")
    mult = results["multiplicity"]
    if mult.get("rule") == "fixed_sequence" and mult.get("sequence"):
        seq = " → ".join(mult["sequence"])
        s.append(f"Multiplicity was controlled by fixed-sequence testing at α = {mult['alpha']} "
                 f"in the pre-specified order {seq}; all other comparisons are descriptive.")
    elif mult.get("rule"):
        s.append(f"Multiplicity rule: {mult['rule']}.")
    h = mult.get("holm_all")
    if h and not h.get("can_reject"):
        n = h["n_pairs"]
        s.append(f"A Holm correction over all m = {h['m_tests']} comparisons could never reject: "
                 f"with n = {n} pairs the smallest two-sided p an exact sign-based test can reach "
                 f"is 2/2^{n} = {fmt_num(h['min_p'], 4)}, larger than α/m = "
                 f"{fmt_num(h['holm_threshold'], 4)}.")
    s.append("Means are given ± SD (n − 1).")
    return " ".join(s)


def results_text(results: dict[str, Any]) -> str:
    """Results paragraph in the style of an abstract, from the computed numbers."""
    base = results["baseline_visit"]
    post = results["post_baseline_visits"]
    if not post:
        return "No post-baseline data."
    last = post[-1]
    n_treated = results["flow"]["treated"]
    parts = [f"{n_treated} participants were treated."]
    sig_t, ns = [], []
    arms = results.get("arms") or []
    per_arm = any("arm" in r for r in results["describe"])
    for o, arm in [(o, arm) for o in results["outcomes"] for arm in (arms if per_arm else [None])]:
        a = o["analyte"]
        b, f, p = (_describe_row(results, a, base, arm), _describe_row(results, a, last, arm),
                   _paired_row(results, a, last, arm))
        if not (b and f and p):
            continue
        d = _decimals(a)[1]
        unit = o.get("reported_unit") or ""
        unit_txt = "" if unit in ("1", "points", "") else f" {unit.replace('umol', 'µmol')}"
        verb = "decreased" if f["mean"] < b["mean"] else "increased"
        pt = _p_text(p.get("p_t"))
        pw = _p_text(p.get("p_wilcoxon"))
        who = "" if arm is None else f"In arm {arm}, "
        parts.append(f"{who}{o['label']} {verb} from "
                     f"{fmt_mean_sd(b['mean'], b['sd'], d)}{unit_txt} to "
                     f"{fmt_mean_sd(f['mean'], f['sd'], d)}{unit_txt} at "
                     f"{VISIT_WORD.get(last, last)} ({pt}, paired t; Wilcoxon {pw}; "
                     f"n = {int(p['n_pairs'])} pairs).")
        name = o["label"] if arm is None else f"{o['label']} ({arm})"
        (sig_t if (p.get("p_t") or 1) < 0.05 else ns).append(name)
    for r in results.get("ancova") or []:
        if r["visit"] != last:
            continue
        o = next((x for x in results["outcomes"] if x["analyte"] == r["outcome"]), None)
        if o is None:
            continue
        d = _decimals(r["outcome"])[1] + 1
        parts.append(f"At {VISIT_WORD.get(last, last)} the baseline-adjusted difference in "
                     f"{o['label']} ({r['arm']} − {r['reference_arm']}) was "
                     f"{fmt_num(r['estimate'], d)} (95% CI {fmt_num(r['ci_low'], d)} to "
                     f"{fmt_num(r['ci_high'], d)}; {_p_text(r['p'])}; ANCOVA, "
                     f"n = {int(r['n_used'])}).")
    if sig_t:
        parts.append("Unadjusted P < 0.05 (paired t) for " + ", ".join(sig_t) + "; "
                     + ("not significant for " + ", ".join(ns) + "." if ns else "all outcomes."))
    mult = results["multiplicity"]
    for test, recs in mult.get("by_test", {}).items():
        rej = [r["test"] for r in recs if r["status"] == "rejected"]
        name = TEST_NAMES.get(test, test)
        parts.append(f"Under the fixed sequence ({name}) {len(rej)} of {len(recs)} hypotheses "
                     f"were rejected{': ' + ', '.join(rej) if rej else ''}.")
    if results["safety"]["n_events"] == 0:
        parts.append("No adverse events were recorded.")
    else:
        parts.append(f"{results['safety']['n_events']} adverse events were recorded.")
    return " ".join(parts)


# ----------------------------------------------------------------------------- demo


def demo_html(results: dict[str, Any]) -> str:
    """Published vs reconstructed statistics and the MELD-variant feasibility table."""
    demo = results.get("demo")
    if not demo:
        return ""
    rows = []
    for s in demo["verification"]["stats"]:
        d = s["decimals"]
        rows.append({"statistic": f"{s['analyte']} {s['visit']}",
                     "published": f"{fmt_num(s['published_mean'], d)} ± "
                                  f"{fmt_num(s['published_sd'], d)}",
                     "synthetic (as entered)": f"{s['mean']:.4f} ± {s['sd']:.4f}",
                     "printed": fmt_mean_sd(s["mean"], s["sd"], d),
                     "reproduced": "yes" if s["reproduced"] else "NO"})
    for t in demo["verification"]["tests"]:
        rows.append({"statistic": f"{t['analyte']} W24 vs D0",
                     "published": "P < 0.05" if t["published_significant"] else "n.s.",
                     "synthetic (as entered)": f"t: {fmt_p(t['p_t'])}; Wilcoxon: "
                                               f"{fmt_p(t['p_wilcoxon'])}",
                     "printed": "P < 0.05" if t["p_t"] < 0.05 else "n.s.",
                     "reproduced": "yes" if t["agrees"] else "NO"})
    tab = _gt_html(pd.DataFrame(rows), "reconstruction",
                   "Reconstruction check: published vs synthetic", rowname="statistic",
                   notes=[f"Seed {demo['seed']}; MELD variant {demo['meld_variant']}; "
                          f"source: {demo['reference']}.", *demo.get("notes", [])])
    vrows = []
    for variant, r in demo["feasibility"].items():
        for v in ("D0", "W24"):
            x = r[v]
            cm = (fmt_mean_sd(x["cohort_mean"], x["cohort_sd"], 3)
                  if x.get("cohort_mean") is not None else "—")
            vrows.append({"variant": variant, "visit": v,
                          "published": f"{x['published_mean']} ± {x['published_sd']}",
                          "lowest attainable mean": fmt_num(x["lowest_mean"], 2),
                          "synthetic cohort": cm,
                          "reproducible": "yes" if x["attainable"] else "no: " + x["reason"]})
    verdict = ", ".join(k for k, r in demo["feasibility"].items() if r["feasible"]) or "none"
    vt = _gt_html(pd.DataFrame(vrows), "meld_variants",
                  "Which MELD variant reproduces the published MELD?", rowname="visit",
                  group="variant", subtitle=f"Reproduces the published MELD: {verdict}",
                  notes=["Lowest attainable mean: the smallest mean MELD of 8 patients whose "
                         "INR, creatinine and bilirubin have exactly the published means and SDs "
                         "within the plausibility bounds (separable minimisation, multi-start "
                         "SLSQP); for optn2002 the continuous bound minus 0.5 (rounding). "
                         "Synthetic cohort: MELD of the reconstructed cohort under that "
                         "variant."])
    supp = []
    for r in results.get("meld_variants", []):
        supp.append({"variant": r["analyte"], "visit": r["visit"], "n": str(r["n"]),
                     "mean ± SD": fmt_mean_sd(r["mean"], r["sd"], 2)})
    st = _gt_html(pd.DataFrame(supp), "meld_supportive",
                  "MELD of the synthetic cohort under each variant", rowname="visit",
                  group="variant") if supp else ""
    return f"<p id='variant-verdict'>{_html.escape(variant_sentence(demo))}</p>" + tab + vt + st


def variant_sentence(demo: dict[str, Any]) -> str:
    """Which MELD variant reproduces the published MELD, and how close the others get."""
    fz = demo["feasibility"]
    ok = [k for k, r in fz.items() if r["feasible"]]
    parts = [f"The published MELD (17.9 ± 5.6 at baseline, 10.7 ± 6.3 at week 24) is "
             f"reproduced from labs with the published means and SDs only by "
             f"{' and '.join(ok) or 'no variant'}."]
    for k, r in fz.items():
        if r["feasible"]:
            c0, c1 = r["D0"], r["W24"]
            if c0.get("cohort_mean") is not None:
                parts.append(f"{k}: the synthetic cohort gives {c0['cohort_mean']:.2f} ± "
                             f"{c0['cohort_sd']:.2f} and {c1['cohort_mean']:.2f} ± "
                             f"{c1['cohort_sd']:.2f}.")
            continue
        parts.append(f"{k} cannot: its attainable mean MELD is at least "
                     f"{r['D0']['lowest_mean']:.2f} at baseline and {r['W24']['lowest_mean']:.2f}"
                     f" at week 24" + ("" if k != "optn2002" else
                                       ", and no mean of 8 integer scores prints as 10.7") + ".")
    return " ".join(parts)


# ----------------------------------------------------------------------------- page


def _figures(td: Any, results: dict[str, Any]) -> dict[str, str]:
    ds = td.dataset
    visits = results["visits"]
    days = ds.groupby("visit")["nominal_day"].min().to_dict()
    demo = results.get("demo")
    note = tuple(demo["not_published_visits"]) if demo else ()
    traj = figures.trajectories(ds, results["outcomes"], visits, days, note_visits=note)
    meld = next((o for o in results["outcomes"] if o["analyte"].startswith("meld")), None)
    wf = ""
    post = results["post_baseline_visits"]
    if meld and post:
        sub = ds[ds["analyte"] == meld["analyte"]]
        w = sub.pivot_table(index="participant_id", columns="visit", values="value",
                            aggfunc="first")
        if results["baseline_visit"] in w and post[-1] in w:
            ch = (w[post[-1]] - w[results["baseline_visit"]]).sort_index()
            wf = figures.waterfall(ch, f"MELD, {post[-1]} − {results['baseline_visit']}",
                                   "points")
    flow = figures.flow_diagram(results["flow"])
    return {"trajectories": traj, "waterfall": wf, "flow": flow}


def _template() -> jinja2.Template:
    text = resources.files("hepatrial.report").joinpath("templates/report.html.j2").read_text(
        encoding="utf-8")
    env = jinja2.Environment(autoescape=False, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    return env.from_string(text)


def build_report(td: Any, analysis_results: dict[str, Any], *, run_time: str | None = None) -> str:
    """Render the HTML report (one self-contained page).

    ``run_time`` is the text of the run-time line (default: now, UTC, ISO 8601); it is the only
    part of the page that differs between runs on the same data.
    """
    r = analysis_results
    proto = r.get("protocol") or {}
    if run_time is None:
        run_time = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    figs = _figures(td, r)
    ctx = {
        "title": _html.escape(proto.get("title") or proto.get("name") or "Trial report"),
        "protocol": {k: _html.escape(str(v)) if v is not None else "—" for k, v in proto.items()},
        "synthetic": r.get("demo") is not None,
        "synthetic_label": _html.escape((r.get("demo") or {}).get("label", "")),
        "version": __version__,
        "dataset_sha256": r["dataset_sha256"],
        "run_time": _html.escape(run_time),
        "methods": _html.escape(methods_text(r)),
        "results_text": _html.escape(results_text(r)),
        "table1": table1(td, r),
        "outcomes": outcomes_table(r),
        "multiplicity": multiplicity_table(r),
        "ancova": ancova_table(r),
        "lmm": lmm_table(r),
        "safety": safety_html(r),
        "demo": demo_html(r),
        "fig_traj": figs["trajectories"],
        "fig_waterfall": figs["waterfall"],
        "fig_flow": figs["flow"],
        "plan": {k: _html.escape(str(v)) for k, v in r["plan"].items()},
    }
    return _template().render(**ctx)
