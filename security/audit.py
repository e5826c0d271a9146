"""The tamper-evident audit log.

``record(...)`` appends an :class:`~security.models.AuditEvent` inside the
caller's transaction. Each event's hash covers its canonical JSON and the
previous event's hash, so the rows form one chain. Appends first move the
one-row :class:`~security.models.AuditChainHead` forward with an ``UPDATE``
(a row lock on PostgreSQL, the write lock on SQLite) held until the caller's
transaction ends, so concurrent writers queue and the chain stays linear; a
rolled-back transaction rolls the head back with its event.

The database refuses ``UPDATE`` and ``DELETE`` on the event table (triggers
created by migration ``0002``). Deleting is allowed only inside
:func:`allow_audit_deletion`, used by archiving and by ``manage.py flush``.
:func:`verify_chain` (``manage.py verify_audit_chain``) names the first event
that was altered, deleted or reordered.
"""

from __future__ import annotations

import contextvars
import hashlib
import ipaddress
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from security import context
from security.models import AuditChainHead, AuditCheckpoint, AuditEvent

GENESIS_HASH = "0" * 64
HEAD_ID = 1


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
    if getattr(actor, "is_anonymous", False):
        return "", "anonymous"
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


def _normalise_ip(ip: str | None) -> str | None:
    """The form the database gives back, so the hash verifies after a round trip."""
    if not ip:
        return None
    try:
        return ipaddress.ip_address(ip.split("%", 1)[0]).compressed
    except ValueError:
        return None


def _payload(
    *,
    sequence: int,
    occurred_at: datetime,
    actor_id: str,
    actor_label: str,
    action: str,
    target_type: str,
    target_id: str,
    merchant_id: str,
    ip: str | None,
    user_agent: str,
    details: Any,
    prev_hash: str,
) -> bytes:
    data = {
        "sequence": sequence,
        "occurred_at": occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor_id": actor_id,
        "actor_label": actor_label,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "merchant_id": merchant_id,
        "ip": ip or "",
        "user_agent": user_agent,
        "details": details,
        "prev_hash": prev_hash,
    }
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def canonical_payload(event: AuditEvent) -> bytes:
    """The bytes that are hashed: every field but ``hash``, in a fixed order."""
    return _payload(
        sequence=event.sequence,
        occurred_at=event.occurred_at,
        actor_id=event.actor_id,
        actor_label=event.actor_label,
        action=event.action,
        target_type=event.target_type,
        target_id=event.target_id,
        merchant_id=event.merchant_id,
        ip=event.ip,
        user_agent=event.user_agent,
        details=event.details,
        prev_hash=event.prev_hash,
    )


def compute_hash(event: AuditEvent) -> str:
    return hashlib.sha256(canonical_payload(event)).hexdigest()


# --- Appending ---------------------------------------------------------------------------------

_HEAD_TABLE = AuditChainHead._meta.db_table
_ADVANCE_SQL = (
    f"UPDATE {_HEAD_TABLE} SET last_sequence = last_sequence + 1 "  # noqa: S608 - constant table name
    f"WHERE id = {HEAD_ID} RETURNING last_sequence, last_hash"
)
_SET_HASH_SQL = f"UPDATE {_HEAD_TABLE} SET last_hash = %s WHERE id = {HEAD_ID}"  # noqa: S608


def _ensure_head(using: str) -> None:
    """Create the head row if it is missing (a fresh or flushed database)."""
    last = AuditEvent.objects.using(using).order_by("-sequence").only("sequence", "hash").first()
    checkpoint = AuditCheckpoint.objects.using(using).order_by("-through_sequence").first()
    if last is not None:
        sequence, last_hash = last.sequence, last.hash
    elif checkpoint is not None:
        sequence, last_hash = checkpoint.through_sequence, checkpoint.last_hash
    else:
        sequence, last_hash = 0, GENESIS_HASH
    with transaction.atomic(using=using):
        AuditChainHead.objects.using(using).get_or_create(
            id=HEAD_ID, defaults={"last_sequence": sequence, "last_hash": last_hash}
        )


def _advance_head(using: str) -> tuple[int, str]:
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(_ADVANCE_SQL)
        row = cursor.fetchone()
    if row is None:
        _ensure_head(using)
        with connection.cursor() as cursor:
            cursor.execute(_ADVANCE_SQL)
            row = cursor.fetchone()
    return int(row[0]), str(row[1])


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
    using = DEFAULT_DB_ALIAS
    event = AuditEvent(
        actor_id=actor_id,
        actor_label=actor_label,
        action=action[:100],
        target_type=target_type,
        target_id=target_id,
        merchant_id=_merchant_id(merchant),
        ip=_normalise_ip(ip if ip is not None else ctx.ip),
        user_agent=(user_agent if user_agent is not None else ctx.user_agent)[:300],
        details=json.loads(json.dumps(details or {}, default=str)),
    )
    connection = connections[using]
    # No savepoint: an audit write that fails must fail the caller's whole action.
    with transaction.atomic(using=using, savepoint=False):
        if connection.vendor == "postgresql":
            _append_pg(connection, event)
        else:
            event.sequence, event.prev_hash = _advance_head(using)
            event.occurred_at = timezone.now()
            event.hash = compute_hash(event)
            event.save(force_insert=True, using=using)
            with connection.cursor() as cursor:
                cursor.execute(_SET_HASH_SQL, [event.hash])
    return event


