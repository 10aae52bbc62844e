"""Every ``hepatrial`` command over a fuzz corpus: no traceback, no internal error (issue 8).

The commands are found by walking the command tree (a new command is fuzzed without being
named here). For each leaf command, hypothesis draws argument lists from the command's own
parameters: every option and argument gets values from a corpus of bad input - numbers
(``4_6``, Arabic-Indic digits, ``1e999``, ``inf``, ``1e300``, ``-5``), dates (``0000-01-01``,
``2024-02-30``, ``1800-01-01``, ``2034-01-01``), text (NUL and escape bytes, 300 characters,
``=HYPERLINK(...)``), ids and codes the store knows or nearly knows, and files: CSV files
whose header is made of the command's own columns and junk (repeated, missing, unknown
columns), whose rows are ragged or empty, whose bytes are UTF-8, UTF-8 with BOM, Latin-1 or
random; missing files, directories where a file is expected, output paths in folders that do
not exist. Commands run in-process (typer's ``CliRunner``) against one store (kharaziha2009,
an enrolled participant, a data manager, an investigator); what escapes a command is judged
by :func:`hepatrial.cli._guard.judge` exactly as the console entry point judges it, and the
test fails on an internal error or on a traceback in the output. Dangerous valid calls are
never drawn: ``serve`` and ``demo`` get only arguments their parser refuses (a valid ``serve``
would block, a valid ``demo`` takes a minute). Seeded (``derandomize``): the same cases on
every run. The number of cases per command is printed (``-s``) and asserted.
"""

from __future__ import annotations

import datetime as dt
import enum
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
import typer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hepatrial.cli import app
from hepatrial.cli._guard import judge

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "correct horse battery staple"

# ----------------------------------------------------------------------------- the corpus

BAD_NUMBERS = ["4_6", "١٢", "٣", "1e999", "-1e999", "inf", "-inf", "nan", "NaN", "1e300",
               "-1e300", "1e-320", "-5", "0", "-0", "200", "1e9", "1e12", "1,5", "1.2.3", "0x10",
               "9" * 400, "+", ".", "1e", "12abc", " 7 ", "٠.٥", "½", "1_000", "2.5e3",
               "3.14", "42", "-1"]
BAD_DATES = ["0000-01-01", "2024-02-30", "1800-01-01", "2034-01-01", "9999-12-31",
             "0001-01-01", "2024-1-5", "01/02/2024", "2024-01-15T10:00", "2024-13-01",
             "2008-01-20", "2024-01-15", "today", "-2024-01-01", "2024-01-01 00:00:00+25:00"]
BAD_TEXT = ["", " ", "a\x00b", "\x1b[31mred", "\t", "x" * 300, "=HYPERLINK(\"http://x\",\"y\")",
            "@SUM(A1)", "+cmd", "-rf", "'", '"', "\\", "ünïcødé", "\u202emirror", "\ud7ff",
            "NA", "null", "None", "true", "yes", "0", "😀" * 3, "a,b", "line\nbreak", "--help",
            "-", "--", "%s%s%n", "../../etc/passwd"]
KNOWN = ["participant_id", "visit", "value", "sid", "week", "meld", "0", "K01", "K02", "P01",
         "S01", "S99", "D0", "W1", "W2", "SCR", "UNS", "dm", "inv", "adm",
         "system", "alcie", "kharaziha2009", "mayo-pbc", "pbcseq", "bilirubin", "inr",
         "Blood bilirubin increased", "ALT increased", "mg/dL", "umol/L", "1", "B-K01", "1:1",
         "coordinator", "investigator", "data-manager", "admin", "monitor", "peripheral_vein",
         "Hepatic failure", "sepsis", "raise", "coerce", "exact", "kenward-roger", "slope",
         "categorical", "unstructured", "optn2002", "UTC", "Europe/London", "earlier"]
#: column names files may carry (every command's own vocabulary, plus near misses)
COLUMNS = ["participant", "visit", "analyte", "value", "unit", "date", "lab", "study_id", "site",
           "sex", "year_of_birth", "etiology", "screening_date", "consent_version",
           "consent_date", "enrolment_date", "cirrhosis", "bilirubin_umol_l", "bilirubin_mg_dl",
           "creatinine_umol_l", "creatinine_mg_dl", "albumin_g_l", "albumin_g_dl", "inr",
           "sodium_mmol_l", "age", "dialysis", "ascites", "encephalopathy", "ast_u_l",
           "platelets_10e9_l", "term", "uln", "lln", "baseline", "anticoagulated", "id", "day",
           "futime", "status", "trt", "bili", "albumin", "chol", "alk.phos", "protime",
           "platelet", "ast", "hepato", "spiders", "edema", "stage", "rownames", "batch",
           "test", "result", "analyst", "method", "sid", "week", "meld", "subject", "time",
           "row", "Value", "value.1", "", " value", "ctcae_grade", "meld_optn2002"]

