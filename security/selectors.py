"""Reads for the security app's pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet

from security.models import AuditEvent, DataKey, KeyRotation


def audit_events(
    *,
    actor: str = "",
    action: str = "",
    target: str = "",
    merchant: str = "",
    date_from: date | None = None,
    date_to: date | None = None,
) -> QuerySet[AuditEvent]:
    """Audit events, newest first, filtered as the audit log page asks.

    ``actor`` matches the actor's id or part of their label; ``action`` is an
    exact action or a prefix ending in ``.`` or ``*`` (``auth.``); ``target`` is
    a target id or ``type:id``; dates are inclusive UTC days.
    """
    qs = AuditEvent.objects.order_by("-sequence")
    if actor:
        qs = qs.filter(Q(actor_id=actor) | Q(actor_label__icontains=actor))
    if action:
        if action.endswith(("*", ".")):
            qs = qs.filter(action__startswith=action.rstrip("*"))
        else:
            qs = qs.filter(action=action)
    if target:
        kind, sep, ident = target.rpartition(":")
        qs = qs.filter(target_type=kind, target_id=ident) if sep else qs.filter(target_id=target)
    if merchant:
        qs = qs.filter(merchant_id=merchant)
    if date_from:
        qs = qs.filter(occurred_at__gte=datetime.combine(date_from, time.min, tzinfo=UTC))
    if date_to:
        qs = qs.filter(occurred_at__lt=datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=UTC))
    return qs


@dataclass(frozen=True)
class DataKeyCounts:
    by_kek: list[dict[str, Any]]  # live data keys per KEK: {"kek_id", "n"}
    behind: int  # live data keys not yet wrapped by the active KEK
    shredded: int


def data_key_counts(*, active_kek_id: str) -> DataKeyCounts:
    """How many data keys each KEK wraps, how many still need re-wrapping, how many are shredded."""
    by_kek: list[dict[str, Any]] = [
        dict(row)
        for row in DataKey.objects.filter(shredded_at__isnull=True)
        .values("kek_id")
        .annotate(n=Count("id"))
        .order_by("kek_id")
    ]
    return DataKeyCounts(
        by_kek=by_kek,
        behind=sum(row["n"] for row in by_kek if row["kek_id"] != active_kek_id),
        shredded=DataKey.objects.filter(shredded_at__isnull=False).count(),
    )


def key_rotations_recent(limit: int = 10) -> list[KeyRotation]:
    return list(KeyRotation.objects.all()[:limit])


def key_rotation_by_public_id(public_id: str) -> KeyRotation | None:
    """The rotation a progress URL names (``krot_...``), or None."""
    return KeyRotation.objects.filter(public_id=public_id).first()
