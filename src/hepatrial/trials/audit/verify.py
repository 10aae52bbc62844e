"""Verification of the audit trail: ledger chain, history digests, live rows, auth tables.

Columnar and streaming: rows are read as plain tuples in pages of
:data:`~hepatrial.trials.audit.columnar.PAGE` rows (keyset pagination, flat memory on both
engines), digests are computed with the importer's template digests
(:func:`~hepatrial.trials.audit.chain.digest_template`), the ledger entry of each history row
comes from a join, and each live table is compared with its latest history rows in one SQL
statement that returns only the rows that differ. A stored value that cannot be read (an
impossible date, a non-JSON text in a JSON column, bytes that are not UTF-8, a NULL where none
is allowed) is a problem of its row (``unreadable``), never an exception; a check that fails
as a whole (e.g. a table dropped) is one ``unreadable`` problem naming the check.
"""

from __future__ import annotations

import gc
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.contrib.auth import get_permission_codename
from django.db import connection, models, transaction

from hepatrial.trials.audit.base import audited_models
from hepatrial.trials.audit.chain import (
    _HEX,
    GENESIS,
    _canon,
    _history_model,
    _ledger,
    _tracked_pk_attname,
    chain_hash,
    digest_template,
    encode_column,
    entry_hash,
)
from hepatrial.trials.audit.columnar import (
    PAGE,
    Parts,
    Unreadable,
    column_formatter,
    column_sql,
    folded,
    iso_datetimes,
    json_encoder,
    mostly_distinct,
    pages,
    python_value,
    query,
    text_parts,
    texts_of,
)

__all__ = ["Problem", "expected_permissions", "history_digests", "verify"]


@dataclass(frozen=True)
class Problem:
    """One integrity problem found by :func:`verify`.

    ``kind`` is one of: ``ledger_gap``, ``ledger_edited``, ``chain_broken``, ``head_mismatch``,
    ``history_missing``, ``history_edited``, ``history_unledgered``, ``live_edited``,
    ``live_unaudited``, ``live_deleted``, ``live_resurrected``, ``permission_edited``,
    ``unreadable`` (and, from :mod:`~hepatrial.trials.audit.checkpoint`,
    ``checkpoint_missing``, ``checkpoint_mismatch``).
    """

    kind: str
    model: str
    object_pk: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.model} {self.object_pk}: {self.detail}"


def _qn(name: str) -> str:
    return str(connection.ops.quote_name(name))


def _same() -> str:
    return "IS" if connection.vendor == "sqlite" else "IS NOT DISTINCT FROM"


@contextmanager
def _consistent_read() -> Iterator[None]:
    """One snapshot for the whole verification on PostgreSQL (REPEATABLE READ, read only),
    when not already inside a transaction. SQLite: each query reads committed data."""
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        with transaction.atomic():
            with connection.cursor() as cur:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield
        return
    yield


def _stage(problems: list[Problem], model: str, what: str, check: Callable[[], None]) -> None:
    """Run one check; if it fails as a whole, record that as a problem and go on."""
    try:
        if connection.in_atomic_block:
            with transaction.atomic():  # a savepoint: PostgreSQL can go on after an error
                check()
        else:
            check()
    except Exception as exc:  # verify lists problems, it never stops at one
        problems.append(Problem("unreadable", model, "-",
                                f"{what} could not be checked: {type(exc).__name__}: {exc}"))


def verify(expected_head: str | None = None, *, page: int = PAGE) -> list[Problem]:
    """Recompute the ledger chain, the history digests and the live rows; list every problem.

    Checks, in order:

    1. ledger: ``seq`` runs 1..n without gaps, each ``prev_hash`` is the previous
       ``chain_hash`` (both in SQL), and each ``chain_hash`` recomputes in its format (format 2
       covers every column, including ``history_type`` and ``recorded_at``; a format-1 entry
       after a format-2 one is a downgrade) (``ledger_gap``, ``chain_broken``,
       ``ledger_edited``); optionally the last hash equals ``expected_head``
       (``head_mismatch``). Each entry is read once, with its history row (step 2);
    2. every ledgered history row exists and its digest recomputes (``history_missing``,
       ``history_edited``), names the entry's object and history type (``ledger_edited``);
       every history row is in the ledger (``history_unledgered``);
    3. every live row equals its latest history row on every tracked column
       (``live_edited``), has a history (``live_unaudited``), and rows whose latest history is a
       live version exist (``live_deleted``), deleted ones do not (``live_resurrected``);
       accounts and groups: the password-hash fingerprint, permissions and groups recomputed
       from ``auth_user``, ``auth_user_user_permissions``, ``auth_user_groups`` and
       ``auth_group_permissions`` equal the latest history row's (``live_edited``);
    4. ``auth_permission``: each permission of an installed model has the codename and name
       Django gives it (``permission_edited``: renamed, swapped or missing).

    Rows that cannot be read are ``unreadable`` problems naming the table, row and reason.
    """
    problems: list[Problem] = []
    collecting = gc.isenabled()
    gc.disable()  # millions of short-lived tuples: the cyclic collector would cost a quarter
    try:
        _verify(problems, expected_head, page)
    finally:
        if collecting:
            gc.enable()
    return problems