numbers = st.sampled_from(BAD_NUMBERS) | st.integers(-10**20, 10**20).map(str) | st.floats(
    allow_nan=True, allow_infinity=True).map(repr)
dates = st.sampled_from(BAD_DATES) | st.dates().map(lambda d: d.isoformat())
texts = st.sampled_from(BAD_TEXT) | st.text(max_size=12)
known = st.sampled_from(KNOWN)
cells = st.one_of(numbers, dates, texts, known)
values = st.one_of(known, numbers, dates, texts)


#: good values per column (files are mostly well formed, so that the cases get past the
#: header into the rules of each row; a cell is a bad one from the corpus one time in five)
_INTS = st.integers(0, 400).map(str)
_DECIMALS = st.floats(0.05, 300, allow_nan=False).map(lambda x: f"{x:.2f}")
GOOD: dict[str, Any] = {
    **dict.fromkeys(("participant", "study_id", "sid", "subject", "participant_id"),
                    st.sampled_from(["K01", "K02", "P01", "1", "2"])),
    "id": st.sampled_from(["1", "2", "3", "101"]),
    "visit": st.sampled_from(["D0", "W1", "W2", "W4", "W24", "SCR", "UNS", "M6"]),
    "analyte": st.sampled_from(["bilirubin", "inr", "creatinine", "albumin", "sodium",
                                "platelets", "potassium", "meld_optn2002"]),
    "unit": st.sampled_from(["mg/dL", "umol/L", "µmol/L", "g/L", "g/dL", "1", "U/L", "10^9/L",
                             "mmol/L", "%", ""]),
    **dict.fromkeys(("date", "screening_date", "consent_date", "enrolment_date"),
                    st.dates(dt.date(2007, 1, 1), dt.date(2027, 1, 1)).map(
                        lambda d: d.isoformat()) | st.just("")),
    "sex": st.sampled_from(["F", "M", "f", "x"]),
    "etiology": st.sampled_from(["HBV", "HCV", "PBC", "alcohol", "other", "hbv"]),
    "site": st.sampled_from(["S01", "S02", "S99"]),
    "year_of_birth": st.integers(1890, 2030).map(str),
    "consent_version": st.sampled_from(["1.0", "2.0", ""]),
    "term": st.sampled_from(["Blood bilirubin increased", "ALT increased", "INR increased",
                             "Hypoalbuminemia", "Platelet count decreased",
                             "Creatinine increased", "Thrombocytopenia", "Anemia"]),
    **dict.fromkeys(("cirrhosis", "portal_vein_patent", "hcc", "active_infection", "pregnant",
                     "dialysis", "anticoagulated", "cholestatic_disease"),
                    st.sampled_from(["true", "false", "1", "0", "yes", ""])),
    "ascites": st.sampled_from(["none", "slight", "moderate", "0", "1", "1.0", ""]),
    "encephalopathy": st.sampled_from(["none", "grade_1_2", "grade_3_4", ""]),
    **dict.fromkeys(("status", "trt", "hepato", "spiders"), st.sampled_from(["0", "1", "2"])),
    "edema": st.sampled_from(["0", "0.5", "1", "0.0"]),
    "stage": st.sampled_from(["1", "2", "3", "4", "NA"]),
    **dict.fromkeys(("day", "futime", "week", "nominal_day", "actual_day", "time", "rownames"),
                    _INTS),
    "lab": st.sampled_from(["central", "", "local lab"]),
    "batch": st.sampled_from(["B-K01", "B1"]),
    "test": st.sampled_from(["cd73", "viability", "sterility", "endotoxin"]),
    "result": _DECIMALS | st.sampled_from(["no growth", "negative"]),
    "analyst": st.sampled_from(["qa1", "dm"]),
    "method": st.sampled_from(["flow", ""]),
    "arm": st.sampled_from(["single", "A", "B"]),
}
#: the columns of the files each command reads (the first ones are its required columns)
FILE_COLUMNS: dict[str, list[str]] = {
    "score": ["bilirubin_umol_l", "creatinine_umol_l", "inr", "albumin_g_l", "sodium_mmol_l",
              "bilirubin_mg_dl", "creatinine_mg_dl", "albumin_g_dl", "sex", "age", "dialysis",
              "ascites", "encephalopathy", "ast_u_l", "alt_u_l", "platelets_10e9_l"],
    "grade": ["term", "value", "unit", "uln", "lln", "baseline", "anticoagulated"],
    "import labs": ["participant", "visit", "analyte", "value", "unit", "date", "lab"],
    "import visits": ["rownames", "id", "futime", "status", "trt", "age", "sex", "day",
                      "ascites", "hepato", "spiders", "edema", "bili", "chol", "albumin",
                      "alk.phos", "ast", "platelet", "protime", "stage"],
    "import participants": ["study_id", "site", "sex", "year_of_birth", "etiology",
                            "screening_date", "consent_version", "consent_date",
                            "enrolment_date", "cirrhosis", "bilirubin_umol_l",
                            "creatinine_umol_l", "inr", "portal_vein_patent", "hcc",
                            "active_infection", "pregnant", "dialysis"],
    "import qc": ["batch", "test", "result", "analyst", "date", "unit", "method"],
}
for _name in ("stats paired", "stats lmm", "stats mmrm"):
    FILE_COLUMNS[_name] = ["participant_id", "visit", "value", "nominal_day", "analyte", "unit",
                           "arm", "sid", "week", "meld", "actual_day"]
