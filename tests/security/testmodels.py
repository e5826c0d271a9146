"""Models used only by the security tests (their tables are created by tests/security/conftest.py)."""

from __future__ import annotations

from django.db import models

from security.fields import (
    BlindIndexField,
    EncryptedBinaryField,
    EncryptedDateField,
    EncryptedFileField,
    EncryptedJSONField,
    EncryptedTextField,
    EncryptionSubject,
)
from security.ids import public_id_default


class Customer(models.Model):
    public_id = models.CharField(max_length=40, unique=True, default=public_id_default("cus"))
    merchant_ref = models.CharField(max_length=40, default="mer_test")
    encryption_subject = EncryptionSubject("person")

    full_name = EncryptedTextField(blank=True, null=True)
    full_name_bidx = BlindIndexField(source="full_name", kind="name")
    email = EncryptedTextField(blank=True, null=True)
    email_bidx = BlindIndexField(source="email", kind="email")
    phone = EncryptedTextField(blank=True, null=True)
    phone_bidx = BlindIndexField(source="phone", kind="phone")
    born_on = EncryptedDateField(blank=True, null=True)
    profile = EncryptedJSONField(blank=True, null=True)
    photo = EncryptedBinaryField(blank=True, null=True)
    document = EncryptedFileField(upload_to="test-docs/", blank=True)
    merchant_note = EncryptedTextField(
        blank=True, null=True, subject=EncryptionSubject("merchant", "merchant_ref")
    )

    class Meta:
        app_label = "security_tests"

    def __str__(self) -> str:
        return self.public_id


TEST_MODELS = [Customer]