def _verify(problems: list[Problem], expected_head: str | None, page: int) -> None:
    with _consistent_read():
        _stage(problems, "ledger", "the ledger chain",
               lambda: _check_links(problems, expected_head))
        labels: list[str] = []
        for model in audited_models():
            hmodel = _history_model(model)
            hlabel = hmodel._meta.label_lower
            labels.append(hlabel)
            deleted = _Deleted()
            _stage(problems, hlabel, f"the history table {hmodel._meta.db_table}",
                   lambda m=model, h=hmodel, x=deleted: _check_history(m, h, problems, page, x))
            _stage(problems, hlabel, f"the ledger entries of {hlabel}",
                   lambda h=hmodel, x=deleted: _check_missing_history(h, problems, x))
            label = model._meta.label_lower
            _stage(problems, label, f"the live table {model._meta.db_table}",
                   lambda m=model, h=hmodel: _check_live(m, h, problems))
            if getattr(hmodel, "audit_snapshot_fields", ()):
                _stage(problems, label, f"the grants and password of {label}",
                       lambda m=model, h=hmodel: _check_snapshots(m, h, problems))
        _stage(problems, "ledger", "the ledger's models",
               lambda: _check_unknown_models(labels, problems))
        _stage(problems, "auth.permission", "auth_permission",
               lambda: _check_permissions(problems))


# --------------------------------------------------------------------------------- 1. ledger
#: the ledger columns read with each entry (after ``seq``), in this order
_LEDGER_COLUMNS = ("history_model", "history_pk", "object_pk", "history_type", "digest",
                   "prev_hash", "chain_hash", "recorded_at", "format")
_LEDGER_TYPES = (str, int, str, str, str, str, str, None, (int, type(None)))


class _Slow(Exception):
    """Control flow: these entries need the entry-by-entry check."""


def _sha256s(texts: Iterable[str]) -> list[str]:
    """sha256 hex digest of each text (UTF-8), C-level ``map`` all the way."""
    return list(map(_HEX, map(hashlib.sha256, map(str.encode, texts))))


class _EntryCheck:
    """Recompute each ledger entry's chain hash in its format (every entry on its own: the
    links between consecutive entries are checked in SQL by :func:`_check_links`). Entries
    come column-wise, a page at a time; well-formed pages of one format are checked with
    comprehensions and C-level ``map``, any other entry by entry."""

    def __init__(self, problems: list[Problem]) -> None:
        meta = _ledger()._meta
        self.table = meta.db_table
        self.when = json_encoder(meta.get_field("recorded_at"))
        self.problems = problems
        self.times: dict[Any, str] = {}

    def rows(self, entries: Sequence[Sequence[Any]]) -> None:
        """Entries as tuples ``(seq, *_LEDGER_COLUMNS)``."""
        if entries:
            self.columns(*zip(*entries, strict=True))

    def columns(self, seqs: Sequence[Any], models_: Sequence[Any], hpks: Sequence[Any],
                *rest: Sequence[Any]) -> None:
        try:
            self._fast(seqs, models_, hpks, *rest)
        except _Slow:
            for row in zip(seqs, models_, hpks, *rest, strict=True):
                self._row(row)

    def _time(self, rec: Any) -> str:
        rc = self.times.get(rec)
        if rc is None:
            if len(self.times) >= 4096:  # times that do not repeat: keep memory flat
                self.times.clear()
            rc = self.times[rec] = self.when(rec)[1:-1]  # Unreadable: the caller decides
        return rc

    def _times(self, recs: Sequence[Any]) -> Parts:
        """The parts of a page's ``recorded_at`` texts (raises :class:`_Slow` if one cannot be
        read): one text when all are the same, computed in C when they mostly differ, else
        each distinct one once."""
        first = recs[0]
        try:
            if recs[-1] == first and recs.count(first) == len(recs):
                return (self._time(first),)
            made = iso_datetimes(recs) if mostly_distinct(recs) else None
            if made is not None:
                return made[0], made[1]
            return ([self._time(r) for r in recs],)
        except Unreadable:
            raise _Slow from None

    def _fast(self, seqs: Sequence[Any], models_: Sequence[Any], hpks: Sequence[Any],
              opks: Sequence[Any], htypes: Sequence[Any], digests: Sequence[Any],
              prevs: Sequence[Any], chains: Sequence[Any], recs: Sequence[Any],
              fmts: Sequence[Any]) -> None:
        if set(map(type, seqs)) != {int} or set(map(type, hpks)) != {int}:
            raise _Slow
        for col in (models_, opks, htypes, digests, prevs, chains):
            if set(map(type, col)) != {str}:
                raise _Slow
        formats = set(fmts)
        if formats == {2}:
            # the text of audit.chain.entry_hash (format 2), built column-wise (a column
            # equal on every entry is one text)
            got = _sha256s(texts_of((
                "2|", map(str, seqs), "|", *text_parts(models_), "|", map(str, hpks), "|",
                *text_parts(opks), "|", *text_parts(htypes), "|", *self._times(recs), "|",
                digests, "|", prevs), len(seqs)))
        elif formats == {None}:
            got = [chain_hash(*t) for t in zip(seqs, models_, hpks, digests, prevs,
                                                 strict=True)]
        else:
            raise _Slow
        if got == list(chains):
            return
        for i, (a, b) in enumerate(zip(got, chains, strict=True)):
            if a != b:
                self.problems.append(Problem(
                    "ledger_edited", "ledger", str(seqs[i]),
                    f"chain hash does not recompute ({models_[i]}:{hpks[i]})"))

    def _row(self, row: tuple[Any, ...]) -> None:
        seq, model, hpk, opk, htype, digest, prev_hash, chain, rec, fmt = row
        problems = self.problems
        bad = _ledger_row_problem(row)
        if bad:
            problems.append(Problem("unreadable", "ledger", str(seq),
                                    f"{self.table} row seq {seq!r}: {bad}"))
            return
        if fmt is None:
            ok = chain_hash(seq, model, hpk, digest, prev_hash) == chain
        elif fmt == 2:
            try:
                rc = self._time(rec)
            except Unreadable as exc:
                problems.append(Problem("unreadable", "ledger", str(seq),
                                        f"{self.table} row seq {seq}: recorded_at: {exc}"))
                return
            ok = entry_hash(2, seq, model, hpk, opk, htype, rc, digest, prev_hash) == chain
        else:
            problems.append(Problem("ledger_edited", "ledger", str(seq),
                                    f"unknown ledger format {fmt!r}"))
            return
        if not ok:
            problems.append(Problem("ledger_edited", "ledger", str(seq),
                                    f"chain hash does not recompute ({model}:{hpk})"))