_NUMERIC = st.one_of(_DECIMALS, _INTS)


def good_cell(column: str) -> Any:
    return GOOD.get(column, _NUMERIC)


@st.composite
def csv_bytes(draw: Any, columns: list[str] | None = None) -> bytes:
    """A CSV file: mostly the command's own columns with good rows, and then bad cells,
    repeated, unknown or missing columns, ragged rows, other encodings; or an empty or a
    random file."""
    kind = draw(st.sampled_from(["csv"] * 8 + ["empty", "random", "header"]))
    if kind == "empty":
        return b""
    if kind == "random":
        return draw(st.binary(max_size=200))
    if columns and draw(st.integers(0, 4)) > 0:
        header = list(columns) if draw(st.booleans()) else columns[: draw(
            st.integers(1, len(columns)))]
        if draw(st.integers(0, 5)) == 0:  # a repeated, an unknown or a dropped column
            how = draw(st.sampled_from(["dup", "junk", "drop"]))
            if how == "dup":
                header.append(draw(st.sampled_from(header)))
            elif how == "junk":
                header.append(draw(st.sampled_from(COLUMNS)))
            elif len(header) > 1:
                header.pop(draw(st.integers(0, len(header) - 1)))
    else:
        header = draw(st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=10))
    n = len(header)
    rows = []
    if kind != "header":
        for _ in range(draw(st.integers(0, 8))):
            width = n if draw(st.integers(0, 9)) else draw(st.sampled_from([n - 1, n + 1]))
            rows.append([draw(good_cell(header[j % n]) if draw(st.integers(0, 4)) else cells)
                         for j in range(max(width, 0))])
    sep = "," if draw(st.integers(0, 9)) else draw(st.sampled_from([";", "\t"]))

    def quote(c: str) -> str:
        return '"' + c.replace('"', '""') + '"' if any(x in c for x in ',;"\n\t\r') else c

    text = "\n".join(sep.join(quote(c) for c in r) for r in [header, *rows]) + "\n"
    enc = "utf-8" if draw(st.integers(0, 6)) else draw(st.sampled_from(
        ["utf-8-sig", "latin-1", "utf-16"]))
    data = text.encode(enc, errors="replace")
    if data and draw(st.integers(0, 6)) == 0:  # a stray Latin-1 byte, a NUL or a CR
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + draw(st.sampled_from([b"\xe9", b"\x00", b"\xff\xfe", b"\r"])) + \
            data[at:]
    return data


@st.composite
def toml_bytes(draw: Any) -> bytes:
    """A protocol or import-map file: a built-in one edited, or junk."""
    from hepatrial.protocol.loader import builtin_root

    root = builtin_root()
    name = draw(st.sampled_from(["kharaziha2009.toml", "mayo-pbc.toml", "mayo-pbc.map.toml"]))
    text = root.joinpath(name).read_text(encoding="utf-8")
    how = draw(st.sampled_from(["as is", "cut", "replace", "latin-1", "junk"]))
    if how == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif how == "replace":
        lines = text.splitlines()
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        key = lines[i].split("=")[0] if "=" in lines[i] else "x "
        new = draw(st.sampled_from(["-5", "1e999", '""', "[]", '"4_6"', '"=cmd"']))
        lines[i] = f"{key}= {new}"
        text = "\n".join(lines)
    elif how == "latin-1":
        return text.encode("utf-8") + "\n# Zürich\n".encode("latin-1")
    elif how == "junk":
        return draw(st.binary(max_size=100))
    return text.encode("utf-8")


