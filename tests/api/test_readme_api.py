"""The README's REST API example (the ``sh`` block under "REST API") runs as written against a
real ``hepatrial serve`` on the store the README's "Running a trial" block builds."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.api._served import _env, run, serve, stop
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def readme_block() -> str:
    """The ``sh`` block of the README's "REST API" subsection."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"^### REST API\n.*?^```sh\n(.*?)^```", text, re.S | re.M)
    assert m, "README has no REST API sh block"
    return m.group(1)


def _documents(text: str) -> list[Any]:
    """The JSON documents printed one after the other (curl -s adds no newline)."""
    dec, out, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        doc, i = dec.raw_decode(text, i)
        out.append(doc)
    return out


def test_the_readme_curl_example_runs(tmp_path: Path) -> None:
    block = readme_block()
    assert "uv run hepatrial user token alice" in block and "curl" in block
    shutil.copytree(REPO_ROOT / "examples", tmp_path / "examples")
    env = _env()
    for args in (("init", "--protocol", "kharaziha2009"),
                 ("import", "participants", "examples/participants.csv"),
                 ("import", "labs", "examples/labs_long.csv")):
        run(env, *args, cwd=tmp_path)
    r = subprocess.run([str(BIN / "hepatrial"), "user", "add", "alice", "--site", "S01", "--role",
                        "coordinator", "--password-stdin"], input="correct horse battery staple\n",
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    proc, base = serve(env, ["--db", str(tmp_path / "hepatrial.sqlite3")],
                       tmp_path / "serve.log")
    try:
        script = re.sub(r"\buv run (\S+)", lambda m: str(BIN / m.group(1)), block)
        script = script.replace("http://127.0.0.1:8000", base)
        r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=300)
    finally:
        stop(proc)
    assert r.returncode == 0, r.stderr
    visits, created = _documents(r.stdout)
    w1 = next(v for v in visits if v["code"] == "W1")
    assert w1["actual_date"] == "2007-04-16"
    assert {lab["analyte"]: lab["value_as_entered"] for lab in w1["labs"]} == {
        "albumin": "30", "bilirubin": "45", "creatinine": "142", "inr": "2.13"}
    assert created["participant"] == "KH01" and created["visit"] == "W1"
    assert [(x["analyte"], x["value_as_entered"], x["unit"]) for x in created["items"]] == [
        ("sodium", "138", "mmol/L"), ("platelets", "92.0", "10^9/L")]
