"""Second factors at rest: a copy of the database holds no TOTP secret and no guessable backup code."""

from __future__ import annotations

import hashlib
from base64 import b32encode
from binascii import unhexlify

import pytest
from django.apps import apps
from django.db import connection
from django.urls import reverse
from django_otp.oath import TOTP

from accounts.models import BackupCode, BackupCodeDevice
from tests.accounts.test_two_factor import enrol, sign_in_with_password
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def database_dump() -> str:
    """Every row of every table, as text: what someone holding a database copy can read."""
    parts: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 - table names
            parts.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(parts).lower()


def secrets_of(hex_key: str) -> list[str]:
    raw = unhexlify(hex_key)
    return [hex_key.lower(), b32encode(raw).decode().rstrip("=").lower(), raw.hex()]


def code_traces(user_id: int, code: str) -> list[str]:
    plain = code.replace("-", "").lower()
    return [
        plain,
        code.lower(),
        hashlib.sha256(plain.encode()).hexdigest(),
        hashlib.sha256(f"{user_id}:{plain}".encode()).hexdigest(),
    ]


def test_a_database_copy_holds_neither_the_totp_secret_nor_a_usable_backup_code(client) -> None:
    user = make_user("newbie@example.com", with_totp=False)
    sign_in_with_password(client, user.email)
    device, codes = enrol(client)
    assert len(codes) == 10
    dump = database_dump()
    for needle in secrets_of(device.key):
        assert needle not in dump, "the TOTP secret is readable in the database"
    for code in codes:
        for needle in code_traces(user.pk, code):
            assert needle not in dump, "a backup code (or its unkeyed hash) is readable in the database"


def _old_storage_user(email: str, codes: list[str]):
    """A user enrolled before this change: django-otp's clear TOTP device, unkeyed code hashes."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    user = make_user(email, with_totp=False)
    clear = TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=True)
    backup = BackupCodeDevice.objects.create(user=user, name="Backup codes", confirmed=True)
    for code in codes:
        legacy = hashlib.sha256(f"{user.pk}:{code}".encode()).hexdigest()
        BackupCode.objects.create(device=backup, code_hash=legacy, keyed=False)
    return user, clear.key


def _code_now(hex_key: str) -> str:
    return f"{TOTP(unhexlify(hex_key)).token():06d}"


def test_a_user_enrolled_under_the_old_storage_still_signs_in_after_the_migration(client) -> None:
    from accounts.second_factor_storage import keyed_backup_code_hashes, move_totp_devices

    codes = ["abcdefghjk", "mnpqrstuvw"]
    user, hex_key = _old_storage_user("veteran@example.com", codes)
    assert hex_key in database_dump()  # the old way: in clear

    assert move_totp_devices(apps, "default") == 1
    assert keyed_backup_code_hashes(apps, "default") == 2
    assert keyed_backup_code_hashes(apps, "default") == 0  # converted rows are left alone

    dump = database_dump()
    for needle in secrets_of(hex_key):
        assert needle not in dump
    for code in codes:
        for needle in code_traces(user.pk, code):
            assert needle not in dump

    # The same authenticator app still works...
    sign_in_with_password(client, user.email)
    assert client.post(reverse("two_factor_verify"), {"code": _code_now(hex_key)}).status_code == 302
    assert client.get(reverse("home")).status_code == 200
    client.post(reverse("account_logout"))

    # ...and so does an unused backup code, once.
    sign_in_with_password(client, user.email)
    assert client.post(reverse("two_factor_verify"), {"code": "abcde-fghjk"}).status_code == 302
    assert client.get(reverse("home")).status_code == 200
    client.post(reverse("account_logout"))
    sign_in_with_password(client, user.email)
    assert client.post(reverse("two_factor_verify"), {"code": "abcde-fghjk"}).status_code == 400
    assert client.get(reverse("home")).status_code == 302
    assert BackupCodeDevice.objects.get(user=user).remaining() == 1


def test_a_totp_secret_copied_to_another_users_device_does_not_decrypt(owner, teammate) -> None:
    from accounts.models import EncryptedTOTPDevice
    from security.crypto import DecryptionError

    mine = EncryptedTOTPDevice.objects.get(user=owner)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {EncryptedTOTPDevice._meta.db_table} SET key = "  # noqa: S608 - constant table name
            f"(SELECT key FROM {EncryptedTOTPDevice._meta.db_table} WHERE id = %s) WHERE user_id = %s",
            [mine.pk, teammate.pk],
        )
    theirs = EncryptedTOTPDevice.objects.get(user=teammate)
    with pytest.raises(DecryptionError):
        theirs.bin_key  # noqa: B018
