"""The report's tables, built from :func:`hepatrial.report.analyze` results (and, for Table 1,
the participants of the bundle), following R gtsummary's conventions (Sjoberg et al., R J
2021;13:570, ``tbl_summary()``, ``add_p()``, ``style_pvalue()``, ``style_percent()``; gtreg
``tbl_ae()`` for adverse events):

* one row per continuous variable with its statistic, a label row above the indented levels
  of a categorical variable, the statistics named in a footnote on the column headers
  (``Mean ± SD; n (%)``), percentages of the non-missing values;
* missing values as their own row, ``Unknown`` (gtsummary ``missing = "ifany"``: the row
  appears when a variable has a missing value);
* column headers ``Overall, N = 8``; clinical visit labels (Week 24), display units
  (µmol/L, ×10⁶), true minus signs and p-values by :func:`hepatrial.report.format.fmt_p`;
* no internal identifiers in any cell, header or footnote.

Every builder returns a :class:`hepatrial.report.table.Table`; :func:`report_tables` lists
them in report order, numbered.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from hepatrial.analysis.multiplicity import NO_DATA
from hepatrial.protocol import analytes as _an
from hepatrial.report.format import (
    DASH,
    SIGNIFICANCE,
    fmt_ci,
    fmt_mean_sd,
    fmt_n_pct,
    fmt_num,
    fmt_p,
    is_missing,
    outcome_label,
    unit_label,
    visit_label,
    visit_word,
)
from hepatrial.report.table import Notes, Table

__all__ = [
    "DECIMALS",
    "ae_overview_table",
    "ae_table",
    "ancova_table",
    "confirmatory_table",
    "decimals",
    "lmm_table",
    "outcomes_table",
    "product_table",
    "report_tables",
    "shift_table",
    "table1",
]

#: (table decimals, text decimals) per analyte; text decimals = the published precision.
DECIMALS = {"inr": (2, 1), "creatinine": (1, 0), "albumin": (1, 0), "bilirubin": (1, 0),
            "sodium": (1, 0), "platelets": (0, 0), "weight": (1, 0)}
TEST_NAMES = {"t": "Paired t test", "wilcoxon": "Exact Wilcoxon signed-rank test",
              "ancova": "ANCOVA of the change from baseline, adjusted for baseline"}
ETIOLOGY_LABELS = {"HBV": "HBV", "HCV": "HCV", "alcohol": "Alcohol", "MASLD": "MASLD",
                   "autoimmune": "Autoimmune hepatitis", "PBC": "PBC", "PSC": "PSC",
                   "cryptogenic": "Cryptogenic", "other": "Other"}
ROUTE_LABELS = {"peripheral_vein": "Peripheral vein", "portal_vein": "Portal vein",
                "hepatic_artery": "Hepatic artery"}
SEX_LABELS = {"F": "Female", "M": "Male"}
DECISIONS = {"rejected": "Rejected", "not rejected": "Not rejected",
             "not tested": "Not tested", NO_DATA: "Not tested: no data"}
MELD_VARIANT_LABELS = {v: s.label for s in _an.SCORES.values()
                       for v in [s.meld_variant] if v is not None}
P_RULE = ("p-values: <0.001 below 0.001, otherwise two significant digits; more digits "
          "when rounding would put a value on or across α = {alpha} (e.g. 0.0499).")


def decimals(analyte: str) -> tuple[int, int]:
    """(table, text) decimals for an analyte or score."""
    if analyte.startswith("meld") or analyte in ("albi", "child_pugh_points"):
        return (1, 1)
    return DECIMALS.get(analyte, (2, 2))


def _alpha(results: dict[str, Any]) -> float:
    return float((results.get("plan") or {}).get("alpha") or SIGNIFICANCE)


def _vl(results: dict[str, Any], code: str) -> str:
    return visit_label(code, results.get("visit_labels"), baseline=results["baseline_visit"])


def _vw(results: dict[str, Any], code: str) -> str:
    return visit_word(code, results.get("visit_labels"), baseline=results["baseline_visit"])


def _arm_label(results: dict[str, Any], arm: str) -> str:
    return str((results.get("arm_labels") or {}).get(arm) or arm)


def _per_arm(results: dict[str, Any]) -> bool:
    return any("arm" in r for r in results.get("describe") or [])


def _outcome(results: dict[str, Any], analyte: str) -> dict[str, Any]:
    return next((o for o in results["outcomes"] if o["analyte"] == analyte),
                {"analyte": analyte, "label": analyte})


# ----------------------------------------------------------------------------- Table 1


def _enrolled(td: Any) -> pd.DataFrame:
    ppl = td.participants
    return ppl[~ppl["status"].isin(["screened", "screen_failed"])]


def table1(td: Any, results: dict[str, Any]) -> Table:
    """Baseline characteristics of the enrolled participants (by arm and overall when the
    trial has more than one arm): one row per continuous variable (mean ± SD), categorical
    variables as a label row with indented levels (n (%)), ``Unknown`` rows when values are
    missing."""
    ppl = _enrolled(td).reset_index(drop=True)
    ds = td.dataset
    base = ds[ds["visit"] == results["baseline_visit"]]
    arms = results.get("arms") or []
    groups: list[tuple[str, pd.Series]] = []
    if _per_arm(results) and len(arms) > 1:
        for a in arms:
            m = ppl["arm"].astype(str) == a
            groups.append((f"{_arm_label(results, a)}, N = {int(m.sum())}", m))
    groups.append((f"Overall, N = {len(ppl)}", pd.Series(True, index=ppl.index)))
    notes = Notes()
    stats: list[str] = []
    t = Table("table1", "Baseline characteristics", "Characteristic", [g[0] for g in groups])

    def continuous(label: str, x: pd.Series, d: int, missing_text: str = "Unknown") -> None:
        if "Mean ± SD" not in stats:
            stats.append("Mean ± SD")
        cells = []
        for _, m in groups:
            v = x[m].dropna().to_numpy(dtype=float)
            sd = float(np.std(v, ddof=1)) if v.size > 1 else float("nan")
            cells.append(fmt_mean_sd(float(v.mean()), sd, d) if v.size else DASH)
        t.add(label, cells)
        if bool(x.isna().any()):
            t.add(missing_text, [str(int(x[m].isna().sum())) for _, m in groups], indent=1)

    def categorical(label: str, x: pd.Series, levels: list[tuple[str, str]],
                    missing_text: str = "Unknown") -> None:
        if "n (%)" not in stats:
            stats.append("n (%)")
        t.add(label, heading=True)
        known = [c for c, _ in levels]
        present = [(c, lab) for c, lab in levels if bool((x == c).any())]
        extra = sorted(str(v) for v in x.dropna().unique() if v not in known)
        for code, lab in [*present, *((e, e) for e in extra)]:
            t.add(lab, [fmt_n_pct(int((x[m] == code).sum()), int(x[m].notna().sum()))
                        for _, m in groups], indent=1)
        if bool(x.isna().any()):
            t.add(missing_text, [str(int(x[m].isna().sum())) for _, m in groups], indent=1)

    if "age" in ppl:
        continuous("Age, years", pd.to_numeric(ppl["age"], errors="coerce"), 1)
    if "sex" in ppl:
        categorical("Sex", ppl["sex"].astype(object).where(ppl["sex"].notna()),
                    list(SEX_LABELS.items()))
    if "etiology" in ppl:
        categorical("Aetiology of cirrhosis", ppl["etiology"].astype(object)
                    .where(ppl["etiology"].notna()), list(ETIOLOGY_LABELS.items()))
    route = ppl["route"].astype(object).where(~ppl["route"].isin(["NA", ""]) &
                                              ppl["route"].notna()) \
        if "route" in ppl else pd.Series(dtype=object)
    if route.notna().any():
        categorical("Route of infusion", route, list(ROUTE_LABELS.items()),
                    missing_text="Not infused")
    if "cells_total" in ppl and ppl["cells_total"].notna().any():
        continuous("Cells infused, ×10⁶", pd.to_numeric(ppl["cells_total"]) / 1e6, 1,
                   missing_text="Not infused")
    for o in results["outcomes"]:
        vals = base.loc[base["analyte"] == o["analyte"]].drop_duplicates("participant_id")
        x = vals.set_index("participant_id")["value"].reindex(ppl["participant_id"])
        continuous(outcome_label(o), x.reset_index(drop=True), decimals(o["analyte"])[0])
    mark = notes.mark("; ".join(stats))
    t.columns = [c + mark for c in t.columns]
    t.notes = [*notes.lines(),
               "Enrolled participants; laboratory values and scores at the baseline visit. "
               "Percentages of the participants with a known value."]
    return t


# ----------------------------------------------------------------------------- cell product


def product_table(results: dict[str, Any]) -> Table | None:
    """The cell product as given (:func:`hepatrial.report.analyze.product_summary`, from the
    store's product records): cells given (×10⁶) and per kg of the latest weight (×10⁶/kg),
    viability at release (%), mean ± SD; vein-to-vein time from harvest to the start of
    infusion (days), median (range); releases within specification and exceptional releases,
    n (%). None when no batch was given."""
    ps = results.get("product")
    if not ps:
        return None
    n = int(ps["n_given"])
    notes = Notes()
    mark = notes.mark("Mean ± SD; median (minimum–maximum); n (%)")
    t = Table("product", "Cell product as given", "Characteristic",
              [f"Infusions, N = {n}{mark}"])

    def mean_sd(label: str, st: dict[str, Any], scale: float, d: int) -> None:
        k = int(st.get("n") or 0)
        mean = None if st.get("mean") is None else st["mean"] / scale
        sd = None if st.get("sd") is None else st["sd"] / scale
        t.add(label, [fmt_mean_sd(mean, sd, d) if k else DASH])
        if k < n:
            t.add("Unknown", [str(n - k)], indent=1)

    mean_sd("Cells given, ×10⁶", ps["cells_total"], 1e6, 1)
    mean_sd("Cells per kg body weight, ×10⁶/kg", ps["cells_per_kg"], 1e6, 2)
    mean_sd("Viability at release, %", ps["viability_pct"], 1.0, 1)
    v2v = ps["vein_to_vein_days"]
    t.add("Vein-to-vein time, days", [DASH if not v2v.get("n") else
                                      f"{fmt_num(v2v['median'], 1)} ({fmt_num(v2v['min'], 1)}"
                                      f"–{fmt_num(v2v['max'], 1)})"])
    t.add("Release", heading=True)
    exc = int(ps["n_exceptional"])
    t.add("Within specification", [fmt_n_pct(n - exc, n)], indent=1)
    t.add("Exceptional (out of specification)", [fmt_n_pct(exc, n)], indent=1)
    t.notes = [*notes.lines(),
               "Batches given, from the store's product records. Cells per kg: cells given "
               "divided by the latest weight recorded on or before the infusion. Vein-to-vein "
               "time: from the collection of the marrow to the start of the infusion. "
               "Exceptional release: an out-of-specification batch released on a medical "
               "justification signed by QA and the investigator (a major deviation)."]
    return t


# ----------------------------------------------------------------------------- Table 2


def _rows(records: list[dict[str, Any]], analyte: str, arm: str | None) -> list[dict[str, Any]]:
    return [r for r in records if r["outcome"] == analyte and r.get("arm") == arm]


def outcomes_table(results: dict[str, Any]) -> Table:
    """Each outcome at each visit: N, mean ± SD, change from baseline (95% CI), the primary
    test's p-value and the sensitivity test's p-value."""
    plan = results.get("plan") or {}
    primary = str(plan.get("primary_test") or "t")
    sens = [s for s in plan.get("sensitivity_tests") or [] if s in ("t", "wilcoxon")]
    alpha = _alpha(results)
    notes = Notes()
    m_change = notes.mark(
        "Mean change (visit − baseline) in the participants with a value at both visits, with "
        "its 95% CI from the t distribution; [n]: the number of such participants when it is "
        "smaller than N.")
    per_arm = _per_arm(results)
    if per_arm:
        m_p = notes.mark(f"{TEST_NAMES[primary]} against baseline within each arm (the plan's "
                         "paired test), two-sided, not adjusted for multiplicity; the arms are "
                         "compared by ANCOVA.")
    else:
        m_p = notes.mark(
            f"{TEST_NAMES[primary]} against baseline (primary test of the analysis plan), "
            "two-sided, not adjusted for multiplicity"
            + ("; the confirmatory decisions are in the confirmatory-testing table."
               if results["multiplicity"].get("confirmatory") else "."))
    cols = ["N", "Mean ± SD", f"Change from baseline (95% CI){m_change}", f"p-value{m_p}"]
    for s in sens:
        ms = notes.mark(f"{TEST_NAMES[s]}: sensitivity analysis, not part of the confirmatory "
                        "family" + (" (zero differences dropped; exact permutation "
                                    "distribution with ties)." if s == "wilcoxon" else "."))
        cols.append(f"Sensitivity p-value{ms}")
    t = Table("outcomes", "Outcomes by visit and change from baseline", "Outcome and visit",
              cols)
    desc = results.get("describe") or []
    paired = results.get("paired") or []
    arms = results.get("arms") or []
    base = results["baseline_visit"]
    col = {"t": "p_t", "wilcoxon": "p_wilcoxon"}
    no_data = False
    for o in results["outcomes"]:
        d = decimals(o["analyte"])[0]
        for arm in (arms if per_arm else [None]):
            drows = _rows(desc, o["analyte"], arm)
            if not drows:
                continue
            label = outcome_label(o)
            t.add(label if arm is None else f"{label}: {_arm_label(results, arm)}",
                  heading=True)
            prow = {r["visit"]: r for r in _rows(paired, o["analyte"], arm)}
            for r in drows:
                v = r["visit"]
                n = int(r.get("n") or 0)
                cells = [str(n), fmt_mean_sd(r.get("mean"), r.get("sd"), d)]
                if v == base or v not in prow:
                    cells += [""] * (len(cols) - 2)
                else:
                    pr = prow[v]
                    k = int(pr.get("n_pairs") or 0)
                    if k == 0:
                        ch = DASH
                    elif k == 1 or is_missing(r.get("change_ci_low")):
                        ch = fmt_num(r.get("mean_change"), d)
                    else:
                        ch = (f"{fmt_num(r['mean_change'], d)} "
                              f"({fmt_ci(r['change_ci_low'], r['change_ci_high'], d)})")
                    if 0 < k < n:
                        ch += f" [{k}]"
                    cells.append(ch)
                    cells.append(fmt_p(pr.get(col[primary]), alpha=alpha))
                    cells += [fmt_p(pr.get(col[s]), alpha=alpha) for s in sens]
                no_data = no_data or DASH in cells
                t.add(_vl(results, v), cells, indent=1)
    t.notes = notes.lines()
    if no_data:
        t.notes.append("—: no data, or too few values to estimate.")
    t.notes.append(P_RULE.format(alpha=alpha))
    uns = results.get("unscheduled") or {}
    if uns.get("visits"):
        t.notes.append(f"{uns['visits']} unscheduled visit(s) of {uns['participants']} "
                       f"participant(s) ({uns['measurements']} measurements) have no nominal "
                       "visit and are not in this table; they are kept in the dataset.")
    demo = results.get("demo")
    if demo:
        weeks = ", ".join(_vw(results, v) for v in demo["not_published_visits"])
        t.notes.append(f"Not published: {weeks}; their synthetic values are a smooth "
                       "interpolation plus noise.")
    return t


# ----------------------------------------------------------------------------- confirmatory


def _hyp_label(results: dict[str, Any], analyte: str, visit: str) -> str:
    o = _outcome(results, analyte)
    return f"{outcome_label(o, with_unit=False)}, {_vw(results, visit)} vs baseline"


def _hl(r: dict[str, Any], d: int) -> str:
    """Hodges–Lehmann estimate (exact CI); the CI only when its level reaches 95 % (with very
    few pairs no exact 95 % interval exists)."""
    if is_missing(r.get("hl_estimate")):
        return DASH
    est = fmt_num(r["hl_estimate"], d)
    level = r.get("hl_ci_level")
    if is_missing(r.get("hl_ci_low")) or (not is_missing(level) and float(level) < 0.95 - 1e-9):
        return f"{est} (CI not attainable)"
    return f"{est} ({fmt_ci(r['hl_ci_low'], r['hl_ci_high'], d)})"


def confirmatory_table(results: dict[str, Any]) -> Table | None:
    """The confirmatory family: each hypothesis of the fixed sequence with the primary test's
    estimate, p-value and decision; the sensitivity test's p-value beside it, without a
    decision. ``None`` when the plan has no sequence."""
    mult = results["multiplicity"]
    conf = mult.get("confirmatory")
    if not conf:
        return None
    alpha = float(mult.get("alpha") or SIGNIFICANCE)
    test = conf["test"]
    notes = Notes()
    m_est = notes.mark(
        "Difference between the arms in the change from baseline, adjusted for baseline "
        "(ANCOVA), with its 95% CI." if test == "ancova" else
        "Mean change from baseline with its t-based 95% CI." if test == "t" else
        "Hodges–Lehmann estimate of the change with its exact CI (achieved level nearest "
        "95%).")
    m_dec = notes.mark(
        f"Fixed-sequence testing at α = {alpha}: each hypothesis is tested at the full α only "
        "if every earlier one was rejected; the first non-rejection, or the first hypothesis "
        "without data, stops the sequence and the later ones are not tested.")
    cols = ["N", f"Estimate (95% CI){m_est}", "p-value", f"Decision{m_dec}"]
    sens = mult.get("sensitivity") or []
    for s in sens:
        hl = " Hodges–Lehmann estimate of the change with its exact CI (Walsh averages; " \
             "achieved level nearest 95%)." if any("hl_estimate" in h
                                                  for h in s["hypotheses"]) else ""
        m = notes.mark(f"{TEST_NAMES.get(s['test'], s['test'])}: sensitivity analysis, not "
                       f"part of the confirmatory family; no decision is taken on it.{hl}")
        if any("hl_estimate" in h for h in s["hypotheses"]):
            cols.append(f"Sensitivity: Hodges–Lehmann estimate (95% CI){m}")
        cols.append(f"Sensitivity p-value{m}")
    title = (f"Confirmatory testing: fixed sequence at α = {alpha}, "
             f"{TEST_NAMES.get(test, test).lower().replace('ancova', 'ANCOVA')}")
    t = Table("multiplicity", title, "Hypothesis, in testing order", cols)
    desc = {(r["outcome"], r["visit"]): r for r in results.get("describe") or []
            if r.get("arm") is None}
    paired = {(r["outcome"], r["visit"]): r for r in results.get("paired") or []
              if r.get("arm") is None}
    anc = {}
    for r in results.get("ancova") or []:
        anc.setdefault((r["outcome"], r["visit"]), r)
    any_no_data = False
    for h in conf["hypotheses"]:
        a, v = h["analyte"], h["visit"]
        d = decimals(a)[0]
        est = DASH
        if test == "ancova":
            r = anc.get((a, v))
            if r and not is_missing(r.get("estimate")):
                est = f"{fmt_num(r['estimate'], d)} ({fmt_ci(r['ci_low'], r['ci_high'], d)})"
        elif test == "t":
            r = desc.get((a, v))
            if r and int(r.get("n_pairs") or 0) > 1 and not is_missing(r.get("change_ci_low")):
                est = (f"{fmt_num(r['mean_change'], d)} "
                       f"({fmt_ci(r['change_ci_low'], r['change_ci_high'], d)})")
        else:
            est = _hl(paired.get((a, v)) or {}, d)
        status = h["status"]
        any_no_data = any_no_data or status == NO_DATA
        cells = [str(h.get("n", 0)), est, fmt_p(h.get("p"), alpha=alpha),
                 DECISIONS.get(status, status)]
        for s in sens:
            sh = next((x for x in s["hypotheses"] if x["analyte"] == a and x["visit"] == v), {})
            if any("hl_estimate" in x for x in s["hypotheses"]):
                cells.append(_hl(sh, d))
            cells.append(fmt_p(sh.get("p"), alpha=alpha))
        t.add(f"{h['order']}. {_hyp_label(results, a, v)}", cells)
    t.notes = notes.lines()
    if any_no_data:
        t.notes.append("Not tested: no data — no participant has values at both visits yet "
                       "(or too few to compute the test); the sequence stops there.")
    t.notes.append("N: participants with values at both visits" + (
        " (both arms)." if test == "ancova" else "."))
    t.notes.append(P_RULE.format(alpha=alpha))
    return t


# ----------------------------------------------------------------------------- ANCOVA


def ancova_table(results: dict[str, Any]) -> Table | None:
    """Between-arm comparison per outcome and visit (randomised trials)."""
    recs = results.get("ancova") or []
    if not recs:
        return None
    alpha = _alpha(results)
    t = Table("ancova", "Between-arm comparison: ANCOVA of the change from baseline",
              "Outcome and visit", ["Comparison", "Difference (95% CI)", "N", "p-value"])
    for o in results["outcomes"]:
        rows = [r for r in recs if r["outcome"] == o["analyte"]]
        if not rows:
            continue
        d = decimals(o["analyte"])[0]
        t.add(outcome_label(o), heading=True)
        for r in rows:
            est = DASH if is_missing(r.get("estimate")) else (
                f"{fmt_num(r['estimate'], d)} ({fmt_ci(r['ci_low'], r['ci_high'], d)})")
            t.add(_vl(results, r["visit"]),
                  [f"{_arm_label(results, r['arm'])} − {_arm_label(results, r['reference_arm'])}",
                   est, str(int(r.get("n_used") or 0)), fmt_p(r.get("p"), alpha=alpha)],
                  indent=1)
    t.notes = ["Change from baseline regressed on arm and the baseline value; participants "
               "without both values are not in N.", P_RULE.format(alpha=alpha)]
    return t


# ----------------------------------------------------------------------------- mixed model

_DDF_NAMES = {"kenward-roger": "Kenward–Roger", "kenward_roger": "Kenward–Roger",
              "kr": "Kenward–Roger", "satterthwaite": "Satterthwaite", "wald": "Wald",
              "containment": "containment"}


def _ddf_method(model: dict[str, Any]) -> str | None:
    for key in ("ddf", "ddf_method", "df_method"):
        v = model.get(key)
        if isinstance(v, str) and v:
            return _DDF_NAMES.get(v.lower(), v)
    test = str(model.get("test") or "")
    for k, name in _DDF_NAMES.items():
        if k in test.lower() and name != "Wald":
            return name
    return None


def _term_label(results: dict[str, Any], term: str, ref_arm: str | None) -> str:
    m = re.fullmatch(r"(\w+)\[(.+?)\](?::(\w+)\[(.+?)\])?", term)
    if m is None:
        return {"Intercept": "Intercept"}.get(term, term.replace("_", " "))
    var, level, var2, level2 = m.groups()

    def part(v: str, lv: str) -> str:
        if v == "visit":
            return f"{_vl(results, lv)} vs baseline"
        if v == "arm":
            other = f" vs {_arm_label(results, ref_arm)}" if ref_arm else ""
            return f"{_arm_label(results, lv)}{other}"
        return f"{v} {lv}"

    if var2 is None:
        lab = part(var, level)
        return lab + (" (at baseline)" if var == "arm" else "")
    return f"{_vl(results, level)} × arm ({part(var2, level2)})"


def _lmm_error(msg: str) -> str:
    known = {"no follow-up data": "Not estimable: no follow-up data",
             "fewer than 2 participants": "Not estimable: fewer than 2 participants"}
    return known.get(msg, "Not estimable: the model could not be fitted")


def lmm_table(results: dict[str, Any]) -> Table | None:
    """Supportive linear mixed model per outcome: every fixed effect but the intercept with
    estimate (95% CI), SE, denominator degrees of freedom and p-value. Uses the model's
    small-sample df (Kenward–Roger / Satterthwaite) when the fit provides them (keys ``df``
    and the t-based ``ci_low``/``ci_high``), else says that the tests are Wald z tests."""
    models = results.get("lmm") or []
    if not models:
        return None
    alpha = _alpha(results)
    notes = Notes()
    arms = sorted(results.get("arms") or [])
    ref_arm = arms[0] if len(arms) > 1 else None
    t = Table("lmm", "Supportive analysis: linear mixed model of all visits",
              "Outcome and effect", ["Estimate (95% CI)", "SE", "df", "p-value"])
    has_df = any(not is_missing(fe.get("df")) for m in models for fe in m.get("fixed_effects",
                                                                           []))
    methods = sorted({x for m in models if (x := _ddf_method(m))})
    for m in models:
        o = _outcome(results, m["outcome"])
        label = outcome_label(o)
        if "error" in m:
            t.add(label, heading=True)
            t.add(_lmm_error(str(m["error"])), [""] * 4, indent=1)
            continue
        flags = []
        if m.get("converged") is False:
            flags.append(notes.mark("The fit did not converge: estimates are unreliable."))
        if m.get("singular"):
            flags.append(notes.mark("Singular fit: a random-effect variance is estimated at "
                                    "zero (on the boundary)."))
        t.add(label + "".join(flags), heading=True)
        d = decimals(m["outcome"])[0] + 1
        for fe in m.get("fixed_effects", []):
            if fe["term"] == "Intercept":
                continue
            df = fe.get("df")
            ci = fmt_ci(fe.get("ci_low"), fe.get("ci_high"), d)
            df_txt = DASH if is_missing(df) else fmt_num(df, 1)
            se = fe.get("se_adj") if not is_missing(fe.get("se_adj")) else fe.get("se")
            t.add(_term_label(results, fe["term"], ref_arm),
                  [f"{fmt_num(fe['estimate'], d)} ({ci})", fmt_num(se, d), df_txt,
                   fmt_p(fe.get("p"), alpha=alpha)], indent=1)
        for name, ft in (m.get("f_tests") or {}).items():
            if is_missing(ft.get("F")):
                continue
            lab = {"time": "All visits vs baseline", "group": "Arm",
                   "group:time": "Arm × visit, all visits"}.get(name, "Omnibus")
            mf = notes.mark("F test that all the effects of the row are 0 (numerator, "
                            "denominator df).")
            t.add(f"{lab}, F test{mf}",
                  [f"F = {fmt_num(ft['F'], 2)}", "",
                   f"{fmt_num(ft['ndf'], 0)}, {fmt_num(ft['ddf'], 1)}",
                   fmt_p(ft.get("p"), alpha=alpha)], indent=1)
    mm = (results.get("plan") or {}).get("mixed_model") or {}
    grouped = ref_arm is not None
    desc = ("Visit as a categorical fixed effect (reference: baseline)"
            + (", arm and arm × visit" if grouped else "")
            + ", random intercept per participant, "
            + ("ML" if str(mm.get("method", "reml")).lower() == "ml" else "REML")
            + "; intercept not shown.")
    notes_out = [*notes.lines(), desc]
    fitted = any("error" not in m for m in models)
    if has_df:
        how = " and ".join(methods) if methods else "small-sample"
        kr = " SE: the Kenward–Roger adjusted standard error." if "Kenward–Roger" in methods \
            else ""
        notes_out.append(f"t tests and 95% CIs with {how} denominator degrees of freedom "
                         f"(df).{kr}")
    elif fitted:
        notes_out.append("Wald z tests and normal-based 95% CIs (no small-sample degrees of "
                         "freedom: with few participants the p-values are too small and the "
                         "CIs too narrow).")
    notes_out.append(P_RULE.format(alpha=alpha))
    t.notes = notes_out
    return t


# ----------------------------------------------------------------------------- safety

_OVERVIEW = {"any adverse event": "Any adverse event",
             "serious adverse event": "Serious adverse event",
             "related adverse event": "Related adverse event",
             "grade >= 3": "Grade 3 or higher",
             "grade 5 (fatal)": "Grade 5 (fatal)"}
_RELATED_NOTE = "Related: relatedness possible, probable or definite."


def ae_overview_table(results: dict[str, Any]) -> Table:
    """Participants with at least one event n (%) and events, per category."""
    s = results["safety"]
    n = int(s["n_participants"])
    notes = Notes()
    m_rel = notes.mark(_RELATED_NOTE)
    t = Table("ae_overview", "Adverse events: overview", "Category",
              [f"Participants, n (%), N = {n}", "Events"])
    for r in s.get("overview") or []:
        lab = _OVERVIEW.get(r["category"], r["category"])
        if r["category"] == "related adverse event":
            lab += m_rel
        t.add(lab, [fmt_n_pct(int(r["n_participants"]), n), str(int(r["n_events"]))])
    t.notes = [*notes.lines(), f"N: {n} enrolled participants; CTCAE v5.0 grades."]
    return t


def _onset(r: dict[str, Any]) -> str:
    if is_missing(r.get("onset_median")):
        return DASH
    return (f"{fmt_num(r['onset_median'], 0 if float(r['onset_median']).is_integer() else 1)} "
            f"({fmt_num(r['onset_min'], 0)}, {fmt_num(r['onset_max'], 0)})")


def ae_table(results: dict[str, Any]) -> Table | None:
    """Adverse events by system organ class and term (gtreg ``tbl_ae`` layout): participants
    n (%), events, participants by maximum grade, serious, related, onset after infusion."""
    s = results["safety"]
    recs = s.get("by_soc_term") or []
    if not recs or int(s.get("n_events") or 0) == 0:
        return None
    n = int(s["n_participants"])
    notes = Notes()
    anyrow = recs[0]
    grades = [g for g in range(1, 6) if int(anyrow.get(f"max_grade_{g}") or 0) > 0]
    m_max = notes.mark("Each participant is counted once per row, at the highest CTCAE v5.0 "
                       "grade of their events in that row.")
    m_rel = notes.mark(_RELATED_NOTE)
    m_on = notes.mark("Days from the cell infusion (day 0) to onset, median (min, max), over "
                      "the events of the row with a recorded onset.")
    cols = [f"Participants, n (%), N = {n}", "Events", *[f"Grade {g}" for g in grades],
            "Serious, n (%)", f"Related, n (%){m_rel}", f"Onset, days after infusion{m_on}"]
    spanners = [(f"Participants by maximum grade{m_max}", 2, 1 + len(grades))] if grades else []
    t = Table("ae_by_soc", "Adverse events by system organ class and term",
              "System organ class and term", cols, spanners=spanners)
    for r in recs:
        cells = [fmt_n_pct(int(r["n_participants"]), n), str(int(r["n_events"])),
                 *[str(int(r.get(f"max_grade_{g}") or 0)) for g in grades],
                 fmt_n_pct(int(r["n_serious"]), n), fmt_n_pct(int(r["n_related"]), n),
                 _onset(r)]
        if r["level"] == "any":
            t.add("Any adverse event", cells)
        elif r["level"] == "soc":
            t.add(str(r["soc"]), cells)
        else:
            t.add(str(r["term"]), cells, indent=1)
    t.notes = notes.lines()
    if not s.get("soc_coded"):
        t.notes.append("The adverse events are not coded to MedDRA system organ classes yet: "
                       "all are listed under Not coded, with their terms as recorded.")
    elif any(r["soc"] == "Not coded" for r in recs):
        t.notes.append("Not coded: events without a system organ class; terms as recorded.")
    t.notes.append(f"N: {n} enrolled participants.")
    return t


def _grade_label(g: str) -> str:
    return {"missing": "No value"}.get(g, f"Grade {g}")


def _baseline_rule_notes(results: dict[str, Any], terms: list[str]) -> list[str]:
    s = results["safety"]
    rr = s.get("reference_ranges") or {}
    bg = s.get("baseline_grading") or {}
    out = []
    for analyte, ref in rr.items():
        if ref["term"] not in terms:
            continue
        b = bg.get(analyte) or {}
        unit = unit_label(ref.get("unit"))
        u = f" {unit}" if unit else ""
        k, n = b.get("above_uln"), b.get("n")
        mean = b.get("mean")
        if analyte == "bilirubin":
            txt = (f"{ref['term']}: ULN {fmt_num(ref['uln'], 0)}{u}. CTCAE v5.0 grades a "
                   "participant whose baseline is above the ULN relative to that baseline "
                   "(grade 1 > 1.0 × baseline, 2 > 1.5 ×, 3 > 3.0 ×, 4 > 10.0 ×), so the "
                   "baseline value itself is grade 0 whether it is normal or not")
            if n:
                txt += (f": {k} of {n} participants had a baseline above the ULN (mean "
                        f"{fmt_num(mean, 0)}{u}), and every participant starts at grade 0; a "
                        "later grade means a rise above the participant's own baseline")
            out.append(txt + ".")
        elif analyte == "creatinine":
            txt = (f"{ref['term']}: ULN {fmt_num(ref['uln'], 0)}{u}; the worse of the grade "
                   "against the ULN (grade 1 > 1.0 ×, 2 > 1.5 ×, 3 > 3.0 ×, 4 > 6.0 × ULN) and "
                   "against the participant's baseline (grade 2 > 1.5 ×, 3 > 3.0 × baseline); "
                   "the baseline value is graded against the ULN only")
            if n:
                txt += f" ({k} of {n} above the ULN at baseline)"
            out.append(txt + ".")
        elif analyte == "inr":
            out.append(f"{ref['term']}: graded on the absolute INR (grade 1 > 1.2 [ULN], "
                       "2 > 1.5, 3 > 2.5), the participants not being anticoagulated.")
        elif analyte == "albumin":
            out.append(f"{ref['term']}: grade 1 < LLN {fmt_num(ref['lln'], 0)}{u}, "
                       f"2 < 30{u}, 3 < 20{u}.")
    return out


def shift_table(results: dict[str, Any]) -> Table | None:
    """CTCAE grade shifts (baseline grade × worst grade after baseline), condensed to the
    grades seen, with the baseline grading rules in footnotes."""
    sh = results["safety"].get("shifts") or []
    if not sh:
        return None
    df = pd.DataFrame(sh)
    seen = df[df["n"] > 0]
    order = {str(k): k for k in range(6)} | {"missing": 9}
    worst = sorted(seen["worst_grade"].unique(), key=lambda g: order.get(g, 8))
    notes = Notes()
    m_w = notes.mark("Worst CTCAE v5.0 grade of the visits after baseline; No value: no "
                     "graded value after baseline (yet).")
    cols = [_grade_label(g) for g in worst] + ["Total"]
    t = Table("lab_shifts", "Laboratory abnormalities: CTCAE grade at baseline and worst grade "
              "after baseline", "Laboratory term and baseline grade", cols,
              spanners=[(f"Worst grade after baseline{m_w}", 0, len(worst) - 1)])
    terms = sorted(seen["term"].unique(), key=str)
    for term in terms:
        sub = seen[seen["term"] == term]
        t.add(str(term), heading=True)
        for b in sorted(sub["baseline_grade"].unique(), key=lambda g: order.get(g, 8)):
            row = sub[sub["baseline_grade"] == b].set_index("worst_grade")["n"]
            cells = [str(int(row.get(w, 0))) for w in worst] + [str(int(row.sum()))]
            lab = "No baseline value" if b == "missing" else f"Baseline grade {b}"
            t.add(lab, cells, indent=1)
    t.notes = [*notes.lines(),
               "Only the grades that occur are shown (a grade that no participant had has no "
               "row or column).",
               *_baseline_rule_notes(results, [str(x) for x in terms]),
               "Reference ranges are assumed adult values in SI units (the store holds none)."]
    return t


# ----------------------------------------------------------------------------- demo


def _demo_label(results: dict[str, Any], analyte: str) -> str:
    if analyte == "meld":
        return "MELD"
    o = next((x for x in results["outcomes"] if x["analyte"] == analyte), None)
    return outcome_label(o) if o else analyte


def reconstruction_table(results: dict[str, Any]) -> Table | None:
    """Published vs reconstructed statistics (demo only)."""
    demo = results.get("demo")
    if not demo:
        return None
    t = Table("reconstruction", "Reconstruction check: published and synthetic statistics",
              "Statistic", ["Published", "Synthetic, as entered", "Printed", "Reproduced"])
    for s in demo["verification"]["stats"]:
        d = int(s["decimals"])
        t.add(f"{_demo_label(results, s['analyte'])}, {_vw(results, s['visit'])}",
              [f"{fmt_num(s['published_mean'], d)} ± {fmt_num(s['published_sd'], d)}",
               f"{fmt_num(s['mean'], 4)} ± {fmt_num(s['sd'], 4)}",
               fmt_mean_sd(s["mean"], s["sd"], d), "Yes" if s["reproduced"] else "No"])
    for x in demo["verification"]["tests"]:
        t.add(f"{_demo_label(results, x['analyte'])}, week 24 vs baseline",
              ["P < 0.05" if x["published_significant"] else "Not significant",
               f"paired t P = {fmt_p(x['p_t'])}; exact Wilcoxon P = {fmt_p(x['p_wilcoxon'])}",
               "P < 0.05" if x["p_t"] < 0.05 else "Not significant",
               "Yes" if x["agrees"] else "No"])
    v = demo["meld_variant"]
    t.notes = [f"Seed {demo['seed']}; MELD: {MELD_VARIANT_LABELS.get(v, v)}; source: "
               f"{demo['reference']}.", *demo.get("notes", [])]
    return t


def meld_variant_table(results: dict[str, Any]) -> Table | None:
    """Which MELD variant can reproduce the published MELD (demo only)."""
    demo = results.get("demo")
    if not demo:
        return None
    t = Table("meld_variants", "Which MELD variant reproduces the published MELD?",
              "MELD variant and visit", ["Published", "Lowest attainable mean",
                                         "Synthetic cohort", "Reproducible"])
    for variant, r in demo["feasibility"].items():
        t.add(MELD_VARIANT_LABELS.get(variant, variant), heading=True)
        for v in ("D0", "W24"):
            x = r[v]
            cm = (fmt_mean_sd(x["cohort_mean"], x["cohort_sd"], 3)
                  if x.get("cohort_mean") is not None else DASH)
            t.add(_vl(results, v), [f"{x['published_mean']} ± {x['published_sd']}",
                                    fmt_num(x["lowest_mean"], 2), cm,
                                    "Yes" if x["attainable"] else "No: " + x["reason"]],
                  indent=1)
    t.notes = ["Lowest attainable mean: the smallest mean MELD of 8 patients whose INR, "
               "creatinine and bilirubin have exactly the published means and SDs within the "
               "plausibility bounds (separable minimisation, multi-start SLSQP); for the integer "
               "OPTN 2002 MELD the continuous bound minus 0.5 (rounding). Synthetic cohort: MELD "
               "of the reconstructed cohort under that variant."]
    return t


def meld_supportive_table(results: dict[str, Any]) -> Table | None:
    """MELD of the cohort under every variant (supportive rows)."""
    rows = results.get("meld_variants") or []
    if not rows:
        return None
    t = Table("meld_supportive", "MELD under each variant", "MELD variant and visit",
              ["N", "Mean ± SD"])
    current = None
    for r in rows:
        a = str(r["analyte"])
        if a != current:
            lab = _an.SCORES[a].label if a in _an.SCORES else a
            t.add(lab, heading=True)
            current = a
        t.add(_vl(results, r["visit"]), [str(r["n"]), fmt_mean_sd(r["mean"], r["sd"], 2)],
              indent=1)
    return t


def report_tables(td: Any, results: dict[str, Any]) -> list[Table]:
    """Every table of the report, in report order, numbered (supplementary demo tables S1…)."""
    main = [table1(td, results), product_table(results), outcomes_table(results),
            confirmatory_table(results),
            ancova_table(results), lmm_table(results), ae_overview_table(results),
            ae_table(results), shift_table(results)]
    supp = [reconstruction_table(results), meld_variant_table(results),
            meld_supportive_table(results)]
    out: list[Table] = []
    for i, tab in enumerate(x for x in main if x is not None):
        tab.number = str(i + 1)
        out.append(tab)
    for i, tab in enumerate(x for x in supp if x is not None):
        tab.number = f"S{i + 1}"
        out.append(tab)
    return out