def _ledger_select(alias: str) -> str:
    """Select list of a ledger entry: ``seq`` and :data:`_LEDGER_COLUMNS`."""
    meta = _ledger()._meta
    return ", ".join(column_sql(alias, meta.get_field(c).column)
                     for c in ("seq", *_LEDGER_COLUMNS))


def _check_links(problems: list[Problem], expected_head: str | None) -> None:
    """The chain's links, in SQL: ``seq`` runs 1..n (``ledger_gap``), each ``prev_hash`` is
    the chain hash of the entry before it (``chain_broken``), no format-1 entry follows a
    format-2 one (``ledger_edited``), and the head is ``expected_head``."""
    meta = _ledger()._meta
    t = _qn(meta.db_table)

    def c(name: str) -> str:
        return _qn(meta.get_field(name).column)

    seq, prev, chain, fmt = c("seq"), c("prev_hash"), c("chain_hash"), c("format")
    # one pass over the ledger, each entry joined with the one before it (seq - 1): the
    # entries whose link is broken, the first entry of each run of consecutive entries (with
    # the entry before the gap) and the format-1 entries after the first format-2 one
    downgraded = (f"a.{fmt} IS NULL AND a.{seq} > "
                  f"(SELECT MIN(m.{seq}) FROM {t} m WHERE m.{fmt} = 2)")
    # SQLite: "+" scans the table in its own order (not the seq index, then each entry's row)
    # and sorts the few entries found
    order = f"+a.{seq}" if connection.vendor == "sqlite" else f"a.{seq}"
    rows = query(
        f"SELECT a.{seq}, a.{prev}, b.{seq} IS NULL, "
        f"CASE WHEN a.{prev} <> b.{chain} THEN 1 ELSE 0 END, "
        f"CASE WHEN {downgraded} THEN 1 ELSE 0 END, p.{seq}, p.{chain} "
        f"FROM {t} a LEFT JOIN {t} b ON b.{seq} = a.{seq} - 1 "
        f"LEFT JOIN {t} p ON b.{seq} IS NULL "
        f"AND p.{seq} = (SELECT MAX(e.{seq}) FROM {t} e WHERE e.{seq} < a.{seq}) "
        f"WHERE b.{seq} IS NULL OR a.{prev} <> b.{chain} OR ({downgraded}) "
        f"ORDER BY {order}")
    broken, runs, formats = [], [], []
    for s, prev_hash, first, unlinked, downgrade, before, before_chain in rows:
        if unlinked:
            broken.append(Problem("chain_broken", "ledger", str(s),
                                  "prev_hash is not the previous chain hash"))
        if downgrade:
            formats.append(Problem(
                "ledger_edited", "ledger", str(s),
                "a format-1 entry after format-2 entries (format downgraded)"))
        if not first:
            continue
        # the first entry of a run: a gap before it, and its link to the entry before the gap
        if type(s) is not int or (before is not None and type(before) is not int):
            continue  # reported as unreadable by the entry check
        expected = before + 1 if before is not None else 1
        if s != expected:
            runs.append(Problem("ledger_gap", "ledger", str(s),
                                f"ledger rows {expected}..{s - 1} are missing"))
        if prev_hash != (before_chain if before is not None else GENESIS):
            runs.append(Problem("chain_broken", "ledger", str(s),
                                "prev_hash is not the previous chain hash"))
    problems.extend(broken + runs + formats)
    if expected_head is not None:
        last = query(f"SELECT {seq}, {chain} FROM {t} ORDER BY {seq} DESC LIMIT 1")
        s, head = last[0] if last else (0, GENESIS)
        if head != expected_head:
            problems.append(Problem("head_mismatch", "ledger", str(s),
                                    "last chain hash differs from the expected head"))


