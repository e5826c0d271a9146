"""Key rotation: `rotate_keys` re-wraps data keys under the new KEK, resumably, while reads go on."""

from __future__ import annotations

import threading
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections

from security import crypto
from security.audit import verify_chain
from security.models import AuditEvent, DataKey, KeyRotation
from security.rotation import rotation_start, rotation_step
from tests.security.conftest import random_key
from tests.security.test_encrypted_fields import make_customer
from tests.security.testmodels import Customer

OLD = f"old:{random_key()}"
NEW = f"new:{random_key()}"


@pytest.fixture
def old_keys(settings):
    settings.FIELD_ENCRYPTION_KEYS = [OLD]
    return settings


def customers(n: int) -> list[Customer]:
    return [make_customer(email=f"person{i}@example.com") for i in range(n)]


def emails(ids: list[int]) -> list[str]:
    crypto.clear_key_cache()  # every read unwraps its data key again
    return [c.email for c in Customer.objects.filter(pk__in=ids).order_by("pk")]


@pytest.mark.django_db
def test_rotate_keys_rewraps_every_data_key_and_reports_progress(old_keys) -> None:
    people = customers(7)
    ids = [c.pk for c in people]
    expected = emails(ids)
    old_keys.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
    out = StringIO()
    call_command("rotate_keys", "--batch-size=3", stdout=out)
    lines = out.getvalue().splitlines()
    # 7 person keys + the merchant key shared by all of them = 8 keys in batches of 3
    assert [line for line in lines if "batch" in line] == [
        "rotate_keys: batch 1: 3 of 8 data keys re-wrapped under KEK 'new' (37%)",
        "rotate_keys: batch 2: 6 of 8 data keys re-wrapped under KEK 'new' (75%)",
        "rotate_keys: batch 3: 8 of 8 data keys re-wrapped under KEK 'new' (100%)",
    ]
    assert "complete" in lines[-1]
    assert set(DataKey.objects.values_list("kek_id", flat=True)) == {"new"}
    run = KeyRotation.objects.get()
    assert (run.status, run.total, run.done, run.batches) == ("completed", 8, 8, 3)
    actions = list(AuditEvent.objects.order_by("sequence").values_list("action", flat=True))
    assert actions[-2:] == ["crypto.rotation_started", "crypto.rotation_completed"]
    assert verify_chain().ok
    # The old KEK can now go: everything still reads.
    old_keys.FIELD_ENCRYPTION_KEYS = [NEW]
    assert emails(ids) == expected


@pytest.mark.django_db
def test_without_rotation_removing_the_old_kek_makes_values_unreadable_with_a_clear_error(old_keys) -> None:
    person = make_customer()
    old_keys.FIELD_ENCRYPTION_KEYS = [NEW]
    crypto.clear_key_cache()
    with pytest.raises(crypto.KeyringError, match="'old', which is not configured"):
        _ = Customer.objects.get(pk=person.pk).email


@pytest.mark.django_db
def test_a_stopped_rotation_resumes_where_it_left_off(old_keys) -> None:
    ids = [c.pk for c in customers(5)]
    old_keys.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
    call_command("rotate_keys", "--batch-size=2", "--max-batches=2", stdout=StringIO())
    run = KeyRotation.objects.get()
    assert (run.status, run.done, run.total) == ("running", 4, 6)
    assert DataKey.objects.filter(kek_id="new").count() == 4
    moved_before = dict(DataKey.objects.filter(kek_id="new").values_list("key_id", "rotated_at"))
    out = StringIO()
    call_command("rotate_keys", "--batch-size=2", stdout=out)
    assert "batch 3: 6 of 6" in out.getvalue()
    run.refresh_from_db()
    assert (run.status, run.done) == ("completed", 6)
    assert KeyRotation.objects.count() == 1
    # Keys moved by the first run were not touched again.
    assert (
        dict(DataKey.objects.filter(key_id__in=moved_before).values_list("key_id", "rotated_at"))
        == moved_before
    )
    assert len(emails(ids)) == 5


@pytest.mark.django_db
def test_a_rotation_that_hits_an_unreadable_key_stops_and_resumes_after_the_fix(old_keys) -> None:
    customers(4)
    old_keys.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
    broken = DataKey.objects.order_by("pk")[2]
    good_blob = bytes(broken.wrapped_key)
    DataKey.objects.filter(pk=broken.pk).update(wrapped_key=b"\x00" * len(good_blob))
    with pytest.raises(CommandError, match="resumes from here"):
        call_command("rotate_keys", "--batch-size=2", stdout=StringIO())
    run = KeyRotation.objects.get()
    assert run.status == "failed" and run.done == 2 and "cannot unwrap" in run.last_error
    DataKey.objects.filter(pk=broken.pk).update(wrapped_key=good_blob)  # restored from the key backup
    call_command("rotate_keys", "--batch-size=2", stdout=StringIO())
    run.refresh_from_db()
    assert (run.status, run.done) == ("completed", 5)


@pytest.mark.django_db
def test_reads_keep_working_between_rotation_batches(old_keys) -> None:
    ids = [c.pk for c in customers(6)]
    expected = emails(ids)
    old_keys.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
    run = rotation_start()
    seen_mixed = False
    while rotation_step(run, batch_size=2):
        assert emails(ids) == expected
        seen_mixed = seen_mixed or DataKey.objects.filter(kek_id="old").exists()
        # A new subject written mid-rotation gets a key under the new KEK straight away.
        newcomer = make_customer(email="late@example.com")
        assert DataKey.objects.get(subject_id=newcomer.public_id).kek_id == "new"
    assert seen_mixed
    assert emails(ids) == expected


@pytest.mark.django_db(transaction=True)
def test_concurrent_readers_see_every_value_while_rotation_runs(old_keys) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("concurrent readers need PostgreSQL; SQLite is covered by the interleaved-batch test")
    ids = [c.pk for c in customers(40)]
    expected = emails(ids)
    old_keys.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
    stop = threading.Event()
    failures: list[str] = []
    reads = [0]

    def reader() -> None:
        try:
            while not stop.is_set():
                if emails(ids) != expected:
                    failures.append("wrong values")
                reads[0] += 1
        except Exception as exc:  # noqa: BLE001 - report any failure to the test
            failures.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        call_command("rotate_keys", "--batch-size=5", stdout=StringIO())
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not failures, failures[:3]
    assert reads[0] > 0
    assert set(DataKey.objects.values_list("kek_id", flat=True)) == {"new"}
    Customer.objects.all().delete()
