"""Key-encryption keys (KEKs): the keys that wrap every per-subject data key.

Two providers, usable together (the first configured KEK is the active one;
the others stay readable so a rotation can move data keys off them):

* ``FIELD_ENCRYPTION_KMS_KEYS``: ``id:key-arn-or-alias`` entries; data keys are
  wrapped by AWS KMS (``Encrypt``/``Decrypt`` with an encryption context).
* ``FIELD_ENCRYPTION_KEYS``: ``id:base64-of-32-bytes`` entries for self-hosting;
  data keys are wrapped locally with AES-256-GCM.

In DEBUG with neither configured, a development keyring derived from a fixed
phrase is used and a system check warns about it on every command. With DEBUG
off, a missing or malformed configuration raises ``ImproperlyConfigured`` when
the app starts (see :meth:`security.apps.SecurityConfig.ready`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.exceptions import ImproperlyConfigured

KEK_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
DEV_KEK_ID = "dev-only-insecure"
_DEV_PHRASE = b"fintech_portal development-only field encryption key; never use with real data"
NONCE_BYTES = 12


class KeyringError(Exception):
    """A data key could not be wrapped or unwrapped (wrong, missing or unreachable KEK)."""


class KEKProvider(Protocol):
    ids: list[str]

    def wrap(self, kek_id: str, key: bytes, context: bytes) -> bytes: ...

    def unwrap(self, kek_id: str, blob: bytes, context: bytes) -> bytes: ...


class LocalKEKs:
    """KEKs held in the process (from ``FIELD_ENCRYPTION_KEYS``), AES-256-GCM key wrap."""

    def __init__(self, keys: dict[str, bytes]) -> None:
        self._aead = {kek_id: AESGCM(key) for kek_id, key in keys.items()}
        self.ids = list(keys)

    def wrap(self, kek_id: str, key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead[kek_id].encrypt(nonce, key, context)

    def unwrap(self, kek_id: str, blob: bytes, context: bytes) -> bytes:
        try:
            return self._aead[kek_id].decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], context)
        except InvalidTag as exc:
            raise KeyringError(
                f"KEK {kek_id!r} cannot unwrap this data key: the configured key is not the one "
                "that wrapped it, or the wrapped key was altered."
            ) from exc


class KMSKEKs:
    """KEKs held by AWS KMS. The boto3 client is created on first use (never at start-up)."""

    def __init__(self, keys: dict[str, str], client_factory: Callable[[], Any] | None = None) -> None:
        self._key_refs = dict(keys)
        self.ids = list(keys)
        self._client_factory = client_factory or _default_kms_client
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._client_factory()
            return self._client

    @staticmethod
    def _context(context: bytes) -> dict[str, str]:
        return {"purpose": "fintech_portal-data-key", "binding": context.decode()}

    def wrap(self, kek_id: str, key: bytes, context: bytes) -> bytes:
        try:
            answer = self.client().encrypt(
                KeyId=self._key_refs[kek_id], Plaintext=key, EncryptionContext=self._context(context)
            )
        except Exception as exc:  # noqa: BLE001 - botocore raises many types; all mean "cannot wrap"
            raise KeyringError(f"AWS KMS could not wrap a data key with KEK {kek_id!r}: {exc}") from exc
        return bytes(answer["CiphertextBlob"])

    def unwrap(self, kek_id: str, blob: bytes, context: bytes) -> bytes:
        try:
            answer = self.client().decrypt(
                CiphertextBlob=blob, KeyId=self._key_refs[kek_id], EncryptionContext=self._context(context)
            )
        except Exception as exc:  # noqa: BLE001
            raise KeyringError(f"AWS KMS could not unwrap a data key with KEK {kek_id!r}: {exc}") from exc
        return bytes(answer["Plaintext"])


def _default_kms_client() -> Any:
    import boto3
    from django.conf import settings

    return boto3.client("kms", region_name=getattr(settings, "AWS_REGION", "") or None)


@dataclass
class Keyring:
    """Every configured KEK by id; ``active_id`` wraps new data keys."""

    providers: list[KEKProvider]
    dev_only: bool = False
    _by_id: dict[str, KEKProvider] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        for provider in self.providers:
            for kek_id in provider.ids:
                if kek_id in self._by_id:
                    raise ImproperlyConfigured(f"KEK id {kek_id!r} is configured twice.")
                self._by_id[kek_id] = provider
        if not self._by_id:
            raise ImproperlyConfigured("The keyring has no key-encryption key.")

    @property
    def ids(self) -> list[str]:
        return list(self._by_id)

    @property
    def active_id(self) -> str:
        return self.ids[0]

    def knows(self, kek_id: str) -> bool:
        return kek_id in self._by_id

    def wrap(self, key: bytes, context: bytes) -> tuple[str, bytes]:
        """Wrap ``key`` under the active KEK; returns ``(kek_id, wrapped)``."""
        kek_id = self.active_id
        return kek_id, self._by_id[kek_id].wrap(kek_id, key, context)

    def unwrap(self, kek_id: str, blob: bytes, context: bytes) -> bytes:
        provider = self._by_id.get(kek_id)
        if provider is None:
            raise KeyringError(
                f"This data key is wrapped by KEK {kek_id!r}, which is not configured. Add it back to "
                "FIELD_ENCRYPTION_KEYS (or FIELD_ENCRYPTION_KMS_KEYS) until `manage.py rotate_keys` "
                "has moved every data key off it."
            )
        return provider.unwrap(kek_id, blob, context)


def _split_entry(setting: str, index: int, entry: str) -> tuple[str, str]:
    kek_id, sep, material = entry.strip().partition(":")
    if not sep or not material:
        raise ImproperlyConfigured(
            f"{setting} entry {index + 1} must look like 'id:value' (for example 'k2:<base64 of 32 bytes>')."
        )
    if not KEK_ID_RE.match(kek_id):
        raise ImproperlyConfigured(
            f"{setting} entry {index + 1}: the id {kek_id!r} must be 1-32 letters, digits, '-' or '_'."
        )
    return kek_id, material


def decode_key(
    setting: str, label: str, material: str, *, exact: int | None = 32, minimum: int = 32
) -> bytes:
    """Decode base64 (standard or URL-safe) key material, never echoing it in errors."""
    text = material.strip()
    padded = text + "=" * (-len(text) % 4)
    raw = b""
    for altchars in (None, b"-_"):
        try:
            raw = base64.b64decode(padded, altchars=altchars, validate=True)
            break
        except (binascii.Error, ValueError):
            continue
    else:
        raise ImproperlyConfigured(f"{setting} {label} is not valid base64.")
    if exact is not None and len(raw) != exact:
        raise ImproperlyConfigured(
            f"{setting} {label} decodes to {len(raw)} bytes; AES-256 needs exactly {exact}. "
            "Generate one with: python -c "
            '"import base64, os; print(base64.b64encode(os.urandom(32)).decode())"'
        )
    if len(raw) < minimum:
        raise ImproperlyConfigured(f"{setting} {label} decodes to {len(raw)} bytes; use at least {minimum}.")
    if len(set(raw)) < 8:
        raise ImproperlyConfigured(f"{setting} {label} is not random (too few distinct bytes).")
    return raw


def dev_key() -> bytes:
    return hashlib.sha256(_DEV_PHRASE).digest()


def build_keyring(
    *,
    local_entries: list[str],
    kms_entries: list[str],
    debug: bool,
    kms_client_factory: Callable[[], Any] | None = None,
) -> Keyring:
    """Validate the configuration and build the keyring, or raise ImproperlyConfigured."""
    providers: list[KEKProvider] = []
    if kms_entries:
        refs: dict[str, str] = {}
        for i, entry in enumerate(e for e in kms_entries if e.strip()):
            kek_id, ref = _split_entry("FIELD_ENCRYPTION_KMS_KEYS", i, entry)
            if kek_id in refs:
                raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KMS_KEYS names KEK {kek_id!r} twice.")
            refs[kek_id] = ref.strip()
        providers.append(KMSKEKs(refs, client_factory=kms_client_factory))
    local: dict[str, bytes] = {}
    for i, entry in enumerate(e for e in local_entries if e.strip()):
        kek_id, material = _split_entry("FIELD_ENCRYPTION_KEYS", i, entry)
        if kek_id in local:
            raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEYS names KEK {kek_id!r} twice.")
        local[kek_id] = decode_key("FIELD_ENCRYPTION_KEYS", f"key {kek_id!r}", material)
    if len(set(local.values())) != len(local):
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS holds the same key under two ids.")
    if local:
        providers.append(LocalKEKs(local))
    if providers:
        return Keyring(providers)
    if not debug:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS (or FIELD_ENCRYPTION_KMS_KEYS) is not set. With DEBUG off the app "
            "refuses to start without a key-encryption key: set FIELD_ENCRYPTION_KEYS to 'k1:<base64 of "
            "32 random bytes>' (or FIELD_ENCRYPTION_KEYS_FILE to a file holding it)."
        )
    return Keyring([LocalKEKs({DEV_KEK_ID: dev_key()})], dev_only=True)


_keyring: Keyring | None = None
_keyring_lock = threading.Lock()


def keyring_from_settings() -> Keyring:
    from django.conf import settings

    return build_keyring(
        local_entries=list(getattr(settings, "FIELD_ENCRYPTION_KEYS", []) or []),
        kms_entries=list(getattr(settings, "FIELD_ENCRYPTION_KMS_KEYS", []) or []),
        debug=bool(settings.DEBUG),
    )


def get_keyring() -> Keyring:
    global _keyring
    with _keyring_lock:
        if _keyring is None:
            _keyring = keyring_from_settings()
        return _keyring


def set_keyring(keyring: Keyring | None) -> None:
    """Replace the process keyring (``None`` rebuilds it from settings on next use)."""
    global _keyring
    with _keyring_lock:
        _keyring = keyring
