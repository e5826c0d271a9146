"""Reads for the security app's pages."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Q, QuerySet

from security.models import AuditEvent


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
