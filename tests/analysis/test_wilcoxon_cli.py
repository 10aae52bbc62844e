"""``hepatrial stats paired`` Wilcoxon options (zero method, digits_rank, exact_max_n,
continuity correction, confidence) and the Hodges–Lehmann columns, through typer's CliRunner."""

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


@pytest.fixture()
def app() -> typer.Typer:
    a = typer.Typer()

    @a.callback()
    def _root() -> None:
        """test root"""

    stats_cli.register(a)
    return a


def _case_csv(tmp_path: Path, case: str) -> Path:
    data = pd.read_csv(DATA / "wilcoxon_data.csv")
    g = data[data["case"] == case]
    rows = [{"id": f"S{i:03d}", "visit": v, "value": val}
            for i, x, y in zip(g["i"], g["x"], g["y"], strict=True)
            for v, val in (("base", x), ("post", y))]
    p = tmp_path / f"{case}.csv"
    pd.DataFrame(rows).to_csv(p, index=False, float_format="%.17g")
    return p


def _args(p: Path) -> list[str]:
    return ["stats", "paired", str(p), "--subject", "id", "--visit", "visit", "--outcome",
            "value", "--baseline", "base"]


def test_json_has_options_method_used_and_hodges_lehmann(app: typer.Typer,
                                                         tmp_path: Path) -> None:
    p = _case_csv(tmp_path, "ordinal_20")
    res = runner.invoke(app, [*_args(p), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert (data["zero_method"], data["digits_rank"], data["exact_max_n"]) == ("wilcoxon", 9, 500)
    assert data["correction"] is True and data["confidence"] == 0.95
    (row,) = data["results"]
    assert row["p_wilcoxon"] == pytest.approx(0.059478759765625, rel=1e-12)  # coin exact
    assert row["wilcoxon_method"] == "exact permutation"
    assert row["wilcoxon_method_used"] == "exact"
    assert row["n_zero_diff"] == 3 and row["wilcoxon_ties"] is True
    assert row["hl_estimate"] == 1.0 and row["hl_ci_level"] >= 0.95
    assert row["hl_ci_low"] <= 1.0 <= row["hl_ci_high"]
    pratt = json.loads(runner.invoke(app, [*_args(p), "--json", "--zero-method",
                                           "pratt"]).stdout)["results"][0]
    assert pratt["p_wilcoxon"] == pytest.approx(0.0410308837890625, rel=1e-12)  # coin Pratt
    asym = json.loads(runner.invoke(app, [*_args(p), "--json", "--wilcoxon",
                                          "asymptotic"]).stdout)["results"][0]
    assert asym["p_wilcoxon"] == pytest.approx(0.04812810716340029, rel=1e-12)  # wilcox.test
    assert asym["wilcoxon_method_used"] == "asymptotic"
    plain = json.loads(runner.invoke(app, [*_args(p), "--json", "--wilcoxon", "asymptotic",
                                           "--no-correction"]).stdout)["results"][0]
    assert plain["p_wilcoxon"] == pytest.approx(0.04536532873966543, rel=1e-12)


def test_digits_rank_and_exact_max_n_options(app: typer.Typer, tmp_path: Path) -> None:
    p = _case_csv(tmp_path, "fp_ties")
    rounded = json.loads(runner.invoke(app, [*_args(p), "--json"]).stdout)["results"][0]
    raw = json.loads(runner.invoke(app, [*_args(p), "--json", "--digits-rank",
                                         "none"]).stdout)
    assert raw["digits_rank"] is None
    assert rounded["wilcoxon_V"] == 123.5 and raw["results"][0]["wilcoxon_V"] == 127.5
    assert rounded["p_wilcoxon"] == pytest.approx(0.001953125, rel=1e-12)
    capped = runner.invoke(app, [*_args(p), "--json", "--exact-max-n", "10"])
    row = json.loads(capped.stdout)["results"][0]
    assert row["wilcoxon_method"] == ("asymptotic, continuity-corrected "
                                      "(n = 16 > exact_max_n = 10)")
    assert row["wilcoxon_method_used"] == "asymptotic"
    assert row["p_wilcoxon"] == pytest.approx(0.0027651001278472098, rel=1e-12)  # R, digits 9
    table = runner.invoke(app, [*_args(p), "--exact-max-n", "10", "--conf-level", "0.9"])
    assert table.exit_code == 0, table.output
    text = " ".join(table.stdout.split())
    assert "90%" in text  # the CI columns are labelled with the level
    assert "asymptotic, continuity-corrected (n = 16 > exact_max_n = 10): post" in text


@pytest.mark.parametrize(
    ("extra", "hint"),
    [
        (["--zero-method", "zsplit"], "--zero-method"),
        (["--digits-rank", "0"], "--digits-rank"),
        (["--digits-rank", "nine"], "--digits-rank"),
        (["--exact-max-n", "-1"], "--exact-max-n"),
        (["--conf-level", "1.5"], "--conf-level"),
        (["--wilcoxon", "permutation"], "--wilcoxon"),
    ],
)
def test_bad_options_exit_2(app: typer.Typer, tmp_path: Path, extra: list[str],
                            hint: str) -> None:
    p = _case_csv(tmp_path, "sleep")
    res = runner.invoke(app, [*_args(p), *extra])
    assert res.exit_code == 2
    assert hint in res.output
