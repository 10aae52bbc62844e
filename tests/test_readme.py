"""The README's promises: its first two commands, and CI running the same test command."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT


def _commands() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    block = re.search(r"## Quickstart.*?```bash\n(.*?)```", text, re.S)
    assert block, "README has no Quickstart bash block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_quickstart_has_main_job_then_tests() -> None:
    cmds = _commands()
    assert len(cmds) >= 2
    assert cmds[0].startswith("uv run hepatrial ")
    assert cmds[1] == "uv run pytest"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    runs = [line.strip() for line in ci if line.strip() and not line.strip().startswith("#")]
    assert runs[-1] == _commands()[1]
