"""The protocol the store runs on: install, read, randomisation list."""

from __future__ import annotations

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
    """The :class:`hepatrial.protocol.models.Protocol` stored by ``hepatrial init``.

    Parsed once per content hash (per process); the stored TOML text is read only to parse
    it, so a call with the protocol parsed already reads the configuration row without it."""
    from hepatrial.protocol import loader

    cfg = TrialConfig.objects.order_by("pk").defer("toml_text").first()
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


def generate_randomisation(*, per_site: int = 200, user: Any = None) -> RandomisationList:
    """Generate and store the concealed allocation list (seeded permuted blocks, stratified by
    site; the algorithm is the pure :func:`hepatrial.protocol.randomisation.allocation_list`).

    ``per_site`` allocations (rounded up to whole blocks) per site. Deterministic for a
    protocol seed. Entries are revealed only by :func:`enrol_participant`.
    """
    from hepatrial.protocol.randomisation import RandomisationError, allocation_list
    from hepatrial.trials.audit.bulk import bulk_create

    proto = active_protocol()
    if proto.randomisation is None:
        raise StoreError(f"protocol {proto.name} has no [randomisation] section")
    user = _user(user)
    r = proto.randomisation
    ratio = {a.code: int(a.ratio) for a in proto.arms}
    arms = {a.code: a for a in Arm.objects.all()}
    sites = {s.code: s for s in Site.objects.order_by("code")}
    try:
        plan = allocation_list(
            seed=int(r.seed),
            sites=list(sites),
            block_sizes=[int(b) for b in r.block_sizes],
            ratio=ratio,
            per_site=per_site,
        )
    except RandomisationError as exc:
        raise StoreError(f"protocol {proto.name} randomisation: {exc}") from None
    with transaction.atomic():
        lst = RandomisationList(
            protocol_version=proto.version,
            seed=int(r.seed),
            block_sizes=list(r.block_sizes),
            ratio=ratio,
            created_at=timezone.now(),
        )
        lst.save(user=user)
        entries = [
            RandomisationEntry(
                allocation_list=lst,
                site=sites[a.site],
                sequence=a.sequence,
                block=a.block,
                arm=arms[a.arm],
            )
            for a in plan
        ]
        bulk_create(RandomisationEntry, entries, user=user)
    return lst
