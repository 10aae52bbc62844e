"""``hepatrial stats``: statistics on a tidy CSV (one row per subject x visit).

* ``hepatrial stats paired FILE.csv --subject COL --visit COL --outcome COL --baseline LEVEL``
  — every visit vs baseline: paired t, Wilcoxon signed-rank, d_z/g_z, exclusions.
* ``hepatrial stats lmm FILE.csv --subject COL --time COL --outcome COL [--ddf METHOD]`` —
  linear mixed model (profiled REML as lme4; GLS SEs; Kenward-Roger, Satterthwaite or Wald
  tests, matching R pbkrtest / lmerTest).
* ``hepatrial stats mmrm FILE.csv --subject COL --visit COL --outcome COL [--covariance UN]``
  — MMRM (REML; unstructured, cs, ar1 or toeplitz covariance over visits; Kenward-Roger df):
  least-squares means and change from baseline by visit (matches R nlme::gls / pbkrtest).

``--json`` prints deterministic JSON (sorted keys, numbers as numbers, NaN as null).  Bad input
(missing column, non-numeric value) prints an error naming the column and the CSV line and exits
with code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    import pandas as pd

# pandas and hepatrial.analysis (scipy, statsmodels) are imported inside the commands so that
# the rest of the CLI does not pay for them at start-up.

err = Console(stderr=True)
out = Console()

stats_app = typer.Typer(
    name="stats",
    help="Statistics on a tidy CSV: paired tests vs baseline, linear mixed models, MMRM.",
    no_args_is_help=True,
)

FileArg = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="Tidy CSV, one row per subject x visit.")]


def _fail(path: Path, message: str) -> None:
    err.print(f"[red]error:[/] {path}: {message}", highlight=False)
    raise typer.Exit(2)


#: largest magnitude an outcome may have: the analyses square and sum values, and beyond
#: this the sum of squares of ten million values overflows a double (1e150² × 1e7 < 1.8e308)
MAX_MAGNITUDE = 1e150


def _read(path: Path, key_columns: list[str], numeric: list[str | None] | None = None
          ) -> pd.DataFrame:
    """The CSV with its ``key_columns`` as text and its ``numeric`` columns read by the one
    number rule (:mod:`hepatrial.scores.numbers`; missing cells as :mod:`hepatrial.scores`
    spells them: empty, NA, nan, ...). Refused with the CSV line and column: a header that
    repeats a column (a second ``value`` is never silently ignored), a number that is not a
    plain decimal (``4_6``, ``1,5``, ``inf``), a magnitude above :data:`MAX_MAGNITUDE`, and a
    value of the outcome (the first of ``numeric``) outside the analyte registry's hard limits
    when the file says the analyte and its unit (columns ``analyte`` and ``unit``, as
    ``hepatrial export dataset`` writes them)."""
    import pandas as pd

    from hepatrial.errors import HepatrialError
    from hepatrial.ingest.validate import csv_header, duplicate_names

    try:
        header = csv_header(path)
    except HepatrialError as exc:
        _fail(path, str(exc).removeprefix(f"{path}: "))
        raise AssertionError from exc  # unreachable
    dup = duplicate_names([h.strip() for h in header])
    if dup:
        _fail(path, f"column(s) {', '.join(map(repr, dup))} appear more than once in the "
              "header; each column may appear once (rename or remove the copies)")
    try:
        df = pd.read_csv(path, dtype=dict.fromkeys(key_columns, str), keep_default_na=True)
        wanted = [c for c in dict.fromkeys(numeric or []) if c and c in df.columns]
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=wanted) if (
            wanted) else None
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        from hepatrial.textrules import utf8_problem

        why = utf8_problem(path) if isinstance(exc, UnicodeDecodeError) else None
        _fail(path, why or f"cannot read CSV: {' '.join(str(exc).split())}")
        raise AssertionError from exc  # unreachable
    # row labels = CSV line numbers (header is line 1) so errors point into the file
    df.index = pd.RangeIndex(2, len(df) + 2)
    if raw is not None:
        raw.index = df.index
        for col in wanted:
            df[col] = _numbers(path, raw, col)
        outcome = (numeric or [None])[0]
        if "analyte" in df.columns and "unit" in df.columns and outcome in wanted:
            _check_limits(path, df, outcome)  # the outcome only: times and covariates are not
            # values of the analyte
    return df


def _numbers(path: Path, raw: pd.DataFrame, col: str) -> pd.Series:
    """Column ``col`` of the text table ``raw`` as numbers (missing cells NaN), read by the
    importers' vectorised number rule; the first bad or too large cell refuses the file."""
    import numpy as np
    import pandas as pd

    from hepatrial.ingest.validate import number_reasons, parse_numbers
    from hepatrial.scores._core import MISSING_TEXT

    text = raw[col].astype(str).str.strip()
    given = text.where(~text.str.lower().isin(MISSING_TEXT), "")
    values, bad = parse_numbers(given)
    why = number_reasons(given, bad)
    with np.errstate(invalid="ignore"):
        huge = np.abs(values) > MAX_MAGNITUDE
    stop = why.notna().to_numpy() | huge
    if stop.any():
        i = int(np.flatnonzero(stop)[0])
        line, t = raw.index[i], given.iat[i]
        if huge[i]:
            _fail(path, f"column {col!r}, row {line}: {t!r} is too large to analyse (beyond "
                  f"±{MAX_MAGNITUDE:g} the squares the statistics need overflow; rows are CSV "
                  "line numbers)")
        _fail(path, f"column {col!r}, row {line}: {why.iat[i]} (rows are CSV line numbers)")
    return pd.Series(values, index=raw.index)


