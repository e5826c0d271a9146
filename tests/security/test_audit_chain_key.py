"""The audit chain is keyed: database rights alone cannot rewrite events and recompute the chain."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from security import audit
from security.models import AuditChainHead, AuditEvent
from tests.platform.helpers import manage
from tests.platform.test_production_safety import production_env
from tests.security.conftest import audit_triggers_disabled

pytestmark = pytest.mark.django_db


def events(n: int) -> list[AuditEvent]:
    return [audit.record(actor="tester", action=f"test.event_{i}", details={"i": i}) for i in range(n)]


def run_verify() -> tuple[int, str]:
    """``manage.py verify_audit_chain`` as an operator sees it: its exit status and what it printed.

    (``manage.py`` exits with a CommandError's ``returncode`` after printing it; the command is
    called in-process so that it reads this test's database.)
    """
    out = StringIO()
    try:
        call_command("verify_audit_chain", stdout=out)
    except CommandError as exc:
        return exc.returncode, out.getvalue() + f"CommandError: {exc}"
    return 0, out.getvalue()


def rewrite_from(sequence: int, hasher: Callable[[AuditEvent], str], edit: dict | None = None) -> None:
    """What a database superuser can do: edit event ``sequence`` and recompute every hash after it."""
    with audit_triggers_disabled():
        prev = AuditEvent.objects.get(sequence=sequence - 1).hash if sequence > 1 else audit.GENESIS_HASH
        for event in AuditEvent.objects.filter(sequence__gte=sequence).order_by("sequence"):
            if event.sequence == sequence and edit:
                for name, value in edit.items():
                    setattr(event, name, value)
            event.prev_hash = prev
            event.hash = prev = hasher(event)
            AuditEvent.objects.filter(pk=event.pk).update(
                prev_hash=event.prev_hash,
                hash=event.hash,
                **((edit or {}) if event.sequence == sequence else {}),
            )
        AuditChainHead.objects.filter(id=audit.HEAD_ID).update(last_hash=prev)


def sha256_of(event: AuditEvent) -> str:
    return hashlib.sha256(audit.canonical_payload(event)).hexdigest()


def test_a_rewrite_after_the_cutover_with_a_recomputed_unkeyed_chain_is_detected() -> None:
    events(4)  # #1 is the cut-over, #2..#5 the events
    assert run_verify()[0] == 0
    rewrite_from(3, sha256_of, edit={"details": {"i": "forged"}})
    code, output = run_verify()
    assert code == 1
    assert "Audit chain BROKEN at event #3" in output
    assert "plain SHA-256 hash, but the chain is HMAC-keyed from the cut-over at #1" in output


def test_rewriting_the_whole_chain_unkeyed_including_the_cutover_is_detected() -> None:
    events(3)
    rewrite_from(1, sha256_of, edit={"action": "test.nothing_to_see"})
    code, output = run_verify()
    assert code == 1
    assert "the chain ends with event #4, which carries a plain SHA-256 hash" in output


def test_rewriting_with_a_valid_hmac_needs_the_key() -> None:
    events(3)
    guessed = audit.ChainKey.from_secret(os.urandom(32))
    rewrite_from(3, lambda e: guessed.mac(audit.canonical_payload(e)), edit={"details": {"i": "forged"}})
    code, output = run_verify()
    assert code == 1 and "event #3 was altered" in output
    # Only whoever holds AUDIT_CHAIN_KEY (kept out of the database) could make the rewrite verify.
    rewrite_from(3, audit.compute_hash)
    assert run_verify()[0] == 0


def test_events_written_before_keying_still_verify_and_the_cutover_marks_where_keying_starts() -> None:
    # Three events as the previous release wrote them: plain SHA-256, a head without a key id.
    prev, start = audit.GENESIS_HASH, datetime.now(UTC) - timedelta(days=3)
    for sequence in (1, 2, 3):
        event = AuditEvent(
            sequence=sequence,
            occurred_at=start + timedelta(hours=sequence),
            actor_label="old@example.com",
            action="old.event",
            details={"n": sequence},
            prev_hash=prev,
        )
        event.hash = prev = sha256_of(event)
        event.save(force_insert=True)
    AuditChainHead.objects.update_or_create(
        id=audit.HEAD_ID, defaults={"last_sequence": 3, "last_hash": prev, "key_id": ""}
    )
    # The migration's step on an existing chain, then ordinary appends.
    cutover = audit.ensure_keyed()
    assert cutover.sequence == 4 and cutover.action == "audit.chain_keyed"
    assert cutover.details == {
        "key_id": audit.chain_keys().current.id,
        "previous_key_id": "",
        "unkeyed_through": 3,
    }
    assert audit.ensure_keyed() is None  # written once
    (after,) = events(1)
    assert after.sequence == 5 and after.hash == audit.compute_hash(after)
    code, output = run_verify()
    assert code == 0, output
    assert "5 events checked (#1 to #5); HMAC-keyed from event #4" in output
    assert "plain SHA-256 before it (#1 to #3)" in output
    # A plain hash before the cut-over is still checked.
    with audit_triggers_disabled():
        AuditEvent.objects.filter(sequence=2).update(actor_label="someone.else@example.com")
    assert "event #2 was altered" in run_verify()[1]


def test_a_new_key_starts_a_new_cutover_and_old_events_verify_with_the_previous_key(settings) -> None:
    events(2)
    old_key = settings.AUDIT_CHAIN_KEY
    old_id = audit.chain_keys().current.id
    settings.AUDIT_CHAIN_KEY = base64.b64encode(os.urandom(32)).decode()
    settings.AUDIT_CHAIN_PREVIOUS_KEYS = [old_key]
    (after,) = events(1)
    rotation = AuditEvent.objects.get(sequence=after.sequence - 1)
    assert rotation.action == "audit.chain_keyed"
    assert rotation.details["previous_key_id"] == old_id != rotation.details["key_id"]
    code, output = run_verify()
    assert code == 0, output
    # Without the old key the older stretch cannot be checked, and the verifier says which key it needs.
    settings.AUDIT_CHAIN_PREVIOUS_KEYS = []
    code, output = run_verify()
    assert code == 1 and f"audit chain key {old_id}, which is not configured" in output


def test_the_key_never_reaches_the_database() -> None:
    secret = audit.chain_keys().current.secret
    with CaptureQueriesContext(connection) as queries:
        events(2)
        audit.verify_chain()
    sent = " ".join(f"{q['sql']}" for q in queries.captured_queries)
    for form in (secret.hex(), base64.b64encode(secret).decode(), secret.decode("latin-1")):
        assert form not in sent
    assert AuditEvent.objects.get(sequence=1).details["key_id"] not in (secret.hex(), "")


def test_production_refuses_to_start_without_an_audit_chain_key(tmp_path) -> None:
    env = production_env()
    del env["AUDIT_CHAIN_KEY"]
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "AUDIT_CHAIN_KEY is not set" in result.stderr
    key_file = tmp_path / "audit_chain_key"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode())
    result = manage("check", env={**env, "AUDIT_CHAIN_KEY_FILE": str(key_file)})
    assert result.returncode == 0, result.stderr
