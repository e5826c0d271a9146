"""The tamper-evident audit log.

``record(...)`` appends an :class:`~security.models.AuditEvent` inside the
caller's transaction. Each event's hash covers its canonical JSON and the
previous event's hash, so the rows form one chain. Appends first lock the
one-row :class:`~security.models.AuditChainHead` (a row lock on PostgreSQL,
the write lock on SQLite) until the caller's transaction ends, so concurrent
writers queue and the chain stays linear; a rolled-back transaction rolls the
head back with its event.

The chain is keyed: each hash is HMAC-SHA256 under ``AUDIT_CHAIN_KEY``, which
lives in the environment (or ``AUDIT_CHAIN_KEY_FILE``), never in the database,
and is computed here, never sent to the database. Someone with database
superuser rights can still edit rows, but cannot recompute a chain that
verifies. Events written before keying keep their plain SHA-256; the first
keyed event is an ``audit.chain_keyed`` cut-over event naming the key's id (a
fingerprint) and the last unkeyed event. Configuring a new key (and moving the
old one to ``AUDIT_CHAIN_PREVIOUS_KEYS``) makes the next append write another
cut-over event, from which the new key applies.

The database refuses ``UPDATE`` and ``DELETE`` on the event table (triggers
created by migration ``0002``). Deleting is allowed only inside
:func:`allow_audit_deletion`, used by archiving and by ``manage.py flush``.
:func:`verify_chain` (``manage.py verify_audit_chain``) names the first event
that was altered, deleted or reordered.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import ipaddress
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from security import context
from security.keyring import decode_key
from security.models import AuditChainHead, AuditCheckpoint, AuditEvent

GENESIS_HASH = "0" * 64
HEAD_ID = 1
CUTOVER_ACTION = "audit.chain_keyed"


# --- The chain key ---------------------------------------------------------------------------------

_KEY_ID_LABEL = b"fintech_portal audit chain key id"
_DEV_PHRASE = b"fintech_portal development-only audit chain key; never use with real data"


@dataclass(frozen=True)
class ChainKey:
    """An audit chain HMAC key and its id (a fingerprint that reveals nothing of the key)."""

    id: str
    secret: bytes = field(repr=False)

    @classmethod
    def from_secret(cls, secret: bytes) -> ChainKey:
        return cls(hmac.new(secret, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16], secret)

    def mac(self, payload: bytes) -> str:
        return hmac.new(self.secret, payload, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ChainKeys:
    current: ChainKey
    known: dict[str, ChainKey]


def chain_keys_from_settings() -> ChainKeys:
    """``AUDIT_CHAIN_KEY`` (and older keys); a development key in DEBUG; otherwise refuse."""
    from django.conf import settings

    configured = getattr(settings, "AUDIT_CHAIN_KEY", "")
    if configured:
        secret = decode_key("AUDIT_CHAIN_KEY", "", configured, exact=None, minimum=32)
    elif settings.DEBUG:
        secret = hashlib.sha256(_DEV_PHRASE).digest()
    else:
        raise ImproperlyConfigured(
            "AUDIT_CHAIN_KEY is not set. With DEBUG off the app refuses to start without it: set it "
            "(or AUDIT_CHAIN_KEY_FILE) to the base64 of at least 32 random bytes, kept out of the database "
            "and different from every other key."
        )
    current = ChainKey.from_secret(secret)
    known = {current.id: current}
    for number, material in enumerate(getattr(settings, "AUDIT_CHAIN_PREVIOUS_KEYS", []), start=1):
        old = ChainKey.from_secret(
            decode_key("AUDIT_CHAIN_PREVIOUS_KEYS", f"entry {number}", material, exact=None, minimum=32)
        )
        known.setdefault(old.id, old)
    return ChainKeys(current, known)


_keys: ChainKeys | None = None
_keys_lock = threading.Lock()


def chain_keys() -> ChainKeys:
    global _keys
    keys = _keys  # read once: the lock is only for the first load (every append asks)
    if keys is not None:
        return keys
    with _keys_lock:
        if _keys is None:
            _keys = chain_keys_from_settings()
        return _keys


def reset_chain_keys() -> None:
    global _keys
    with _keys_lock:
        _keys = None


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


def compute_hash(event: AuditEvent, key: ChainKey | None = None) -> str:
    """The keyed hash of ``event`` (under the current chain key unless ``key`` is given)."""
    return (key or chain_keys().current).mac(canonical_payload(event))


def unkeyed_hash(event: AuditEvent) -> str:
    """How events were hashed before the cut-over (and how a forger without the key would)."""
    return hashlib.sha256(canonical_payload(event)).hexdigest()


# --- Appending ---------------------------------------------------------------------------------

_HEAD_TABLE = AuditChainHead._meta.db_table
# Lock the head and read where the chain ends. SQLite: an UPDATE first, so the transaction takes
# the database's write lock at once (a read first could deadlock with another writer's upgrade).
_LOCK_SQL_PG = (
    f"SELECT last_sequence, last_hash, key_id FROM {_HEAD_TABLE} "  # noqa: S608 - constant table name
    f"WHERE id = {HEAD_ID} FOR UPDATE"
)
_LOCK_SQL_OTHER = (
    f"UPDATE {_HEAD_TABLE} SET last_sequence = last_sequence "  # noqa: S608 - constant table name
    f"WHERE id = {HEAD_ID} RETURNING last_sequence, last_hash, key_id"
)
_MOVE_SQL = (
    f"UPDATE {_HEAD_TABLE} SET last_sequence = %s, last_hash = %s, key_id = %s "  # noqa: S608
    f"WHERE id = {HEAD_ID}"
)


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


def _lock_head(using: str) -> tuple[int, str, str]:
    connection = connections[using]
    sql = _LOCK_SQL_PG if connection.vendor == "postgresql" else _LOCK_SQL_OTHER
    for attempt in range(2):
        with connection.cursor() as cursor:
            cursor.execute(sql)
            row = cursor.fetchone()
        if row is not None:
            return int(row[0]), str(row[1]), str(row[2] or "")
        if attempt == 0:
            _ensure_head(using)
    raise RuntimeError("The audit chain head is missing and could not be created.")


def _cutover_event(model: Any, key: ChainKey, head_key_id: str, last_sequence: int) -> Any:
    details: dict[str, Any] = {"key_id": key.id, "previous_key_id": head_key_id}
    if not head_key_id:
        details["unkeyed_through"] = last_sequence
    return model(
        actor_id="",
        actor_label="system",
        action=CUTOVER_ACTION,
        target_type="security.auditchainhead",
        target_id=str(HEAD_ID),
        merchant_id="",
        ip=None,
        user_agent="",
        details=details,
    )


def _append_locked(using: str, event: Any, *, model: Any = AuditEvent) -> list[Any]:
    """Append ``event`` (or only the cut-over, when ``event`` is None); the caller holds a transaction.

    The hash is computed here, in this process: the key never reaches the database.
    """
    key = chain_keys().current
    sequence, prev, head_key_id = _lock_head(using)
    rows = []
    if head_key_id != key.id:
        rows.append(_cutover_event(model, key, head_key_id, sequence))
    if event is not None:
        rows.append(event)
    if not rows:
        return rows
    occurred_at = timezone.now()
    for row in rows:
        sequence += 1
        row.sequence, row.prev_hash, row.occurred_at = sequence, prev, occurred_at
        row.hash = prev = key.mac(canonical_payload(row))
    connection = connections[using]
    if connection.vendor == "postgresql":
        _insert_pg(connection, rows, key.id)
    else:
        model.objects.using(using).bulk_create(rows)
        with connection.cursor() as cursor:
            cursor.execute(_MOVE_SQL, [sequence, prev, key.id])
    return rows


_EVENT_TABLE = AuditEvent._meta.db_table
_PG_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s, %s::inet, %s, %s::jsonb, %s, %s)"


def _insert_pg(connection: Any, rows: list[Any], key_id: str) -> None:
    """Insert the events and move the head in one statement: one round trip while the head is locked."""
    sql = (
        f"WITH ins AS (INSERT INTO {_EVENT_TABLE} (sequence, occurred_at, actor_id, actor_label, "  # noqa: S608
        "action, target_type, target_id, merchant_id, ip, user_agent, details, prev_hash, hash) "
        f"VALUES {', '.join([_PG_ROW] * len(rows))} RETURNING id, sequence) "
        f"UPDATE {_HEAD_TABLE} SET last_sequence = %s, last_hash = %s, key_id = %s WHERE id = {HEAD_ID} "
        "RETURNING (SELECT array_agg(id ORDER BY sequence) FROM ins)"
    )
    params: list[Any] = []
    for row in rows:
        params += [
            row.sequence, row.occurred_at, row.actor_id, row.actor_label, row.action, row.target_type,
            row.target_id, row.merchant_id, row.ip, row.user_agent, json.dumps(row.details),
            row.prev_hash, row.hash,
        ]  # fmt: skip
    params += [rows[-1].sequence, rows[-1].hash, key_id]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        (ids,) = cursor.fetchone()
    for row, pk in zip(rows, ids, strict=True):
        row.pk = pk
        row._state.adding = False
        row._state.db = connection.alias


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
    # No savepoint: an audit write that fails must fail the caller's whole action.
    with transaction.atomic(using=using, savepoint=False):
        _append_locked(using, event)
    return event


def ensure_keyed(*, using: str = DEFAULT_DB_ALIAS, model: Any = AuditEvent) -> Any:
    """Write the cut-over event now if the chain is not yet keyed with the current key.

    Used by the migration that introduced keying (so an existing chain is cut
    over at deploy time, not at its next event); returns the event or None.
    """
    with transaction.atomic(using=using, savepoint=False):
        rows = _append_locked(using, None, model=model)
    return rows[0] if rows else None


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
    keyed_from: int | None = None
    key_id: str = ""
    last_hash: str = ""

    def describe(self) -> str:
        if self.ok:
            if not self.checked:
                return "Audit chain intact: no events to check."
            if self.keyed_from is not None:
                keyed = f" HMAC-keyed from event #{self.keyed_from} (key {self.key_id})"
                if self.keyed_from > self.first_sequence:
                    keyed += f"; plain SHA-256 before it (#{self.first_sequence} to #{self.keyed_from - 1})"
            else:
                keyed = f" HMAC-keyed (key {self.key_id})"
            return (
                f"Audit chain intact: {self.checked} events checked "
                f"(#{self.first_sequence} to #{self.last_sequence});{keyed}. "
                f"Last hash {self.last_hash}."
            )
        return f"Audit chain BROKEN at event #{self.bad_sequence}: {self.problem}"


class ChainWalker:
    """Checks each event's hash, in chain order: plain SHA-256 before the cut-over, HMAC after.

    ``at_genesis``: the walk starts at the first event ever (so unkeyed);
    otherwise (after an archive checkpoint) the first event says which it is.
    """

    def __init__(self, keys: ChainKeys, *, at_genesis: bool) -> None:
        self.keys = keys
        self.key: ChainKey | None = None
        self.unkeyed: bool | None = True if at_genesis else None
        self.keyed_from: int | None = None

    def check(self, sequence: int, payload: bytes, stored: str, action: str, details: Any) -> str:
        """ "" when the event is intact, else the problem."""
        altered = f"event #{sequence} was altered (its contents no longer match its hash)"
        if action == CUTOVER_ACTION and isinstance(details, dict) and details.get("key_id"):
            key = self.keys.known.get(str(details["key_id"]))
            if key is None:
                return (
                    f"event #{sequence} starts HMAC-keyed hashing with audit chain key "
                    f"{details['key_id']}, which is not configured (AUDIT_CHAIN_KEY or "
                    "AUDIT_CHAIN_PREVIOUS_KEYS)"
                )
            if key.mac(payload) != stored:
                return altered
            self.key, self.unkeyed, self.keyed_from = key, False, sequence
            return ""
        if self.key is not None:
            if self.key.mac(payload) == stored:
                return ""
            if hashlib.sha256(payload).hexdigest() == stored:
                return (
                    f"event #{sequence} carries a plain SHA-256 hash, but the chain is HMAC-keyed "
                    f"from the cut-over at #{self.keyed_from or 'an archived event'}: it was rewritten "
                    "by someone without the audit chain key"
                )
            return altered
        if self.unkeyed is not False and hashlib.sha256(payload).hexdigest() == stored:
            self.unkeyed = True
            return ""
        if self.unkeyed is None:  # first event after a checkpoint, inside a keyed stretch
            for key in self.keys.known.values():
                if key.mac(payload) == stored:
                    self.key, self.unkeyed = key, False
                    return ""
        return altered

    def finish(self, last_sequence: int) -> str:
        """After the last event: the chain must end keyed (what every append since keying writes)."""
        if self.key is None and self.unkeyed:
            return (
                f"the chain ends with event #{last_sequence}, which carries a plain SHA-256 hash: no "
                f"{CUTOVER_ACTION} cut-over event precedes it, so the events since the cut-over were "
                "rewritten without the audit chain key (or `manage.py migrate` has not run)"
            )
        return ""


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
    by default the latest :class:`~security.models.AuditCheckpoint`. Events
    before the ``audit.chain_keyed`` cut-over must carry plain SHA-256 hashes,
    the cut-over and every later event an HMAC under a configured chain key.
    """
    if checkpoint is None:
        checkpoint = latest_checkpoint(using)
    start, prev = checkpoint if checkpoint else (0, GENESIS_HASH)
    expected = start + 1
    checked = 0
    last_seen = start
    walker = ChainWalker(chain_keys(), at_genesis=start == 0)

    def report(ok: bool, bad: int | None = None, problem: str = "") -> ChainReport:
        return ChainReport(
            ok,
            checked,
            start + 1,
            last_seen,
            bad,
            problem,
            keyed_from=walker.keyed_from,
            key_id=walker.key.id if walker.key else "",
            last_hash=prev,
        )

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
                return report(
                    False,
                    expected,
                    f"event #{expected} is missing (deleted); the next event is #{seq}"
                    if seq > expected
                    else f"event #{seq} is out of order",
                )
            if prev_hash != prev:
                return report(
                    False,
                    seq,
                    f"event #{seq} does not link to the event before it (reordered, or inserted out of band)",
                )
            payload = _payload(
                sequence=seq, occurred_at=occurred, actor_id=a_id, actor_label=a_label, action=action,
                target_type=t_type, target_id=t_id, merchant_id=m_id, ip=ip, user_agent=ua,
                details=details, prev_hash=prev_hash,
            )  # fmt: skip
            problem = walker.check(seq, payload, stored, action, details)
            if problem:
                return report(False, seq, problem)
            prev = stored
            expected = seq + 1
            last_seen = seq
            checked += 1
        cursor = last_seen
    head = AuditChainHead.objects.using(using).filter(id=HEAD_ID).first()
    if head is not None and head.last_sequence > last_seen:
        return report(
            False,
            last_seen + 1,
            f"event #{last_seen + 1} is missing (deleted): the chain head says the last event is "
            f"#{head.last_sequence}",
        )
    if head is not None and head.last_sequence == last_seen and head.last_hash != prev:
        return report(False, last_seen, f"event #{last_seen} does not match the chain head's hash")
    if checked:
        problem = walker.finish(last_seen)
        if problem:
            return report(False, last_seen, problem)
    return report(True)
