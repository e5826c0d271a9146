"""Crypto-shredding: destroying a subject's data key erases every copy of their encrypted values."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.db import connection
from django.template import Context, Template

from security.audit import verify_chain
from security.blind_index import blind_index
from security.crypto import ERASED, Subject, binding, decrypt, is_erased, shred
from security.models import AuditEvent, DataKey
from tests.security.test_encrypted_fields import make_customer, raw_column, set_raw
from tests.security.testmodels import Customer

pytestmark = pytest.mark.django_db


def person(customer: Customer) -> Subject:
    return Subject("person", customer.public_id)


def test_a_shredded_subjects_values_read_as_erased_not_as_an_error() -> None:
    alice, bob = make_customer(email="alice@example.com"), make_customer(email="bob@example.com")
    shred(person(alice), reason="GDPR erasure request")
    loaded = Customer.objects.get(pk=alice.pk)
    for name in ("full_name", "email", "phone", "born_on", "profile", "photo"):
        value = getattr(loaded, name)
        assert value is ERASED and is_erased(value) and not value, name
    assert Customer.objects.get(pk=bob.pk).email == "bob@example.com"


def test_values_of_another_subject_in_the_same_row_survive() -> None:
    alice = make_customer(merchant_note="merchant's own note")
    shred(person(alice))
    loaded = Customer.objects.get(pk=alice.pk)
    assert loaded.email is ERASED
    assert loaded.merchant_note == "merchant's own note"


def test_erased_values_render_as_a_marker_in_templates() -> None:
    alice = make_customer()
    shred(person(alice))
    loaded = Customer.objects.get(pk=alice.pk)
    rendered = Template(
        "{{ c.email }}|{% if c.email %}shown{% else %}hidden{% endif %}|{{ c.email|default:'-' }}"
    )
    assert rendered.render(Context({"c": loaded})) == "[erased]|hidden|-"


def test_a_backup_copy_of_the_ciphertext_is_unreadable_after_shredding() -> None:
    alice = make_customer(email="alice@example.com")
    backup = raw_column(alice.pk, "email")
    place = binding(Customer._meta.db_table, "email", alice.public_id)
    assert decrypt(backup, place=place) == b"alice@example.com"
    shred(person(alice))
    key = DataKey.objects.get(subject_id=alice.public_id)
    assert key.shredded_at is not None and bytes(key.wrapped_key) == b""
    assert decrypt(backup, place=place) is ERASED
    set_raw(alice.pk, "email", backup)  # "restore" the old value into the live table
    assert Customer.objects.get(pk=alice.pk).email is ERASED


def test_shredding_is_audited_without_personal_data() -> None:
    alice = make_customer(email="alice@example.com")
    result = shred(person(alice), actor="privacy officer", reason="erasure request")
    event = AuditEvent.objects.get(action="crypto.subject_shredded")
    assert event.details["subject_id"] == alice.public_id
    assert event.details["data_keys"] == result.data_keys and len(result.data_keys) == 1
    assert "alice" not in str(event.details)
    assert verify_chain().ok


def test_shredding_clears_the_subjects_blind_indexes() -> None:
    alice = make_customer(email="alice@example.com")
    assert Customer.objects.filter(email_bidx=blind_index("email", "alice@example.com")).exists()
    result = shred(person(alice))
    assert result.blind_indexes_cleared == 1
    assert not Customer.objects.filter(email_bidx=blind_index("email", "alice@example.com")).exists()


def test_an_erased_row_can_still_be_saved_and_new_values_get_a_new_key() -> None:
    alice = make_customer()
    old_key = DataKey.objects.get(subject_id=alice.public_id)
    shred(person(alice))
    loaded = Customer.objects.get(pk=alice.pk)
    loaded.merchant_ref = "mer_x"
    loaded.save()
    assert Customer.objects.get(pk=alice.pk).email is ERASED
    loaded.phone = "+44 7700 900123"
    loaded.save()
    assert Customer.objects.get(pk=alice.pk).phone == "+44 7700 900123"
    assert (
        DataKey.objects.filter(subject_id=alice.public_id, shredded_at__isnull=True)
        .exclude(pk=old_key.pk)
        .exists()
    )


def test_shredding_twice_finds_nothing_left() -> None:
    alice = make_customer()
    assert len(shred(person(alice)).data_keys) == 1
    assert shred(person(alice)).data_keys == []


def test_shredded_files_read_as_erased(settings, tmp_path) -> None:
    settings.MEDIA_ROOT = str(tmp_path)
    alice = make_customer()
    alice.document.save("id.txt", ContentFile(b"ID CARD"))
    shred(person(alice))
    loaded = Customer.objects.get(pk=alice.pk)
    assert loaded.document.read_decrypted() is ERASED
    assert loaded.document.erased


def test_another_process_sees_the_shred_once_its_key_cache_expires(settings) -> None:
    from security import crypto

    alice = make_customer()
    assert Customer.objects.get(pk=alice.pk).email  # this process now caches the key
    with connection.cursor() as cursor:  # another process shreds (straight in the database)
        cursor.execute(
            "UPDATE security_datakey SET wrapped_key = %s, shredded_at = CURRENT_TIMESTAMP "
            "WHERE subject_id = %s",
            [b"", alice.public_id],
        )
    crypto.clear_key_cache()  # what the cache TTL (FIELD_ENCRYPTION_KEY_CACHE_SECONDS) does
    assert Customer.objects.get(pk=alice.pk).email is ERASED
