"""Reading stored rows as plain tuples, robustly: raw SQL pages and per-column encoders.

:func:`~hepatrial.trials.audit.verify.verify` reads millions of rows; building a Django object
per row and comparing field by field dominated its time. Here a column's *stored* values (as
the database driver returns them, with no Django conversion: on SQLite every column is read as
``+"column"`` so that the driver's declared-type converters, which raise on an invalid date,
do not run) are turned into the JSON text :func:`~hepatrial.trials.audit.chain.canonical_json`
gives the value the ORM would load — so the digests equal
:func:`~hepatrial.trials.audit.chain.row_digest` of the ORM object (a test checks every column
type on both engines) — and a value the ORM could not load, or would load as something else
than the column's type (an impossible date, a text in an integer column, a non-JSON text in a
JSON column, bytes that are not UTF-8), raises :class:`Unreadable` naming the reason, which
``verify`` reports as a problem of that row instead of stopping.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from django.db import connection, models
from django.db.utils import OperationalError

from hepatrial.trials.audit.chain import _canon, _dumps, _encode_str, json_text

__all__ = [
    "BadText",
    "Unreadable",
    "column_encoder",
    "column_formatter",
    "column_sql",
    "folded",
    "iso_datetimes",
    "json_encoder",
    "mostly_distinct",
    "pages",
    "python_value",
    "query",
    "text_parts",
    "texts_of",
]

#: rows per page read by :func:`pages`: small enough that a page's rows and the values made
#: from them stay in the CPU caches while they are digested (1,000 rows verify ~10 % faster
#: than 20,000, and keep the peak memory ~70 MiB lower); one short query per page
PAGE = 1_000

_TEXT = {"CharField", "TextField", "SlugField", "EmailField", "URLField",
         "GenericIPAddressField", "IPAddressField", "FilePathField", "FileField", "ImageField"}
_INT = {"AutoField", "BigAutoField", "SmallAutoField", "IntegerField", "BigIntegerField",
        "SmallIntegerField", "PositiveIntegerField", "PositiveBigIntegerField",
        "PositiveSmallIntegerField", "ForeignKey", "OneToOneField"}


class Unreadable(Exception):
    """A stored value the ORM cannot read as its column's type; ``str()`` is the reason."""


class BadText:
    """Bytes stored as text that are not UTF-8 (SQLite only; PostgreSQL checks encodings)."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def __repr__(self) -> str:
        return f"<not UTF-8: {self.raw[:40]!r}>"


def _describe(v: Any) -> str:
    if isinstance(v, BadText):
        return f"bytes that are not UTF-8 text ({v.raw[:40]!r})"
    text = repr(v)
    return f"{type(v).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def column_sql(alias: str, column: str) -> str:
    """The select expression of a stored column: on SQLite ``+alias."column"`` (no declared-type
    conversion by the driver), elsewhere the column itself."""
    qn = connection.ops.quote_name
    ref = f"{alias}.{qn(column)}" if alias else qn(column)
    return "+" + ref if connection.vendor == "sqlite" else ref


def _orm_converters(field: models.Field) -> Callable[[Any], Any]:
    """The ORM's own conversion of a stored value of ``field`` (backend + field converters)."""
    expr = field.get_col(field.model._meta.db_table)
    convs = [*connection.ops.get_db_converters(expr), *expr.get_db_converters(connection)]

    def convert(v: Any) -> Any:
        for c in convs:
            v = c(v, expr, connection)
        return v

    return convert


def _parse_datetime(v: Any) -> _dt.datetime:
    from django.utils.dateparse import parse_datetime

    if isinstance(v, _dt.datetime):
        d = v
    elif type(v) is str:
        try:
            d = _dt.datetime.fromisoformat(v)
        except ValueError:
            try:
                parsed = parse_datetime(v)
            except ValueError as exc:
                raise Unreadable(f"not a date and time: {v!r} ({exc})") from None
            if parsed is None:
                raise Unreadable(f"not a date and time: {v!r}") from None
            d = parsed
    else:
        raise Unreadable(f"not a date and time: {_describe(v)}")
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.UTC)
    return d


def _parse_date(v: Any) -> _dt.date:
    from django.utils.dateparse import parse_date

    if type(v) is _dt.date:
        return v
    if type(v) is str:
        try:
            return _dt.date.fromisoformat(v)
        except ValueError:
            try:
                parsed = parse_date(v)
            except ValueError as exc:
                raise Unreadable(f"not a date: {v!r} ({exc})") from None
            if parsed is None:
                raise Unreadable(f"not a date: {v!r}") from None
            return parsed
    raise Unreadable(f"not a date: {_describe(v)}")


def _parse_bool(v: Any) -> bool:
    if v is True or v is False:
        return v
    if type(v) is int and v in (0, 1):
        return bool(v)
    raise Unreadable(f"not a boolean: {_describe(v)}")


