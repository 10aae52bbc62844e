"""Load and validate protocol TOML files (built-in or user-supplied).

Validation runs in two phases so that every problem is reported with its TOML key path:

1. structure (pydantic): types, required/unknown keys, field constraints such as
   ``window_upper >= 0``;
2. cross-field rules (:func:`hepatrial.protocol.models.protocol_rule_issues`), only when the
   structure is valid.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from hepatrial import errors as _errors
from hepatrial.protocol.models import Issue, Protocol, protocol_rule_issues

BUILTIN_PACKAGE = "hepatrial.protocol"
BUILTIN_DIR = "builtin"
MAP_SUFFIX = ".map.toml"


class ProtocolError(_errors.ProtocolError):
    """A protocol (or import map) file is invalid; ``issues`` lists every problem."""

    def __init__(self, source: str, issues: Iterable[Issue]) -> None:
        self.source = source
        self.issues = list(issues)
        lines = "\n".join(f"  {i}" for i in self.issues)
        super().__init__(f"{source}: {len(self.issues)} error(s)\n{lines}")


class ProtocolNotFoundError(_errors.NotFoundError):
    """Neither a built-in protocol name nor an existing file."""


def format_loc(loc: Iterable[Any]) -> str:
    """Pydantic error location → TOML key path: ``('visits', 2, 'code')`` → ``visits[2].code``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def issues_from_validation_error(exc: ValidationError) -> list[Issue]:
    """One :class:`Issue` per pydantic error, with readable reasons."""
    issues = []
    for err in exc.errors(include_url=False):
        typ = err["type"]
        msg = err["msg"]
        if typ == "extra_forbidden":
            msg = "unknown key"
        elif typ == "missing":
            msg = "required key is missing"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        inp = err.get("input")
        if typ not in ("extra_forbidden", "missing", "value_error") and not isinstance(
            inp, dict | list
        ):
            msg += f" (got {inp!r})"
        issues.append(Issue(format_loc(err["loc"]), msg))
    return issues


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """Parse TOML text; a syntax error becomes a :class:`ProtocolError` with the line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProtocolError(source, [Issue("(toml)", f"TOML syntax error: {exc}")]) from None


def validate_data(
    data: dict[str, Any], source: str = "<data>"
) -> tuple[Protocol | None, list[Issue]]:
    """Validate a parsed protocol mapping. Returns (protocol or None, issues)."""
    try:
        proto = Protocol.model_validate(data, context={"skip_rules": True})
    except ValidationError as exc:
        return None, issues_from_validation_error(exc)
    issues = protocol_rule_issues(proto)
    return (None, issues) if issues else (proto, [])


def validate_text(text: str, source: str = "<text>") -> tuple[Protocol | None, list[Issue]]:
    """Validate protocol TOML text. Returns (protocol or None, issues)."""
    try:
        data = parse_toml(text, source)
    except ProtocolError as exc:
        return None, exc.issues
    return validate_data(data, source)


def read_text_file(p: Path) -> str:
    """The text of a protocol or map file; a file that is not UTF-8 is a
    :class:`ProtocolError` naming the line and byte (never a UnicodeDecodeError)."""
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        from hepatrial.textrules import utf8_problem

        raise ProtocolError(str(p), [Issue("(file)", utf8_problem(p) or "not UTF-8")]) from None


def validate_file(path: str | Path) -> tuple[Protocol | None, list[Issue]]:
    """Validate a protocol TOML file. Returns (protocol or None, issues)."""
    p = Path(path)
    try:
        text = read_text_file(p)
    except ProtocolError as exc:
        return None, exc.issues
    return validate_text(text, str(p))


def builtin_root() -> Any:
    """Traversable of the package folder holding the built-in TOML files."""
    return resources.files(BUILTIN_PACKAGE).joinpath(BUILTIN_DIR)


def list_builtin() -> list[str]:
    """Names of the built-in protocols, sorted (``['kharaziha2009', 'mayo-pbc']``)."""
    names = [
        f.name[: -len(".toml")]
        for f in builtin_root().iterdir()
        if f.name.endswith(".toml") and not f.name.endswith(MAP_SUFFIX)
    ]
    return sorted(names)


def builtin_path(name: str) -> Any:
    """Traversable of the built-in protocol file ``<name>.toml`` (ProtocolNotFoundError if none)."""
    f = builtin_root().joinpath(f"{name}.toml")
    if not f.is_file():
        raise ProtocolNotFoundError(
            f"no built-in protocol {name!r} (built-in: {', '.join(list_builtin())})"
        )
    return f


@cache
def _load_builtin(name: str) -> Protocol:
    f = builtin_path(name)
    proto, issues = validate_text(f.read_text(encoding="utf-8"), f"builtin:{name}")
    if proto is None:
        raise ProtocolError(f"builtin:{name}", issues)
    return proto


def load_protocol(name_or_path: str | Path) -> Protocol:
    """Load a protocol by built-in name (``"kharaziha2009"``) or from a TOML file path.

    A string is treated as a path when it names an existing file or ends in ``.toml``.

    Raises:
        ProtocolNotFoundError: unknown name / missing file.
        ProtocolError: the file is invalid (``.issues`` has every problem with its key path).
    """
    if isinstance(name_or_path, Path) or str(name_or_path).endswith(".toml") or Path(
        str(name_or_path)
    ).is_file():
        p = Path(name_or_path)
        if not p.is_file():
            raise ProtocolNotFoundError(f"protocol file {str(p)!r} does not exist")
        proto, issues = validate_file(p)
        if proto is None:
            raise ProtocolError(str(p), issues)
        return proto
    return _load_builtin(str(name_or_path))


def load_model_file(path: str | Path, model: type[BaseModel]) -> BaseModel:
    """Load a TOML file into any pydantic model, raising :class:`ProtocolError` with key paths."""
    p = Path(path)
    data = parse_toml(read_text_file(p), str(p))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError(str(p), issues_from_validation_error(exc)) from None
