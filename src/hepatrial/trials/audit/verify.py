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

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.contrib.auth import get_permission_codename
from django.db import connection, models, transaction

from hepatrial.trials.audit.base import audited_models
from hepatrial.trials.audit.chain import (
    GENESIS,
    _canon,
    _encode_str,
    _history_model,
    _ledger,
    _tracked_pk_attname,
    chain_hash,
    digest_template,
    digests_of,
    encode_column,
)
from hepatrial.trials.audit.columnar import (
    PAGE,
    Unreadable,
    column_sql,
    json_encoder,
    pages,
    python_value,
    query,
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
       ``chain_hash``, and each ``chain_hash`` recomputes in its format (format 2 covers every
       column, including ``history_type`` and ``recorded_at``; a format-1 entry after a
       format-2 one is a downgrade) (``ledger_gap``, ``chain_broken``, ``ledger_edited``);
       optionally the last hash equals ``expected_head`` (``head_mismatch``);
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
    with _consistent_read():
        _stage(problems, "ledger", "the ledger chain",
               lambda: _check_ledger(problems, expected_head, page))
        labels: list[str] = []
        for model in audited_models():
            hmodel = _history_model(model)
            hlabel = hmodel._meta.label_lower
            labels.append(hlabel)
            _stage(problems, hlabel, f"the history table {hmodel._meta.db_table}",
                   lambda m=model, h=hmodel: _check_history(m, h, problems, page))
            _stage(problems, hlabel, f"the ledger entries of {hlabel}",
                   lambda h=hmodel: _check_missing_history(h, problems))
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
    return problems


# --------------------------------------------------------------------------------- 1. ledger
_LEDGER_COLUMNS = ("history_model", "history_pk", "object_pk", "history_type", "digest",
                   "prev_hash", "chain_hash", "recorded_at", "format")
_LEDGER_TYPES = (str, int, str, str, str, str, str, None, (int, type(None)))


def _check_ledger(problems: list[Problem], expected_head: str | None, page: int) -> None:
    import hashlib

    Ledger = _ledger()
    meta = Ledger._meta
    table = meta.db_table
    select = ", ".join(column_sql("", meta.get_field(c).column) for c in _LEDGER_COLUMNS)
    when = json_encoder(meta.get_field("recorded_at"))
    times: dict[Any, str] = {}
    quoted: dict[str, str] = {}
    sha = hashlib.sha256
    enc = _encode_str
    prev = GENESIS
    expected_seq = 1
    last_seq: Any = 0
    seen_v2 = False
    for rows in pages(select, _qn(table), _qn(meta.get_field("seq").column), page=page):
        for row in rows:
            seq, model, hpk, opk, htype, digest, prev_hash, chain, rec, fmt = row
            bad = _ledger_row_problem(row)
            if bad:
                problems.append(Problem("unreadable", "ledger", str(seq),
                                        f"{table} row seq {seq!r}: {bad}"))
                if isinstance(chain, str):
                    prev = chain
                if type(seq) is int:
                    expected_seq, last_seq = seq + 1, seq
                continue
            if seq != expected_seq:
                problems.append(Problem("ledger_gap", "ledger", str(seq),
                                        f"ledger rows {expected_seq}..{seq - 1} are missing"))
            if prev_hash != prev:
                problems.append(Problem("chain_broken", "ledger", str(seq),
                                        "prev_hash is not the previous chain hash"))
            if fmt is None:
                if seen_v2:
                    problems.append(Problem(
                        "ledger_edited", "ledger", str(seq),
                        "a format-1 entry after format-2 entries (format downgraded)"))
                ok = chain_hash(seq, model, hpk, digest, prev_hash) == chain
            elif fmt == 2:
                seen_v2 = True
                rc = times.get(rec)
                if rc is None:
                    try:
                        rc = when(rec)[1:-1]
                    except Unreadable as exc:
                        problems.append(Problem("unreadable", "ledger", str(seq),
                                                f"{table} row seq {seq}: recorded_at: {exc}"))
                        prev, expected_seq, last_seq = chain, seq + 1, seq
                        continue
                    times[rec] = rc
                qm = quoted.get(model) or quoted.setdefault(model, enc(model))
                qt = quoted.get(htype) or quoted.setdefault(htype, enc(htype))
                text = f"2|{seq}|{qm}|{hpk}|{enc(opk)}|{qt}|{rc}|{digest}|{prev_hash}"
                ok = sha(text.encode("utf-8")).hexdigest() == chain
            else:
                problems.append(Problem("ledger_edited", "ledger", str(seq),
                                        f"unknown ledger format {fmt!r}"))
                ok = True
            if not ok:
                problems.append(Problem("ledger_edited", "ledger", str(seq),
                                        f"chain hash does not recompute ({model}:{hpk})"))
            prev = chain
            expected_seq, last_seq = seq + 1, seq
    if expected_head is not None and prev != expected_head:
        problems.append(Problem("head_mismatch", "ledger", str(last_seq),
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
    concrete column, in ``_meta.concrete_fields`` order, after one leading key column)."""

    def __init__(self, hmodel: type[models.Model]) -> None:
        fields = list(hmodel._meta.concrete_fields)
        self.fields = fields
        encoders = {f.attname: json_encoder(f) for f in fields}
        made = digest_template(hmodel, [f.attname for f in fields], {}, encoders)
        if made is None:  # pragma: no cover - a leading optional column (no model has one)
            raise RuntimeError(f"{hmodel._meta.label}: no digest template")
        self.template, self.pairs = made
        self.pos = {f.attname: i + 1 for i, f in enumerate(fields)}  # 0 is the page key
        self.column = {f.attname: f.column for f in fields}

    def select(self, alias: str) -> str:
        return ", ".join(column_sql(alias, f.column) for f in self.fields)

    def digests(self, rows: Sequence[Sequence[Any]]) -> tuple[list[str], dict[int, str]]:
        """``(digest per row, {row index: why it cannot be read})``."""
        cols = list(zip(*rows, strict=True))
        bad: dict[int, str] = {}
        encoded = []
        for key, enc in self.pairs:
            col = cols[self.pos[key]]
            try:
                encoded.append(encode_column(enc, col))
            except Unreadable:
                out = []
                for r, v in enumerate(col):
                    try:
                        out.append(enc(v))
                    except Unreadable as exc:
                        bad.setdefault(r, f"{self.column[key]}: {exc}")
                        out.append("null")
                encoded.append(out)
        return digests_of(self.template, encoded), bad


def history_digests(hmodel: type[models.Model], *, page: int = PAGE
                    ) -> Iterator[tuple[Any, str | None, str]]:
    """``(history id, digest, "")`` of every history row as ``verify`` computes it (``None``
    and the reason for a row that cannot be read), in history-id order."""
    d = _Digester(hmodel)
    hid = _qn(hmodel._meta.pk.column)
    for rows in pages(d.select("h"), f"{_qn(hmodel._meta.db_table)} h", f"h.{hid}", page=page):
        digests, bad = d.digests(rows)
        for r, row in enumerate(rows):
            yield (row[0], None, bad[r]) if r in bad else (row[0], digests[r], "")


def _check_history(model: type[models.Model], hmodel: type[models.Model],
                   problems: list[Problem], page: int) -> None:
    hmeta = hmodel._meta
    hlabel = hmeta.label_lower
    table = hmeta.db_table
    Ledger = _ledger()
    d = _Digester(hmodel)
    n = len(d.fields)
    pk_i = d.pos[_tracked_pk_attname(hmodel)]
    type_i = d.pos["history_type"]
    hid = _qn(hmeta.pk.column)
    lmeta = Ledger._meta
    select = d.select("h") + ", l.seq, l.digest, l.object_pk, l.history_type"
    source = (f"{_qn(table)} h LEFT JOIN {_qn(lmeta.db_table)} l "
              f"ON l.{_qn(lmeta.get_field('history_model').column)} = %s "
              f"AND l.{_qn(lmeta.get_field('history_pk').column)} = h.{hid}")
    for rows in pages(select, source, f"h.{hid}", params=[hlabel], page=page):
        digests, bad = d.digests(rows)
        for r, row in enumerate(rows):
            h_id, obj_pk = row[0], row[pk_i]
            lseq, ldigest, lopk, ltype = row[n + 1:n + 5]
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
            elif ltype != row[type_i]:
                problems.append(Problem(
                    "ledger_edited", hlabel, str(obj_pk),
                    f"ledger #{lseq} says history type {ltype!r}, history row {h_id} is "
                    f"{row[type_i]!r}"))


def _check_missing_history(hmodel: type[models.Model], problems: list[Problem]) -> None:
    hmeta = hmodel._meta
    lmeta = _ledger()._meta
    hid = _qn(hmeta.pk.column)
    lcol = {f.attname: _qn(f.column) for f in lmeta.concrete_fields}
    rows = query(
        f"SELECT l.{lcol['history_pk']}, l.{lcol['seq']}, l.{lcol['object_pk']} "
        f"FROM {_qn(lmeta.db_table)} l WHERE l.{lcol['history_model']} = %s AND NOT EXISTS "
        f"(SELECT 1 FROM {_qn(hmeta.db_table)} h WHERE h.{hid} = l.{lcol['history_pk']}) "
        f"ORDER BY l.{lcol['history_pk']}", [hmeta.label_lower])
    for hpk, seq, opk in rows:
        problems.append(Problem("history_missing", hmeta.label_lower, str(opk),
                                f"history row {hpk} (ledger #{seq}) was deleted"))


def _check_unknown_models(labels: list[str], problems: list[Problem]) -> None:
    lmeta = _ledger()._meta
    lcol = {f.attname: _qn(f.column) for f in lmeta.concrete_fields}
    marks = ", ".join(["%s"] * len(labels)) or "''"
    rows = query(
        f"SELECT {lcol['history_model']}, {lcol['history_pk']}, {lcol['seq']}, "
        f"{lcol['object_pk']} FROM {_qn(lmeta.db_table)} WHERE {lcol['history_model']} "
        f"NOT IN ({marks}) ORDER BY {lcol['history_model']}, {lcol['history_pk']}", labels)
    for hlabel, hpk, seq, opk in rows:
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
    latest = _latest(hmodel)
    rows = query(
        f"SELECT l.{lpk}, h.{hid}, h.{htype} FROM {_qn(meta.db_table)} l "
        f"LEFT JOIN {latest} m ON m.oid = l.{lpk} LEFT JOIN {_qn(hmeta.db_table)} h "
        f"ON h.{hid} = m.hid WHERE h.{hid} IS NULL OR h.{htype} = '-' OR NOT ({cmp}) "
        f"ORDER BY l.{lpk}")
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
    gone = query(
        f"SELECT m.oid FROM {latest} m JOIN {_qn(hmeta.db_table)} h ON h.{hid} = m.hid "
        f"WHERE h.{htype} <> '-' AND NOT EXISTS (SELECT 1 FROM {_qn(meta.db_table)} l "
        f"WHERE l.{lpk} = m.oid) ORDER BY m.oid")
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
