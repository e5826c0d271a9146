"""Blind indexes: find rows by email, phone or name without decrypting them.

``blind_index(kind, value)`` is HMAC-SHA256 under ``BLIND_INDEX_KEY`` (a key
of its own, never an encryption key) of ``kind`` and the normalised value:

* ``email``: trimmed and lower-cased;
* ``phone``: E.164 (``+447700900789``), national numbers read in
  ``BLIND_INDEX_PHONE_REGION`` (default ``GB``);
* ``name``: NFKD, accents transliterated with Unidecode, case-folded,
  whitespace collapsed (``"  Zoë   O'Brien"`` and ``"zoe o'brien"`` match);
* ``exact``: the value as given.

Store it with :class:`security.fields.BlindIndexField` and query with
``Model.objects.filter(email_bidx=blind_index("email", typed))``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import unicodedata
from collections.abc import Callable

import phonenumbers
from django.core.exceptions import ImproperlyConfigured
from unidecode import unidecode

from security.keyring import decode_key

_WS = re.compile(r"\s+")
_dev_phrase = b"fintech_portal development-only blind index key; never use with real data"


def normalise_email(value: str) -> str:
    return value.strip().lower()


def normalise_phone(value: str, region: str | None = None) -> str:
    from django.conf import settings

    text = value.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    default_region = region or getattr(settings, "BLIND_INDEX_PHONE_REGION", "GB")
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        digits = "".join(ch for ch in text if ch.isdigit())
        return ("+" + digits) if text.startswith("+") else digits
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_name(value: str) -> str:
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _WS.sub(" ", unidecode(stripped).casefold()).strip()


NORMALISERS: dict[str, Callable[[str], str]] = {
    "email": normalise_email,
    "phone": normalise_phone,
    "name": normalise_name,
    "exact": lambda value: value,
}


def register_kind(kind: str, normaliser: Callable[[str], str]) -> None:
    """Add a blind index kind (for example a tax id with its own normalisation)."""
    NORMALISERS[kind] = normaliser


def normalise(kind: str, value: object) -> str:
    try:
        normaliser = NORMALISERS[kind]
    except KeyError:
        raise ValueError(f"Unknown blind index kind {kind!r}; known: {sorted(NORMALISERS)}") from None
    return normaliser(str(value))


_key: bytes | None = None
_key_lock = threading.Lock()


def key_from_settings() -> bytes:
    from django.conf import settings

    configured = getattr(settings, "BLIND_INDEX_KEY", "")
    if configured:
        return decode_key("BLIND_INDEX_KEY", "", configured, exact=None, minimum=32)
    if settings.DEBUG:
        return hashlib.sha256(_dev_phrase).digest()
    raise ImproperlyConfigured(
        "BLIND_INDEX_KEY is not set. With DEBUG off the app refuses to start without it: set it to the "
        "base64 of at least 32 random bytes, different from every FIELD_ENCRYPTION_KEYS key."
    )


def _current_key() -> bytes:
    global _key
    with _key_lock:
        if _key is None:
            _key = key_from_settings()
        return _key


def reset_key() -> None:
    global _key
    with _key_lock:
        _key = None


def derived_key(purpose: str) -> bytes:
    """A key for another lookup-style HMAC (``purpose`` separates its domain), derived from the
    blind index key: long-lived, held outside the database, never rotated with the KEKs or
    ``SECRET_KEY``. Backup codes use it (``accounts.backup_codes.v1``)."""
    return hmac.new(_current_key(), b"derived-key\x00" + purpose.encode(), hashlib.sha256).digest()


class BlindIndexDigest(str):
    """A digest already computed (so a lookup does not hash it twice)."""


def blind_index(kind: str, value: object) -> BlindIndexDigest | None:
    """The blind index of ``value`` for ``kind``, or ``None`` for an empty value."""
    if value is None:
        return None
    normalised = normalise(kind, value)
    if not normalised:
        return None
    digest = hmac.new(_current_key(), f"{kind}\x00{normalised}".encode(), hashlib.sha256).hexdigest()
    return BlindIndexDigest(digest)
