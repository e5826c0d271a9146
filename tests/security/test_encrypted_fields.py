"""Encrypted model fields: AES-256-GCM under per-subject data keys, bound to table, column and row."""

from __future__ import annotations

import datetime

import pytest
from django.core.files.base import ContentFile
from django.db import connection, transaction

from security.crypto import DecryptionError, Subject, parse_token
from security.fields import EncryptedFieldError, Sealed
from security.keyring import get_keyring
from security.models import DataKey
from tests.security.testmodels import Customer

pytestmark = pytest.mark.django_db

TABLE = Customer._meta.db_table


def raw_column(pk: int, column: str) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {TABLE} WHERE id = %s", [pk])  # noqa: S608
        return cursor.fetchone()[0]


def set_raw(pk: int, column: str, value: str | None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET {column} = %s WHERE id = %s", [value, pk])  # noqa: S608


def make_customer(**values: object) -> Customer:
    defaults = {
        "full_name": "Zoë O'Brien",
        "email": "zoe@example.com",
        "phone": "+44 7700 900789",
        "born_on": datetime.date(1990, 5, 17),
        "profile": {"tier": "gold", "tags": ["a", "b"], "score": 7},
        "photo": b"\x89PNG\x00\x01binary",
        "merchant_note": "prefers email",
    }
    defaults.update(values)
    return Customer.objects.create(**defaults)


def test_every_kind_of_value_reads_back_as_written() -> None:
    created = make_customer()
    loaded = Customer.objects.get(pk=created.pk)
    assert loaded.full_name == "Zoë O'Brien"
    assert loaded.email == "zoe@example.com"
    assert loaded.born_on == datetime.date(1990, 5, 17)
    assert loaded.profile == {"tier": "gold", "tags": ["a", "b"], "score": 7}
    assert loaded.photo == b"\x89PNG\x00\x01binary"
    assert loaded.merchant_note == "prefers email"


def test_the_database_holds_only_self_describing_ciphertext() -> None:
    customer = make_customer()
    stored = raw_column(customer.pk, "email")
    assert "zoe" not in stored and "example" not in stored
    parts = parse_token(stored)
    key = DataKey.objects.get(subject_kind="person", subject_id=customer.public_id)
    assert parts.version == "fp1"
    assert parts.kek_id == get_keyring().active_id == key.kek_id
    assert parts.key_id == key.key_id
    assert len(parts.nonce) == 12
    assert raw_column(customer.pk, "born_on").startswith("fp1$")


def test_same_value_encrypts_differently_each_time() -> None:
    a = make_customer(email="same@example.com")
    b = make_customer(email="same@example.com")
    assert raw_column(a.pk, "email") != raw_column(b.pk, "email")


def test_each_subject_has_its_own_data_key_shared_by_its_fields() -> None:
    a = make_customer()
    b = make_customer()
    key_a = parse_token(raw_column(a.pk, "email")).key_id
    assert parse_token(raw_column(a.pk, "full_name")).key_id == key_a
    assert parse_token(raw_column(b.pk, "email")).key_id != key_a
    note_key = parse_token(raw_column(a.pk, "merchant_note")).key_id
    assert DataKey.objects.get(key_id=note_key).subject_kind == "merchant"
    assert DataKey.objects.filter(subject_kind="person").count() == 2


def test_ciphertext_copied_into_another_row_fails_to_decrypt() -> None:
    victim = make_customer(email="victim@example.com")
    attacker = make_customer(email="attacker@example.com")
    set_raw(attacker.pk, "email", raw_column(victim.pk, "email"))
    with pytest.raises(DecryptionError, match="altered, or copied"):
        _ = Customer.objects.get(pk=attacker.pk).email


def test_ciphertext_copied_into_another_column_fails_to_decrypt() -> None:
    customer = make_customer()
    set_raw(customer.pk, "phone", raw_column(customer.pk, "email"))
    reloaded = Customer.objects.get(pk=customer.pk)
    assert reloaded.email == "zoe@example.com"
    with pytest.raises(DecryptionError):
        _ = reloaded.phone


def test_tampered_ciphertext_or_header_fails_loudly() -> None:
    customer = make_customer()
    token = raw_column(customer.pk, "email")
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    set_raw(customer.pk, "email", flipped)
    with pytest.raises(DecryptionError):
        _ = Customer.objects.get(pk=customer.pk).email
    version, kek, key_id, nonce, body = token.split("$")
    set_raw(customer.pk, "email", "$".join([version, "k9", key_id, nonce, body]))
    with pytest.raises(DecryptionError):
        _ = Customer.objects.get(pk=customer.pk).email


def test_binding_uses_the_public_id_which_exists_before_insert() -> None:
    customer = Customer(email="new@example.com")
    assert customer.pk is None and customer.public_id
    customer.save()
    assert Customer.objects.get(pk=customer.pk).email == "new@example.com"
    created = Customer.objects.bulk_create([Customer(email=f"bulk{i}@example.com") for i in range(3)])
    assert sorted(c.email for c in Customer.objects.filter(public_id__in=[c.public_id for c in created])) == [
        "bulk0@example.com",
        "bulk1@example.com",
        "bulk2@example.com",
    ]


def test_untouched_values_are_written_back_unchanged_and_edits_reencrypt() -> None:
    customer = make_customer()
    before = raw_column(customer.pk, "email")
    loaded = Customer.objects.get(pk=customer.pk)
    loaded.merchant_ref = "mer_other"
    loaded.save()
    assert raw_column(customer.pk, "email") == before
    loaded.email = "changed@example.com"
    loaded.save()
    assert raw_column(customer.pk, "email") != before
    assert Customer.objects.get(pk=customer.pk).email == "changed@example.com"


def test_none_is_stored_as_null_and_isnull_works() -> None:
    customer = make_customer(phone=None)
    assert raw_column(customer.pk, "phone") is None
    assert Customer.objects.get(pk=customer.pk).phone is None
    assert list(Customer.objects.filter(phone__isnull=True)) == [customer]
    assert list(Customer.objects.filter(phone=None)) == [customer]


def test_searching_an_encrypted_column_is_refused_with_a_hint() -> None:
    make_customer()
    with pytest.raises(EncryptedFieldError, match="blind index"):
        list(Customer.objects.filter(email="zoe@example.com"))
    with pytest.raises(EncryptedFieldError, match="blind index"):
        list(Customer.objects.filter(email__icontains="zoe"))


def test_queryset_update_cannot_write_plaintext() -> None:
    customer = make_customer()
    with pytest.raises(EncryptedFieldError, match="unencrypted"), transaction.atomic():
        Customer.objects.filter(pk=customer.pk).update(email="plain@example.com")
    assert raw_column(customer.pk, "email").startswith("fp1$")


def test_values_list_gives_sealed_values_never_plaintext() -> None:
    make_customer()
    (value,) = Customer.objects.values_list("email", flat=True)
    assert isinstance(value, Sealed)
    assert str(value) == "[encrypted]"


def test_deferred_encrypted_field_loads_and_decrypts_on_access() -> None:
    customer = make_customer()
    loaded = Customer.objects.only("id").get(pk=customer.pk)
    assert loaded.email == "zoe@example.com"


def test_files_are_encrypted_on_storage_and_read_back_in_clear(settings, tmp_path) -> None:
    settings.MEDIA_ROOT = str(tmp_path)
    customer = make_customer()
    customer.document.save("passport.txt", ContentFile(b"PASSPORT 123456789 ZOE"))
    on_disk = (tmp_path / customer.document.name).read_bytes()
    assert b"PASSPORT" not in on_disk and on_disk.startswith(b"fp1$")
    loaded = Customer.objects.get(pk=customer.pk)
    assert loaded.document.read_decrypted() == b"PASSPORT 123456789 ZOE"
    with loaded.document.open() as fh:
        assert fh.read() == b"PASSPORT 123456789 ZOE"
    other = make_customer()
    (tmp_path / "copy.txt").write_bytes(on_disk)
    Customer.objects.filter(pk=other.pk).update(document="copy.txt")
    with pytest.raises(DecryptionError):
        Customer.objects.get(pk=other.pk).document.read_decrypted()


def test_a_model_without_subject_or_row_id_fails_the_system_check() -> None:
    from django.db import models

    from security.fields import EncryptedTextField

    class Careless(models.Model):
        secret_note = EncryptedTextField()

        class Meta:
            app_label = "security_tests"

        def __str__(self) -> str:
            return "careless"

    ids = {error.id for error in Careless._meta.get_field("secret_note").check()}
    assert {"security.E010", "security.E012"} <= ids


def test_subject_kind_and_id_are_needed() -> None:
    with pytest.raises(ValueError, match="kind and an id"):
        from security.crypto import as_subject

        as_subject(Subject("person", ""))
