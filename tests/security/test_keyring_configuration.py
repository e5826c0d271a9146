"""Keys: a wrong or missing key stops the app at start-up; KMS wraps keys when configured."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber
from django.core.exceptions import ImproperlyConfigured
from moto import mock_aws

from security import crypto
from security.checks import data_keys_readable
from security.crypto import Subject
from security.keyring import DEV_KEK_ID, KeyringError, build_keyring, set_keyring
from tests.security.conftest import random_key
from tests.security.test_encrypted_fields import make_customer
from tests.security.testmodels import Customer

ROOT = Path(__file__).resolve().parents[2]


def start_app(**env: str) -> subprocess.CompletedProcess[str]:
    """Run `manage.py check` in a fresh process with exactly these key settings."""
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("FIELD_ENCRYPTION", "BLIND_INDEX", "DEBUG"))
    }
    clean.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_missing_keys_with_debug_off_stop_the_app_at_start_up() -> None:
    result = start_app(DEBUG="0", BLIND_INDEX_KEY=random_key())
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEYS (or FIELD_ENCRYPTION_KMS_KEYS) is not set" in result.stderr


def test_a_malformed_key_stops_the_app_at_start_up_without_echoing_it() -> None:
    short = base64.b64encode(os.urandom(16)).decode()
    result = start_app(DEBUG="0", FIELD_ENCRYPTION_KEYS=f"k1:{short}", BLIND_INDEX_KEY=random_key())
    assert result.returncode != 0
    assert "decodes to 16 bytes; AES-256 needs exactly 32" in result.stderr
    assert short not in result.stderr


def test_missing_blind_index_key_with_debug_off_stops_the_app() -> None:
    result = start_app(DEBUG="0", FIELD_ENCRYPTION_KEYS=f"k1:{random_key()}")
    assert result.returncode != 0
    assert "BLIND_INDEX_KEY is not set" in result.stderr


def test_debug_without_keys_uses_a_loudly_labelled_development_keyring() -> None:
    result = start_app(DEBUG="1")
    assert result.returncode == 0, result.stderr
    assert "DEVELOPMENT-ONLY KEYRING" in result.stderr


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["no-colon"], "must look like 'id:value'"),
        (["bad id!:AAAA"], "must be 1-32 letters"),
        (["k1:not base64 at all!"], "not valid base64"),
        (["k1:" + base64.b64encode(bytes(32)).decode()], "not random"),
        ([f"k1:{random_key()}", f"k1:{random_key()}"], "twice"),
    ],
)
def test_each_kind_of_bad_key_configuration_is_explained(entries: list[str], message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        build_keyring(local_entries=entries, kms_entries=[], debug=False)


def test_the_first_key_is_active_and_the_rest_stay_readable() -> None:
    keyring = build_keyring(
        local_entries=[f"k2:{random_key()}", f"k1:{random_key()}"], kms_entries=[], debug=False
    )
    assert keyring.active_id == "k2" and keyring.knows("k1") and not keyring.dev_only
    assert build_keyring(local_entries=[], kms_entries=[], debug=True).active_id == DEV_KEK_ID


@pytest.mark.django_db
def test_a_wrong_key_is_reported_by_the_database_check_and_never_yields_garbage(settings) -> None:
    person = make_customer(email="ann@example.com")
    active = settings.FIELD_ENCRYPTION_KEYS[0].split(":")[0]
    assert data_keys_readable(databases=["default"]) == []
    settings.FIELD_ENCRYPTION_KEYS = [f"{active}:{random_key()}"]  # same id, different key
    errors = data_keys_readable(databases=["default"])
    assert [e.id for e in errors] == ["security.E002"]
    assert "wrong key" in errors[0].msg
    with pytest.raises(KeyringError, match="not the one that wrapped it"):
        _ = Customer.objects.get(pk=person.pk).email
    settings.FIELD_ENCRYPTION_KEYS = [f"other:{random_key()}"]
    assert [e.id for e in data_keys_readable(databases=["default"])] == ["security.E001"]


# --- AWS KMS -----------------------------------------------------------------------------------

KEY_ARN = "arn:aws:kms:eu-west-1:111122223333:key/example-key-id"


def kms_client():
    return boto3.client(
        "kms", region_name="eu-west-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def test_kms_keyring_wraps_with_the_key_arn_and_a_binding_encryption_context() -> None:
    client = kms_client()
    keyring = build_keyring(
        local_entries=[], kms_entries=[f"kms1:{KEY_ARN}"], debug=False, kms_client_factory=lambda: client
    )
    data_key = os.urandom(32)
    context = crypto.wrap_context("dk_abc", Subject("person", "usr_1"))
    expected_context = {"purpose": "fintech_portal-data-key", "binding": "fp-dk|dk_abc|person|usr_1"}
    with Stubber(client) as stub:
        stub.add_response(
            "encrypt",
            {"CiphertextBlob": b"wrapped-by-kms", "KeyId": KEY_ARN},
            {"KeyId": KEY_ARN, "Plaintext": data_key, "EncryptionContext": expected_context},
        )
        stub.add_response(
            "decrypt",
            {"Plaintext": data_key, "KeyId": KEY_ARN},
            {"CiphertextBlob": b"wrapped-by-kms", "KeyId": KEY_ARN, "EncryptionContext": expected_context},
        )
        stub.add_client_error("decrypt", "InvalidCiphertextException", expected_params={
            "CiphertextBlob": ANY, "KeyId": KEY_ARN, "EncryptionContext": ANY})  # fmt: skip
        assert keyring.wrap(data_key, context) == ("kms1", b"wrapped-by-kms")
        assert keyring.unwrap("kms1", b"wrapped-by-kms", context) == data_key
        with pytest.raises(KeyringError, match="AWS KMS could not unwrap"):
            keyring.unwrap("kms1", b"tampered", context)
        stub.assert_no_pending_responses()


@pytest.mark.django_db
def test_encrypted_fields_work_end_to_end_on_kms_and_rotate_from_local_keys(settings) -> None:
    with mock_aws():
        client = kms_client()
        arn = client.create_key(Description="fintech_portal test KEK")["KeyMetadata"]["Arn"]
        local = make_customer(email="local@example.com")
        keyring = build_keyring(
            local_entries=settings.FIELD_ENCRYPTION_KEYS,
            kms_entries=[f"kms1:{arn}"],
            debug=False,
            kms_client_factory=lambda: client,
        )
        set_keyring(keyring)
        crypto.clear_key_cache()
        try:
            on_kms = make_customer(email="kms@example.com")
            crypto.clear_key_cache()
            assert Customer.objects.get(pk=on_kms.pk).email == "kms@example.com"
            assert Customer.objects.get(pk=local.pk).email == "local@example.com"
            from security.rotation import rotate_keys

            run = rotate_keys(batch_size=10)
            assert run.status == "completed" and run.done == 2  # local person + shared merchant key
            crypto.clear_key_cache()
            assert Customer.objects.get(pk=local.pk).email == "local@example.com"
        finally:
            set_keyring(None)