@dataclass(frozen=True)
class InFile:
    """A path argument to materialise: a file with these bytes, or a special path."""

    kind: str  # "file", "missing", "dir", "nested"
    data: bytes = b""
    suffix: str = ".csv"


def in_paths(suffix: str = ".csv", content: Any = None, columns: list[str] | None = None
             ) -> Any:
    content = content if content is not None else csv_bytes(columns)
    return st.integers(0, 19).flatmap(lambda k: (
        content.map(lambda b: InFile("file", b, suffix)) if k < 18 else
        st.just(InFile("missing", suffix=suffix)) if k == 18 else st.just(InFile("dir"))))


out_paths = st.integers(0, 9).flatmap(lambda k: st.sampled_from(
    [InFile("out", suffix=s) for s in (".csv", ".parquet", ".html", ".pdf", ".json", ".zip")]
    if k < 7 else [InFile("out", suffix=s) for s in ("", ".xlsx")]
    + [InFile("dir"), InFile("nested")]))

#: option/argument names that are input files, output files or folders
IN_NAMES = {"input_csv", "infile", "file", "name_or_file", "protocol", "map_"}
OUT_NAMES = {"output", "out", "rejects", "db"}


#: good values of the text options that take a fixed set of words or a known kind of value
#: (checked by the command, not by the parser), so that most cases get past those checks
OPTION_VALUES: dict[str, Any] = {
    "errors": st.sampled_from(["raise", "coerce"]),
    "wilcoxon": st.sampled_from(["exact", "asymptotic"]),
    "zero_method": st.sampled_from(["wilcoxon", "pratt"]),
    "digits_rank": st.sampled_from(["9", "1", "none"]),
    "exact_max_n": st.sampled_from(["500", "0", "none"]),
    "random": st.sampled_from(["intercept", "slope"]),
    "time_type": st.sampled_from(["continuous", "categorical"]),
    "ddf": st.sampled_from(["kenward-roger", "satterthwaite", "wald"]),
    "covariance": st.sampled_from(["unstructured", "cs", "ar1", "toeplitz"]),
    "user": st.sampled_from(["dm", "inv", "adm"]),
    "day0": GOOD["date"],
}
#: good values by the option's type (typer's annotation): a number the parser takes
TYPE_VALUES: dict[Any, Any] = {
    int: _INTS,
    float: st.sampled_from(["0.95", "0.5", "37.2", "1"]),
}


def good_values(param: Any, command: str) -> Any:
    """Values the parser and the command's own option checks accept (``None``: no such set):
    the members of an enum option, :data:`OPTION_VALUES`, a number of the option's type, and
    for ``stats`` the column names of its files and the visit levels."""
    name = param.name or ""
    if command.startswith("stats"):
        if name in ("subject", "visit", "outcome", "time", "by", "group", "covariate"):
            return st.sampled_from(FILE_COLUMNS["stats paired"])
        if name in ("baseline", "reference"):
            return GOOD["visit"]
    if name in OPTION_VALUES:
        return OPTION_VALUES[name]
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return st.sampled_from([m.value for m in annotation])
    return TYPE_VALUES.get(annotation)


def value_for(param: Any, command: str = "") -> Any:
    name = param.name or ""
    if name in IN_NAMES:
        if name in ("name_or_file", "protocol", "map_"):
            return st.one_of(known, in_paths(".toml", toml_bytes()), texts)
        return in_paths(columns=FILE_COLUMNS.get(command))
    if name in OUT_NAMES:
        return out_paths if name != "db" else st.one_of(out_paths, texts)
    good = good_values(param, command)
    if good is None:
        return values
    return st.integers(0, 4).flatmap(lambda k: good if k else values)  # a bad one in five


