# ruff: noqa: RUF012
"""The audit ledger (hash chain over every history row) and the audited accounts.

User accounts and groups are audited like trial records (ICH E6(R3) 4.2.2; 21 CFR 11.10(d),
11.300): each has a ledgered history. Besides the account's own columns, every history row of
an account holds a *snapshot* of what the auth tables grant it, taken from the database when
the row is written (:class:`AccountHistory`):

* ``audit_password`` — sha256 of the stored password hash (not the hash: the salt stays in
  ``auth_user``, so the snapshot does not help to guess a password);
* ``audit_permissions`` — the account's own permissions, ``["app_label.codename", ...]``;
* ``audit_groups`` — the names of its groups;

and a group's history row holds its permissions. A history row is written whenever these
change: a save of the account (password changes and resets go through
:func:`hepatrial.trials.services.accounts.change_password`), and the ``m2m_changed`` signals
of ``user_permissions``, ``groups`` and a group's ``permissions`` — the one place the store
uses a signal, because Django's admin and ``user.groups.add()`` write those tables directly —
and the deletion of a group or permission (its grants go with it). ``hepatrial audit verify``
recomputes the snapshot from the live tables, so a grant, a group membership or a password
hash written by SQL is reported.

Sign-in attempts, lockouts and unlocks are :class:`~hepatrial.trials.models.accounts.LoginEvent`
rows, recorded from Django's ``user_logged_in``/``user_login_failed`` and django-axes'
``user_locked_out`` signals (every sign-in form: the admin's, the eCRF's, the test client's).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import models
from django.db.models.signals import m2m_changed, post_delete, pre_delete
from django.utils import timezone
from simple_history import register
from simple_history.models import HistoricalRecords

from hepatrial.errors import AuditTrailImmutable
from hepatrial.trials.audit.base import AuditedHistoricalRecords, LedgeredHistory


class AuditLedger(models.Model):
    """Append-only hash chain over every history row (see :mod:`hepatrial.trials.audit`).

    ``chain_hash`` is :func:`~hepatrial.trials.audit.chain.entry_hash` of the entry in its
    ``format``: format 2 (every entry written since migration 0004) covers every column
    (seq, history model, history pk, object pk, history type, recorded at, digest, previous
    hash); format 1 (``format`` NULL, entries written before) covers seq, model, history pk,
    digest and previous hash. The ledger is the audit trail's own integrity record and so has
    no history of its own.
    """

    audit_exempt = True

    seq = models.PositiveBigIntegerField(unique=True)
    history_model = models.CharField(max_length=100)
    history_pk = models.BigIntegerField()
    object_pk = models.CharField(max_length=64)
    history_type = models.CharField(max_length=1)
    digest = models.CharField(max_length=64)
    prev_hash = models.CharField(max_length=64)
    chain_hash = models.CharField(max_length=64)
    recorded_at = models.DateTimeField()
    #: chain-hash format of the entry: NULL = 1 (before migration 0004), 2 = every column
    format = models.PositiveSmallIntegerField(null=True)

    class Meta:
        ordering = ["seq"]
        constraints = [
            models.UniqueConstraint(fields=["history_model", "history_pk"], name="uniq_ledger_row")
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.history_model}:{self.history_pk}"

    def save(self, *args: object, **kwargs: object) -> None:
        if not self._state.adding:
            raise AuditTrailImmutable(f"audit ledger row {self.seq} cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> None:
        raise AuditTrailImmutable(f"audit ledger row {self.seq} cannot be deleted")


# ---------------------------------------------------------------- snapshots of the auth tables
def _names(values: Iterable[str]) -> str:
    """Canonical text of a set of names: a sorted JSON list."""
    return json.dumps(sorted(values), separators=(",", ":"), ensure_ascii=False)


def password_fingerprint(password_hash: str | None) -> str | None:
    """sha256 of a stored password hash (``None`` for NULL)."""
    if password_hash is None:
        return None
    return hashlib.sha256(str(password_hash).encode("utf-8")).hexdigest()


def _user_snapshots(user_ids: Iterable[int] | None = None) -> dict[int, dict[str, str | None]]:
    """``{user id: {audit_password, audit_permissions, audit_groups}}`` from the live tables
    (every user when ``user_ids`` is None)."""
    User = get_user_model()
    users = User._base_manager.all()
    perms = User.user_permissions.through.objects.all()
    groups = User.groups.through.objects.all()
    if user_ids is not None:
        ids = list(user_ids)
        users, perms, groups = (users.filter(pk__in=ids), perms.filter(user_id__in=ids),
                                groups.filter(user_id__in=ids))
    by_perm: dict[int, list[str]] = defaultdict(list)
    for uid, app, code in perms.values_list(
        "user_id", "permission__content_type__app_label", "permission__codename"
    ):
        by_perm[uid].append(f"{app}.{code}")
    by_group: dict[int, list[str]] = defaultdict(list)
    for uid, name in groups.values_list("user_id", "group__name"):
        by_group[uid].append(name)
    return {
        uid: {
            "audit_password": password_fingerprint(pw),
            "audit_permissions": _names(by_perm.get(uid, ())),
            "audit_groups": _names(by_group.get(uid, ())),
        }
        for uid, pw in users.values_list("pk", "password")
    }


def _group_snapshots(group_ids: Iterable[int] | None = None) -> dict[int, dict[str, str | None]]:
    """``{group id: {audit_permissions}}`` from the live tables."""
    groups = Group.objects.all()
    perms = Group.permissions.through.objects.all()
    if group_ids is not None:
        ids = list(group_ids)
        groups, perms = groups.filter(pk__in=ids), perms.filter(group_id__in=ids)
    by_perm: dict[int, list[str]] = defaultdict(list)
    for gid, app, code in perms.values_list(
        "group_id", "permission__content_type__app_label", "permission__codename"
    ):
        by_perm[gid].append(f"{app}.{code}")
    return {gid: {"audit_permissions": _names(by_perm.get(gid, ()))}
            for gid in groups.values_list("pk", flat=True)}


class _SnapshotHistory(LedgeredHistory):
    """A ledgered history row that also records a snapshot of the auth tables (see above)."""

    #: extra history columns recomputed from the live tables by ``audit verify``
    audit_snapshot_fields: tuple[str, ...] = ()
    #: they were added by migration 0004: left out of digests while NULL (older rows)
    audit_added_fields: tuple[str, ...] = ()

    class Meta:
        abstract = True

    @classmethod
    def live_snapshots(cls, pks: Iterable[Any] | None = None) -> dict[Any, dict[str, Any]]:
        """The snapshot columns as the live tables give them now, per object pk."""
        raise NotImplementedError

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self._state.adding:
            snap = self.live_snapshots([self.id]).get(self.id)  # type: ignore[attr-defined]
            for name in self.audit_snapshot_fields:
                setattr(self, name, None if snap is None else snap[name])
            if snap is None:  # a deleted object: nothing is granted any more
                for name in self.audit_snapshot_fields:
                    if name != "audit_password":
                        setattr(self, name, "[]")
        super().save(*args, **kwargs)


class AccountHistory(_SnapshotHistory):
    """Base of the user history: password fingerprint, permissions and groups per row."""

    audit_password = models.CharField(max_length=64, null=True)
    audit_permissions = models.TextField(null=True)
    audit_groups = models.TextField(null=True)

    audit_snapshot_fields = ("audit_password", "audit_permissions", "audit_groups")
    audit_added_fields = audit_snapshot_fields

    class Meta:
        abstract = True

    @classmethod
    def live_snapshots(cls, pks: Iterable[Any] | None = None) -> dict[Any, dict[str, Any]]:
        return _user_snapshots(pks)


class GroupHistory(_SnapshotHistory):
    """Base of the group history: the group's permissions per row."""

    audit_permissions = models.TextField(null=True)

    audit_snapshot_fields = ("audit_permissions",)

    class Meta:
        abstract = True

    @classmethod
    def live_snapshots(cls, pks: Iterable[Any] | None = None) -> dict[Any, dict[str, Any]]:
        return _group_snapshots(pks)


