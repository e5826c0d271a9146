"""The audit log: hash-chained, append-only in the database, verifiable, archivable."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, connections, transaction

from security import audit
from security.archive import ArchiveInvalid, verify_archive
from security.models import AuditChainHead, AuditCheckpoint, AuditEvent
from tests.security.conftest import audit_triggers_disabled

pytestmark = pytest.mark.django_db


def events(n: int, **extra: object) -> list[AuditEvent]:
    return [
        audit.record(actor="tester", action=f"test.event_{i}", details={"i": i}, **extra) for i in range(n)
    ]


def verify(*args: str) -> str:
    out = StringIO()
    call_command("verify_audit_chain", *args, stdout=out)
    return out.getvalue()


def broken(*args: str) -> str:
    with pytest.raises(CommandError) as exc:
        verify(*args)
    return str(exc.value)


def test_each_event_stores_the_keyed_hash_of_its_canonical_json_and_the_previous_hash() -> None:
    first, second = events(2)
    assert (
        first.hash == audit.compute_hash(first) != hashlib.sha256(audit.canonical_payload(first)).hexdigest()
    )
    assert second.prev_hash == first.hash and second.sequence == first.sequence + 1
    payload = json.loads(audit.canonical_payload(second))
    assert payload["prev_hash"] == first.hash and "hash" not in payload


def test_verify_audit_chain_exits_zero_on_an_intact_chain() -> None:
    events(5, ip="2001:DB8::1")
    assert "Audit chain intact: 6 events checked" in verify()


def test_the_database_refuses_update_and_delete() -> None:
    (event,) = events(1)
    for attempt in (
        lambda: AuditEvent.objects.filter(pk=event.pk).update(action="nothing.happened"),
        lambda: AuditEvent.objects.filter(pk=event.pk).delete(),
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            attempt()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM security_auditevent")
    assert AuditEvent.objects.get(pk=event.pk).action == "test.event_0"


def test_an_altered_event_is_named() -> None:
    events(4)
    with audit_triggers_disabled():
        AuditEvent.objects.filter(sequence=2).update(details={"i": "forged"})
    assert "event #2 was altered" in broken()


def test_a_deleted_event_is_named() -> None:
    events(4)
    with audit_triggers_disabled():
        AuditEvent.objects.filter(sequence=3).delete()
    assert "event #3 is missing" in broken()


def test_deleting_the_newest_events_is_caught_by_the_chain_head() -> None:
    events(4)
    with audit_triggers_disabled():
        AuditEvent.objects.filter(sequence__gte=3).delete()
    message = broken()
    assert "event #3 is missing" in message and "chain head" in message


def test_reordered_events_are_named() -> None:
    events(4)
    with audit_triggers_disabled():
        AuditEvent.objects.filter(sequence=2).update(sequence=1000)
        AuditEvent.objects.filter(sequence=3).update(sequence=2)
        AuditEvent.objects.filter(sequence=1000).update(sequence=3)
    assert "BROKEN at event #2" in broken()


def test_a_rolled_back_transaction_leaves_no_gap() -> None:
    events(1)
    with pytest.raises(RuntimeError), transaction.atomic():
        audit.record(actor="tester", action="test.rolled_back")
        raise RuntimeError("boom")
    (after,) = events(1)
    assert after.sequence == 3  # 1 is the cut-over to keyed hashing
    assert "intact" in verify()


@pytest.mark.django_db(transaction=True)
def test_the_chain_stays_linear_under_concurrent_writers() -> None:
    if connection.vendor != "postgresql":
        pytest.skip(
            "SQLite serialises every writer on its database lock; concurrency is tested on PostgreSQL"
        )
    errors: list[str] = []

    def writer(n: int) -> None:
        try:
            for i in range(25):
                with transaction.atomic():
                    audit.record(actor=f"writer{n}", action="test.concurrent", details={"i": i})
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    sequences = list(AuditEvent.objects.order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, 102))  # the cut-over, then 100 events
    assert audit.verify_chain().ok


# --- Archiving -----------------------------------------------------------------------------------


@pytest.fixture
def signing_key(settings) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    settings.AUDIT_ARCHIVE_SIGNING_KEY = base64.b64encode(seed).decode()
    return settings.AUDIT_ARCHIVE_SIGNING_KEY


def events_at(when: datetime, n: int, monkeypatch) -> None:
    monkeypatch.setattr("django.utils.timezone.now", lambda: when)
    events(n)
    monkeypatch.undo()


def test_archiving_moves_old_events_to_a_signed_file_and_the_verifier_accepts_the_checkpoint(
    signing_key, tmp_path, monkeypatch
) -> None:
    now = datetime.now(UTC)
    events_at(now - timedelta(days=500), 3, monkeypatch)
    events_at(now - timedelta(days=400), 2, monkeypatch)
    events(2)
    out = tmp_path / "audit-2024.jsonl"
    before = (now - timedelta(days=365)).date()
    stdout = StringIO()
    call_command("archive_audit_log", f"--before={before}", f"--out={out}", stdout=stdout)
    assert "archived up to sequence 6 with last hash" in stdout.getvalue()
    assert list(AuditEvent.objects.order_by("sequence").values_list("sequence", flat=True)) == [7, 8, 9]
    checkpoint = AuditCheckpoint.objects.get()
    assert (checkpoint.first_sequence, checkpoint.through_sequence, checkpoint.event_count) == (1, 6, 6)
    assert AuditEvent.objects.get(sequence=9).action == "audit.archived"
    report = verify_archive(out)
    assert (report.first_sequence, report.through_sequence, report.last_hash) == (1, 6, checkpoint.last_hash)
    assert "3 events checked (#7 to #9)" in verify(f"--archive={out}")
    # The stored checkpoint can be overridden by one an auditor kept: a wrong one fails.
    assert "does not link" in broken(f"--checkpoint=6:{'f' * 64}")
    assert "intact" in verify(f"--checkpoint=6:{checkpoint.last_hash}")


def test_an_edited_archive_fails_verification(signing_key, tmp_path, monkeypatch) -> None:
    events_at(datetime.now(UTC) - timedelta(days=400), 3, monkeypatch)
    out = tmp_path / "a.jsonl"
    call_command(
        "archive_audit_log",
        f"--before={datetime.now(UTC).date() - timedelta(days=370)}",
        f"--out={out}",
        stdout=StringIO(),
    )
    out.write_text(out.read_text().replace("test.event_1", "test.event_X"))
    with pytest.raises(ArchiveInvalid, match="signature does not verify"):
        verify_archive(out)


def test_archiving_refuses_anything_newer_than_three_months(signing_key, tmp_path) -> None:
    events(2)
    with pytest.raises(CommandError, match="newer than 3 months"):
        call_command(
            "archive_audit_log",
            f"--before={datetime.now(UTC).date() - timedelta(days=30)}",
            f"--out={tmp_path / 'x.jsonl'}",
        )
    assert AuditEvent.objects.count() == 3 and not (tmp_path / "x.jsonl").exists()


def test_archiving_needs_a_signing_key(settings, tmp_path, monkeypatch) -> None:
    settings.AUDIT_ARCHIVE_SIGNING_KEY = ""
    events_at(datetime.now(UTC) - timedelta(days=400), 1, monkeypatch)
    with pytest.raises(CommandError, match="AUDIT_ARCHIVE_SIGNING_KEY is not set"):
        call_command(
            "archive_audit_log",
            f"--before={datetime.now(UTC).date() - timedelta(days=200)}",
            f"--out={tmp_path / 'x'}",
        )


def test_archiving_refuses_a_broken_chain(signing_key, tmp_path, monkeypatch) -> None:
    events_at(datetime.now(UTC) - timedelta(days=400), 3, monkeypatch)
    with audit_triggers_disabled():
        AuditEvent.objects.filter(sequence=2).update(action="forged")
    with pytest.raises(CommandError, match="broken chain"):
        call_command(
            "archive_audit_log",
            f"--before={datetime.now(UTC).date() - timedelta(days=200)}",
            f"--out={tmp_path / 'x'}",
        )


def test_a_fresh_database_starts_the_chain_at_genesis() -> None:
    head = AuditChainHead.objects.get()
    assert (head.last_sequence, head.last_hash) == (0, audit.GENESIS_HASH)
    (first,) = events(1)
    cutover = AuditEvent.objects.get(sequence=1)
    assert cutover.action == "audit.chain_keyed" and cutover.prev_hash == audit.GENESIS_HASH
    assert cutover.details["key_id"] == audit.chain_keys().current.id
    assert first.sequence == 2 and first.prev_hash == cutover.hash