def _parse_json(v: Any) -> Any:
    if type(v) is str:
        try:
            return json.loads(v)
        except ValueError as exc:
            raise Unreadable(f"not JSON: {v[:60]!r} ({exc})") from None
    if isinstance(v, dict | list | int | float | bool) or v is None:
        return v
    raise Unreadable(f"not JSON: {_describe(v)}")


def _kind(field: models.Field) -> str:
    if field.is_relation and (field.many_to_one or field.one_to_one):
        return _kind(field.target_field)  # a foreign key is stored as the key it points to
    internal = field.get_internal_type()
    if internal in _TEXT:
        return "text"
    if internal in _INT:
        return "int"
    return {"FloatField": "float", "BooleanField": "bool", "DateField": "date",
            "DateTimeField": "datetime", "JSONField": "json"}.get(internal, "other")


def python_value(field: models.Field) -> Callable[[Any], Any]:
    """Stored value → the Python value the ORM loads (for messages), or :class:`Unreadable`."""
    kind = _kind(field)
    null = field.null

    def text(v: Any) -> Any:
        if type(v) is str:
            return v
        raise Unreadable(f"not text: {_describe(v)}")

    def integer(v: Any) -> Any:
        if type(v) is int:
            return v
        raise Unreadable(f"not an integer: {_describe(v)}")

    def real(v: Any) -> Any:
        if type(v) is float:
            return v
        raise Unreadable(f"not a number: {_describe(v)}")

    conv: Callable[[Any], Any]
    if kind == "text":
        conv = text
    elif kind == "int":
        conv = integer
    elif kind == "float":
        conv = real
    elif kind == "bool":
        conv = _parse_bool
    elif kind == "date":
        conv = _parse_date
    elif kind == "datetime":
        conv = _parse_datetime
    elif kind == "json":
        conv = _parse_json
    else:
        orm = _orm_converters(field)

        def conv(v: Any) -> Any:
            if isinstance(v, BadText):
                raise Unreadable(f"not text: {_describe(v)}")
            try:
                return orm(v)
            except Exception as exc:  # any conversion error of a foreign value
                raise Unreadable(f"cannot be read as {field.get_internal_type()}: "
                                 f"{_describe(v)} ({exc})") from None

    def read(v: Any) -> Any:
        if v is None:
            if null:
                return None
            raise Unreadable("NULL in a column that does not allow NULL")
        return conv(v)

    return read


def json_encoder(field: models.Field) -> Callable[[Any], str]:
    """Stored value → its JSON text in a digest (``json_text`` of the ORM's value), or
    :class:`Unreadable`. Fast paths for the common column types of both engines."""
    kind = _kind(field)
    null = field.null
    enc: Callable[[Any], str]
    if kind == "text":

        def enc(v: Any, _e: Any = _encode_str) -> str:
            if v.__class__ is str:
                return _e(v)  # type: ignore[no-any-return]
            raise Unreadable(f"not text: {_describe(v)}")
    elif kind == "int":

        def enc(v: Any) -> str:
            if v.__class__ is int:
                return str(v)
            raise Unreadable(f"not an integer: {_describe(v)}")
    elif kind == "float":

        def enc(v: Any) -> str:
            if v.__class__ is float:
                return '"' + repr(v) + '"'
            raise Unreadable(f"not a number: {_describe(v)}")
    elif kind == "bool":

        def enc(v: Any) -> str:
            return "true" if _parse_bool(v) else "false"
    elif kind == "date":

        def enc(v: Any) -> str:
            return '"' + _parse_date(v).isoformat() + '"'
    elif kind == "datetime":

        def enc(v: Any) -> str:
            return '"' + _parse_datetime(v).astimezone(_dt.UTC).isoformat() + '"'
    elif kind == "json":

        def enc(v: Any) -> str:
            return _dumps(_canon(_parse_json(v)))
    else:
        value = python_value(field)

        def enc(v: Any) -> str:
            return json_text(value(v))

    if null:

        def nullable(v: Any, _enc: Any = enc) -> str:
            return "null" if v is None else _enc(v)

        return nullable

    def not_null(v: Any, _enc: Any = enc) -> str:
        if v is None:
            raise Unreadable("NULL in a column that does not allow NULL")
        return _enc(v)

    return not_null


_BOOL_TEXT = {0: "false", 1: "true"}  # also True/False (equal to 1/0)
_FLOAT_TEXT = '"%r"'.__mod__