_EVENT_TABLE = AuditEvent._meta.db_table
# PostgreSQL: one statement locks the head row, hashes the canonical JSON (built here with two
# placeholders for the sequence and previous hash, filled in by the database), inserts the event
# and moves the head. The lock is then held only for this statement and the commit.
_APPEND_PG_SQL = f"""
WITH head AS (
    SELECT last_sequence + 1 AS seq, last_hash AS prev FROM {_HEAD_TABLE} WHERE id = {HEAD_ID} FOR UPDATE
), hashed AS (
    SELECT seq, prev, encode(sha256(convert_to(
        replace(replace(%(template)s, %(seq_mark)s, seq::text), %(prev_mark)s, prev), 'UTF8')), 'hex') AS hash
    FROM head
), ins AS (
    INSERT INTO {_EVENT_TABLE} (sequence, occurred_at, actor_id, actor_label, action, target_type, target_id,
        merchant_id, ip, user_agent, details, prev_hash, hash)
    SELECT seq, %(occurred_at)s, %(actor_id)s, %(actor_label)s, %(action)s, %(target_type)s, %(target_id)s,
        %(merchant_id)s, %(ip)s::inet, %(user_agent)s, %(details)s::jsonb, prev, hash FROM hashed
    RETURNING id, sequence, prev_hash, hash
)
UPDATE {_HEAD_TABLE} AS h SET last_sequence = ins.sequence, last_hash = ins.hash
FROM ins WHERE h.id = {HEAD_ID}
RETURNING ins.id, ins.sequence, ins.prev_hash, ins.hash
"""  # noqa: S608 - constant table names; every value is a parameter


def _append_pg(connection: Any, event: AuditEvent) -> None:
    marker = secrets.token_hex(16)
    seq_mark, prev_mark = f"@seq-{marker}@", f"@prev-{marker}@"
    event.occurred_at = timezone.now()
    event.sequence, event.prev_hash = 0, prev_mark
    template = _payload(
        sequence=seq_mark,  # type: ignore[arg-type]  # a string placeholder, filled in by the database
        occurred_at=event.occurred_at, actor_id=event.actor_id, actor_label=event.actor_label,
        action=event.action, target_type=event.target_type, target_id=event.target_id,
        merchant_id=event.merchant_id, ip=event.ip, user_agent=event.user_agent, details=event.details,
        prev_hash=prev_mark,
    ).decode()  # fmt: skip
    params = {
        "template": template,
        "seq_mark": f'"{seq_mark}"',
        "prev_mark": prev_mark,
        "occurred_at": event.occurred_at,
        "actor_id": event.actor_id,
        "actor_label": event.actor_label,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "merchant_id": event.merchant_id,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "details": json.dumps(event.details),
    }
    for attempt in range(2):
        with connection.cursor() as cursor:
            cursor.execute(_APPEND_PG_SQL, params)
            row = cursor.fetchone()
        if row is not None:
            break
        if attempt == 0:
            _ensure_head(connection.alias)
    else:
        raise RuntimeError("The audit chain head is missing and could not be created.")
    event.pk, event.sequence, event.prev_hash, event.hash = row
    event._state.adding = False
    event._state.db = connection.alias


# --- The append-only guard ----------------------------------------------------------------------

_deletion_allowed: contextvars.ContextVar[str] = contextvars.ContextVar("fp_audit_delete", default="")
PG_SETTING = "fp.audit_delete"


def _sqlite_delete_allowed() -> int:
    return 1 if _deletion_allowed.get() else 0


