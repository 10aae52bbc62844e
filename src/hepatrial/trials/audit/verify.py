"""Verification of the audit trail: ledger chain, history digests, live rows."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from hepatrial.trials.audit.base import (
    audited_models,
)
from hepatrial.trials.audit.chain import (
    GENESIS,
    _canon,
    _history_model,
    _ledger,
    _tracked_pk_attname,
    chain_hash,
    row_digest,
)


@dataclass(frozen=True)
class Problem:
    """One integrity problem found by :func:`verify`.

    ``kind`` is one of: ``ledger_gap``, ``ledger_edited``, ``chain_broken``, ``head_mismatch``,
    ``history_missing``, ``history_edited``, ``history_unledgered``, ``live_edited``,
    ``live_unaudited``, ``live_deleted``, ``live_resurrected``.
    """

    kind: str
    model: str
    object_pk: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.model} {self.object_pk}: {self.detail}"


def verify(expected_head: str | None = None) -> list[Problem]:
    """Recompute the ledger chain, the history digests and the live rows; list every problem.

    Checks, in order:

    1. ledger: ``seq`` runs 1..n without gaps, each ``prev_hash`` is the previous
       ``chain_hash``, and each ``chain_hash`` recomputes (``ledger_gap``, ``chain_broken``,
       ``ledger_edited``); optionally the last hash equals ``expected_head``;
    2. every ledgered history row exists and its digest recomputes (``history_missing``,
       ``history_edited``); every history row is in the ledger (``history_unledgered``);
    3. every live row equals its latest history row on every tracked column
       (``live_edited``), has a history (``live_unaudited``), and rows whose latest history is a
       live version exist (``live_deleted``), deleted ones do not (``live_resurrected``).
    """
    problems: list[Problem] = []
    Ledger = _ledger()
    ledger = list(
        Ledger.objects.order_by("seq").values_list(
            "seq", "history_model", "history_pk", "object_pk", "digest", "prev_hash", "chain_hash"
        )
    )
    prev = GENESIS
    expected_seq = 1
    for seq, model, hpk, _opk, digest, prev_hash, chain in ledger:
        if seq != expected_seq:
            problems.append(
                Problem(
                    "ledger_gap",
                    "ledger",
                    str(seq),
                    f"ledger rows {expected_seq}..{seq - 1} are missing",
                )
            )
        if prev_hash != prev:
            problems.append(
                Problem(
                    "chain_broken", "ledger", str(seq), "prev_hash is not the previous chain hash"
                )
            )
        if chain_hash(seq, model, hpk, digest, prev_hash) != chain:
            problems.append(
                Problem(
                    "ledger_edited",
                    "ledger",
                    str(seq),
                    f"chain hash does not recompute ({model}:{hpk})",
                )
            )
        prev = chain
        expected_seq = seq + 1
    if expected_head is not None and prev != expected_head:
        problems.append(
            Problem(
                "head_mismatch",
                "ledger",
                str(expected_seq - 1),
                "last chain hash differs from the expected head",
            )
        )

    ledgered: dict[str, dict[int, tuple[int, str, str]]] = defaultdict(dict)
    for seq, model, hpk, opk, digest, _p, _c in ledger:
        ledgered[model][int(hpk)] = (seq, digest, opk)

    for model in audited_models():
        hmodel = _history_model(model)
        hlabel = hmodel._meta.label_lower
        pk_att = _tracked_pk_attname(hmodel)
        in_ledger = ledgered.pop(hlabel, {})
        latest: dict[Any, Any] = {}
        seen: set[int] = set()
        for h in hmodel._base_manager.order_by("history_id").iterator():
            seen.add(h.pk)
            entry = in_ledger.get(h.pk)
            obj_pk = getattr(h, pk_att)
            if entry is None:
                problems.append(
                    Problem(
                        "history_unledgered",
                        hlabel,
                        str(obj_pk),
                        f"history row {h.pk} is not in the ledger",
                    )
                )
            elif row_digest(h) != entry[1]:
                problems.append(
                    Problem(
                        "history_edited",
                        hlabel,
                        str(obj_pk),
                        f"history row {h.pk} (ledger #{entry[0]}) was altered",
                    )
                )
            elif entry[2] != str(obj_pk):
                problems.append(
                    Problem(
                        "ledger_edited",
                        hlabel,
                        str(obj_pk),
                        f"ledger #{entry[0]} names object {entry[2]!r}, history row {h.pk} "
                        f"is of object {obj_pk!r}",
                    )
                )
            latest[obj_pk] = h
        for hpk, (seq, _d, opk) in sorted(in_ledger.items()):
            if hpk not in seen:
                problems.append(
                    Problem(
                        "history_missing",
                        hlabel,
                        opk,
                        f"history row {hpk} (ledger #{seq}) was deleted",
                    )
                )
        tracked = [f for f in hmodel.tracked_fields]
        live_pks: set[Any] = set()
        for obj in model._base_manager.order_by("pk").iterator():
            live_pks.add(obj.pk)
            label = model._meta.label_lower
            h = latest.get(obj.pk)
            if h is None:
                problems.append(Problem("live_unaudited", label, str(obj.pk), "row has no history"))
                continue
            if h.history_type == "-":
                problems.append(
                    Problem(
                        "live_resurrected",
                        label,
                        str(obj.pk),
                        "row exists although its history says deleted",
                    )
                )
                continue
            diffs = [
                f"{f.attname}: {_canon(getattr(h, f.attname))!r} → "
                f"{_canon(getattr(obj, f.attname))!r}"
                for f in tracked
                if _canon(getattr(obj, f.attname)) != _canon(getattr(h, f.attname))
            ]
            if diffs:
                problems.append(
                    Problem(
                        "live_edited",
                        label,
                        str(obj.pk),
                        "differs from its history: " + "; ".join(diffs),
                    )
                )
        for opk, h in sorted(latest.items(), key=lambda kv: str(kv[0])):
            if h.history_type != "-" and opk not in live_pks:
                problems.append(
                    Problem(
                        "live_deleted",
                        model._meta.label_lower,
                        str(opk),
                        "row was deleted without a history record",
                    )
                )
    for hlabel, rows in sorted(ledgered.items()):
        for hpk, (seq, _d, opk) in sorted(rows.items()):
            problems.append(
                Problem(
                    "history_missing",
                    hlabel,
                    opk,
                    f"history row {hpk} (ledger #{seq}) has no table/model",
                )
            )
    return problems