@st.composite
def invocation(draw: Any, path: tuple[str, ...], cmd: Any) -> list[Any]:
    """An argument list for ``cmd``: each parameter given or not (required ones nearly
    always), values from the corpus; now and then an unknown option."""
    name = " ".join(path)
    args: list[Any] = list(path)
    for p in cmd.params:
        if p.name == "help":
            continue
        if getattr(p, "param_type_name", "") == "option":
            if getattr(p, "is_flag", False):
                if draw(st.booleans()):
                    args.append(p.opts[0])
                continue
            if draw(st.integers(0, 19)) < (19 if p.required else 8):
                args += [p.opts[0], draw(value_for(p, name))]
                if getattr(p, "multiple", False) and draw(st.booleans()):
                    args += [p.opts[0], draw(value_for(p, name))]
        elif draw(st.integers(0, 19)) < 19:
            args.append(draw(value_for(p, name)))
    if draw(st.integers(0, 39)) == 0:
        args.append(draw(st.sampled_from(["--bogus", "extra", "-x"])))
    return args


# ----------------------------------------------------------------------------- overrides

def serve_only_refused(path: tuple[str, ...], cmd: click.Command) -> Any:
    """``serve``: only what its parser refuses (a valid call would serve forever)."""
    return st.one_of(
        st.sampled_from(["abc", "4_6", "1e3", "", "80.5"]).map(lambda v: [*path, "--port", v]),
        st.sampled_from(["0", "-1", "x", "1.5"]).map(lambda v: [*path, "--threads", v]),
        st.just([*path, "--bogus"]), st.just([*path, "--port"]))


def demo_only_refused(path: tuple[str, ...], cmd: click.Command) -> Any:
    """``demo``: only what its parser refuses (a valid call rebuilds the demo: a minute)."""
    return st.one_of(
        st.sampled_from(["abc", "4_6", "1e999", "", "٣"]).map(lambda v: [*path, "--seed", v]),
        st.just([*path, "--bogus"]), st.just([*path, "--seed"]))


OVERRIDES: dict[str, Callable[[tuple[str, ...], click.Command], Any]] = {
    "serve": serve_only_refused,
    "demo": demo_only_refused,
}
#: cases per command: file-reading commands get more, the slow ones fewer
CASES: dict[str, int] = {
    "score": 60, "grade": 60, "stats paired": 40, "stats lmm": 30, "stats mmrm": 30,
    "import labs": 50, "import visits": 40, "import participants": 40, "import qc": 25,
    "protocol validate": 30, "protocol show": 20, "report": 4, "analyze": 6, "backup": 6,
    "restore": 10, "init": 8, "serve": 12, "demo": 6, "export dataset": 8,
    "export participants": 8, "example": 10, "sae form": 6, "product coa": 8,
    "product label": 8,
}
DEFAULT_CASES = 12
#: HEPATRIAL_FUZZ_SCALE=3 runs three times as many cases (e.g. before a release)
SCALE = float(os.environ.get("HEPATRIAL_FUZZ_SCALE", "1"))


def leaf_commands() -> list[tuple[tuple[str, ...], click.Command]]:
    """Every leaf command of the ``hepatrial`` tree, with its path."""
    root = typer.main.get_command(app)
    out = []

    def walk(cmd: click.Command, path: tuple[str, ...], ctx: click.Context) -> None:
        if hasattr(cmd, "list_commands"):  # a group (typer's own click classes)
            sub_ctx = click.Context(cmd, parent=ctx, info_name=path[-1] if path else None)
            for name in cmd.list_commands(sub_ctx):
                sub = cmd.get_command(sub_ctx, name)
                if sub is not None:
                    walk(sub, (*path, name), sub_ctx)
        else:
            out.append((path, cmd))

    walk(root, (), click.Context(root, info_name="hepatrial"))
    return out


# ----------------------------------------------------------------------------- running


def _materialise(args: list[Any], work: Path) -> list[str]:
    out = []
    for i, a in enumerate(args):
        if not isinstance(a, InFile):
            out.append(str(a))
            continue
        p = work / f"arg{i}{a.suffix}"
        if a.kind == "file":
            p.write_bytes(a.data)
        elif a.kind == "dir":
            p = work / f"dir{i}"
            p.mkdir()
        elif a.kind == "nested":
            p = work / f"no-such-folder{i}" / f"out{a.suffix or '.csv'}"
        out.append(str(p))
    return out


@dataclass
class Failure:
    command: str
    args: list[str]
    what: str


EXITS: dict[str, dict[int, int]] = {}


