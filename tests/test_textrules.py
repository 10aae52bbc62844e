"""Text rules: control characters, lengths, formula-injection identifiers, CSV cells."""

from __future__ import annotations

import pytest

from hepatrial.textrules import csv_cell, identifier_problem, text_problem


@pytest.mark.parametrize(("text", "reason"), [
    ("=HYPERLINK(\"http://x\")", "starts with '='"),
    ("+1", "starts with '+'"),
    ("-K01", "starts with '-'"),
    ("@SUM(A1)", "starts with '@'"),
    ("\tK01", "blanks at the start"),
    (" K01", "blanks at the start"),
    ("K\x0001", "control character NUL (U+0000)"),
    ("K01\n", "blanks at the start or end"),
    ("", "is empty"),
    ("x" * 41, "41 characters long; at most 40"),
])
def test_identifiers_refused(text: str, reason: str) -> None:
    problem = identifier_problem(text, 40)
    assert problem is not None and reason in problem


def test_plain_identifiers_pass() -> None:
    assert identifier_problem("K01", 40) is None
    assert identifier_problem("MAYO-001", 40) is None
    assert identifier_problem("Zürich-07", 40) is None


def test_text_fields() -> None:
    assert text_problem("Laboratoire Lyon", 200) is None
    assert "300 characters long; at most 200" in (text_problem("a" * 300, 200) or "")
    assert "control character" in (text_problem("a\x1bb") or "")
    assert text_problem("line 1\nline 2", multiline=True) is None
    assert "LINE FEED (U+000A)" in (text_problem("line 1\nline 2") or "")


def test_csv_cells_are_neutralised_but_numbers_are_not() -> None:
    assert csv_cell("=HYPERLINK(\"http://evil\")") == "'=HYPERLINK(\"http://evil\")"
    assert csv_cell("@cmd") == "'@cmd"
    assert csv_cell("-3.5") == "-3.5"
    assert csv_cell("+2") == "+2"
    assert csv_cell("K01") == "K01"
    assert csv_cell(-3) == -3
