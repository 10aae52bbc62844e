"""The readable audit log (who, when, what changed old -> new, why)."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db import models

from hepatrial.trials.audit.base import (
    AuditedModel,
    audited_models,
)
from hepatrial.trials.audit.chain import _canon, _history_model, _tracked_pk_attname


def _participant_filter(model: type[models.Model], participant: Any) -> dict[str, Any] | None:
    names = {f.name for f in model._meta.get_fields()}
    if model._meta.label_lower == "trials.participant":
        return {"id": participant.pk}
    if "participant" in names:
        return {"participant_id": participant.pk}
    return None


def history_entries(participant_id: str | None = None) -> list[dict[str, Any]]:
    """The audit log as plain dicts, oldest first (history_date, model, history id).

    Each entry: ``when`` (aware UTC datetime), ``who`` (username or ""), ``model``,
    ``object`` (str of the row), ``object_pk``, ``action`` (created/changed/deleted),
    ``changes`` (list of ``(field, old, new)``; for accounts and groups also ``permissions``,
    ``groups`` and ``password`` — the hash itself is never shown), ``reason``. With
    ``participant_id`` only the participant's own row and rows that point to the participant
    are included.
    """
    Participant = apps.get_model("trials", "Participant")
    participant = None
    if participant_id is not None:
        participant = Participant.objects.filter(study_id=participant_id).first()
        if participant is None:
            hp = Participant.history.filter(study_id=participant_id).first()
            if hp is None:
                raise LookupError(f"no participant {participant_id!r}")
            participant = Participant(pk=hp.id)
    actions = {"+": "created", "~": "changed", "-": "deleted"}
    out: list[dict[str, Any]] = []
    for model in audited_models():
        hmodel = _history_model(model)
        qs = hmodel._base_manager.select_related("history_user")
        if participant is not None:
            flt = _participant_filter(model, participant)
            if flt is None:
                continue
            qs = qs.filter(**flt)
        pk_att = _tracked_pk_attname(hmodel)
        prev_by_obj: dict[Any, Any] = {}
        tracked = [f.attname for f in hmodel.tracked_fields]
        snapshot = list(getattr(hmodel, "audit_snapshot_fields", ()))
        for h in qs.order_by("history_id"):
            obj_pk = getattr(h, pk_att)
            prev = prev_by_obj.get(obj_pk)
            changes = []
            if h.history_type == "~" and prev is not None:
                for att in tracked:
                    old, new = getattr(prev, att), getattr(h, att)
                    if _canon(old) != _canon(new):
                        changes.append((att, old, new))
                for att in snapshot:  # accounts: password, permissions, groups (models.audit)
                    old, new = getattr(prev, att), getattr(h, att)
                    if old is None or old == new:
                        continue
                    name = att.removeprefix("audit_")
                    if name == "password":
                        changes.append(("password", "(hash)", "(new hash)"))
                    else:
                        changes.append((name, old, new))
            prev_by_obj[obj_pk] = h
            try:
                label = str(h.instance)
            except Exception:  # pragma: no cover - broken FK in an old row
                label = str(obj_pk)
            out.append(
                {
                    "when": h.history_date,
                    "who": h.history_user.get_username() if h.history_user_id else "",
                    "model": model._meta.model_name,
                    "object": label,
                    "object_pk": obj_pk,
                    "action": actions.get(h.history_type, h.history_type),
                    "changes": changes,
                    "reason": h.history_change_reason or "",
                    "_key": (h.history_date, model._meta.label_lower, h.history_id),
                }
            )
    out.sort(key=lambda e: e["_key"])
    for e in out:
        del e["_key"]
    return out


def is_audited(model: type[models.Model]) -> bool:
    """True for models that derive from :class:`AuditedModel` (reason enforced, ledgered)."""
    return issubclass(model, AuditedModel)