def run_case(runner: CliRunner, args: list[str], stdin: str, name: str = "") -> str | None:
    """Run one case; the problem (internal error or traceback) or None."""
    result = runner.invoke(app, args, input=stdin, catch_exceptions=True)
    codes = EXITS.setdefault(name, {})
    codes[result.exit_code] = codes.get(result.exit_code, 0) + 1
    text = result.output
    try:
        text += result.stderr
    except ValueError:  # stderr not captured separately
        pass
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        verdict = judge(exc)
        if verdict.internal:
            import traceback

            tb = "".join(traceback.format_exception(exc))
            return f"{verdict.message}\n{tb[-3000:]}"
    if "Traceback (most recent call last)" in text:
        return "traceback in the output:\n" + text[-3000:]
    if "internal error" in text:
        return "internal error in the output:\n" + text[-3000:]
    return None


@pytest.fixture()
def fuzz_store(transactional_db: Any, monkeypatch: Any, tmp_path: Path) -> Any:
    """The store every command runs against, in a scratch working directory (a command
    given a bare file name writes there). A ``serve`` call its parser accepts (click's INT
    reads ``4_6`` as 46) must not block the test: waitress and runserver are replaced by a
    function that returns at once."""
    import waitress
    from django.core import management

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(waitress, "serve", lambda *a, **k: None)
    real_call = management.call_command

    def call_command(name: str, *a: Any, **k: Any) -> Any:
        if name == "runserver":
            return None
        return real_call(name, *a, **k)

    monkeypatch.setattr(management, "call_command", call_command)
    from hepatrial.trials import services
    from tests.store.conftest import enrol

    services.install_protocol("kharaziha2009")
    enrol(services, "K01")
    services.create_user(username="dm", password=PASSWORD, role="data-manager")
    services.create_user(username="inv", password=PASSWORD, role="investigator",
                         site_codes=["S01"])
    services.create_user(username="adm", password=PASSWORD, role="admin")
    return services


def _fuzz(path: tuple[str, ...], cmd: click.Command, n: int, runner: CliRunner,
          failures: list[Failure]) -> int:
    name = " ".join(path)
    strategy = OVERRIDES.get(name, invocation)(path, cmd)
    count = 0
    seen: set[str] = set()

    @settings(max_examples=n, deadline=None, derandomize=True, database=None,
              phases=(Phase.generate,), suppress_health_check=list(HealthCheck))
    @given(args=strategy, stdin=st.sampled_from([PASSWORD + "\n", "wrong\n", "", "\x00\n"]))
    def case(args: list[Any], stdin: str) -> None:
        nonlocal count
        work = Path(tempfile.mkdtemp(prefix="hepatrial-fuzz-"))
        try:
            argv = _materialise(args, work)
            count += 1
            problem = run_case(runner, argv, stdin, name)
            if problem is not None:
                key = problem.splitlines()[0]
                if key not in seen:  # one report per distinct problem
                    seen.add(key)
                    failures.append(Failure(name, argv, problem))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    case()
    return count


def test_every_command_survives_the_fuzz_corpus(fuzz_store: Any, capsys: Any) -> None:
    runner = CliRunner()
    failures: list[Failure] = []
    counts: dict[str, int] = {}
    for path, cmd in leaf_commands():
        name = " ".join(path)
        n = max(1, round(CASES.get(name, DEFAULT_CASES) * SCALE))
        counts[name] = _fuzz(path, cmd, n, runner, failures)
    with capsys.disabled():
        print(f"\nfuzz cases per command ({sum(counts.values())} in all):")
        for name, n in counts.items():
            exits = ", ".join(f"{c}: {k}" for c, k in sorted(EXITS.get(name, {}).items()))
            print(f"  {name}: {n} (exit codes {exits})")
    assert set(counts) >= {"score", "grade", "import labs", "import visits",
                           "import participants", "stats paired", "stats lmm", "export dataset"}
    assert all(n >= min(round(CASES.get(k, DEFAULT_CASES) * SCALE), 5)
               for k, n in counts.items()), counts
    assert not failures, "\n\n".join(f"hepatrial {' '.join(f.args)!r}:\n{f.what}"
                                     for f in failures[:15]) + (
        f"\n\n... {len(failures)} failures in all" if len(failures) > 15 else "")


def test_leaf_commands_are_found() -> None:
    names = {" ".join(p) for p, _ in leaf_commands()}
    assert {"score", "grade", "import labs", "import visits", "import participants",
            "stats paired", "stats lmm", "stats mmrm", "export dataset", "audit verify",
            "serve", "demo"} <= names


def iter_names() -> Iterator[str]:  # pragma: no cover - helper for a manual run
    for p, _ in leaf_commands():
        yield " ".join(p)
