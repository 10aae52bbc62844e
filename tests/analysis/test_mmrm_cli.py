"""``hepatrial stats mmrm`` and ``hepatrial stats lmm --ddf`` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from hepatrial.cli import stats as stats_cli

runner = CliRunner()
DATA = Path(__file__).resolve().parents[1] / "data" / "analysis"
REF = json.loads((DATA / "r_mmrm_reference.json").read_text())
LREF = json.loads((DATA / "r_lmm_reference.json").read_text())


@pytest.fixture()
def app() -> typer.Typer:
    a = typer.Typer()

    @a.callback()
    def _root() -> None:
        """test root"""

    stats_cli.register(a)
    return a


@pytest.fixture()
def meld_csv(tmp_path: Path) -> Path:
    d = pd.read_csv(DATA / "demo_kharaziha2009_synthetic.csv")
    p = tmp_path / "meld.csv"
    d[d["analyte"] == "meld_kamath2001"].to_csv(p, index=False)
    return p


def test_mmrm_json_matches_gls_and_pbkrtest(app: typer.Typer, meld_csv: Path) -> None:
    res = runner.invoke(app, ["stats", "mmrm", str(meld_csv), "--subject", "participant_id",
                              "--visit", "visit", "--outcome", "value", "--covariance", "cs",
                              "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    ref = REF["demo_meld_kamath2001_cs"]
    assert d["loglik"] == pytest.approx(ref["loglik"], abs=1e-7)
    assert d["ddf_method"] == "kenward-roger" and d["baseline"] == "D0"
    w24 = next(r for r in d["change_from_baseline"] if r["visit"] == "W24")
    assert w24["estimate"] == pytest.approx(ref["kr"]["contrasts"]["visit[W24]"]["estimate"],
                                            rel=1e-9)
    assert w24["df"] == pytest.approx(ref["kr"]["contrasts"]["visit[W24]"]["df"], rel=1e-6)
    assert [r["visit"] for r in d["lsmeans"]] == ["D0", "W1", "W2", "W4", "W8", "W24"]


def test_mmrm_table_and_errors(app: typer.Typer, meld_csv: Path) -> None:
    base = ["stats", "mmrm", str(meld_csv), "--subject", "participant_id", "--visit", "visit",
            "--outcome", "value"]
    res = runner.invoke(app, base)
    assert res.exit_code == 0, res.output
    assert "least-squares means" in res.stdout and "change from baseline (D0)" in res.stdout
    assert "unstructured covariance" in res.stdout and "Kenward-Roger" in res.stdout
    bad = runner.invoke(app, [*base, "--covariance", "ante"])
    assert bad.exit_code == 2 and "unstructured, cs, ar1 or toeplitz" in bad.output
    nob = runner.invoke(app, [*base, "--baseline", "W99"])
    assert nob.exit_code == 2 and "baseline visit 'W99' not found" in nob.stderr


@pytest.mark.parametrize("ddf", ["kenward-roger", "satterthwaite", "wald"])
def test_lmm_ddf_option(app: typer.Typer, tmp_path: Path, ddf: str) -> None:
    d = pd.read_csv(DATA / "demo_kharaziha2009_synthetic.csv")
    p = tmp_path / "crea.csv"
    d[d["analyte"] == "creatinine"].to_csv(p, index=False)
    args = ["stats", "lmm", str(p), "--subject", "participant_id", "--time", "week",
            "--outcome", "value", "--random", "slope", "--ddf", ddf]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    j = json.loads(res.stdout)
    week = j["fixed_effects"]["week"]
    assert week["method"] == ddf and j["ddf_method"] == ddf
    assert j["singular"] is True and j["converged"] is True
    ref = LREF["demo_week_slope_creatinine"]["fixed"]["week"]
    if ddf == "wald":
        assert week["df"] is None  # infinite df is null in JSON
        assert week["p"] == pytest.approx(week["p_wald"], rel=1e-12)
    else:
        assert week["df"] == pytest.approx(ref[ddf.replace("-", "_")]["df"], rel=1e-4)
    text = runner.invoke(app, args)
    assert text.exit_code == 0 and "boundary (singular) fit" in text.stdout
    assert ("z" if ddf == "wald" else " t ") in text.stdout
    bad = runner.invoke(app, [*args[:-1], "containment"])
    assert bad.exit_code == 2 and "kenward-roger" in bad.output
