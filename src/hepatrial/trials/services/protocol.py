"""The protocol the store runs on: install, read, randomisation list."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from hepatrial.trials.base import require_reason
from hepatrial.trials.models import (
    Arm,
    RandomisationEntry,
    RandomisationList,
    Site,
    TrialConfig,
)
from hepatrial.trials.services._common import (
    StoreError,
    _user,
)

_protocol_cache: dict[str, Any] = {}


def _protocol_text(name_or_path: str | Path) -> tuple[Any, str]:
    from hepatrial.protocol import loader

    proto = loader.load_protocol(name_or_path)
    p = Path(str(name_or_path))
    if isinstance(name_or_path, Path) or str(name_or_path).endswith(".toml") or p.is_file():
        text = p.read_text(encoding="utf-8")
    else:
        text = loader.builtin_path(str(name_or_path)).read_text(encoding="utf-8")
    return proto, text


def active_protocol() -> Any:
    """The :class:`hepatrial.protocol.models.Protocol` stored by ``hepatrial init``."""
    from hepatrial.protocol import loader

    cfg = TrialConfig.objects.order_by("pk").first()
    if cfg is None:
        raise StoreError("no protocol loaded: run `hepatrial init --protocol NAME` first")
    proto = _protocol_cache.get(cfg.content_hash)
    if proto is None:
        proto, issues = loader.validate_text(cfg.toml_text, f"store:{cfg.name}")
        if proto is None:
            raise StoreError(f"stored protocol {cfg} is invalid: {'; '.join(map(str, issues))}")
        _protocol_cache[cfg.content_hash] = proto
    return proto


def install_protocol(
    name_or_path: str | Path, *, user: Any = None, reason: str | None = None
) -> tuple[TrialConfig, str]:
    """Load a protocol into the store (``hepatrial init``); create its sites and arms.

    Returns ``(config, action)`` with action ``created``, ``unchanged`` (same content hash:
    nothing written) or ``updated`` (another version/content: ``reason`` required; sites and
    arms new in the protocol are added, none are removed). A randomised protocol gets its
    concealed allocation list (:func:`generate_randomisation`) when first installed.
    """
    proto, text = _protocol_text(name_or_path)
    user = _user(user)
    digest = proto.content_hash()
    with transaction.atomic():
        cfg = TrialConfig.objects.order_by("pk").first()
        if cfg is not None and cfg.content_hash == digest:
            return cfg, "unchanged"
        if cfg is None:
            cfg = TrialConfig(
                name=proto.name,
                version=proto.version,
                content_hash=digest,
                toml_text=text,
                design=proto.design,
                loaded_at=timezone.now(),
            )
            cfg.save(user=user)
            action = "created"
        else:
            if cfg.name != proto.name:
                raise StoreError(
                    f"this store runs protocol {cfg.name!r}; it cannot be switched to "
                    f"{proto.name!r} (use a new database)"
                )
            why = require_reason(
                reason, f"replacing protocol {cfg.name} v{cfg.version} by v{proto.version}"
            )
            cfg.version = proto.version
            cfg.content_hash = digest
            cfg.toml_text = text
            cfg.design = proto.design
            cfg.loaded_at = timezone.now()
            cfg.save(user=user, reason=why)
            action = "updated"
        for s in proto.sites:
            if not Site.objects.filter(code=s.code).exists():
                Site(code=s.code, name=s.name).save(user=user)
        for a in proto.arms:
            if not Arm.objects.filter(code=a.code).exists():
                Arm(code=a.code, label=a.label).save(user=user)
        if proto.design == "randomised" and not RandomisationList.objects.exists():
            generate_randomisation(user=user)
    _protocol_cache.clear()
    return cfg, action


def _block(rng: random.Random, size: int, ratio: Mapping[str, int], what: str) -> list[str]:
    total = sum(ratio.values())
    if size % total:
        raise StoreError(f"{what}: block size {size} is not a multiple of the ratio total {total}")
    block = [code for code, r in ratio.items() for _ in range(size // total * r)]
    rng.shuffle(block)
    return block


def generate_randomisation(*, per_site: int = 200, user: Any = None) -> RandomisationList:
    """Generate the concealed allocation list: permuted blocks, stratified by site, seeded.

    For each site a separate stream ``random.Random(sha256(seed:site))`` picks a block size
    from the protocol's ``block_sizes`` and shuffles a block with the arms in ``ratio``;
    ``per_site`` allocations (rounded up to whole blocks) per site. Deterministic for a
    protocol seed. Entries are revealed only by :func:`enrol_participant`.
    """
    proto = active_protocol()
    if proto.randomisation is None:
        raise StoreError(f"protocol {proto.name} has no [randomisation] section")
    user = _user(user)
    r = proto.randomisation
    ratio = {a.code: int(a.ratio) for a in proto.arms}
    arms = {a.code: a for a in Arm.objects.all()}
    with transaction.atomic():
        lst = RandomisationList(
            protocol_version=proto.version,
            seed=int(r.seed),
            block_sizes=list(r.block_sizes),
            ratio=ratio,
            created_at=timezone.now(),
        )
        lst.save(user=user)
        entries = []
        for site in Site.objects.order_by("code"):
            digest = hashlib.sha256(f"{r.seed}:{site.code}".encode()).hexdigest()
            rng = random.Random(int(digest[:16], 16))
            seq, block_no = 0, 0
            while seq < per_site:
                block_no += 1
                size = rng.choice(list(r.block_sizes))
                for code in _block(rng, int(size), ratio, f"protocol {proto.name}"):
                    seq += 1
                    entries.append(
                        RandomisationEntry(
                            allocation_list=lst,
                            site=site,
                            sequence=seq,
                            block=block_no,
                            arm=arms[code],
                        )
                    )
        from hepatrial.trials import audit

        audit.bulk_create(RandomisationEntry, entries, user=user)
    return lst
