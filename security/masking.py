"""Show just enough of a value: ``•••• 4242``, ``j•••@example.com``, ``+44 •••• ••• 789``.

Every helper accepts ``None`` (gives ``""``) and :data:`~security.crypto.ERASED`
(gives ``[erased]``). Templates use the ``masking`` library::

    {% load masking %}{{ customer.email|mask_email }} {{ card|mask_card }} {{ phone|mask_phone }}
"""

from __future__ import annotations

import phonenumbers

from security.crypto import ERASED

BULLET = "•"
BULLETS = BULLET * 4


def _special(value: object) -> str | None:
    if value is None:
        return ""
    if value is ERASED:
        return "[erased]"
    return None


def mask_card(value: object) -> str:
    """``•••• 4242``: the last four digits only."""
    special = _special(value)
    if special is not None:
        return special
    digits = "".join(ch for ch in str(value) if ch.isdigit())
    return f"{BULLETS} {digits[-4:]}" if len(digits) >= 4 else BULLETS


def mask_email(value: object) -> str:
    """``j•••@example.com``: the first character of the local part and the domain."""
    special = _special(value)
    if special is not None:
        return special
    local, at, domain = str(value).strip().rpartition("@")
    if not at or not local:
        return BULLETS
    return f"{local[0]}{BULLET * 3}@{domain}"


def mask_phone(value: object, region: str | None = None) -> str:
    """``+44 •••• ••• 789``: the country code and the last three digits."""
    special = _special(value)
    if special is not None:
        return special
    text = str(value).strip()
    try:
        number = phonenumbers.parse(text, region or "GB")
        country = f"+{number.country_code}"
        national = str(number.national_number)
    except phonenumbers.NumberParseException:
        digits = "".join(ch for ch in text if ch.isdigit())
        return f"{BULLETS} {digits[-3:]}" if len(digits) >= 3 else BULLETS
    hidden = max(len(national) - 3, 0)
    first = min(4, hidden)
    groups = [BULLET * first] + ([BULLET * (hidden - first)] if hidden - first else [])
    return " ".join([country, *groups, national[-3:]])


def mask_text(value: object, visible: int = 1) -> str:
    """A generic mask: the first ``visible`` characters, then bullets."""
    special = _special(value)
    if special is not None:
        return special
    text = str(value)
    return text[:visible] + BULLET * max(3, min(len(text) - visible, 8))