def _ledger_row_problem(row: Sequence[Any]) -> str:
    if type(row[0]) is not int:
        return f"seq: not an integer: {row[0]!r}"
    for name, want, v in zip(_LEDGER_COLUMNS, _LEDGER_TYPES, row[1:], strict=True):
        if want is None:
            continue
        if not isinstance(v, want) or isinstance(v, bool):
            if v is None:
                return f"{name}: NULL in a column that does not allow NULL"
            return f"{name}: not {'an integer' if want is int else 'text'}: {v!r}"[:200]
    return ""


# -------------------------------------------------------------------------------- 2. history
class _Digester:
    """Digests of a history model's rows read as plain tuples (``column_sql`` of every
    concrete column: the primary key first, which is the page key, then the others in
    ``_meta.concrete_fields`` order)."""

    def __init__(self, hmodel: type[models.Model]) -> None:
        pk = hmodel._meta.pk
        fields = [pk, *(f for f in hmodel._meta.concrete_fields if f is not pk)]
        self.fields = fields
        encoders = {f.attname: json_encoder(f) for f in fields}
        made = digest_template(hmodel, [f.attname for f in fields], {}, encoders)
        if made is None:  # pragma: no cover - a leading optional column (no model has one)
            raise RuntimeError(f"{hmodel._meta.label}: no digest template")
        self.template, self.pairs = made
        self.pos = {f.attname: i for i, f in enumerate(fields)}  # 0: the key
        self.column = {f.attname: f.column for f in fields}
        # the template's text around each column's ``%s``: each page's texts are joined from
        # these and each column's texts (made in C where they can be, or one for the page)
        self.pieces = [p.replace("%%", "%") for p in self.template.split("%s")]
        if len(self.pieces) != len(self.pairs) + 1:  # pragma: no cover - a "%" in a name
            raise RuntimeError(f"{hmodel._meta.label}: digest template {self.template!r}")
        # whole-column formatters (C-level) for the columns digested as they are; the
        # optional ones (``audit_added_fields``) go value by value through their pair encoder
        byname = {f.attname: f for f in fields}
        self.bulk = {key: column_formatter(byname[key]) for key, enc in self.pairs
                     if enc is encoders[key]}

    def select(self, alias: str) -> str:
        return ", ".join(column_sql(alias, f.column) for f in self.fields)

    def digests(self, rows: Sequence[Sequence[Any]]) -> tuple[list[str], dict[int, str]]:
        """``(digest per row, {row index: why it cannot be read})``."""
        return self.digests_of_columns(list(zip(*rows, strict=True)))

    def digests_of_columns(self, cols: Sequence[Sequence[Any]]
                           ) -> tuple[list[str], dict[int, str]]:
        """:meth:`digests` of a page given column-wise."""
        bad: dict[int, str] = {}
        pieces = self.pieces
        parts: list[str | Iterable[str]] = [pieces[0]]
        for i, (key, enc) in enumerate(self.pairs, 1):
            col = cols[self.pos[key]]
            bulk = self.bulk.get(key)
            try:
                parts += bulk(col) if bulk is not None else folded(encode_column(enc, col))
            except Unreadable:
                out = []
                for r, v in enumerate(col):
                    try:
                        out.append(enc(v))
                    except Unreadable as exc:
                        bad.setdefault(r, f"{self.column[key]}: {exc}")
                        out.append("null")
                parts.append(out)
            parts.append(pieces[i])
        return _sha256s(texts_of(parts, len(cols[0]))), bad


def history_digests(hmodel: type[models.Model], *, page: int = PAGE
                    ) -> Iterator[tuple[Any, str | None, str]]:
    """``(history id, digest, "")`` of every history row as ``verify`` computes it (``None``
    and the reason for a row that cannot be read), in history-id order."""
    d = _Digester(hmodel)
    hid = _qn(hmodel._meta.pk.column)
    for rows in pages(d.select("h"), f"{_qn(hmodel._meta.db_table)} h", f"h.{hid}", page=page,
                      key_selected=True):
        digests, bad = d.digests(rows)
        for r, row in enumerate(rows):
            yield (row[0], None, bad[r]) if r in bad else (row[0], digests[r], "")


#: the ledger columns read with each history row, after ``history_pk`` (the join key)
_ENTRY_COLUMNS = ("seq", "object_pk", "history_type", "digest", "prev_hash", "chain_hash",
                  "recorded_at", "format")