def column_encoder(field: models.Field) -> Callable[[Sequence[Any]], list[str]]:
    """``encode(values) -> [JSON text, ...]`` of a whole column (one page): equal to
    ``[json_encoder(field)(v) for v in values]``, but when every value has the column's usual
    stored type the work is done by C-level ``map`` (the digests' hot path); otherwise (NULLs,
    foreign types) value by value, raising :class:`Unreadable` like :func:`json_encoder`."""
    from hepatrial.trials.audit.chain import encode_column

    kind = _kind(field)
    one = json_encoder(field)
    fast: Callable[[Any], str] | None = None
    want: frozenset[type] = frozenset()
    if kind == "text":
        fast, want = _encode_str, frozenset({str})
    elif kind == "int":
        fast, want = str, frozenset({int})
    elif kind == "float":
        fast, want = _FLOAT_TEXT, frozenset({float})

    def encode(values: Sequence[Any]) -> list[str]:
        types = set(map(type, values))
        if fast is not None:
            if types <= want:
                return list(map(fast, values))
            if field.null and types <= want | {type(None)}:
                f = fast
                return [f(v) if v is not None else "null" for v in values]
        elif kind == "bool" and types <= {int, bool} and set(values) <= {0, 1}:
            return list(map(_BOOL_TEXT.__getitem__, values))
        return encode_column(one, values)

    return encode


#: the characters ``json.encoder.encode_basestring`` escapes (a text without any is quoted as
#: it is)
_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')

#: The text of one column of a page of rows, for :func:`texts_of`: a tuple of parts, each
#: either a ``str`` (the same text on every row) or an iterable of one text per row
Parts = tuple[str | Iterable[str], ...]


def texts_of(parts: Sequence[str | Iterable[str]], n: int) -> Iterable[str]:
    """The ``n`` texts made by concatenating ``parts`` (a ``str``: the same on every row; an
    iterable: one text per row, ``n`` of them), joined in C (``"".join`` of each row's
    pieces: no template to parse per row)."""
    its: list[Iterable[str]] = []
    lit = ""
    for p in parts:
        if isinstance(p, str):
            lit += p
        else:
            if lit:
                its.append(itertools.repeat(lit))
                lit = ""
            its.append(p)
    if not its:
        return [lit] * n
    if lit:
        its.append(itertools.repeat(lit))
    return map("".join, zip(*its, strict=False))  # the repeated texts never end


def folded(texts: list[str], before: str = "", after: str = "") -> Parts:
    """The parts of ``before + text + after`` for each of a page's texts: one text when all
    are the same."""
    if texts:
        first = texts[0]
        if texts[-1] == first and texts.count(first) == len(texts):
            return (before + first + after,)
    return before, texts, after


_NAIVE = frozenset({None})
_TZINFO = operator.attrgetter("tzinfo")
_TO_UTC = operator.methodcaller("astimezone", _dt.UTC)


def iso_datetimes(values: Sequence[Any]) -> tuple[list[str], str] | None:
    """``(texts, suffix)`` of a page of stored date-times such that ``text + suffix`` is the
    text :func:`json_encoder` gives each one, without its quotes (UTC ISO 8601), computed in
    C: when every value is a text ``datetime.fromisoformat`` reads as a naive date-time
    (SQLite: stored in UTC), or every value is an aware ``datetime`` (PostgreSQL). ``None``
    otherwise: the values are then encoded one by one."""
    types = set(map(type, values))
    if types == {str}:
        try:
            parsed = list(map(_dt.datetime.fromisoformat, values))
        except ValueError:
            return None
        if set(map(_TZINFO, parsed)) != _NAIVE:
            return None
        return list(map(_dt.datetime.isoformat, parsed)), "+00:00"
    if types == {_dt.datetime} and None not in set(map(_TZINFO, values)):
        return list(map(_dt.datetime.isoformat, map(_TO_UTC, values))), ""
    return None


def _iso_dates(values: Sequence[Any]) -> list[str] | None:
    """The ISO texts of a page of stored dates (texts ``date.fromisoformat`` reads, or
    ``date`` objects), as :func:`json_encoder` gives them without quotes; else ``None``."""
    types = set(map(type, values))
    if types == {str}:
        try:
            return list(map(_dt.date.isoformat, map(_dt.date.fromisoformat, values)))
        except ValueError:
            return None
    if types == {_dt.date}:
        return list(map(_dt.date.isoformat, values))
    return None


def mostly_distinct(values: Sequence[Any]) -> bool:
    """True unless the values repeat enough for :func:`encode_column`'s cache to win."""
    try:
        return len(set(values)) * 4 >= len(values)
    except TypeError:  # pragma: no cover - unhashable stored values
        return False


def text_parts(values: Sequence[str]) -> Parts:
    """The parts of a page of texts (every value a ``str``) JSON-quoted as
    :func:`json_encoder` quotes them: one text when all are the same, the values as they are
    between quotes when none needs an escape, else their JSON texts."""
    first = values[0]
    if values[-1] == first and values.count(first) == len(values):
        return (_encode_str(first),)
    if not _NEEDS_ESCAPE.search("".join(values)):
        return '"', values, '"'
    return (list(map(_encode_str, values)),)


