"""The tamper-evident audit log.

``record(...)`` appends an :class:`~security.models.AuditEvent` inside the
caller's transaction. Each event's hash covers its canonical JSON and the
previous event's hash, so the rows form one chain. A transaction-scoped lock
serialises appends so the chain stays linear under concurrent writers.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from security import context
from security.models import AuditEvent

GENESIS_HASH = "0" * 64
_ADVISORY_LOCK_KEY = 0x6670_6175_6469_74  # "fpaudit"


class System:
    """The actor for events raised by tasks, commands and the platform itself."""

    pk = None
    label = "system"


SYSTEM = System()


def _actor_fields(actor: Any) -> tuple[str, str]:
    if actor is None or isinstance(actor, System):
        return "", "system"
    if isinstance(actor, str):
        return "", actor[:254]
    actor_id = getattr(actor, "public_id", None) or str(getattr(actor, "pk", "") or "")
    label = getattr(actor, "email", None) or str(actor)
    return str(actor_id)[:64], str(label)[:254]


def _target_fields(target: Any) -> tuple[str, str]:
    if target is None:
        return "", ""
    if isinstance(target, tuple):
        kind, ident = target
        return str(kind)[:100], str(ident)[:64]
    meta = getattr(target, "_meta", None)
    kind = meta.label_lower if meta else target.__class__.__name__.lower()
    ident = getattr(target, "public_id", None) or getattr(target, "pk", "")
    return kind, str(ident)[:64]


def _merchant_id(merchant: Any) -> str:
    if merchant is None:
        return ""
    if isinstance(merchant, str):
        return merchant[:64]
    return str(getattr(merchant, "public_id", None) or merchant.pk)[:64]


def canonical_payload(event: AuditEvent) -> bytes:
    """The bytes that are hashed: every field but ``hash``, in a fixed order."""
    occurred: datetime = event.occurred_at
    data = {
        "sequence": event.sequence,
        "occurred_at": occurred.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor_id": event.actor_id,
        "actor_label": event.actor_label,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "merchant_id": event.merchant_id,
        "ip": event.ip or "",
        "user_agent": event.user_agent,
        "details": event.details,
        "prev_hash": event.prev_hash,
    }
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def compute_hash(event: AuditEvent) -> str:
    return hashlib.sha256(canonical_payload(event)).hexdigest()


def _lock_chain() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ADVISORY_LOCK_KEY])


def record(
    *,
    actor: Any,
    action: str,
    target: Any = None,
    merchant: Any = None,
    details: dict[str, Any] | None = None,
    ip: str | None = None,
    user_agent: str | None = None,
) -> AuditEvent:
    """Append one audit event in the current transaction (or a new one).

    ``details`` must not contain raw personal data: pass ids, counts, masked values.
    """
    ctx = context.current()
    actor_id, actor_label = _actor_fields(actor)
    target_type, target_id = _target_fields(target)
    with transaction.atomic():
        _lock_chain()
        last = AuditEvent.objects.order_by("-sequence").only("sequence", "hash").first()
        event = AuditEvent(
            sequence=(last.sequence + 1) if last else 1,
            occurred_at=timezone.now(),
            actor_id=actor_id,
            actor_label=actor_label,
            action=action,
            target_type=target_type,
            target_id=target_id,
            merchant_id=_merchant_id(merchant),
            ip=ip if ip is not None else ctx.ip,
            user_agent=(user_agent if user_agent is not None else ctx.user_agent)[:300],
            details=json.loads(json.dumps(details or {}, default=str)),
            prev_hash=last.hash if last else GENESIS_HASH,
        )
        event.hash = compute_hash(event)
        event.save(force_insert=True)
    return event
