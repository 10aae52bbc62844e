"""``hepatrial stats paired|lmm`` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from hepatrial.cli import stats as stats_cli
from tests.analysis._data import sleep_long

runner = CliRunner()


@pytest.fixture()
def app() -> typer.Typer:
    a = typer.Typer()

    @a.callback()
    def _root() -> None:
        """test root"""

    stats_cli.register(a)
    return a


@pytest.fixture()
def sleep_csv(tmp_path: Path) -> Path:
    p = tmp_path / "sleep.csv"
    sleep_long().rename(columns={"participant_id": "id", "visit": "group", "value": "extra"}) \
        .to_csv(p, index=False)
    return p


def test_paired_json_reproduces_r(app: typer.Typer, sleep_csv: Path) -> None:
    args = ["stats", "paired", str(sleep_csv), "--subject", "id", "--visit", "group",
            "--outcome", "extra", "--baseline", "G2", "--json"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["baseline"] == "G2" and data["wilcoxon"] == "exact"
    (row,) = data["results"]
    assert row["visit"] == "G1" and row["n_pairs"] == 10
    assert row["t"] == pytest.approx(-4.0621277, rel=1e-6)
    assert row["ci_low"] == pytest.approx(-2.4598858, rel=1e-6)
    assert row["p_wilcoxon"] == pytest.approx(0.00390625, rel=1e-9)
    assert row["g_z"] == pytest.approx(-1.1744526, rel=1e-6)
    # deterministic: same bytes twice, sorted keys
    again = runner.invoke(app, args)
    assert again.stdout == res.stdout
    assert list(data) == sorted(data)
    asym = runner.invoke(app, [*args, "--wilcoxon", "asymptotic"])
    assert json.loads(asym.stdout)["results"][0]["p_wilcoxon"] == pytest.approx(0.009090698,
                                                                                rel=1e-6)


def test_paired_table_output(app: typer.Typer, sleep_csv: Path) -> None:
    res = runner.invoke(app, ["stats", "paired", str(sleep_csv), "--subject", "id", "--visit",
                              "group", "--outcome", "extra", "--baseline", "G1"])
    assert res.exit_code == 0, res.output
    assert "G2" in res.stdout and "4.062" in res.stdout


def test_paired_numeric_visits_nan_is_null(app: typer.Typer, tmp_path: Path) -> None:
    p = tmp_path / "w.csv"
    p.write_text("sid,week,meld\na,0,20\na,24,18\na,4,19\nb,0,22\nb,4,21\nc,0,25\nc,24,24\n")
    res = runner.invoke(app, ["stats", "paired", str(p), "--subject", "sid", "--visit", "week",
                              "--outcome", "meld", "--baseline", "0", "--json"])
    assert res.exit_code == 0, res.output
    assert "NaN" not in res.stdout
    rows = json.loads(res.stdout)["results"]
    assert [r["visit"] for r in rows] == ["4", "24"]
    assert rows[0]["n_pairs"] == 2 and rows[0]["excluded_missing_visit"] == 1
    assert rows[0]["mean_diff"] == pytest.approx(-1.0)
    assert rows[0]["t"] is None  # sd of differences is 0 -> no t statistic, null in JSON


def test_bad_input_exit_2_names_column_and_line(app: typer.Typer, tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text("sid,week,meld\na,0,20\na,4,abc\nb,0,22\nb,4,21\n")
    base = ["stats", "paired", str(p), "--subject", "sid", "--visit", "week",
            "--baseline", "0"]
    res = runner.invoke(app, [*base, "--outcome", "meld"])
    assert res.exit_code == 2
    assert "column 'meld', row 3" in res.stderr and "'abc'" in res.stderr
    res = runner.invoke(app, [*base, "--outcome", "score"])
    assert res.exit_code == 2
    assert "column 'score' not found" in res.stderr
    res = runner.invoke(app, ["stats", "lmm", str(p), "--subject", "sid", "--time", "week",
                              "--outcome", "meld"])
    assert res.exit_code == 2 and "column 'meld', row 3" in res.stderr


def test_lmm_json(app: typer.Typer, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n, weeks = 8, [0, 4, 24]
    subj = rng.normal(0, 2.0, n)
    y = np.array([[15 + subj[i] + 0.1 * w + rng.normal(0, 1.0) for w in weeks]
                  for i in range(n)])
    df = pd.DataFrame([{"sid": f"s{i}", "week": w, "meld": y[i, j]}
                       for i in range(n) for j, w in enumerate(weeks)])
    df.loc[len(df)] = {"sid": "s0", "week": 8, "meld": np.nan}  # dropped and counted
    p = tmp_path / "lmm.csv"
    df.to_csv(p, index=False)
    res = runner.invoke(app, ["stats", "lmm", str(p), "--subject", "sid", "--time", "week",
                              "--outcome", "meld", "--time-type", "categorical", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    means = y.mean(axis=0)
    fe = d["fixed_effects"]
    assert fe["week[24]"]["estimate"] == pytest.approx(means[2] - means[0], rel=1e-6)
    resid = y - y.mean(axis=1, keepdims=True) - y.mean(axis=0, keepdims=True) + y.mean()
    mse = (resid**2).sum() / ((n - 1) * 2)
    assert fe["week[4]"]["se"] == pytest.approx(np.sqrt(2 * mse / n), rel=1e-5)
    assert d["variance_components"]["residual_variance"] == pytest.approx(mse, rel=1e-5)
    assert d["method"] == "REML" and d["converged"] is True
    assert d["n_obs"] == 24 and d["n_groups"] == 8 and d["n_dropped"] == 1
    assert isinstance(d["loglik"], float)
    assert set(fe["week[4]"]) == {"estimate", "se", "se_adj", "df", "t", "p", "ci_low",
                                  "ci_high", "z", "p_wald", "method"}
    # balanced, complete, random intercept: KR = Satterthwaite = residual df (n-1)(T-1) = 14
    assert d["ddf_method"] == "kenward-roger" and fe["week[4]"]["method"] == "kenward-roger"
    assert fe["week[4]"]["df"] == pytest.approx(14, rel=1e-8)
    assert d["f_tests"]["time"]["ndf"] == 2
    ml = runner.invoke(app, ["stats", "lmm", str(p), "--subject", "sid", "--time", "week",
                             "--outcome", "meld", "--ml", "--random", "slope", "--json",
                             "--ddf", "satterthwaite"])
    assert ml.exit_code == 0, ml.output
    assert json.loads(ml.stdout)["method"] == "ML"
    ref = runner.invoke(app, ["stats", "lmm", str(p), "--subject", "sid", "--time", "week",
                              "--outcome", "meld", "--time-type", "categorical", "--reference",
                              "24", "--json"])
    assert ref.exit_code == 0, ref.output
    fe24 = json.loads(ref.stdout)["fixed_effects"]
    assert list(fe24) == sorted(["Intercept", "week[0]", "week[4]"])
    assert fe24["week[0]"]["estimate"] == pytest.approx(means[0] - means[2], rel=1e-6)


def test_registered_in_main_app() -> None:
    from hepatrial.cli import app as main_app

    res = runner.invoke(main_app, ["stats", "--help"])
    assert res.exit_code == 0
    assert "paired" in res.stdout and "lmm" in res.stdout


def test_repeated_value_column_huge_numbers_and_implausible_outcome(app: typer.Typer,
                                                                    tmp_path: Path) -> None:
    """A second ``value`` column is refused (never the first silently used), a magnitude the
    statistics cannot square is refused, and an outcome outside the analyte registry's hard
    limits (when the file gives analyte and unit) is refused naming row and column - while the
    time column (week 0) is not judged as a value of the analyte."""
    base = ["--subject", "participant", "--outcome", "value"]
    p = tmp_path / "dup.csv"
    p.write_text("participant,week,value,value\na,0,1,2\na,4,1,2\nb,0,1,2\nb,4,1,2\n")
    res = runner.invoke(app, ["stats", "paired", str(p), *base, "--visit", "week",
                              "--baseline", "0"])
    assert res.exit_code == 2 and "column(s) 'value' appear more than once" in res.stderr
    p = tmp_path / "huge.csv"
    p.write_text("participant,week,value\na,0,1\na,4,1e300\nb,0,1\nb,4,2\n")
    res = runner.invoke(app, ["stats", "paired", str(p), *base, "--visit", "week",
                              "--baseline", "0"])
    assert res.exit_code == 2 and "column 'value', row 3" in res.stderr
    assert "too large to analyse" in res.stderr
    p = tmp_path / "crea.csv"
    rows = [f"{s},{w},creatinine,umol/L,{v}" for s, vals in (("a", (90, 80, 85)),
                                                             ("b", (100, 95, 9000)))
            for w, v in zip((0, 4, 8), vals, strict=True)]
    p.write_text("participant,week,analyte,unit,value\n" + "\n".join(rows) + "\n")
    res = runner.invoke(app, ["stats", "lmm", str(p), *base, "--time", "week"])
    assert res.exit_code == 2, res.output
    assert "column 'value', row 7: 9000 is outside the plausible 5-2500 umol/L" in res.stderr
