"""Start-up cost of the ``hepatrial`` command, against the floors it cannot go below.

Prints the CPU time (user + sys of the child process, best of ``--repeat`` runs) and the wall
time of

* ``python -c pass`` (the interpreter) and ``python -c "import typer"`` (the CLI library),
* ``hepatrial --help`` and ``hepatrial COMMAND --help`` for every command and sub-command,

and flags every ``hepatrial`` line above the target (issue #7: 0.15 s CPU). ``--check`` exits 1
when one is above it.

Runs are warm: the children may write and read bytecode caches (under a private
``PYTHONPYCACHEPREFIX``), as a user's second run does; ``PYTHONDONTWRITEBYTECODE``, which some
CI machines set, would make every run compile every module again (``--no-bytecode`` measures
that case). The first run of each command is a discarded warm-up.

    uv run python benchmarks/bench_startup.py [--repeat 7] [--check] [--no-bytecode]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_CPU = 0.15  # seconds of CPU (user + sys) for `hepatrial [COMMAND] --help`


def hepatrial_argv() -> list[str]:
    """The installed console script (what users run), else ``python -m hepatrial``."""
    script = Path(sys.executable).with_name("hepatrial")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "hepatrial"]


def child_env(bytecode: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["COLUMNS"] = "100"  # same help layout whatever the terminal
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "hepatrial-bench-pycache")
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def measure(argv: list[str], env: dict[str, str], repeat: int) -> tuple[float, float]:
    """Best CPU seconds (user + sys) and best wall seconds of ``argv`` over ``repeat`` runs."""
    best_cpu = best_wall = float("inf")
    for i in range(repeat + 1):
        t = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        err = proc.stderr.read() if proc.stderr else b""
        if proc.stderr:
            proc.stderr.close()
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise SystemExit(f"{' '.join(argv)} exited with {code}: {err.decode()[-2000:]}")
        if i == 0:  # warm-up: bytecode caches written
            continue
        best_cpu = min(best_cpu, usage.ru_utime + usage.ru_stime)
        best_wall = min(best_wall, wall)
    return best_cpu, best_wall


def command_paths() -> list[list[str]]:
    """Every command and sub-command of ``hepatrial``, as argument lists (loads them all)."""
    import typer.main

    from hepatrial.cli import app

    root = typer.main.get_command(app)
    ctx = typer.Context(root, info_name="hepatrial")
    paths: list[list[str]] = []

    def walk(group: object, ctx: typer.Context, prefix: list[str]) -> None:
        for name in group.list_commands(ctx):  # type: ignore[attr-defined]
            cmd = group.get_command(ctx, name)  # type: ignore[attr-defined]
            if cmd is None or cmd.hidden:
                continue
            paths.append([*prefix, name])
            if hasattr(cmd, "list_commands"):
                walk(cmd, typer.Context(cmd, info_name=name, parent=ctx), [*prefix, name])

    walk(root, ctx, [])
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7, help="runs per command (best is kept)")
    ap.add_argument("--check", action="store_true", help="exit 1 if a command is over target")
    ap.add_argument("--no-bytecode", action="store_true",
                    help="measure with PYTHONDONTWRITEBYTECODE=1 (every module compiled anew)")
    ap.add_argument("--only-root", action="store_true", help="only `hepatrial --help`")
    args = ap.parse_args()
    env = child_env(bytecode=not args.no_bytecode)
    py, hep = sys.executable, hepatrial_argv()
    cases: list[tuple[str, list[str], bool]] = [
        ("python -c pass", [py, "-c", "pass"], False),
        ('python -c "import typer"', [py, "-c", "import typer"], False),
        ("hepatrial --help", [*hep, "--help"], True),
    ]
    if not args.only_root:
        for path in command_paths():
            cases.append((f"hepatrial {' '.join(path)} --help", [*hep, *path, "--help"], True))
    print(f"CPU = user + sys of the child, best of {args.repeat} warm runs "
          f"({'no bytecode caches' if args.no_bytecode else 'bytecode caches'}); "
          f"target {TARGET_CPU:.2f} s CPU; Python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'command':<44}{'CPU s':>8}{'wall s':>8}  ")
    floor = None
    over: list[str] = []
    worst = 0.0
    for label, argv, is_ours in cases:
        cpu, wall = measure(argv, env, args.repeat)
        if floor is None:
            floor = cpu
        flag = ""
        if is_ours:
            worst = max(worst, cpu)
            if cpu > TARGET_CPU:
                over.append(label)
                flag = "  OVER TARGET"
        print(f"{label:<44}{cpu:>8.3f}{wall:>8.3f}{flag}")
    print(f"worst hepatrial line: {worst:.3f} s CPU (target {TARGET_CPU:.2f}); "
          f"{len(over)} over target")
    if args.check and over:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
