"""Start-up of ``hepatrial``: what ``--help`` imports, what it costs, the lazy command tree.

``benchmarks/bench_startup.py`` prints the figures; these tests guard them: the module sets
cannot flake, the CPU-time check has a wide margin for a loaded CI machine.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from hepatrial import cli
from hepatrial.cli import COMMANDS, app

HEAVY = ("numpy", "pandas", "pydantic", "django", "scipy", "statsmodels", "pyarrow",
         "matplotlib", "great_tables", "hepatrial.protocol")

runner = CliRunner()


def _imported_by(*argvs: list[str]) -> set[str]:
    """Modules in ``sys.modules`` after running ``hepatrial ARGV`` (each in turn) in a fresh
    interpreter."""
    code = (
        "import json, sys\n"
        "from hepatrial.cli import app\n"
        f"for argv in {[list(a) for a in argvs]!r}:\n"
        "    try:\n"
        "        app(argv, prog_name='hepatrial')\n"
        "    except SystemExit as exc:\n"
        "        assert not exc.code, (argv, exc.code)\n"
        "sys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)) + '\\n')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    line = next(x for x in res.stderr.splitlines() if x.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def _all_command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(group: object, ctx: typer.Context, prefix: list[str]) -> None:
        for name in group.list_commands(ctx):  # type: ignore[attr-defined]
            cmd = group.get_command(ctx, name)  # type: ignore[attr-defined]
            assert cmd is not None, [*prefix, name]
            paths.append([*prefix, name])
            if hasattr(cmd, "list_commands"):
                walk(cmd, typer.Context(cmd, info_name=name, parent=ctx), [*prefix, name])

    walk(root, typer.Context(root, info_name="hepatrial"), [])
    return paths


def test_root_help_imports_no_heavy_library_and_no_command_module() -> None:
    modules = _imported_by(["--help"])
    assert _heavy(modules) == []
    commands = sorted(m for m in modules if m.startswith("hepatrial.cli."))
    assert commands == [], f"`hepatrial --help` imported command modules {commands}"


def test_every_subcommand_help_imports_no_heavy_library() -> None:
    paths = _all_command_paths()
    assert len(paths) >= len(COMMANDS)
    modules = _imported_by(*[[*p, "--help"] for p in paths])
    assert _heavy(modules) == [], "imported by `hepatrial COMMAND --help`"


def _cpu_seconds(argv: list[str], env: dict[str, str], repeat: int = 3) -> float:
    best = float("inf")
    for i in range(repeat + 1):  # the first run writes the bytecode caches
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, argv
        if i:
            best = min(best, usage.ru_utime + usage.ru_stime)
    return best


def test_root_help_cpu_time_close_to_importing_typer() -> None:
    """`hepatrial --help` costs ~2x `import typer` (it also imports typer's rich help
    formatter); before the lazy tree it cost 6x. Asserted: at most 4x, a margin for a loaded
    machine that also scales with the machine's speed."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory() as cache:
        env["PYTHONPYCACHEPREFIX"] = cache
        typer_cpu = _cpu_seconds([sys.executable, "-c", "import typer"], env)
        ours = _cpu_seconds([sys.executable, "-m", "hepatrial", "--help"], env)
    assert ours <= 4 * typer_cpu, (
        f"`hepatrial --help` {ours:.3f} s CPU vs `import typer` {typer_cpu:.3f} s "
        f"(ratio {ours / typer_cpu:.1f}; target 0.15 s; see benchmarks/bench_startup.py)")


