"""One self-contained HTML report from a TrialData bundle and :func:`analyze` results.

Tables are :class:`hepatrial.report.table.Table` objects built by
:mod:`hepatrial.report.tables` and rendered as booktabs-style HTML (fixed ids, styles in the
template, no external CSS/JS/fonts); figures are inline SVG/PNG
(:mod:`hepatrial.report.figures`); the page is a Jinja2 template shipped as package data
(``templates/report.html.j2``). The same inputs give byte-identical HTML except for the single
line carrying the run time (``<p class="runtime">``). The text is built from the computed
numbers and never shows internal identifiers (analyte codes, visit codes, rule names).
"""

from __future__ import annotations

import datetime as _dt
import html as _html
from importlib import resources
from typing import Any

import jinja2

from hepatrial import __version__
from hepatrial.analysis.multiplicity import NO_DATA
from hepatrial.report import figures
from hepatrial.report import tables as _t
from hepatrial.report.format import (
    fmt_ci,
    fmt_mean_sd,
    fmt_num,
    fmt_p,
    fmt_pct,
    is_missing,
    outcome_label,
    p_text,
    unit_label,
    visit_label,
    visit_word,
)
from hepatrial.report.table import Table, to_html

__all__ = ["build_report", "fmt_mean_sd", "fmt_p", "methods_text", "outcomes_table",
           "results_text", "variant_sentence"]

MELD_VARIANT_TEXT = {
    "kamath2001": "the continuous Kamath 2001 model, 10·R = 9.57 ln(creatinine) + 3.78 "
                  "ln(bilirubin) + 11.2 ln(INR) + 6.43 (mg/dL), with no floors, caps or rounding",
    "continuous": "10·R with the OPTN/UNOS rules (laboratory values below 1.0 set to 1.0, "
                  "creatinine capped at 4.0 mg/dL), not rounded",
    "optn2002": "the OPTN/UNOS allocation MELD 2002–2016 (floors and cap as above, rounded "
                "to an integer, bounded 6–40)",
}
TEST_NAME = {"t": "paired t test", "wilcoxon": "exact Wilcoxon signed-rank test"}
TABLE_IDS = ("table1", "product", "outcomes", "multiplicity", "ancova", "lmm", "ae_overview",
             "ae_by_soc", "lab_shifts", "reconstruction", "meld_variants", "meld_supportive")
TEST_TEXT = {"t": "the paired t test", "wilcoxon": "the exact Wilcoxon signed-rank test",
             "ancova": "ANCOVA of the change from baseline adjusted for baseline"}


def outcomes_table(results: dict[str, Any]) -> str:
    """Table 2 (outcomes by visit) as HTML."""
    return to_html(_t.outcomes_table(results))


# ----------------------------------------------------------------------------- text


def _vw(results: dict[str, Any], code: str) -> str:
    return visit_word(code, results.get("visit_labels"), baseline=results["baseline_visit"])


def _mid(label: str) -> str:
    """A label inside a sentence: ``Creatinine`` → ``creatinine``; ``INR``, ``MELD`` kept."""
    return label[:1].lower() + label[1:] if label[1:2].islower() else label


def _label(results: dict[str, Any], analyte: str) -> str:
    o = next((x for x in results["outcomes"] if x["analyte"] == analyte), None)
    return _mid(outcome_label(o, with_unit=False)) if o else analyte


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


