"""Archiving old audit events to a signed JSON Lines file.

``archive_audit_log(before=..., out=...)`` writes every event older than
``before`` (a prefix of the chain, after the previous checkpoint) to ``out``:

* line 1: a header ``{"format": "fintech_portal-audit-archive", "version": 1,
  "first_sequence", "through_sequence", "prev_hash", "last_hash", "count", ...}``;
* one line per event: every stored field, including ``prev_hash`` and ``hash``;
* last line: ``{"signature": {"alg": "Ed25519", "public_key": ..., "value": ...}}``,
  an Ed25519 signature over all the bytes before it, made with
  ``AUDIT_ARCHIVE_SIGNING_KEY`` (base64 of a 32-byte Ed25519 private key seed;
  keep it offline from the database; publish its public key to auditors).

Then, in one transaction, the archived rows are deleted through the one path
the triggers allow, and an :class:`~security.models.AuditCheckpoint` records
"archived up to sequence N with last hash H", from which the chain verifier
starts. Anything newer than 3 months is refused; the retention policy is 12.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from security import audit
from security.errors import ApplicationError
from security.models import AuditCheckpoint, AuditEvent

FORMAT = "fintech_portal-audit-archive"
MINIMUM_AGE_MONTHS = 3


def months_before(day: date, months: int) -> date:
    month_index = day.year * 12 + (day.month - 1) - months
    year, month = divmod(month_index, 12)
    month += 1
    for candidate_day in (day.day, 30, 29, 28):
        try:
            return date(year, month, candidate_day)
        except ValueError:
            continue
    raise ValueError("unreachable")


def signing_key() -> Ed25519PrivateKey:
    configured = getattr(settings, "AUDIT_ARCHIVE_SIGNING_KEY", "")
    if not configured:
        raise ApplicationError(
            "AUDIT_ARCHIVE_SIGNING_KEY is not set: archives must be signed. Set it to the base64 of a "
            "32-byte Ed25519 private key (and keep the public key where auditors can find it)."
        )
    try:
        seed = base64.b64decode(configured, validate=True)
        return Ed25519PrivateKey.from_private_bytes(seed)
    except ValueError as exc:
        raise ApplicationError(
            "AUDIT_ARCHIVE_SIGNING_KEY is not the base64 of a 32-byte Ed25519 key."
        ) from exc


def public_key_b64(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def _event_dict(event: AuditEvent) -> dict[str, Any]:
    return {
        "sequence": event.sequence,
        "occurred_at": event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
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
        "hash": event.hash,
    }


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def archive_audit_log(
    *, before: date, out: Path, actor: Any = None, today: date | None = None
) -> AuditCheckpoint:
    today = today or timezone.now().date()
    newest_allowed = months_before(today, MINIMUM_AGE_MONTHS)
    if before > newest_allowed:
        raise ApplicationError(
            f"Refusing to archive events newer than {MINIMUM_AGE_MONTHS} months: --before must be "
            f"{newest_allowed.isoformat()} or earlier (the retention policy keeps 12 months online)."
        )
    if out.exists():
        raise ApplicationError(f"{out} already exists; choose a new file name.")
    key = signing_key()
    cutoff = datetime.combine(before, time.min, tzinfo=UTC)
    start, prev_hash = audit.latest_checkpoint() or (0, audit.GENESIS_HASH)
    report = audit.verify_chain()
    if not report.ok:
        raise ApplicationError(f"Refusing to archive a broken chain: {report.describe()}")
    first_newer = (
        AuditEvent.objects.filter(sequence__gt=start, occurred_at__gte=cutoff)
        .order_by("sequence")
        .values_list("sequence", flat=True)
        .first()
    )
    last = AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first() or start
    through = (first_newer - 1) if first_newer is not None else last
    if through <= start:
        raise ApplicationError(f"No audit events older than {before.isoformat()} are left to archive.")
    events = list(AuditEvent.objects.filter(sequence__gt=start, sequence__lte=through).order_by("sequence"))
    header = {
        "format": FORMAT,
        "version": 1,
        "first_sequence": start + 1,
        "through_sequence": through,
        "prev_hash": prev_hash,
        "last_hash": events[-1].hash,
        "count": len(events),
        "archived_before": cutoff.isoformat(),
        "created_at": timezone.now().astimezone(UTC).isoformat(),
    }
    body = _line(header) + b"".join(_line(_event_dict(e)) for e in events)
    signature = {
        "signature": {
            "alg": "Ed25519",
            "public_key": public_key_b64(key.public_key()),
            "value": base64.b64encode(key.sign(body)).decode(),
        }
    }
    content = body + _line(signature)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    with open(tmp, "wb") as fh:
        fh.write(content)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, out)
    with transaction.atomic(), audit.allow_audit_deletion("archive"):
        deleted, _ = AuditEvent.objects.filter(sequence__gt=start, sequence__lte=through).delete()
        if deleted != len(events):
            raise ApplicationError("The audit log changed while archiving; nothing was removed. Try again.")
        checkpoint = AuditCheckpoint.objects.create(
            through_sequence=through,
            last_hash=events[-1].hash,
            first_sequence=start + 1,
            event_count=len(events),
            archived_at=timezone.now(),
            archived_before=cutoff,
            file_name=out.name,
            file_sha256=hashlib.sha256(content).hexdigest(),
            public_key=public_key_b64(key.public_key()),
        )
        audit.record(
            actor=actor,
            action="audit.archived",
            target=("security.auditcheckpoint", str(checkpoint.pk)),
            details={
                "first_sequence": start + 1,
                "through_sequence": through,
                "last_hash": checkpoint.last_hash,
                "count": len(events),
                "file": out.name,
                "file_sha256": checkpoint.file_sha256,
            },
        )
    return checkpoint


@dataclass(frozen=True)
class ArchiveReport:
    first_sequence: int
    through_sequence: int
    prev_hash: str
    last_hash: str
    count: int


class ArchiveInvalid(Exception):
    pass


def verify_archive(path: Path, *, public_key: str | None = None) -> ArchiveReport:
    """Check an archive's signature and the hash chain inside it."""
    content = path.read_bytes()
    body, _, sig_line = content.rstrip(b"\n").rpartition(b"\n")
    body += b"\n"
    try:
        signature = json.loads(sig_line)["signature"]
        header = json.loads(body.split(b"\n", 1)[0])
    except (ValueError, KeyError) as exc:
        raise ArchiveInvalid(f"{path.name} is not an audit archive.") from exc
    if header.get("format") != FORMAT:
        raise ArchiveInvalid(f"{path.name} is not an audit archive.")
    expected_key = public_key or signature["public_key"]
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(expected_key)).verify(
            base64.b64decode(signature["value"]), body
        )
    except (InvalidSignature, ValueError) as exc:
        raise ArchiveInvalid(
            f"{path.name}: the signature does not verify (file altered or wrong key)."
        ) from exc
    prev = header["prev_hash"]
    expected = header["first_sequence"]
    lines = body.split(b"\n")[1:-1]
    walker = audit.ChainWalker(audit.chain_keys(), at_genesis=prev == audit.GENESIS_HASH and expected == 1)
    for raw in lines:
        event = json.loads(raw)
        stored = event.pop("hash")
        if event["sequence"] != expected or event["prev_hash"] != prev:
            raise ArchiveInvalid(f"{path.name}: event #{expected} is missing or out of order.")
        event["occurred_at"] = datetime.fromisoformat(event["occurred_at"])
        problem = walker.check(
            event["sequence"], audit._payload(**event), stored, event["action"], event["details"]
        )
        if problem:
            raise ArchiveInvalid(f"{path.name}: {problem}.")
        prev = stored
        expected += 1
    if prev != header["last_hash"] or expected - 1 != header["through_sequence"]:
        raise ArchiveInvalid(f"{path.name}: the header does not match the events.")
    return ArchiveReport(
        header["first_sequence"],
        header["through_sequence"],
        header["prev_hash"],
        header["last_hash"],
        len(lines),
    )