def _flat(text: str) -> str:
    """Help text without the box drawing and line wrapping of the rich formatter."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def test_root_help_lists_every_command_with_its_one_line_help() -> None:
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0, res.output
    flat = _flat(res.stdout)
    for name, (_, help_line) in COMMANDS.items():
        assert f"{name} {help_line}" in flat, name
    listed = [line.split()[1] for line in res.stdout.splitlines()
              if line.startswith("│ ") and len(line.split()) > 2
              and line.split()[1] in COMMANDS]
    assert listed == list(COMMANDS)  # in the order of COMMANDS


def test_commands_match_what_the_modules_register() -> None:
    """COMMANDS names every top-level command that a command module registers, and only
    those, with the module(s) that register it."""
    registered: dict[str, set[str]] = {}
    for module in cli.command_modules():
        scratch = typer.Typer()
        __import__(f"hepatrial.cli.{module}", fromlist=["register"]).register(scratch)
        for name in typer.main.get_group(scratch).commands:
            registered.setdefault(name, set()).add(module)
    assert sorted(registered) == sorted(COMMANDS), (
        "add a line to COMMANDS in src/hepatrial/cli/__init__.py for each new command")
    for name, modules in registered.items():
        assert modules == set(cli._modules_of(name)), name


def test_loaded_command_keeps_the_one_line_help_and_its_own_full_help() -> None:
    root = typer.main.get_command(app)
    ctx = typer.Context(root, info_name="hepatrial")
    score = root.get_command(ctx, "score")  # type: ignore[attr-defined]
    assert score.short_help == COMMANDS["score"][1]
    res = runner.invoke(app, ["score", "--help"])
    assert res.exit_code == 0
    assert "Input columns carry their unit in the name" in _flat(res.stdout)
    assert "--errors" in res.stdout
    # listing after the command was loaded: the same one-line help
    res = runner.invoke(app, ["--help"])
    assert f"score {COMMANDS['score'][1]}" in _flat(res.stdout)


def test_undeclared_command_still_runs(monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    """A command that a module registers but COMMANDS forgot runs anyway (it is not listed)."""
    monkeypatch.delitem(cli.COMMANDS, "example")
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "example" not in res.stdout
    out = tmp_path / "pbcseq.csv"
    res = runner.invoke(app, ["example", "pbcseq", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text().startswith("rownames,id,")
    res = runner.invoke(app, ["exampel"])
    assert res.exit_code == 2 and "Did you mean 'example'" in res.output


def test_version_and_unknown_command() -> None:
    from hepatrial import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == f"hepatrial {__version__}"
    res = runner.invoke(app, ["scor"])
    assert res.exit_code == 2 and "Did you mean 'score'" in res.output



_TREE = """
import json, sys
import typer, typer.main
from hepatrial import cli

def tree(cmd, ctx):
    if not hasattr(cmd, "list_commands"):
        return {}
    return {name: tree(sub, typer.Context(sub, info_name=name, parent=ctx))
            for name in cmd.list_commands(ctx)
            if (sub := cmd.get_command(ctx, name)) is not None}

if sys.argv[1] == "eager":
    app = typer.Typer()
    for module in cli.command_modules():
        __import__(f"hepatrial.cli.{module}", fromlist=["register"]).register(app)
    root = typer.main.get_group(app)
    order = list(cli.COMMANDS)
else:
    root = typer.main.get_command(cli.app)
    order = list(cli.COMMANDS)[::-1] if sys.argv[1] == "reversed" else list(cli.COMMANDS)
ctx = typer.Context(root, info_name="hepatrial")
print(json.dumps({name: tree(root.get_command(ctx, name),
                             typer.Context(root, info_name=name, parent=ctx))
                  for name in order}, sort_keys=True))
"""


def _tree_in_fresh_interpreter(how: str) -> object:
    res = subprocess.run([sys.executable, "-c", _TREE, how], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)


def test_lazy_tree_equals_the_eagerly_built_tree() -> None:
    """Commands looked up one by one in a fresh interpreter (modules load in any order; a
    group that two modules add to is asked for after one of them loaded) give the tree that
    registering every module at once gives."""
    expected = _tree_in_fresh_interpreter("eager")
    assert _tree_in_fresh_interpreter("lazy") == expected
    assert _tree_in_fresh_interpreter("reversed") == expected