def _entries_sql(where: str) -> str:
    """The ledger entries of one history model (param: its label) whose ``history_pk``
    satisfies ``where`` (on ``l.history_pk``; its params follow), in ``history_pk`` order:
    ``history_pk`` and :data:`_ENTRY_COLUMNS`. A range of ``history_pk`` is read by the
    ledger's unique ``(history_model, history_pk)`` index, in the order of the history
    pages."""
    meta = _ledger()._meta
    hpk = _qn(meta.get_field("history_pk").column)
    select = ", ".join(column_sql("l", meta.get_field(c).column) for c in _ENTRY_COLUMNS)
    return (f"SELECT l.{hpk}, {select} FROM {_qn(meta.db_table)} l "
            f"WHERE l.{_qn(meta.get_field('history_model').column)} = %s "
            f"AND ({where.format(pk='l.' + hpk)}) ORDER BY l.{hpk}")


_NO_ENTRY = [(None,) * len(_ENTRY_COLUMNS)]


def _joined(rows: list[tuple[Any, ...]], entries: list[tuple[Any, ...]]
            ) -> tuple[list[Sequence[Any]], list[tuple[Any, ...]]]:
    """``(columns, unmatched)``: the columns of ``rows LEFT JOIN entries ON
    entry.history_pk = row[0]`` (the history columns, then :data:`_ENTRY_COLUMNS`; ``None``
    where a row has no entry; a row repeated for each of its entries, as the join in SQL
    would), and the entries that match no row, in their order."""
    cols: list[Sequence[Any]] = list(zip(*rows, strict=True))
    ecols = list(zip(*entries, strict=True))
    if ecols and ecols[0] == cols[0]:  # every row has its entry, and only one: no merge
        return cols + ecols[1:], []
    by: dict[Any, list[tuple[Any, ...]]] = {}
    for e in entries:
        by.setdefault(e[0], []).append(e[1:])
    ids = set(cols[0])
    unmatched = [e for e in entries if e[0] not in ids]
    return (list(zip(*[r + e for r in rows for e in by.get(r[0], _NO_ENTRY)], strict=True)),
            unmatched)


