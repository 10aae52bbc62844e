"""``hepatrial`` in a subprocess for the tests that need a real server (``tests/web/test_serve.py``,
``tests/api/_served.py``, ``tests/browser/``): the CLI, a free port, ``hepatrial serve`` started
and waited for until it answers (else the test fails with the server's log), and stopped.

``benchmarks/bench_web.py`` keeps its own copy of the wait: it runs as a plain script (the
repository is not on its ``sys.path``) and reports a failed start with its exit status, not
with ``pytest.fail``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CLI = [sys.executable, "-c", "from hepatrial.cli import app; app()"]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a ``hepatrial`` subprocess: this process's without the test store's
    settings (``DJANGO_SETTINGS_MODULE``, ``HEPATRIAL_DATABASE_URL``, ``HEPATRIAL_DB``: the
    subprocess names its own store), plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DJANGO_SETTINGS_MODULE", "HEPATRIAL_DATABASE_URL", "HEPATRIAL_DB")}
    env.update(extra)
    return env


def cli(*args: str, stdin: str | None = None, env: Mapping[str, str] | None = None,
        cwd: Path | None = None, timeout: float = 120) -> str:
    """``hepatrial ARGS``; its standard output (fails the test on a non-zero exit)."""
    r = subprocess.run([*CLI, *args], env=dict(env) if env is not None else cli_env(),
                       capture_output=True, text=True, input=stdin, timeout=timeout, cwd=cwd)
    assert r.returncode == 0, f"hepatrial {' '.join(args)}:\n{r.stdout}\n{r.stderr}"
    return r.stdout


def free_port() -> int:
    """A TCP port of 127.0.0.1 free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else "(no log)"


def wait_until_serving(url: str | urllib.request.Request, proc: subprocess.Popen[Any],
                       log: Path, *, timeout: float = 60.0) -> tuple[int, Any]:
    """Poll ``url`` until the server answers: ``(status, headers)`` of its first HTTP answer
    (an error status included). Fails the test with the server's log when ``proc`` exits
    first or nothing answers within ``timeout`` s (``proc`` is left running: stop it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return int(resp.status), resp.headers
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.headers
        except (urllib.error.URLError, OSError):
            pass
        if proc.poll() is not None:
            pytest.fail(f"hepatrial serve exited ({proc.returncode}):\n{_log(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"hepatrial serve did not answer within {timeout:.0f} s:\n{_log(log)}")
        time.sleep(0.2)


def stop(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    """Stop a server (terminate; kill when it does not stop within ``timeout`` s)."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


@dataclass
class Running:
    """A started server: its ``base`` URL, process, log, and the first answer's status and
    headers."""

    base: str
    proc: subprocess.Popen[Any]
    log: Path
    status: int
    headers: Any


def start(args: Sequence[str], log: Path, *, env: Mapping[str, str] | None = None,
          path: str = "/login/", headers: Mapping[str, str] | None = None,
          timeout: float = 60.0, expect: int | None = 200) -> Running:
    """``hepatrial serve ARGS --port FREE`` (output to ``log``; ``env``: :func:`cli_env` by
    default), returned once ``path`` (with ``headers``) answers - with ``expect`` (``None``:
    any status), else the server is stopped and the test fails with its log."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen([*CLI, "serve", *args, "--port", str(port)],
                                env=dict(env) if env is not None else cli_env(), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        req = urllib.request.Request(base + path, headers=dict(headers or {}))
        status, got = wait_until_serving(req, proc, log, timeout=timeout)
        if expect is not None and status != expect:
            pytest.fail(f"hepatrial serve answered {path} with HTTP {status}, not {expect}:\n"
                        + _log(log))
    except BaseException:
        stop(proc)
        raise
    return Running(base, proc, log, status, got)


@contextmanager
def serving(args: Sequence[str], log: Path, **kwargs: Any) -> Iterator[Running]:
    """:func:`start` for the ``with`` block; stopped at its end."""
    server = start(args, log, **kwargs)
    try:
        yield server
    finally:
        stop(server.proc)


__all__ = ["CLI", "Running", "cli", "cli_env", "free_port", "serving", "start", "stop",
           "wait_until_serving"]