def _check_limits(path: Path, df: pd.DataFrame, col: str) -> None:
    """Values of registry analytes (in a unit the analyte accepts) inside its hard limits."""
    import numpy as np

    from hepatrial.cli._plausible import limit_reasons, registry

    reg = registry()
    for (code, unit), sub in df.groupby(["analyte", "unit"], sort=True, dropna=True):
        if code not in reg.ANALYTES or not reg.analyte(code).accepts(str(unit)):
            continue
        bad, reason = limit_reasons(str(code), str(unit), sub[col].to_numpy(dtype=float))
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            _fail(path, f"column {col!r}, row {sub.index[j]}: {sub[col].iloc[j]:g} "
                  f"{reason(j)} (rows are CSV line numbers)")


def _dump(obj: Any) -> None:
    from hepatrial.analysis._common import nan_to_none

    typer.echo(json.dumps(nan_to_none(obj), sort_keys=True, allow_nan=False, indent=2))


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def _as_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _numeric_visit_order(values: pd.Series) -> list[str] | None:
    import pandas as pd

    levels = list(pd.unique(values.dropna()))
    num = pd.to_numeric(pd.Series(levels), errors="coerce")
    if bool(num.isna().any()):
        return None
    return [lv for _, lv in sorted(zip(num.tolist(), levels, strict=True))]