class _Deleted:
    """The ledger entries of one history model whose history row does not exist, found by
    :func:`_check_history` while it reads the entries page by page (``rows`` is ``None``
    until it has read them all); :func:`_check_missing_history` reports them."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] | None = None


def _check_history(model: type[models.Model], hmodel: type[models.Model],
                   problems: list[Problem], page: int, deleted: _Deleted | None = None
                   ) -> None:
    hmeta = hmodel._meta
    hlabel = hmeta.label_lower
    table = hmeta.db_table
    d = _Digester(hmodel)
    n = len(d.fields)
    pk_i = d.pos[_tracked_pk_attname(hmodel)]
    type_i = d.pos["history_type"]
    hid = _qn(hmeta.pk.column)
    # the history rows a page at a time, and the ledger entries of the ids up to the page's
    # last by the ledger's own index in the same order (cheaper than an index lookup per row
    # in a join); each entry's hash is checked here, once. The entries no row matches are
    # those whose history row was deleted: kept for _check_missing_history, in history_pk
    # order (NULL, which no row matches, sorts first on SQLite, last on PostgreSQL)
    entries = _EntryCheck(problems)
    unmatched: list[tuple[Any, ...]] = []
    nulls = _entries_sql("{pk} IS NULL")
    if connection.vendor == "sqlite":
        unmatched += query(nulls, [hlabel])
    first, after = _entries_sql("{pk} <= %s"), _entries_sql("{pk} > %s AND {pk} <= %s")
    last = None
    for rows in pages(d.select("h"), f"{_qn(table)} h", f"h.{hid}", page=page,
                      key_selected=True):
        ledgered = (query(first, [hlabel, rows[-1][0]]) if last is None
                    else query(after, [hlabel, last, rows[-1][0]]))
        last = rows[-1][0]
        cols, unmatched_here = _joined(rows, ledgered)
        unmatched += unmatched_here
        digests, bad = d.digests_of_columns(cols)
        ledger_cols = cols[n:n + 8]
        hids: Sequence[Any]
        if None in ledger_cols[0]:  # unledgered rows: check the entries of the others
            keep = [i for i, v in enumerate(ledger_cols[0]) if v is not None]
            hids = [cols[0][i] for i in keep]
            ledger_cols = [[c[i] for i in keep] for c in ledger_cols]
        else:
            hids = cols[0]
        if hids:
            seqs, opks, types_, ldigests, prevs, chains, recs, fmts = ledger_cols
            entries.columns(seqs, [hlabel] * len(hids), hids, opks, types_, ldigests, prevs,
                            chains, recs, fmts)
        # rows whose digest, object or type differs from their entry, or have none
        lseqs, lopks, ltypes, lds = cols[n], cols[n + 1], cols[n + 2], cols[n + 3]
        opks = list(map(str, cols[pk_i]))
        if digests == list(lds) and opks == list(lopks) and list(ltypes) == list(cols[type_i]):
            odd = []  # the usual page: compared whole in C
        else:
            odd = [i for i, t in enumerate(zip(digests, lds, lopks, opks, ltypes, cols[type_i],
                                               strict=True))
                   if t[0] != t[1] or t[2] != t[3] or t[4] != t[5]]
        for r in sorted(set(odd) | set(bad)):
            h_id, obj_pk, htype = cols[0][r], cols[pk_i][r], cols[type_i][r]
            lseq, lopk, ltype, ldigest = lseqs[r], lopks[r], ltypes[r], lds[r]
            if r in bad:
                problems.append(Problem("unreadable", hlabel, str(obj_pk),
                                        f"{table} row {h_id}: {bad[r]}"))
                if lseq is None:
                    problems.append(Problem("history_unledgered", hlabel, str(obj_pk),
                                            f"history row {h_id} is not in the ledger"))
                continue
            if lseq is None:
                problems.append(Problem("history_unledgered", hlabel, str(obj_pk),
                                        f"history row {h_id} is not in the ledger"))
            elif digests[r] != ldigest:
                problems.append(Problem("history_edited", hlabel, str(obj_pk),
                                        f"history row {h_id} (ledger #{lseq}) was altered"))
            elif lopk != str(obj_pk):
                problems.append(Problem(
                    "ledger_edited", hlabel, str(obj_pk),
                    f"ledger #{lseq} names object {lopk!r}, history row {h_id} is of object "
                    f"{obj_pk!r}"))
            elif ltype != htype:
                problems.append(Problem(
                    "ledger_edited", hlabel, str(obj_pk),
                    f"ledger #{lseq} says history type {ltype!r}, history row {h_id} is "
                    f"{htype!r}"))
    unmatched += query(_entries_sql("{pk} IS NOT NULL" if last is None else "{pk} > %s"),
                       [hlabel] if last is None else [hlabel, last])
    if connection.vendor != "sqlite":
        unmatched += query(nulls, [hlabel])
    if deleted is not None:
        # as the ledger's rows: seq, history_model, history_pk, object_pk, ...
        deleted.rows = [(e[1], hlabel, e[0], *e[2:]) for e in unmatched]


def _check_missing_history(hmodel: type[models.Model], problems: list[Problem],
                           deleted: _Deleted | None = None) -> None:
    """The ledger entries of ``hmodel`` whose history row does not exist (``history_missing``),
    each entry's hash checked: as :func:`_check_history` found them, or (if it could not read
    them all) read here."""
    hmeta = hmodel._meta
    lmeta = _ledger()._meta
    hid = _qn(hmeta.pk.column)
    lcol = {f.attname: _qn(f.column) for f in lmeta.concrete_fields}
    rows = deleted.rows if deleted is not None else None
    if rows is None:
        rows = query(
            f"SELECT {_ledger_select('l')} "
            f"FROM {_qn(lmeta.db_table)} l WHERE l.{lcol['history_model']} = %s AND NOT EXISTS "
            f"(SELECT 1 FROM {_qn(hmeta.db_table)} h WHERE h.{hid} = l.{lcol['history_pk']}) "
            f"ORDER BY l.{lcol['history_pk']}", [hmeta.label_lower])
    _EntryCheck(problems).rows(rows)
    for seq, _model, hpk, opk, *_ in rows:
        problems.append(Problem("history_missing", hmeta.label_lower, str(opk),
                                f"history row {hpk} (ledger #{seq}) was deleted"))


def _check_unknown_models(labels: list[str], problems: list[Problem]) -> None:
    """The ledger entries whose ``history_model`` is no audited model's (or NULL)."""
    lmeta = _ledger()._meta
    lcol = {f.attname: _qn(f.column) for f in lmeta.concrete_fields}
    t, hm = _qn(lmeta.db_table), lcol["history_model"]
    # the ledger's distinct models, one seek each in its (history_model, history_pk) index
    # (not a scan of every entry); the entries of those that are unknown, read by the index
    found = query(
        f"WITH RECURSIVE m(x) AS (SELECT MIN({hm}) FROM {t} UNION ALL "
        f"SELECT (SELECT MIN(n.{hm}) FROM {t} n WHERE n.{hm} > m.x) FROM m "
        f"WHERE m.x IS NOT NULL) SELECT x FROM m WHERE x IS NOT NULL")
    known = set(labels or [""])
    unknown = [x for (x,) in found if x not in known]
    if all(type(x) is str for x in unknown):
        where, params = f"{hm} IS NULL", unknown
        if unknown:
            where = f"{hm} IN ({', '.join(['%s'] * len(unknown))}) OR {where}"
    else:  # a model name that is not text (SQLite): compared in SQL
        marks = ", ".join(["%s"] * len(labels)) or "''"
        where, params = f"{hm} NOT IN ({marks}) OR {hm} IS NULL", labels
    rows = query(f"SELECT {_ledger_select('')} FROM {t} WHERE {where} "
                 f"ORDER BY {hm}, {lcol['history_pk']}", params)
    _EntryCheck(problems).rows(rows)
    for seq, hlabel, hpk, opk, *_ in rows:
        problems.append(Problem("history_missing", str(hlabel), str(opk),
                                f"history row {hpk} (ledger #{seq}) has no table/model"))