# User accounts are audited too (ICH E6(R3) 4.2.2: account creation and changes); the password
# hash itself is not copied into the history (its fingerprint is).
register(
    get_user_model(),
    app="hepatrial.trials",
    records_class=AuditedHistoricalRecords,
    excluded_fields=["password"],
    bases=[AccountHistory],
)
register(Group, app="hepatrial.trials", records_class=AuditedHistoricalRecords,
         bases=[GroupHistory])


# ------------------------------------------------ m2m grants: a history row per changed account
def _acting(instance: Any) -> tuple[Any, str | None]:
    """Who changes ``instance`` and why: its ``_history_user``/``_change_reason`` (set by the
    services and the admin), else the signed-in user of the request (simple_history's
    middleware)."""
    user = getattr(instance, "_history_user", None)
    if user is None:
        request = getattr(HistoricalRecords.context, "request", None)
        req_user = getattr(request, "user", None)
        if req_user is not None and req_user.is_authenticated:
            user = req_user
    reason = getattr(instance, "_change_reason", None)
    return user, (str(reason).strip() or None) if reason is not None else None


def write_history_row(model: type[models.Model], pk: Any, *, user: Any, reason: str | None,
                      history_type: str = "~") -> Any:
    """Write (and ledger) one history row of ``model`` row ``pk`` as it is stored now; for
    changes that do not save the row itself (its grants)."""
    H = model.history.model  # type: ignore[attr-defined]
    stored = model._base_manager.filter(pk=pk).first()
    if stored is None:
        return None
    attrs = {f.attname: getattr(stored, f.attname) for f in H.tracked_fields}
    row = H(history_date=timezone.now(), history_type=history_type,
            history_user_id=getattr(user, "pk", None), history_change_reason=reason, **attrs)
    row.save()
    return row


