"""Blind indexes find rows by email, phone or name without decrypting anything."""

from __future__ import annotations

import hashlib

import pytest
from django.db import connection

from security.blind_index import blind_index, normalise
from security.fields import EncryptedFieldError
from tests.security.conftest import random_key
from tests.security.test_encrypted_fields import make_customer
from tests.security.testmodels import Customer


@pytest.mark.parametrize(
    ("kind", "variants"),
    [
        ("email", ["Ann.Lee@Example.COM", "  ann.lee@example.com\t", "ANN.LEE@EXAMPLE.COM"]),
        ("phone", ["+44 7700 900789", "07700 900789", "0044 7700-900-789", "+447700900789"]),
        ("name", ["Zoë  O'Brien", "ZOE O'BRIEN", "zoe o'brien", "Zoe\u0308 O'Brien", "  zoë\no'brien "]),
        ("name", ["Łukasz Müller", "lukasz muller", "LUKASZ MÜLLER"]),
    ],
)
def test_variants_of_one_value_share_one_blind_index(kind, variants) -> None:
    digests = {blind_index(kind, v) for v in variants}
    assert len(digests) == 1 and None not in digests


def test_normalisation_rules() -> None:
    assert normalise("email", "  Ann@Example.com ") == "ann@example.com"
    assert normalise("phone", "(415) 555-2671") != normalise(
        "phone", "+1 415 555 2671"
    )  # read as a GB number
    assert normalise("phone", "+1 (415) 555-2671") == "+14155552671"
    assert normalise("name", "  José\u00a0 María   GARCÍA ") == "jose maria garcia"
    assert blind_index("email", "") is None and blind_index("email", None) is None


def test_blind_indexes_are_keyed_and_separate_per_kind(settings) -> None:
    digest = blind_index("email", "ann@example.com")
    assert digest != hashlib.sha256(b"ann@example.com").hexdigest()
    assert blind_index("name", "ann@example.com") != digest
    settings.BLIND_INDEX_KEY = random_key()
    assert blind_index("email", "ann@example.com") != digest


@pytest.mark.django_db
def test_rows_are_found_by_email_phone_or_name_without_decrypting() -> None:
    ann = make_customer(full_name="Ann Lee", email="Ann.Lee@example.com", phone="+44 7700 900789")
    make_customer(full_name="Bob Roe", email="bob@example.com", phone="+44 7700 900111")
    assert list(Customer.objects.filter(email_bidx=blind_index("email", " ann.lee@EXAMPLE.com"))) == [ann]
    assert list(Customer.objects.filter(phone_bidx=blind_index("phone", "07700 900789"))) == [ann]
    assert list(Customer.objects.filter(full_name_bidx=blind_index("name", "ANN  LEE"))) == [ann]
    assert list(Customer.objects.filter(email_bidx__matches="ANN.LEE@example.com")) == [ann]
    assert not Customer.objects.filter(email_bidx__matches="nobody@example.com").exists()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT email_bidx FROM {Customer._meta.db_table} WHERE id = %s", [ann.pk])  # noqa: S608
        stored = cursor.fetchone()[0]
    assert len(stored) == 64 and "ann" not in stored


@pytest.mark.django_db
def test_the_index_follows_the_value_on_every_save() -> None:
    ann = make_customer(email="ann@example.com")
    ann.email = "ann@new.example.com"
    ann.save()
    assert not Customer.objects.filter(email_bidx__matches="ann@example.com").exists()
    assert Customer.objects.filter(email_bidx__matches="ann@new.example.com").exists()
    ann.email = None
    ann.save()
    assert Customer.objects.get(pk=ann.pk).email_bidx is None
    loaded = Customer.objects.get(pk=ann.pk)
    loaded.phone = "+44 7700 900222"
    loaded.save(update_fields=["phone", "phone_bidx"])
    assert Customer.objects.filter(phone_bidx__matches="+447700900222").exists()


@pytest.mark.django_db
def test_saving_a_value_without_its_index_is_refused() -> None:
    ann = make_customer(email="ann@example.com")
    ann.email = "changed@example.com"
    with pytest.raises(EncryptedFieldError, match="blind index 'email_bidx'"):
        ann.save(update_fields=["email"])