# ----------------------------------------------------------------------------- 3. live rows
def _latest(hmodel: type[models.Model]) -> str:
    """SQL of ``(oid, hid)``: each object's latest history row."""
    hmeta = hmodel._meta
    opk = _qn(hmeta.get_field(_tracked_pk_attname(hmodel)).column)
    hid = _qn(hmeta.pk.column)
    return (f"(SELECT h2.{opk} AS oid, MAX(h2.{hid}) AS hid FROM {_qn(hmeta.db_table)} h2 "
            f"GROUP BY h2.{opk})")


def _check_live(model: type[models.Model], hmodel: type[models.Model],
                problems: list[Problem]) -> None:
    meta, hmeta = model._meta, hmodel._meta
    label = meta.label_lower
    hcol = {f.attname: f.column for f in hmeta.concrete_fields}
    tracked = list(hmodel.tracked_fields)  # type: ignore[attr-defined]
    lpk = _qn(meta.pk.column)
    hid = _qn(hmeta.pk.column)
    same = _same()
    cmp = " AND ".join(f"l.{_qn(f.column)} {same} h.{_qn(hcol[f.attname])}" for f in tracked)
    htype = _qn(hcol["history_type"])
    opk = _qn(hcol[_tracked_pk_attname(hmodel)])
    htable, ltable = _qn(hmeta.db_table), _qn(meta.db_table)
    # each live row against its latest history row (an index seek per row), only the rows
    # that differ come back
    rows = query(
        f"SELECT l.{lpk}, h.{hid}, h.{htype} FROM {ltable} l LEFT JOIN {htable} h "
        f"ON h.{hid} = (SELECT MAX(h2.{hid}) FROM {htable} h2 WHERE h2.{opk} = l.{lpk}) "
        f"WHERE h.{hid} IS NULL OR h.{htype} = '-' OR NOT ({cmp}) ORDER BY l.{lpk}")
    for pk, h_id, kind in rows:
        if h_id is None:
            problems.append(Problem("live_unaudited", label, str(pk), "row has no history"))
        elif kind == "-":
            problems.append(Problem("live_resurrected", label, str(pk),
                                    "row exists although its history says deleted"))
        else:
            detail, unreadable = _differences(model, hmodel, tracked, pk, h_id)
            problems.append(Problem("live_edited", label, str(pk),
                                    "differs from its history: " + detail))
            problems.extend(Problem("unreadable", label, str(pk),
                                    f"{meta.db_table} row {pk}: {why}") for why in unreadable)
    # objects with no live row whose latest history row is not a deletion
    gone = query(
        f"SELECT m.oid FROM (SELECT h2.{opk} AS oid, MAX(h2.{hid}) AS hid FROM {htable} h2 "
        f"WHERE NOT EXISTS (SELECT 1 FROM {ltable} l WHERE l.{lpk} = h2.{opk}) "
        f"GROUP BY h2.{opk}) m JOIN {htable} h ON h.{hid} = m.hid WHERE h.{htype} <> '-' "
        f"ORDER BY m.oid")
    for (pk,) in gone:
        problems.append(Problem("live_deleted", label, str(pk),
                                "row was deleted without a history record"))


def _shown(read: Callable[[Any], Any], raw: Any) -> tuple[Any, str]:
    try:
        return _canon(read(raw)), ""
    except Unreadable as exc:
        return f"<unreadable: {exc}>", str(exc)


def _differences(model: type[models.Model], hmodel: type[models.Model],
                 tracked: list[models.Field], pk: Any, h_id: Any) -> tuple[str, list[str]]:
    """``field: history → live; ...`` of one row (values as the ORM reads them), and why each
    live value that cannot be read cannot be."""
    meta, hmeta = model._meta, hmodel._meta
    hfields = {f.attname: f for f in hmeta.concrete_fields}
    live_sel = ", ".join(column_sql("", f.column) for f in tracked)
    hist_sel = ", ".join(column_sql("", hfields[f.attname].column) for f in tracked)
    live = query(f"SELECT {live_sel} FROM {_qn(meta.db_table)} WHERE {_qn(meta.pk.column)} = %s",
                 [pk])
    hist = query(f"SELECT {hist_sel} FROM {_qn(hmeta.db_table)} WHERE {_qn(hmeta.pk.column)} "
                 f"= %s", [h_id])
    if not live or not hist:  # pragma: no cover - changed while verifying
        return "row changed while it was verified", []
    out = []
    raw_only = []
    unreadable = []
    for f, lv, hv in zip(tracked, live[0], hist[0], strict=True):
        if lv == hv and type(lv) is type(hv):
            continue
        read = python_value(f)
        (old, _), (new, why) = _shown(read, hv), _shown(read, lv)
        if why:
            unreadable.append(f"{f.column}: {why}")
        if old != new:
            out.append(f"{f.attname}: {old!r} → {new!r}")
        else:
            raw_only.append(f"{f.attname}: stored {hv!r} → {lv!r}")
    return "; ".join(out + raw_only) or "stored values differ", unreadable