def _affected(sender: Any, instance: Any, reverse: bool, pks: Iterable[Any] | None
              ) -> tuple[type[models.Model], list[Any]]:
    User = get_user_model()
    if sender is Group.permissions.through:
        return Group, ([instance.pk] if not reverse else sorted(pks or ()))
    return User, ([instance.pk] if not reverse else sorted(pks or ()))


def _on_m2m_changed(sender: Any, instance: Any, action: str, reverse: bool, model: Any,
                    pk_set: set[Any] | None, **kwargs: Any) -> None:
    if action == "pre_clear":
        if reverse:
            field = _reverse_field(sender, instance)
            instance._hepatrial_cleared = sorted(
                sender.objects.filter(**{field: instance.pk}).values_list(
                    _other_field(sender, field), flat=True))
        return
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if action == "post_clear":
        pks = getattr(instance, "_hepatrial_cleared", None) if reverse else None
        instance._hepatrial_cleared = None
    else:
        if not pk_set:
            return
        pks = pk_set
    target, ids = _affected(sender, instance, reverse, pks)
    if not ids:
        return
    user, reason = _acting(instance)
    what = {"post_add": "granted", "post_remove": "withdrawn", "post_clear": "cleared"}[action]
    if reason is None:
        reason = f"{_field_label(sender)} {what}"
    for pk in ids:
        write_history_row(target, pk, user=user, reason=reason)


def _reverse_field(sender: Any, instance: Any) -> str:
    """The through table's column naming ``instance`` (the reverse side of the relation)."""
    for f in sender._meta.concrete_fields:
        if f.is_relation and isinstance(instance, f.related_model):
            return f.attname
    raise LookupError(sender)  # pragma: no cover


def _other_field(sender: Any, field: str) -> str:
    return next(f.attname for f in sender._meta.concrete_fields
                if f.is_relation and f.attname != field)


def _field_label(sender: Any) -> str:
    User = get_user_model()
    if sender is User.user_permissions.through:
        return "user permissions"
    if sender is User.groups.through:
        return "group membership"
    return "group permissions"


def _on_pre_delete_grantor(sender: Any, instance: Any, **kwargs: Any) -> None:
    """A group or permission is about to be deleted: its grants go with it (no m2m signal),
    so remember whom it reached."""
    User = get_user_model()
    if isinstance(instance, Group):
        instance._hepatrial_reached = {User: sorted(instance.user_set.values_list("pk", flat=True))}
    elif isinstance(instance, Permission):
        instance._hepatrial_reached = {
            User: sorted(instance.user_set.values_list("pk", flat=True)),
            Group: sorted(instance.group_set.values_list("pk", flat=True)),
        }


def _on_post_delete_grantor(sender: Any, instance: Any, **kwargs: Any) -> None:
    reached = getattr(instance, "_hepatrial_reached", None) or {}
    user, reason = _acting(instance)
    kind = "group" if isinstance(instance, Group) else "permission"
    why = reason or f"{kind} {instance} deleted"
    for target, pks in reached.items():
        for pk in pks:
            write_history_row(target, pk, user=user, reason=why)


_User = get_user_model()
for _through in (_User.user_permissions.through, _User.groups.through,
                 Group.permissions.through):
    m2m_changed.connect(_on_m2m_changed, sender=_through,
                        dispatch_uid=f"hepatrial-audit-m2m-{_through._meta.label_lower}")
for _grantor in (Group, Permission):
    pre_delete.connect(_on_pre_delete_grantor, sender=_grantor,
                       dispatch_uid=f"hepatrial-audit-pre-delete-{_grantor._meta.label_lower}")
    post_delete.connect(_on_post_delete_grantor, sender=_grantor,
                        dispatch_uid=f"hepatrial-audit-post-delete-{_grantor._meta.label_lower}")


# Sign-in attempts and lockouts are recorded by hepatrial.trials.services.login_events,
# connected in TrialsConfig.ready() (a model module does not import the services).