def install_sqlite_functions(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: the SQLite trigger asks this function."""
    if connection.vendor == "sqlite":
        connection.connection.create_function("fp_audit_delete_allowed", 0, _sqlite_delete_allowed)


@contextmanager
def allow_audit_deletion(
    reason: Literal["archive", "flush"], *, using: str = DEFAULT_DB_ALIAS
) -> Iterator[None]:
    """The one path on which the triggers let audit rows be deleted.

    Used by :mod:`security.archive` (inside its transaction) and by the
    ``flush`` command (tests, ``manage.py flush``), nowhere else.
    """
    token = _deletion_allowed.set(reason)
    connection = connections[using]
    is_pg = connection.vendor == "postgresql"
    local = connection.in_atomic_block
    try:
        if is_pg:
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config(%s, %s, %s)", [PG_SETTING, reason, local])
        yield
    finally:
        _deletion_allowed.reset(token)
        if is_pg and not local:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT set_config(%s, '', false)", [PG_SETTING])
            except Exception:  # noqa: BLE001, S110 - the connection may be gone; the setting dies with it
                pass


# --- Verifying -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    first_sequence: int
    last_sequence: int
    bad_sequence: int | None = None
    problem: str = ""

    def describe(self) -> str:
        if self.ok:
            if not self.checked:
                return "Audit chain intact: no events to check."
            return (
                f"Audit chain intact: {self.checked} events checked "
                f"(#{self.first_sequence} to #{self.last_sequence})."
            )
        return f"Audit chain BROKEN at event #{self.bad_sequence}: {self.problem}"


_FIELDS = (
    "sequence",
    "occurred_at",
    "actor_id",
    "actor_label",
    "action",
    "target_type",
    "target_id",
    "merchant_id",
    "ip",
    "user_agent",
    "details",
    "prev_hash",
    "hash",
)


def latest_checkpoint(using: str = DEFAULT_DB_ALIAS) -> tuple[int, str] | None:
    cp = AuditCheckpoint.objects.using(using).order_by("-through_sequence").first()
    return (cp.through_sequence, cp.last_hash) if cp else None


def verify_chain(
    *,
    checkpoint: tuple[int, str] | None = None,
    using: str = DEFAULT_DB_ALIAS,
    batch_size: int = 5000,
) -> ChainReport:
    """Walk the chain in sequence order from the checkpoint (or genesis).

    ``checkpoint`` is ``(N, H)``: "archived up to sequence N with last hash H";
    by default the latest :class:`~security.models.AuditCheckpoint`.
    """
    if checkpoint is None:
        checkpoint = latest_checkpoint(using)
    start, prev = checkpoint if checkpoint else (0, GENESIS_HASH)
    expected = start + 1
    checked = 0
    last_seen = start
    qs = AuditEvent.objects.using(using).order_by("sequence")
    before = qs.filter(sequence__lte=start).order_by("-sequence").values_list("sequence", flat=True).first()
    if checkpoint and before is not None:
        return ChainReport(
            False,
            0,
            expected,
            start,
            before,
            f"event #{before} should have been archived (checkpoint #{start})",
        )
    cursor = start
    sha256 = hashlib.sha256
    while True:
        rows = list(qs.filter(sequence__gt=cursor).values_list(*_FIELDS)[:batch_size])
        if not rows:
            break
        for (
            seq,
            occurred,
            a_id,
            a_label,
            action,
            t_type,
            t_id,
            m_id,
            ip,
            ua,
            details,
            prev_hash,
            stored,
        ) in rows:
            if seq != expected:
                return ChainReport(
                    False,
                    checked,
                    start + 1,
                    last_seen,
                    expected,
                    f"event #{expected} is missing (deleted); the next event is #{seq}"
                    if seq > expected
                    else f"event #{seq} is out of order",
                )
            if prev_hash != prev:
                return ChainReport(
                    False,
                    checked,
                    start + 1,
                    last_seen,
                    seq,
                    f"event #{seq} does not link to the event before it (reordered, or inserted out of band)",
                )
            payload = _payload(
                sequence=seq, occurred_at=occurred, actor_id=a_id, actor_label=a_label, action=action,
                target_type=t_type, target_id=t_id, merchant_id=m_id, ip=ip, user_agent=ua,
                details=details, prev_hash=prev_hash,
            )  # fmt: skip
            if sha256(payload).hexdigest() != stored:
                return ChainReport(
                    False,
                    checked,
                    start + 1,
                    last_seen,
                    seq,
                    f"event #{seq} was altered (its contents no longer match its hash)",
                )
            prev = stored
            expected = seq + 1
            last_seen = seq
            checked += 1
        cursor = last_seen
    head = AuditChainHead.objects.using(using).filter(id=HEAD_ID).first()
    if head is not None and head.last_sequence > last_seen:
        return ChainReport(
            False,
            checked,
            start + 1,
            last_seen,
            last_seen + 1,
            f"event #{last_seen + 1} is missing (deleted): the chain head says the last event is "
            f"#{head.last_sequence}",
        )
    if head is not None and head.last_sequence == last_seen and head.last_hash != prev:
        return ChainReport(
            False,
            checked,
            start + 1,
            last_seen,
            last_seen,
            f"event #{last_seen} does not match the chain head's hash",
        )
    return ChainReport(True, checked, start + 1, last_seen)