def _names(text: Any) -> set[str] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None
    return {str(v) for v in value} if isinstance(value, list) else None


def _check_snapshots(model: type[models.Model], hmodel: type[models.Model],
                     problems: list[Problem]) -> None:
    """Accounts and groups: the snapshot columns of the latest history row (password
    fingerprint, permissions, groups) against the live auth tables."""
    hmeta = hmodel._meta
    label = model._meta.label_lower
    names = list(hmodel.audit_snapshot_fields)  # type: ignore[attr-defined]
    hcol = {f.attname: f.column for f in hmeta.concrete_fields}
    sel = ", ".join(f"h.{_qn(hcol[n])}" for n in names)
    hid = _qn(hmeta.pk.column)
    opk = _qn(hcol[_tracked_pk_attname(hmodel)])
    rows = query(
        f"SELECT h.{opk}, h.{_qn(hcol['history_type'])}, {sel} FROM {_latest(hmodel)} m "
        f"JOIN {_qn(hmeta.db_table)} h ON h.{hid} = m.hid ORDER BY h.{opk}")
    live = hmodel.live_snapshots()  # type: ignore[attr-defined]
    for pk, htype, *snap in rows:
        now = live.get(pk)
        if htype == "-" or now is None:
            continue  # deleted: live_deleted / live_resurrected say so
        diffs = []
        for name, audited in zip(names, snap, strict=True):
            current = now[name]
            if audited == current:
                continue
            what = name.removeprefix("audit_")
            if audited is None:
                diffs.append(f"{what}: no audited copy (history written before migration 0004)")
            elif name == "audit_password":
                diffs.append("password hash: differs from the audited one (written outside "
                             "the audit trail)")
            else:
                was, got = _names(audited), _names(current)
                if was is None or got is None:
                    diffs.append(f"{what}: {audited!r} → {current!r}")
                    continue
                change = [f"+{x}" for x in sorted(got - was)] + [f"-{x}" for x in
                                                                  sorted(was - got)]
                diffs.append(f"{what}: " + (", ".join(change) or f"{audited!r} → {current!r}"))
        if diffs:
            problems.append(Problem("live_edited", label, str(pk),
                                    "auth tables differ from its history: " + "; ".join(diffs)))


# ---------------------------------------------------------------------------- 4. permissions
def expected_permissions() -> dict[tuple[str, str], dict[str, str]]:
    """``{(app_label, model): {codename: name}}`` of every installed model, as Django's
    ``create_permissions`` makes them (default permissions and ``Meta.permissions``)."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    for m in apps.get_models():
        opts = m._meta
        perms = {get_permission_codename(action, opts): f"Can {action} {opts.verbose_name_raw}"
                 for action in opts.default_permissions}
        perms.update({str(c): str(n) for c, n in opts.permissions})
        out[(opts.app_label, opts.model_name)] = perms
    return out


def _check_permissions(problems: list[Problem]) -> None:
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType

    pmeta, cmeta = Permission._meta, ContentType._meta

    def pc(name: str) -> str:
        return _qn(pmeta.get_field(name).column)

    def cc(name: str) -> str:
        return _qn(cmeta.get_field(name).column)

    rows = query(
        f"SELECT p.{pc('id')}, p.{pc('codename')}, p.{pc('name')}, c.{cc('app_label')}, "
        f"c.{cc('model')} FROM {_qn(pmeta.db_table)} p LEFT JOIN {_qn(cmeta.db_table)} c "
        f"ON c.{cc('id')} = p.{pc('content_type')} ORDER BY p.{pc('id')}")
    expected = expected_permissions()
    found: set[tuple[str, str, str]] = set()
    for pid, code, name, app, mname in rows:
        want = expected.get((app, mname))
        if want is None:
            continue  # a model that is not installed (any more): grants nothing it could use
        found.add((app, mname, code))
        if code not in want:
            problems.append(Problem(
                "permission_edited", "auth.permission", str(pid),
                f"permission {pid} ({app}.{code}, named {name!r}) is not a permission of "
                f"{app}.{mname}: renamed outside Django"))
        elif name != want[code]:
            problems.append(Problem(
                "permission_edited", "auth.permission", str(pid),
                f"permission {pid} {app}.{code} is named {name!r}, not {want[code]!r}"))
    cts = {(a, m) for a, m in query(f"SELECT {cc('app_label')}, {cc('model')} FROM "
                                    f"{_qn(cmeta.db_table)}")}
    for (app, mname), want in sorted(expected.items()):
        if (app, mname) not in cts:
            continue  # no content type: its permissions were never created
        for code in sorted(want):
            if (app, mname, code) not in found:
                problems.append(Problem(
                    "permission_edited", "auth.permission", f"{app}.{code}",
                    f"permission {app}.{code} of {app}.{mname} is missing"))
