"""Ledger checkpoints: ``SEQ:HASH`` strings kept outside the database.

A consistent rewrite of the audit trail (history rows, ledger digests and every later chain
hash recomputed) passes :func:`~hepatrial.trials.audit.verify.verify` by construction, and an
older backup restored in place of the current store is internally consistent too. What neither
can fake is an entry that someone wrote down earlier: ``hepatrial audit checkpoint`` prints
``SEQ:HASH`` (ledger entry SEQ had chain hash HASH) to be kept outside the database (the trial
master file, a signed e-mail, the site file); ``hepatrial audit verify --checkpoint SEQ:HASH``
proves the chain still contains that entry after any number of legitimate writes, and fails
after a rewrite of anything at or before SEQ, or a restore of a store older than SEQ.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.apps import apps

from hepatrial.errors import InputError
from hepatrial.trials.audit.chain import GENESIS, head
from hepatrial.trials.audit.verify import Problem

__all__ = ["CheckpointError", "check_checkpoints", "format_checkpoint", "parse_checkpoint"]

_RE = re.compile(r"^\s*(\d{1,19}):([0-9a-f]{64})\s*$")


class CheckpointError(InputError):
    """A checkpoint string that is not ``SEQ:HASH`` (decimal seq, 64 hex digits)."""


def format_checkpoint(seq: int | None = None) -> str:
    """``SEQ:HASH`` of ledger entry ``seq`` (default: the current head; ``0:000…`` if empty)."""
    if seq is None:
        s, h = head()
        return f"{s}:{h}"
    row = (
        apps.get_model("trials", "AuditLedger")
        .objects.filter(seq=seq)
        .values_list("chain_hash", flat=True)
        .first()
    )
    if row is None:
        raise CheckpointError(f"checkpoint: the ledger has no entry {seq}")
    return f"{seq}:{row}"


def parse_checkpoint(text: str) -> tuple[int, str]:
    """``"SEQ:HASH"`` → ``(seq, hash)``; :class:`CheckpointError` naming the text otherwise."""
    m = _RE.match(str(text))
    if not m:
        raise CheckpointError(
            f"checkpoint {text!r} is not SEQ:HASH (a ledger sequence number, a colon and the "
            "64 hexadecimal digits printed by `hepatrial audit checkpoint`)"
        )
    return int(m.group(1)), m.group(2)


def check_checkpoints(checkpoints: Iterable[str | tuple[int, str]]) -> list[Problem]:
    """One :class:`Problem` per checkpoint the ledger does not contain (``checkpoint_missing``:
    no entry SEQ — the store is older than the checkpoint or was emptied; ``checkpoint_mismatch``:
    entry SEQ has another hash — the trail up to SEQ was rewritten)."""
    Ledger = apps.get_model("trials", "AuditLedger")
    problems: list[Problem] = []
    for cp in checkpoints:
        seq, want = parse_checkpoint(cp) if isinstance(cp, str) else cp
        if seq == 0:
            if want != GENESIS:
                problems.append(Problem("checkpoint_mismatch", "ledger", "0",
                                        "entry 0 is the genesis hash"))
            continue
        got = Ledger.objects.filter(seq=seq).values_list("chain_hash", flat=True).first()
        if got is None:
            last = head()[0]
            problems.append(Problem(
                "checkpoint_missing", "ledger", str(seq),
                f"checkpoint {seq}:{want[:12]}…: the ledger has no entry {seq} (it ends at "
                f"{last}): an older copy of the store, or entries were removed",
            ))
        elif got != want:
            problems.append(Problem(
                "checkpoint_mismatch", "ledger", str(seq),
                f"checkpoint {seq}:{want[:12]}…: entry {seq} now has hash {got[:12]}…: the "
                f"audit trail up to entry {seq} was rewritten",
            ))
    return problems
