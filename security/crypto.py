"""Envelope encryption with per-subject data keys, and crypto-shredding.

Every value is encrypted with AES-256-GCM under its data subject's data key
(:class:`~security.models.DataKey`); data keys are wrapped by a KEK from the
keyring (:mod:`security.keyring`). A value is stored as a self-describing token::

    fp1$<kek id>$<data key id>$<base64url(nonce)>$<base64url(ciphertext + tag)>

The header and the value's place (table, column and row identifier) are the
associated data, so a token copied into another row or column, or with an
edited header, fails to decrypt. The KEK id records which KEK wrapped the data
key when the value was written; the DataKey row is authoritative after a
rotation re-wraps it.

``shred(subject)`` destroys a subject's data keys: their values read back as
:data:`ERASED` from then on.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.db import IntegrityError, transaction
from django.utils import timezone

from security.keyring import KeyringError, get_keyring

FORMAT_VERSION = "fp1"
SEP = "$"
NONCE_BYTES = 12


class DecryptionError(Exception):
    """A stored value failed authentication: altered, or copied from another row or column."""


class DataKeyMissing(DecryptionError):
    """The data key a value names does not exist (restored without its keys?)."""


class Subject(NamedTuple):
    """A data subject: ``kind`` (``person``, ``merchant``...) and a stable id (a public id)."""

    kind: str
    id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


class _Erased:
    """What an encrypted value reads as once its subject has been shredded.

    Falsy, renders as ``[erased]`` in templates, equal only to itself.
    """

    _instance: _Erased | None = None

    def __new__(cls) -> _Erased:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __str__(self) -> str:
        return "[erased]"

    def __html__(self) -> str:
        return "[erased]"

    def __repr__(self) -> str:
        return "ERASED"

    def __len__(self) -> int:
        return 0

    def __reduce__(self) -> str:
        return "ERASED"


ERASED = _Erased()


def is_erased(value: object) -> bool:
    return value is ERASED


def as_subject(subject: Subject | tuple[str, str]) -> Subject:
    kind, ident = subject
    if not kind or not ident:
        raise ValueError("A data subject needs a kind and an id.")
    return Subject(str(kind), str(ident))


# --- Data keys: lookup, creation and a small in-process cache ---------------------------------


@dataclass
class _Cached:
    aead: AESGCM | None  # None: shredded
    kek_id: str
    expires: float


_lock = threading.Lock()
_by_key_id: dict[str, _Cached] = {}
_active_by_subject: dict[Subject, tuple[str, float]] = {}
_uncommitted: set[str] = set()


def _ttl() -> float:
    from django.conf import settings

    return float(getattr(settings, "FIELD_ENCRYPTION_KEY_CACHE_SECONDS", 60))


def clear_key_cache() -> None:
    with _lock:
        _by_key_id.clear()
        _active_by_subject.clear()


def wrap_context(key_id: str, subject: Subject) -> bytes:
    return f"fp-dk|{key_id}|{subject.kind}|{subject.id}".encode()


def _remember(key_id: str, cached: _Cached, subject: Subject | None = None) -> None:
    with _lock:
        if key_id in _uncommitted:
            return
        _by_key_id[key_id] = cached
        if subject is not None and cached.aead is not None:
            _active_by_subject[subject] = (key_id, cached.expires)


def _unwrap_row(row: Any) -> AESGCM:
    subject = Subject(row.subject_kind, row.subject_id)
    raw = get_keyring().unwrap(row.kek_id, bytes(row.wrapped_key), wrap_context(row.key_id, subject))
    return AESGCM(raw)


def key_for_reading(key_id: str) -> AESGCM | None:
    """The data key ``key_id`` ready to decrypt, or ``None`` when it was shredded."""
    now = time.monotonic()
    cached = _by_key_id.get(key_id)
    if cached is not None and cached.expires > now:
        return cached.aead
    from security.models import DataKey

    row = DataKey.objects.filter(key_id=key_id).first()
    if row is None:
        raise DataKeyMissing(f"Data key {key_id} does not exist in this database.")
    if row.shredded_at is not None:
        _remember(key_id, _Cached(None, row.kek_id, now + _ttl()))
        return None
    aead = _unwrap_row(row)
    _remember(key_id, _Cached(aead, row.kek_id, now + _ttl()))
    return aead


def preload_keys(instances: Any) -> int:
    """Load the data keys of many rows' encrypted values in one query (for list pages).

    Without it, the first read of each subject's value looks its key up on its
    own; call this on a page of objects to keep the query count constant.
    Returns how many keys were loaded.
    """
    from security.fields import Sealed
    from security.models import DataKey

    now = time.monotonic()
    wanted: set[str] = set()
    for instance in instances:
        for value in vars(instance).values():
            if value.__class__ is Sealed:
                parts = value.token.split(SEP, 3)
                if len(parts) == 4:
                    cached = _by_key_id.get(parts[2])
                    if cached is None or cached.expires <= now:
                        wanted.add(parts[2])
    if not wanted:
        return 0
    for row in DataKey.objects.filter(key_id__in=wanted):
        if row.shredded_at is not None:
            _remember(row.key_id, _Cached(None, row.kek_id, now + _ttl()))
        else:
            _remember(row.key_id, _Cached(_unwrap_row(row), row.kek_id, now + _ttl()))
    return len(wanted)


def key_for_writing(subject: Subject) -> tuple[str, str, AESGCM]:
    """The subject's live data key (created on first use): ``(key_id, kek_id, aead)``."""
    now = time.monotonic()
    hit = _active_by_subject.get(subject)
    if hit is not None and hit[1] > now:
        cached = _by_key_id.get(hit[0])
        if cached is not None and cached.aead is not None and cached.expires > now:
            return hit[0], cached.kek_id, cached.aead
    from security.models import DataKey

    live = DataKey.objects.filter(
        subject_kind=subject.kind, subject_id=subject.id, shredded_at__isnull=True
    ).first()
    if live is None:
        live = _create_data_key(subject)
    aead = _unwrap_row(live)
    _remember(live.key_id, _Cached(aead, live.kek_id, now + _ttl()), subject)
    return live.key_id, live.kek_id, aead