def _listing(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _meld_name(variant: str | None) -> str:
    return _t.MELD_VARIANT_LABELS.get(str(variant), str(variant))


def _ddf_sentence(results: dict[str, Any]) -> str:
    models = [m for m in results.get("lmm") or [] if "error" not in m]
    if not models:
        return ""
    has_df = any(not is_missing(fe.get("df")) for m in models for fe in m["fixed_effects"])
    methods = sorted({x for m in models if (x := _t._ddf_method(m))})
    if has_df:
        how = " and ".join(methods) if methods else "small-sample"
        return f"its tests and CIs use t distributions with {how} degrees of freedom"
    return ("its tests are Wald z tests without small-sample degrees of freedom (too liberal "
            "with few participants)")


def methods_text(results: dict[str, Any]) -> str:
    """Methods paragraph: MELD variant, primary and sensitivity tests, multiplicity, mixed
    model, the Holm feasibility note and the number formats."""
    plan = results["plan"]
    alpha = float(plan.get("alpha") or _t.SIGNIFICANCE)
    v = plan.get("meld_variant")
    s = []
    if v and any(o["analyte"].startswith("meld") for o in results["outcomes"]):
        s.append(f"MELD was computed by hepatrial as {_meld_name(v)}: "
                 f"{MELD_VARIANT_TEXT.get(v, _meld_name(v))}.")
        pv = plan.get("protocol_meld_variant")
        if pv and pv != v:
            s.append(f"The protocol's analysis plan names {_meld_name(pv)}; {_meld_name(v)} is "
                     "used here because only it reproduces the published MELD (see the "
                     "MELD-variant table); the other variants are shown as supportive rows.")
    primary = str(plan.get("primary_test") or "t")
    sens = [x for x in plan.get("sensitivity_tests") or [] if x in TEST_TEXT]
    per_arm = _t._per_arm(results)
    where = " within each arm" if per_arm else ""
    txt = (f"Each post-baseline visit was compared with baseline{where} by "
           f"{TEST_TEXT.get(primary, primary)}, the primary test of the analysis plan")
    if sens:
        txt += (f"; {_listing([TEST_TEXT[x] for x in sens])} "
                f"{'is a sensitivity analysis' if len(sens) == 1 else 'are sensitivity analyses'}"
                ", reported beside it and not part of the confirmatory family")
    s.append(txt + ". Tests are two-sided; only participants with values at both visits "
             "contribute to a comparison.")
    mult = results["multiplicity"]
    conf = mult.get("confirmatory")
    if conf and mult.get("rule") == "fixed_sequence":
        hyps = [f"{_label(results, h['analyte'])} at {_vw(results, h['visit'])}"
                for h in conf["hypotheses"]]
        s.append(f"The confirmatory hypotheses — {_listing(hyps)}, against baseline, in this "
                 f"order — were tested in a fixed sequence with {TEST_TEXT[conf['test']]} at "
                 f"α = {alpha}: each at the full α only if every earlier one was rejected; the "
                 "first non-rejection, or the first hypothesis without data, stops the "
                 "sequence. All other comparisons are descriptive.")
    elif mult.get("rule") == "holm":
        s.append("The protocol specifies Holm's step-down procedure for multiplicity; the "
                 "p-values in this report are unadjusted.")
    else:
        s.append("No multiplicity adjustment is specified; the p-values are unadjusted.")
    h = mult.get("holm_all")
    due = sum(int(v.get("not_yet_due") or 0) for v in results["flow"].get("visits", []))
    if h and not h.get("can_reject") and not due:
        n = h["n_pairs"]
        s.append(f"A Holm correction over all m = {h['m_tests']} comparisons could never reject: "
                 f"with n = {n} pairs the smallest two-sided p an exact sign-based test can reach "
                 f"is 2/2^{n} = {fmt_num(h['min_p'], 4)}, larger than α/m = "
                 f"{fmt_num(h['holm_threshold'], 4)}.")
    if results.get("lmm"):
        ddf = _ddf_sentence(results)
        s.append("A linear mixed model of all visits (visit as a categorical fixed effect"
                 + (", arm and arm × visit" if per_arm else "")
                 + ", random intercept per participant, REML) is a supportive analysis"
                 + (f"; {ddf}" if ddf else "") + ".")
    prod = product_sentence(results)
    if prod:
        s.append(prod)
    s.append("Means are given ± SD (n − 1). p-values are printed with two significant digits "
             "(<0.001 below 0.001), with more digits when rounding would put a value on or "
             f"across α = {alpha}.")
    if due:
        s.append("Interim analysis: visits that participants still in follow-up have not "
                 "reached yet are counted as not yet due, not as missing.")
    return " ".join(s)


def product_sentence(results: dict[str, Any]) -> str:
    """What the methods say about the cell product, from the store's product records
    (:func:`hepatrial.report.analyze.product_summary`); empty without them."""
    ps = results.get("product")
    if not ps:
        return ""
    n = int(ps["n_given"])
    dose = ps.get("dose") or {}
    per = " per kg" if dose.get("dose_basis") == "per_kg" else ""
    rng = ""
    if dose.get("cells_min") and dose.get("cells_max"):
        rng = (f" (protocol dose {fmt_num(dose['cells_min'] / 1e6, 0)}–"
               f"{fmt_num(dose['cells_max'] / 1e6, 0)} ×10⁶ cells{per}")
        rng += f" in {fmt_num(dose['volume_ml'], 0)} mL)" if dose.get("volume_ml") else ")"
    shelf = ps.get("shelf_life_hours")
    exc = int(ps.get("n_exceptional") or 0)
    txt = (f"Each infused batch{rng} was made from the participant's own marrow harvest, "
           "traced by its chain-of-identity identifier, tested against the protocol's "
           f"{ps.get('n_release_tests') or 'release'} release tests and released by a "
           "quality-assurance officer who did not manufacture it, with an electronic "
           "signature; the infusion was recorded only after the dosing gate checked the "
           "identity, the release" + (f", the {fmt_num(shelf, 0)} h shelf life" if shelf else "")
           + " and the transport temperature. "
           f"{n} {'batch was' if n == 1 else 'batches were'} given"
           + (f", {exc} released exceptionally" if exc else ", all within specification")
           + "; the cell-product table is built from these records.")
    return txt


def _latest_visit(results: dict[str, Any]) -> str | None:
    post = results["post_baseline_visits"]
    with_data = [r["visit"] for r in results.get("paired") or [] if (r.get("n_pairs") or 0) > 0]
    for v in reversed(post):
        if v in with_data:
            return v
    return None


def _decision_sentence(results: dict[str, Any]) -> list[str]:
    mult = results["multiplicity"]
    conf = mult.get("confirmatory")
    if not conf:
        return []
    alpha = float(mult.get("alpha") or _t.SIGNIFICANCE)
    hyps = conf["hypotheses"]

    def name(h: dict[str, Any]) -> str:
        return f"{_label(results, h['analyte'])} at {_vw(results, h['visit'])}"

    rej = [name(h) for h in hyps if h["status"] == "rejected"]
    parts = [f"In the fixed sequence ({TEST_NAME.get(conf['test'], 'ANCOVA')}, α = {alpha}),"]
    if rej:
        parts.append(f"the hypotheses for {_listing(rej)} were rejected;" if len(rej) > 1 else
                     f"the hypothesis for {rej[0]} was rejected;")
    else:
        parts.append("no hypothesis was rejected;")
    stop = next((h for h in hyps if h["status"] in ("not rejected", NO_DATA)), None)
    if stop is not None:
        if stop["status"] == NO_DATA:
            parts.append(f"{name(stop)} was not tested: no data, and the sequence stopped "
                         "there")
        else:
            parts.append(f"{name(stop)} was not rejected ({p_text(stop['p'], alpha=alpha)}), "
                         "which stopped the sequence")
        rest = [name(h) for h in hyps if h["order"] > stop["order"]]
        if rest:
            parts[-1] += f"; {_listing(rest)} {'was' if len(rest) == 1 else 'were'} not tested"
        parts[-1] += "."
    else:
        parts[-1] = parts[-1].rstrip(";") + "."
    out = [" ".join(parts)]
    for sv in mult.get("sensitivity") or []:
        ps = [fmt_p(h.get("p"), alpha=alpha) for h in sv["hypotheses"]]
        if any(p != "—" for p in ps):
            out.append(f"The sensitivity analysis ({TEST_NAME.get(sv['test'], sv['test'])}) "
                       f"gave p = {_listing(ps)} for the same hypotheses, in order.")
    return out


def results_text(results: dict[str, Any]) -> str:
    """Results paragraph in the style of an abstract, from the computed numbers."""
    base = results["baseline_visit"]
    post = results["post_baseline_visits"]
    flow = results["flow"]
    alpha = float((results.get("plan") or {}).get("alpha") or _t.SIGNIFICANCE)
    parts = [f"{flow['enrolled']} participant{'s were' if flow['enrolled'] != 1 else ' was'} "
             f"enrolled and {flow['treated']} received the cell infusion."]
    last = _latest_visit(results)
    if not post or last is None:
        parts.append("No follow-up data yet: no participant has a value after baseline.")
        parts.extend(_decision_sentence(results))
        parts.append(_safety_sentence(results))
        return " ".join(parts)
    if last != post[-1]:
        parts.append(f"No participant has reached {_vw(results, post[-1])} yet; results are "
                     f"given at {_vw(results, last)}, the latest visit with data.")
    primary = str((results.get("plan") or {}).get("primary_test") or "t")
    pcol = {"t": "p_t", "wilcoxon": "p_wilcoxon"}.get(primary, "p_t")
    arms = results.get("arms") or []
    per_arm = _t._per_arm(results)
    for o, arm in [(o, arm) for o in results["outcomes"] for arm in (arms if per_arm else [None])]:
        a = o["analyte"]
        b, f, p = (_describe_row(results, a, base, arm), _describe_row(results, a, last, arm),
                   _paired_row(results, a, last, arm))
        if not (b and f and p) or not f.get("n") or not b.get("n"):
            continue
        d = _t.decimals(a)[1]
        dc = _t.decimals(a)[0]
        unit = unit_label(o.get("reported_unit") or o.get("unit"))
        u = f" {unit}" if unit else ""
        who = "" if arm is None else f"In arm {_t._arm_label(results, arm)}, "
        k = int(p.get("n_pairs") or 0)
        stats = []
        if k > 1 and not is_missing(f.get("change_ci_low")):
            stats.append(f"mean change {fmt_num(f['mean_change'], dc)}{u}, 95% CI "
                         f"{fmt_ci(f['change_ci_low'], f['change_ci_high'], dc, ' to ')}")
        if not is_missing(p.get(pcol)):
            stats.append(f"{p_text(p.get(pcol), alpha=alpha)}, {TEST_NAME[primary]}")
        name = o["label"] if arm is None else _mid(o["label"])
        if k == int(b["n"]) == int(f["n"]):
            stats.append(f"n = {k}")
            fb, ff = fmt_mean_sd(b["mean"], b["sd"], d), fmt_mean_sd(f["mean"], f["sd"], d)
            if fmt_num(b["mean"], d) == fmt_num(f["mean"], d):  # equal as printed
                parts.append(f"{who}{name} was {fb}{u} at baseline and {ff}{u} at "
                             f"{_vw(results, last)} ({'; '.join(stats)}).")
            else:
                verb = "decreased" if f["mean"] < b["mean"] else "increased"
                parts.append(f"{who}{name} {verb} from {fb}{u} to {ff}{u} at "
                             f"{_vw(results, last)} ({'; '.join(stats)}).")
        else:  # interim or missing values: the change among the participants with both values
            change = f"{fmt_num(f.get('mean_change'), dc)}{u}"
            if k > 1 and not is_missing(f.get("change_ci_low")):
                change += (" (95% CI "
                           f"{fmt_ci(f['change_ci_low'], f['change_ci_high'], dc, ' to ')}")
                change += (f"; {p_text(p.get(pcol), alpha=alpha)}, {TEST_NAME[primary]})"
                           if not is_missing(p.get(pcol)) else ")")
            parts.append(f"{who}{name}: mean change from baseline to {_vw(results, last)} "
                         f"{change} in the {k} participant{'s' if k != 1 else ''} with values "
                         "at both visits.")
    for r in results.get("ancova") or []:
        if r["visit"] != last or is_missing(r.get("estimate")):
            continue
        o = next((x for x in results["outcomes"] if x["analyte"] == r["outcome"]), None)
        if o is None:
            continue
        d = _t.decimals(r["outcome"])[1] + 1
        parts.append(f"At {_vw(results, last)} the baseline-adjusted difference in "
                     f"{_mid(o['label'])} ({_t._arm_label(results, r['arm'])} − "
                     f"{_t._arm_label(results, r['reference_arm'])}) was "
                     f"{fmt_num(r['estimate'], d)} (95% CI "
                     f"{fmt_ci(r['ci_low'], r['ci_high'], d, ' to ')}; "
                     f"{p_text(r['p'], alpha=alpha)}; ANCOVA, n = {int(r['n_used'])}).")
    parts.extend(_decision_sentence(results))
    parts.append(_safety_sentence(results))
    return " ".join(parts)


def _safety_sentence(results: dict[str, Any]) -> str:
    s = results["safety"]
    if not s["n_events"]:
        return "No adverse events were recorded."
    ov = {r["category"]: r for r in s.get("overview") or []}
    n = int(s["n_participants"])
    anyae = ov.get("any adverse event") or {}
    sae = ov.get("serious adverse event") or {}
    k = int(anyae.get("n_participants") or 0)
    ks = int(sae.get("n_participants") or 0)
    return (f"{s['n_events']} adverse event{'s' if s['n_events'] != 1 else ''} occurred in "
            f"{k} of {n} participants ({fmt_pct(k, n)}%); {ks} participant"
            f"{'s' if ks != 1 else ''} had a serious adverse event.")


def variant_sentence(demo: dict[str, Any]) -> str:
    """Which MELD variant reproduces the published MELD, and how close the others get."""
    fz = demo["feasibility"]
    ok = [_meld_name(k) for k, r in fz.items() if r["feasible"]]
    parts = [f"The published MELD (17.9 ± 5.6 at baseline, 10.7 ± 6.3 at week 24) is "
             f"reproduced from labs with the published means and SDs only by "
             f"{' and '.join(ok) or 'no variant'}."]
    for k, r in fz.items():
        if r["feasible"]:
            c0, c1 = r["D0"], r["W24"]
            if c0.get("cohort_mean") is not None:
                parts.append(f"{_meld_name(k)}: the synthetic cohort gives "
                             f"{fmt_mean_sd(c0['cohort_mean'], c0['cohort_sd'], 2)} and "
                             f"{fmt_mean_sd(c1['cohort_mean'], c1['cohort_sd'], 2)}.")
            continue
        parts.append(f"{_meld_name(k)} cannot: its attainable mean MELD is at least "
                     f"{fmt_num(r['D0']['lowest_mean'], 2)} at baseline and "
                     f"{fmt_num(r['W24']['lowest_mean'], 2)} at week 24"
                     + ("" if k != "optn2002" else
                        ", and no mean of 8 integer scores prints as 10.7") + ".")
    return " ".join(parts)


def plan_text(results: dict[str, Any]) -> str:
    """The analysis plan in words (provenance line)."""
    plan = results["plan"]
    primary = str(plan.get("primary_test") or "t")
    sens = [TEST_TEXT.get(x, x) for x in plan.get("sensitivity_tests") or []]
    mult = {"fixed_sequence": "fixed sequence", "holm": "Holm", "none": "none"}.get(
        str(plan.get("multiplicity")), "none")
    out = [f"primary test: {TEST_TEXT.get(primary, primary)}"]
    if sens:
        out.append(f"sensitivity: {_listing(sens)}")
    if plan.get("meld_variant"):
        out.append(f"MELD: {_meld_name(plan['meld_variant'])}")
    out.append(f"multiplicity: {mult}")
    out.append(f"α = {plan.get('alpha')}")
    return "; ".join(out)


# ----------------------------------------------------------------------------- page


def _figure_inputs(td: Any, results: dict[str, Any]) -> dict[str, Any]:
    ds = td.dataset
    visits = results["visits"]
    days = {str(v["code"]): int(v["nominal_day"])
            for v in (td.protocol_summary or {}).get("visits") or []}
    days.update({k: int(v) for k, v in ds.groupby("visit")["nominal_day"].min().items()
                 if k not in days})
    demo = results.get("demo")
    note = tuple(demo["not_published_visits"]) if demo else ()
    meld = next((o for o in results["outcomes"] if o["analyte"].startswith("meld")), None)
    change = None
    last = _latest_visit(results)
    base = results["baseline_visit"]
    if meld and last:
        sub = ds[ds["analyte"] == meld["analyte"]]
        w = sub.pivot_table(index="participant_id", columns="visit", values="value",
                            aggfunc="first")
        if base in w and last in w:
            change = (w[last] - w[base]).sort_index()
    labels = {v: visit_label(v, results.get("visit_labels"), baseline=base) for v in visits}
    return {"visits": visits, "days": days, "note": note, "meld": meld, "change": change,
            "last": last, "labels": labels}


def figure_set(td: Any, results: dict[str, Any], out: str = "html") -> dict[str, Any]:
    """The report's figures: ``trajectories``, ``waterfall`` (None without follow-up) and
    ``flow``, as inline HTML (``out="html"``) or PNG bytes (``out="png"``)."""
    f = _figure_inputs(td, results)
    ds = td.dataset
    traj = figures.trajectories(ds, results["outcomes"], f["visits"], f["days"],
                                note_visits=f["note"], out=out)
    wf = None
    if f["change"] is not None and f["change"].notna().any():
        wf = figures.waterfall(f["change"], f"MELD, {f['labels'][f['last']]} − baseline", "",
                               out=out)
    flow = figures.flow_diagram(results["flow"], f["labels"], out=out)
    word = _vw(results, f["last"]) if f["last"] else ""
    return {"trajectories": traj, "waterfall": wf, "flow": flow,
            "waterfall_title": (f"Change in MELD per participant, {word} − baseline"
                                if wf is not None else "")}


def _template() -> jinja2.Template:
    text = resources.files("hepatrial.report").joinpath("templates/report.html.j2").read_text(
        encoding="utf-8")
    env = jinja2.Environment(autoescape=False, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    return env.from_string(text)


def build_report(td: Any, analysis_results: dict[str, Any], *, run_time: str | None = None,
                 tables: list[Table] | None = None) -> str:
    """Render the HTML report (one self-contained page).

    ``run_time`` is the text of the run-time line (default: now, UTC, ISO 8601); it is the only
    part of the page that differs between runs on the same data. ``tables``: the report's
    tables when already built (:func:`hepatrial.report.tables.report_tables`).
    """
    r = analysis_results
    proto = r.get("protocol") or {}
    if run_time is None:
        run_time = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    figs = figure_set(td, r)
    tabs = dict.fromkeys(TABLE_IDS, "")
    tabs.update({t.id: to_html(t) for t in (tables if tables is not None
                                            else _t.report_tables(td, r))})
    demo = r.get("demo")
    ctx = {
        "title": _html.escape(proto.get("title") or proto.get("name") or "Trial report"),
        "protocol": {k: _html.escape(str(v)) if v is not None else "—" for k, v in proto.items()},
        "synthetic": demo is not None,
        "synthetic_label": _html.escape((demo or {}).get("label", "")),
        "version": __version__,
        "dataset_sha256": r["dataset_sha256"],
        "run_time": _html.escape(run_time),
        "methods": _html.escape(methods_text(r)),
        "results_text": _html.escape(results_text(r)),
        "tables": tabs,
        "no_events": not r["safety"]["n_events"],
        "variant_verdict": _html.escape(variant_sentence(demo)) if demo else "",
        "fig_traj": figs["trajectories"],
        "fig_waterfall": figs["waterfall"] or "",
        "waterfall_title": _html.escape(figs["waterfall_title"]),
        "fig_flow": figs["flow"],
        "plan_text": _html.escape(plan_text(r)),
    }
    return _template().render(**ctx)