def column_formatter(field: models.Field) -> Callable[[Sequence[Any]], Parts]:
    """``format(values) -> parts`` of a whole column (one page) for :func:`texts_of`: the
    texts :func:`json_encoder` gives the values. When every value has the column's usual
    stored type, the texts are made in C from the values as they are (``str`` of an integer,
    ``repr`` of a float between quotes, a text that needs no JSON escape between quotes;
    integers that repeat much: each distinct one's text once; date-times and dates that
    mostly differ: :func:`iso_datetimes`); otherwise the JSON texts :func:`column_encoder`
    gives. A column with the same value on every row (an integer, a text or a JSON text) is
    one text. Raises :class:`Unreadable` like :func:`json_encoder`."""
    encode = column_encoder(field)
    one = json_encoder(field)
    kind = _kind(field)
    want = {"int": int, "float": float, "text": str}.get(kind)

    def dates(values: Sequence[Any]) -> Parts:
        # equal stored dates / date-times have equal texts (equal aware date-times are the
        # same instant); a value that cannot be read raises Unreadable: the caller goes value
        # by value
        first = values[0]
        if values[-1] == first and values.count(first) == len(values):
            return (one(first),)
        distinct = set(values)
        if len(distinct) * 4 < len(values):  # much repeated: each one's text once
            text = {v: one(v) for v in distinct}
            return (list(map(text.__getitem__, values)),)
        if kind == "datetime":
            made = iso_datetimes(values)
            if made is not None:
                return '"', made[0], made[1] + '"'
        else:
            days = _iso_dates(values)
            if days is not None:
                return '"', days, '"'
        return (list(map(one, values)),)

    def fmt(values: Sequence[Any]) -> Parts:
        if kind in ("date", "datetime") and values:
            return dates(values)
        if want is not None and values and set(map(type, values)) == {want}:
            if want is str:
                return text_parts(values)
            if want is float:  # (never one text: 0.0 == -0.0, but their texts differ)
                return '"', map(repr, values), '"'
            first = values[0]
            if values[-1] == first and values.count(first) == len(values):
                return (str(first),)
            distinct = set(values)
            if len(distinct) * 4 < len(values):  # much repeated: each one's text once
                text = {v: str(v) for v in distinct}
                return (map(text.__getitem__, values),)
            return (map(str, values),)
        return folded(encode(values))

    return fmt


# ------------------------------------------------------------------------------- raw queries
def _decode_row(row: Sequence[Any]) -> tuple[Any, ...]:
    out = []
    for v in row:
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                v = BadText(v)
        out.append(v)
    return tuple(out)


def query(sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run a SELECT and return its rows. On SQLite, text that is not UTF-8 makes the driver
    refuse the whole result; the query is then read again with text as bytes, and each such
    value becomes a :class:`BadText` (the encoders report it), the others are decoded."""
    with connection.cursor() as cur:
        try:
            cur.execute(sql, list(params))
            rows = cur.fetchall()
            if type(rows) is list and (not rows or type(rows[0]) is tuple):
                return rows  # the drivers' rows are tuples already: no copy
            return [tuple(r) for r in rows]
        except OperationalError as exc:
            if connection.vendor != "sqlite" or "decode" not in str(exc).lower():
                raise
    raw = connection.connection
    old = raw.text_factory
    raw.text_factory = bytes
    try:
        with connection.cursor() as cur:
            cur.execute(sql, list(params))
            rows = cur.fetchall()
    finally:
        raw.text_factory = old
    return [_decode_row(r) for r in rows]


def pages(select: str, source: str, key: str, *, where: str = "",
          params: Sequence[Any] = (), page: int = PAGE, key_selected: bool = False
          ) -> Iterator[list[tuple[Any, ...]]]:
    """Rows of ``SELECT key, select FROM source [WHERE where]`` in pages of ``page`` rows,
    ordered by ``key`` (a unique column; keyset pagination, so memory stays flat on every
    engine and each page is one short query). ``key_selected``: the first column of
    ``select`` is the key's value, so ``key`` is not selected again (``SELECT select ...``)."""
    last: Any = None
    first = True
    columns = select if key_selected else f"{key}, {select}"
    while True:
        cond = [f"({where})"] if where else []
        args = list(params)
        if not first:
            cond.append(f"{key} > %s")
            args.append(last)
        sql = (f"SELECT {columns} FROM {source}"
               + (" WHERE " + " AND ".join(cond) if cond else "")
               + f" ORDER BY {key} LIMIT {int(page)}")
        rows = query(sql, args)
        if not rows:
            return
        yield rows
        if len(rows) < page:
            return
        last, first = rows[-1][0], False