def _create_data_key(subject: Subject) -> Any:
    from security.ids import new_public_id
    from security.models import DataKey

    key_id = new_public_id("dk")
    kek_id, wrapped = get_keyring().wrap(os.urandom(32), wrap_context(key_id, subject))
    try:
        with transaction.atomic():
            row = DataKey.objects.create(
                key_id=key_id,
                subject_kind=subject.kind,
                subject_id=subject.id,
                wrapped_key=wrapped,
                kek_id=kek_id,
            )
    except IntegrityError:
        # Another process created this subject's key first: use theirs.
        return DataKey.objects.get(subject_kind=subject.kind, subject_id=subject.id, shredded_at__isnull=True)
    if transaction.get_connection().in_atomic_block:
        # Until the caller's transaction commits, no other transaction can see the key:
        # keep it out of the shared cache so a rollback cannot leave a dangling key id.
        with _lock:
            _uncommitted.add(key_id)

        def committed() -> None:
            with _lock:
                _uncommitted.discard(key_id)

        transaction.on_commit(committed)
    return row


# --- Values -----------------------------------------------------------------------------------


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def binding(table: str, column: str, row_id: str) -> str:
    return f"{table}|{column}|{row_id}"


def _aad(header: str, place: str) -> bytes:
    return f"{header}|{place}".encode()


def _header(kek_id: str, key_id: str) -> str:
    return f"{FORMAT_VERSION}{SEP}{kek_id}{SEP}{key_id}"


def encrypt(plaintext: bytes, *, subject: Subject, place: str) -> str:
    """Encrypt under the subject's data key, bound to ``place`` (see :func:`binding`)."""
    key_id, kek_id, aead = key_for_writing(subject)
    header = _header(kek_id, key_id)
    nonce = os.urandom(NONCE_BYTES)
    sealed = aead.encrypt(nonce, plaintext, _aad(header, place))
    return f"{header}{SEP}{_b64e(nonce)}{SEP}{_b64e(sealed)}"


@dataclass(frozen=True)
class TokenParts:
    version: str
    kek_id: str
    key_id: str
    nonce: bytes
    ciphertext: bytes

    @property
    def header(self) -> str:
        return _header(self.kek_id, self.key_id)


def parse_token(token: str) -> TokenParts:
    parts = token.split(SEP)
    if len(parts) != 5 or parts[0] != FORMAT_VERSION:
        raise DecryptionError("This is not an fp1 encrypted value (unknown format or version).")
    try:
        nonce, ciphertext = _b64d(parts[3]), _b64d(parts[4])
    except (ValueError, TypeError) as exc:
        raise DecryptionError("The encrypted value is malformed.") from exc
    if len(nonce) != NONCE_BYTES:
        raise DecryptionError("The encrypted value has a malformed nonce.")
    return TokenParts(parts[0], parts[1], parts[2], nonce, ciphertext)