def paired(
    file: FileArg,
    subject: Annotated[str, typer.Option("--subject", help="Subject id column.")],
    visit: Annotated[str, typer.Option("--visit", help="Visit column.")],
    outcome: Annotated[str, typer.Option("--outcome", help="Numeric outcome column.")],
    baseline: Annotated[str, typer.Option("--baseline", help="Baseline visit level.")],
    wilcoxon: Annotated[str, typer.Option(
        "--wilcoxon", help="exact: exact (conditional, with ties or zeros) permutation "
        "distribution, as coin's wilcoxsign_test(distribution = 'exact'), up to "
        "--exact-max-n non-zero differences; asymptotic: R's normal approximation "
        "(wilcox.test with ties).")] = "exact",
    zero_method: Annotated[str, typer.Option(
        "--zero-method", help="wilcoxon: drop zero differences (R wilcox.test); pratt: rank "
        "them, then drop their ranks (coin's default).")] = "wilcoxon",
    digits_rank: Annotated[str, typer.Option(
        "--digits-rank", help="Rank |differences| rounded to this many significant digits "
        "(R's digits.rank), so that recorded ties stay ties in binary floating point; 'none' "
        "ranks the raw doubles (R's default).")] = "9",
    exact_max_n: Annotated[str, typer.Option(
        "--exact-max-n", help="Above this many non-zero differences --wilcoxon exact uses the "
        "normal approximation (the result says so); 'none': exact at any n.")] = "500",
    correction: Annotated[bool, typer.Option(
        "--correction/--no-correction", help="Continuity correction of the normal "
        "approximation.")] = True,
    confidence: Annotated[float, typer.Option(
        "--conf-level", help="Level of the t and Hodges-Lehmann confidence intervals.")] = 0.95,
    by: Annotated[str | None, typer.Option(
        "--by", help="Outcome grouping column, e.g. analyte.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Compare every visit with baseline (paired t, Wilcoxon signed-rank, Hodges-Lehmann
    estimate and CI, d_z, g_z).

    Visits are ordered by nominal_day when that column exists, numerically when all visit
    levels are numbers, else by first appearance.  Participants lacking either value are
    excluded and counted per reason.  Every row names the Wilcoxon method actually used.
    """
    if wilcoxon not in ("exact", "asymptotic"):
        raise typer.BadParameter("must be 'exact' or 'asymptotic'", param_hint="--wilcoxon")
    if zero_method not in ("wilcoxon", "pratt"):
        raise typer.BadParameter("must be 'wilcoxon' or 'pratt'", param_hint="--zero-method")

    def _int_or_none(text: str, hint: str, minimum: int) -> int | None:
        if text.strip().lower() in ("none", "inf"):
            return None
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise typer.BadParameter(f"must be an integer >= {minimum} or 'none', got {text!r}",
                                     param_hint=hint)
        return value

    digits = _int_or_none(digits_rank, "--digits-rank", 1)
    max_n = _int_or_none(exact_max_n, "--exact-max-n", 0)
    if not 0.0 < confidence < 1.0:
        raise typer.BadParameter("must be in (0, 1)", param_hint="--conf-level")
    from hepatrial.analysis import AnalysisInputError, paired_vs_baseline
    from hepatrial.analysis._common import frame_records

    df = _read(file, [subject, visit], [outcome])
    order = None
    if visit in df.columns and "nominal_day" not in df.columns:
        order = _numeric_visit_order(df[visit])
    try:
        res = paired_vs_baseline(df, baseline=baseline, subject=subject, visit=visit,
                                 outcome=outcome, by=by, visits=order,
                                 wilcoxon=wilcoxon,  # type: ignore[arg-type]
                                 zero_method=zero_method,  # type: ignore[arg-type]
                                 digits_rank=digits, exact_max_n=max_n, correction=correction,
                                 confidence=confidence)
    except AnalysisInputError as exc:
        _fail(file, f"{exc} (rows are CSV line numbers)" if exc.row is not None else str(exc))
        return
    if as_json:
        _dump({"analysis": "paired_vs_baseline", "baseline": baseline, "wilcoxon": wilcoxon,
               "zero_method": zero_method, "digits_rank": digits, "exact_max_n": max_n,
               "correction": correction, "confidence": confidence,
               "subject": subject, "visit": visit, "outcome": outcome,
               "results": frame_records(res)})
        return
    level = f"{confidence * 100:g}%"
    table = Table(title=f"{outcome}: each visit vs baseline {baseline}")
    cols = (["outcome"] if by else []) + ["visit", "n", "excl", "mean diff", f"{level} CI", "t",
                                          "p t", "p W", "HL", f"HL {level} CI", "g_z"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("outcome", "visit") else "right")
    notes = []
    methods: dict[str, list[str]] = {}
    for r in frame_records(res):
        cells = [str(r["outcome"])] if by else []
        cells += [str(r["visit"]), str(r["n_pairs"]), str(r["n_excluded"]),
                  _fmt(r["mean_diff"]), f"{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}",
                  _fmt(r["t"]), _fmt(r["p_t"]), _fmt(r["p_wilcoxon"]), _fmt(r["hl_estimate"]),
                  f"{_fmt(r['hl_ci_low'])}, {_fmt(r['hl_ci_high'])}", _fmt(r["g_z"], 3)]
        table.add_row(*cells)
        label = f"{r['outcome']} {r['visit']}" if by else str(r["visit"])
        if r["wilcoxon_method"]:
            methods.setdefault(str(r["wilcoxon_method"]), []).append(label)
        if r["n_excluded"]:
            notes.append(f"{r['outcome']} {r['visit']}: excluded {r['n_excluded']} (missing "
                         f"baseline {r['excluded_missing_baseline']}, missing visit "
                         f"{r['excluded_missing_visit']}, both {r['excluded_missing_both']})")
    out.print(table)
    for note in notes:
        out.print(note, highlight=False)
    zeros = "zeros dropped" if zero_method == "wilcoxon" else "zeros ranked (Pratt)"
    ranked = f"ranked at {digits} significant digits" if digits else "ranked unrounded"
    used = "; ".join(f"{m}: {', '.join(v)}" for m, v in methods.items())
    out.print(f"p t: paired t-test; p W: Wilcoxon signed-rank ({zeros}, {ranked}; {used}); "
              "HL: Hodges-Lehmann estimate; g_z: Hedges' g_z = d_z (1 - 3/(4(n-1)-1)).",
              highlight=False)


def lmm(
    file: FileArg,
    subject: Annotated[str, typer.Option("--subject", help="Subject id column.")],
    time: Annotated[str, typer.Option("--time", help="Time column (numeric).")],
    outcome: Annotated[str, typer.Option("--outcome", help="Numeric outcome column.")],
    log: Annotated[bool, typer.Option("--log", help="Model log(outcome).")] = False,
    random: Annotated[str, typer.Option(
        "--random", help="intercept or slope (random intercept and slope on time).")
    ] = "intercept",
    time_type: Annotated[str, typer.Option(
        "--time-type", help="continuous or categorical time.")] = "continuous",
    group: Annotated[str | None, typer.Option(
        "--group", help="Arm column: adds group and group x time.")] = None,
    reml: Annotated[bool, typer.Option("--reml/--ml", help="REML (default) or ML.")] = True,
    reference: Annotated[str | None, typer.Option(
        "--reference", help="Reference time level for --time-type categorical (e.g. D0).")
    ] = None,
    ddf: Annotated[str, typer.Option(
        "--ddf", help="Denominator df of the t and F tests: kenward-roger (default; REML "
        "only), satterthwaite or wald (z).")] = "kenward-roger",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Fit a linear mixed model (profiled REML as lme4, GLS SEs, KR/Satterthwaite t tests)."""
    if random not in ("intercept", "slope"):
        raise typer.BadParameter("must be 'intercept' or 'slope'", param_hint="--random")
    if time_type not in ("continuous", "categorical"):
        raise typer.BadParameter("must be 'continuous' or 'categorical'",
                                 param_hint="--time-type")
    if ddf not in ("kenward-roger", "satterthwaite", "wald"):
        raise typer.BadParameter("must be 'kenward-roger', 'satterthwaite' or 'wald'",
                                 param_hint="--ddf")
    from hepatrial.analysis import AnalysisInputError, fit_lmm

    keys = [subject] + ([group] if group else [])
    df = _read(file, keys, [outcome, time if time_type == "continuous" else None])
    import pandas as pd

    ref: Any = reference
    if reference is not None and time in df.columns:
        same = [lv for lv in pd.unique(df[time].dropna()) if str(lv) == reference
                or (isinstance(lv, int | float) and _as_float(reference) == lv)]
        ref = same[0] if same else reference
    try:
        res = fit_lmm(df, subject, time, outcome, log=log, random=random,  # type: ignore[arg-type]
                      time_type=time_type, group=group, reml=reml,  # type: ignore[arg-type]
                      time_reference=ref, ddf=ddf)  # type: ignore[arg-type]
    except AnalysisInputError as exc:
        _fail(file, f"{exc} (rows are CSV line numbers)" if exc.row is not None else str(exc))
        return
    if as_json:
        _dump(res.to_dict())
        return
    stat = "z" if ddf == "wald" else "t"
    table = Table(title=res.model)
    for col in ("term", "estimate", "SE", "df", stat, "p", f"{res.confidence:.0%} CI"):
        table.add_column(col, justify="left" if col == "term" else "right")
    for term, r in res.fixed_effects.iterrows():
        table.add_row(str(term), _fmt(r["estimate"], 6), _fmt(r["se_adj"], 6),
                      _fmt(r["df"] if r["df"] != float("inf") else None, 4), _fmt(r["t"]),
                      _fmt(r["p"]), f"({_fmt(r['ci_low'], 6)}, {_fmt(r['ci_high'], 6)})")
    out.print(table)
    for name, ft in res.f_tests.items():
        ddf_txt = "inf" if ft["ddf"] == float("inf") else _fmt(ft["ddf"])
        out.print(f"F test {name}: F = {_fmt(ft['F'])} on {_fmt(ft['ndf'])} and {ddf_txt} df, "
                  f"p = {_fmt(ft['p'])}", highlight=False)
    out.print(f"random-effects covariance:\n{res.cov_re.to_string()}", highlight=False)
    out.print(
        f"residual variance {res.residual_variance:.6g}; {res.method} logLik {res.loglik:.6f}; "
        f"tests: {res.test}; optimizer {res.optimizer}; converged {res.converged} (max "
        f"|gradient| {res.max_grad:.2g}); singular {res.singular}; n obs {res.n_obs}, "
        f"groups {res.n_groups}, dropped {res.n_dropped}", highlight=False)
    if res.singular:
        out.print("boundary (singular) fit: a random-effect variance is 0 or a correlation is "
                  "+-1 (lme4 isSingular)", highlight=False)


def mmrm(
    file: FileArg,
    subject: Annotated[str, typer.Option("--subject", help="Subject id column.")],
    visit: Annotated[str, typer.Option("--visit", help="Visit column (categorical).")],
    outcome: Annotated[str, typer.Option("--outcome", help="Numeric outcome column.")],
    covariance: Annotated[str, typer.Option(
        "--covariance", help="Covariance over visits: unstructured (default), cs, ar1 or "
        "toeplitz.")] = "unstructured",
    group: Annotated[str | None, typer.Option(
        "--group", help="Arm column: adds group and group x visit.")] = None,
    covariate: Annotated[list[str] | None, typer.Option(
        "--covariate", help="Numeric covariate column (repeatable).")] = None,
    baseline: Annotated[str | None, typer.Option(
        "--baseline", help="Baseline visit (default: the first visit).")] = None,
    ddf: Annotated[str, typer.Option(
        "--ddf", help="kenward-roger (default), satterthwaite or wald.")] = "kenward-roger",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Fit an MMRM (REML, covariance over visits, KR df): LS means and change from baseline."""
    from hepatrial.analysis import AnalysisInputError, fit_mmrm

    if covariance not in ("unstructured", "cs", "ar1", "toeplitz"):
        raise typer.BadParameter("must be unstructured, cs, ar1 or toeplitz",
                                 param_hint="--covariance")
    if ddf not in ("kenward-roger", "satterthwaite", "wald"):
        raise typer.BadParameter("must be 'kenward-roger', 'satterthwaite' or 'wald'",
                                 param_hint="--ddf")
    keys = [subject, visit] + ([group] if group else [])
    df = _read(file, keys, [outcome, *(covariate or [])])
    order = None
    if visit in df.columns and "nominal_day" not in df.columns:
        order = _numeric_visit_order(df[visit])
    try:
        res = fit_mmrm(df, subject, visit, outcome, covariance=covariance,  # type: ignore[arg-type]
                       group=group, covariates=covariate or (), baseline=baseline,
                       visit_order=order, ddf=ddf)  # type: ignore[arg-type]
    except AnalysisInputError as exc:
        _fail(file, f"{exc} (rows are CSV line numbers)" if exc.row is not None else str(exc))
        return
    if as_json:
        _dump(res.to_dict())
        return
    for title, frame in (("least-squares means", res.lsmeans),
                         (f"change from baseline ({res.baseline})", res.change_from_baseline),
                         ("difference in change vs reference group", res.group_differences)):
        if frame is None or frame.empty:
            continue
        table = Table(title=f"{outcome}: {title}")
        cols = [c for c in ("visit", "group", "estimate", "se", "df", "t", "p") if c in frame]
        for col in [*cols, f"{res.confidence:.0%} CI"]:
            table.add_column(col, justify="left" if col in ("visit", "group") else "right")
        for r in frame.to_dict(orient="records"):
            table.add_row(*[_fmt(r[c]) if isinstance(r[c], float) else str(r[c]) for c in cols],
                          f"({_fmt(r['ci_low'])}, {_fmt(r['ci_high'])})")
        out.print(table)
    for name, ft in res.f_tests.items():
        out.print(f"F test {name}: F = {_fmt(ft['F'])} on {_fmt(ft['ndf'])} and "
                  f"{_fmt(ft['ddf'])} df, p = {_fmt(ft['p'])}", highlight=False)
    out.print(f"{res.model}; REML logLik {res.loglik:.6f}; tests: {res.test}; converged "
              f"{res.converged}; n obs {res.n_obs}, subjects {res.n_subjects}, visit patterns "
              f"{res.n_patterns}, dropped {res.n_dropped}", highlight=False)


stats_app.command("paired")(paired)
stats_app.command("lmm")(lmm)
stats_app.command("mmrm")(mmrm)


def register(app: typer.Typer) -> None:
    """Add the ``stats`` sub-command group to the command tree."""
    app.add_typer(stats_app, name="stats")


__all__ = ["lmm", "mmrm", "paired", "register", "stats_app"]
