"""Every command block of README.md runs as written, top to bottom, as on a fresh clone.

The blocks run in order in one temporary folder that holds a copy of the repository's
``examples/`` (what a fresh clone has beside the commands), so that later blocks see what earlier
ones made (``hepatrial.sqlite3``, ``pbcseq.csv``), as for a reader who follows the README.

* ``bash`` blocks: each line runs in ``bash -o pipefail -c LINE`` (comments and pipes as
  written) and must exit 0. ``uv run NAME`` runs ``NAME`` from the environment ``uv run`` made for
  this test session (``.venv/bin``); ``HEPATRIAL_DATABASE_URL`` is unset, so the stores are the
  SQLite files the lines name.
* ``uv run pytest`` is not run: this test is part of it (``tests/test_readme.py`` checks that CI
  runs that command).
* ``hepatrial serve`` is started, must answer ``GET /admin/login/`` on its port, and is stopped
  (on a free port given with ``--port`` when the README's port is in use on this machine).
* ``python`` blocks: each line runs in one namespace; a line ending in ``# VALUE`` must give
  ``VALUE``.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.S | re.M)
NOT_RUN = {"uv run pytest": "the test suite itself (this test is part of it)"}


def blocks() -> list[tuple[str, str, str]]:
    """``(section heading, language, text)`` of every command block, in README order."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    out = []
    for m in BLOCK.finditer(text):
        heads = re.findall(r"^## (.+)$", text[: m.start()], re.M)
        out.append((heads[-1] if heads else "top", m.group(1), m.group(2)))
    return out


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _as_run(line: str) -> str:
    """``uv run NAME ...`` -> the session environment's ``NAME`` (every occurrence)."""
    return re.sub(r"\buv run (\S+)", lambda m: str(BIN / m.group(1)), line)


def _free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary folder with the repository's examples, as in a fresh clone."""
    root = tmp_path_factory.mktemp("readme")
    shutil.copytree(REPO_ROOT / "examples", root / "examples")
    return root


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    drop = ("HEPATRIAL_DATABASE_URL", "DJANGO_SETTINGS_MODULE")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _serve(line: str, cwd: Path, env: dict[str, str]) -> None:
    m = re.search(r"--port[ =](\d+)", line)
    port = int(m.group(1)) if m else 8000
    cmd = _as_run(line.split("#", 1)[0])
    if not _free(port):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = re.sub(r"--port[ =]\d+", "", cmd) + f" --port {port}"
    proc = subprocess.Popen(["bash", "-c", f"exec {cmd}"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, status, last = time.monotonic() + 120, None, ""
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/",
                                            timeout=5) as r:
                    status = r.status
                    break
            except OSError as exc:
                last = str(exc)
                time.sleep(0.5)
        assert status == 200, f"{line}: no answer on port {port} ({last})"
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
            out, _ = proc.communicate()
    assert status == 200, out


def _bash(text: str, cwd: Path, env: dict[str, str]) -> None:
    for line in _lines(text):
        command = line.split("#", 1)[0].strip()
        if command in NOT_RUN:
            continue
        if re.search(r"\bhepatrial serve\b", line):
            _serve(line, cwd, env)
            continue
        r = subprocess.run(["bash", "-o", "pipefail", "-c", _as_run(line)], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, f"README line failed (exit {r.returncode}):\n{line}\n" \
                                  f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


def _python(text: str, cwd: Path) -> None:
    ns: dict[str, Any] = {}
    old = os.getcwd()
    os.chdir(cwd)
    try:
        for line in text.splitlines():
            if not line.strip():
                continue
            code, _, expected = line.partition("#")
            if expected.strip():
                got = eval(compile(code.strip(), "README.md", "eval"), ns)
                want = ast.literal_eval(expected.strip())
                assert float(got) == pytest.approx(float(want), abs=0), line
            else:
                exec(compile(code, "README.md", "exec"), ns)
    finally:
        os.chdir(old)


BLOCKS = blocks()


def test_the_readme_has_the_blocks_it_should() -> None:
    sections = [b[0] for b in BLOCKS]
    assert sections[0] == "Quickstart" and "Running a trial" in sections
    trial = next(t for s, lang, t in BLOCKS if s == "Running a trial")
    for needed in ("init --protocol kharaziha2009", "protocol show", "import participants",
                   "import labs examples/labs_long.csv --dry-run", "export dataset",
                   "audit verify", "init --protocol mayo-pbc --db pbc.sqlite3",
                   "example pbcseq -o pbcseq.csv", "--password-stdin"):
        assert needed in trial, needed
    assert "| uv run hepatrial user add" in trial  # the password through a pipe


@pytest.mark.parametrize(("section", "lang", "text"), BLOCKS,
                         ids=[f"{i}-{s}" for i, (s, _l, _t) in enumerate(BLOCKS)])
def test_block_runs_as_written(section: str, lang: str, text: str, workspace: Path,
                               env: dict[str, str]) -> None:
    if lang == "bash":
        _bash(text, workspace, env)
    else:
        _python(text, workspace)