def decrypt(token: str, *, place: str) -> bytes | _Erased:
    """Decrypt a token written for ``place``; :data:`ERASED` once its subject was shredded."""
    parts = parse_token(token)
    aead = key_for_reading(parts.key_id)
    if aead is None:
        return ERASED
    try:
        return aead.decrypt(parts.nonce, parts.ciphertext, _aad(parts.header, place))
    except InvalidTag as exc:
        raise DecryptionError(
            f"The encrypted value stored at {place.rsplit('|', 1)[0]} does not authenticate: it was altered, "
            "or copied from another row or column."
        ) from exc


def encrypt_bytes_blob(plaintext: bytes, *, subject: Subject, place: str) -> bytes:
    """Binary framing for files: ``header\\n`` then nonce and ciphertext."""
    key_id, kek_id, aead = key_for_writing(subject)
    header = _header(kek_id, key_id)
    nonce = os.urandom(NONCE_BYTES)
    return header.encode() + b"\n" + nonce + aead.encrypt(nonce, plaintext, _aad(header, place))


def decrypt_bytes_blob(blob: bytes, *, place: str) -> bytes | _Erased:
    header_bytes, newline, rest = blob.partition(b"\n")
    header = header_bytes.decode("ascii", "replace")
    fields = header.split(SEP)
    if not newline or len(fields) != 3 or fields[0] != FORMAT_VERSION or len(rest) <= NONCE_BYTES:
        raise DecryptionError("This file is not an fp1 encrypted file.")
    aead = key_for_reading(fields[2])
    if aead is None:
        return ERASED
    try:
        return aead.decrypt(rest[:NONCE_BYTES], rest[NONCE_BYTES:], _aad(header, place))
    except InvalidTag as exc:
        raise DecryptionError(
            "The encrypted file does not authenticate: it was altered or belongs to another row."
        ) from exc


def _forget(subject: Subject, key_ids: list[str]) -> None:
    with _lock:
        for key_id in key_ids:
            _by_key_id.pop(key_id, None)
        _active_by_subject.pop(subject, None)


# --- Crypto-shredding -------------------------------------------------------------------------


@dataclass(frozen=True)
class ShredResult:
    subject: Subject
    data_keys: list[str]
    blind_indexes_cleared: int


def shred(subject: Subject | tuple[str, str], *, actor: Any = None, reason: str = "") -> ShredResult:
    """Destroy every data key of ``subject``; their values read as :data:`ERASED` from now on.

    Also clears the blind indexes of the subject's rows (they would still let
    someone test whether a guessed email was ever stored). Audited as
    ``crypto.subject_shredded``. Idempotent: a second call finds nothing left.
    """
    from security import audit
    from security.fields import clear_blind_indexes_for
    from security.models import DataKey

    subject = as_subject(subject)
    now = timezone.now()
    with transaction.atomic():
        keys = list(
            DataKey.objects.select_for_update()
            .filter(subject_kind=subject.kind, subject_id=subject.id, shredded_at__isnull=True)
            .order_by("id")
        )
        for key in keys:
            key.wrapped_key = b""
            key.shredded_at = now
            key.save(update_fields=["wrapped_key", "shredded_at"])
        cleared = clear_blind_indexes_for(subject)
        key_ids = [k.key_id for k in keys]
        audit.record(
            actor=actor,
            action="crypto.subject_shredded",
            target=("security.datasubject", str(subject)),
            details={
                "subject_kind": subject.kind,
                "subject_id": subject.id,
                "data_keys": key_ids,
                "blind_indexes_cleared": cleared,
                "reason": reason[:200],
            },
        )
    _forget(subject, key_ids)
    # Again once committed, in case another thread cached a key between our pop and the commit.
    transaction.on_commit(lambda: _forget(subject, key_ids))
    return ShredResult(subject=subject, data_keys=key_ids, blind_indexes_cleared=cleared)


__all__ = [
    "ERASED",
    "DataKeyMissing",
    "DecryptionError",
    "KeyringError",
    "ShredResult",
    "Subject",
    "binding",
    "clear_key_cache",
    "decrypt",
    "encrypt",
    "is_erased",
    "shred",
]
