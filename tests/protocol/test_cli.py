"""``hepatrial protocol`` commands via typer's CliRunner (on a fresh app: only this module)."""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path

import typer
from typer.testing import CliRunner

from hepatrial.cli.protocol import register
from hepatrial.protocol import load_protocol

app = typer.Typer()
register(app)


@app.callback()
def _root() -> None:
    """Test root (keeps 'protocol' as a sub-command)."""


runner = CliRunner()
BUILTIN = resources.files("hepatrial.protocol").joinpath("builtin")


def _copy_builtin(tmp_path: Path, name: str, edit: tuple[str, str] | None = None) -> Path:
    text = BUILTIN.joinpath(name).read_text()
    if edit is not None:
        assert edit[0] in text
        text = text.replace(edit[0], edit[1], 1)
    f = tmp_path / name
    f.write_text(text)
    return f


def test_list() -> None:
    r = runner.invoke(app, ["protocol", "list"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == ["kharaziha2009", "mayo-pbc"]
    assert load_protocol("kharaziha2009").content_hash()[:12] in lines[0]


def test_show_builtin_text() -> None:
    r = runner.invoke(app, ["protocol", "show", "kharaziha2009"])
    assert r.exit_code == 0, r.output
    assert "NCT00420134" in r.stdout
    assert "W24   day   168  window -14/+14 (days 154..182)" in r.stdout
    assert "meld_kamath2001@W24 -> inr@W24" in r.stdout


def test_show_json_is_summary_dict() -> None:
    r = runner.invoke(app, ["protocol", "show", "mayo-pbc", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == load_protocol("mayo-pbc").summary_dict()


def test_show_assumptions() -> None:
    r = runner.invoke(app, ["protocol", "show", "kharaziha2009", "--assumptions"])
    assert r.exit_code == 0
    assert "visits[2].window_lower" in r.stdout.splitlines()
    lines = r.stdout.splitlines()
    assert any(ln.startswith("eligibility[1].check: variant optn2002") for ln in lines)


def test_show_file_and_unknown(tmp_path: Path) -> None:
    f = _copy_builtin(tmp_path, "kharaziha2009.toml")
    r = runner.invoke(app, ["protocol", "show", str(f)])
    assert r.exit_code == 0
    r = runner.invoke(app, ["protocol", "show", "nope"])
    assert r.exit_code == 2
    assert "no built-in protocol 'nope'" in r.stderr


def test_validate_valid(tmp_path: Path) -> None:
    f = _copy_builtin(tmp_path, "kharaziha2009.toml")
    r = runner.invoke(app, ["protocol", "validate", str(f)])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"{f}: valid\n")
    assert "content hash: " + load_protocol("kharaziha2009").content_hash() in r.stdout


def test_validate_errors_with_key_paths(tmp_path: Path) -> None:
    f = _copy_builtin(
        tmp_path,
        "kharaziha2009.toml",
        ('code = "W2"\nlabel = "Week 2"\ntarget_day = 14\nwindow_lower = -3\nwindow_upper = 3',
         'code = "W2"\nlabel = "Week 2"\ntarget_day = 14\nwindow_lower = -3\nwindow_upper = -1'
         '\nwindw = 1'),
    )
    r = runner.invoke(app, ["protocol", "validate", str(f)])
    assert r.exit_code == 2
    lines = r.stderr.splitlines()
    assert lines[0] == f"{f}: 2 error(s)"
    assert any(ln.startswith("  visits[3].window_upper: Input should be greater than or equal")
               for ln in lines)
    assert "  visits[3].windw: unknown key" in lines


def test_validate_cross_field_errors(tmp_path: Path) -> None:
    f = _copy_builtin(tmp_path, "kharaziha2009.toml", ('code = "W4"', 'code = "W2"'))
    r = runner.invoke(app, ["protocol", "validate", str(f)])
    assert r.exit_code == 2
    assert "  visits[4].code: duplicate visit code 'W2' (first at visits[3])" in r.stderr


def test_validate_import_map(tmp_path: Path) -> None:
    f = _copy_builtin(tmp_path, "mayo-pbc.map.toml")
    r = runner.invoke(app, ["protocol", "validate", str(f)])
    assert r.exit_code == 0, r.output
    assert "valid import map for mayo-pbc" in r.stdout
    assert "bili       -> bilirubin [mg/dL]" in r.stdout
    bad = _copy_builtin(tmp_path, "mayo-pbc.map.toml", ('"0" = "placebo"', '"0" = "control"'))
    r = runner.invoke(app, ["protocol", "validate", str(bad)])
    assert r.exit_code == 2
    assert "participant.arm: arm 'control' is not in the protocol" in r.stderr
    # the map file is also valid TOML for the model
    assert tomllib.loads(f.read_text())["protocol"] == "mayo-pbc"


def test_registered_on_main_app() -> None:
    from hepatrial.cli import app as main_app

    r = runner.invoke(main_app, ["protocol", "list"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("kharaziha2009 ")
